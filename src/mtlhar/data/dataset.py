"""Samples: the clips of one split of a manifest, with every stream, target and mask.

A sample is `{"inputs": {stream: Tensor}, "targets": {task: Tensor}, "mask": {task: Tensor}, "meta": {...}}`
and a batch stacks them. Masks are broadcastable to their target (per sample here; per class, joint,
token or pixel for later kinds). All labels are parsed once, up front, so a bad label fails before
training starts with the manifest row named. An unreadable sample is not fatal: it comes back marked
bad, `collate` drops it from the batch and lists it in `batch["meta"]["bad"]`, and the trainer records it.

A sample is made in four stages, one module each:
- sampling (`mtlhar.data.sampling`): the frame indices, then the clip plan, from one seeded Generator;
- sources (`mtlhar.data.sources`): every declared stream (`streams=`, the config's `data.streams`) read at
  those same indices: video, arrays, feature stores, the synthetic world's flow, pose and masks;
- transforms (`mtlhar.data.transforms`): the one plan moves pixels, maps, flow and keypoints together;
- batch (`mtlhar.data.batch`): `collate` and the typed `Batch`.
With declared streams a sample also holds `"streams"` (every stream, inputs included), `"valid"` (per-pixel
validity of dense streams) and `meta["frames"]`, `meta["flipped"]`; with `sample_views > 1` it holds
`"views"`: that many augmented views of the clip, each from its own window and plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..tasks import Task
from .batch import Batch, collate, collate_batch, decode_batch_on, sample_dict
from .manifest import Manifest
from .sampling import Window as _Window
from .sampling import eval_view, sample_rng
from .sources import (
    DECODED,
    LEGACY_STREAMS,
    SOURCES,
    DecodedClips,
    ReadContext,
    Source,
    check_inputs,
    check_streams,
    release_decoded_clips,
)
from .transforms import (
    ClipPlan,
    apply_plan,
    check_augment,
    flip_permutations,
    flip_targets,
    move_stream,
    plan_clip,
    resize_clip,
)
from .video import read_video, sample_indices

__all__ = [  # the names callers import from here (several now live in the stage modules)
    "DECODED",
    "STREAMS",
    "Batch",
    "ClipDataset",
    "ClipPlan",
    "DecodedClips",
    "Views",
    "_Window",
    "apply_plan",
    "collate",
    "collate_batch",
    "decode_batch_on",
    "plan_clip",
    "release_decoded_clips",
    "resize_clip",
    "resolve_tasks",
]

STREAMS = {
    "rgb": "video file at `path`, decoded with PyAV -> uint8 [3, T, H, W]",
    "seq": "array file (.npy, or .npz key 'x') at `path`, [T, C] float (IMU windows, features)",
    "pose": "synthetic-world pose file at `pose` -> [T, 2 * joints] float, normalised to the frame",
    "features": "feature store array at `path` (`mtlhar features`) -> [T, D] float, `frames` segments",
}
DENSE = ("image", "map", "flow", "labels")  # kinds with a pixel grid a plan can be drawn for


def _read_video(*args, **kwargs):
    """`read_video`, looked up in this module at each call (tools and tests substitute `dataset.read_video`)."""
    return read_video(*args, **kwargs)


@dataclass
class _View:
    """One view of a sample: its streams as moved by its plan, their validity, frames and flip."""

    streams: dict
    valid: dict
    frames: np.ndarray
    flipped: bool


class ClipDataset(Dataset):
    """Clips of one split of a manifest, with targets and masks for every task.

    Training samples (`train=True`) get `augment` (see `mtlhar.data.transforms`; None or {} = none) with
    one set of parameters per clip drawn from (seed, epoch, row); a flipped clip's targets swap the classes
    its tasks declare in `args.flip_swap`. Evaluation samples can be read as `test_clips` temporal windows x
    `test_crops` spatial crops (`views`, `view_item`, `Views`); `mtlhar.evaluate` averages their outputs.

    `streams` declares more streams (`mtlhar.data.sources`), e.g. `{"flow": {"source": "synth_flow"}}`:
    each is read at the input's frame indices and moved by its plan; `inputs` names the streams the encoder
    reads (default `[stream]`). `sample_views` augmented views per sample, view v drawn from
    (seed, epoch, row, v).
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
        streams: dict | None = None,
        inputs: Sequence[str] | None = None,
        sample_views: int = 1,
    ):
        declared = check_streams(streams, "streams")
        if stream not in STREAMS and stream not in declared:
            raise DataError(f"unknown input stream {stream!r}; available: {sorted(STREAMS)}")
        if test_clips < 1 or test_crops < 1:
            raise ValueError(f"test_clips and test_crops must be >= 1, got {test_clips} and {test_crops}")
        if sample_views < 1 or (sample_views > 1 and test_clips * test_crops > 1):
            raise ValueError(f"sample_views must be >= 1 and goes without test views, got {sample_views}")
        self.inputs = check_inputs(inputs, declared, stream, "inputs")
        specs = {n: declared.get(n) or LEGACY_STREAMS[n] for n in self.inputs}  # inputs first: the anchor
        specs.update({n: spec for n, spec in declared.items() if n not in specs})
        anchor = specs[self.inputs[0]]
        self.augment = check_augment(augment)
        spatial = (anchor.get("kind") or SOURCES[anchor["source"]].kind) != "sequence"
        self.test_clips, self.test_crops = test_clips, test_crops if spatial else 1
        self.flip_perms = flip_permutations(tasks)  # checked even with flipping off: a typo fails early
        self.manifest, self.tasks, self.split = manifest, list(tasks), split
        self.stream, self.frames, self.size, self.short_side = stream, frames, size, short_side
        self.sampler, self.stride, self.train, self.seed = sampler, stride, train, seed
        self.sample_views, self.multi = sample_views, bool(declared) or sample_views > 1
        self.indices = manifest.indices(split)
        self.epoch = 0
        self.decoder = decoder  # read_video backend (None: $MTLHAR_VIDEO_BACKEND, else pyav)
        if decode_on_device and (
            frame_cache is None or self.inputs[0] != "rgb" or anchor["source"] != "video"
        ):
            raise DataError("data.jpeg_decode: device needs data.frame_cache and the rgb stream")
        if decode_on_device and sample_views > 1:
            raise DataError("data.jpeg_decode: device reads one view per sample; use worker with data.views")
        self.decode_on_device = decode_on_device  # training clips: JPEG bytes, decoded per batch later
        self.cache = cache  # decoded clips go to the process-wide store `DECODED`
        self.frame_cache = None
        if frame_cache is not None:
            from .frame_cache import FrameCache

            self.frame_cache = FrameCache(frame_cache)
        self.sources = self._sources(specs, declared)
        for t in self.tasks:
            manifest.require_column(t.column, t.name)
        self.labels = [self._encode_row(i) for i in self.indices]
        for t in self.tasks:
            if t.args.get("shuffle_labels"):
                self._shuffle_labels(t.name, int(t.args.get("shuffle_seed", 0)))

    def _sources(self, specs: dict, declared: dict) -> dict[str, Source]:
        """One reader per stream, the anchor (first input) first; declared streams' columns checked."""
        ctx = ReadContext(
            size=self.size,
            short_side=self.short_side,
            cache=self.cache,
            decoder=self.decoder,
            frame_cache=self.frame_cache,
            read_video=_read_video,
            keep_last=self.views > 1 or self.sample_views > 1,  # the views of one clip decode it once
        )
        out = {}
        for name, spec in specs.items():
            options = {k: v for k, v in spec.items() if k != "source"}
            out[name] = SOURCES[spec["source"]](name, self.manifest, options, ctx)
            if name in declared:
                out[name].check_column()
        return out

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
        """The whole clip of the input stream (e.g. a [T, C] sequence, for encoders fitted to the data)."""
        return self.sources.get(self.stream, self.sources[self.inputs[0]]).whole(row)

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

    def _open(self, row: int) -> dict:
        """Every stream of `row` opened, the anchor first; all must have the anchor's number of frames."""
        encoded = self.decode_on_device and self.train  # JPEG bytes + the plan; pixels come later, batched
        opened = {}
        for name, src in self.sources.items():
            opened[name] = src.open_encoded(row) if encoded and not opened else src.open(row)
        n = next(iter(opened.values())).length
        for name, o in opened.items():
            if o.length != n:
                raise DataError(
                    f"{self.manifest.where(row)}: stream '{name}' has {o.length} frames but stream "
                    f"'{self.inputs[0]}' has {n}; every stream of a sample is read at the same frames"
                )
        return opened

    def _view(self, row: int, rng, window, crop) -> _View:
        """One view of `row`: frame indices drawn first, then the plan, both from `rng` (training) or fixed
        (`window`, `crop`: evaluation); every stream read at those indices and moved by that plan."""
        opened = self._open(row)
        n = next(iter(opened.values())).length
        idx = sample_indices(
            n, self.frames, mode=self.sampler, stride=self.stride, rng=rng if rng is not None else window
        )
        reads = {name: o.read(idx) for name, o in opened.items()}
        kinds = {name: self.sources[name].kind for name in reads}
        first = next((n for n in reads if kinds[n] in DENSE), None)
        first = first or next((n for n in reads if kinds[n] == "keypoints"), None)
        plan = plan_hw = None
        if first is not None:
            plan_hw = reads[first].grid or self._frame_of(row, first, reads[first])
            plan = self._plan(plan_hw[0], plan_hw[1], rng, crop)
        streams, valid = {}, {}
        for name, r in reads.items():
            if isinstance(r.data, dict):  # JPEG frames, decoded per batch (`decode_batch_on`)
                path = self.manifest.rows[row].get("path", "")
                streams["rgb_jpeg"] = {**r.data, "plan": plan, "size": self.size, "path": path}
                continue
            grid = self._frame_of(row, name, r) if kinds[name] == "keypoints" else r.grid
            pairs = self.sources[name].flip_pairs
            x, inside = move_stream(kinds[name], r.data, plan, plan_hw, self.size, grid=grid, pairs=pairs)
            if r.valid is not None:  # frames without data (flow of the last frame)
                has = torch.from_numpy(np.asarray(r.valid, dtype=bool))
                inside = has[:, None, None] if inside is None else inside & has[:, None, None]
            streams[name] = x
            if inside is not None:
                valid[name] = inside
        flipped = bool(plan is not None and plan.params is not None and plan.params.flip)
        return _View(streams, valid, idx, flipped)

    def _frame_of(self, row: int, name: str, read) -> tuple[int, int]:
        """The pixel frame keypoints of stream `name` refer to: their own, else the input video's."""
        frame = read.frame or self.sources[self.inputs[0]].native_frame(row)
        if frame is None:
            raise DataError(
                f"{self.manifest.where(row)}: stream '{name}': keypoints need the size of the frame they were "
                f"measured in: set data.streams.{name}.frame_size: [height, width]"
            )
        return tuple(frame)

    def _item(self, i: int, view: int | None) -> dict:
        row = self.indices[i]
        meta = {"id": self.manifest.rows[row]["id"], "row": row}
        window = crop = None
        if view is not None and not self.train:
            meta["view"] = view
            window, crop = eval_view(view, self.test_clips, self.test_crops)
        try:
            if self.sample_views > 1:
                views = [
                    self._view(row, sample_rng(self.seed, self.epoch, row, v), None, None)
                    for v in range(self.sample_views)
                ]
            else:
                rng = sample_rng(self.seed, self.epoch, row) if self.train else None
                views = [self._view(row, rng, window, crop)]
        except DataError as e:
            return {"bad": {**meta, "path": self.manifest.rows[row].get("path", ""), "reason": str(e)}}
        return self._sample(i, views, meta)

    def _sample(self, i: int, views: list[_View], meta: dict) -> dict:
        first = views[0]
        keys = [
            "rgb_jpeg" if n not in first.streams and "rgb_jpeg" in first.streams else n for n in self.inputs
        ]
        sample = sample_dict({k: first.streams[k] for k in keys}, self._flip_labels(i, first.flipped), meta)
        if not self.multi:
            return sample
        meta.update(frames=torch.from_numpy(first.frames), flipped=first.flipped)
        sample["streams"] = {k: v for k, v in first.streams.items() if k != "rgb_jpeg"}
        sample["valid"] = first.valid
        if self.sample_views > 1:
            sample["views"] = [
                {
                    "inputs": {k: v.streams[k] for k in self.inputs},
                    "streams": v.streams,
                    "valid": v.valid,
                    "frames": torch.from_numpy(v.frames),
                    "flipped": v.flipped,
                }
                for v in views
            ]
        return sample

    def _flip_labels(self, i: int, flipped: bool) -> dict:
        """The labels of clip `i`, with the flip rules applied when its frames were flipped."""
        labels = self.labels[i]
        if flipped and self.flip_perms:
            targets = flip_targets({k: v[0] for k, v in labels.items()}, True, self.flip_perms)
            labels = {k: (targets[k], v[1]) for k, v in labels.items()}
        return labels

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
