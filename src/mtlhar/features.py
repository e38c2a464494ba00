"""Feature store: per-segment T x D features for every clip of a manifest, from any video encoder.

Each clip is cut into windows of `window` frames every `stride` frames (a clip shorter than one window
repeats its last frame); the encoder's `pooled` tap of each window is one row of the clip's [T, D]
array. Layout of the store::

    OUT/features.json     encoder, its arguments, window, stride, size, dim, the source manifest
    OUT/arrays/<id>.npy   float32 [T, D] per clip (written atomically: an interrupted run resumes)
    OUT/manifest.csv      the source manifest with `path` pointing at the arrays (labels kept), so that
                          `ClipDataset(stream="features")` and `mtlhar train` read it directly

Windows of several clips are batched together; the encoder runs on the GPU when one is present.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from .data.manifest import Manifest
from .data.video import read_video
from .errors import ConfigError, DataError

STORE_VERSION = 1


def resize_crop(clip: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [3, T, size, size]: short side to `size`, centre crop."""
    from .data.dataset import resize_clip

    return resize_clip(clip, size)


def windows(n_frames: int, window: int, stride: int) -> list[np.ndarray]:
    """Frame indices of each window; the last window ends at the clip's end, short clips repeat frames."""
    if n_frames <= window:
        return [np.minimum(np.arange(window), n_frames - 1)]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)  # cover the tail
    return [np.arange(s, s + window) for s in starts]


def array_name(clip_id: str) -> str:
    """A file name for a clip id: readable, unique, safe on every file system."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)[:80]
    return f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:8]}.npy"


def _settings(encoder: str, encoder_args: dict, window: int, stride: int, size: int, manifest) -> dict:
    return {
        "version": STORE_VERSION,
        "encoder": encoder,
        "encoder_args": encoder_args,
        "window": window,
        "stride": stride,
        "size": size,
        "source": str(Path(manifest.path).resolve()),
    }


def extract_features(
    source: str | Path,
    out: str | Path,
    *,
    encoder: str = "i3d",
    encoder_args: dict | None = None,
    window: int = 16,
    stride: int = 8,
    size: int = 224,
    batch_size: int = 8,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    model: torch.nn.Module | None = None,
) -> dict:
    """Write the feature store of every clip of the manifest `source` to `out` (see the module doc).

    `encoder` is an alias from `mtlhar info` or a dotted path; for `i3d` the default arguments load the
    Kinetics-400 weights. Already written clips are skipped, so running again resumes. Returns
    {"clips", "written", "skipped", "failed": [{"id", "path", "reason"}], "dim", "out"}.
    """
    if window < 1 or stride < 1:
        raise ConfigError(f"window ({window}) and stride ({stride}) must be >= 1")
    manifest = Manifest.read(source)
    if encoder_args is None:
        encoder_args = {"weights": "kinetics400"} if encoder == "i3d" else {}
    out = Path(out)
    arrays = out / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    settings = _settings(encoder, encoder_args, window, stride, size, manifest)
    meta_path = out / "features.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        changed = [k for k in settings if k != "source" and old.get(k) != settings[k]]
        if changed:
            raise ConfigError(
                f"{meta_path}: this store was made with other settings ({', '.join(changed)}: "
                f"{[old.get(k) for k in changed]}); use another --out or the same settings"
            )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if model is None:
        from .models import build_encoder

        model = build_encoder(encoder, **encoder_args)
    model = model.to(device).eval()

    todo = [i for i, r in enumerate(manifest.rows) if not (arrays / array_name(r["id"])).is_file()]
    failed: list[dict] = []
    dim = None
    done = 0
    total = len(todo)
    for row_index, feats in _encode(manifest, todo, model, window, stride, size, batch_size, device, failed):
        r = manifest.rows[row_index]
        dim = feats.shape[1]
        dest = arrays / array_name(r["id"])
        tmp = dest.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        os.replace(tmp, dest)
        done += 1
        if progress:
            progress(done, total)
    if dim is None:  # everything was there already
        first = next((arrays / array_name(r["id"]) for r in manifest.rows), None)
        dim = int(np.load(first, mmap_mode="r").shape[1]) if first and first.is_file() else None
    settings["dim"] = dim
    meta_path.write_text(json.dumps(settings, indent=2))
    _write_manifest(manifest, out, failed)
    return {
        "clips": len(manifest.rows),
        "written": done,
        "skipped": len(manifest.rows) - total,
        "failed": failed,
        "dim": dim,
        "out": str(out),
    }


@torch.no_grad()
def clip_features(
    clip: np.ndarray, model: torch.nn.Module, *, window: int, stride: int, size: int, batch_size: int = 8
) -> np.ndarray:
    """The [T, D] float32 features of one decoded clip (uint8 [T, H, W, 3]), as a feature store holds
    them: the `pooled` tap of every window (see `windows`), on the model's device."""
    if len(clip) == 0:
        raise DataError("the video has no frames")
    device = next(model.parameters()).device
    video = resize_crop(clip, size)
    idx = windows(video.shape[1], window, stride)
    feats = []
    for i in range(0, len(idx), batch_size):
        batch = torch.stack([video[:, torch.from_numpy(w)] for w in idx[i : i + batch_size]]).to(device)
        feats.append(model(batch)["pooled"].float().cpu().numpy())
    return np.concatenate(feats).astype(np.float32)


def _encode(manifest, rows, model, window, stride, size, batch_size, device, failed) -> Iterator:
    """Yield (row, [T, D] float32) per clip, running the encoder on batches of windows across clips;
    a clip is handed out as soon as all its windows are encoded (so an interruption loses little)."""
    pending: list[tuple[int, int]] = []  # clips waiting for features: (row, number of windows)
    batch: list[torch.Tensor] = []
    ready: list[np.ndarray] = []  # encoded window features not yet handed out, in order

    def flush() -> Iterator:
        if batch:
            with torch.no_grad():
                feats = model(torch.stack(batch).to(device))["pooled"].float().cpu().numpy()
            ready.extend(feats)
            batch.clear()
        while pending and len(ready) >= pending[0][1]:
            row, n = pending.pop(0)
            yield row, np.stack(ready[:n]).astype(np.float32)
            del ready[:n]

    for row in rows:
        cells = manifest.rows[row]
        try:
            start = float(cells["start"]) if cells.get("start") else None
            end = float(cells["end"]) if cells.get("end") else None
            clip = read_video(manifest.resolve(cells["path"]), start, end)
            if len(clip) == 0:
                raise DataError(f"{cells['path']}: no frames")
        except DataError as e:
            failed.append({"id": cells["id"], "path": cells.get("path", ""), "reason": str(e)})
            continue
        video = resize_crop(clip, size)  # [3, T, size, size]
        idx = windows(video.shape[1], window, stride)
        pending.append((row, len(idx)))
        for w in idx:
            batch.append(video[:, torch.from_numpy(w)])
            if len(batch) >= batch_size:
                yield from flush()
    yield from flush()


def _write_manifest(manifest: Manifest, out: Path, failed: list[dict]) -> None:
    """OUT/manifest.csv: the source rows whose features exist, `path` -> the array, labels unchanged."""
    bad = {f["id"] for f in failed}
    columns = [c for c in manifest.columns if c not in ("start", "end")]
    if "source_path" not in columns:
        columns.append("source_path")
    rows = []
    for r in manifest.rows:
        name = array_name(r["id"])
        if r["id"] in bad or not (out / "arrays" / name).is_file():
            continue
        row = {c: r.get(c, "") for c in columns}
        row["source_path"] = str(manifest.resolve(r["path"]))
        for c in ("pose", "flow"):  # side files stay readable from the store's folder
            if row.get(c):
                row[c] = str(manifest.resolve(row[c]))
        row["path"] = f"arrays/{name}"
        rows.append(row)
    tmp = out / "manifest.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "manifest.csv")
    classes = manifest.path.parent / "classes.json"
    if classes.is_file():
        (out / "classes.json").write_text(classes.read_text())
