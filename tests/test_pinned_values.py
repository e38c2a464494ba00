"""Pinned values: hand-computed numbers for the statistics, the loss-weighting formulas, CIDEr-D and gradient
accumulation, so that a formula that silently changes (a dropped factor, a one-sided test, a missing
resampling level) fails a test. Each test's comment holds the hand computation; cross-checks use scipy
(a dependency) where it computes the same thing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from conftest import square_config
from mtlhar import stats
from mtlhar.balancing import build_balancer
from mtlhar.captions import cider_d
from mtlhar.config import RunConfig, from_dict
from mtlhar.train import Trainer

# ---- Holm ---------------------------------------------------------------------------------------------


def test_holm_adjusted_p_values_by_hand():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005 (#3), 0.01 (#0), 0.03 (#2), 0.04 (#1).
    # Holm: adjusted_(r) = max_{j <= r} min(1, (m - j) p_(j)) (rank r from 0):
    #   r=0: 4 * 0.005 = 0.02
    #   r=1: 3 * 0.01  = 0.03
    #   r=2: 2 * 0.03  = 0.06
    #   r=3: 1 * 0.04  = 0.04 -> max(0.06, 0.04) = 0.06 (adjusted p-values never decrease with rank)
    # back in the given order: [0.03, 0.06, 0.06, 0.02]. (Cross-checked once, outside the suite, with
    # statsmodels 0.15.0's multipletests(p, method="holm"): the same numbers for all four cases below.)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    # capping at 1: [0.6, 0.7] -> 2 * 0.6 = 1.2 -> 1.0; then max(1.0, 0.7) = 1.0
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0], abs=1e-12)
    # [0.5, 0.4]: 2 * 0.4 = 0.8 for the smaller; the larger gets max(0.8, 1 * 0.5) = 0.8
    assert stats.holm([0.5, 0.4]) == pytest.approx([0.8, 0.8], abs=1e-12)
    # one test: unchanged
    assert stats.holm([0.013]) == pytest.approx([0.013], abs=1e-12)


# ---- paired sign-flip test ----------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sign_flip_test_is_two_sided_by_hand(sign):
    # diff = [3, 1, 1, -1] (times `sign`): mean 1, |sum| = 4. The 2^4 = 16 sign patterns s give the sums
    # 3 s1 + (s2 + s3 - s4); the inner part takes -3, -1, 1, 3 in 1, 3, 3, 1 patterns.
    #   s1 = +1: sums 0, 2, 4, 6  -> |sum| >= 4 in 3 + 1 = 4 patterns
    #   s1 = -1: sums -6, -4, -2, 0 -> |sum| >= 4 in 1 + 3 = 4 patterns
    # exact two-sided p = 8 / 16 = 0.5; a one-sided test (sum >= 4 only) would give 4 / 16 = 0.25 for
    # either sign of the data (or 12 / 16 for the negative data tested against "greater").
    diff = sign * np.array([3.0, 1.0, 1.0, -1.0])
    p = stats.sign_flip_test(diff, n_permutations=10_000, seed=0)
    # Monte Carlo: (count + 1) / (10001), count ~ Binomial(10000, 0.5): sd 0.005; 0.02 is 4 sd
    assert p == pytest.approx(0.5, abs=0.02)
    # scipy enumerates the 16 patterns exactly (two-sided: 2 * min(P(T <= t), P(T >= t)) = 2 * 4/16)
    ref = scipy.stats.permutation_test(
        (diff,), np.mean, permutation_type="samples", alternative="two-sided"
    ).pvalue
    assert ref == pytest.approx(0.5, abs=1e-12)
    assert p == pytest.approx(ref, abs=0.02)


def test_sign_flip_test_plus_one_correction_and_degenerate_inputs():
    # 30 equal positive differences: only the all-plus and all-minus patterns (2 / 2^30) reach |mean| = 1,
    # so (with overwhelming probability) no random flip does and p = (0 + 1) / (999 + 1)
    assert stats.sign_flip_test(np.ones(30), n_permutations=999, seed=0) == pytest.approx(1 / 1000)
    # no information: p = 1 (all zero, or nothing finite)
    assert stats.sign_flip_test(np.zeros(5)) == 1.0
    assert stats.sign_flip_test(np.array([np.nan, np.nan])) == 1.0
    # NaNs are dropped, not counted: same p as without them (same seed, same finite values)
    d = np.array([3.0, 1.0, 1.0, -1.0])
    with_nan = np.array([3.0, np.nan, 1.0, 1.0, -1.0])
    assert stats.sign_flip_test(with_nan, n_permutations=2000) == stats.sign_flip_test(d, n_permutations=2000)


# ---- bootstraps over seeds x clips ----------------------------------------------------------------------


def _frequencies(samples, values):
    return [float(np.mean(np.isclose(samples, v))) for v in values]


def _two_level_by_hand(kind):
    """Resamples of scores [[0, 1], [1, 1]] (2 seeds x 2 clips) by the per-clip or the set bootstrap."""
    scores = np.array([[0.0, 1.0], [1.0, 1.0]])
    valid = np.ones_like(scores, dtype=bool)
    if kind == "per_clip":
        return stats.bootstrap_seeds_clips(scores, valid, n_resamples=4000, seed=0)
    if kind == "units":
        return stats.bootstrap_units_clips(scores, valid, n_resamples=4000, seed=0)
    outputs = [s[:, None] for s in scores]  # a "set metric" that is the plain mean of the clip outputs
    return stats.bootstrap_set_metric(
        lambda o, t, v: float(o.mean()),
        outputs,
        np.zeros((2, 1)),
        np.ones((2, 1), dtype=bool),
        n_resamples=4000,
        seed=0,
    )


@pytest.mark.parametrize("kind", ["per_clip", "units", "set"])
def test_bootstrap_resamples_seeds_and_clips_by_hand(kind):
    # Seed 1 scores 1 on both clips; seed 0 scores [0, 1]. A resample draws 2 seeds and 2 clip columns
    # with replacement (the same columns for every drawn seed). Seed 0's mean over the drawn clips, m0, is
    # 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4; seed 1's is always 1.
    #   seeds {0, 0} (1/4): m0               -> 0 (1/16), 1/2 (1/8), 1 (1/16)
    #   seeds {0, 1} (1/2): (m0 + 1) / 2     -> 1/2 (1/8), 3/4 (1/4), 1 (1/8)
    #   seeds {1, 1} (1/4): 1                -> 1 (1/4)
    # so P(0) = 1/16, P(1/2) = 1/4, P(3/4) = 1/4, P(1) = 7/16, mean 3/4. Without the seed level (the two
    # seeds always kept) a resample is (m0 + 1) / 2: never 0, and the 95% interval would start at 1/2.
    samples = _two_level_by_hand(kind)
    # 4000 resamples: the sd of a frequency is at most 0.0079; 0.03 is ~4 sd
    assert _frequencies(samples, [0.0, 0.5, 0.75, 1.0]) == pytest.approx(
        [1 / 16, 1 / 4, 1 / 4, 7 / 16], abs=0.03
    )
    assert float(samples.mean()) == pytest.approx(0.75, abs=0.02)
    # 2.5% quantile: P(0) = 6.25% > 2.5% -> 0; 97.5%: P(1) = 43.75% -> 1
    assert stats.interval(samples) == (0.0, 1.0)


@pytest.mark.parametrize("kind", ["per_clip", "units", "set"])
def test_bootstrap_between_seed_spread_alone_gives_a_non_zero_interval(kind):
    # Seed 0 scores 0 everywhere, seed 1 scores 1 everywhere: clips carry no variation, only the seeds do.
    # A resample is (number of draws of seed 1) / 2: 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so the
    # interval is (0, 1). Resampling clips only would give 1/2 every time.
    scores = np.repeat(np.array([[0.0], [1.0]]), 5, axis=1)
    valid = np.ones_like(scores, dtype=bool)
    if kind == "per_clip":
        samples = stats.bootstrap_seeds_clips(scores, valid, n_resamples=2000, seed=1)
    elif kind == "units":
        samples = stats.bootstrap_units_clips(scores, valid, n_resamples=2000, seed=1)
    else:
        samples = stats.bootstrap_set_metric(
            lambda o, t, v: float(o.mean()),
            [s[:, None] for s in scores],
            np.zeros((5, 1)),
            np.ones((5, 1), dtype=bool),
            n_resamples=2000,
            seed=1,
        )
    assert _frequencies(samples, [0.0, 0.5, 1.0]) == pytest.approx([0.25, 0.5, 0.25], abs=0.04)
    assert stats.interval(samples) == (0.0, 1.0)


def test_bootstrap_with_one_seed_is_scipy_percentile_bootstrap_over_clips():
    # with one seed the seed level is a no-op and the resampling is the plain clip bootstrap of the mean:
    # its percentile interval agrees with scipy.stats.bootstrap(method="percentile") up to Monte Carlo error
    x = np.random.default_rng(7).random(40)
    samples = stats.bootstrap_seeds_clips(x[None], np.ones((1, 40), bool), n_resamples=4000, seed=0)
    lo, hi = stats.interval(samples)
    ref = scipy.stats.bootstrap(
        (x,), np.mean, method="percentile", n_resamples=4000, confidence_level=0.95, rng=0
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.015) and hi == pytest.approx(ref.high, abs=0.015)
    assert float(samples.mean()) == pytest.approx(x.mean(), abs=0.005)


# ---- loss weighting -------------------------------------------------------------------------------------


def test_uncertainty_weighting_pinned_values():
    # The project's variant (docstring): L = sum_t exp(-s_t) L_t + s_t (times K / #labelled).
    # s = [0.5, -1], L = [2, 3]:
    #   exp(-0.5) * 2 = 1.2130613,  exp(1) * 3 = 8.1548455
    #   total = 1.2130613 + 0.5 + 8.1548455 - 1 = 8.8679068
    #   d total / d s_t = 1 - exp(-s_t) L_t = [-0.2130613, -7.1548455]
    #   d total / d L_t = exp(-s_t) = [0.6065307, 2.7182818] (also the reported weights)
    b = build_balancer("uncertainty", ["a", "b"], {}, {})
    b.load_state_dict({"log_vars": torch.tensor([0.5, -1.0])})
    la, lb = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    total, w = b.combine({"a": la, "b": lb}, {"a": True, "b": True}, 0)
    assert float(total) == pytest.approx(8.8679068, abs=1e-6)
    total.backward()
    assert b.log_vars.grad.tolist() == pytest.approx([-0.2130613, -7.1548455], abs=1e-6)
    assert [float(la.grad), float(lb.grad)] == pytest.approx([0.6065307, 2.7182818], abs=1e-6)
    assert [w["a"], w["b"]] == pytest.approx([0.6065307, 2.7182818], abs=1e-6)

    # b unlabelled: factor K / 1 = 2 on a's term only: 2 * (1.2130613 + 0.5) = 3.4261226
    b.log_vars.grad = None
    la.grad = None
    total, w = b.combine({"a": la, "b": lb}, {"a": True, "b": False}, 1)
    assert float(total) == pytest.approx(3.4261226, abs=1e-6)
    total.backward()
    assert float(b.log_vars.grad[0]) == pytest.approx(-0.4261226, abs=1e-6)
    assert float(b.log_vars.grad[1]) == 0.0
    assert w == pytest.approx({"a": 1.2130613, "b": 0.0}, abs=1e-6)

    # the optimum of exp(-s) L + s is s = log L: zero gradient there
    b.load_state_dict({"log_vars": torch.tensor([math.log(2.0), math.log(3.0)])})
    b.log_vars.grad = None
    total, _ = b.combine({"a": torch.tensor(2.0), "b": torch.tensor(3.0)}, {"a": True, "b": True}, 2)
    total.backward()
    assert b.log_vars.grad.tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert float(total) == pytest.approx(1 + math.log(2.0) + 1 + math.log(3.0), abs=1e-6)


def test_famo_pinned_weights_over_four_steps():
    # FAMO with the defaults (lr 0.025, gamma 0.01, Adam betas 0.9/0.999), K = 2. Weights
    # w_t = K z_t / (c L_t), z = softmax(xi), c = sum_t z_t / L_t; the loss is sum_t K z_t / c * log L_t.
    # step 0, xi = 0, z = [1/2, 1/2], L = [2, 1/4]: c = 1/4 + 2 = 9/4, w = [2/9, 16/9];
    #   loss = (log 2 + log 1/4) (1/2)(2)/(9/4) = -(4/9) log 2 = -0.3080654
    # step 1, L = [1, 1/5]: no previous step to compare with yet: xi = 0, c = 1/2 + 5/2 = 3, w = [1/3, 5/3]
    # step 2, L = [1, 1]: the update from steps 0 -> 1: delta = log L(0) - log L(1) = [log 2, log 1.25];
    #   grad = z (delta - z.delta) + gamma xi = [0.1175009, -0.1175009]; Adam's first step moves by
    #   lr * sign(grad): xi = [-0.025, 0.025], z = [0.4875026, 0.5124974], c = 1, w = 2 z
    # step 3, L = [0.5, 0.9]: the update from steps 1 -> 2: delta = [0, log 0.2] = [0, -1.6094379];
    #   grad = z (delta - z.delta) + 0.01 xi = [0.4018581, -0.4018581];
    #   m = 0.9 (0.1 g1) + 0.1 g2 = 0.0507610, v = 0.999 (0.001 g1^2) + 0.001 g2^2 = 1.75285e-4,
    #   m / (1 - 0.9^2) / (sqrt(v / (1 - 0.999^2)) + 1e-8) = 0.9022205 -> xi = -+(0.025 + 0.0225555)
    #   = [-0.0475555, 0.0475555], z = [0.4762402, 0.5237598], c = z_a / 0.5 + z_b / 0.9,
    #   w = [1.2414731, 0.7585269]
    b = build_balancer("famo", ["a", "b"], {}, {})
    expected = [
        ([2.0, 0.25], [2 / 9, 16 / 9]),
        ([1.0, 0.2], [1 / 3, 5 / 3]),
        ([1.0, 1.0], [0.9750052, 1.0249948]),
        ([0.5, 0.9], [1.2414731, 0.7585269]),
    ]
    for step, (losses, want) in enumerate(expected):
        ls = {t: torch.tensor(v, requires_grad=True) for t, v in zip("ab", losses)}
        total, w = b.combine(ls, {"a": True, "b": True}, step)
        assert [w["a"], w["b"]] == pytest.approx(want, abs=1e-6), step
        total.backward()  # the gradient of the FAMO loss w.r.t. L_t is the reported weight w_t
        assert [float(ls["a"].grad), float(ls["b"].grad)] == pytest.approx(want, abs=1e-6), step
        if step == 0:
            assert float(total) == pytest.approx(-(4 / 9) * math.log(2), abs=1e-6)
    assert b.logits.tolist() == pytest.approx([-0.0475555, 0.0475555], abs=1e-6)


def test_gradnorm_pinned_weights():
    # GradNorm (alpha 1.5, lr 0.1) on one shared weight W = [[1, 1]] (the "last shared layer").
    # L_a = 3 W00 + c_a, L_b = W01: gradient norms n = [3, 1] at every step.
    # step 0: L = [3, 1] = L(0); r = [1, 1]; w = [1, 1]; g = w n = [3, 1], target = mean(g) r^alpha = [2, 2]
    #   d |g_t - target_t| / d w_t = sign(g_t - target_t) n_t = [3, -1]
    # step 1 starts by applying it: w = [1 - 0.3, 1 + 0.1] = [0.7, 1.1], renormalised to sum 2:
    #   [0.7777778, 1.2222222]. L = [5, 1]: L / L(0) = [5/3, 1], over its mean 4/3: r = [1.25, 0.75];
    #   g = [2.3333333, 1.2222222], mean 1.7777778, target = 1.7777778 [1.25^1.5, 0.75^1.5]
    #   = 1.7777778 [1.3975425, 0.6495191] = [2.4845199, 1.1547005]: signs [-1, +1], update [-3, 1]
    # step 2: w = [1.0777778, 1.1222222] / 2.2 * 2 = [0.9797980, 1.0202020]
    #   (alpha 1 or 0 would give targets [2.2222, 1.3333] or [1.7778, 1.7778]: signs [+1, -1] and
    #   w = [0.4777778, 1.3222222] / 1.8 * 2 = [0.5308642, 1.4691358])
    b = build_balancer("gradnorm", ["a", "b"], {}, {"lr": 0.1, "alpha": 1.5})
    W = nn.Parameter(torch.ones(1, 2))
    expected = [(0.0, [1.0, 1.0]), (2.0, [0.7777778, 1.2222222]), (2.0, [0.9797980, 1.0202020])]
    for step, (c_a, want) in enumerate(expected):
        W.grad = None
        losses = {"a": 3 * W[0, 0] + c_a, "b": W[0, 1]}
        w = b.backward(losses, {"a": True, "b": True}, step=step, shared_params=[W])
        assert [w["a"], w["b"]] == pytest.approx(want, abs=1e-6), step
        # the backward delivers the weighted sum: dW = [3 w_a, w_b]
        assert W.grad.flatten().tolist() == pytest.approx([3 * want[0], want[1]], abs=1e-6), step


def test_rlw_weights_are_a_softmax_of_standard_normal_draws():
    # RLW (docstring): w = K softmax(z), z ~ N(0, I_K), one draw per optimiser step. Then
    # log(w_i / w_j) = z_i - z_j ~ N(0, 2) exactly, and E[w_i] = 1 by symmetry.
    k, n = 3, 4000
    b = build_balancer("rlw", ["a", "b", "c"], {}, {"seed": 11})
    every = dict.fromkeys("abc", True)
    w = np.array([list(b.weights(every, s).values()) for s in range(n)])
    assert np.allclose(w.sum(1), k) and (w > 0).all()
    assert b.weights(every, n - 1) == dict(zip("abc", w[-1]))  # same step: the same draw
    assert w.mean(0) == pytest.approx([1.0, 1.0, 1.0], abs=0.05)  # sd of a weight < 1: se < 0.016
    for i, j in ((0, 1), (0, 2), (1, 2)):
        d = np.log(w[:, i] / w[:, j])
        assert d.mean() == pytest.approx(0.0, abs=0.1)  # se sqrt(2 / 4000) = 0.022
        assert d.var() == pytest.approx(2.0, abs=0.2)  # se of the variance 2 sqrt(2 / 4000) = 0.045
        assert scipy.stats.kstest(d / math.sqrt(2), "norm").pvalue > 0.001
    # the centred log-weights are the centred draws: each has variance 1 - 1/K = 2/3
    centred = np.log(w) - np.log(w).mean(1, keepdims=True)
    assert centred.var(0) == pytest.approx([2 / 3] * 3, abs=0.07)


# ---- CIDEr-D --------------------------------------------------------------------------------------------


def test_cider_d_by_hand_on_a_tiny_corpus():
    # Two clips (N = 2, so idf = log 2 - log max(1, df)):
    #   clip 1: hyp "b b c", refs "a b" and "b c";  clip 2: hyp "a d", ref "a d".
    # Document frequencies count clips whose references contain the n-gram: a: 2 (idf 0); b, c, d, (a b),
    # (b c), (a d): 1 (idf log 2 = l); n-grams in no reference (b b), (b b c): df 0 -> max(1, 0): idf l.
    # Vectors are count x idf per order n = 1..4:
    #   hyp1 "b b c": n=1 {b: 2l, c: l}, |.| = l sqrt 5; n=2 {(b b): l, (b c): l}, l sqrt 2; n=3 {(b b c): l}
    #   ref "a b":    n=1 {a: 0, b: l}, l;  n=2 {(a b): l}, l
    #   ref "b c":    n=1 {b: l, c: l}, l sqrt 2;  n=2 {(b c): l}, l
    # similarity per order: sum_g min(h_g, r_g) r_g / (|h| |r|)  (the min clips the repeated "b"):
    #   vs "a b": n=1 min(2l, l) l / (l sqrt5 l) = 1/sqrt5 = 0.4472136; n=2: no common bigram: 0; n=3, 4: 0
    #   vs "b c": n=1 (l l + l l) / (l sqrt5 l sqrt2) = 2/sqrt10 = 0.6324555; n=2 l l / (l sqrt2 l) = 0.7071068
    #   Gaussian length penalty (3 words vs 2, sigma 6): exp(-1 / 72) = 0.9862071 for both references
    #   clip 1 = 10 * mean over orders (4), mean over refs (2): 10 * 0.9862071 * 1.7867759 / 8 = 2.2026644
    # clip 2: hyp = ref: n=1 {a: 0, d: l} -> 1, n=2 {(a d): l} -> 1, n=3, 4: 0; no penalty: 10 * 2 / 4 = 5
    # CIDEr-D = (2.2026644 + 5) / 2 = 3.6013322
    hyps = [["b", "b", "c"], ["a", "d"]]
    refs = [[["a", "b"], ["b", "c"]], [["a", "d"]]]
    clip1 = 10 * math.exp(-1 / 72) * (1 / math.sqrt(5) + 2 / math.sqrt(10) + 1 / math.sqrt(2)) / 8
    assert clip1 == pytest.approx(2.2026644, abs=1e-6)
    assert cider_d(hyps, refs) == pytest.approx((clip1 + 5.0) / 2, abs=1e-9)
    assert cider_d(hyps, refs) == pytest.approx(3.6013322, abs=1e-6)
    # each clip alone (N = 1: every idf is log 1 - log 1 = 0, so every vector is zero and the score is 0)
    assert cider_d(hyps[:1], refs[:1]) == 0.0


# ---- gradient accumulation ------------------------------------------------------------------------------


class PlainEncoder(nn.Module):
    """A BatchNorm-free, dropout-free encoder (one strided 3D convolution, ReLU, mean pooling): a batch's
    gradient is then exactly the mean of its micro-batches' gradients."""

    def __init__(self, width: int = 4, stream: str = "rgb"):
        super().__init__()
        self.stream = stream
        self.conv = nn.Conv3d(3, width, (3, 5, 5), stride=(1, 4, 4), padding=(1, 2, 2))
        self.taps = {"frames": (width, "sequence"), "pooled": (width, "vector")}
        self.out_dim = width

    def forward(self, x):
        y = torch.relu(self.conv(x.float() / 255.0))  # [B, C, T, H, W]
        frames = y.mean(dim=(3, 4)).transpose(1, 2)
        return {"frames": frames, "pooled": frames.mean(dim=1)}


ALWAYS_LABELLED = [{"name": "colour"}, {"name": "speed", "kind": "regression", "role": "auxiliary"}]


def _one_step(squares, run_dir, *, batch_size, accumulate, balancer="equal", tasks=ALWAYS_LABELLED, seed=0):
    raw = square_config(
        squares,
        steps=1,
        eval_every=1,
        checkpoint_every=1,
        batch_size=batch_size,
        accumulate=accumulate,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        lr=0.5,
        amp="off",
        seed=seed,
    )
    raw["tasks"] = tasks
    raw["model"] = {"encoder": f"{__name__}.PlainEncoder", "encoder_args": {"width": 4}}
    raw["balancer"] = {"name": balancer}
    trainer = Trainer(from_dict(RunConfig, raw), run_dir)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(log=None)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
    return before, trainer.model.state_dict(), grads, trainer


@pytest.mark.parametrize("balancer", ["equal", "gradnorm"])  # the loss-level and the gradient-balancer path
def test_accumulated_micro_batches_equal_one_big_batch(squares, tmp_path, balancer):
    # one SGD step (no momentum, no weight decay, lr 0.5) on batch 8 (accumulate 1) vs batch 4 x accumulate
    # 2 over the same 8 clips (the epoch order is a permutation of the training split, whatever the batch
    # size): each micro-batch loss is a mean over its 4 clips, so sum_i loss_i / accumulate is the mean over
    # the 8 and the gradients, hence the parameters, agree. (GradNorm's weights are 1 on the first step.)
    # Without the division by `accumulate` the accumulated gradient would be twice as large.
    # (tasks labelled on every clip: see the next test for micro-batches with unequal labelled counts)
    b0, big, g_big, _ = _one_step(squares, tmp_path / "big", batch_size=8, accumulate=1, balancer=balancer)
    a0, acc, g_acc, _ = _one_step(squares, tmp_path / "acc", batch_size=4, accumulate=2, balancer=balancer)
    assert all(torch.equal(a0[k], b0[k]) for k in b0)  # same initialisation
    for name in g_big:
        ratio = float(g_acc[name].norm() / g_big[name].norm())  # 2.0 if not divided by `accumulate`
        assert torch.allclose(g_acc[name], g_big[name], rtol=1e-4, atol=1e-7), (name, ratio)
    moved = 0.0
    for k in big:
        step_big, step_acc = big[k] - b0[k], acc[k] - a0[k]
        ratio = float(step_acc.norm() / step_big.norm().clamp_min(1e-30))
        assert torch.allclose(step_acc, step_big, rtol=1e-4, atol=1e-7), (k, ratio)
        moved = max(moved, float(step_big.abs().max()))
    assert moved > 1e-3  # the step did move the parameters


def test_accumulation_with_missing_labels_equals_one_big_batch(squares, tmp_path):
    # `direction` is unlabelled on every 5th clip. With seed 2 the first two micro-batches of 4 hold 2 and 4
    # labelled clips: per-micro-batch means averaged give each clip of the first 1/4 (not 1/6) of the loss.
    # One batch of 8 (and DDP over 2 ranks x 4, which divides by the all-reduced labelled count) weights
    # each labelled clip 1/6. Measured: the encoder's gradient differs by ~9%, the direction head's by
    # ~7% (relative norm of the difference).
    tasks = [{"name": "direction"}, {"name": "colour", "role": "auxiliary"}]
    _, _, g_big, _ = _one_step(squares, tmp_path / "big", batch_size=8, accumulate=1, tasks=tasks, seed=2)
    _, _, g_acc, trainer = _one_step(
        squares, tmp_path / "acc", batch_size=4, accumulate=2, tasks=tasks, seed=2
    )
    labels = trainer.train_set.labels
    counts = [sum(bool(labels[i]["direction"][1].all()) for i in b) for b in trainer._epoch_order(0)[:2]]
    if counts[0] == counts[1]:  # the data order changed: this seed no longer shows the case
        pytest.skip(f"micro-batches with equal labelled counts {counts}")
    for name in g_big:
        ratio = float((g_acc[name] - g_big[name]).norm() / g_big[name].norm())
        assert torch.allclose(g_acc[name], g_big[name], rtol=1e-4, atol=1e-7), (name, ratio)
