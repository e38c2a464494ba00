"""Predict every task of a trained run for the inputs it was trained on: a file or a folder.

- runs on video (`data.stream: rgb`): video files, decoded and sampled as at test time;
- runs on arrays (IMU windows, pose, any [T, C] stream): `.npy`, `.npz` (key `x` or the first array) and
  `.csv` files (one row per time step, one numeric column per channel; a header row is skipped);
- runs on a feature store (`data.stream: features`): feature arrays (`.npy` / `.npz`), or video files,
  which go through the feature extractor the store was made with (its `features.json`) first.
Array inputs are read through the run's own dataset code (the same views and preprocessing as `mtlhar
eval`). A file that cannot be read does not stop the others: it becomes an entry with an "error".
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .data.dataset import resize_clip
from .data.manifest import Manifest
from .data.video import read_video, sample_indices
from .errors import DataError
from .evaluate import load_run

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"}
ARRAY_SUFFIXES = {".npy", ".npz", ".csv"}


def input_files(path: Path, suffixes: set[str] = VIDEO_SUFFIXES) -> list[Path]:
    """The files to predict: `path` itself, or the files of folder `path` with one of `suffixes`."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{path}: no input files ({', '.join(sorted(suffixes))}) in this folder")
        return files
    if not path.exists():
        raise DataError(f"input not found: {path}")
    return [path]


def _short_clip_warning(path: Path, n_frames: int, data) -> str | None:
    """One line when `n_frames` is fewer than the run's clip needs (frames get repeated), else None."""
    k, stride = data.frames, data.stride
    needed = (k - 1) * stride + 1 if data.sampler == "dense" else k
    if n_frames >= needed:
        return None
    wanted = f"{k} frames {stride} apart ({needed} frames)" if needed != k else f"{k} frames"
    repeated = "that frame repeated" if n_frames == 1 else "repeated frames"
    return (
        f"{path}: only {n_frames} frame{'s' if n_frames != 1 else ''} decoded, the run samples {wanted} "
        f"(data.frames={k}); predicted from {repeated}, the prediction may be unreliable"
    )


@torch.no_grad()
def predict_path(run_dir: str | Path, input_path: str | Path, *, top: int = 3) -> list[dict]:
    """Per file: every task's top-k classes (classification), labels above 0.5 (multi-label) or values.

    Each entry is {"file", "predictions"} plus, for video, "frames_decoded" and a "warning" (one line)
    when the video has fewer frames than the run's clip and was predicted from repeated frames. A file
    that cannot be read does not stop the others: its entry is {"file", "error"}, the error naming the
    file. Raises DataError only for a bad run or input path (not a run, nothing there, a folder without
    input files of the run's kind).
    """
    model, tasks, cfg = load_run(run_dir)
    stream = cfg.data.stream
    if stream == "rgb":
        return [_predict_video(model, tasks, cfg, f, top) for f in input_files(Path(input_path))]
    suffixes = ARRAY_SUFFIXES | (VIDEO_SUFFIXES if stream == "features" else set())
    files = input_files(Path(input_path), suffixes)
    with tempfile.TemporaryDirectory(prefix="mtlhar-predict-") as tmp:
        arrays, results = _as_arrays(files, cfg, Path(tmp))
        if arrays:
            entries = _predict_arrays(model, tasks, cfg, [a for _, a in arrays], top)
            for (i, _), entry in zip(arrays, entries):
                results[i] = {"file": str(files[i]), **entry}
    return results


def _predict_video(model, tasks, cfg, f: Path, top: int) -> dict:
    try:
        clip = read_video(f, backend=cfg.data.decoder)
    except DataError as e:
        return {"file": str(f), "error": str(e)}
    idx = sample_indices(len(clip), cfg.data.frames, mode=cfg.data.sampler, stride=cfg.data.stride)
    x = resize_clip(clip[idx], cfg.data.size, short_side=cfg.data.short_side).unsqueeze(0)
    out = model({cfg.data.stream: x}, mode="eval")
    preds = {t.name: t.spec.decode(t, out.heads[t.name].output, k=top)[0] for t in tasks}
    entry = {"file": str(f), "frames_decoded": int(len(clip)), "predictions": preds}
    warning = _short_clip_warning(f, len(clip), cfg.data)
    if warning:
        entry["warning"] = warning
    return entry


def _as_arrays(files: list[Path], cfg, tmp: Path) -> tuple[list[tuple[int, Path]], list[dict]]:
    """Every input as an array file the run's dataset reads ((index, path) pairs), and a result list
    holding an "error" entry for each file that could not be made one."""
    results: list[dict] = [{} for _ in files]
    arrays: list[tuple[int, Path]] = []
    extractor = None
    for i, f in enumerate(files):
        try:
            if f.suffix.lower() in VIDEO_SUFFIXES:
                extractor = extractor or FeatureExtractor.for_run(cfg)
                path = tmp / f"{i}.npy"
                np.save(path, extractor(f))
            elif f.suffix.lower() == ".csv":
                path = tmp / f"{i}.npy"
                np.save(path, read_csv_series(f))
            else:
                path = f
            arrays.append((i, path))
        except DataError as e:
            results[i] = {"file": str(f), "error": str(e)}
    return arrays, results


def read_csv_series(path: Path) -> np.ndarray:
    """A [T, C] float32 series from a numeric CSV: one row per time step, one column per channel; a first
    row that is not numeric is a header. Errors name the file, row and column."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline().strip().split(",")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as UTF-8 text ({e})") from None
    try:
        [float(v) for v in first]
        skip = 0
    except ValueError:
        skip = 1
    try:
        x = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float32, encoding="utf-8-sig")
    except ValueError as e:
        raise DataError(f"{path}: not a numeric series ({str(e).splitlines()[0]})") from None
    if not len(x):
        raise DataError(f"{path}: no rows (expected one row per time step, one column per channel)")
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}: row {r + 1 + skip}, column {c + 1} is NaN or infinite")
    return x


def _predict_arrays(model, tasks, cfg, paths: list[Path], top: int) -> list[dict]:
    """Predictions for array files through the run's dataset (eval views), one entry per path."""
    from .build import make_dataset
    from .evaluate import predict_outputs

    manifest = _manifest_of(paths, tasks)
    ds = make_dataset(cfg, manifest, tasks, "predict", train=False, views=True, cache=False)
    pred = predict_outputs(model, ds, device=torch.device("cpu"), batch_size=16)
    by_id = {i: k for k, i in enumerate(pred["ids"])}
    bad = {b["id"]: b["reason"] for b in pred["bad"]}
    entries = []
    for r in manifest.rows:
        if r["id"] in bad or r["id"] not in by_id:
            entries.append({"error": bad.get(r["id"], "could not be read")})
            continue
        j = by_id[r["id"]]
        preds = {
            t.name: t.spec.decode(t, torch.from_numpy(pred["outputs"][t.name][j : j + 1]), k=top)[0]
            for t in tasks
        }
        entries.append({"predictions": preds})
    return entries


def _manifest_of(paths: list[Path], tasks) -> Manifest:
    """A one-split manifest of the inputs, with every task's column empty (no label)."""
    columns = ["id", "path", "split", *dict.fromkeys(t.column for t in tasks)]
    rows = [
        {
            "id": f"input{i}",
            "path": str(Path(p).resolve()),
            "split": "predict",
            **{t.column: "" for t in tasks},
        }
        for i, p in enumerate(paths)
    ]
    return Manifest(path=Path("<predict inputs>"), root=Path("/"), columns=columns, rows=rows)


class FeatureExtractor:
    """The extractor a feature store was made with (its `features.json`): video file -> [T, D] features."""

    def __init__(self, settings: dict, where: Path):
        from .models import build_encoder

        self.settings, self.where = settings, where
        self.model = build_encoder(settings["encoder"], **settings.get("encoder_args", {})).eval()

    @classmethod
    def for_run(cls, cfg) -> FeatureExtractor:
        meta = Path(cfg.data.manifest).parent / "features.json"
        if not meta.is_file():
            raise DataError(
                f"{meta}: the run's feature store has no features.json, so the extractor of a video is unknown; "
                "predict on feature arrays (.npy) instead"
            )
        settings = json.loads(meta.read_text())
        if not settings.get("encoder_args", {}).get("weights"):  # a random initialisation cannot be rebuilt
            raise DataError(
                f"{meta}: the store's extractor ({settings.get('encoder')!r} without weights) was randomly "
                "initialised, so the same features cannot be computed for a new video; predict on feature "
                "arrays (.npy) made with that store's extractor, or build the store from a weights file"
            )
        return cls(settings, meta)

    def __call__(self, video: Path) -> np.ndarray:
        from .features import clip_features

        s = self.settings
        clip = read_video(video)
        return clip_features(clip, self.model, window=s["window"], stride=s["stride"], size=s["size"])
