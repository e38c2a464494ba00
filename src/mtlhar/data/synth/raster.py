"""Vectorised z-buffered rasterisation of capsules, discs and rectangles over all frames at once.

Every primitive is evaluated only inside a per-frame box of fixed size (the largest per-frame
bounding box of that primitive), so one primitive costs a handful of numpy ops on [T, h, w].
Pixel (row i, column j) has its centre at (x=j, y=i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHADES = 32  # quantisation levels of the shading factor (1.0 = level SHADES - 1)


@dataclass
class Canvas:
    """Per-pixel label, depth and shading-level buffers [T, H, W]; label 0 is the background.

    Shading is stored as a uint8 level in [0, SHADES) so that composing is a pure table lookup."""

    label: np.ndarray
    depth: np.ndarray
    shade: np.ndarray

    @classmethod
    def empty(cls, frames: int, height: int, width: int) -> Canvas:
        return cls(
            np.zeros((frames, height, width), np.uint8),
            np.full((frames, height, width), -np.inf, np.float32),
            np.full((frames, height, width), SHADES - 1, np.uint8),
        )


def _box(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame pixel grids xs [T, w], ys [T, h] covering [lo, hi] and lying inside the frame."""
    H, W = shape
    lo_i = np.floor(lo).astype(np.int64)
    size = np.ceil(hi).astype(np.int64) - lo_i + 1
    w = int(min(max(size[:, 0].max(), 1), W))
    h = int(min(max(size[:, 1].max(), 1), H))
    # Shifting (instead of cropping) the box keeps indices unique, so scatter writes are well defined.
    ox = np.minimum(np.maximum(lo_i[:, 0], 0), W - w)
    oy = np.minimum(np.maximum(lo_i[:, 1], 0), H - h)
    return ox[:, None] + np.arange(w), oy[:, None] + np.arange(h)


def _write(canvas: Canvas, xs, ys, inside, z, shade, label: int) -> None:
    """Z-buffered write of one primitive's box (flat indices: one index computation, cheap takes)."""
    T, H, W = canvas.label.shape
    idx = (np.arange(T)[:, None, None] * H + ys[:, :, None]) * W + xs[:, None, :]
    depth = canvas.depth.reshape(-1)
    upd = inside & (z > depth[idx])
    sel = idx[upd]
    depth[sel] = z[upd]
    canvas.label.reshape(-1)[sel] = label
    canvas.shade.reshape(-1)[sel] = (shade[upd] * (SHADES - 1) + 0.5).astype(np.uint8)


def capsule(canvas: Canvas, a, b, r, za, zb, label: int, shading: float = 0.32) -> None:
    """Segment a-b [T,2] thickened by radius r [T]; depth interpolated from za to zb [T]."""
    r = np.maximum(r, 0.5)
    lo = np.minimum(a, b) - r[:, None]
    hi = np.maximum(a, b) + r[:, None]
    xs, ys = _box(lo, hi, canvas.label.shape[1:])
    f32 = np.float32
    # Per-frame scalars as [T,1,1] float32 so that every op on the [T,h,w] box stays float32.
    ax, ay = (
        (a[:, 0, None, None] - xs[:, :1, None]).astype(f32),
        (a[:, 1, None, None] - ys[:, :1, None]).astype(f32),
    )
    dx, dy = (b - a)[:, 0, None, None].astype(f32), (b - a)[:, 1, None, None].astype(f32)
    inv_l2 = f32(1.0) / np.maximum(dx * dx + dy * dy, f32(1e-9))
    px = np.arange(xs.shape[1], dtype=f32)[None, None, :] - ax  # box-local coordinates, minus a
    py = np.arange(ys.shape[1], dtype=f32)[None, :, None] - ay
    u = np.minimum(np.maximum((px * dx + py * dy) * inv_l2, f32(0.0)), f32(1.0))
    qx, qy = u * dx - px, u * dy - py
    d2 = (qx * qx + qy * qy) * (f32(1.0) / (r * r)).astype(f32)[:, None, None]
    z = za.astype(f32)[:, None, None] + u * (zb - za).astype(f32)[:, None, None]
    _write(canvas, xs, ys, d2 <= 1.0, z, 1.0 - shading * d2, label)


def disc(canvas: Canvas, c, r, z, label: int, shading: float = 0.25) -> None:
    """Filled circle of centre c [T,2] and radius r [T] at depth z [T]."""
    r = np.maximum(r, 0.5)
    xs, ys = _box(c - r[:, None], c + r[:, None], canvas.label.shape[1:])
    qx = xs[:, None, :] - c[:, 0, None, None]
    qy = ys[:, :, None] - c[:, 1, None, None]
    d2 = (qx * qx + qy * qy) / (r * r)[:, None, None]
    _write(canvas, xs, ys, d2 <= 1.0, np.broadcast_to(z[:, None, None], d2.shape), 1.0 - shading * d2, label)


def rect(canvas: Canvas, c, half, z, label: int, rim: float = 0.0) -> None:
    """Axis-aligned rectangle of centre c [T,2] and half sizes half [T,2]; `rim` darkens a top band."""
    half = np.maximum(half, 0.5)
    xs, ys = _box(c - half, c + half, canvas.label.shape[1:])
    qx = (xs[:, None, :] - c[:, 0, None, None]) / half[:, 0, None, None]
    qy = (ys[:, :, None] - c[:, 1, None, None]) / half[:, 1, None, None]
    inside = (np.abs(qx) <= 1.0) & (np.abs(qy) <= 1.0)
    shade = np.where(qy < -1.0 + 2.0 * rim, 0.6, 1.0 - 0.12 * qx * qx) * np.ones_like(qx)
    _write(canvas, xs, ys, inside, np.broadcast_to(z[:, None, None], inside.shape), shade, label)
