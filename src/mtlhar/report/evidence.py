"""How far the study's numbers can be trusted: warnings computed from results.json and each run's log.

Each warning is a short sentence for the report's "Warnings" box; it appears only where its condition
holds (the conditions are in the docstrings below and are what the tests check):

- one seed: no spread over seeds, intervals over test clips only;
- undertrained: a run's best validation score is at its last evaluation and above the one before;
- memorised auxiliary task: its train loss fell below 10% of its start while its validation main metric
  ended below its best;
- at the ceiling: every run scores >= 0.99 on a split (a comparison there tells nothing);
- at chance: every run's 95% interval of a task's top-1 reaches chance (1 / number of classes).
"""

from __future__ import annotations

import math

import numpy as np

from .study import StudyData, higher_is_better

MEMORISED_FRACTION = 0.10  # train loss below this fraction of its start: the training set is memorised
CEILING = 0.99  # a higher-is-better metric in [0, 1] at or above this: no room to tell runs apart
WINDOW = 0.05  # the start and end of a train loss are its means over this fraction of the logged steps


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def undertrained_runs(data: StudyData) -> dict[str, dict]:
    """Runs whose validation score was still rising when training stopped: the best evaluation is the last
    one and it is above the one before (at least two evaluations). {run: {step, scores (last three)}}."""
    out = {}
    for runs in data.groups.values():
        for run in runs:
            c = data.curves(run)
            steps = [s for s, v in zip(c.val_steps, c.scores) if math.isfinite(v)]
            scores = [v for v in c.scores if math.isfinite(v)]
            if len(scores) < 2:
                continue
            best = data.results.get("compute", {}).get(run, {}).get("best_step")
            if best is None:
                best = steps[int(np.argmax(scores))]
            if best == steps[-1] and scores[-1] > scores[-2]:
                out[run] = {"step": steps[-1], "scores": scores[-3:]}
    return out


def memorised_auxiliaries(data: StudyData) -> list[dict]:
    """(run, auxiliary task) pairs where the task's train loss fell below MEMORISED_FRACTION of its start
    (means over the first and last WINDOW of logged steps) while its validation main metric ended worse
    than its best."""
    out = []
    for task in data.task_cfgs:
        if data.role(task) != "auxiliary":
            continue
        metric = data.main_metric(task)
        hib = higher_is_better(metric)
        for g in data.groups_with_task(task):
            for run in data.groups[g]:
                c = data.curves(run)
                loss = _finite(c.loss.get(task, []))
                val = _finite(c.val.get(task, {}).get(metric, []))
                if len(loss) < 2 or len(val) < 2:
                    continue
                k = max(1, int(len(loss) * WINDOW))
                start, end = float(loss[:k].mean()), float(loss[-k:].mean())
                best = float(val.max() if hib else val.min())
                last = float(val[-1])
                fell = last < best if hib else last > best
                if start > 0 and end < MEMORISED_FRACTION * start and fell:
                    out.append(
                        {"run": run, "task": task, "metric": metric, "start": start, "end": end}
                        | {"best": best, "last": last}
                    )
    return out


def ceiling_splits(data: StudyData) -> list[str]:
    """Test splits on which every run group's main metric of every task is higher-is-better and >= CEILING."""
    out = []
    for split in data.splits:
        values = []
        for task in data.task_cfgs:
            for g in data.groups_with_task(task):
                e = data.entry(g, task, split)
                if e is not None:
                    values.append((higher_is_better(e["metric"]), e["mean"]))
        if values and all(hib and v >= CEILING for hib, v in values):
            out.append(split)
    return out


def chance_cells(data: StudyData) -> list[dict]:
    """(task, split) where a chance level exists and every run group's 95% interval of the main metric
    reaches it (its lower end, or the mean where there is no interval, is at or below chance)."""
    out = []
    for split in data.splits:
        for task in data.task_cfgs:
            chance = data.chance(task)
            if chance is None:
                continue
            entries = [data.entry(g, task, split) for g in data.groups_with_task(task)]
            entries = [e for e in entries if e is not None]
            lows = [e["ci_lo"] if e.get("ci_lo") is not None else e["mean"] for e in entries]
            if entries and all(lo <= chance for lo in lows):
                n = round(1 / chance)
                means = [e["mean"] for e in entries]
                out.append(
                    {"task": task, "split": split, "chance": chance, "n_classes": n}
                    | {"lo": min(means), "hi": max(means)}
                )
    return out


def warnings(data: StudyData) -> list[dict]:
    """The report's warnings: [{"kind", "text"}], in the order of the module docstring."""
    out = []
    if data.n_seeds == 1:
        out.append(
            {
                "kind": "one-seed",
                "text": "1 seed per run: there is no spread over seeds (std n/a); intervals and tests are "
                "over test clips only, so a verdict may change with another seed.",
            }
        )
    under = undertrained_runs(data)
    if under:
        steps = sorted({u["step"] for u in under.values()})
        example = next(iter(under.items()))
        trail = " → ".join(f"{v:.3f}" for v in example[1]["scores"])
        out.append(
            {
                "kind": "undertrained",
                "text": f"Undertrained: {', '.join(under)} {'was' if len(under) == 1 else 'were'} best at "
                f"the last step ({', '.join(map(str, steps))}) with the validation score still rising "
                f"({example[0]}: {trail}); longer training may change the verdicts.",
            }
        )
    for m in memorised_auxiliaries(data):
        out.append(
            {
                "kind": "memorised",
                "text": f"Auxiliary task {m['task']} is memorised in {m['run']}: its train loss fell from "
                f"{m['start']:.3g} to {m['end']:.3g} (below {MEMORISED_FRACTION:.0%} of its start) while its "
                f"validation {m['metric']} fell from its best {m['best']:.3f} to {m['last']:.3f}.",
            }
        )
    for split in ceiling_splits(data):
        out.append(
            {
                "kind": "ceiling",
                "text": f"Every run scores ≥ {CEILING} on {split} on every task: at the ceiling, the "
                "comparison there tells nothing.",
            }
        )
    cells = chance_cells(data)
    for split in dict.fromkeys(c["split"] for c in cells):
        parts = []
        for c in (c for c in cells if c["split"] == split):
            spread = f"{c['lo']:.3f}" if c["lo"] == c["hi"] else f"{c['lo']:.3f}–{c['hi']:.3f}"
            parts.append(f"{c['task']} (chance 1/{c['n_classes']} = {c['chance']:.3f}, means {spread})")
        out.append(
            {
                "kind": "chance",
                "text": f"At chance on {split}: {', '.join(parts)}; every run's 95% interval reaches down to "
                "chance, so differences there are noise.",
            }
        )
    return out


def budget_limits(data: StudyData, group: str, under: dict[str, dict] | None = None) -> list[str]:
    """Why a verdict about multi-task group `group` is limited by the study's budget: one seed, and the
    undertrained runs among the group's and its primary tasks' single-task baselines."""
    under = undertrained_runs(data) if under is None else under
    reasons = []
    if data.n_seeds == 1:
        reasons.append("1 seed")
    involved = list(data.groups.get(group, []))
    for task in data.primary_tasks:
        base = data.stl_group_for(task)
        if base:
            involved += data.groups[base]
    late = [r for r in dict.fromkeys(involved) if r in under]
    if late:
        reasons.append(f"undertrained: {', '.join(late)}")
    return reasons
