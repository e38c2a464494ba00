"""Which frames a sample reads and which random draws it makes.

Every random choice about a sample (its frame indices, then its clip plan) comes from one numpy Generator
seeded by (seed, epoch, row), or (seed, epoch, row, view) for view `view` of a sample that carries several
augmented views, so a resumed run sees exactly the same data. Evaluation reads fixed views: temporal
window `j` of `K` (`Window`) and spatial test crop `c` of `C` (`transforms.crop_origin`).

Example:
    >>> from mtlhar.data.video import sample_indices
    >>> sample_indices(40, 4, rng=Window(0.5)).tolist()
    [5, 15, 25, 35]
"""

from __future__ import annotations

import numpy as np


class Window:
    """Stands in for the Generator of `sample_indices` with one fixed draw `frac` in [0, 1): temporal window
    `j` of `K` of multi-view testing uses `(j + 0.5) / K`, so the windows are evenly spaced and fixed."""

    def __init__(self, frac: float):
        self.frac = frac

    def random(self, k: int) -> np.ndarray:
        return np.full(k, self.frac)

    def integers(self, low: int, high: int) -> int:
        return low + round(self.frac * (high - 1 - low))


def sample_rng(seed: int, epoch: int, row: int, view: int | None = None) -> np.random.Generator:
    """The Generator of one sample (`view` None: a sample with one view, seeded as it always was)."""
    key = [seed, epoch, row] if view is None else [seed, epoch, row, view]
    return np.random.default_rng(key)


def eval_view(view: int, test_clips: int, test_crops: int) -> tuple[Window | None, tuple[int, int] | None]:
    """(temporal window, spatial crop) of evaluation view `view` of `test_clips` x `test_crops`."""
    j, c = divmod(view, test_crops)
    window = Window((j + 0.5) / test_clips) if test_clips > 1 else None
    crop = (c, test_crops) if test_crops > 1 else None
    return window, crop
