"""Evaluation metrics for single- and multi-task action recognition.

All functions are pure and take numpy arrays or torch tensors (converted with
``np.asarray(x.detach().cpu())``; half-precision tensors are upcast to float32). Every function takes an
optional boolean ``mask``: entries whose mask is False are ignored completely, so their logits and targets
may hold anything (e.g. ``-1`` ignore labels or NaN). Empty (or fully masked) input never yields NaN: the
dict-returning functions return ``{}`` and metrics that cannot be computed are omitted from the dict.

Metric definitions
------------------
* ``top1`` / ``top5``: fraction of samples whose target is among the k highest-scoring classes (``top5``
  only when ``num_classes > 5``).
* ``mean_class_acc``: mean of the per-class recall over the classes present in the (valid) targets.
* ``macro_precision`` / ``macro_recall`` / ``macro_f1``: unweighted mean over the classes present in the
  targets *or* the predictions (``zero_division=0``; classes absent from both are left out).
* ``roc_auc``: one-vs-rest ROC AUC on ``softmax(logits)``, averaged over the classes that have both
  positives and negatives among the valid samples; omitted when no class qualifies.
* ``mAP`` (multi-label): mean over classes of the average precision, computed only over classes with at
  least one positive among their valid entries. ``macro_f1`` (multi-label) thresholds ``sigmoid(logit) >
  0.5`` and averages per-class F1 over classes with a valid positive target or prediction. ``exact_match``
  is subset accuracy over fully-labelled (completely unmasked) rows.
* ``mae`` / ``rmse``: mean absolute / root mean squared error over valid entries.

Multi-task score
----------------
``delta_m = (100 / K) * sum_k (-1)^{h_k} (M_mtl,k - M_stl,k) / |M_stl,k|`` with ``h_k = 1`` when higher is
better (Maninis et al. 2019; Vandenhende et al. 2021). **Lower is better**: a negative value means the
multi-task model beats the single-task baselines on average. A task whose baseline satisfies
``|M_stl,k| < floor`` (default 0.05, i.e. metrics on a [0, 1] scale) is excluded from the mean, because a
relative change against a near-zero baseline is meaningless; it is reported with its absolute difference
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
    roc_auc_score,
)

__all__ = [
    "METRIC_DIRECTIONS",
    "bootstrap_ci",
    "classification_metrics",
    "confusion",
    "delta_m",
    "average_precisions",
    "hierarchy_metrics",
    "mean_ap",
    "multilabel_metrics",
    "per_class_f1",
    "regression_metrics",
]

#: metric name -> True when higher is better, for the metrics computed here and in `mtlhar.captions`.
#: The package's kinds take their `metric_directions` from it; `mtlhar.kinds.metric_direction` answers by
#: name for every registered kind (a kind registered later declares its own).
METRIC_DIRECTIONS: dict[str, bool] = {
    "top1": True,
    "top5": True,
    "mean_class_acc": True,
    "macro_precision": True,
    "macro_recall": True,
    "macro_f1": True,
    "roc_auc": True,
    "mAP": True,
    "exact_match": True,
    "mae": False,
    "rmse": False,
    # hierarchies (on the finer task)
    "hier_consistency": True,
    "mistake_severity": False,
    "hdist@1": False,
    "hdist@5": False,
    # captions
    "bleu1": True,
    "bleu2": True,
    "bleu3": True,
    "bleu4": True,
    "rouge_l": True,
    "cider_d": True,
    "token_acc": True,
}


def _np(x: Any) -> np.ndarray:
    """Convert a numpy array / torch tensor / sequence to a numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:  # bfloat16 has no numpy equivalent
            x = x.float()
    return np.asarray(x)


def _mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask broadcast to ``shape``; ``mask`` may cover the leading dimensions only."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = _np(mask).astype(bool)
    if m.shape != shape[: m.ndim]:
        raise ValueError(f"mask shape {m.shape} does not match data shape {shape}")
    return np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape)


def _labels(pred_or_logits: Any, target: Any, mask: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid (predicted, true) integer labels. 2-D input is treated as logits and arg-maxed."""
    p, t = _np(pred_or_logits), _np(target)
    if t.ndim != 1 or p.shape[:1] != t.shape:
        raise ValueError(f"expected pred [N] or logits [N, C] and target [N], got {p.shape} and {t.shape}")
    if p.ndim == 2 and p.shape[1] != num_classes:
        raise ValueError(f"logits have {p.shape[1]} classes, expected num_classes={num_classes}")
    m = _mask(mask, t.shape)
    p, t = p[m], t[m].astype(np.int64)
    p = p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64)
    for name, a in (("target", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes})")
    return p, t


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(
    logits: Any, target: Any, mask: Any = None, *, num_classes: int
) -> dict[str, float]:
    """Single-label metrics from ``logits [N, C]`` and ``target [N]``; ``{}`` when no sample is valid."""
    z = _np(logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be [N, C], got shape {z.shape}")
    pred, t = _labels(z, target, mask, num_classes)
    if t.size == 0:
        return {}
    z = z[_mask(mask, z.shape[:1])].astype(np.float64)
    ranked = np.argsort(-z, axis=1, kind="stable")
    out = {"top1": float(np.mean(ranked[:, 0] == t))}
    if num_classes > 5:
        out["top5"] = float(np.mean((ranked[:, :5] == t[:, None]).any(axis=1)))
    present = np.unique(t)
    out["mean_class_acc"] = float(recall_score(t, pred, labels=present, average="macro", zero_division=0))
    labels = np.union1d(present, pred)
    p, r, f, _ = precision_recall_fscore_support(t, pred, labels=labels, average="macro", zero_division=0)
    out.update(macro_precision=float(p), macro_recall=float(r), macro_f1=float(f))
    prob = _softmax(z)
    aucs = [roc_auc_score(t == c, prob[:, c]) for c in range(num_classes) if 0 < np.sum(t == c) < t.size]
    if aucs:
        out["roc_auc"] = float(np.mean(aucs))
    return out


def multilabel_metrics(logits: Any, target: Any, mask: Any = None) -> dict[str, float]:
    """Multi-label metrics from ``logits [N, C]`` and binary ``target [N, C]``; mask is ``[N]`` or ``[N, C]``.

    Returns ``{}`` when no entry is valid; ``mAP`` is omitted when no class has a valid positive and
    ``exact_match`` when no row is fully labelled.
    """
    z, y = _np(logits).astype(np.float64), _np(target)
    if z.ndim != 2 or z.shape != y.shape:
        raise ValueError(f"logits and target must both be [N, C], got {z.shape} and {y.shape}")
    m = _mask(mask, y.shape)
    if not m.any():
        return {}
    if not np.isin(y[m], (0, 1)).all():
        raise ValueError("valid multi-label targets must be 0 or 1")
    y = np.where(m, y, 0).astype(np.int64)  # masked entries may hold NaN / -1
    pred = (z > 0).astype(np.int64)  # sigmoid(z) > 0.5  <=>  z > 0
    out: dict[str, float] = {}
    aps, f1s = [], []
    for c in range(y.shape[1]):
        mc = m[:, c]
        yc, pc = y[mc, c], pred[mc, c]
        if yc.any():
            aps.append(average_precision_score(yc, z[mc, c]))
        if yc.any() or pc.any():
            f1s.append(f1_score(yc, pc, zero_division=0))
    if aps:
        out["mAP"] = float(np.mean(aps))
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0  # no positives anywhere: nothing to get right
    full = m.all(axis=1)
    if full.any():
        out["exact_match"] = float(np.mean((pred[full] == y[full]).all(axis=1)))
    return out


def regression_metrics(pred: Any, target: Any, mask: Any = None) -> dict[str, float]:
    """``mae`` and ``rmse`` over valid entries of ``pred``/``target`` ([N] or [N, D]); ``{}`` if none."""
    p, t = _np(pred).astype(np.float64), _np(target).astype(np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    m = _mask(mask, t.shape)
    if not m.any():
        return {}
    d = p[m] - t[m]
    return {"mae": float(np.mean(np.abs(d))), "rmse": float(np.sqrt(np.mean(d**2)))}


def average_precisions(scores: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average precision of every class at once: scores, target (0/1), valid [N, C] -> AP [C] (NaN for a
    class without a valid positive). The usual definition (mean over positives of the precision at their
    rank); equal to sklearn's `average_precision_score` when scores are not tied."""
    z = np.where(valid, scores, -np.inf)
    y = np.where(valid, target, 0).astype(np.float64)
    order = np.argsort(-z, axis=0, kind="stable")
    ys = np.take_along_axis(y, order, axis=0)
    hits = np.cumsum(ys, axis=0)
    precision = hits / np.arange(1, len(ys) + 1)[:, None]
    npos = ys.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(npos > 0, (precision * ys).sum(0) / npos, np.nan)


def mean_ap(scores: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    ap = average_precisions(scores, target, valid)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def confusion(logits_or_pred: Any, target: Any, mask: Any = None, *, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 confusion matrix (rows = true, cols = predicted); all zeros when nothing is valid."""
    pred, t = _labels(logits_or_pred, target, mask, num_classes)
    if t.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return confusion_matrix(t, pred, labels=np.arange(num_classes)).astype(np.int64)


def per_class_f1(logits: Any, target: Any, mask: Any = None, *, num_classes: int) -> np.ndarray:
    """``[C]`` per-class F1 from logits ``[N, C]`` (or predicted labels ``[N]``).

    Classes absent from both the valid targets and the predictions get 0.0 (never NaN).
    """
    pred, t = _labels(logits, target, mask, num_classes)
    if t.size == 0:
        return np.zeros(num_classes, dtype=np.float64)
    _, _, f, _ = precision_recall_fscore_support(
        t, pred, labels=np.arange(num_classes), average=None, zero_division=0
    )
    return np.asarray(f, dtype=np.float64)


def delta_m(
    mtl: Mapping[str, float],
    stl: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
    *,
    floor: float = 0.05,
) -> tuple[float | None, dict[str, dict[str, Any]]]:
    """Multi-task score delta_m in percent (lower is better; negative = MTL beats STL).

    Keys are task names (the main metric of each task). Tasks with ``|stl| < floor`` (or ``stl == 0``) are
    excluded from the mean and get ``relative_pct=None``. ``abs_diff`` is the signed raw difference
    ``mtl - stl``. Returns ``(None, details)`` when no task is included.
    """
    details: dict[str, dict[str, Any]] = {}
    rel: list[float] = []
    for task, m in mtl.items():
        if task not in stl:
            raise ValueError(f"task {task!r} is missing from the single-task baselines")
        if task not in higher_is_better:
            raise ValueError(f"task {task!r} is missing from higher_is_better")
        m, s = float(m), float(stl[task])
        if not (np.isfinite(m) and np.isfinite(s)):
            raise ValueError(f"task {task!r} has a non-finite metric (mtl={m}, stl={s})")
        included = abs(s) >= floor and s != 0.0
        sign = -1.0 if higher_is_better[task] else 1.0
        pct = sign * 100.0 * (m - s) / abs(s) if included else None
        if pct is not None:
            rel.append(pct)
        details[task] = {"mtl": m, "stl": s, "relative_pct": pct, "included": included, "abs_diff": m - s}
    return (float(np.mean(rel)) if rel else None), details


def bootstrap_ci(
    values: Any, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of a 1-D array.

    Deterministic for a given ``seed``. Returns ``(mean, mean)`` for a single value; raises ``ValueError``
    for empty or non-finite input (rather than returning NaN).
    """
    v = _np(values).astype(np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    if not 0.0 < confidence < 1.0 or n_resamples < 1:
        raise ValueError("need 0 < confidence < 1 and n_resamples >= 1")
    n = v.size
    if n < 2:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # bound memory at ~16 MB of indices per chunk
    means = np.concatenate(
        [
            v[rng.integers(0, n, size=(min(chunk, n_resamples - i), n))].mean(axis=1)
            for i in range(0, n_resamples, chunk)
        ]
    )
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def hierarchy_metrics(
    fine_logits: Any,
    coarse_logits: Any,
    fine_target: Any,
    fine_mask: Any,
    fine_to_coarse: Any,
    *,
    ks: tuple[int, ...] = (1, 5),
) -> dict[str, float]:
    """Hierarchical metrics of a two-level label tree (root -> coarse group -> fine class).

    The distance between two fine classes is the height of their lowest common ancestor (Bertinetto et al.
    2020, "Making Better Mistakes"): 0 for the same class, 1 within one coarse group, 2 across groups.

    * ``hier_consistency``: fraction of clips whose fine arg-max lies in the coarse head's arg-max group
      (needs no label: over every clip given).
    * ``mistake_severity``: mean distance between the top-1 fine prediction and the label over the
      mistakes only (omitted when there is none); between 1 and 2, lower is better.
    * ``hdist@k``: mean over labelled clips of the mean distance between the label and each of the k
      highest-scoring fine classes (k < number of fine classes); lower is better.
    """
    z, zc = _np(fine_logits).astype(np.float64), _np(coarse_logits).astype(np.float64)
    g = _np(fine_to_coarse).astype(np.int64)
    if z.ndim != 2 or zc.ndim != 2 or z.shape[0] != zc.shape[0] or z.shape[1] != g.size:
        raise ValueError(
            f"expected fine logits [N, {g.size}] and coarse logits [N, C], got {z.shape} and {zc.shape}"
        )
    out: dict[str, float] = {}
    if z.shape[0] == 0:
        return out
    out["hier_consistency"] = float(np.mean(g[z.argmax(1)] == zc.argmax(1)))
    t = _np(fine_target).astype(np.int64).reshape(-1)
    m = _mask(fine_mask, t.shape) if fine_mask is not None else np.ones(t.shape, bool)
    if not m.any():
        return out
    z, t = z[m], t[m]

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a == b, 0, np.where(g[a] == g[b], 1, 2)).astype(np.float64)

    ranked = np.argsort(-z, axis=1, kind="stable")
    d1 = dist(ranked[:, 0], t)
    wrong = d1 > 0
    if wrong.any():
        out["mistake_severity"] = float(d1[wrong].mean())
    for k in ks:
        if k < z.shape[1]:
            out[f"hdist@{k}"] = float(np.mean([dist(ranked[:, j], t) for j in range(k)], axis=0).mean())
    return out
