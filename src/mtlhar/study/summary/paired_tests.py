"""Paired tests of each multi-task group against the single-task baselines and against the `reference`
variant, per primary task and test split; each family Holm-corrected on its own."""

from __future__ import annotations

import warnings

import numpy as np

from ... import stats
from ..plan import PlannedRun
from .metrics_table import SplitTable

TESTS_METHOD = (
    "per-clip metrics (top1, mae): paired sign-flip permutation test on per-clip score "
    "differences (averaged over seeds), 10,000 permutations; set metrics (mAP): paired approximate "
    "randomisation (each clip's outputs swapped between the runs, metric recomputed), 2,000 permutations; "
    "Holm-corrected across all tests against the single-task baselines (each test names its method); tests "
    "against the `reference` variant (reference_tests) are Holm-corrected as their own family"
)


def paired_test(a: dict, b: dict) -> tuple[float, float, str]:
    """(mean difference a - b, p, method) of two groups' resamples of one task on one split."""
    if "set" in a:  # a set metric: approximate randomisation over clips
        fn, outs_a, tgt, va = a["set"]
        mean_diff, p = stats.randomisation_test(fn, outs_a, b["set"][1], tgt, va)
        return mean_diff, p, "paired approximate randomisation over test clips (metric recomputed)"
    both = a["valid"] & b["valid"]
    diff = np.where(both, a["scores"] - b["scores"], np.nan)
    with warnings.catch_warnings():  # clips labelled in no run stay NaN (skipped by the test)
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = np.nanmean(diff, axis=0)
    return (
        float(np.nanmean(diff)),
        stats.sign_flip_test(diff),
        "paired sign-flip permutation test on per-clip score differences",
    )


def tests_against_baselines(
    table: SplitTable, groups: dict[str, list[PlannedRun]], primary: list[str], main: dict[str, str]
) -> list[dict]:
    """Each multi-task group against the single-task baseline of each primary task it shares with it."""
    tests = []
    for group in groups:
        for t in [] if group.startswith("stl_") else table.compared_tasks(group, primary):
            mean_diff, p, method = paired_test(table.resamples[(group, t)], table.resamples[(f"stl_{t}", t)])
            tests.append(
                {
                    "run": group,
                    "task": t,
                    "split": table.split,
                    "metric": main[t],
                    "mean_diff": mean_diff,
                    "p": p,
                    "method": method,
                }
            )
    return tests


def tests_against_reference(
    table: SplitTable,
    groups: dict[str, list[PlannedRun]],
    reference: str,
    primary: list[str],
    main: dict[str, str],
) -> list[dict]:
    """Every other multi-task group against the `reference` variant on each primary task both have."""
    tests = []
    for group in groups:
        if group == reference or group.startswith("stl_"):
            continue
        for t in primary:
            a, b = table.resamples.get((group, t)), table.resamples.get((reference, t))
            if a is None or b is None:
                continue
            mean_diff, p, method = paired_test(a, b)
            tests.append(
                {
                    "run": group,
                    "reference": reference,
                    "task": t,
                    "split": table.split,
                    "metric": main[t],
                    "mean_diff": mean_diff,
                    "run_mean": table.mean(group, t, main[t]),
                    "reference_mean": table.mean(reference, t, main[t]),
                    "p": p,
                    "method": method,
                }
            )
    return tests


def holm_correct(family: list[dict]) -> None:
    """Add `p_holm` to each test of the family (Holm's step-down correction over the family)."""
    for t, p in zip(family, stats.holm([t["p"] for t in family]) if family else []):
        t["p_holm"] = p
