"""Exact ground-truth optical flow from the layer map and per-layer motion anchors.

Every rendered layer (label) moves as one of two kinds of transform between frames:
- CAPSULE layers (limbs) follow their bone: a point is expressed in the bone frame (position along
  the segment, clamped, plus the overflow beyond an end cap, and the signed distance from the axis
  scaled by the radius) and re-expressed in the next frame's bone frame;
- SIMILAR layers (head discs, objects, background, occluder, ...) translate with an anchor point
  and scale per axis with the layer's size.
Flow at pixel p of frame t is the displacement of the surface point visible at p.
"""

from __future__ import annotations

import numpy as np

CAPSULE, SIMILAR = 0, 1


def compute_flow(label: np.ndarray, kind: np.ndarray, anchors: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Flow [T-1, 2, H, W] (dx, dy in pixels) from frame t to t+1.

    label [T,H,W] uint8; kind [L] (CAPSULE/SIMILAR); anchors [L,T,2,2] (points a, b in pixels);
    radius [L,T,2] (capsule radius, or the per-axis size of a SIMILAR layer).
    """
    label = np.asarray(label)
    T, H, W = label.shape
    anchors = anchors.astype(np.float64)
    radius = np.maximum(radius.astype(np.float64), 1e-6)
    lab = label[:-1].astype(np.int64)
    t0 = np.broadcast_to(np.arange(T - 1)[:, None, None], lab.shape)
    a0, b0, r0 = anchors[lab, t0, 0], anchors[lab, t0, 1], radius[lab, t0]
    a1, b1, r1 = anchors[lab, t0 + 1, 0], anchors[lab, t0 + 1, 1], radius[lab, t0 + 1]
    ys, xs = np.mgrid[0:H, 0:W]
    p = np.stack([xs, ys], -1).astype(np.float64)[None]
    # SIMILAR: p' = a1 + (p - a0) * r1 / r0
    sim = a1 + (p - a0) * (r1 / r0)
    # CAPSULE: bone frame (e along the segment, n its normal); length-preserving beyond the caps.
    d0, d1 = b0 - a0, b1 - a1
    l0 = np.linalg.norm(d0, axis=-1, keepdims=True)
    l1 = np.linalg.norm(d1, axis=-1, keepdims=True)
    e0 = np.where(l0 > 1e-6, d0 / np.maximum(l0, 1e-6), np.array([0.0, 1.0]))
    e1 = np.where(l1 > 1e-6, d1 / np.maximum(l1, 1e-6), e0)
    n0 = np.stack([-e0[..., 1], e0[..., 0]], -1)
    n1 = np.stack([-e1[..., 1], e1[..., 0]], -1)
    q = p - a0
    along = (q * e0).sum(-1, keepdims=True)
    across = (q * n0).sum(-1, keepdims=True)
    frac = np.clip(along / np.maximum(l0, 1e-6), 0.0, 1.0)
    over = along - frac * l0
    cap = a1 + (frac * l1 + over) * e1 + across * (r1[..., :1] / r0[..., :1]) * n1
    is_cap = (kind[lab] == CAPSULE)[..., None]
    dest = np.where(is_cap, cap, sim)
    return (dest - p).transpose(0, 3, 1, 2).astype(np.float32)


def warp_error(frame0: np.ndarray, frame1: np.ndarray, flow: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute colour error between frame0 and frame1 sampled at p + flow (nearest pixel)."""
    H, W = where.shape
    ys, xs = np.nonzero(where)
    x1 = np.clip(np.rint(xs + flow[0, ys, xs]).astype(int), 0, W - 1)
    y1 = np.clip(np.rint(ys + flow[1, ys, xs]).astype(int), 0, H - 1)
    diff = frame0[ys, xs].astype(np.float32) - frame1[y1, x1].astype(np.float32)
    return float(np.abs(diff).mean()) if len(ys) else 0.0
