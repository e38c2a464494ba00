"""2D-projected 3D kinematic skeleton of the synthetic human.

Poses are vectors of absolute bone angles (degrees) plus root translation and body yaw.
Units are body heights (a subject of relative height 1.0 is 1.0 unit tall). Axes of the body
frame: x = the subject's own left, y = up, z = forward (towards the camera at yaw 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINTS: list[str] = [
    "head",
    "neck",
    "spine",
    "pelvis",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_toe",
    "r_toe",
]
J = {name: i for i, name in enumerate(JOINTS)}
#: Left/right joint pairs (indices into JOINTS): a horizontal flip swaps them.
FLIP_PAIRS: list[tuple[int, int]] = [
    (J[name], J["r_" + name[2:]]) for name in JOINTS if name.startswith("l_")
]

# Bone angle convention for limbs: th = swing in the frontal plane away from the body midline
# (0 = hanging down, 90 = sideways horizontal, 180 = straight up, 270 = across the body),
# ph = swing forwards out of the frontal plane (90 = pointing straight ahead).
PARAMS: list[str] = [
    "root_x",  # sideways translation (body frame), body heights
    "root_z",  # forward translation
    "lift",  # extra vertical lift above ground contact (jumps)
    "yaw",  # body turn in degrees, positive = towards the subject's own left
    "sp_th",  # spine side lean
    "sp_ph",  # spine forward lean
    "la_th",
    "la_ph",
    "lf_th",
    "lf_ph",
    "ra_th",
    "ra_ph",
    "rf_th",
    "rf_ph",
    "ll_th",
    "ll_ph",
    "ls_th",
    "ls_ph",
    "rl_th",
    "rl_ph",
    "rs_th",
    "rs_ph",
]
P = {name: i for i, name in enumerate(PARAMS)}

NEUTRAL: dict[str, float] = {
    "la_th": 8.0,
    "lf_th": 5.0,
    "lf_ph": 8.0,
    "ra_th": 8.0,
    "rf_th": 5.0,
    "rf_ph": 8.0,
    "ll_th": 2.0,
    "ls_th": 2.0,
    "rl_th": 2.0,
    "rs_th": 2.0,
}


def neutral_vector() -> np.ndarray:
    """The standing rest pose as a parameter vector."""
    v = np.zeros(len(PARAMS))
    for k, val in NEUTRAL.items():
        v[P[k]] = val
    return v


@dataclass(frozen=True)
class Body:
    """Body proportions (body-height units) and limb radii of one subject."""

    shoulder_w: float = 0.23
    hip_w: float = 0.11
    spine: float = 0.29
    neck: float = 0.085
    upper_arm: float = 0.165
    forearm: float = 0.15
    thigh: float = 0.245
    shin: float = 0.24
    foot: float = 0.07
    head_r: float = 0.062
    girth: float = 1.0  # multiplies all limb radii

    @property
    def radii(self) -> dict[str, float]:
        g = self.girth
        return {
            "torso_c": 0.075 * g,
            "torso_s": 0.05 * g,
            "pelvis": 0.055 * g,
            "neck": 0.026 * g,
            "upper_arm": 0.033 * g,
            "forearm": 0.027 * g,
            "hand": 0.03 * g,
            "thigh": 0.047 * g,
            "shin": 0.036 * g,
            "foot": 0.024 * g,
        }


def _dirs(th: np.ndarray, ph: np.ndarray, side: float) -> np.ndarray:
    """Unit bone directions [T,3] from angles in degrees (side=+1 left limb, -1 right limb)."""
    th, ph = np.radians(th), np.radians(ph)
    cp = np.cos(ph)
    return np.stack([side * np.sin(th) * cp, -np.cos(th) * cp, np.sin(ph)], axis=-1)


def forward_kinematics(params: np.ndarray, body: Body, view_yaw: float = 0.0) -> np.ndarray:
    """Joint positions [T, J, 3] in world units with feet on the ground plane y=0.

    The figure stands at the origin; `root_x/root_z` translate it in the view-rotated body frame,
    and the whole figure is rotated about its own vertical axis by `view_yaw + yaw`.
    """
    p = np.asarray(params, dtype=np.float64)
    T = p.shape[0]
    out = np.zeros((T, len(JOINTS), 3))
    sp_th, sp_ph = np.radians(p[:, P["sp_th"]]), np.radians(p[:, P["sp_ph"]])
    ds = np.stack([np.sin(sp_th) * np.cos(sp_ph), np.cos(sp_th) * np.cos(sp_ph), np.sin(sp_ph)], -1)
    lateral = np.stack([np.cos(sp_th), -np.sin(sp_th), np.zeros(T)], -1)
    pelvis = np.zeros((T, 3))
    neck = pelvis + body.spine * ds
    out[:, J["pelvis"]] = pelvis
    out[:, J["neck"]] = neck
    out[:, J["spine"]] = pelvis + 0.5 * body.spine * ds
    out[:, J["head"]] = neck + body.neck * ds + np.array([0.0, body.head_r * 0.6, 0.0])
    for side, pre in ((1.0, "l"), (-1.0, "r")):
        sh = neck + side * 0.5 * body.shoulder_w * lateral - 0.035 * ds
        el = sh + body.upper_arm * _dirs(p[:, P[pre + "a_th"]], p[:, P[pre + "a_ph"]], side)
        wr = el + body.forearm * _dirs(p[:, P[pre + "f_th"]], p[:, P[pre + "f_ph"]], side)
        hip = pelvis + np.array([side * 0.5 * body.hip_w, 0.0, 0.0])
        kn = hip + body.thigh * _dirs(p[:, P[pre + "l_th"]], p[:, P[pre + "l_ph"]], side)
        s_th, s_ph = p[:, P[pre + "s_th"]], p[:, P[pre + "s_ph"]]
        an = kn + body.shin * _dirs(s_th, s_ph, side)
        toe = an + body.foot * _dirs(s_th * 0.0, s_ph + 80.0, side)
        for name, val in (("shoulder", sh), ("elbow", el), ("wrist", wr), ("hip", hip)):
            out[:, J[f"{pre}_{name}"]] = val
        out[:, J[f"{pre}_knee"]] = kn
        out[:, J[f"{pre}_ankle"]] = an
        out[:, J[f"{pre}_toe"]] = toe
    # Ground contact: the lowest foot point rests on y=0 unless lifted (jumps).
    feet = out[:, [J["l_ankle"], J["r_ankle"], J["l_toe"], J["r_toe"]], 1]
    out[..., 1] += (-feet.min(axis=1) + body.radii["foot"] + p[:, P["lift"]])[:, None]
    # Turn about the body's own vertical axis, then translate in the view-rotated frame.
    yaw = np.radians(view_yaw + p[:, P["yaw"]])
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x, z = out[..., 0].copy(), out[..., 2].copy()
    out[..., 0] = x * c + z * s
    out[..., 2] = -x * s + z * c
    vy = np.radians(view_yaw)
    rx, rz = p[:, P["root_x"]], p[:, P["root_z"]]
    out[..., 0] += (rx * np.cos(vy) + rz * np.sin(vy))[:, None]
    out[..., 2] += (-rx * np.sin(vy) + rz * np.cos(vy))[:, None]
    return out


def facing(params: np.ndarray, view_yaw: float) -> np.ndarray:
    """Unit forward direction [T,3] of the body (used for the face and held objects)."""
    yaw = np.radians(view_yaw + np.asarray(params)[:, P["yaw"]])
    return np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)
