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

A clip's whole plan (`ClipPlan`: short-side resize, crop, then these parameters) moves every stream of a
sample the same way: pixels through `apply_plan` (torchvision's ops), and dense maps, flow and keypoints
through the plan's exact affine map (`plan_matrix`): label maps by nearest neighbour, flow resampled with
its vectors mapped by the plan's linear part (scaled by a resize, `u` negated by a flip, rotated by a
rotation), keypoints mapped point by point, with left/right joints swapped under a flip and visibility
false once a keypoint leaves the frame (`move_stream`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
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


# ------------------------------------------------------------------------------------------------------
# Clip plans: everything random or size-dependent about turning frames into the model's input


@dataclass(frozen=True)
class ClipPlan:
    """Everything random or size-dependent about turning a clip's frames into the model's input, decided
    before the pixels are seen (so the frames can be decoded elsewhere, e.g. on the GPU, and the result is
    the same): an optional resize, a crop origin, and the augmentation parameters."""

    resize: tuple[int, int] | None  # (height, width) to resize to first
    top: int | None  # crop origin (None: no fixed-size crop; the augmentation's box does it)
    left: int | None
    params: ClipParams | None = None


def plan_clip(
    height: int,
    width: int,
    size: int,
    *,
    short_side: int | None = None,
    rng: np.random.Generator | None = None,
    crop: tuple[int, int] | None = None,
    augment: dict | None = None,
) -> ClipPlan:
    """The plan for `height` x `width` frames: short side to `short_side` (default `size`) unless it already
    has that length, a `size` crop (centred, random from `rng`, or test crop `crop = (index, count)`), then
    `augment` parameters drawn from `rng`. With `augment.crop_scale` the random box is drawn on the frames
    as read and resized straight to `size` instead (no short-side resize first)."""
    if rng is not None and augment is not None and augment["crop_scale"] is not None:
        return ClipPlan(None, None, None, sample_params(rng, height, width, augment))
    target = short_side or size
    resize = None
    h, w = height, width
    if min(h, w) != target:
        scale = target / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        resize = (h, w)
    if crop is not None:
        top, left = crop_origin(crop[0], crop[1], h, w, size)
    elif rng is None:
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    params = sample_params(rng, size, size, augment) if rng is not None and augment is not None else None
    return ClipPlan(resize, top, left, params)


def apply_plan(x: Tensor, plan: ClipPlan, size: int) -> Tensor:
    """uint8 [T, 3, H, W] frames (any device) -> uint8 [3, T, size, size] as `plan` says. Only the crop is
    copied when no resize is needed (copying whole frames into another layout first cost 1.8 of 4.3 ms per
    16-frame clip read from a frame cache)."""
    if plan.resize is not None:
        y = F.interpolate(
            x.float().contiguous(),  # [T, 3, H, W] contiguous: ~1.4x faster than channels-last, same values
            size=plan.resize,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        x = y.round().clamp(0, 255).to(torch.uint8)
    if plan.top is not None:
        x = x[:, :, plan.top : plan.top + size, plan.left : plan.left + size]
    x = x.transpose(0, 1)  # [3, T, h, w]
    if plan.params is not None:
        return apply_params(x, plan.params, size)
    return x.contiguous()


def tchw(clip: np.ndarray | Tensor) -> Tensor:
    """numpy [T, H, W, 3] (a view, no copy) or a tensor already [T, 3, H, W] -> tensor [T, 3, H, W]."""
    return torch.from_numpy(clip).permute(0, 3, 1, 2) if isinstance(clip, np.ndarray) else clip


def resize_clip(
    clip: np.ndarray | Tensor,
    size: int,
    *,
    short_side: int | None = None,
    rng: np.random.Generator | None = None,
    crop: tuple[int, int] | None = None,
) -> Tensor:
    """uint8 frames -> uint8 [3, T, size, size]; `clip` is numpy [T, H, W, 3] (decoded video) or a tensor
    [T, 3, H, W] (the layout JPEG decoding returns, e.g. `FrameCache.read_frames`).

    The short side is resized to `short_side` (default `size`) unless it already has that length, then a
    `size` x `size` crop is taken: centred, at a random position drawn from `rng` (training), or test crop
    `crop = (index, count)` of multi-view testing (`transforms.crop_origin`). With a frame cache built at
    short side 128 and `size` 112 this is the usual "128, crop 112" recipe with no resampling at all in the
    loader.
    """
    x = tchw(clip)
    plan = plan_clip(x.shape[-2], x.shape[-1], size, short_side=short_side, rng=rng, crop=crop)
    return apply_plan(x, plan, size)


def resize_short_side(clip: np.ndarray, short: int) -> np.ndarray:
    """uint8 [T, H, W, 3] with its short side resized to `short` (aspect ratio kept)."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    y = F.interpolate(
        x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------------------
# The plan as one affine map: dense maps, flow and keypoints move exactly as the pixels do
#
# Coordinates are pixel centres: pixel (row i, column j) sits at (x=j, y=i), so a frame of width W spans
# x in [-0.5, W - 0.5). Every step of a plan is affine in these coordinates (a resize with
# align_corners=False maps x to (x + 0.5) * s - 0.5; torchvision rotates about ((W-1)/2, (H-1)/2)).

STREAM_KINDS = {
    "image": "uint8 frames [T, H, W, C] or [T, C, H, W] -> [C, T, size, size]; the pixel ops, jitter included",
    "map": "float maps [T, C, H, W] -> [C, T, size, size]; bilinear, values kept (depth, heat maps)",
    "flow": "optical flow [T, 2, H, W] (dx, dy pixels) -> [2, T, size, size]; vectors move with the frame",
    "labels": "label maps [T, H, W] -> [T, size, size]; nearest neighbour, `flip_pairs` swap label values",
    "keypoints": "[T, J, 2 or 3] (x, y[, visible]) pixels -> [T, J, 3]; `flip_pairs` swap joints",
    "sequence": "[T, ...] arrays (IMU, features, pose vectors): only indexed by frame, never moved",
}
SPATIAL = ("image", "map", "flow", "labels", "keypoints")


def _scale(sx: float, sy: float) -> np.ndarray:
    """Resize by (sx, sy) with half-pixel centres."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def plan_matrix(plan: ClipPlan, height: int, width: int, size: int) -> np.ndarray:
    """3 x 3 affine map from pixel coordinates of the `height` x `width` frames the plan was made for to
    those of the `size` x `size` output, step by step as `apply_plan` moves the pixels."""
    m = np.eye(3)
    h, w = height, width
    if plan.resize is not None:
        m = _scale(plan.resize[1] / w, plan.resize[0] / h) @ m
        h, w = plan.resize
    if plan.top is not None:
        m = _shift(-plan.left, -plan.top) @ m
        h = w = size
    p = plan.params
    if p is None:
        return m
    if p.crop is not None:
        top, left, bh, bw = p.crop
        m = _scale(size / bw, size / bh) @ _shift(-left, -top) @ m
        h = w = size
    if p.flip:
        m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    if p.angle:
        a = math.radians(p.angle)
        c, s = math.cos(a), math.sin(a)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        m = _shift(cx, cy) @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ _shift(-cx, -cy) @ m
    return m


def stream_matrix(
    plan: ClipPlan, plan_hw: tuple[int, int], frame_hw: tuple[int, int], size: int
) -> np.ndarray:
    """`plan_matrix` for a stream whose pixels (or keypoint coordinates) live on a `frame_hw` grid covering
    the same view as the `plan_hw` frames the plan was drawn for (e.g. flow at the video's native size)."""
    pre = _scale(plan_hw[1] / frame_hw[1], plan_hw[0] / frame_hw[0])
    return plan_matrix(plan, plan_hw[0], plan_hw[1], size) @ pre


def _source_points(m: np.ndarray, size: int, count: int) -> Tensor:
    """Where each output pixel centre comes from: [count, size, size, 2] (x, y) in input pixels."""
    inv = np.linalg.inv(m)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src = np.einsum("ij,jhw->hwi", inv[:2], np.stack([xs, ys, np.ones_like(xs)]))
    return torch.from_numpy(src).expand(count, size, size, 2)


def warp(x: Tensor, m: np.ndarray, size: int, mode: str) -> tuple[Tensor, Tensor]:
    """Resample [N, C, H, W] maps through the affine `m` onto `size` x `size`; returns (maps, inside), inside
    [N, size, size] marking output pixels whose source lies in the frame. mode: nearest | bilinear."""
    n, _, h, w = x.shape
    src = _source_points(m, size, n).to(x.device)
    inside = (src[..., 0] >= -0.5) & (src[..., 0] < w - 0.5) & (src[..., 1] >= -0.5) & (src[..., 1] < h - 0.5)
    grid = torch.stack([(src[..., 0] + 0.5) / w * 2 - 1, (src[..., 1] + 0.5) / h * 2 - 1], -1)
    padding = "zeros" if mode == "nearest" else "border"  # bilinear: no fading towards the edge
    out = F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=padding, align_corners=False)
    return out, inside


def move_labels(labels: Tensor, m: np.ndarray, size: int, flipped: bool, pairs=()) -> tuple[Tensor, Tensor]:
    """Label maps [T, H, W] (integers) -> ([T, size, size] same dtype, inside); nearest neighbour, so every
    output value is an input value; under a flip the label values of each `pairs` entry trade places."""
    dtype = labels.dtype
    out, inside = warp(labels[:, None].to(torch.float64), m, size, "nearest")
    out = out[:, 0].round().to(dtype)
    if flipped and pairs:
        index = out.long()
        top = int(index.max()) if index.numel() else 0
        table = torch.arange(max(top, *(max(p) for p in pairs)) + 1, device=out.device)
        for a, b in pairs:
            table[a], table[b] = b, a
        out = torch.where(index >= 0, table[index.clamp(min=0)], index).to(dtype)  # negative: ignore labels
    return out, inside


def move_flow(flow: Tensor, m: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """Flow [T, 2, H, W] (dx, dy in input pixels) -> ([2, T, size, size] in output pixels, inside): resampled
    bilinearly, each vector mapped by the plan's linear part (resize factors, a flip's sign, a rotation)."""
    out, inside = warp(flow.to(torch.float32), m, size, "bilinear")
    a = torch.from_numpy(m[:2, :2]).to(device=flow.device, dtype=torch.float32)
    out = torch.einsum("ij,tjhw->tihw", a, out)
    return out.transpose(0, 1).contiguous(), inside


def move_map(maps: Tensor, m: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """Float maps [T, C, H, W] -> ([C, T, size, size], inside), bilinear."""
    out, inside = warp(maps.to(torch.float32), m, size, "bilinear")
    return out.transpose(0, 1).contiguous(), inside


def move_keypoints(points: Tensor, m: np.ndarray, size: int, flipped: bool, pairs=()) -> Tensor:
    """Keypoints [T, J, 2 or 3] (x, y[, visible]) -> [T, J, 3] float32 through the affine `m`: visible only
    where it was and the point is still inside the `size` x `size` frame; under a flip the joints of each
    `pairs` entry trade places (the left wrist of a mirrored clip is where the right wrist was)."""
    p = points.to(torch.float64)
    xy = p[..., :2] @ torch.from_numpy(m[:2, :2]).to(p.device).T + torch.from_numpy(m[:2, 2]).to(p.device)
    vis = p[..., 2] > 0 if p.shape[-1] > 2 else torch.ones(p.shape[:-1], dtype=torch.bool, device=p.device)
    vis = vis & (xy >= -0.5).all(-1) & (xy < size - 0.5).all(-1)
    out = torch.cat([xy, vis[..., None].to(torch.float64)], -1).to(torch.float32)
    if flipped and pairs:
        order = list(range(out.shape[1]))
        for a, b in pairs:
            order[a], order[b] = b, a
        out = out[:, order]
    return out


def _tensor(data: np.ndarray | Tensor) -> Tensor:
    if isinstance(data, Tensor):
        return data
    data = np.ascontiguousarray(data)
    if data.dtype.kind in "iu" and data.dtype not in (np.uint8, np.int16, np.int32, np.int64):
        data = data.astype(np.int64)  # label types torch lacks (uint16, uint32, ...)
    return torch.from_numpy(data)


def move_stream(
    kind: str,
    data: np.ndarray | Tensor,
    plan: ClipPlan | None,
    plan_hw: tuple[int, int] | None,
    size: int,
    *,
    grid: tuple[int, int] | None = None,
    pairs: Sequence[tuple[int, int]] = (),
) -> tuple[Tensor, Tensor | None]:
    """One stream of a sample moved by the sample's plan (drawn for `plan_hw` frames): returns the stream
    in its output layout (`STREAM_KINDS`) and, for dense maps, `inside` [T, size, size] (False where the
    output pixel came from outside the frame: rotated-in corners). `grid` is the (height, width) of the
    stream's pixels, or for keypoints of the frame their coordinates are in; `pairs` its flip pairs."""
    if kind == "sequence" or plan is None:
        return _tensor(data), None
    flipped = plan.params is not None and plan.params.flip
    if kind == "image":
        x = tchw(data)
        if tuple(x.shape[-2:]) != tuple(plan_hw):  # another camera's frames: onto the plan's frames first
            y = F.interpolate(
                x.float(), size=tuple(plan_hw), mode="bilinear", antialias=True, align_corners=False
            )
            x = y.round().clamp(0, 255).to(torch.uint8)
        return apply_plan(x, plan, size), None
    m = stream_matrix(plan, plan_hw, grid, size)
    x = _tensor(data)
    if kind == "labels":
        return move_labels(x, m, size, flipped, pairs)
    if kind == "flow":
        return move_flow(x, m, size)
    if kind == "map":
        return move_map(x, m, size)
    if kind == "keypoints":
        return move_keypoints(x, m, size, flipped, pairs), None
    raise ValueError(f"unknown stream kind {kind!r}; expected one of {', '.join(STREAM_KINDS)}")
