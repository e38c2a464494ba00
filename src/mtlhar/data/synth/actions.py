"""Fine action catalogue: label hierarchy, caption templates and joint-angle trajectories.

Each action is a list of keyframes (normalised action time s in [0, 1] -> bone-angle overrides of
the neutral pose) plus optional periodic components. Direction pairs (sit_down/stand_up, ...) are
defined as exact time reversals of each other, so any single frame of one is also a frame of the
other and only the temporal order tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .skeleton import PARAMS, P, neutral_vector

Key = tuple[float, dict[str, float]]


@dataclass(frozen=True)
class Periodic:
    """An oscillation `amp * sin(2 pi cycles s + phase)` of one parameter inside a window of s."""

    param: str
    amp: float
    cycles: tuple[float, float]  # range, drawn per clip
    window: tuple[float, float] = (0.0, 1.0)
    phase: float = 0.0  # fixed offset added to the random clip phase (e.g. pi for the other leg)
    rectify: bool = False  # keep only the positive half-waves (leg lifts)


@dataclass(frozen=True)
class Action:
    name: str
    coarse: str
    template: str
    paraphrases: tuple[str, str]
    keys: tuple[Key, ...] = ()
    periodic: tuple[Periodic, ...] = ()
    obj: str | None = None  # object rule: pickup, both, hand, throw, kick
    event: float = 0.5  # normalised time of grasp / release / contact
    reverse_of: str | None = None
    mirror_of: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _mirror(d: dict[str, float]) -> dict[str, float]:
    """Swap left and right limb parameters (root and yaw are unaffected)."""
    swap = {"l": "r", "r": "l"}
    out = {}
    for k, v in d.items():
        if k[0] in swap and k[1] in "afls" and k[2] == "_":
            k = swap[k[0]] + k[1:]
        out[k] = v
    return out


SIT = {"sp_ph": 12, "ll_ph": 88, "rl_ph": 88, "ls_ph": -4, "rs_ph": -4, "ll_th": 6, "rl_th": 6}
SIT |= {"la_ph": 25, "lf_ph": 70, "ra_ph": 25, "rf_ph": 70}
CROUCH = {"sp_ph": 25, "ll_ph": 55, "rl_ph": 55, "ls_ph": -50, "rs_ph": -50}
HOLD_R = {"ra_ph": 15, "rf_ph": 55}
CLAP = {"la_th": -5, "ra_th": -5, "la_ph": 50, "ra_ph": 50, "lf_ph": 30, "rf_ph": 30}
CLAP |= {"lf_th": -138, "rf_th": -138}
CARRY2 = {"la_ph": 25, "ra_ph": 25, "lf_ph": 70, "rf_ph": 70, "lf_th": -35, "rf_th": -35}
PUSH0 = {"la_ph": 15, "ra_ph": 15, "la_th": 10, "ra_th": 10, "lf_ph": 85, "rf_ph": 85}
PUSH0 |= {"lf_th": -20, "rf_th": -20}
WAVE_L = {"la_th": 130, "la_ph": 10, "lf_th": 160}
LEGS_STEP = (
    Periodic("ll_ph", 14, (1.0, 2.0), (0.1, 0.9), 0.0, True),
    Periodic("rl_ph", 14, (1.0, 2.0), (0.1, 0.9), np.pi, True),
)

_BASE: list[Action] = [
    Action(
        "sit_down",
        "posture",
        "sitting down",
        ("a person sits down", "lowering oneself onto a seat"),
        keys=(
            (0.0, {}),
            (0.45, {"sp_ph": 35, "ll_ph": 50, "rl_ph": 50, "ls_ph": -25, "rs_ph": -25}),
            (1.0, SIT),
        ),
    ),
    Action(
        "stand_up",
        "posture",
        "standing up",
        ("a person stands up", "getting up from a seat"),
        reverse_of="sit_down",
    ),
    Action(
        "squat",
        "posture",
        "squatting down and up",
        ("a person does a squat", "bending the knees and rising again"),
        keys=(
            (0.0, {}),
            (0.5, CROUCH | {"ll_ph": 100, "rl_ph": 100, "ls_ph": -45, "rs_ph": -45, "ll_th": 12})
            + (0.5, {"rl_th": 12, "la_ph": 80, "ra_ph": 80, "lf_ph": 85, "rf_ph": 85}),
            (1.0, {}),
        ),
    ),
    Action(
        "jump",
        "posture",
        "jumping in place",
        ("a person jumps", "hopping up on the spot"),
        keys=(
            (0.0, {}),
            (0.28, CROUCH | {"la_ph": -35, "ra_ph": -35, "lf_ph": -25, "rf_ph": -25}),
            (0.45, {"lift": 0.06, "la_ph": 60, "ra_ph": 60, "lf_ph": 80, "rf_ph": 80}),
            (0.6, {"lift": 0.2, "ll_ph": 25, "rl_ph": 25, "ls_ph": -40, "rs_ph": -40})
            + (0.6, {"la_th": 150, "ra_th": 150, "lf_th": 160, "rf_th": 160}),
            (0.78, {"lift": 0.02, "sp_ph": 15, "ll_ph": 40, "rl_ph": 40, "ls_ph": -40, "rs_ph": -40}),
            (1.0, {}),
        ),
    ),
    Action(
        "raise_arms",
        "arm_gesture",
        "raising both arms",
        ("a person lifts both arms up", "putting both hands up in the air"),
        keys=(
            (0.0, {}),
            (0.5, {"la_th": 95, "ra_th": 95, "lf_th": 100, "rf_th": 100}),
            (1.0, {"la_th": 172, "ra_th": 172, "lf_th": 176, "rf_th": 176}),
        ),
    ),
    Action(
        "lower_arms",
        "arm_gesture",
        "lowering both arms",
        ("a person brings both arms down", "dropping both hands to the sides"),
        reverse_of="raise_arms",
    ),
    Action(
        "wave_left_hand",
        "arm_gesture",
        "waving the left hand",
        ("a person waves with the left hand", "greeting with the left hand"),
        keys=((0.0, {}), (0.22, WAVE_L), (0.78, WAVE_L), (1.0, {})),
        periodic=(Periodic("lf_th", 28, (2.0, 3.5), (0.22, 0.78)),),
    ),
    Action(
        "wave_right_hand",
        "arm_gesture",
        "waving the right hand",
        ("a person waves with the right hand", "greeting with the right hand"),
        mirror_of="wave_left_hand",
    ),
    Action(
        "clap_hands",
        "arm_gesture",
        "clapping hands",
        ("a person claps", "applauding with both hands"),
        keys=((0.0, {}), (0.2, CLAP), (0.8, CLAP), (1.0, {})),
        periodic=(
            Periodic("lf_th", 20, (2.5, 4.0), (0.2, 0.8)),
            Periodic("rf_th", 20, (2.5, 4.0), (0.2, 0.8)),
        ),
    ),
    Action(
        "turn_left",
        "locomotion",
        "turning to the left",
        ("a person turns left", "rotating the body to the left"),
        keys=((0.0, {"yaw": -45}), (1.0, {"yaw": 45})),
        periodic=LEGS_STEP,
    ),
    Action(
        "turn_right",
        "locomotion",
        "turning to the right",
        ("a person turns right", "rotating the body to the right"),
        reverse_of="turn_left",
    ),
    Action(
        "step_left",
        "locomotion",
        "stepping to the left",
        ("a person steps sideways to the left", "moving a step to the left"),
        keys=(
            (0.0, {"root_x": -0.14}),
            (0.3, {"root_x": -0.08, "ll_th": 18, "ls_th": 14, "ls_ph": -25}),
            (0.55, {"root_x": 0.02, "ll_th": 12, "ls_th": 12, "rl_th": 10, "rs_th": 10}),
            (0.8, {"root_x": 0.1, "rl_th": -4, "rs_th": -2, "rs_ph": -25}),
            (1.0, {"root_x": 0.14}),
        ),
    ),
    Action(
        "step_right",
        "locomotion",
        "stepping to the right",
        ("a person steps sideways to the right", "moving a step to the right"),
        reverse_of="step_left",
    ),
    Action(
        "pick_up",
        "object_handling",
        "picking [something] up",
        ("a person picks up [something] from the floor", "lifting [something] off the ground"),
        keys=(
            (0.0, {}),
            (0.45, {"sp_ph": 70, "ll_ph": 70, "rl_ph": 70, "ls_ph": -35, "rs_ph": -35})
            + (0.45, {"ra_ph": 5, "rf_ph": 12, "ra_th": 5, "la_ph": 20, "lf_ph": 30, "la_th": 15}),
            (1.0, {"ra_ph": 20, "rf_ph": 75, "ra_th": 5, "rf_th": 0}),
        ),
        obj="pickup",
        event=0.45,
    ),
    Action(
        "put_down",
        "object_handling",
        "putting [something] down",
        ("a person puts [something] on the floor", "placing [something] on the ground"),
        reverse_of="pick_up",
    ),
    Action(
        "push",
        "object_handling",
        "pushing [something] away",
        ("a person pushes [something] forward", "moving [something] away with both hands"),
        keys=(
            (0.0, PUSH0),
            (1.0, PUSH0 | {"la_ph": 80, "ra_ph": 80, "sp_ph": 18, "root_z": 0.12, "ll_ph": 25})
            + (1.0, {"rl_ph": -10}),
        ),
        obj="both",
    ),
    Action(
        "pull",
        "object_handling",
        "pulling [something] closer",
        ("a person pulls [something] towards themselves", "drawing [something] in with both hands"),
        reverse_of="push",
    ),
    Action(
        "throw",
        "object_transfer",
        "throwing [something]",
        ("a person throws [something]", "tossing [something] away"),
        keys=(
            (0.0, HOLD_R),
            (0.35, {"ra_ph": -120, "rf_ph": -160, "la_ph": 50, "sp_ph": -8, "yaw": 15}),
            (0.62, {"ra_ph": -215, "rf_ph": -225, "sp_ph": 12, "la_ph": 10, "yaw": -10}),
            (1.0, {"ra_ph": -300, "rf_ph": -300, "sp_ph": 20, "yaw": -15, "rl_ph": -15}),
        ),
        obj="throw",
        event=0.62,
    ),
    Action(
        "catch",
        "object_transfer",
        "catching [something]",
        ("a person catches [something]", "receiving [something] in the hand"),
        reverse_of="throw",
    ),
    Action(
        "kick",
        "object_transfer",
        "kicking [something]",
        ("a person kicks [something]", "striking [something] with the foot"),
        keys=(
            (0.0, {}),
            (0.32, {"rl_ph": -35, "rs_ph": -70, "la_ph": 30, "ra_ph": -20, "sp_ph": -5}),
            (0.5, {"rl_ph": 30, "rs_ph": 20, "la_ph": 0, "ra_ph": 10}),
            (0.65, {"rl_ph": 70, "rs_ph": 60, "la_ph": -25, "ra_ph": 30, "sp_ph": -10}),
            (1.0, {}),
        ),
        obj="kick",
        event=0.5,
    ),
    Action(
        "bring_to_mouth",
        "object_use",
        "bringing [something] to the mouth",
        ("a person raises [something] to their mouth", "holding [something] up to the face"),
        keys=(
            (0.0, HOLD_R),
            (0.4, {"ra_ph": 30, "ra_th": -10, "rf_th": -150, "rf_ph": 40}),
            (0.6, {"ra_ph": 30, "ra_th": -10, "rf_th": -150, "rf_ph": 40}),
            (1.0, HOLD_R),
        ),
        obj="hand",
    ),
    Action(
        "lift_overhead",
        "object_use",
        "lifting [something] overhead",
        ("a person lifts [something] above the head", "raising [something] high with both hands"),
        keys=(
            (0.0, CARRY2),
            (0.5, {"la_ph": 170, "ra_ph": 170, "lf_ph": 175, "rf_ph": 175, "lf_th": 25, "rf_th": 25}),
            (1.0, CARRY2),
        ),
        obj="both",
    ),
    Action(
        "shake",
        "object_use",
        "shaking [something]",
        ("a person shakes [something]", "moving [something] quickly back and forth"),
        keys=((0.0, {"ra_ph": 30, "rf_ph": 75}), (1.0, {"ra_ph": 30, "rf_ph": 75})),
        periodic=(
            Periodic("rf_ph", 25, (3.0, 5.0), (0.05, 0.95)),
            Periodic("rf_th", 10, (3.0, 5.0), (0.05, 0.95), np.pi / 2),
        ),
        obj="hand",
    ),
]


def _merge_keys(keys: tuple) -> tuple[Key, ...]:
    """Allow `(s, a) + (s, b)` keyframe literals (concatenated into (s, a, s, b)) to keep lines short."""
    out: list[Key] = []
    for k in keys:
        items = list(k)
        s, d = items[0], {}
        for i in range(0, len(items), 2):
            d |= items[i + 1]
        out.append((s, d))
    return tuple(out)


ACTIONS: dict[str, Action] = {a.name: a for a in _BASE}
FINE_ACTIONS: list[str] = [a.name for a in _BASE]
COARSE_OF: dict[str, str] = {a.name: a.coarse for a in _BASE}
TEMPLATE_OF: dict[str, str] = {a.name: a.template for a in _BASE}
# Actions that differ only in time order (one is the time reversal of the other) or in direction: a model
# must use motion, not one frame, to tell them apart.
TIME_ORDER_PAIRS: list[tuple[str, str]] = [
    ("sit_down", "stand_up"),
    ("raise_arms", "lower_arms"),
    ("turn_left", "turn_right"),
    ("step_left", "step_right"),
    ("pick_up", "put_down"),
    ("push", "pull"),
    ("throw", "catch"),
]
COARSE_ACTIONS: list[str] = list(dict.fromkeys(a.coarse for a in _BASE))
OBJECT_ACTIONS: set[str] = {n for n in FINE_ACTIONS if "[something]" in TEMPLATE_OF[n]}


def resolve(name: str) -> tuple[Action, bool]:
    """The action that carries the motion definition, and whether time runs backwards."""
    a = ACTIONS[name]
    if a.reverse_of:
        base, rev = resolve(a.reverse_of)
        return base, not rev
    if a.mirror_of:
        base = ACTIONS[a.mirror_of]
        m = {"l": "r", "r": "l"}
        periodic = tuple(
            Periodic(m[p.param[0]] + p.param[1:], p.amp, p.cycles, p.window, p.phase, p.rectify)
            for p in base.periodic
        )
        keys = tuple((s, _mirror(d)) for s, d in _merge_keys(base.keys))
        return Action(
            a.name, a.coarse, a.template, a.paraphrases, keys, periodic, base.obj, base.event
        ), False
    return a, False


def _smooth(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


def action_params(
    name: str,
    sigma: np.ndarray,
    amp: float = 1.0,
    cycles: float | None = None,
    phase: float = 0.0,
) -> np.ndarray:
    """Pose parameters [T, P] of `name` at normalised action times `sigma` (clamped to [0, 1]).

    `amp` scales the deviation from the neutral pose; `cycles`/`phase` set periodic parts (the
    range midpoint and 0 when not given). Reversed actions evaluate their base at 1 - sigma.
    """
    base, rev = resolve(name)
    s = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, 1.0)
    if rev:
        s = 1.0 - s
    keys = _merge_keys(base.keys)
    neutral = neutral_vector()
    kt = np.array([k[0] for k in keys])
    kv = np.tile(neutral, (len(keys), 1))
    for i, (_, d) in enumerate(keys):
        for k, v in d.items():
            kv[i, P[k]] = v
    idx = np.clip(np.searchsorted(kt, s, side="right") - 1, 0, len(keys) - 2)
    span = np.maximum(kt[idx + 1] - kt[idx], 1e-9)
    w = _smooth(np.clip((s - kt[idx]) / span, 0.0, 1.0))[:, None]
    out = kv[idx] * (1.0 - w) + kv[idx + 1] * w
    for p in base.periodic:
        c = cycles if cycles is not None else 0.5 * sum(p.cycles)
        lo, hi = p.window
        env = np.clip(np.minimum(s - lo, hi - s) / 0.08, 0.0, 1.0)
        wave = np.sin(2 * np.pi * c * (s - lo) + phase + p.phase)
        if p.rectify:
            wave = np.maximum(wave, 0.0)
        out[:, P[p.param]] += p.amp * env * wave
    return neutral + amp * (out - neutral)


def action_object_rule(name: str) -> tuple[str | None, float, bool]:
    """(object rule, event time in base-action time, reversed) of an action."""
    base, rev = resolve(name)
    return base.obj, base.event, rev


def cycles_range(name: str) -> tuple[float, float]:
    base, _ = resolve(name)
    return base.periodic[0].cycles if base.periodic else (1.0, 1.0)


def caption_for(name: str, obj: str) -> tuple[str, list[str]]:
    """Full caption and paraphrases with `[something]` replaced by e.g. 'a red ball'."""
    a = ACTIONS[name]
    fill = f"a {obj}" if obj else "something"
    return a.template.replace("[something]", fill), [p.replace("[something]", fill) for p in a.paraphrases]


assert len(PARAMS) == len(neutral_vector())
