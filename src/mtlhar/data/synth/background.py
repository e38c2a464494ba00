"""Procedural backgrounds of the visual domains (studio, outdoor, lowlight)."""

from __future__ import annotations

import numpy as np

DOMAINS: list[str] = ["studio", "outdoor", "lowlight"]


def _interp(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation matrix [n_out, n_in] (resamples n_in control points onto n_out pixels)."""
    x = np.linspace(0, n_in - 1, n_out)
    i = np.minimum(np.floor(x).astype(int), n_in - 2)
    w = x - i
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), i] = 1 - w
    m[np.arange(n_out), i + 1] = w
    return m


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape [h, w] with about `cells` blobs across."""
    ch = max(2, int(round(cells * h / max(h, w))) + 1)
    cw = max(2, int(round(cells * w / max(h, w))) + 1)
    grid = rng.uniform(-1, 1, (ch, cw)).astype(np.float32)
    return _interp(h, ch) @ grid @ _interp(w, cw).T


def background(
    rng: np.random.Generator, domain: str, h: int, w: int, ground: float, figure: float
) -> np.ndarray:
    """Background image [h, w, 3] float32 (0-255); `ground` is the floor-contact row, `figure` the
    figure height in pixels (used to place the horizon)."""
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    if domain == "studio":
        wall = rng.uniform(115, 225) + rng.normal(0, 10, 3)
        floor = wall * rng.uniform(0.72, 0.9)
        horizon = ground - figure * rng.uniform(0.08, 0.2)
        img = np.where(rows < horizon, wall, floor) * np.ones((1, w, 1))
        return img.astype(np.float32)
    if domain == "outdoor":
        horizon = ground - figure * rng.uniform(0.12, 0.45)
        top = np.array([110, 160, 225]) + rng.normal(0, 15, 3)
        low = np.array([210, 225, 240]) + rng.normal(0, 10, 3)
        k = np.clip(rows / max(horizon, 1.0), 0, 1)
        sky = top * (1 - k) + low * k
        palettes = [(70, 125, 50), (150, 140, 90), (120, 120, 115), (95, 110, 60)]
        base = np.array(palettes[rng.integers(len(palettes))]) + rng.normal(0, 8, 3)
        tex = 1 + 0.22 * smooth_noise(rng, h, w, int(rng.integers(4, 9)))
        fine = rng.normal(0, 7, (h, w, 1))
        gnd = base * tex[..., None] * (0.85 + 0.3 * np.clip(rows - horizon, 0, h) / h) + fine
        trees = horizon - figure * (0.06 + 0.08 * (1 + smooth_noise(rng, 1, w, 6)[0]))
        tree_col = np.array([45, 80, 45]) * (0.8 + 0.2 * smooth_noise(rng, h, w, 10))[..., None]
        img = np.where(rows < horizon, np.where(rows > trees[None, :, None], tree_col, sky), gnd)
        return img.astype(np.float32)
    if domain == "lowlight":
        horizon = ground - figure * rng.uniform(0.08, 0.25)
        wall = rng.uniform(90, 170) + rng.normal(0, 12, 3)
        tex = 1 + 0.3 * smooth_noise(rng, h, w, int(rng.integers(3, 7)))
        img = np.where(rows < horizon, wall, wall * 0.7) * tex[..., None]
        return img.astype(np.float32)
    raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")


def vignette(h: int, w: int, strength: float) -> np.ndarray:
    """Radial darkening [h, w, 1] (lens fall-off in the low-light domain)."""
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / h
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / w
    return (1 - strength * 2 * (y[:, None] ** 2 + x[None, :] ** 2))[..., None]
