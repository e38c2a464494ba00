"""Group-aware splitters: a group (subject, recording, source video) is never in two parts.

All functions take the group of every sample (and optionally a label per sample) and return index
arrays. They are deterministic for a given seed.

    train, test = holdout_by_group(groups, test_size=0.2, labels=labels, seed=0)
    for train, test in kfold_by_group(groups, k=5): ...
    for group, train, test in leave_one_group_out(groups): ...
    for train, val, test in protocol_folds(groups, kind="loso", val=0.15): ...   # study protocols
    assign_splits(table.rows, val=0.1, test=0.2, label_column="action")   # fills the `split` column
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import DataError


def _group_index(groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names = list(dict.fromkeys(str(g) for g in groups))
    lookup = {g: i for i, g in enumerate(names)}
    return names, np.array([lookup[str(g)] for g in groups], dtype=np.int64)


def _group_labels(codes: np.ndarray, labels: Sequence[str], n_groups: int) -> list[str]:
    """The most frequent label of each group (ties: the first seen)."""
    per_group: list[Counter] = [Counter() for _ in range(n_groups)]
    for g, lab in zip(codes, labels):
        per_group[g][str(lab)] += 1
    return [c.most_common(1)[0][0] for c in per_group]


def _assign_folds(
    n_groups: int, sizes: np.ndarray, k: int, strata: list[str] | None, rng: np.random.Generator
) -> np.ndarray:
    """Fold of each group: groups (shuffled, then largest first) go to the fold that has the fewest
    samples so far, of their stratum when strata are given (balances class proportions)."""
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold = np.empty(n_groups, dtype=np.int64)
    total = np.zeros(k)
    per_stratum: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(k))
    for g in order:
        load = per_stratum[strata[g]] if strata is not None else total
        # fewest of the stratum, then fewest overall, then a random fold
        key = np.lexsort((rng.random(k), total, load))
        f = int(key[0])
        fold[g] = f
        total[f] += sizes[g]
        if strata is not None:
            per_stratum[strata[g]][f] += sizes[g]
    return fold


def kfold_by_group(
    groups: Sequence[str], k: int = 5, *, labels: Sequence[str] | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs; every group is in exactly one test fold. With `labels`, the folds
    are stratified by each group's majority label where the groups allow."""
    names, codes = _group_index(groups)
    if k < 2:
        raise DataError(f"k must be >= 2, got {k}")
    if len(names) < k:
        raise DataError(f"cannot make {k} group folds from {len(names)} groups")
    if labels is not None and len(labels) != len(groups):
        raise DataError(f"labels has {len(labels)} entries but groups has {len(groups)}")
    sizes = np.bincount(codes, minlength=len(names)).astype(float)
    strata = _group_labels(codes, labels, len(names)) if labels is not None else None
    fold = _assign_folds(len(names), sizes, k, strata, np.random.default_rng(seed))
    # every fold must hold a group: move the smallest group of the fullest fold into an empty one
    for f in range(k):
        if not (fold == f).any():
            counts = np.bincount(fold, minlength=k)
            donor = int(np.argmax(counts))
            members = np.flatnonzero(fold == donor)
            fold[members[np.argmin(sizes[members])]] = f
    sample_fold = fold[codes]
    idx = np.arange(len(codes))
    return [(idx[sample_fold != f], idx[sample_fold == f]) for f in range(k)]


def holdout_by_group(
    groups: Sequence[str],
    *,
    test_size: float = 0.2,
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with about `test_size` of the samples in test, whole groups only."""
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be between 0 and 1, got {test_size}")
    names, codes = _group_index(groups)
    if len(names) < 2:
        raise DataError(f"cannot hold out groups: only {len(names)} group")
    k = min(len(names), max(2, round(1 / test_size)))
    folds = kfold_by_group(groups, k, labels=labels, seed=seed)
    target = test_size * len(codes)
    best = min(range(k), key=lambda f: abs(len(folds[f][1]) - target))
    return folds[best]


def leave_one_group_out(groups: Sequence[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(group, train, test) for each group in first-seen order: that group is the test part."""
    names, codes = _group_index(groups)
    idx = np.arange(len(codes))
    for i, name in enumerate(names):
        yield name, idx[codes != i], idx[codes == i]


def protocol_folds(
    groups: Sequence[str],
    *,
    kind: str = "kfold",
    k: int = 5,
    val: float = 0.15,
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, val, test) indices of every fold of a group-aware protocol.

    `kind` "kfold": `kfold_by_group` with `k` folds; "loso": `leave_one_group_out` (one group per fold).
    The test part of each fold is one fold of groups (so every group is tested exactly once); the
    validation part holds about `val` of the remaining samples, whole groups only (`holdout_by_group`,
    seeded per fold), and the rest is train. No group is ever in two parts of a fold.
    """
    if kind == "kfold":
        pairs = kfold_by_group(groups, k, labels=labels, seed=seed)
    elif kind == "loso":
        pairs = [(train, test) for _, train, test in leave_one_group_out(groups)]
        if len(pairs) < 3:
            raise DataError(
                f"leave-one-group-out needs at least 3 groups (test, val, train); found {len(pairs)}"
            )
    else:
        raise DataError(f"protocol kind {kind!r}: use 'kfold' or 'loso'")
    folds = []
    for f, (rest, test) in enumerate(pairs):
        sub = [groups[i] for i in rest]
        sub_labels = [labels[i] for i in rest] if labels is not None else None
        if len(set(map(str, sub))) < 2:
            raise DataError(f"fold {f}: only one group left besides the test fold, none for validation")
        tr, va = holdout_by_group(sub, test_size=val, labels=sub_labels, seed=seed + 1 + f)
        folds.append((rest[tr], rest[va], test))
    return folds


def assign_splits(
    rows: list[dict[str, str]],
    *,
    val: float = 0.1,
    test: float = 0.2,
    group_column: str = "group",
    label_column: str | None = None,
    seed: int = 0,
) -> list[dict[str, str]]:
    """Fill the `split` cell (train / val / test) of every row, keeping groups whole; in place."""
    groups = [r.get(group_column) or r["id"] for r in rows]
    labels = [r.get(label_column, "") for r in rows] if label_column else None
    idx = np.arange(len(rows))
    rest = idx
    if test > 0:
        train_part, test_part = holdout_by_group(groups, test_size=test, labels=labels, seed=seed)
        for i in test_part:
            rows[i]["split"] = "test"
        rest = train_part
    if val > 0:
        sub_groups = [groups[i] for i in rest]
        sub_labels = [labels[i] for i in rest] if labels else None
        tr, va = holdout_by_group(sub_groups, test_size=val / (1 - test), labels=sub_labels, seed=seed + 1)
        for i in va:
            rows[rest[i]]["split"] = "val"
        rest = rest[tr]
    for i in rest:
        rows[i]["split"] = "train"
    return rows


def check_group_leakage(
    rows: Sequence[dict[str, str]], *, group_column: str = "group"
) -> dict[str, list[str]]:
    """{group: [splits]} for every group that appears in more than one split (empty = no leakage)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.get(group_column) and r.get("split"):
            seen[r[group_column]].add(r["split"])
    return {g: sorted(s) for g, s in seen.items() if len(s) > 1}
