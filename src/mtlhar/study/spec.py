"""A study's spec (the YAML file), the checks of its `protocol` and `tune` grid, and its tasks' main metrics."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TaskConfig, from_dict, load_yaml
from ..errors import ConfigError
from ..tasks import KINDS


@dataclass
class StudySpec:
    name: str
    base: dict[str, Any]
    tasks: list[dict[str, Any]]
    variants: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "mtl"}])
    seeds: int = 3
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    quick: dict[str, Any] = field(default_factory=dict)
    stl: bool = True
    transfer: dict[str, Any] | None = None  # frozen-encoder probes on a held-out target (mtlhar.transfer)
    quick_seeds: int | None = None  # seeds with --quick (default: `seeds`)
    protocol: dict[str, Any] | None = None  # {kind: holdout | kfold | loso, k, group, val, seed, stratify}
    tune: dict[str, list] | None = None  # {dotted.config.key: [values]}: the same grid for every group
    reference: str | None = None  # a variant every other multi-task variant is also tested against


def load_study(path: str | Path) -> StudySpec:
    return from_dict(StudySpec, load_yaml(path))


def main_metric(task_cfg: dict[str, Any]) -> str:
    """The metric a study task (a `tasks` entry) is compared on: its `main_metric`, else its kind's."""
    return task_cfg.get("main_metric") or KINDS[task_cfg.get("kind", TaskConfig.kind)].default_main


PROTOCOL_KINDS = ("holdout", "kfold", "loso")
PROTOCOL_KEYS = {"kind", "k", "group", "val", "seed", "stratify"}


def check_protocol(spec: StudySpec) -> dict[str, Any] | None:
    """The study's split protocol with defaults filled in; None for the manifest's own splits (holdout)."""
    if spec.protocol is None:
        return None
    p = dict(spec.protocol)
    unknown = sorted(set(p) - PROTOCOL_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown config key 'protocol.{unknown[0]}'; allowed keys in protocol: {', '.join(sorted(PROTOCOL_KEYS))}"
        )
    kind = p.get("kind", "holdout")
    if kind not in PROTOCOL_KINDS:
        allowed = ", ".join(repr(k) for k in PROTOCOL_KINDS)
        raise ConfigError(f"config key 'protocol.kind': got {kind!r}, allowed values are {allowed}")
    if kind == "holdout":
        extra = sorted(set(p) - {"kind"})
        if extra:
            raise ConfigError(f"config key 'protocol.{extra[0]}': not used by protocol kind 'holdout'")
        return None
    k = p.get("k", 5)
    if kind == "kfold" and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        raise ConfigError(f"config key 'protocol.k': got {k!r}, expected an integer >= 2")
    if kind == "loso" and "k" in p:
        raise ConfigError("config key 'protocol.k': not used by protocol kind 'loso' (one fold per group)")
    val = p.get("val", 0.15)
    if isinstance(val, bool) or not isinstance(val, int | float) or not 0 < val < 1:
        raise ConfigError(f"config key 'protocol.val': got {val!r}, expected a fraction in (0, 1)")
    seed = p.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"config key 'protocol.seed': got {seed!r}, expected an integer")
    group = p.get("group", "group")
    if not isinstance(group, str) or not group:
        raise ConfigError(f"config key 'protocol.group': got {group!r}, expected a manifest column name")
    if list(spec.test_splits) != ["test"]:
        raise ConfigError(
            f"config key 'test_splits': got {spec.test_splits!r}; with protocol kind {kind!r} each fold defines "
            "the test split, allowed values are ['test']"
        )
    if spec.transfer:
        raise ConfigError(f"config key 'transfer': not available with protocol kind {kind!r}; use 'holdout'")
    out = {"kind": kind, "group": group, "val": float(val), "seed": seed, "stratify": p.get("stratify")}
    if kind == "kfold":
        out["k"] = k
    return out


def tuning_grid(spec: StudySpec) -> list[dict[str, Any]]:
    """The grid points of `tune` in order (the cartesian product of its lists); [{}] without tuning."""
    if not spec.tune:
        return [{}]
    if not isinstance(spec.tune, dict):
        raise ConfigError(
            f"study key 'tune': a mapping from config keys to lists of values, got {spec.tune!r}"
        )
    keys = list(spec.tune)
    for k in keys:
        values = spec.tune[k]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"study key 'tune.{k}': a non-empty list of values, got {values!r}")
        if k.split(".")[0] not in ("train", "model", "balancer", "data") or "." not in k:
            raise ConfigError(
                f"study key 'tune.{k}': a dotted run-config key under train, model, balancer or data "
                "(e.g. train.lr)"
            )
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.tune[k] for k in keys))]
