"""A frame cache: decode every video once into JPEG frames in shards, read clips many times.

Why JPEG in shards: random access to a compressed video costs ~200x more per useful frame than sequential
decoding (DATA.md), while a JPEG frame is independently decodable (on the GPU with nvjpeg via
`torchvision.io.decode_jpeg(device="cuda")`), compact (a fraction of raw uint8 at quality 90) and read
with one seek. Shards (append-only files of a few hundred MB) keep the file count low on real datasets.

Layout of a cache folder:
- `shard-<worker>-<k>.bin`: concatenated JPEG bytes;
- `index-<worker>.jsonl`: one line per finished video: {"id", "shard", "offsets", "lengths", "fps",
  "height", "width", "n"}; a line is written only after its bytes are flushed, so an interrupted run
  resumes by skipping the ids already indexed (and trailing bytes past the last indexed frame are dropped);
- `meta.json`: the settings (short side, quality, fps) - a cache is reused only with the same settings.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .manifest import Manifest
from .video import read_video

SHARD_BYTES = 256 * 2**20


def _resize_short(frames: np.ndarray, short: int | None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, h, w] with the short side `short` (None: unchanged)."""
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    if short is None:
        return x.contiguous()
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    if abs(scale - 1) < 1e-6:
        return x.contiguous()
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    y = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def _subsample_fps(frames: np.ndarray, src_fps: float, fps: float | None) -> tuple[np.ndarray, float]:
    if not fps or fps >= src_fps:
        return frames, src_fps
    idx = np.arange(0, len(frames), src_fps / fps).astype(int)
    return frames[idx], fps


class _ShardWriter:
    def __init__(self, folder: Path, worker: int):
        self.folder, self.worker = folder, worker
        self.index_path = folder / f"index-{worker}.jsonl"
        done = _read_index(self.index_path)
        if self.index_path.is_file():  # rewrite without a line cut by a crash, so appends start clean
            self.index_path.write_text("".join(json.dumps(e) + "\n" for e in done.values()))
        self.done = set(done)
        self.k = max((e["shard"] for e in done.values()), default=-1)
        self.file = None
        if self.k >= 0:
            # drop bytes past the last indexed frame of the current shard (an interrupted video)
            path = self._path(self.k)
            ends = [
                o + n
                for e in done.values()
                if e["shard"] == self.k
                for o, n in zip(e["offsets"], e["lengths"])
            ]
            with open(path, "r+b") as f:
                f.truncate(max(ends, default=0))
            self.file = open(path, "ab")
        else:
            self._next()

    def _path(self, k: int) -> Path:
        return self.folder / f"shard-{self.worker}-{k}.bin"

    def _next(self) -> None:
        if self.file:
            self.file.close()
        self.k += 1
        self.file = open(self._path(self.k), "ab")

    def add(self, vid: str, jpegs: Sequence[bytes], fps: float, hw: tuple[int, int]) -> None:
        if self.file.tell() > SHARD_BYTES:
            self._next()
        offsets, lengths = [], []
        for b in jpegs:
            offsets.append(self.file.tell())
            lengths.append(len(b))
            self.file.write(b)
        self.file.flush()
        os.fsync(self.file.fileno())
        entry = {
            "id": vid,
            "shard": self.k,
            "offsets": offsets,
            "lengths": lengths,
            "fps": fps,
            "height": hw[0],
            "width": hw[1],
            "n": len(jpegs),
        }
        with open(self.index_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.done.add(vid)

    def close(self) -> None:
        if self.file:
            self.file.close()


def _read_index(path: Path) -> dict[str, dict]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that video is redone
                continue
            out[e["id"]] = e
    return out


def _jpeg():
    """torchvision's JPEG codec (nvjpeg on CUDA); its 0.29 deprecation notice points to torchcodec, which
    needs system FFmpeg libraries: keep torchvision until torchcodec is an install-free option."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg
    return encode_jpeg, decode_jpeg


def _encode_worker(args) -> tuple[int, list[dict]]:
    encode_jpeg, _ = _jpeg()

    folder, worker, items, short, quality, fps, decoder = args
    writer = _ShardWriter(Path(folder), worker)
    failed = []
    try:
        for vid, path, start, end in items:
            if vid in writer.done:
                continue
            try:
                frames = read_video(path, start, end, backend=decoder)
            except DataError as e:
                failed.append({"id": vid, "path": str(path), "reason": str(e)})
                continue
            src_fps = _probe_fps(path)
            frames, out_fps = _subsample_fps(frames, src_fps, fps)
            x = _resize_short(frames, short)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                jpegs = [bytes(b.numpy().tobytes()) for b in encode_jpeg(list(x), quality=quality)]
            writer.add(vid, jpegs, out_fps, tuple(x.shape[-2:]))
    finally:
        writer.close()
    return worker, failed


def _probe_fps(path) -> float:
    import av

    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
        return float(rate) if rate else 25.0


def build_cache(
    manifest: Manifest | str | Path,
    out: str | Path,
    *,
    short_side: int | None = 128,
    fps: float | None = None,
    quality: int = 90,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    decoder: str | None = None,
) -> dict:
    """Decode every video of a manifest once into the cache at `out` (resumable; parallel over processes).

    `decoder`: the video decoder (`read_video`'s backend; None: $MTLHAR_VIDEO_BACKEND, else pyav).
    Returns {"videos": n, "failed": [{"id", "path", "reason"}], "bytes": size of the shards}.
    """
    from .video import video_backend

    decoder = video_backend(decoder)  # an unknown name fails here, not in every worker
    manifest = manifest if isinstance(manifest, Manifest) else Manifest.read(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"short_side": short_side, "fps": fps, "quality": quality, "format": "jpeg-shards-1"}
    meta_path = out / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) != meta:
        raise DataError(
            f"{out}: a frame cache with other settings {meta_path.read_text()} is here; use another --out"
        )
    meta_path.write_text(json.dumps(meta))
    seen, items = set(), []
    for r in manifest.rows:
        key = clip_key(r)
        if key in seen:
            continue
        seen.add(key)
        start = float(r["start"]) if r.get("start") else None
        end = float(r["end"]) if r.get("end") else None
        items.append((key, str(manifest.resolve(r["path"])), start, end))
    workers = max(1, min(workers, len(items)))
    chunks = [items[w::workers] for w in range(workers)]
    jobs = [(str(out), w, chunks[w], short_side, quality, fps, decoder) for w in range(workers)]
    failed: list[dict] = []
    if workers == 1:
        failed = _encode_worker(jobs[0])[1]
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _, f in pool.map(_encode_worker, jobs):
                failed += f
    if progress:
        progress(len(items), len(items))
    size = sum(p.stat().st_size for p in out.glob("shard-*.bin"))
    return {"videos": len(items) - len(failed), "failed": failed, "bytes": size}


def clip_key(row: dict) -> str:
    """Cache key of a manifest row: the file and segment (several rows may share one video)."""
    seg = f"@{row.get('start', '')}-{row.get('end', '')}" if row.get("start") or row.get("end") else ""
    return row["path"] + seg


class FrameCache:
    """Reads frames of cached videos: `n_frames(key)`, `read_frames(key, indices) -> uint8 [T, 3, H, W]`
    tensor (what the dataset uses) and `read(key, indices) -> uint8 [T, H, W, 3]` numpy.

    GPU path: `read_batch([(key, indices), ...], device="cuda")` decodes the frames of many clips in one
    nvjpeg call and leaves them on the GPU; `read_encoded` + `decode_batch` are its two halves (read the
    JPEG bytes in data-loader workers, decode the collated batch in the training process).
    """

    def __init__(self, folder: str | Path, *, device: str = "cpu"):
        self.folder = Path(folder)
        if not (self.folder / "meta.json").is_file():
            raise DataError(
                f"{self.folder}: not a frame cache (no meta.json); build it with `mtlhar data cache`"
            )
        self.index: dict[str, dict] = {}
        self.shard_of: dict[str, Path] = {}
        for path in sorted(self.folder.glob("index-*.jsonl")):
            worker = path.stem.split("-", 1)[1]
            for key, e in _read_index(path).items():
                self.index[key] = e
                self.shard_of[key] = self.folder / f"shard-{worker}-{e['shard']}.bin"
        self.device = device

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def n_frames(self, key: str) -> int:
        return self._entry(key)["n"]

    def _entry(self, key: str) -> dict:
        e = self.index.get(key)
        if e is None:
            raise DataError(
                f"{self.folder}: video {key!r} is not in the frame cache (rebuild or resume the cache)"
            )
        return e

    def read_bytes(self, key: str, indices: Sequence[int]) -> list[bytes]:
        e = self._entry(key)
        out = []
        with open(self.shard_of[key], "rb") as f:
            for i in indices:
                f.seek(e["offsets"][i])
                out.append(f.read(e["lengths"][i]))
        return out

    def read_encoded(self, key: str, indices: Sequence[int]) -> list[torch.Tensor]:
        """The JPEG bytes of the frames `indices` of `key`, each a 1-D uint8 tensor (for `decode_batch`)."""
        return [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in self.read_bytes(key, indices)]

    def read_frames(
        self, key: str, indices: Sequence[int], device: str | torch.device | None = None
    ) -> torch.Tensor:
        """uint8 [T, 3, H, W] frames as the decoder returns them, on `device` (None: the cache's device)."""
        return decode_batch(self.read_encoded(key, indices), device or self.device, where=self._where(key))

    def read(self, key: str, indices: Sequence[int], device: str | torch.device | None = None) -> np.ndarray:
        """uint8 [T, H, W, 3] numpy frames (a view of `read_frames`' tensor, not a copy)."""
        return self.read_frames(key, indices, device).permute(0, 2, 3, 1).cpu().numpy()

    def read_batch(
        self, items: Sequence[tuple[str, Sequence[int]]], device: str | torch.device | None = None
    ) -> list[torch.Tensor]:
        """Frames of several clips, decoded together in one batch on `device` (None: the cache's device).

        `items` is [(key, indices), ...]; returns one uint8 [T, 3, H, W] tensor per item, left on `device`
        (on CUDA, nvjpeg decodes the whole batch at once: the JPEG bytes are the only host-to-GPU copy).
        """
        encoded, sizes = [], []
        for key, indices in items:
            encoded += self.read_encoded(key, indices)
            sizes.append(len(indices))
        where = ", ".join(dict.fromkeys(self._where(k) for k, _ in items))
        return list(decode_batch(encoded, device or self.device, where=where).split(sizes))

    def _where(self, key: str) -> str:
        return f"{self.shard_of[key]}: corrupt JPEG frame of {key!r} in the frame cache"


def decode_batch(
    encoded: Sequence[torch.Tensor],
    device: str | torch.device | None = None,
    *,
    where: str = "corrupt JPEG frame",
) -> torch.Tensor:
    """Decode JPEG frames (1-D uint8 tensors, e.g. from `FrameCache.read_encoded`) in one call to
    `torchvision.io.decode_jpeg` -> uint8 [N, 3, H, W] on `device`.

    `device`: "cuda" (nvjpeg, batched on the GPU), "cpu" (libjpeg-turbo), or None: CUDA when available.
    All frames of one batch must have the same size to be stacked (true within one cache).
    A frame that cannot be decoded raises DataError starting with `where`.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not len(encoded):
        raise ValueError("decode_batch: no frames to decode")
    _, decode_jpeg = _jpeg()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            frames = decode_jpeg(list(encoded), device=device)
    except RuntimeError as e:
        raise DataError(f"{where} ({e})") from None
    return torch.stack(frames)
