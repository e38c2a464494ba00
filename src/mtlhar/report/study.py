"""Reading a study directory: results.json, each run's tasks, training log, evaluations and predictions.

Everything the report draws comes through `StudyData`, so the plots and tables never parse files.
A run group named `stl_<task>` is a single-task baseline; every other group is a multi-task variant
(the naming `mtlhar.study.plan_runs` uses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..data.manifest import Manifest
from ..errors import DataError
from ..evaluate import load_predictions
from ..kinds import metric_direction
from ..tasks import Task, task_from_dict

STL_COLOUR = "#4C72B0"
MTL_COLOURS = ["#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974"]


@dataclass
class Curves:
    """One run's training log: per-task train losses and balancer weights, validation metrics."""

    train_steps: list[int] = field(default_factory=list)
    loss: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)  # the validation multi-task score (higher is better)


class StudyData:
    """A study directory as written by `mtlhar.study.run_study`."""

    def __init__(self, study_dir: str | Path):
        self.dir = Path(study_dir)
        path = self.dir / "results.json"
        if not path.is_file():
            raise DataError(
                f"{path}: no results.json (is {self.dir} a study directory written by `mtlhar study`?)"
            )
        try:
            self.results: dict = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        for key in ("study", "summary", "groups", "tasks"):
            if key not in self.results:
                raise DataError(f"{path}: key '{key}' is missing; re-run the study to rewrite it")
        self.groups: dict[str, list[str]] = self.results["groups"]
        self.splits: list[str] = list(
            self.results.get("settings", {}).get("test_splits")
            or dict.fromkeys(e["split"] for e in self.results["summary"])
        )
        self.task_cfgs: dict[str, dict] = {t["name"]: t for t in self.results["tasks"]}
        mtl = [g for g in self.groups if not is_stl(g)]
        self.colours = {g: STL_COLOUR for g in self.groups if is_stl(g)}
        self.colours.update({g: MTL_COLOURS[i % len(MTL_COLOURS)] for i, g in enumerate(mtl)})
        self._pred: dict[tuple[str, str], dict | None] = {}
        self._curves: dict[str, Curves] = {}
        self._configs: dict[str, dict] = {}

    # ---------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.results["study"]

    @property
    def first_split(self) -> str:
        return self.splits[0]

    @property
    def mtl_groups(self) -> list[str]:
        return [g for g in self.groups if not is_stl(g)]

    @property
    def stl_groups(self) -> list[str]:
        return [g for g in self.groups if is_stl(g)]

    def run_dir(self, run: str) -> Path:
        return self.dir / "runs" / run

    def main_metric(self, task: str) -> str:
        return self.task_cfgs.get(task, {}).get("main_metric", "top1")

    def role(self, task: str) -> str:
        return self.task_cfgs.get(task, {}).get("role", "primary")

    @property
    def primary_tasks(self) -> list[str]:
        return [t for t in self.task_cfgs if self.role(t) == "primary"]

    def stl_group_for(self, task: str) -> str | None:
        g = f"stl_{task}"
        return g if g in self.groups else None

    def groups_with_task(self, task: str) -> list[str]:
        """Groups whose runs train `task`: its single-task baseline first, then the multi-task variants."""
        present = {e["run"] for e in self.results["summary"] if e["task"] == task}
        return [g for g in self.groups if g in present]

    # ---------------------------------------------------------------------------------------------
    def entry(self, group: str, task: str, split: str, metric: str | None = None) -> dict | None:
        metric = metric or self.main_metric(task)
        for e in self.results["summary"]:
            if (e["run"], e["task"], e["split"], e["metric"]) == (group, task, split, metric):
                return e
        return None

    def test(self, group: str, task: str, split: str) -> dict | None:
        for t in self.results.get("tests", []):
            if (t["run"], t["task"], t["split"]) == (group, task, split):
                return t
        return None

    def tasks_of(self, run: str) -> dict[str, Task]:
        path = self.run_dir(run) / "tasks.json"
        if not path.is_file():
            return {}
        return {d["name"]: task_from_dict(d) for d in json.loads(path.read_text())}

    def predictions(self, run: str, split: str) -> dict | None:
        key = (run, split)
        if key not in self._pred:
            path = self.run_dir(run) / f"predictions_{split}.npz"
            self._pred[key] = load_predictions(path) if path.is_file() else None
        return self._pred[key]

    def evaluation(self, run: str, split: str) -> dict | None:
        path = self.run_dir(run) / f"eval_{split}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def curves(self, run: str) -> Curves:
        if run not in self._curves:
            self._curves[run] = read_curves(self.run_dir(run) / "metrics.jsonl")
        return self._curves[run]

    @property
    def n_seeds(self) -> int:
        """Seeds per run group (the most any group has; `settings.seeds` when no group lists runs)."""
        most = max((len(runs) for runs in self.groups.values()), default=0)
        return most or int(self.results.get("settings", {}).get("seeds") or 0)

    def run_config(self, run: str) -> dict:
        """The run's config.yaml as a plain mapping ({} when absent or unreadable)."""
        if run not in self._configs:
            import yaml

            path = self.run_dir(run) / "config.yaml"
            try:
                cfg = yaml.safe_load(path.read_text()) if path.is_file() else {}
            except yaml.YAMLError:
                cfg = {}
            self._configs[run] = cfg if isinstance(cfg, dict) else {}
        return self._configs[run]

    def input_sources(self, run: str) -> list[str]:
        """The source (video, sequence, pose_vector, ...) of each stream the run's encoder reads, from its
        config (`data.inputs`, else `data.stream`); [] when the run has no config."""
        from ..data.sources import LEGACY_STREAMS

        d = self.run_config(run).get("data") or {}
        if not d:
            return []
        streams = {**LEGACY_STREAMS, **(d.get("streams") or {})}
        out = []
        for name in d.get("inputs") or [d.get("stream") or "rgb"]:
            entry = streams.get(name, {})
            out.append(entry.get("source", name) if isinstance(entry, dict) else str(entry))
        return out

    def reads_video(self, run: str) -> bool:
        """Whether the run's encoder reads RGB video (first input stream from `video`): the gallery's frames
        and Grad-CAM need it. A run without a config is taken to read video (the default stream)."""
        sources = self.input_sources(run)
        return not sources or sources[0] == "video"

    def task_def(self, task: str) -> Task | None:
        """`task` as the first run that trains it defines it (classes, kind), or None."""
        for g in self.groups_with_task(task) or list(self.groups):
            for run in self.groups[g][:1]:
                t = self.tasks_of(run).get(task)
                if t is not None:
                    return t
        return None

    def chance(self, task: str, metric: str | None = None) -> float | None:
        """Chance level of `metric` (default the task's main metric): 1 / number of classes for top-1 (and
        mean class accuracy) of a single-label classification task, as uniform guessing scores; else None."""
        metric = metric or self.main_metric(task)
        if metric not in ("top1", "mean_class_acc"):
            return None
        t = self.task_def(task)
        if t is None or t.kind != "classification" or not t.classes or len(t.classes) < 2:
            return None
        return 1.0 / len(t.classes)

    def seed_of(self, run: str) -> int | None:
        prov = self.results.get("provenance", {}).get(run, {})
        return prov.get("seed")

    @cached_property
    def manifest(self) -> Manifest | None:
        """The study's manifest, or None when it has moved (sections that need it say so)."""
        path = self.results.get("dataset", {}).get("manifest")
        if not path or not Path(path).is_file():
            return None
        return Manifest.read(path)

    @property
    def manifest_path(self) -> str:
        return str(self.results.get("dataset", {}).get("manifest", "(not recorded)"))

    @cached_property
    def affinity(self) -> dict[str, dict]:
        """Affinity summaries by run group (`affinity_by_run`, or the single `affinity` of older results)."""
        by_run = self.results.get("affinity_by_run") or {}
        if by_run:
            return dict(by_run)
        single = self.results.get("affinity")
        return {"study": single} if single else {}


def is_stl(group: str) -> bool:
    return group.startswith("stl_")


def higher_is_better(metric: str) -> bool:
    """By name, as the registered task kinds declare it (True for a name none declares)."""
    return metric_direction(metric)


def read_curves(path: Path) -> Curves:
    c = Curves()
    if not path.is_file():
        return c
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: the rest of the log is still useful
        if rec.get("split") == "train":
            i = len(c.train_steps)
            c.train_steps.append(int(rec["step"]))
            for key, store in (("loss", c.loss), ("weights", c.weights)):
                for task, v in (rec.get(key) or {}).items():
                    store.setdefault(task, [np.nan] * i).append(float(v))
            for store in (c.loss, c.weights):
                for vals in store.values():
                    vals.extend([np.nan] * (i + 1 - len(vals)))
        elif rec.get("split") == "val":
            i = len(c.val_steps)
            c.val_steps.append(int(rec["step"]))
            score = rec.get("score")
            c.scores.append(float(score) if score is not None else np.nan)
            for task, ms in (rec.get("metrics") or {}).items():
                for metric, v in ms.items():
                    c.val.setdefault(task, {}).setdefault(metric, [np.nan] * i).append(float(v))
            for ms in c.val.values():
                for vals in ms.values():
                    vals.extend([np.nan] * (i + 1 - len(vals)))
    return c
