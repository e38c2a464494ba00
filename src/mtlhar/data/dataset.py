"""Samples and batches.

A sample is `{"inputs": {stream: Tensor}, "targets": {task: Tensor}, "mask": {task: Tensor}, "meta": {...}}`
and a batch stacks them. Masks are broadcastable to their target (per sample here; per class, joint,
token or pixel for later kinds). All labels are parsed once, up front, so a bad label fails before
training starts with the manifest row named. An unreadable sample is not fatal: it comes back marked
bad, `collate` drops it from the batch and lists it in `batch["meta"]["bad"]`, and the trainer records it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import DataError
from ..tasks import Task
from .manifest import Manifest
from .transforms import (
    ClipParams,
    apply_params,
    check_augment,
    crop_origin,
    flip_permutations,
    flip_targets,
    sample_params,
)
from .video import read_video, sample_indices


class DecodedClips:
    """Decoded (and resized) clips shared by every dataset of this process that has `cache: true`.

    The runs of a study or the demo, their evaluations and the representation measurements read the same
    clips many times: each clip is decoded once per process. Keyed by the resolved file, segment, stream and
    the resize target. Bounded: once `MTLHAR_DECODED_CACHE_GB` (default 4) is held, further clips are decoded
    on every read instead of evicting others (no thrashing). Arrays are read-only; samples copy out of them.
    """

    def __init__(self, limit_bytes: int):
        self.limit, self.nbytes, self.store = limit_bytes, 0, {}

    def get(self, key):
        return self.store.get(key)

    def put(self, key, data: np.ndarray) -> None:
        if self.nbytes + data.nbytes <= self.limit:
            data.flags.writeable = False
            self.store[key] = data
            self.nbytes += data.nbytes

    def clear(self) -> None:
        self.store.clear()
        self.nbytes = 0


DECODED = DecodedClips(int(float(os.environ.get("MTLHAR_DECODED_CACHE_GB", "4")) * 2**30))


def release_decoded_clips() -> None:
    """Drop the clips held by the process-wide decoded-clip store (`DecodedClips`)."""
    DECODED.clear()


STREAMS = {
    "rgb": "video file at `path`, decoded with PyAV -> uint8 [3, T, H, W]",
    "seq": "array file (.npy, or .npz key 'x') at `path`, [T, C] float (IMU windows, features)",
    "pose": "synthetic-world pose file at `pose` -> [T, 2 * joints] float, normalised to the frame",
    "features": "feature store array at `path` (`mtlhar features`) -> [T, D] float, `frames` segments",
}


@dataclass(frozen=True)
class ClipPlan:
    """Everything random or size-dependent about turning a clip's frames into the model's input, decided
    before the pixels are seen (so the frames can be decoded elsewhere, e.g. on the GPU, and the result is
    the same): an optional resize, a crop origin, and the augmentation parameters."""

    resize: tuple[int, int] | None  # (height, width) to resize to first
    top: int | None  # crop origin (None: no fixed-size crop; the augmentation's box does it)
    left: int | None
    params: ClipParams | None = None


def plan_clip(
    height: int,
    width: int,
    size: int,
    *,
    short_side: int | None = None,
    rng: np.random.Generator | None = None,
    crop: tuple[int, int] | None = None,
    augment: dict | None = None,
) -> ClipPlan:
    """The plan for `height` x `width` frames: short side to `short_side` (default `size`) unless it already
    has that length, a `size` crop (centred, random from `rng`, or test crop `crop = (index, count)`), then
    `augment` parameters drawn from `rng`. With `augment.crop_scale` the random box is drawn on the frames
    as read and resized straight to `size` instead (no short-side resize first)."""
    if rng is not None and augment is not None and augment["crop_scale"] is not None:
        return ClipPlan(None, None, None, sample_params(rng, height, width, augment))
    target = short_side or size
    resize = None
    h, w = height, width
    if min(h, w) != target:
        scale = target / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        resize = (h, w)
    if crop is not None:
        top, left = crop_origin(crop[0], crop[1], h, w, size)
    elif rng is None:
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    params = sample_params(rng, size, size, augment) if rng is not None and augment is not None else None
    return ClipPlan(resize, top, left, params)


def apply_plan(x: torch.Tensor, plan: ClipPlan, size: int) -> torch.Tensor:
    """uint8 [T, 3, H, W] frames (any device) -> uint8 [3, T, size, size] as `plan` says. Only the crop is
    copied when no resize is needed (copying whole frames into another layout first cost 1.8 of 4.3 ms per
    16-frame clip read from a frame cache)."""
    if plan.resize is not None:
        y = F.interpolate(
            x.float().contiguous(),  # [T, 3, H, W] contiguous: ~1.4x faster than channels-last, same values
            size=plan.resize,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        x = y.round().clamp(0, 255).to(torch.uint8)
    if plan.top is not None:
        x = x[:, :, plan.top : plan.top + size, plan.left : plan.left + size]
    x = x.transpose(0, 1)  # [3, T, h, w]
    if plan.params is not None:
        return apply_params(x, plan.params, size)
    return x.contiguous()


def _tchw(clip: np.ndarray | torch.Tensor) -> torch.Tensor:
    """numpy [T, H, W, 3] (a view, no copy) or a tensor already [T, 3, H, W] -> tensor [T, 3, H, W]."""
    return torch.from_numpy(clip).permute(0, 3, 1, 2) if isinstance(clip, np.ndarray) else clip


def resize_clip(
    clip: np.ndarray | torch.Tensor,
    size: int,
    *,
    short_side: int | None = None,
    rng: np.random.Generator | None = None,
    crop: tuple[int, int] | None = None,
) -> torch.Tensor:
    """uint8 frames -> uint8 [3, T, size, size]; `clip` is numpy [T, H, W, 3] (decoded video) or a tensor
    [T, 3, H, W] (the layout JPEG decoding returns, e.g. `FrameCache.read_frames`).

    The short side is resized to `short_side` (default `size`) unless it already has that length, then a
    `size` x `size` crop is taken: centred, at a random position drawn from `rng` (training), or test crop
    `crop = (index, count)` of multi-view testing (`transforms.crop_origin`). With a frame cache built at
    short side 128 and `size` 112 this is the usual "128, crop 112" recipe with no resampling at all in the
    loader.
    """
    x = _tchw(clip)
    plan = plan_clip(x.shape[-2], x.shape[-1], size, short_side=short_side, rng=rng, crop=crop)
    return apply_plan(x, plan, size)


def _resize_short_side(clip: np.ndarray, short: int) -> np.ndarray:
    """uint8 [T, H, W, 3] with its short side resized to `short` (aspect ratio kept)."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    y = F.interpolate(
        x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _load_array(path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"array file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            arr = arr["x"] if "x" in arr.files else arr[arr.files[0]]
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot read array ({e})") from None
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a [T, C] array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{path}: non-finite value (NaN or inf) at step {bad[0]}, channel {bad[1]}")
    return arr


class _Window:
    """Stands in for the Generator of `sample_indices` with one fixed draw `frac` in [0, 1): temporal window
    `j` of `K` of multi-view testing uses `(j + 0.5) / K`, so the windows are evenly spaced and fixed."""

    def __init__(self, frac: float):
        self.frac = frac

    def random(self, k: int) -> np.ndarray:
        return np.full(k, self.frac)

    def integers(self, low: int, high: int) -> int:
        return low + round(self.frac * (high - 1 - low))


class ClipDataset(Dataset):
    """Clips of one split of a manifest, with targets and masks for every task.

    Training samples (`train=True`) get `augment` (see `mtlhar.data.transforms`; None or {} = none) with
    one set of parameters per clip drawn from (seed, epoch, row); a flipped clip's targets swap the classes
    its tasks declare in `args.flip_swap`. Evaluation samples can be read as `test_clips` temporal windows x
    `test_crops` spatial crops (`views`, `view_item`, `Views`); `mtlhar.evaluate` averages their outputs.
    """

    def __init__(
        self,
        manifest: Manifest,
        tasks: Sequence[Task],
        *,
        split: str | None,
        stream: str = "rgb",
        frames: int = 8,
        size: int = 64,
        sampler: str = "uniform",
        stride: int = 1,
        train: bool = False,
        seed: int = 0,
        cache: bool = False,
        frame_cache: str | None = None,
        short_side: int | None = None,
        augment: dict | None = None,
        test_clips: int = 1,
        test_crops: int = 1,
        decoder: str | None = None,
        decode_on_device: bool = False,
    ):
        if stream not in STREAMS:
            raise DataError(f"unknown input stream {stream!r}; available: {sorted(STREAMS)}")
        if test_clips < 1 or test_crops < 1:
            raise ValueError(f"test_clips and test_crops must be >= 1, got {test_clips} and {test_crops}")
        self.augment = check_augment(augment)
        self.test_clips, self.test_crops = test_clips, test_crops if stream == "rgb" else 1
        self.flip_perms = flip_permutations(tasks)  # checked even with flipping off: a typo fails early
        self.manifest, self.tasks, self.split = manifest, list(tasks), split
        self.stream, self.frames, self.size, self.short_side = stream, frames, size, short_side
        self.sampler, self.stride, self.train, self.seed = sampler, stride, train, seed
        self.indices = manifest.indices(split)
        self.epoch = 0
        self.decoder = decoder  # read_video backend (None: $MTLHAR_VIDEO_BACKEND, else pyav)
        if decode_on_device and (frame_cache is None or stream != "rgb"):
            raise DataError("data.jpeg_decode: device needs data.frame_cache and the rgb stream")
        self.decode_on_device = decode_on_device  # training clips: JPEG bytes, decoded per batch later
        self.cache = cache  # decoded clips go to the process-wide store `DECODED`
        self._last: tuple[int, np.ndarray] | None = None  # the views of one clip decode it once
        self.frame_cache = None
        if frame_cache is not None:
            from .frame_cache import FrameCache

            self.frame_cache = FrameCache(frame_cache)
        for t in self.tasks:
            manifest.require_column(t.column, t.name)
        self.labels = [self._encode_row(i) for i in self.indices]
        for t in self.tasks:
            if t.args.get("shuffle_labels"):
                self._shuffle_labels(t.name, int(t.args.get("shuffle_seed", 0)))

    def _shuffle_labels(self, task: str, seed: int) -> None:
        """Negative control: the task's labels permuted across the clips of this split (a fixed permutation
        from `seed` and the split name), so that they keep their frequencies but say nothing about the input."""
        key = [seed, *self.split.encode()]
        perm = np.random.default_rng(key).permutation(len(self.labels))
        values = [self.labels[j][task] for j in perm]
        for lab, v in zip(self.labels, values):
            lab[task] = v

    def _encode_row(self, row: int):
        where = self.manifest.where(row)
        cells = self.manifest.rows[row]
        return {
            t.name: t.spec.encode_row(t, cells, where)  # kinds that read several columns (caption refs)
            if hasattr(t.spec, "encode_row")
            else t.spec.encode(t, cells.get(t.column, ""), where)
            for t in self.tasks
        }

    def set_epoch(self, epoch: int) -> None:
        """Random sampling choices depend on (seed, epoch, index) only, so a resumed run sees the same data."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def labelled_counts(self) -> dict[str, int]:
        return {t.name: int(sum(bool(lab[t.name][1].all()) for lab in self.labels)) for t in self.tasks}

    @property
    def views(self) -> int:
        """Views per clip at evaluation (1 for training sets): test_clips x test_crops."""
        return 1 if self.train else self.test_clips * self.test_crops

    def _read(self, row: int) -> np.ndarray:
        cells = self.manifest.rows[row]
        key = None
        if self.cache:
            path = self.manifest.resolve(cells.get("pose", "") if self.stream == "pose" else cells["path"])
            try:  # a file rewritten in place is decoded again
                st = path.stat()
            except OSError:
                st = None
            seg = (cells.get("start"), cells.get("end"))
            stamp = (st.st_mtime_ns, st.st_size) if st else None
            key = (str(path), stamp, seg, self.stream, self.short_side, self.size)
            data = DECODED.get(key)
            if data is not None:
                return data
        if self._last is not None and self._last[0] == row:
            return self._last[1]
        if self.stream == "rgb":
            start = float(cells["start"]) if cells.get("start") else None
            end = float(cells["end"]) if cells.get("end") else None
            data = read_video(self.manifest.resolve(cells["path"]), start, end, backend=self.decoder)
            if min(data.shape[1:3]) != (
                self.short_side or self.size
            ):  # resize once (cached), crop per sample
                target = self.short_side or self.size
                data = _resize_short_side(data, target)
        elif self.stream in ("seq", "features"):
            data = _load_array(self.manifest.resolve(cells["path"]))
        else:
            data = self._read_pose(cells)
        if key is not None:
            DECODED.put(key, data)
        if self.views > 1:
            self._last = (row, data)
        return data

    def _read_pose(self, cells) -> np.ndarray:
        path = self.manifest.resolve(cells.get("pose", ""))
        if not cells.get("pose") or not path.is_file():
            raise DataError(f"pose file not found: {path}")
        with np.load(path) as z:
            joints = z["joints"].astype(np.float32)  # [T, J, 2] pixels
            size = float(z["size"]) if "size" in z.files else float(self.size)
        return (joints / size - 0.5).reshape(joints.shape[0], -1)

    def _frames(self, row: int, pick) -> np.ndarray | torch.Tensor:
        """The sampled frames (or steps) of a row; `pick` is the Generator (training), a `_Window` or None.
        Frames read from a frame cache are a uint8 tensor [T, 3, H, W], others numpy (rgb: [T, H, W, 3])."""
        if self.frame_cache is not None and self.stream == "rgb":
            from .frame_cache import _key  # read only the sampled frames (JPEG) instead of decoding

            key = _key(self.manifest.rows[row])
            n = self.frame_cache.n_frames(key)
            idx = sample_indices(n, self.frames, mode=self.sampler, stride=self.stride, rng=pick)
            return self.frame_cache.read_frames(key, idx.tolist())
        data = self._read(row)
        idx = sample_indices(len(data), self.frames, mode=self.sampler, stride=self.stride, rng=pick)
        return data[idx]

    def _plan(self, height: int, width: int, rng, crop) -> ClipPlan:
        return plan_clip(
            height,
            width,
            self.size,
            short_side=self.short_side,
            rng=rng,
            crop=crop,
            augment=self.augment if rng is not None else None,
        )

    def _rgb(self, frames: np.ndarray | torch.Tensor, rng, crop) -> tuple[torch.Tensor, bool]:
        """uint8 [T, H, W, 3] (numpy) or [T, 3, H, W] (tensor) -> ([3, T, size, size], flipped)."""
        x = _tchw(frames)
        plan = self._plan(x.shape[-2], x.shape[-1], rng, crop)
        return apply_plan(x, plan, self.size), bool(plan.params is not None and plan.params.flip)

    def _item(self, i: int, view: int | None) -> dict:
        row = self.indices[i]
        meta = {"id": self.manifest.rows[row]["id"], "row": row}
        rng = np.random.default_rng([self.seed, self.epoch, row]) if self.train else None
        window = crop = None
        if view is not None and not self.train:
            meta["view"] = view
            j, c = divmod(view, self.test_crops)
            window = _Window((j + 0.5) / self.test_clips) if self.test_clips > 1 else None
            crop = (c, self.test_crops) if self.test_crops > 1 else None
        flipped = False
        try:
            if self.decode_on_device and self.train:  # JPEG bytes + the plan; pixels come later, batched
                x = self._encoded_clip(row, rng)
                params = x["plan"].params
                return _sample_dict({"rgb_jpeg": x}, self._flip_labels(i, bool(params and params.flip)), meta)
            frames = self._frames(row, rng if rng is not None else window)
            if self.stream == "rgb":
                x, flipped = self._rgb(frames, rng, crop)
            else:
                x = torch.from_numpy(np.ascontiguousarray(frames))
        except DataError as e:
            return {"bad": {**meta, "path": self.manifest.rows[row].get("path", ""), "reason": str(e)}}
        return _sample_dict({self.stream: x}, self._flip_labels(i, flipped), meta)

    def _flip_labels(self, i: int, flipped: bool) -> dict:
        """The labels of clip `i`, with the flip rules applied when its frames were flipped."""
        labels = self.labels[i]
        if flipped and self.flip_perms:
            targets = flip_targets({k: v[0] for k, v in labels.items()}, True, self.flip_perms)
            labels = {k: (targets[k], v[1]) for k, v in labels.items()}
        return labels

    def _encoded_clip(self, row: int, rng) -> dict:
        """A training clip read from the frame cache as JPEG bytes with its plan (`data.jpeg_decode:
        device`): decoded for the whole batch at once by `decode_batch_on`, on the training device."""
        from .frame_cache import _key

        key = _key(self.manifest.rows[row])
        entry = self.frame_cache._entry(key)
        idx = sample_indices(entry["n"], self.frames, mode=self.sampler, stride=self.stride, rng=rng)
        encoded = self.frame_cache.read_encoded(key, idx.tolist())
        plan = self._plan(entry["height"], entry["width"], rng, None)
        return {
            "frames": encoded,
            "plan": plan,
            "size": self.size,
            "where": self.frame_cache._where(key),
            "path": self.manifest.rows[row].get("path", ""),
        }

    def __getitem__(self, i: int) -> dict:
        return self._item(i, None)

    def view_item(self, i: int, view: int) -> dict:
        """View `view` (of `self.views`) of clip `i`: temporal window `view // test_crops`, spatial crop
        `view % test_crops`; deterministic."""
        return self._item(i, view)


class Views(Dataset):
    """Every view of every clip of an evaluation dataset, in order: clip 0's views, then clip 1's, ..."""

    def __init__(self, dataset: ClipDataset):
        self.dataset, self.views = dataset, dataset.views

    def __len__(self) -> int:
        return len(self.dataset) * self.views

    def __getitem__(self, j: int) -> dict:
        return self.dataset.view_item(j // self.views, j % self.views)


def _sample_dict(x, labels, meta) -> dict:
    return {
        "inputs": x,
        "targets": {k: v[0] for k, v in labels.items()},
        "mask": {k: v[1] for k, v in labels.items()},
        "meta": meta,
    }


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch; samples that could not be read go to `meta["bad"]`."""
    good = [s for s in samples if "bad" not in s]
    bad = [s["bad"] for s in samples if "bad" in s]
    if not good:
        return {
            "inputs": {},
            "targets": {},
            "mask": {},
            "meta": {"ids": [], "rows": [], "bad": bad},
            "size": 0,
        }
    first = good[0]
    return {
        "inputs": {
            k: [s["inputs"][k] for s in good]
            if k == "rgb_jpeg"
            else torch.stack([s["inputs"][k] for s in good])
            for k in first["inputs"]
        },
        "targets": {k: torch.stack([s["targets"][k] for s in good]) for k in first["targets"]},
        "mask": {k: torch.stack([s["mask"][k] for s in good]) for k in first["mask"]},
        "meta": {
            "ids": [s["meta"]["id"] for s in good],
            "rows": [s["meta"]["row"] for s in good],
            "bad": bad,
        },
        "size": len(good),
    }


def decode_batch_on(batch: dict, device: torch.device | str) -> dict:
    """Turn a batch's `rgb_jpeg` input (`data.jpeg_decode: device`) into `rgb` on `device`: every frame of
    every clip decoded in one `decode_jpeg` call there (nvjpeg on CUDA), then each clip's plan applied
    (resize, crop, augmentation), exactly as the loader would have. A clip with a corrupt frame is dropped
    from the batch and listed in `meta["bad"]`, as an unreadable sample is by `collate`."""
    from .frame_cache import decode_batch

    clips = batch["inputs"].get("rgb_jpeg")
    if clips is None:
        return batch
    encoded = [f for c in clips for f in c["frames"]]
    try:
        frames = decode_batch(encoded, device, where=clips[0]["where"]).split(
            [len(c["frames"]) for c in clips]
        )
    except DataError:  # find the bad clip(s): decode each on its own
        frames = []
        for c in clips:
            try:
                frames.append(decode_batch(c["frames"], device, where=c["where"]))
            except DataError as e:
                frames.append(e)
    keep = [j for j, f in enumerate(frames) if not isinstance(f, DataError)]
    bad = [
        {
            "id": batch["meta"]["ids"][j],
            "row": batch["meta"]["rows"][j],
            "path": clips[j]["path"],
            "reason": str(frames[j]),
        }
        for j, f in enumerate(frames)
        if isinstance(f, DataError)
    ]
    inputs = {k: v for k, v in batch["inputs"].items() if k != "rgb_jpeg"}
    out = dict(batch, inputs=inputs)
    if bad:
        index = torch.tensor(keep, dtype=torch.long)
        out["targets"] = {k: v[index] for k, v in batch["targets"].items()}
        out["mask"] = {k: v[index] for k, v in batch["mask"].items()}
        out["meta"] = dict(
            batch["meta"],
            ids=[batch["meta"]["ids"][j] for j in keep],
            rows=[batch["meta"]["rows"][j] for j in keep],
            bad=batch["meta"]["bad"] + bad,
        )
        out["size"] = len(keep)
    if keep:
        inputs["rgb"] = torch.stack([apply_plan(frames[j], clips[j]["plan"], clips[j]["size"]) for j in keep])
    return out


def resolve_tasks(task_cfgs, manifest: Manifest) -> list[Task]:
    """Build Tasks from their configs, taking label spaces from the manifest (classes.json or the column)."""
    from ..tasks import KINDS, build_task, link_hierarchies

    tasks = []
    for i, cfg in enumerate(task_cfgs):
        column = cfg.column or cfg.name
        classes = None
        kind = KINDS.get(cfg.kind)
        if kind is not None and hasattr(kind, "resolve_classes") and not cfg.classes:
            classes = kind.resolve_classes(cfg, manifest)  # e.g. a caption vocabulary from the train split
        elif kind is not None and kind.needs_classes and not cfg.classes:
            manifest.require_column(column, cfg.name)
            classes = manifest.classes_for(
                column, multilabel=cfg.kind == "multilabel", separator=cfg.separator
            )
        tasks.append(build_task(cfg, classes, where=f"tasks.{i}"))
    link_hierarchies(tasks, manifest)  # validates declared parents; stores fine -> coarse maps
    return tasks
