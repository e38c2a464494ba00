"""One clip: sample its variation from its own RNG, animate, project and render it.

`render_clip(spec)` is the single entry point used by the generator; it is deterministic in
(spec.seed, spec.index) and returns raw frames before encoding plus all ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import raster
from .actions import action_object_rule, action_params, cycles_range
from .background import background
from .compose import compose
from .flow import CAPSULE, SIMILAR, compute_flow
from .skeleton import JOINTS, P, facing, forward_kinematics, neutral_vector
from .subjects import TEMPO_FACTOR, Subject

J = {n: i for i, n in enumerate(JOINTS)}
OBJECT_KINDS = ["ball", "box", "cup"]
OBJECT_COLOURS = {
    "red": (210, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (235, 205, 40),
    "orange": (245, 135, 30),
    "purple": (140, 50, 170),
}
VIEWS = {"front": (-20.0, 20.0), "left": (30.0, 65.0), "right": (-65.0, -30.0)}
DEFAULT_NOISE = {"studio": 2.0, "outdoor": 3.0, "lowlight": 7.0}
GRAVITY = np.array([0.0, -5.0, 0.0])  # body heights per s^2 (a 1.75 m person: ~9 m/s^2)

# Layer labels: 0 background, then person parts, object, occluder, distractors, clutter.
PERSON_PARTS = [
    # name, kind, joint a, joint b, radius key, colour key
    ("torso_c", "capsule", "pelvis", "neck", "torso_c", "shirt"),
    ("torso_l", "capsule", "l_shoulder", "l_hip", "torso_s", "shirt"),
    ("torso_r", "capsule", "r_shoulder", "r_hip", "torso_s", "shirt"),
    ("pelvis", "capsule", "l_hip", "r_hip", "pelvis", "trousers"),
    ("neck", "capsule", "neck", "head", "neck", "skin"),
    ("hair", "disc", "head", "head", "head", "hair"),
    ("face", "disc", "head", "head", "head", "skin"),
    ("l_upper_arm", "capsule", "l_shoulder", "l_elbow", "upper_arm", "shirt"),
    ("l_forearm", "capsule", "l_elbow", "l_wrist", "forearm", "sleeve"),
    ("l_hand", "disc", "l_elbow", "l_wrist", "hand", "skin"),
    ("r_upper_arm", "capsule", "r_shoulder", "r_elbow", "upper_arm", "shirt"),
    ("r_forearm", "capsule", "r_elbow", "r_wrist", "forearm", "sleeve"),
    ("r_hand", "disc", "r_elbow", "r_wrist", "hand", "skin"),
    ("l_thigh", "capsule", "l_hip", "l_knee", "thigh", "trousers"),
    ("l_shin", "capsule", "l_knee", "l_ankle", "shin", "trousers"),
    ("l_foot", "capsule", "l_ankle", "l_toe", "foot", "shoes"),
    ("r_thigh", "capsule", "r_hip", "r_knee", "thigh", "trousers"),
    ("r_shin", "capsule", "r_knee", "r_ankle", "shin", "trousers"),
    ("r_foot", "capsule", "r_ankle", "r_toe", "foot", "shoes"),
]
N_PERSON = len(PERSON_PARTS)
#: Body-part ids of a part mask: 0 background (and everything not the person), part k at id k.
PART_NAMES = ["background"] + [p[0] for p in PERSON_PARTS]
#: Left/right part pairs (ids into PART_NAMES): a horizontal flip swaps them.
PART_FLIP_PAIRS: list[tuple[int, int]] = [(PART_NAMES.index("torso_l"), PART_NAMES.index("torso_r"))] + [
    (i, PART_NAMES.index("r_" + name[2:])) for i, name in enumerate(PART_NAMES) if name.startswith("l_")
]
OBJ_LABEL = N_PERSON + 1
OCC_LABEL = N_PERSON + 2
DISTRACT_LABEL = N_PERSON + 3  # two slots
CLUTTER_LABEL = N_PERSON + 5  # up to five shapes
N_LABELS = CLUTTER_LABEL + 5


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one clip (the per-clip RNG is seeded from seed and index)."""

    index: int
    seed: int
    subject: Subject
    actions: tuple[str, ...]
    domain: str
    frames: int = 16
    size: int = 112
    fps: int = 8
    occlusion: float = 0.0
    distractors: float = 0.0
    clutter: float = 0.0
    noise: float | None = None


@dataclass
class Rendered:
    """Raw clip and its ground truth (all in pixel units of the rendered frame)."""

    frames: np.ndarray  # uint8 [T,H,W,3] (a view of `rgba`)
    rgba: np.ndarray  # uint8 [T,H,W,4] contiguous, alpha 255 (fed to the encoder)
    label: np.ndarray  # uint8 [T,H,W] layer map (see PERSON_PARTS and *_LABEL)
    mask: np.ndarray  # bool [T,H,W] visible person pixels
    joints: np.ndarray  # float32 [T,J,2] (x, y)
    joints3d: np.ndarray  # float32 [T,J,3] world units (body heights), y up, z towards camera
    visible: np.ndarray  # bool [T,J]
    kind: np.ndarray  # uint8 [L] flow transform kind per label
    anchors: np.ndarray  # float32 [L,T,2,2]
    radius: np.ndarray  # float32 [L,T,2]
    frame_labels: np.ndarray  # uint8 [T, n_actions] 1 where spec.actions[k] is being performed
    object: str  # "red ball" or "" when the actions involve no object
    view: str
    yaw: float

    def flow(self) -> np.ndarray:
        return compute_flow(self.label, self.kind, self.anchors, self.radius)


def _timing(rng: np.random.Generator, n: int, tempo: float) -> list[tuple[float, float]]:
    """(start, duration) of each action in normalised clip time [0, 1]."""
    if n == 1:
        dur = float(np.clip(rng.uniform(0.62, 0.95) / tempo, 0.45, 1.0))
        return [(float(rng.uniform(0.0, 1.0 - dur)), dur)]
    overlap = rng.uniform(0.0, 0.15)
    w = rng.uniform(0.8, 1.2, n)
    durs = w / w.sum() * (0.96 + overlap * (n - 1))
    out, t = [], float(rng.uniform(0.0, 0.03))
    for d in durs:
        out.append((t, float(d)))
        t += float(d) - overlap
    return out


class _Motion:
    """Pose as a function of normalised clip time, composing actions additively over neutral."""

    def __init__(self, rng: np.random.Generator, spec: ClipSpec, view_yaw: float):
        subj = spec.subject
        self.spec, self.view_yaw, self.body = spec, view_yaw, subj.body
        tempo = TEMPO_FACTOR[subj.tempo] * subj.speed
        self.timing = _timing(rng, len(spec.actions), tempo)
        self.styles = []
        for name in spec.actions:
            lo, hi = cycles_range(name)
            amp = subj.amp * rng.uniform(0.82, 1.15)
            self.styles.append((float(amp), float(rng.uniform(lo, hi)), float(rng.uniform(0, 2 * np.pi))))
        # Idle sway: slow random oscillations so that no two clips share an exact pose.
        self.sway = [
            (P[k], a * rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.2), rng.uniform(0, 2 * np.pi))
            for k, a in (("sp_th", 2), ("sp_ph", 3), ("la_th", 4), ("ra_th", 4), ("la_ph", 5))
            + (("ra_ph", 5), ("lf_ph", 6), ("rf_ph", 6), ("yaw", 5), ("root_x", 0.01))
        ]
        self.offset = np.zeros(len(P))
        c = subj.carriage
        for k, v in (("la_ph", c[0]), ("ra_ph", c[0]), ("lf_ph", c[1]), ("rf_ph", c[1]), ("sp_ph", c[2])):
            self.offset[P[k]] = v
        self.seconds = (spec.frames - 1) / spec.fps

    def sigma(self, k: int, t: np.ndarray) -> np.ndarray:
        start, dur = self.timing[k]
        return (np.asarray(t, dtype=np.float64) - start) / dur

    def params(self, t: np.ndarray) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        neutral = neutral_vector()
        out = np.tile(neutral + self.offset, (len(t), 1))
        for k, name in enumerate(self.spec.actions):
            amp, cyc, ph = self.styles[k]
            out += action_params(name, self.sigma(k, t), amp, cyc, ph) - neutral
        for i, a, f, ph in self.sway:
            out[:, i] += a * np.sin(2 * np.pi * f * t * self.seconds / 2 + ph)
        return out

    def joints(self, t: np.ndarray) -> np.ndarray:
        return forward_kinematics(self.params(t), self.body, self.view_yaw)

    def clip_time(self, k: int, base_sigma: float, reverse: bool) -> float:
        """Clip time at which action k is at `base_sigma` of its (possibly reversed) base action."""
        start, dur = self.timing[k]
        s = 1.0 - base_sigma if reverse else base_sigma
        return start + s * dur


def _hand(j: np.ndarray, side: str, reach: float) -> np.ndarray:
    """A point `reach` beyond the wrist along the forearm ([..., 3])."""
    d = j[..., J[f"{side}_wrist"], :] - j[..., J[f"{side}_elbow"], :]
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    return j[..., J[f"{side}_wrist"], :] + reach * d


def _object_track(
    motion: _Motion,
    t: np.ndarray,
    joints: np.ndarray,
    fwd: np.ndarray,
    k: int,
    rule: str,
    event: float,
    rev: bool,
    half: np.ndarray,
) -> np.ndarray:
    """Object centre [T,3] for action k's object rule (see actions.Action.obj)."""
    body = motion.body
    reach = body.radii["hand"] * 0.8 + half[1] * 0.9
    sig = motion.sigma(k, t)
    base = 1.0 - sig if rev else sig  # base-action time (unclamped, for ballistic flight)

    def at(bs: float) -> np.ndarray:
        return motion.joints(np.array([motion.clip_time(k, bs, rev)]))[0]

    if rule == "hand":
        return _hand(joints, "r", reach)
    if rule == "both":
        return 0.5 * (joints[:, J["l_wrist"]] + joints[:, J["r_wrist"]]) + fwd * (half[0] + 0.02)
    if rule == "pickup":
        grip = _hand(at(event), "r", reach)
        rest = np.array([grip[0], half[1], grip[2]])
        # After the grasp the object is drawn into the hand within 0.2 of the action.
        pull = np.clip(1.0 - (base - event) / 0.2, 0.0, 1.0)[:, None]
        held = _hand(joints, "r", reach) + pull * (rest - grip)
        return np.where((base < event)[:, None], rest, held)
    if rule in ("throw", "kick"):
        dt = 0.04
        if rule == "throw":
            p0, p1 = _hand(at(event - dt), "r", reach), _hand(at(event), "r", reach)
            start, boost, up = p1, 1.3, 0.3
        else:
            p0, p1 = at(event - dt)[J["r_toe"]], at(event)[J["r_toe"]]
            f_e = facing(motion.params(np.array([motion.clip_time(k, event, rev)])), motion.view_yaw)[0]
            start, boost, up = p1 + f_e * half[0] * 1.1, 1.5, 1.0
            start[1] = half[1]
        tau = ((base - event) * motion.timing[k][1] * motion.seconds)[:, None]
        v = (p1 - p0) / (dt * motion.timing[k][1] * motion.seconds) * boost + np.array([0.0, up, 0.0])
        fly = start + v * tau + 0.5 * GRAVITY * tau**2
        fly[:, 1] = np.maximum(fly[:, 1], half[1])
        before = _hand(joints, "r", reach) if rule == "throw" else np.broadcast_to(start, fly.shape)
        return np.where((base < event)[:, None], before, fly)
    raise ValueError(rule)


@dataclass(frozen=True)
class _Camera:
    """Mild perspective camera: S pixels per body height at depth 0, ground contact row, shake."""

    S: float
    cx: float
    ground: float
    dist: float
    height: float
    shake: np.ndarray  # [T,2] integer pixel offsets of the whole image content

    def project(self, p3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions [T,...,2] and pixels-per-unit scale [T,...] of world points [T,...,3]."""
        f = self.dist / (self.dist - np.minimum(p3[..., 2], 0.6 * self.dist))
        x = self.cx + self.S * f * p3[..., 0]
        y = self.ground - self.S * self.height + self.S * f * (self.height - p3[..., 1])
        shift = self.shake.reshape((len(self.shake),) + (1,) * (p3.ndim - 2) + (2,))
        return np.stack([x, y], -1) + shift, self.S * f


@dataclass
class _Layers:
    """Everything drawn so far: the canvas plus per-label colours and flow anchors."""

    canvas: raster.Canvas
    colours: np.ndarray  # [L,3]
    kind: np.ndarray  # [L]
    anchors: np.ndarray  # [L,T,2,2]
    radius: np.ndarray  # [L,T,2]

    @classmethod
    def empty(cls, T: int, H: int, W: int, shake: np.ndarray) -> _Layers:
        anchors = np.zeros((N_LABELS, T, 2, 2))
        anchors[:, :, 0] = shake[None]  # unused labels and the background move with the camera
        anchors[:, :, 1] = shake[None] + np.array([1.0, 0.0])
        return cls(
            raster.Canvas.empty(T, H, W),
            np.zeros((N_LABELS, 3)),
            np.full(N_LABELS, SIMILAR, np.uint8),
            anchors,
            np.ones((N_LABELS, T, 2)),
        )

    def similar(self, lab: int, centre: np.ndarray, size: np.ndarray) -> None:
        """Record a translating/scaling layer (discs, rectangles)."""
        self.anchors[lab, :, 0], self.anchors[lab, :, 1] = centre, centre + np.array([1.0, 0.0])
        self.radius[lab] = size.reshape(len(centre), -1)


def _draw_person(layers: _Layers, subj: Subject, cam: _Camera, j3: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """Draw all body parts (z-buffered); returns the 2D joints [T,J,2]."""
    j2, jf = cam.project(j3)
    z = j3[..., 2]
    body, radii = subj.body, subj.body.radii
    ckeys = {
        "shirt": subj.shirt,
        "trousers": subj.trousers,
        "skin": subj.skin,
        "hair": subj.hair,
        "shoes": subj.shoes,
        "sleeve": subj.shirt if subj.long_sleeves else subj.skin,
    }
    up = np.array([0.0, 1.0, 0.0])
    for lab, (name, pkind, ja, jb, rkey, ckey) in enumerate(PERSON_PARTS, start=1):
        layers.colours[lab] = ckeys[ckey]
        if pkind == "capsule":
            a, b = j2[:, J[ja]], j2[:, J[jb]]
            r = radii[rkey] * 0.5 * (jf[:, J[ja]] + jf[:, J[jb]])
            # Limbs win depth ties against the torso they start from (arms hang in front of it).
            bias = 0.0 if name.startswith(("torso", "pelvis", "neck")) else 0.02
            raster.capsule(layers.canvas, a, b, r, z[:, J[ja]] + bias, z[:, J[jb]] + bias, lab)
            layers.kind[lab], layers.anchors[lab, :, 0], layers.anchors[lab, :, 1] = CAPSULE, a, b
            layers.radius[lab] = r[:, None]
            continue
        if name in ("hair", "face"):
            # Two discs: the face sits towards where the body faces, the hair behind and above it.
            hr = body.head_r
            off = fwd * hr * 0.22 if name == "face" else -fwd * hr * 0.2 + up * hr * 0.2
            c3 = j3[:, J["head"]] + off
            rr = hr * (0.92 if name == "face" else 1.0)
            zc = c3[:, 2] + (0.01 if name == "face" else 0.0)
        else:  # hands
            c3 = _hand(j3, name[0], radii["hand"] * 0.5)
            rr, zc = radii["hand"], c3[:, 2] + 0.03
        c2, f = cam.project(c3)
        raster.disc(layers.canvas, c2, rr * f, zc, lab)
        layers.similar(lab, c2, rr * f)
    return j2


def _draw_object(layers: _Layers, cam: _Camera, pos: np.ndarray, half: np.ndarray, kind: str, colour) -> None:
    c2, f = cam.project(pos)
    hpx = half[None] * f[:, None]
    layers.colours[OBJ_LABEL] = colour
    z = pos[:, 2] + 0.01
    if kind == "ball":
        raster.disc(layers.canvas, c2, hpx[:, 0], z, OBJ_LABEL)
    else:
        raster.rect(layers.canvas, c2, hpx, z, OBJ_LABEL, rim=0.12 if kind == "cup" else 0.0)
    layers.similar(OBJ_LABEL, c2, hpx)


def render_clip(spec: ClipSpec) -> Rendered:
    """Render one clip deterministically from (spec.seed, spec.index)."""
    rng = np.random.default_rng([spec.seed, spec.index, 1])
    T, H = spec.frames, spec.size
    W = H
    view = list(VIEWS)[int(rng.integers(len(VIEWS)))]
    view_yaw = float(rng.uniform(*VIEWS[view]))
    motion = _Motion(rng, spec, view_yaw)
    t = np.linspace(0.0, 1.0, T)
    pose = motion.params(t)
    j3 = forward_kinematics(pose, motion.body, view_yaw)
    fwd = facing(pose, view_yaw)

    # Object: used by an object action, or (half the time) lying idle on the floor.
    obj_name, obj_pos = "", None
    obj_k = next((k for k, a in enumerate(spec.actions) if action_object_rule(a)[0]), None)
    idle = obj_k is None and rng.random() < 0.5
    obj_kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    colour = list(OBJECT_COLOURS)[int(rng.integers(len(OBJECT_COLOURS)))]
    scale = rng.uniform(0.9, 1.15)
    half = scale * np.array({"ball": (0.05, 0.05), "box": (0.055, 0.055), "cup": (0.036, 0.05)}[obj_kind])
    if obj_k is not None:
        rule, event, rev = action_object_rule(spec.actions[obj_k])
        obj_pos = _object_track(motion, t, j3, fwd, obj_k, rule, event, rev, half)
        obj_name = f"{colour} {obj_kind}"
    elif idle:
        side = rng.choice([-1.0, 1.0])
        rest = np.array([side * rng.uniform(0.22, 0.4), half[1], rng.uniform(-0.15, 0.15)])
        obj_pos = np.tile(rest, (T, 1))

    # Camera: figure height, position, ground row, mild perspective, shake (low light only).
    S = rng.uniform(0.5, 0.72) * spec.subject.height * H
    cx = rng.uniform(0.3, 0.7) * W
    ground = rng.uniform(min(0.97 * H, S + 0.04 * H), 0.97 * H)
    dist, cam_y = rng.uniform(4.0, 6.0), rng.uniform(0.45, 0.65)
    shake, m = np.zeros((T, 2)), 0
    if spec.domain == "lowlight":
        m = max(1, round(2 * H / 112))
        shake = np.clip(np.cumsum(rng.integers(-1, 2, (T, 2)), axis=0), -m, m).astype(np.float64)
    cam = _Camera(S, cx, ground, dist, cam_y, shake)

    layers = _Layers.empty(T, H, W, shake)
    j2 = _draw_person(layers, spec.subject, cam, j3, fwd)
    if obj_pos is not None:
        _draw_object(layers, cam, obj_pos, half, obj_kind, OBJECT_COLOURS[colour])
    _extras(rng, spec, layers, cam)

    # Backdrop (cropped per frame to follow the shake), then colours, lighting and noise.
    bg = background(rng, spec.domain, H + 2 * m, W + 2 * m, ground + m, S)
    o = shake.astype(int)
    bgf = np.stack([bg[m - y : m - y + H, m - x : m - x + W] for x, y in o]) if m else bg[None]
    sigma = DEFAULT_NOISE[spec.domain] if spec.noise is None else spec.noise
    rgba = compose(rng, layers.canvas, layers.colours, bgf, sigma, dark=spec.domain == "lowlight")

    lab = layers.canvas.label
    mask = (lab >= 1) & (lab <= N_PERSON)
    ji = np.rint(j2).astype(int)
    inside = (ji[..., 0] >= 0) & (ji[..., 0] < W) & (ji[..., 1] >= 0) & (ji[..., 1] < H)
    tt = np.arange(T)[:, None]
    visible = inside & mask[tt, np.clip(ji[..., 1], 0, H - 1), np.clip(ji[..., 0], 0, W - 1)]
    sig = [motion.sigma(k, t) for k in range(len(spec.actions))]
    frame_labels = np.stack([(s >= 0) & (s <= 1) for s in sig], -1).astype(np.uint8)
    return Rendered(
        frames=rgba[..., :3],
        rgba=rgba,
        label=lab,
        mask=mask,
        joints=j2.astype(np.float32),
        joints3d=j3.astype(np.float32),
        visible=visible,
        kind=layers.kind,
        anchors=layers.anchors.astype(np.float32),
        radius=layers.radius.astype(np.float32),
        frame_labels=frame_labels,
        object=obj_name,
        view=view,
        yaw=view_yaw,
    )


def _extras(rng: np.random.Generator, spec: ClipSpec, layers: _Layers, cam: _Camera) -> None:
    """Difficulty knobs: an occluding rectangle, moving distractor blobs and static clutter."""
    T, H = spec.frames, spec.size
    W = H
    canvas, colours, shake, cx, ground, S = (
        layers.canvas,
        layers.colours,
        cam.shake,
        cam.cx,
        cam.ground,
        cam.S,
    )
    t = np.linspace(0.0, 1.0, T)[:, None]
    ones = np.ones(T)
    if rng.random() < spec.occlusion:
        half = np.array([rng.uniform(0.07, 0.15) * W, rng.uniform(0.12, 0.25) * H])
        c0 = np.array([cx + rng.uniform(-0.25, 0.25) * S, ground - rng.uniform(0.2, 0.8) * S])
        vel = np.array([rng.uniform(-0.5, 0.5) * W if rng.random() < 0.5 else 0.0, 0.0])
        c = c0 + vel * t + shake
        colours[OCC_LABEL] = rng.uniform(40, 200) + rng.normal(0, 12, 3)
        raster.rect(canvas, c, np.tile(half, (T, 1)), 100.0 * ones, OCC_LABEL)
        layers.similar(OCC_LABEL, c, np.tile(half, (T, 1)))
    if rng.random() < spec.distractors:
        for i in range(int(rng.integers(1, 3))):
            r = rng.uniform(0.03, 0.07) * H
            c0 = rng.uniform(0.1, 0.9, 2) * np.array([W, H])
            ang = rng.uniform(0, 2 * np.pi)
            c = c0 + rng.uniform(0.2, 0.6) * W * np.array([np.cos(ang), np.sin(ang)]) * (t - 0.5) + shake
            lab = DISTRACT_LABEL + i
            colours[lab] = rng.uniform(30, 230, 3)
            raster.disc(canvas, c, r * ones, (-50.0 + i) * ones, lab)
            layers.similar(lab, c, r * ones)
    if rng.random() < spec.clutter:
        for i in range(int(rng.integers(2, 6))):
            c = rng.uniform(0.05, 0.95, 2) * np.array([W, H]) + shake
            half = rng.uniform(0.03, 0.09, 2) * H
            lab = CLUTTER_LABEL + i
            colours[lab] = rng.uniform(30, 230, 3)
            if rng.random() < 0.5:
                raster.rect(canvas, c, np.tile(half, (T, 1)), (-60.0 + i) * ones, lab)
            else:
                raster.disc(canvas, c, half[0] * ones, (-60.0 + i) * ones, lab)
