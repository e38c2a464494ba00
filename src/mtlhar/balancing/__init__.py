"""Task balancing: how several task losses become one update.

Every method is one small class behind the `Balancer` protocol, selected by name (`BALANCERS`). Missing
labels: a task absent from a batch is left out of that step (weight 0, still in the graph) and the
remaining weights are renormalised to the same total, so the update's scale does not depend on which
tasks happened to be labelled. Gradient methods (representation and parameter modes) join this table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError


class Balancer:
    """Loss-level balancer: weights per task, combined into one scalar for one backward pass."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None):
        self.tasks = list(tasks)
        self.base = {t: float((weights or {}).get(t, 1.0)) for t in self.tasks}

    def weights(self, present: Mapping[str, bool], step: int) -> dict[str, float]:
        active = {t: self.base[t] for t in self.tasks if present.get(t, False)}
        total, active_total = sum(self.base.values()), sum(active.values())
        if active_total <= 0:
            return {t: 0.0 for t in self.tasks}
        scale = total / active_total
        return {t: active.get(t, 0.0) * scale for t in self.tasks}

    def combine(self, losses: Mapping[str, Tensor], present: Mapping[str, bool], step: int):
        """Return (total loss, weights used). Absent tasks keep a zero-weighted place in the graph."""
        w = self.weights(present, step)
        total = sum(losses[t] * w[t] for t in self.tasks)
        return total if isinstance(total, Tensor) else torch.zeros(()), w

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EqualWeights(Balancer):
    """Every task weight 1 (the task's `weight` in the config is ignored)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None):
        super().__init__(tasks, None)


class StaticWeights(Balancer):
    """Fixed lambda per task: the tasks' `weight` fields, or `balancer.args.weights` {task: lambda}."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None, **args):
        override = args.pop("weights", None)
        if args:
            raise ConfigError(f"balancer.args: unknown keys {sorted(args)} for 'static' (allowed: weights)")
        if override is not None:
            unknown = set(override) - set(tasks)
            if unknown:
                raise ConfigError(
                    f"balancer.args.weights: {sorted(unknown)} are not tasks; tasks are {list(tasks)}"
                )
            weights = {**dict(weights or {}), **override}
        super().__init__(tasks, weights)


BALANCERS = {
    "equal": (EqualWeights, "equal weights (renormalised over the tasks labelled in a batch)"),
    "static": (StaticWeights, "fixed lambda per task (task `weight` or balancer.args.weights)"),
}


def build_balancer(
    name: str, tasks: Sequence[str], weights: Mapping[str, float], args: Mapping | None = None
):
    if name not in BALANCERS:
        raise ConfigError(f"balancer.name: {name!r} is not a balancer; choose from {sorted(BALANCERS)}")
    cls = BALANCERS[name][0]
    if cls is EqualWeights:
        if args:
            raise ConfigError(f"balancer.args: 'equal' takes no arguments, got {sorted(args)}")
        return cls(tasks)
    return cls(tasks, weights, **dict(args or {}))
