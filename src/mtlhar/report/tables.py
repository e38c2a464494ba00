"""The report's numbers as rows: headline verdict, results, cross-domain drops, frequency bands, compute.

Rows are plain dicts of already-chosen values; the template formats them. A value is None where it does
not exist (the template shows a dash), never NaN.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import DataError
from .evidence import budget_limits, undertrained_runs
from .study import StudyData, higher_is_better, is_stl

ALPHA = 0.05  # significance level of the Holm-corrected paired tests
BALANCED_RATIO = (
    1.5  # training classes are balanced when the largest has at most this many times the smallest
)


# -------------------------------------------------------------------------------------------------
def verdicts(data: StudyData) -> list[dict]:
    """Per multi-task group and test split: the plain answer to "does MTL help here?" from the tests, and
    what limits it (`limits`: one seed, undertrained runs; empty when nothing does)."""
    out = []
    under = undertrained_runs(data)
    for group in data.mtl_groups:
        for split in data.splits:
            better, worse, same = [], [], []
            for task in data.primary_tasks:
                t = data.test(group, task, split)
                if t is None:
                    continue
                hib = higher_is_better(t["metric"])
                item = {
                    "task": task,
                    "metric": t["metric"],
                    "diff": t["mean_diff"],
                    "p_holm": t.get("p_holm", t["p"]),
                }
                if item["p_holm"] >= ALPHA:
                    same.append(item)
                elif (t["mean_diff"] > 0) == hib:
                    better.append(item)
                else:
                    worse.append(item)
            if not (better or worse or same):
                continue
            if better and not worse:
                answer, tone = "Yes", "good"
            elif worse and not better:
                answer, tone = "No: it hurts", "bad"
            elif better and worse:
                answer, tone = "Mixed", "mixed"
            else:
                answer, tone = "No significant difference", "neutral"
            dm = next(
                (
                    d
                    for d in data.results.get("delta_m_summary", [])
                    if (d["run"], d["split"]) == (group, split)
                ),
                None,
            )
            out.append(
                {
                    "group": group,
                    "split": split,
                    "answer": answer,
                    "tone": tone,
                    "better": better,
                    "worse": worse,
                    "same": same,
                    "delta_m": dm,
                    "delta_m_text": _delta_m_text(dm),
                    "limits": budget_limits(data, group, under),
                }
            )
    return out


def _delta_m_text(dm: dict | None) -> str:
    if dm is None or dm.get("mean") is None:
        return "delta_m not defined (no primary task with a single-task baseline above the floor)"
    lo, hi = dm.get("ci_lo"), dm.get("ci_hi")
    if lo is None or hi is None:
        return f"delta_m = {dm['mean']:+.2f}% (no interval)"
    if hi < 0:
        where = "the interval lies below 0: multi-task beats single-task on the primary tasks"
    elif lo > 0:
        where = "the interval lies above 0: single-task beats multi-task on the primary tasks"
    else:
        where = "the interval includes 0"
    return f"delta_m = {dm['mean']:+.2f}% (95% CI [{lo:+.2f}, {hi:+.2f}]): {where}"


# -------------------------------------------------------------------------------------------------
def main_rows(data: StudyData) -> list[dict]:
    """Main metric per split x task x group, with the difference to the task's single-task baseline."""
    rows = []
    for split in data.splits:
        for task in data.task_cfgs:
            metric = data.main_metric(task)
            base = data.stl_group_for(task)
            base_entry = data.entry(base, task, split) if base else None
            for group in data.groups_with_task(task):
                e = data.entry(group, task, split)
                if e is None:
                    continue
                t = data.test(group, task, split)
                rows.append(
                    {
                        **_interval(e),
                        "split": split,
                        "task": task,
                        "role": e["role"],
                        "metric": metric,
                        "arrow": "↑" if higher_is_better(metric) else "↓",
                        "group": group,
                        "kind": "STL" if is_stl(group) else "MTL",
                        "colour": data.colours[group],
                        "diff": e["mean"] - base_entry["mean"]
                        if base_entry is not None and not is_stl(group)
                        else None,
                        "p_holm": t.get("p_holm") if t else None,
                    }
                )
    return rows


def full_rows(data: StudyData) -> list[dict]:
    return [
        {**_interval(e), "split": e["split"], "group": e["run"], "task": e["task"], "metric": e["metric"]}
        for e in data.results["summary"]
    ]


def _interval(e: dict) -> dict:
    return {
        "mean": e["mean"],
        "std": e.get("std"),
        "ci_lo": e.get("ci_lo"),
        "ci_hi": e.get("ci_hi"),
        "n_seeds": e.get("n_seeds"),
        "ci_method": e.get("ci_method", ""),
    }


def delta_m_rows(data: StudyData) -> list[dict]:
    return [
        {
            "group": d["run"],
            "split": d["split"],
            "mean": d.get("mean"),
            "std": d.get("std"),
            "ci_lo": d.get("ci_lo"),
            "ci_hi": d.get("ci_hi"),
            "n_seeds": d.get("n_seeds"),
            "tasks": ", ".join(d.get("tasks", [])),
            "excluded": ", ".join(
                t for t, det in (d.get("details") or {}).items() if not det.get("included", True)
            ),
        }
        for d in data.results.get("delta_m_summary", [])
    ]


def test_rows(data: StudyData) -> list[dict]:
    rows = []
    for t in data.results.get("tests", []):
        p_holm = t.get("p_holm", t["p"])
        better = (t["mean_diff"] > 0) == higher_is_better(t["metric"])
        rows.append(
            {
                **t,
                "p_holm": p_holm,
                "verdict": ("MTL better" if better else "MTL worse")
                if p_holm < ALPHA
                else "no significant difference",
            }
        )
    return rows


def reference_rows(data: StudyData) -> list[dict]:
    """Each multi-task variant against the study's `reference` variant (e.g. a balancer against equal
    weighting), per primary task and split."""
    rows = []
    for t in data.results.get("reference_tests") or []:
        p_holm = t.get("p_holm", t["p"])
        better = (t["mean_diff"] > 0) == higher_is_better(t["metric"])
        verdict = ("better" if better else "worse") if p_holm < ALPHA else "no significant difference"
        rows.append({**t, "p_holm": p_holm, "verdict": verdict})
    return rows


# -------------------------------------------------------------------------------------------------
def cross_domain_rows(data: StudyData) -> list[dict]:
    """Main metric of each group and task on every test split, and its change from the first split."""
    if len(data.splits) < 2:
        return []
    rows = []
    first, others = data.splits[0], data.splits[1:]
    for task in data.task_cfgs:
        metric = data.main_metric(task)
        for group in data.groups_with_task(task):
            e0 = data.entry(group, task, first)
            values = {s: (data.entry(group, task, s) or {}).get("mean") for s in data.splits}
            changes = {}
            for s in others:
                v = values[s]
                if e0 is None or v is None:
                    changes[s] = (None, None)
                else:
                    rel = 100 * (v - e0["mean"]) / abs(e0["mean"]) if e0["mean"] else None
                    changes[s] = (v - e0["mean"], rel)
            rows.append(
                {
                    "group": group,
                    "kind": "STL" if is_stl(group) else "MTL",
                    "colour": data.colours[group],
                    "task": task,
                    "metric": metric,
                    "arrow": "↑" if higher_is_better(metric) else "↓",
                    "values": [values[s] for s in data.splits],
                    "changes": [changes[s] for s in others],
                }
            )
    return rows


def split_domains(data: StudyData) -> list[dict]:
    """Which domains (manifest column `domain`) each split holds, for reading the cross-domain table."""
    m = data.manifest
    if m is None or "domain" not in m.columns or "split" not in m.columns:
        return []
    splits = [s for s in ["train", "val"] if s not in data.splits] + data.splits
    out = []
    for s in splits:
        counts = Counter(r.get("domain", "") or "(none)" for r in m.rows if r.get("split") == s)
        if counts:
            out.append({"split": s, "domains": ", ".join(f"{d} ({n})" for d, n in sorted(counts.items()))})
    return out


# -------------------------------------------------------------------------------------------------
def frequency_bands(data: StudyData, *, train_split: str = "train") -> list[dict]:
    """Per task whose kind has one class per clip (`TaskKind.class_counts`, `per_class_f1`): classes banded
    head / middle / tail by training frequency tertiles, and macro-F1 per band of every group (per-class
    F1 from the first test split, mean over seeds). `balanced` is True where the most frequent class has at
    most BALANCED_RATIO times the clips of the rarest (the report then shows no bands for the task).
    """
    m = data.manifest
    split = data.first_split
    out = []
    if m is None:
        return out
    train_rows = [r for r in m.rows if r.get("split") == train_split]
    for name in data.task_cfgs:
        groups = data.groups_with_task(name)
        task = next((data.tasks_of(r)[name] for g in groups for r in data.groups[g][:1]), None)
        if task is None or not task.classes or task.column not in m.columns:
            continue
        freq = _class_frequencies(task, train_rows)
        if freq is None:  # the kind has no class per clip
            continue
        lo_n, hi_n = int(freq.min()), int(freq.max())
        balanced = bool(hi_n <= BALANCED_RATIO * lo_n)
        q1, q2 = (float(x) for x in np.quantile(freq, [1 / 3, 2 / 3]))
        # counts are whole numbers: n <= q  <=>  n <= floor(q), so the edges are stated as integers
        e1, e2 = int(np.floor(q1)), int(np.floor(q2))
        band_of = np.where(freq > e2, 0, np.where(freq > e1, 1, 2))
        bands = [
            {"name": "head", "edges": f"n > {e2}", "members": np.flatnonzero(band_of == 0)},
            {
                "name": "middle",
                "edges": f"{e1} < n ≤ {e2}" if e2 > e1 else "(empty: edges coincide)",
                "members": np.flatnonzero(band_of == 1),
            },
            {"name": "tail", "edges": f"n ≤ {e1}", "members": np.flatnonzero(band_of == 2)},
        ]
        f1 = {}
        for g in groups:
            per_seed = []
            for run in data.groups[g]:
                pred = data.predictions(run, split)
                if pred is None or name not in pred["outputs"]:
                    continue
                p = pred
                f1_run = task.spec.per_class_f1(
                    task, p["outputs"][name], p["targets"][name], p["masks"][name]
                )
                if f1_run is not None:
                    per_seed.append(f1_run)
            if per_seed:
                f1[g] = np.mean(per_seed, axis=0)
        if not f1:
            continue
        for b in bands:
            b["n_classes"] = len(b["members"])
            b["classes"] = ", ".join(task.classes[i] for i in b["members"][:12]) + (
                ", ..." if len(b["members"]) > 12 else ""
            )
            b["f1"] = [
                float(f1[g][b["members"]].mean()) if len(b["members"]) and g in f1 else None for g in groups
            ]
        out.append(
            {
                "task": name,
                "column": task.column,
                "groups": [g for g in groups],
                "colours": [data.colours[g] for g in groups],
                "bands": bands,
                "q1": q1,
                "q2": q2,
                "e1": e1,
                "e2": e2,
                "n_train": int(freq.sum()),
                "all_equal": bool(freq.min() == freq.max()),
                "balanced": balanced,
                "min_n": lo_n,
                "max_n": hi_n,
                "freq": freq.tolist(),
                "classes": task.classes,
                "per_class": {g: v.tolist() for g, v in f1.items()},
            }
        )
    return out


def _class_frequencies(task, rows: list[dict]) -> np.ndarray | None:
    """Training clips per class of `task` (its kind's `class_counts` of the rows' labels; a label the run
    does not know, from a manifest changed since, is not counted), or None when the kind counts none."""
    labels = []
    for r in rows:
        try:
            labels.append(task.spec.target_from_cell(task, r.get(task.column, ""), "manifest"))
        except DataError:
            continue
    counts = task.spec.class_counts(task, labels)
    return None if counts is None else np.array(counts, dtype=float)


# -------------------------------------------------------------------------------------------------
def compute_rows(data: StudyData) -> list[dict]:
    rows = []
    for group, runs in data.groups.items():
        for run in runs:
            c = data.results.get("compute", {}).get(run, {})
            rows.append(
                {
                    "run": run,
                    "group": group,
                    "kind": "STL" if is_stl(group) else "MTL",
                    "seed": data.seed_of(run),
                    "steps": c.get("steps"),
                    "best_step": c.get("best_step"),
                    "wall_time_s": c.get("wall_time_s"),
                    "samples_seen": c.get("samples_seen"),
                    "n_parameters": c.get("n_parameters"),
                    "gflops_per_clip": c["flops_per_clip"] / 1e9 if c.get("flops_per_clip") else None,
                    "device": c.get("device") or "",
                }
            )
    return rows


def provenance_rows(data: StudyData) -> list[dict]:
    rows = []
    for runs in data.groups.values():
        for run in runs:
            p = data.results.get("provenance", {}).get(run, {})
            gen = p.get("generator_version")
            rows.append(
                {
                    "run": run,
                    "seed": p.get("seed"),
                    "git_sha": p.get("git_sha") or "(not a git checkout)",
                    "manifest_sha256": (p.get("manifest_sha256") or "")[:16],
                    "split_hashes": ", ".join(f"{k}: {v}" for k, v in (p.get("split_hashes") or {}).items()),
                    "generator": ", ".join(gen) if isinstance(gen, list) else (gen or "—"),
                    "versions": f"mtlhar {p.get('mtlhar_version', '?')}, torch {p.get('torch', '?')}, "
                    f"python {p.get('python', '?')}",
                }
            )
    return rows
