"""Intervals of one metric of one group: a bootstrap over test clips x seeds (fold x seed units) where the
metric has per-clip scores or is a set metric recomputed per resample, otherwise over seeds alone."""

from __future__ import annotations

import numpy as np

from ... import stats
from ...tasks import Task
from ..plan import PlannedRun


def metric_interval(
    metric: str, task: Task, loaded: list, values: list[float], clip_ids: dict[str, int] | None
) -> tuple[dict, dict | None]:
    """({ci_lo, ci_hi, ci_method}, the bootstrap draws and the inputs of a paired test, or None) of `metric`
    of `task` over a group's `loaded` runs (predictions, tasks); `values`: the metric per run; `clip_ids`:
    the columns of the test clips with folds, None without."""
    folded = clip_ids is not None
    unit = "fold x seed units" if folded else "seeds"
    if stats.has_per_clip_scores(task, metric):
        scores, valid = clip_matrix(task, loaded, clip_ids)
        boot = (stats.bootstrap_units_clips if folded else stats.bootstrap_seeds_clips)(scores, valid)
        resample = {"boot": boot, "scores": scores, "valid": valid}
        method = f"bootstrap over test clips x {unit}"
    elif stats.set_metric(task, metric) is not None and not folded:
        fn = stats.set_metric(task, metric)
        outs, tgt, valid = set_metric_inputs(task.name, loaded)
        boot = stats.bootstrap_set_metric(fn, outs, tgt, valid)
        resample = {"boot": boot, "set": (fn, outs, tgt, valid)}
        method = f"bootstrap over test clips x seeds, {metric} recomputed per resample"
    else:
        lo, hi = stats.seed_interval(values)
        return {"ci_lo": lo, "ci_hi": hi, "ci_method": f"bootstrap over {unit}"}, None
    lo, hi = stats.interval(boot)
    return {"ci_lo": lo, "ci_hi": hi, "ci_method": method}, resample


def clip_matrix(task: Task, loaded: list, clip_ids: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip scores and validity [runs, clips]. Without folds every run saw the same clips in the same
    order; with folds each run fills the columns of its own test clips (the others are invalid)."""
    name = task.name
    per = [
        stats.per_clip_scores(task, p["outputs"][name], p["targets"][name], p["masks"][name])
        for p, _ in loaded
    ]
    if clip_ids is None:
        return np.stack([sc for sc, _ in per]), np.stack([va for _, va in per])
    sc = np.zeros((len(loaded), len(clip_ids)))
    va = np.zeros((len(loaded), len(clip_ids)), dtype=bool)
    for u, ((p, _), (s_, v_)) in enumerate(zip(loaded, per)):
        cols = [clip_ids[c] for c in p["ids"]]
        sc[u, cols], va[u, cols] = s_, v_
    return sc, va


def set_metric_inputs(name: str, loaded: list) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A set metric's inputs: every run's outputs [N, C], and the targets and validity [N, C] they share
    (every run of a fixed-split study is tested on the same clips in the same order)."""
    p0 = loaded[0][0]
    tgt = p0["targets"][name]
    m = p0["masks"][name].astype(bool)
    va = np.broadcast_to(m.reshape(len(m), -1), tgt.shape) if m.ndim < tgt.ndim or m.shape != tgt.shape else m
    return [p["outputs"][name] for p, _ in loaded], tgt, np.ascontiguousarray(va)


def fold_stats(runs: list[PlannedRun], per_run: list[dict], metric: str) -> dict:
    """Mean and std over folds (of each fold's mean over seeds), and the spread over fold x seed units."""
    by_fold: dict[int, list[float]] = {}
    for r, m in zip(runs, per_run):
        if metric in m:
            by_fold.setdefault(r.fold, []).append(m[metric])
    fold_means = [float(np.mean(v)) for _, v in sorted(by_fold.items())]
    units = [v for vs in by_fold.values() for v in vs]
    return {
        "std": float(np.std(fold_means)),
        "std_over": "folds (each fold's mean over seeds)",
        "std_units": float(np.std(units)),
        "per_fold": fold_means,
        "n_folds": len(fold_means),
        "n_seeds": len({r.seed for r in runs}),
        "n_units": len(units),
    }
