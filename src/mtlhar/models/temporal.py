"""Temporal modules: reduce a sequence of features [B, T, D] to one vector [B, D].

Each module takes an optional padding mask [B, T] (True = valid step) so that variable-length inputs
pool only over their real steps. More modules (pyramid, LSTM, sub-event filters...) join `TEMPORAL`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MeanPool(nn.Module):
    """Mean over valid time steps."""

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if valid is None:
            return x.mean(dim=1)
        w = valid.to(x.dtype).unsqueeze(-1)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class MaxPool(nn.Module):
    """Max over valid time steps."""

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if valid is None:
            return x.amax(dim=1)
        return x.masked_fill(~valid.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


TEMPORAL: dict[str, type[nn.Module]] = {"mean": MeanPool, "max": MaxPool}


def build_temporal(name: str, dim: int) -> nn.Module:
    if name not in TEMPORAL:
        from ..errors import ConfigError

        raise ConfigError(f"temporal module {name!r} does not exist; choose from {sorted(TEMPORAL)}")
    return TEMPORAL[name]()
