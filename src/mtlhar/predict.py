"""Predict every task of a trained run for video files (a file or a folder)."""

from __future__ import annotations

from pathlib import Path

import torch

from .data.dataset import resize_clip
from .data.video import read_video, sample_indices
from .errors import DataError
from .evaluate import load_run

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"}


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in this folder")
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

    Each entry is {"file", "frames_decoded", "predictions"}, plus "warning" (one line) when the video has
    fewer frames than the run's clip (`data.frames`, or its span with the dense sampler) and was predicted
    from repeated frames. A file that cannot be read (empty, corrupt, no video stream) does not stop the
    others: its entry is {"file", "error"}, the error naming the file. Raises DataError only for a bad run
    or input path (not a run, not the rgb stream, nothing there, a folder without video files).
    """
    model, tasks, cfg = load_run(run_dir)
    if cfg.data.stream != "rgb":
        raise DataError(
            f"{run_dir}: predict reads video files; this run was trained on the '{cfg.data.stream}' stream"
        )
    results = []
    for f in _files(Path(input_path)):
        try:
            clip = read_video(f, backend=cfg.data.decoder)
        except DataError as e:
            results.append({"file": str(f), "error": str(e)})
            continue
        idx = sample_indices(len(clip), cfg.data.frames, mode=cfg.data.sampler, stride=cfg.data.stride)
        x = resize_clip(clip[idx], cfg.data.size, short_side=cfg.data.short_side).unsqueeze(0)
        out = model({cfg.data.stream: x}, mode="eval")
        preds = {t.name: t.spec.decode(t, out.heads[t.name].output, k=top)[0] for t in tasks}
        entry = {"file": str(f), "frames_decoded": int(len(clip)), "predictions": preds}
        warning = _short_clip_warning(f, len(clip), cfg.data)
        if warning:
            entry["warning"] = warning
        results.append(entry)
    return results
