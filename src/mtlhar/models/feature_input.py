"""The encoder for pre-extracted features: [B, T, D] in, taps `frames` and `pooled` out, no parameters.

Frozen-backbone training: `mtlhar features` writes T x D features once; heads (each with its own
temporal module) then train on the `features` stream in seconds on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import DataError


class FeatureInput(nn.Module):
    """Identity encoder over [B, T, dim] features (e.g. 1024-d I3D segments)."""

    def __init__(self, *, dim: int, stream: str = "features"):
        super().__init__()
        self.stream, self.out_dim = stream, dim
        self.taps = {"frames": (dim, "sequence"), "pooled": (dim, "vector")}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.out_dim:
            raise DataError(f"feature input expects [B, T, {self.out_dim}] features, got {tuple(x.shape)}")
        x = x.float()
        return {"frames": x, "pooled": x.mean(dim=1)}
