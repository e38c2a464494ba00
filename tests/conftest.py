"""Shared fixtures: tiny datasets made on the spot (no network, no real dataset)."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """uint8 [T, H, W, 3] -> an H.264 mp4 with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def moving_square(direction: int, colour: int, size: int = 32, frames: int = 8) -> np.ndarray:
    """A square moving right (0) or left (1) on black: direction needs motion, colour one frame."""
    clip = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        x = 2 + 2 * t if direction == 0 else size - 10 - 2 * t
        clip[t, 10:18, x : x + 8, colour] = 255
    return clip


def make_square_dataset(root: Path, n: int = 48, *, unlabelled_every: int = 5) -> Path:
    """Manifest with tasks direction (primary), colour (auxiliary), speed (regression), tags (multi-label);
    every `unlabelled_every`-th clip has no direction label (a missing label)."""
    rows = []
    for i in range(n):
        d, c = i % 2, (i // 2) % 3
        rel = f"videos/{i:03d}.mp4"
        write_video(root / rel, moving_square(d, c))
        split = "train" if i < n * 2 // 3 else ("val" if i < n * 5 // 6 else "test")
        rows.append(
            {
                "id": f"clip{i:03d}",
                "path": rel,
                "split": split,
                "group": f"g{i % 6}",
                "direction": "" if i % unlabelled_every == 0 else ("right", "left")[d],
                "colour": ("red", "green", "blue")[c],
                "speed": f"{0.5 + 0.25 * c:.2f}",
                "tags": f"{('right', 'left')[d]}|{('red', 'green', 'blue')[c]}",
            }
        )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="session")
def squares(tmp_path_factory) -> Path:
    return make_square_dataset(tmp_path_factory.mktemp("squares"))


def square_config(manifest: Path, **train) -> dict:
    return {
        "data": {"manifest": str(manifest), "frames": 8, "size": 32, "cache": True},
        "model": {"encoder": "small3d", "encoder_args": {"width": 4}},
        "tasks": [
            {"name": "direction"},
            {"name": "colour", "role": "auxiliary"},
            {"name": "speed", "kind": "regression", "role": "auxiliary"},
            {"name": "tags", "kind": "multilabel", "role": "auxiliary"},
        ],
        "train": {
            "steps": 12,
            "batch_size": 8,
            "eval_every": 6,
            "checkpoint_every": 3,
            "progress": False,
            "lr": 0.01,
            **train,
        },
    }


def whole_and_resumed(make_trainer, tmp_path: Path, kill_at: int):
    """Train one run unbroken (tmp_path/a) and the same run killed when it reaches step `kill_at`, then
    resumed (tmp_path/b). Returns both trainers; the tests compare their states bitwise."""
    import pytest

    class Killed(Exception):
        pass

    def kill(step):
        if step == kill_at:
            raise Killed

    whole = make_trainer(tmp_path / "a")
    whole.fit(log=None)
    with pytest.raises(Killed):
        make_trainer(tmp_path / "b").fit(on_step=kill, log=None)
    resumed = make_trainer(tmp_path / "b")
    resumed.fit(resume=True, log=None)
    return whole, resumed
