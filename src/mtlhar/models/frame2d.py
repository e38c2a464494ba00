"""2D-per-frame encoders (torchvision ResNet-18/50, MobileNetV3) with TSN averaging and optional TSM.

Every frame goes through the 2D network; `frames` [B, T, D] holds one vector per frame and `pooled` is
their mean (TSN's segment consensus: sample T segments with the `uniform` sampler). With `tsm=True` a
temporal shift module (Lin et al., TSM) moves 1/`shift_div` of the channels one step forward and as many
one step back in time at the input of every residual branch, so frames exchange information at no cost
in parameters. Weights: a local torchvision-format state dict (ImageNet), nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import Normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHS = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")


def temporal_shift(x: Tensor, frames: int, shift_div: int = 8) -> Tensor:
    """[B*T, C, H, W]: channels [0, C/d) take the previous frame's values, [C/d, 2C/d) the next one's."""
    bt, c, h, w = x.shape
    x = x.view(bt // frames, frames, c, h, w)
    fold = c // shift_div
    out = torch.zeros_like(x)
    out[:, 1:, :fold] = x[:, :-1, :fold]
    out[:, :-1, fold : 2 * fold] = x[:, 1:, fold : 2 * fold]
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(bt, c, h, w)


class TemporalShift(nn.Module):
    """Wraps the first layer of a residual branch; `frames` is set by the encoder before each forward."""

    def __init__(self, inner: nn.Module, shift_div: int = 8):
        super().__init__()
        self.inner, self.shift_div, self.frames = inner, shift_div, 1

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(temporal_shift(x, self.frames, self.shift_div))


class Frame2D(nn.Module):
    """A torchvision 2D network applied per frame; taps `stage1..4` (ResNet) or `stage4` (MobileNetV3)
    as [B, C, T, h, w] maps, `frames` [B, T, D], `pooled` [B, D] (TSN average over frames)."""

    def __init__(
        self,
        *,
        arch: str = "resnet18",
        weights: str | Path | None = None,
        tsm: bool = False,
        shift_div: int = 8,
        stream: str = "rgb",
    ):
        super().__init__()
        import torchvision.models as tvm

        if arch not in ARCHS:
            raise ConfigError(f"model.encoder_args.arch: {arch!r} is not one of {list(ARCHS)}")
        net = getattr(tvm, arch)(weights=None)
        if weights is not None:
            from .import_keys import load_checkpoint

            load_checkpoint(net, weights, layout="torchvision", strict=True)
        self.stream, self.arch = stream, arch
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.shifts: list[TemporalShift] = []
        if arch.startswith("resnet"):
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
            dims = [
                s[-1].conv3.out_channels if hasattr(s[-1], "conv3") else s[-1].conv2.out_channels
                for s in self.stages
            ]
            names = [f"stage{i + 1}" for i in range(4)]
            blocks = [b for s in self.stages for b in s]
            if tsm:
                for b in blocks:
                    b.conv1 = TemporalShift(b.conv1, shift_div)
                    self.shifts.append(b.conv1)
        else:
            self.stem = nn.Identity()
            self.stages = nn.ModuleList([net.features])
            dims, names = [net.features[-1].out_channels], ["stage4"]
            if tsm:
                for b in net.features:
                    if getattr(b, "use_res_connect", False):
                        b.block[0] = TemporalShift(b.block[0], shift_div)
                        self.shifts.append(b.block[0])
        self.tsm = tsm
        self.stage_names = names
        self.taps = {n: (d, "map") for n, d in zip(names, dims)}
        self.taps.update({"frames": (dims[-1], "sequence"), "pooled": (dims[-1], "vector")})
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        b, _, t, h, w = x.shape
        for s in self.shifts:
            s.frames = t
        y = self.normalize(x).transpose(1, 2).reshape(b * t, 3, h, w)
        y = self.stem(y)
        taps = {}
        for name, stage in zip(self.stage_names, self.stages):
            y = stage(y)
            taps[name] = y.view(b, t, *y.shape[1:]).transpose(1, 2)  # [B, C, T, h, w]
        frames = y.mean(dim=(2, 3)).view(b, t, -1)
        taps.update(frames=frames, pooled=frames.mean(dim=1))
        return taps
