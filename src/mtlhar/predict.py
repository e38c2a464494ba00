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


@torch.no_grad()
def predict_path(run_dir: str | Path, input_path: str | Path, *, top: int = 3) -> list[dict]:
    """Per file: every task's top-k classes (classification), labels above 0.5 (multi-label) or values."""
    model, tasks, cfg = load_run(run_dir)
    if cfg.data.stream != "rgb":
        raise DataError(
            f"{run_dir}: predict reads video files; this run was trained on the '{cfg.data.stream}' stream"
        )
    results = []
    for f in _files(Path(input_path)):
        clip = read_video(f, backend=cfg.data.decoder)
        idx = sample_indices(len(clip), cfg.data.frames, mode=cfg.data.sampler, stride=cfg.data.stride)
        x = resize_clip(clip[idx], cfg.data.size, short_side=cfg.data.short_side).unsqueeze(0)
        out = model({cfg.data.stream: x}, mode="eval")
        preds = {t.name: t.spec.decode(t, out.heads[t.name].output, k=top)[0] for t in tasks}
        results.append({"file": str(f), "frames_decoded": int(len(clip)), "predictions": preds})
    return results
