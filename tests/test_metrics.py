import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from mtlhar.metrics import (
    METRIC_DIRECTIONS,
    bootstrap_ci,
    classification_metrics,
    confusion,
    delta_m,
    multilabel_metrics,
    per_class_f1,
    regression_metrics,
)


def one_hot_logits(pred, num_classes):
    return 2.0 * np.eye(num_classes)[np.asarray(pred)]


# ---------------------------------------------------------------- classification


def test_classification_hand_example():
    target = np.array([0, 0, 0, 0, 1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0])
    out = classification_metrics(one_hot_logits(pred, 3), target, num_classes=3)
    assert "top5" not in out  # only when num_classes > 5
    assert out["top1"] == pytest.approx(4 / 6)
    assert out["mean_class_acc"] == pytest.approx((3 / 4 + 1 + 0) / 3)  # per-class recall
    assert out["macro_precision"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert out["macro_recall"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert out["macro_f1"] == pytest.approx((3 / 4 + 2 / 3 + 0) / 3)
    assert 0.0 <= out["roc_auc"] <= 1.0
    assert set(out) <= set(METRIC_DIRECTIONS)


def test_macro_uses_classes_in_target_or_prediction():
    # class 2 only predicted (F1 = 0, counted); class 3 absent from both (not counted)
    out = classification_metrics(one_hot_logits([0, 0, 1, 2], 4), [0, 0, 1, 1], num_classes=4)
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["mean_class_acc"] == pytest.approx((1 + 1 / 2) / 2)  # only classes present in target


def test_top5_hand_example():
    # scores are 6 - rank, so a row's ranking is explicit; target ranks: 1st, 2nd, 7th (last), 5th
    rankings = [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6], [0, 1, 3, 4, 5, 6, 2], [6, 5, 4, 0, 3, 2, 1]]
    logits = np.zeros((4, 7))
    for i, order in enumerate(rankings):
        logits[i, order] = 6.0 - np.arange(7)
    out = classification_metrics(logits, [0, 1, 2, 3], num_classes=7)
    assert out["top1"] == pytest.approx(1 / 4)
    assert out["top5"] == pytest.approx(3 / 4)


def test_perfect_scores_and_torch_input():
    target = torch.tensor([0, 1, 2, 1])
    out = classification_metrics(torch.tensor(one_hot_logits(target, 3)), target, num_classes=3)
    assert out == pytest.approx(
        dict(top1=1, mean_class_acc=1, macro_precision=1, macro_recall=1, macro_f1=1, roc_auc=1)
    )


def test_roc_auc_omitted_when_single_class():
    out = classification_metrics(np.random.default_rng(0).normal(size=(5, 3)), [1] * 5, num_classes=3)
    assert "roc_auc" not in out


def test_classification_mask_ignores_entries():
    rng = np.random.default_rng(1)
    logits, target = rng.normal(size=(20, 8)), rng.integers(0, 8, size=20)
    mask = rng.random(20) < 0.6
    base = classification_metrics(logits, target, mask, num_classes=8)
    logits2, target2 = logits.copy(), target.copy()
    logits2[~mask] = rng.normal(size=((~mask).sum(), 8)) * 100
    target2[~mask] = -1  # ignore-index style label, must not be validated
    assert classification_metrics(logits2, target2, mask, num_classes=8) == base
    assert classification_metrics(logits[mask], target[mask], num_classes=8) == pytest.approx(base)
    assert classification_metrics(logits, target, np.zeros(20, bool), num_classes=8) == {}
    assert classification_metrics(np.zeros((0, 8)), np.zeros(0, int), num_classes=8) == {}


def test_confusion_and_per_class_f1():
    target, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    mask = np.array([True, True, True, True, False])
    cm = confusion(pred, target, mask, num_classes=4)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(confusion(one_hot_logits(pred, 4), target, mask, num_classes=4), cm)
    f1 = per_class_f1(one_hot_logits(pred, 4), target, mask, num_classes=4)
    np.testing.assert_allclose(f1, [2 / 3, 0.8, 0.0, 0.0])  # classes 2, 3 absent -> 0.0, not NaN
    assert not np.isnan(per_class_f1(pred, target, np.zeros(5, bool), num_classes=4)).any()
    assert confusion(pred, target, np.zeros(5, bool), num_classes=4).sum() == 0


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError):
        classification_metrics(np.zeros((2, 3)), [0, 3], num_classes=3)
    with pytest.raises(ValueError):
        classification_metrics(np.zeros((2, 4)), [0, 1], num_classes=3)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    c=st.integers(2, 9),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_class_permutation_invariance(n, c, seed, data):
    rng = np.random.default_rng(seed)
    logits, target = rng.normal(size=(n, c)), rng.integers(0, c, size=n)
    perm = np.array(data.draw(st.permutations(range(c))))  # class k is renamed perm[k]
    logits_p = np.empty_like(logits)
    logits_p[:, perm] = logits
    a = classification_metrics(logits, target, num_classes=c)
    b = classification_metrics(logits_p, perm[target], num_classes=c)
    assert set(a) == set(b)
    for key in ("top1", "macro_f1", "mean_class_acc", *a):
        assert a[key] == pytest.approx(b[key])


# ---------------------------------------------------------------- multi-label


def test_multilabel_map_matches_sklearn_and_skips_classes_without_positives():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 5))
    target = (rng.random((50, 5)) < 0.3).astype(int)
    target[:, 4] = 0  # no positives: must be skipped, not counted as 0
    out = multilabel_metrics(logits, target)
    expected = np.mean([average_precision_score(target[:, c], logits[:, c]) for c in range(4)])
    assert out["mAP"] == pytest.approx(expected)
    assert out["mAP"] == pytest.approx(average_precision_score(target[:, :4], logits[:, :4], average="macro"))


def test_multilabel_hand_example_and_masks():
    logits = np.array([[2.0, -1.0, 1.0], [-2.0, 1.0, -1.0], [1.0, 0.5, -3.0]])
    target = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    out = multilabel_metrics(logits, target)
    assert out["mAP"] == pytest.approx(1.0)
    assert out["exact_match"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)  # class 1: tp=1, fp=1
    # element mask hides the wrong entry: everything perfect, row 2 no longer fully labelled
    emask = np.ones((3, 3), bool)
    emask[2, 1] = False
    target_nan = target.astype(float)
    target_nan[2, 1] = np.nan
    out_m = multilabel_metrics(logits, target_nan, emask)
    assert out_m["macro_f1"] == pytest.approx(1.0)
    assert out_m["exact_match"] == pytest.approx(1.0)
    # row mask
    assert multilabel_metrics(logits, target, np.array([True, True, False]))["exact_match"] == 1.0
    assert multilabel_metrics(logits, target, np.zeros(3, bool)) == {}


# ---------------------------------------------------------------- regression


def test_regression_hand_example_and_mask():
    pred, target = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert regression_metrics(pred, target) == pytest.approx({"mae": 1.0, "rmse": math.sqrt(5 / 3)})
    mask = np.array([True, True, False])
    target_nan = np.array([2.0, 2.0, np.nan])  # masked-out NaN must not leak
    assert regression_metrics(pred, target_nan, mask) == pytest.approx({"mae": 0.5, "rmse": math.sqrt(0.5)})
    # [N, D] with row mask
    p2, t2 = np.array([[0.0, 0.0], [9.0, 9.0]]), np.array([[1.0, 3.0], [0.0, 0.0]])
    assert regression_metrics(p2, t2, [True, False]) == pytest.approx({"mae": 2.0, "rmse": math.sqrt(5)})
    assert regression_metrics(pred, target, np.zeros(3, bool)) == {}


def test_metric_directions():
    assert METRIC_DIRECTIONS["mae"] is False and METRIC_DIRECTIONS["rmse"] is False
    assert all(METRIC_DIRECTIONS[k] for k in ("top1", "top5", "mean_class_acc", "macro_f1", "roc_auc", "mAP"))


# ---------------------------------------------------------------- delta_m


def test_delta_m_sign_convention():
    hib = {"action": True, "pose": False}
    better, _ = delta_m({"action": 0.8}, {"action": 0.5}, hib)
    assert better == pytest.approx(-60.0)
    worse, _ = delta_m({"action": 0.4}, {"action": 0.5}, hib)
    assert worse == pytest.approx(20.0)
    lower_mae, _ = delta_m({"pose": 0.2}, {"pose": 0.4}, hib)  # lower-is-better improved => negative
    assert lower_mae == pytest.approx(-50.0)
    both, det = delta_m({"action": 0.8, "pose": 0.6}, {"action": 0.5, "pose": 0.4}, hib)
    assert both == pytest.approx((-60.0 + 50.0) / 2)
    assert det["pose"] == pytest.approx(
        {"mtl": 0.6, "stl": 0.4, "relative_pct": 50.0, "included": True, "abs_diff": 0.2}
    )


def test_delta_m_floor_and_errors():
    hib = {"a": True, "b": True}
    val, det = delta_m({"a": 0.6, "b": 0.03}, {"a": 0.5, "b": 0.01}, hib)
    assert val == pytest.approx(-20.0)  # tiny baseline of b excluded
    assert det["b"]["included"] is False and det["b"]["relative_pct"] is None
    assert det["b"]["abs_diff"] == pytest.approx(0.02)
    only_tiny, det_tiny = delta_m({"b": 0.03}, {"b": 0.01}, hib)
    assert only_tiny is None and det_tiny["b"]["included"] is False  # no task counted -> None, not NaN
    with pytest.raises(ValueError, match="missing_task"):
        delta_m({"missing_task": 0.5}, {"a": 0.5}, {"missing_task": True})
    with pytest.raises(ValueError, match="no_dir"):
        delta_m({"no_dir": 0.5}, {"no_dir": 0.5}, hib)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_and_narrows():
    rng = np.random.default_rng(3)
    small, large = rng.normal(1.0, 1.0, size=30), rng.normal(1.0, 1.0, size=3000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap_ci(small) == bootstrap_ci(small)  # deterministic for a fixed seed
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError):
        bootstrap_ci([])
