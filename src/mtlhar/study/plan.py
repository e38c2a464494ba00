"""The runs of a study: one group per single-task baseline and per variant, each trained per seed (fold,
grid point) with the same budget."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..config import RunConfig, from_dict, merge_dicts, set_key, validate
from ..errors import ConfigError
from .spec import StudySpec, tuning_grid


@dataclass
class PlannedRun:
    name: str
    group: str
    seed: int
    config: RunConfig
    fold: int | None = None  # with a k-fold / leave-one-subject-out protocol
    trial: int | None = None  # grid point of `tune`


def plan_runs(
    spec: StudySpec,
    *,
    seeds: int,
    quick: bool,
    manifest_path: str,
    folds: list[str] | None = None,
    root: str | None = None,
) -> list[PlannedRun]:
    """Every run of the study: per seed (and per fold manifest in `folds`, data read from `root`), one
    single-task run per primary task and every variant. Runs of a group are ordered (fold, seed), so the
    i-th runs of two groups are paired."""
    base = merge_dicts(spec.base, spec.quick) if quick else copy.deepcopy(spec.base)
    base.setdefault("data", {})["manifest"] = manifest_path
    base["data"].pop("synth", None)
    if root is not None:
        base["data"]["root"] = root
    groups = run_groups(spec)
    drop_parents_outside(groups)
    unbalance_without_task(groups, base.get("train") or {})
    variants = [g for g, _ in groups if not (spec.stl and g.startswith("stl_"))]
    if spec.reference is not None and spec.reference not in variants:
        raise ConfigError(f"study reference: {spec.reference!r} is not a variant; variants are {variants}")
    grid = tuning_grid(spec)
    plan = []
    for fold, fold_manifest in enumerate(folds) if folds else [(None, None)]:
        for seed in range(seeds):
            for group, extra in groups:
                for trial, point in enumerate(grid):
                    name = f"{group}_s{seed}" if fold is None else f"{group}_f{fold}_s{seed}"
                    if spec.tune:
                        name += f"_t{trial}"
                    cfg = merge_dicts(base, extra)
                    for key, value in point.items():
                        set_key(cfg, key, copy.deepcopy(value), where="study tune:")
                    cfg.setdefault("train", {})["seed"] = seed
                    cfg["name"] = name
                    if fold_manifest is not None:
                        cfg["data"]["manifest"] = fold_manifest
                    config = checked_run_config(cfg, name)
                    plan.append(PlannedRun(name, group, seed, config, fold, trial if spec.tune else None))
    return plan


def run_groups(spec: StudySpec) -> list[tuple[str, dict[str, Any]]]:
    """(group name, config overrides) per group: `stl_<task>` per primary task (with `stl`), then each
    variant with its tasks (per-variant task settings merged in) and its other keys."""
    by_name = {t["name"]: t for t in spec.tasks}
    primary = [t["name"] for t in spec.tasks if t.get("role", "primary") == "primary"]
    groups: list[tuple[str, dict]] = []
    if spec.stl:
        groups += [(f"stl_{t}", {"tasks": [by_name[t]]}) for t in primary]
    for i, v in enumerate(spec.variants):
        v = dict(v)
        name = v.pop("name", f"mtl_{i}")
        names = v.pop("tasks", None) or list(by_name)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"study variants.{i}.tasks: {unknown} are not tasks; tasks are {list(by_name)}")
        options = v.pop("task_options", None) or {}  # per-variant task settings, e.g. a long-tail loss
        if not isinstance(options, dict) or set(options) - set(names):
            raise ConfigError(
                f"study variants.{i}.task_options: a mapping from this variant's tasks {names} to task "
                f"settings (e.g. {{fine: {{loss: class_balanced}}}}); got {options!r}"
            )
        tasks = [merge_dicts(by_name[n], options.get(n) or {}) for n in names]
        groups.append((name, {"tasks": tasks, **v}))
    return groups


def drop_parents_outside(groups: list[tuple[str, dict]]) -> None:
    """A declared parent outside a group's task set (e.g. in an STL baseline) is dropped there."""
    for _, extra in groups:
        names = {t["name"] for t in extra["tasks"]}
        extra["tasks"] = [
            {k: v for k, v in t.items() if k != "parent"} if t.get("parent") not in (None, *names) else t
            for t in extra["tasks"]
        ]


def unbalance_without_task(groups: list[tuple[str, dict]], base_train: dict) -> None:
    """Balanced sampling by a task a group lacks (e.g. another STL baseline's) becomes random sampling."""
    for _, extra in groups:
        train = extra.get("train") or {}
        sampler = train.get("sampler", base_train.get("sampler"))
        task = train.get("balance_task", base_train.get("balance_task"))
        if sampler == "balanced" and task not in {t["name"] for t in extra["tasks"]}:
            extra["train"] = {**train, "sampler": "random", "balance_task": None}


def checked_run_config(cfg: dict, name: str) -> RunConfig:
    try:
        config = from_dict(RunConfig, cfg)
        validate(config)
    except ConfigError as e:
        raise ConfigError(f"study run {name}: {e}") from None
    return config


def runs_by_group(plan: list[PlannedRun]) -> dict[str, list[PlannedRun]]:
    """The plan's runs per group, in plan order (so the i-th runs of two groups are paired)."""
    groups: dict[str, list[PlannedRun]] = {}
    for r in plan:
        groups.setdefault(r.group, []).append(r)
    return groups
