"""Group-aware splitters: whole groups only, for every input (property tests), and stratification."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlhar.data.splits import (
    assign_splits,
    check_group_leakage,
    holdout_by_group,
    kfold_by_group,
    leave_one_group_out,
)
from mtlhar.errors import DataError

groups_st = st.lists(st.sampled_from([f"s{i}" for i in range(12)]), min_size=2, max_size=80).filter(
    lambda g: len(set(g)) >= 2
)


def _assert_partition(groups, train, test):
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(groups)))
    assert not {groups[i] for i in train} & {groups[i] for i in test}


@settings(max_examples=60, deadline=None)
@given(groups=groups_st, seed=st.integers(0, 5), data=st.data())
def test_holdout_never_splits_a_group(groups, seed, data):
    labels = data.draw(st.lists(st.sampled_from("abc"), min_size=len(groups), max_size=len(groups)))
    test_size = data.draw(st.floats(0.1, 0.5))
    train, test = holdout_by_group(groups, test_size=test_size, labels=labels, seed=seed)
    _assert_partition(groups, train, test)
    assert len(train) and len(test)


@settings(max_examples=60, deadline=None)
@given(groups=groups_st, k=st.integers(2, 5), seed=st.integers(0, 5), stratify=st.booleans())
def test_kfold_every_group_tested_exactly_once(groups, k, seed, stratify):
    if len(set(groups)) < k:
        with pytest.raises(DataError, match="group folds"):
            kfold_by_group(groups, k, seed=seed)
        return
    labels = [g[-1] for g in groups] if stratify else None
    folds = kfold_by_group(groups, k, labels=labels, seed=seed)
    assert len(folds) == k
    tested = Counter()
    for train, test in folds:
        _assert_partition(groups, train, test)
        assert len(test) > 0
        tested.update(set(groups[i] for i in test))
    assert set(tested.values()) == {1} and set(tested) == set(groups)


@settings(max_examples=30, deadline=None)
@given(groups=groups_st)
def test_leave_one_group_out(groups):
    parts = list(leave_one_group_out(groups))
    assert [g for g, _, _ in parts] == list(dict.fromkeys(groups))
    for g, train, test in parts:
        _assert_partition(groups, train, test)
        assert {groups[i] for i in test} == {g}


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.sampled_from([f"s{i}" for i in range(20)]), min_size=10, max_size=100),
    seed=st.integers(0, 3),
)
def test_assign_splits_keeps_groups_whole(groups, seed):
    if len(set(groups)) < 3:
        return
    rows = [{"id": str(i), "group": g, "action": "ab"[i % 2]} for i, g in enumerate(groups)]
    assign_splits(rows, val=0.2, test=0.2, label_column="action", seed=seed)
    assert check_group_leakage(rows) == {}
    assert {r["split"] for r in rows} <= {"train", "val", "test"} and all(r["split"] for r in rows)


def test_stratified_holdout_keeps_class_proportions_and_is_deterministic():
    # 40 subjects, each with one dominant class: 30 of class a, 10 of class b
    groups = [f"s{i}" for i in range(40) for _ in range(5)]
    labels = ["a" if i < 30 else "b" for i in range(40) for _ in range(5)]
    train, test = holdout_by_group(groups, test_size=0.25, labels=labels, seed=1)
    frac_b = np.mean([labels[i] == "b" for i in test])
    assert abs(len(test) / len(groups) - 0.25) < 0.05 and abs(frac_b - 0.25) < 0.08
    again = holdout_by_group(groups, test_size=0.25, labels=labels, seed=1)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(holdout_by_group(groups, test_size=0.25, labels=labels, seed=2)[1], test)


def test_bad_arguments_are_clear():
    with pytest.raises(DataError, match="only 1 group"):
        holdout_by_group(["a", "a"])
    with pytest.raises(DataError, match="test_size"):
        holdout_by_group(["a", "b"], test_size=1.5)
    with pytest.raises(DataError, match="labels has 1 entries"):
        kfold_by_group(["a", "b"], 2, labels=["x"])
    rows = [
        {"group": "g1", "split": "train"},
        {"group": "g1", "split": "test"},
        {"group": "g2", "split": "test"},
    ]
    assert check_group_leakage(rows) == {"g1": ["test", "train"]}
