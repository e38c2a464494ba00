"""Temporal modules: reduce a sequence of features [B, T, D] to one vector [B, out_dim].

Every module is built as `Module(dim=D, ...)`, exposes `out_dim`, and takes an optional padding mask
`valid` [B, T] (True = a real step) so that clips of different lengths share a batch: padded steps never
change the output. The modules compared in METHODS §5 (per-frame / per-segment features, e.g. 1024-d
I3D): mean, max, pyramid max, LSTM / GRU, temporal convolution, learned sub-event filters (Cauchy),
temporal Gaussian mixture (TGM) layer and a small transformer. Aliases for the config: `TEMPORAL`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _valid(x: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if valid.shape != x.shape[:2]:
        from ..errors import DataError

        raise DataError(f"padding mask has shape {tuple(valid.shape)}; features are {tuple(x.shape)}")
    return valid.bool()


def _masked_max(x: Tensor, m: Tensor) -> Tensor:
    """Max over dim 1 where m [B, T] is True; a row with no True step gives 0."""
    y = x.masked_fill(~m.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)
    return torch.where(m.any(1, keepdim=True), y, torch.zeros_like(y))


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    w = m.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class MeanPool(nn.Module):
    """Mean over valid time steps."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if valid is None:
            return x.mean(dim=1)
        return _masked_mean(x, _valid(x, valid))


class MaxPool(nn.Module):
    """Max over valid time steps."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if valid is None:
            return x.amax(dim=1)
        return _masked_max(x, _valid(x, valid))


class PyramidMaxPool(nn.Module):
    """Temporal pyramid of max pools: whole clip, halves, quarters, concatenated (7 x D)."""

    def __init__(self, dim: int, levels: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.levels = tuple(levels)
        self.out_dim = dim * sum(self.levels)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        pos = m.long().cumsum(1) - 1  # rank of each valid step: padding may sit anywhere
        n = m.sum(1, keepdim=True)
        parts = []
        for level in self.levels:
            for j in range(level):
                start = (j * n) // level
                end = torch.maximum(-((-(j + 1) * n) // level), start + 1)  # >= 1 step per segment
                parts.append(_masked_max(x, m & (pos >= start) & (pos < end)))
        return torch.cat(parts, dim=1)


class LSTMPool(nn.Module):
    """Bidirectional LSTM over valid steps; the last hidden state of each direction (2 x hidden)."""

    rnn_class = nn.LSTM

    def __init__(self, dim: int, hidden: int = 256, layers: int = 1, bidirectional: bool = True):
        super().__init__()
        self.rnn = self.rnn_class(
            dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional
        )
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        # valid steps first, in order (a stable sort moves padding to the end)
        order = torch.sort((~m).to(torch.int8), dim=1, stable=True).indices
        x = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
        lengths = m.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
        dirs = 2 if self.rnn.bidirectional else 1
        return h[-dirs:].transpose(0, 1).reshape(x.shape[0], -1)


class GRUPool(LSTMPool):
    """Bidirectional GRU over valid steps; the last hidden state of each direction (2 x hidden)."""

    rnn_class = nn.GRU


class TemporalConv(nn.Module):
    """Conv1d (kernel 5) -> ReLU over time, then max over valid steps (out: `channels`)."""

    def __init__(self, dim: int, channels: int = 512, kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(dim, channels, kernel, padding=kernel // 2)
        self.out_dim = channels

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        x = x * m.unsqueeze(-1).to(x.dtype)  # padded steps read as zeros, as at the clip's edges
        y = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return _masked_max(y, m)


class SubEventFilters(nn.Module):
    """Learned sub-event (temporal attention) filters: N Cauchy filters, normalised over time (N x D).

    Per filter n = 1..N, with learned centre c, stride delta and width gamma (tanh-squashed) and clip
    length L (valid steps): g = (L-1)(c+1)/2, s = L(1-|delta|), mu_n = g + (n - N/2 - 0.5) s,
    w = exp(1.5 - 2|gamma|), F[n, t] proportional to 1 / (pi w (1 + ((t - mu_n)/w)^2)), summing to 1 over
    the valid t; output concat_n sum_t F[n, t] v_t, then dropout. Initialised so the N filters tile the
    clip (s = L/N, centred).
    """

    def __init__(self, dim: int, filters: int = 8, dropout: float = 0.5):
        super().__init__()
        self.n = filters
        self.center = nn.Parameter(torch.randn(filters) * 0.1)
        self.delta = nn.Parameter(torch.full((filters,), math.atanh(1 - 1 / filters)))
        self.gamma = nn.Parameter(torch.zeros(filters))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dim * filters

    def filters(self, length: Tensor, steps: int, pos: Tensor | None = None) -> Tensor:
        """F [B, N, steps] for clip lengths [B]; `pos` [B, steps]: each step's position (default t)."""
        L = length.to(self.center.dtype).unsqueeze(1)  # [B, 1]
        c, d, g = torch.tanh(self.center), torch.tanh(self.delta), torch.tanh(self.gamma)
        centre = (L - 1) * (c + 1) / 2
        stride = L * (1 - d.abs())
        n = torch.arange(1, self.n + 1, device=L.device, dtype=L.dtype)
        mu = centre + (n - self.n / 2 - 0.5) * stride  # [B, N]
        w = torch.exp(1.5 - 2 * g.abs())  # [N]
        if pos is None:
            pos = torch.arange(steps, device=L.device, dtype=L.dtype).expand(L.shape[0], steps)
        z = (pos.to(L.dtype).unsqueeze(1) - mu.unsqueeze(-1)) / w.view(1, -1, 1)
        return 1.0 / (math.pi * w.view(1, -1, 1) * (1 + z**2))

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        pos = m.long().cumsum(1) - 1
        f = self.filters(m.sum(1), x.shape[1], pos) * m.unsqueeze(1).to(x.dtype)
        f = f / f.sum(-1, keepdim=True).clamp_min(1e-12)
        s = torch.einsum("bnt,btd->bnd", f, x)
        return self.dropout(s.flatten(1))


class TGMLayer(nn.Module):
    """Temporal Gaussian mixture layer: `channels` temporal kernels, each a learned soft mixture of
    `gaussians` Gaussians (learned centres and widths over a `kernel`-step window), applied to every
    feature dimension; the channels are combined by a learned 1x1 mix, ReLU, then max over valid steps."""

    def __init__(self, dim: int, gaussians: int = 8, channels: int = 8, kernel: int = 9):
        super().__init__()
        self.kernel = kernel
        self.center = nn.Parameter(torch.linspace(-0.8, 0.8, gaussians))
        self.width = nn.Parameter(torch.zeros(gaussians))
        self.mix = nn.Parameter(torch.randn(channels, gaussians) * 0.1)
        self.combine = nn.Parameter(torch.full((channels,), 1.0 / channels))
        self.out_dim = dim

    def kernels(self) -> Tensor:
        """[channels, kernel]: each row a convex mixture of normalised Gaussians."""
        t = torch.arange(self.kernel, dtype=self.center.dtype, device=self.center.device)
        mu = (self.kernel - 1) * (torch.tanh(self.center) + 1) / 2
        sigma = torch.exp(1.5 - 2 * torch.tanh(self.width).abs())
        g = torch.exp(-0.5 * ((t.view(1, -1) - mu.view(-1, 1)) / sigma.view(-1, 1)) ** 2)
        g = g / g.sum(1, keepdim=True)
        return torch.softmax(self.mix, dim=1) @ g

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        b, t, d = x.shape
        x = x * m.unsqueeze(-1).to(x.dtype)
        k = self.kernels()
        # every feature dimension is a separate 1-channel signal: [B*D, 1, T]
        y = F.conv1d(x.transpose(1, 2).reshape(b * d, 1, t), k.unsqueeze(1), padding=self.kernel // 2)
        y = torch.einsum("nct,c->nt", y, self.combine).view(b, d, t).transpose(1, 2)
        return _masked_max(F.relu(y), m)


class SmallTransformer(nn.Module):
    """Linear to `width`, sinusoidal positions, `layers` pre-norm transformer layers with a key padding
    mask, then the mean over valid steps (out: `width`)."""

    def __init__(self, dim: int, width: int = 128, heads: int = 4, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(dim, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width
        self.out_dim = width

    def _positions(self, t: int, device, dtype) -> Tensor:
        pos = torch.arange(t, device=device, dtype=dtype).unsqueeze(1)
        freq = torch.exp(
            torch.arange(0, self.width, 2, device=device, dtype=dtype) * (-math.log(1e4) / self.width)
        )
        pe = torch.zeros(t, self.width, device=device, dtype=dtype)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return pe

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        m = _valid(x, valid)
        h = self.proj(x) + self._positions(x.shape[1], x.device, x.dtype)
        h = self.encoder(h, src_key_padding_mask=~m)
        return _masked_mean(self.norm(h), m)


TEMPORAL: dict[str, type[nn.Module]] = {
    "mean": MeanPool,
    "max": MaxPool,
    "pyramid": PyramidMaxPool,
    "lstm": LSTMPool,
    "gru": GRUPool,
    "tconv": TemporalConv,
    "subevents": SubEventFilters,
    "tgm": TGMLayer,
    "transformer": SmallTransformer,
}


def build_temporal(name: str, dim: int, *, where: str = "temporal module", **kwargs) -> nn.Module:
    """A temporal module by alias, for features of size `dim`; kwargs go to its constructor (`where` names
    them in errors)."""
    if name not in TEMPORAL:
        from ..errors import ConfigError

        raise ConfigError(f"temporal module {name!r} does not exist; choose from {sorted(TEMPORAL)}")
    import inspect

    allowed = [p for p in inspect.signature(TEMPORAL[name]).parameters if p != "dim"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(
            f"{where}: {name!r} takes no argument {', '.join(map(repr, unknown))}; allowed: {allowed or 'none'}"
        )
    try:
        return TEMPORAL[name](dim=dim, **kwargs)
    except (TypeError, ValueError) as e:
        from ..errors import ConfigError

        raise ConfigError(f"{where}: temporal module {name!r}: {e}") from None
