"""The per-run metrics of every test split and the summary table: per group x task x metric, the mean and
spread over seeds (and folds) with an interval, plus the resamples the paired tests and delta_m reuse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...evaluate import load_predictions
from ...tasks import Task, task_from_dict
from ..plan import PlannedRun
from .intervals import fold_stats, metric_interval


@dataclass
class SplitTable:
    """What one test split's summary holds."""

    split: str
    per_run: dict[str, dict[str, dict]] = field(default_factory=dict)  # run -> task -> metric -> value
    entries: list[dict] = field(default_factory=list)  # one per group x task x metric
    resamples: dict[tuple[str, str], dict] = field(default_factory=dict)  # (group, task) -> bootstrap draws

    def mean(self, group: str, task: str, metric: str) -> float:
        """The mean over seeds of `metric` of `task` in `group`."""
        return next(
            e["mean"] for e in self.entries if (e["run"], e["task"], e["metric"]) == (group, task, metric)
        )

    def compared_tasks(self, group: str, primary: list[str]) -> list[str]:
        """The primary tasks with resamples both in `group` and in their single-task baseline."""
        return [t for t in primary if (group, t) in self.resamples and (f"stl_{t}", t) in self.resamples]


def load_run(out: Path, run: PlannedRun, split: str) -> tuple[dict, dict[str, Task]]:
    """A run's predictions on `split` and its tasks by name."""
    pred = load_predictions(out / "runs" / run.name / f"predictions_{split}.npz")
    tasks = [task_from_dict(d) for d in json.loads((out / "runs" / run.name / "tasks.json").read_text())]
    return pred, {t.name: t for t in tasks}


def task_metrics(task: Task, pred: dict) -> dict:
    out, tgt, msk = pred["outputs"][task.name], pred["targets"][task.name], pred["masks"][task.name]
    m = msk.reshape(len(msk), -1)
    return task.spec.compute_metrics(task, out, tgt, m[:, 0] if m.shape[1] == 1 else m)


def clip_columns(out: Path, runs: list[PlannedRun], split: str) -> dict[str, int]:
    """Every test clip id of `runs` (their folds test different clips) -> its column, in sorted order."""
    ids = {i for r in runs for i in load_run(out, r, split)[0]["ids"]}
    return {c: j for j, c in enumerate(sorted(ids))}


def summarise_split(
    out: Path, groups: dict[str, list[PlannedRun]], split: str, *, folded: bool
) -> SplitTable:
    """The metrics of every run on `split`, and per group x task x metric its entry of the summary table."""
    table = SplitTable(split)
    # with folds the test clips differ between units (fold x seed), which are aligned on clip ids
    clip_ids = clip_columns(out, [r for rs in groups.values() for r in rs], split) if folded else None
    for group, runs in groups.items():
        loaded = [load_run(out, r, split) for r in runs]
        for r, (pred, tasks) in zip(runs, loaded):
            table.per_run[r.name] = {n: task_metrics(t, pred) for n, t in tasks.items()}
        for name, task in loaded[0][1].items():
            per_seed = [table.per_run[r.name][name] for r in runs]
            for metric in per_seed[0]:
                values = [m[metric] for m in per_seed if metric in m]
                entry = {
                    "run": group,
                    "task": name,
                    "role": task.role,
                    "metric": metric,
                    "split": split,
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "n_seeds": len(values),
                }
                if folded:
                    entry.update(fold_stats(runs, per_seed, metric))
                interval, resample = metric_interval(metric, task, loaded, values, clip_ids)
                entry.update(interval)
                if resample is not None:
                    table.resamples[(group, name)] = resample
                table.entries.append(entry)
    return table
