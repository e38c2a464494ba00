"""Clip-consistent augmentation, flip label rules and the fixed crops of multi-view testing.

Clips are uint8 `[C, T, H, W]` (the layout `dataset.resize_clip` returns) or batches `[B, C, T, H, W]`.
Every frame of a clip gets the SAME random parameters (crop box, flip, angle, colour factors), drawn from
the numpy Generator passed in: the dataset seeds it from (seed, epoch, row), so a resumed run sees the
same augmented data. The parameters are drawn on the CPU (`sample_params`) and applied with
torchvision's `transforms.v2.functional` ops (`apply_params`, `apply_batch`), which run on whatever
device the clip lives on: a loader can ship plain clips and augment a CUDA batch.

Flipping is off by default because it changes the meaning of left/right actions. A task declares how its
labels move under a flip with `args: {flip_swap: [[wave_left, wave_right], ...]}` (class-name pairs):
when a clip is flipped, those classes trade places in that task's target. Tasks without a rule keep
their labels.

Example:
    >>> rng = np.random.default_rng(0)
    >>> aug = check_augment({"crop_scale": [0.5, 1.0], "flip": True, "jitter": 0.2})
    >>> clip = torch.zeros(3, 8, 64, 80, dtype=torch.uint8)
    >>> out, params = augment_clip(clip, rng, aug, size=56)
    >>> tuple(out.shape)
    (3, 8, 56, 56)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..tasks import Task

# The keys of `data.augment`, what each one means, and its default when the key is absent.
AUGMENT_KEYS = {
    "crop_scale": "[min, max] area fraction of a random resized crop, 0 < min <= max <= 1 (absent: plain random crop)",
    "crop_ratio": "[min, max] aspect ratio (width / height) of the random resized crop (default [0.75, 1.333])",
    "flip": "horizontal flip: true (probability 0.5), false, or a probability in [0, 1]",
    "rotate_deg": "largest rotation in degrees, drawn uniformly in [-rotate_deg, rotate_deg] (default 0)",
    "jitter": "colour jitter strength s (factor in [1 - s, 1 + s]) or {brightness, contrast, saturation}",
}
JITTER_KEYS = ("brightness", "contrast", "saturation")
FLIP_KINDS = ("classification", "multilabel")  # kinds whose targets index classes


def _number(value: Any, key: str, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        span = f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
        raise ConfigError(f"config key '{key}': got {value!r}, expected a number {span}")
    return float(value)


def _range(value: Any, key: str, lo: float, hi: float) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"config key '{key}': got {value!r}, expected a [min, max] pair")
    a, b = (_number(v, key, lo, hi) for v in value)
    if a > b or a <= 0:
        raise ConfigError(f"config key '{key}': got {value!r}, expected 0 < min <= max")
    return a, b


def check_augment(augment: dict[str, Any] | None, where: str = "data.augment") -> dict[str, Any] | None:
    """Validate a `data.augment` mapping; returns it with defaults filled in, or None when it is empty.

    Raises ConfigError naming the key, the value and what is allowed.
    """
    if not augment:
        return None
    if not isinstance(augment, dict):
        raise ConfigError(f"config key '{where}': got {augment!r}, expected a mapping")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown config key '{where}.{unknown[0]}'; allowed keys in {where}: {', '.join(AUGMENT_KEYS)}"
        )
    out: dict[str, Any] = {"crop_scale": None, "crop_ratio": (3 / 4, 4 / 3)}
    if augment.get("crop_scale") is not None:
        out["crop_scale"] = _range(augment["crop_scale"], f"{where}.crop_scale", 0.0, 1.0)
    if augment.get("crop_ratio") is not None:
        out["crop_ratio"] = _range(augment["crop_ratio"], f"{where}.crop_ratio", 0.0, math.inf)
    flip = augment.get("flip", False)
    out["flip"] = (0.5 if flip else 0.0) if isinstance(flip, bool) else _number(flip, f"{where}.flip", 0, 1)
    out["rotate_deg"] = _number(augment.get("rotate_deg", 0), f"{where}.rotate_deg", 0, 180)
    jitter = augment.get("jitter", 0)
    if isinstance(jitter, dict):
        bad = sorted(set(jitter) - set(JITTER_KEYS))
        if bad:
            raise ConfigError(
                f"unknown config key '{where}.jitter.{bad[0]}'; allowed keys: {', '.join(JITTER_KEYS)}"
            )
        out["jitter"] = {k: _number(jitter.get(k, 0), f"{where}.jitter.{k}", 0, 1) for k in JITTER_KEYS}
    else:
        s = _number(jitter, f"{where}.jitter", 0, 1)
        out["jitter"] = dict.fromkeys(JITTER_KEYS, s)
    return out


@dataclass(frozen=True)
class ClipParams:
    """One clip's random draws, shared by all of its frames."""

    crop: tuple[int, int, int, int] | None = None  # (top, left, height, width) in input pixels
    flip: bool = False
    angle: float = 0.0  # degrees, counter-clockwise
    brightness: float = 1.0  # factors; 1 leaves the clip unchanged
    contrast: float = 1.0
    saturation: float = 1.0


def crop_box(
    rng: np.random.Generator, height: int, width: int, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random box covering a `scale` fraction of the frame with aspect `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * r)), round(math.sqrt(target / r))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # no box fitted: the whole frame, cut to the nearest allowed aspect ratio, centred
    r = width / height
    h, w = height, width
    if r < ratio[0]:
        h = max(1, round(width / ratio[0]))
    elif r > ratio[1]:
        w = max(1, round(height * ratio[1]))
    return (height - h) // 2, (width - w) // 2, h, w


def sample_params(rng: np.random.Generator, height: int, width: int, augment: dict[str, Any]) -> ClipParams:
    """Draw one clip's parameters from `rng` (`augment` as returned by `check_augment`)."""
    crop = None
    if augment["crop_scale"] is not None:
        crop = crop_box(rng, height, width, augment["crop_scale"], augment["crop_ratio"])
    flip = bool(augment["flip"] > 0 and rng.random() < augment["flip"])
    deg = augment["rotate_deg"]
    angle = float(rng.uniform(-deg, deg)) if deg else 0.0
    factors = {k: float(rng.uniform(1 - s, 1 + s)) if s else 1.0 for k, s in augment["jitter"].items()}
    return ClipParams(crop=crop, flip=flip, angle=angle, **factors)


def apply_params(clip: Tensor, params: ClipParams, size: int | None = None) -> Tensor:
    """Apply one clip's parameters to uint8 `[C, T, H, W]` (any device). With `params.crop` the box is
    resized to `size` x `size`; without, the spatial size is kept."""
    x = clip.transpose(0, 1)  # [T, C, H, W]: the v2 ops treat leading dims as a batch of images
    if params.crop is not None:
        if size is None:
            raise ValueError("apply_params: a crop box needs the output `size`")
        top, left, h, w = params.crop
        x = TF.resized_crop(x, top, left, h, w, [size, size], antialias=True)
    if params.flip:
        x = TF.horizontal_flip(x)
    if params.angle:
        x = TF.rotate(x, params.angle, interpolation=InterpolationMode.BILINEAR)
    if params.brightness != 1.0:
        x = TF.adjust_brightness(x, params.brightness)
    if params.contrast != 1.0:
        x = TF.adjust_contrast(x, params.contrast)
    if params.saturation != 1.0:
        x = TF.adjust_saturation(x, params.saturation)
    return x.transpose(0, 1).contiguous()


def apply_batch(batch: Tensor, params: Sequence[ClipParams], size: int | None = None) -> Tensor:
    """Per-clip parameters on a uint8 batch `[B, C, T, H, W]`, on the device the batch lives on."""
    if len(params) != len(batch):
        raise ValueError(f"apply_batch: {len(params)} parameter sets for a batch of {len(batch)} clips")
    return torch.stack([apply_params(clip, p, size) for clip, p in zip(batch, params)])


def sample_batch_params(
    rng: np.random.Generator, n: int, height: int, width: int, augment: dict[str, Any]
) -> list[ClipParams]:
    """Parameters for `n` clips of one batch, drawn in order from one generator."""
    return [sample_params(rng, height, width, augment) for _ in range(n)]


def augment_clip(
    clip: Tensor, rng: np.random.Generator, augment: dict[str, Any], size: int | None = None
) -> tuple[Tensor, ClipParams]:
    """Draw parameters for uint8 `[C, T, H, W]` and apply them; returns (clip, parameters)."""
    params = sample_params(rng, clip.shape[-2], clip.shape[-1], augment)
    return apply_params(clip, params, size), params


# ------------------------------------------------------------------------------------------------------
# Flip label rules


def flip_permutations(tasks: Sequence[Task]) -> dict[str, Tensor]:
    """`{task: perm}` for every task declaring `args.flip_swap`: class `i` of a flipped clip becomes
    class `perm[i]`. Raises ConfigError naming the task and the class for a malformed rule."""
    perms = {}
    for t in tasks:
        rule = (t.args or {}).get("flip_swap")
        if not rule:
            continue
        where = f"task '{t.name}': args.flip_swap"
        if t.kind not in FLIP_KINDS:
            raise ConfigError(f"{where}: only {' and '.join(FLIP_KINDS)} tasks can swap labels on a flip")
        perm = list(range(len(t.classes)))
        seen: set[str] = set()
        for pair in rule:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(c, str) for c in pair)
            ):
                raise ConfigError(
                    f"{where}: expected pairs of class names like [[wave_left, wave_right]], got {pair!r}"
                )
            for c in pair:
                if c not in t.index:
                    shown = ", ".join(t.classes[:8]) + (", ..." if len(t.classes) > 8 else "")
                    raise ConfigError(
                        f"{where}: unknown class {c!r}; task '{t.name}' has {len(t.classes)} classes: {shown}"
                    )
                if c in seen:
                    raise ConfigError(f"{where}: class {c!r} appears in more than one pair")
                seen.add(c)
            a, b = t.index[pair[0]], t.index[pair[1]]
            perm[a], perm[b] = b, a
        perms[t.name] = torch.tensor(perm, dtype=torch.long)
    return perms


def flip_targets(
    targets: dict[str, Tensor], flipped: bool | Tensor, perms: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Targets of flipped clips with the declared classes swapped; a sample `[...]` or a batch with
    `flipped` a bool tensor `[B]`. Tasks without a rule are returned unchanged."""
    out = dict(targets)
    for name, perm in perms.items():
        if name not in targets:
            continue
        t = targets[name]
        perm = perm.to(t.device)
        # class-index targets map through perm; multi-hot targets (float) permute their class axis
        swapped = t[..., perm] if t.is_floating_point() else perm[t]
        f = torch.as_tensor(flipped, dtype=torch.bool, device=t.device)
        if f.ndim:
            f = f.view(-1, *([1] * (t.ndim - 1)))
        out[name] = torch.where(f, swapped, t)  # no boolean indexing: the same graph for every batch
    return out


# ------------------------------------------------------------------------------------------------------
# Multi-view testing: fixed crops


def crop_origin(index: int, count: int, height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of test crop `index` of `count` on a `height` x `width` frame.

    5 crops: centre, then the four corners. Otherwise `count` crops evenly spaced along the long side
    (3: left / centre / right, or top / centre / bottom for portrait frames), centred on the short side.
    """
    room_y, room_x = height - size, width - size
    if count == 1:
        return room_y // 2, room_x // 2
    if count == 5:
        fy, fx = [(0.5, 0.5), (0, 0), (0, 1), (1, 0), (1, 1)][index]
    else:
        f = index / (count - 1)
        fy, fx = (0.5, f) if width >= height else (f, 0.5)
    return round(fy * room_y), round(fx * room_x)
