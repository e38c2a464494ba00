"""The two-channel encoder of the Something-Something captioning paper (METHODS.md section 2).

Two convolutional channels read the same clip: a 2D channel (1x3x3 kernels: appearance, frame by frame) and
a 3D channel (3x3x3 kernels: motion), `width` base channels each (paper: 32), doubling every stage, space
downsampled at every stage and time kept at full resolution. Their spatially pooled features are concatenated
per time step, run through a bidirectional LSTM (paper: 512 per direction) and a fully connected layer
(paper: 1024) with ReLU and dropout (paper: 0.5).

Taps: `channel2d` / `channel3d` (the last map of each channel, [B, C, T, H, W]), `frames` (the FC output per
time step, [B, T, fc]) and `pooled` (its mean over time). A classifier on `frames` with temporal mean
pooling is the paper's "per-time-step logits averaged over time" (a linear layer commutes with the mean).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Normalize


def _stage(cin: int, cout: int, kernel: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=(1, 2, 2), padding=pad, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class TwoChannelEncoder(nn.Module):
    def __init__(
        self,
        *,
        width: int = 32,
        depth: int = 4,
        lstm: int = 512,
        fc: int = 1024,
        dropout: float = 0.5,
        stream: str = "rgb",
        in_channels: int = 3,
    ):
        super().__init__()
        self.stream = stream
        self.normalize = Normalize()
        dims = [width * 2**i for i in range(depth)]
        self.channel2d = nn.Sequential(
            *[_stage(c_in, c, (1, 3, 3)) for c_in, c in zip([in_channels, *dims[:-1]], dims)]
        )
        self.channel3d = nn.Sequential(
            *[_stage(c_in, c, (3, 3, 3)) for c_in, c in zip([in_channels, *dims[:-1]], dims)]
        )
        self.lstm = nn.LSTM(2 * dims[-1], lstm, batch_first=True, bidirectional=True)
        self.fc = nn.Sequential(nn.Linear(2 * lstm, fc), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.taps = {
            "channel2d": (dims[-1], "map"),
            "channel3d": (dims[-1], "map"),
            "frames": (fc, "sequence"),
            "pooled": (fc, "vector"),
        }
        self.out_dim = fc

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.normalize(x)
        a, m = self.channel2d(x), self.channel3d(x)  # [B, C, T, h, w] each
        per_step = _concat_per_step(a, m)  # [B, T, 2C]
        y, _ = self.lstm(per_step)
        frames = self.fc(y)
        return {"channel2d": a, "channel3d": m, "frames": frames, "pooled": frames.mean(dim=1)}


def _concat_per_step(a: Tensor, m: Tensor) -> Tensor:
    """Spatial means of the two channels, concatenated per time step: [B, T, Ca + Cm]."""
    return torch.cat([a.mean(dim=(3, 4)), m.mean(dim=(3, 4))], dim=1).transpose(1, 2)


def two_channel(**kw) -> TwoChannelEncoder:
    return TwoChannelEncoder(**kw)
