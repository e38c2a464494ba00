"""Synthetic subjects: identity, body proportions, clothing colours and movement style."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import Body

SIZES = ["small", "medium", "large"]
BUILDS = ["slim", "broad"]
TEMPOS = ["slow", "normal", "fast"]
GIRTH = {"small": 0.85, "medium": 1.0, "large": 1.18}
TEMPO_FACTOR = {"slow": 0.8, "normal": 1.0, "fast": 1.25}

SKIN = [(241, 194, 160), (224, 172, 125), (198, 134, 86), (161, 102, 62), (110, 70, 45), (90, 56, 38)]
HAIR = [(30, 25, 20), (70, 45, 25), (120, 80, 40), (190, 160, 100), (150, 150, 150), (100, 30, 20)]
CLOTH = [
    (200, 40, 40),
    (40, 90, 190),
    (40, 150, 70),
    (230, 200, 60),
    (130, 60, 160),
    (240, 130, 40),
    (40, 40, 50),
    (230, 230, 230),
    (90, 160, 200),
    (150, 100, 60),
    (200, 90, 150),
    (110, 120, 60),
]
SHOES = [(30, 30, 30), (240, 240, 240), (110, 60, 30), (60, 60, 120)]


@dataclass(frozen=True)
class Subject:
    """One synthetic actor. Attributes that are manifest columns are `size`, `build`, `tempo`, `height`."""

    id: str
    size: str
    build: str
    tempo: str
    height: float
    body: Body
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    long_sleeves: bool
    amp: float  # movement amplitude style
    speed: float  # individual speed factor on top of the tempo class
    carriage: tuple[float, float, float]  # constant offsets of arm swing, elbow bend, forward lean


def make_subjects(n: int, seed: int) -> list[Subject]:
    """Deterministic subjects; categorical attributes are balanced and mutually independent."""
    rng = np.random.default_rng([seed, 7_777_777])
    sizes = [SIZES[i % 3] for i in rng.permutation(n)]
    builds = [BUILDS[i % 2] for i in rng.permutation(n)]
    tempos = [TEMPOS[i % 3] for i in rng.permutation(n)]
    heights = np.round(rng.uniform(0.85, 1.15, n), 2)
    out = []
    for i in range(n):
        broad = builds[i] == "broad"
        body = Body(
            shoulder_w=0.23 * (1.12 if broad else 0.9) * rng.uniform(0.95, 1.05),
            hip_w=0.11 * (0.95 if broad else 1.1),
            spine=0.29 * rng.uniform(0.95, 1.05),
            upper_arm=0.165 * rng.uniform(0.95, 1.05),
            thigh=0.245 * rng.uniform(0.96, 1.04),
            head_r=0.062 * rng.uniform(0.93, 1.07),
            girth=GIRTH[sizes[i]] * (1.06 if broad else 0.95),
        )
        c = rng.choice(len(CLOTH), 2, replace=False)
        out.append(
            Subject(
                id=f"s{i:02d}",
                size=sizes[i],
                build=builds[i],
                tempo=tempos[i],
                height=float(heights[i]),
                body=body,
                skin=SKIN[rng.integers(len(SKIN))],
                hair=HAIR[rng.integers(len(HAIR))],
                shirt=CLOTH[c[0]],
                trousers=CLOTH[c[1]],
                shoes=SHOES[rng.integers(len(SHOES))],
                long_sleeves=bool(rng.random() < 0.5),
                amp=float(rng.uniform(0.85, 1.12)),
                speed=float(rng.uniform(0.93, 1.07)),
                carriage=(float(rng.normal(0, 4)), float(rng.normal(0, 8)), float(rng.normal(0, 3))),
            )
        )
    return out
