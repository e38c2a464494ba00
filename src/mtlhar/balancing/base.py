"""The balancer base class and the helpers every method shares (presence masks, renormalisation, DDP means)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError


def presence_mask(tasks: Sequence[str], present: Mapping[str, bool]) -> Tensor:
    """bool [K]: which tasks have at least one label in this batch."""
    return torch.tensor([bool(present.get(t, False)) for t in tasks])


def spread(raw: Tensor, mask: Tensor, total: float | None = None) -> Tensor:
    """Zero the absent tasks and rescale the present ones to sum to `total` (default K, like equal weights)."""
    total = float(len(raw)) if total is None else total
    w = torch.where(mask.to(raw.device), raw, torch.zeros_like(raw))
    s = w.sum()
    return w * (total / s) if float(s) > 0 else torch.zeros_like(raw)


def distributed_mean(x: Tensor) -> Tensor:
    """Mean over DDP ranks (identity when not distributed): every rank must pick the same weights."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        x = x.clone()
        torch.distributed.all_reduce(x)
        x /= torch.distributed.get_world_size()
    return x


class Balancer:
    """Loss-level balancer: weights per task, combined into one scalar for one backward pass.

    Subclasses override `weights` (or `combine`), and `state_dict`/`load_state_dict` when they keep
    statistics. Learnable weights are returned by `parameters()`; the trainer optimises them.
    """

    needs_gradients = False
    last_diagnostics: dict[str, float] | None = None

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ConfigError("balancer: there are no tasks to balance; list at least one under `tasks`")
        self.base = {t: float((weights or {}).get(t, 1.0)) for t in self.tasks}

    def parameters(self) -> list[Tensor]:
        """Learnable balancer tensors (the trainer adds them to the optimiser without weight decay)."""
        return []

    def to(self, device: torch.device | str) -> Balancer:
        """Move learnable tensors in place, so that the optimiser keeps referring to the same objects."""
        for p in self.parameters():
            p.data = p.data.to(device)
        return self

    def weights(self, present: Mapping[str, bool], step: int) -> dict[str, float]:
        raw = torch.tensor([self.base[t] for t in self.tasks], dtype=torch.float64)
        w = spread(raw, presence_mask(self.tasks, present), float(raw.sum()))
        return dict(zip(self.tasks, w.tolist()))

    def combine(
        self, losses: Mapping[str, Tensor], present: Mapping[str, bool], step: int
    ) -> tuple[Tensor, dict[str, float]]:
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

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        *,
        override: Mapping[str, float] | None = None,
        **args,
    ):
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
