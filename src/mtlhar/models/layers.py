"""Layers every encoder family shares: input normalisation, convolution blocks, map taps, weights files."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import load as load_file
from ..errors import DataError

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class Normalize(nn.Module):
    """uint8 [B, 3, T, H, W] -> float normalised with per-channel mean/std."""

    def __init__(self, mean=KINETICS_MEAN, std=KINETICS_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1) * 255.0, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std


def map_taps(maps: dict[str, Tensor], spatial: str = "mean") -> dict[str, Tensor]:
    """Add `frames` (spatial mean, or max, of the last map) and `pooled` (their mean over time) taps."""
    last = maps[list(maps)[-1]]
    pooled = last.amax(dim=(3, 4)) if spatial == "max" else last.mean(dim=(3, 4))
    frames = pooled.transpose(1, 2)  # [B, T, C]
    return {**maps, "frames": frames, "pooled": frames.mean(dim=1)}


NORMS = ("batch", "group", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm (default), GroupNorm (no batch coupling: small or split batches, DDP without sync_bn)
    or nothing."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.Identity()


def conv_bn(cin: int, cout: int, kernel, stride, norm: str = "batch") -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, bias=norm == "none"),
        norm_layer(norm, cout),
        nn.ReLU(inplace=True),
    )


def load_state_dict_file(module: nn.Module, path: str | Path, drop_prefixes: tuple[str, ...] = ()) -> None:
    """Load a local state dict (a `.pt`/`.pth` file) into `module`, naming the file on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file not found: {path} (mtlhar downloads nothing: point to a local file)")
    state = load_file(path, what="weights")  # weights_only: a file that would run code is refused
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(drop_prefixes)]
    if missing or unexpected:
        raise DataError(
            f"{path}: weights do not match the architecture: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
