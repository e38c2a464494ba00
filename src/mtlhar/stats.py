"""Statistics for single-task vs multi-task comparisons (PROTOCOLS.md).

- Per-clip scores: top-1 (correct or not) and MAE (absolute error) are means of per-clip values, so their
  95% intervals are bootstrapped over test clips x seeds: each resample draws seeds with replacement and,
  for those seeds, the same resampled clip indices (clips are paired across runs: every run of a study is
  tested on the same clips). Other metrics (macro-F1, mAP...) get intervals over seeds only. In k-fold and
  leave-one-subject-out studies the unit is a fold x seed run (`bootstrap_units_clips`).
- Set metrics (mAP: a ranking over all test clips, not a mean of per-clip values) get the same resamples
  of seeds x clips, with the metric recomputed on each resampled clip set (`bootstrap_set_metric`); their
  MTL vs STL test is a paired approximate-randomisation test (`randomisation_test`: each clip's outputs
  swapped between the two runs at random, the metric recomputed). Fixed splits only: in fold studies mAP
  keeps an interval over fold x seed runs.
- delta_m gets its interval from the same paired resamples of the MTL run and its STL baselines.
- MTL vs STL per task: a paired sign-flip permutation test on per-clip score differences averaged over
  seeds; p-values are Holm-corrected across every test of the study.
"""

from __future__ import annotations

import numpy as np

from . import metrics as M
from .metrics import average_precisions, mean_ap  # noqa: F401  (importable from here as before)

# By metric name, for callers that have no task at hand: the package's kinds' `per_clip_metrics` and
# `set_metrics`. A task's own kind says it for any kind (`task.spec.per_clip_metrics`, `.set_metrics`).
PER_CLIP = {"top1", "mae"}
SET_METRICS = {"mAP": mean_ap}


def bootstrap_set_metric(
    metric,
    outputs: list[np.ndarray],
    target: np.ndarray,
    valid: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap over seeds x clips of a set metric: outputs [S] x [N, ...] (S seeds on the same N clips),
    target and valid [N, ...]. Each resample draws seeds and clips with replacement exactly as
    `bootstrap_units_clips` does (same `seed`, S, N -> same draws, so resamples pair with its), recomputes
    `metric(output[clips], target[clips], valid[clips])` for each drawn seed and averages."""
    u, n = len(outputs), len(target)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        units = rng.integers(0, u, u)
        clips = rng.integers(0, n, n)
        t, v = target[clips], valid[clips]
        out[b] = np.nanmean([metric(outputs[k][clips], t, v) for k in units])
    return out


def randomisation_test(
    metric,
    a: list[np.ndarray],
    b: list[np.ndarray],
    target: np.ndarray,
    valid: np.ndarray,
    *,
    n_permutations: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Paired approximate-randomisation test of mean_s metric(a_s) == mean_s metric(b_s) for a set metric:
    a, b [S] x [N, ...] (seed s of each run on the same clips). Each permutation swaps the two runs'
    outputs on a random half of the clips (the same clips for every seed). Returns (observed mean
    difference a - b, two-sided plus-one corrected p)."""

    def diff(x, y):
        return float(np.mean([metric(xs, target, valid) - metric(ys, target, valid) for xs, ys in zip(x, y)]))

    observed = diff(a, b)
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(n_permutations):
        swap = rng.random(len(target)) < 0.5
        shape = (-1,) + (1,) * (a[0].ndim - 1)
        m = swap.reshape(shape)
        pa = [np.where(m, ys, xs) for xs, ys in zip(a, b)]
        pb = [np.where(m, xs, ys) for xs, ys in zip(a, b)]
        count += abs(diff(pa, pb)) >= abs(observed) - 1e-12
    return observed, (count + 1) / (n_permutations + 1)


def per_clip_scores(
    task, output: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip score and a validity mask from the task's kind (`TaskKind.per_clip_scores`: top-1
    correctness, absolute error averaged over outputs, ...); ValueError for a kind that has none."""
    return task.spec.per_clip_scores(task, output, target, mask)


def has_per_clip_scores(task, metric: str) -> bool:
    """Whether `metric` of `task` is the mean of its kind's per-clip scores (bootstrap over clips)."""
    return metric in task.spec.per_clip_metrics


def set_metric(task, metric: str):
    """The function recomputing set metric `metric` of `task` on a resample of clips, or None."""
    return task.spec.set_metrics.get(metric)


def bootstrap_seeds_clips(
    scores: np.ndarray, valid: np.ndarray, *, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Bootstrap over seeds x clips of the mean score.

    scores, valid: [S, N] (S seeds, N paired clips). Returns the resampled means [B]. The resample indices
    depend only on (`seed`, S, N), so calls for two runs with the same shapes are paired.
    """
    # the same resampling as `bootstrap_units_clips`, with every seed a unit tested on every clip
    return bootstrap_units_clips(scores, valid, n_resamples=n_resamples, seed=seed)


def bootstrap_units_clips(
    scores: np.ndarray, valid: np.ndarray, *, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Bootstrap over units x clips when units were tested on different clips (fold x seed runs of a k-fold
    or leave-one-subject-out study).

    scores, valid: [U, N] over the union of test clips; a unit's clips outside its test fold are invalid.
    Each resample draws units with replacement and clip columns with replacement; the statistic is the
    mean over the drawn units of each unit's mean over its valid drawn clips (units with none drawn are
    left out of that resample). Indices depend only on (`seed`, U, N), so two groups are paired.
    """
    u, n = scores.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        units = rng.integers(0, u, u)
        clips = rng.integers(0, n, n)
        sc, va = scores[np.ix_(units, clips)], valid[np.ix_(units, clips)]
        counts = va.sum(1)
        per_unit = (sc * va).sum(1)[counts > 0] / counts[counts > 0]
        out[b] = per_unit.mean() if len(per_unit) else np.nan
    return out  # NaN only for a resample in which no drawn unit has a drawn clip (`interval` skips it)


def interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    lo, hi = np.nanquantile(samples, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return float(lo), float(hi)


def seed_interval(values: list[float]) -> tuple[float, float]:
    return M.bootstrap_ci(np.asarray(values, dtype=float)) if len(values) > 1 else (values[0], values[0])


def sign_flip_test(diff: np.ndarray, *, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation test of mean(diff) == 0 by random sign flips (plus-one corrected)."""
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    count = 0
    chunk = 1000
    for start in range(0, n_permutations, chunk):
        k = min(chunk, n_permutations - start)
        signs = rng.choice([-1.0, 1.0], size=(k, len(diff)))
        count += int((np.abs((signs * diff).mean(1)) >= observed - 1e-12).sum())
    return (count + 1) / (n_permutations + 1)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()
