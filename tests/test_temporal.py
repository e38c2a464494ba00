"""Temporal modules over T x D: shapes for variable T, padding masks, sub-event filters, TGM kernels."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlhar.errors import ConfigError
from mtlhar.models.temporal import TEMPORAL, SubEventFilters, TGMLayer, build_temporal

D = 12


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_temporal(name, D).eval()


@pytest.mark.parametrize("name", sorted(TEMPORAL))
@pytest.mark.parametrize("steps", [1, 5, 16])
def test_output_shape_for_variable_length(name, steps):
    m = _module(name)
    x = torch.randn(3, steps, D)
    y = m(x)
    assert y.shape == (3, m.out_dim) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(TEMPORAL))
def test_padding_never_changes_the_output(name):
    """A clip padded with garbage steps (mask False) gives the same vector as the clip alone."""
    m = _module(name)
    torch.manual_seed(1)
    short, long_ = torch.randn(1, 5, D), torch.randn(1, 9, D)
    padded = torch.cat([short, 100 * torch.randn(1, 4, D)], dim=1)
    x = torch.cat([padded, long_])
    valid = torch.tensor([[True] * 5 + [False] * 4, [True] * 9])
    with torch.no_grad():
        both = m(x, valid)
        alone = torch.cat([m(short), m(long_)])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-4)


def test_mask_shape_is_checked():
    with pytest.raises(Exception, match="padding mask has shape"):
        _module("max")(torch.randn(2, 4, D), torch.ones(2, 5, dtype=torch.bool))


def test_unknown_module_and_bad_argument_are_config_errors():
    with pytest.raises(ConfigError, match="choose from"):
        build_temporal("attention-pool", D)
    with pytest.raises(ConfigError, match="pyramid"):
        build_temporal("pyramid", D, depth=3)


def test_pyramid_takes_whole_halves_and_quarters():
    x = torch.arange(8.0).view(1, 8, 1)
    y = build_temporal("pyramid", 1)(x)
    assert y.tolist() == [[7.0, 3.0, 7.0, 1.0, 3.0, 5.0, 7.0]]


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 40),
    c=st.floats(-2, 2),
    delta=st.floats(-2, 2),
    gamma=st.floats(-2, 2),
)
def test_subevent_filters_are_normalised_and_centred_where_parameters_say(length, c, delta, gamma):
    n = 4
    m = SubEventFilters(dim=3, filters=n)
    with torch.no_grad():
        m.center.fill_(c), m.delta.fill_(delta), m.gamma.fill_(gamma)
    valid = torch.ones(1, length, dtype=torch.bool)
    f = m.filters(valid.sum(1), length)[0]  # unnormalised Cauchy [N, T]
    fn = f / f.sum(-1, keepdim=True)
    torch.testing.assert_close(fn.sum(-1), torch.ones(n))
    # the spec's centres: g = (L-1)(c+1)/2, s = L(1-|delta|), mu_n = g + (n - N/2 - 0.5) s
    tc, td = math.tanh(c), math.tanh(delta)
    g, s = (length - 1) * (tc + 1) / 2, length * (1 - abs(td))
    w = math.exp(1.5 - 2 * abs(math.tanh(gamma)))
    for i in range(n):
        mu = g + (i + 1 - n / 2 - 0.5) * s
        peak = min(max(mu, 0), length - 1)  # a Cauchy peaks at its centre, or at the nearer end
        assert abs(int(fn[i].argmax()) - peak) <= 0.5 + 1e-6
        t = torch.arange(length, dtype=torch.float32)
        expected = 1 / (math.pi * w * (1 + ((t - mu) / w) ** 2))
        torch.testing.assert_close(f[i], expected, atol=1e-6, rtol=1e-4)


def test_subevent_output_is_the_filter_weighted_sum():
    m = SubEventFilters(dim=2, filters=3, dropout=0.0)
    x = torch.randn(2, 7, 2)
    y = m(x).view(2, 3, 2)
    f = m.filters(torch.tensor([7, 7]), 7)
    f = f / f.sum(-1, keepdim=True)
    torch.testing.assert_close(y, torch.einsum("bnt,btd->bnd", f, x))


def test_subevent_filters_initially_tile_the_clip():
    m = SubEventFilters(dim=1, filters=8)
    with torch.no_grad():
        m.center.zero_()
    f = m.filters(torch.tensor([64]), 64)[0]
    peaks = f.argmax(-1)
    assert (peaks.diff() > 0).all() and peaks[0] < 8 and peaks[-1] > 56


def test_tgm_kernels_are_normalised_mixtures():
    m = TGMLayer(dim=4, gaussians=3, channels=5, kernel=7)
    k = m.kernels()
    assert k.shape == (5, 7) and (k >= 0).all()
    torch.testing.assert_close(k.sum(1), torch.ones(5))


def test_every_module_trains():
    for name in sorted(TEMPORAL):
        m = build_temporal(name, D)
        params = list(m.parameters())
        if not params:
            continue
        m(torch.randn(2, 6, D), torch.tensor([[True] * 6, [True] * 3 + [False] * 3])).sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
