"""Skeleton sequences: the NTU RGB+D joint layout and the standard per-sample normalisation.

Arrays are [T, V, C] (one body) or [M, T, V, C] (M bodies), C = 3 (x, y, z in metres, camera space).
Frames where a body is absent are all zeros and stay zeros. The normalisation (as in the 2s-AGCN /
CTR-GCN preprocessing of NTU) is per sample and uses only that sample, so it leaks nothing across splits:

1. `center`: subtract the spine joint of the first body, frame by frame;
2. `scale`: divide by the first body's mean spine length (spine base to spine shoulder);
3. `align_view`: rotate so that the first body's right-to-left shoulder (or hip) line of the first
   valid frame points along +x, and then its spine points along +y as far as the rotation about x allows.
"""

from __future__ import annotations

import numpy as np

#: NTU RGB+D's 25 Kinect v2 joints (0-based indices of the 1-based list in Shahroudy et al., 2016).
NTU_JOINTS: list[str] = [
    "spine_base", "spine_mid", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "l_hand",
    "r_shoulder", "r_elbow", "r_wrist", "r_hand",
    "l_hip", "l_knee", "l_ankle", "l_foot",
    "r_hip", "r_knee", "r_ankle", "r_foot",
    "spine_shoulder", "l_hand_tip", "l_thumb", "r_hand_tip", "r_thumb",
]  # fmt: skip
NTU_CENTER = 1  # spine_mid
NTU_SPINE = (0, 20)  # spine_base -> spine_shoulder
NTU_SHOULDERS = (8, 4)  # right, left
NTU_HIPS = (16, 12)  # right, left
#: Left/right joint pairs (for flips that must swap sides).
NTU_FLIP_PAIRS: list[tuple[int, int]] = [
    (4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23), (22, 24),
]  # fmt: skip


def _bodies(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        return x[None].copy(), True
    if x.ndim == 4:
        return x.copy(), False
    raise ValueError(f"expected a [T, V, C] or [M, T, V, C] skeleton array, got shape {x.shape}")


def _valid(x: np.ndarray) -> np.ndarray:
    """[M, T] True where the body is present (any non-zero coordinate)."""
    return np.abs(x).sum(axis=(-1, -2)) > 0


def center(x: np.ndarray, joint: int = NTU_CENTER) -> np.ndarray:
    """Subtract the first body's `joint` in each frame from every body present in that frame."""
    b, single = _bodies(x)
    valid = _valid(b)
    origin = b[0, :, joint : joint + 1, :]  # [T, 1, C]
    b = np.where(valid[..., None, None], b - origin[None], 0.0).astype(np.float32)
    return b[0] if single else b


def scale(x: np.ndarray, joints: tuple[int, int] = NTU_SPINE, eps: float = 1e-6) -> np.ndarray:
    """Divide by the first body's mean distance between `joints` over the frames where it is present."""
    b, single = _bodies(x)
    valid = _valid(b)[0]
    if valid.any():
        length = np.linalg.norm(b[0, valid, joints[1]] - b[0, valid, joints[0]], axis=-1).mean()
        if length > eps:
            b = b / length
    return b[0] if single else b


def _rotation(a: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction `a` to direction `target` (Rodrigues' formula)."""
    a = a / np.linalg.norm(a)
    target = target / np.linalg.norm(target)
    v = np.cross(a, target)
    c = float(np.dot(a, target))
    s = float(np.linalg.norm(v))
    if s < 1e-8:
        if c > 0:
            return np.eye(3)
        axis = np.cross(a, [0.0, 1.0, 0.0] if abs(a[1]) < 0.9 else [0.0, 0.0, 1.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)  # 180 degrees about an axis orthogonal to a
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / s
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def align_view(
    x: np.ndarray,
    line: tuple[int, int] = NTU_SHOULDERS,
    up: tuple[int, int] | None = NTU_SPINE,
) -> np.ndarray:
    """Rotate all bodies so the first body's `line` (right -> left joint) points along +x in its first
    valid frame; then, if `up` is given, rotate about x so that its `up` bone points along +y as far as
    possible. Rotation is about the origin: `center` first."""
    b, single = _bodies(x)
    valid = _valid(b)
    if not valid[0].any():
        return b[0] if single else b
    t0 = int(np.argmax(valid[0]))
    frame = b[0, t0]
    direction = frame[line[1]] - frame[line[0]]
    if np.linalg.norm(direction) < 1e-8:
        return b[0] if single else b
    r = _rotation(direction, np.array([1.0, 0.0, 0.0]))
    if up is not None:
        spine = r @ (frame[up[1]] - frame[up[0]])
        yz = np.array([0.0, spine[1], spine[2]])
        if np.linalg.norm(yz) > 1e-8:
            r = _rotation(yz, np.array([0.0, 1.0, 0.0])) @ r
    b = np.where(valid[..., None, None], b @ r.T.astype(np.float32), 0.0).astype(np.float32)
    return b[0] if single else b


def normalize(
    x: np.ndarray,
    *,
    center_joint: int | None = NTU_CENTER,
    scale_joints: tuple[int, int] | None = NTU_SPINE,
    align_line: tuple[int, int] | None = NTU_SHOULDERS,
    up: tuple[int, int] | None = NTU_SPINE,
) -> np.ndarray:
    """centre -> scale -> align (each step skipped when its argument is None); same shape out."""
    if center_joint is not None:
        x = center(x, center_joint)
    if scale_joints is not None:
        x = scale(x, scale_joints)
    if align_line is not None:
        x = align_view(x, align_line, up)
    return np.asarray(x, dtype=np.float32)


def to_sequence(x: np.ndarray, bodies: int = 1) -> np.ndarray:
    """[M, T, V, C] (or [T, V, C]) -> [T, bodies * V * C]: the first `bodies` bodies side by side,
    zero-padded when the sample has fewer. This is the `seq` stream's [T, C] layout."""
    b, _ = _bodies(x)
    m, t, v, c = b.shape
    if m < bodies:
        b = np.concatenate([b, np.zeros((bodies - m, t, v, c), np.float32)])
    return b[:bodies].transpose(1, 0, 2, 3).reshape(t, bodies * v * c)
