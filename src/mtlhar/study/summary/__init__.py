"""A study's results.json: the summary table with intervals, delta_m, the paired tests, affinity and
representation per group, and every run's compute and provenance."""

from __future__ import annotations

import json
from pathlib import Path

from ...data.manifest import Manifest
from ..plan import PlannedRun, runs_by_group
from ..spec import StudySpec, check_protocol, main_metric
from .delta_m import DELTA_M_CONVENTION, delta_m_rows
from .measurements import REPRESENTATION_METHOD, affinity_by_group, representation_by_group
from .metrics_table import summarise_split
from .paired_tests import TESTS_METHOD, holm_correct, tests_against_baselines, tests_against_reference
from .provenance import COMPUTE_METHOD, compute_by_run, dataset_info, provenance_by_run


def summarise(
    spec: StudySpec, plan: list[PlannedRun], out: Path, manifest: Manifest, wall: float, *, quick: bool
) -> dict:
    """The results of the study's (tested) runs in `plan` under OUT/runs; `wall`: this invocation's time."""
    groups = runs_by_group(plan)
    folded = any(r.fold is not None for r in plan)
    compared = compare_groups(spec, groups, out, folded=folded)
    headline = next((d for d in compared["delta_m_summary"] if d["split"] == spec.test_splits[0]), None)
    affinity = affinity_by_group(groups, out)
    compute = compute_by_run(plan, out)
    return {
        "study": spec.name,
        "runs": compared["runs_by_split"].get(spec.test_splits[0], {}),
        "runs_by_split": compared["runs_by_split"],
        "delta_m": headline["mean"] if headline else None,
        "delta_m_summary": compared["delta_m_summary"],
        "representation": representation_by_group(groups, out),
        "representation_method": REPRESENTATION_METHOD,
        "affinity": next(iter(affinity.values()), None),
        "affinity_by_run": affinity,
        "delta_m_convention": DELTA_M_CONVENTION,
        "summary": compared["summary"],
        "tests": compared["tests"],
        "tests_method": TESTS_METHOD,
        "reference": spec.reference,
        "reference_tests": compared["reference_tests"],
        "tasks": [dict(t, main_metric=main_metric(t)) for t in spec.tasks],
        "dataset": dataset_info(manifest),
        "provenance": provenance_by_run(plan, out),
        "compute": compute,
        "compute_method": COMPUTE_METHOD,
        "groups": {g: [r.name for r in rs] for g, rs in groups.items()},
        "settings": {
            "seeds": len({r.seed for r in next(iter(groups.values()))}),
            "quick": quick,
            "test_splits": spec.test_splits,
            "protocol": check_protocol(spec) or {"kind": "holdout"},
        },
        **({"folds": json.loads((out / "folds" / "folds.json").read_text())["folds"]} if folded else {}),
        "wall_time_s": round(wall, 1),  # this invocation (a resumed study counts only what it redid)
        # training time of every run, whenever it was trained
        "runs_wall_time_s": round(sum((c.get("wall_time_s") or 0.0) for c in compute.values()), 1),
    }


def compare_groups(spec: StudySpec, groups: dict[str, list[PlannedRun]], out: Path, *, folded: bool) -> dict:
    """Per test split: every run's metrics, the summary table, delta_m and the paired tests (against the
    single-task baselines and the `reference` variant), each family of tests Holm-corrected."""
    main = {t["name"]: main_metric(t) for t in spec.tasks}
    primary = [t["name"] for t in spec.tasks if t.get("role", "primary") == "primary"]
    res: dict = {
        "runs_by_split": {},
        "summary": [],
        "delta_m_summary": [],
        "tests": [],
        "reference_tests": [],
    }
    for split in spec.test_splits:
        table = summarise_split(out, groups, split, folded=folded)
        res["runs_by_split"][split] = table.per_run
        res["summary"] += table.entries
        res["delta_m_summary"] += delta_m_rows(table, groups, primary, main, folded=folded)
        res["tests"] += tests_against_baselines(table, groups, primary, main)
        if spec.reference:
            res["reference_tests"] += tests_against_reference(table, groups, spec.reference, primary, main)
    holm_correct(res["tests"])
    holm_correct(res["reference_tests"])
    return res


__all__ = ["DELTA_M_CONVENTION", "compare_groups", "summarise"]
