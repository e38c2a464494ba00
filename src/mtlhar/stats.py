"""Statistics for single-task vs multi-task comparisons (PROTOCOLS.md).

- Per-clip scores: top-1 (correct or not) and MAE (absolute error) are means of per-clip values, so their
  95% intervals are bootstrapped over test clips x seeds: each resample draws seeds with replacement and,
  for those seeds, the same resampled clip indices (clips are paired across runs: every run of a study is
  tested on the same clips). Other metrics (macro-F1, mAP...) get intervals over seeds only. In k-fold and
  leave-one-subject-out studies the unit is a fold x seed run (`bootstrap_units_clips`).
- delta_m gets its interval from the same paired resamples of the MTL run and its STL baselines.
- MTL vs STL per task: a paired sign-flip permutation test on per-clip score differences averaged over
  seeds; p-values are Holm-corrected across every test of the study.
"""

from __future__ import annotations

import numpy as np

from . import metrics as M

PER_CLIP = {"top1", "mae"}


def per_clip_scores(
    task, output: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip main score and a validity mask: top-1 correctness or absolute error (mean over outputs)."""
    m = mask.reshape(len(mask), -1)
    if task.kind == "classification":
        return (output.argmax(-1) == target).astype(np.float64), m[:, 0].astype(bool)
    if task.kind == "regression":
        err = np.abs(output - target).reshape(len(output), -1)
        valid = np.broadcast_to(m, err.shape)
        per = np.where(valid, err, 0).sum(1) / np.maximum(valid.sum(1), 1)
        return per, valid.any(1)
    raise ValueError(f"no per-clip score for kind {task.kind}")


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
