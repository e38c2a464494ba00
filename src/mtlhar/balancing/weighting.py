"""Loss weighting with one backward pass: uncertainty weighting, DWA, RLW and FAMO.

Conventions shared with `EqualWeights`: the weights of the tasks labelled in a batch sum to K (the number
of tasks), absent tasks get weight 0, and running statistics only change from steps where a task was
labelled. Statistics that need a whole optimiser step (DWA, FAMO) are accumulated over its micro-batches
and folded in when the next step begins, so checkpoints (taken between steps) hold everything a resumed
run needs. The task `weight` fields of the config are ignored by these methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Balancer, distributed_mean, presence_mask, spread


def _loss_vector(tasks: Sequence[str], losses: Mapping[str, Tensor]) -> Tensor:
    """Detached float64 CPU vector of the task losses (mean over DDP ranks)."""
    v = torch.stack([losses[t].detach().float() for t in tasks])
    return distributed_mean(v).double().cpu()


class _StepStatistics:
    """Per-task loss means over one optimiser step (or period), counting only labelled micro-batches."""

    def __init__(self, k: int):
        self.sum = torch.zeros(k, dtype=torch.float64)
        self.count = torch.zeros(k, dtype=torch.float64)

    def add(self, loss: Tensor, mask: Tensor) -> None:
        self.sum += torch.where(mask, loss, torch.zeros_like(loss))
        self.count += mask.double()

    def pop(self) -> Tensor:
        """The means (NaN where a task was never labelled), then reset."""
        mean = torch.where(self.count > 0, self.sum / self.count.clamp_min(1), torch.nan)
        self.sum.zero_()
        self.count.zero_()
        return mean

    def state_dict(self) -> dict:
        return {"sum": self.sum.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.sum, self.count = state["sum"].clone(), state["count"].clone()


class UncertaintyWeighting(Balancer):
    """Kendall et al. (2018): sum_t exp(-s_t) L_t + s_t with learnable log-variances s_t = log sigma_t^2.

    (Twice the paper's 1/(2 sigma^2) L + log sigma, so that s=0 starts at equal weights.) The s_t are
    `parameters()`; a task absent from a batch contributes nothing, so its s_t gets no gradient.
    """

    def __init__(
        self, tasks: Sequence[str], weights: Mapping[str, float] | None = None, *, init: float = 0.0
    ):
        super().__init__(tasks, None)
        self.log_vars = torch.full((len(self.tasks),), float(init), requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def combine(self, losses, present, step):
        mask = presence_mask(self.tasks, present)
        n = int(mask.sum())
        factor = len(self.tasks) / max(n, 1)
        total = torch.zeros((), device=self.log_vars.device)
        for i, t in enumerate(self.tasks):
            s = self.log_vars[i]
            # absent: keep the head in the graph without touching s_t (no gradient, no optimiser update)
            total = total + ((torch.exp(-s) * losses[t] + s) * factor if mask[i] else losses[t] * 0.0)
        w = torch.where(mask, torch.exp(-self.log_vars.detach().cpu()) * factor, 0.0)
        return total, dict(zip(self.tasks, w.tolist()))

    def state_dict(self) -> dict:
        return {"log_vars": self.log_vars.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])


class DynamicWeightAverage(Balancer):
    """DWA (Liu et al. 2019): w_t = K softmax(r_t / T), r_t = mean loss over the last period / the one before.

    `period` is in optimiser steps (the paper uses an epoch). A task weighs 1 (r=1) until it has been
    labelled in two periods; a period in which a task was never labelled leaves its history unchanged.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        *,
        temperature: float = 2.0,
        period: int = 1,
    ):
        super().__init__(tasks, None)
        if temperature <= 0 or period < 1:
            raise ConfigError(
                f"balancer.args: DWA needs temperature > 0 and period >= 1, got {temperature}, {period}"
            )
        self.temperature, self.period = float(temperature), int(period)
        k = len(self.tasks)
        self.history = torch.full((2, k), torch.nan, dtype=torch.float64)  # [older, newer] period means
        self.current = _StepStatistics(k)
        self.period_index: int | None = None

    def _roll(self, step: int) -> None:
        p = step // self.period
        if self.period_index is not None and p != self.period_index:
            mean = self.current.pop()
            seen = ~torch.isnan(mean)
            self.history[0] = torch.where(seen, self.history[1], self.history[0])
            self.history[1] = torch.where(seen, mean, self.history[1])
        self.period_index = p

    def ratios(self) -> Tensor:
        r = self.history[1] / self.history[0]
        return torch.where(torch.isfinite(r), r, torch.ones_like(r))

    def combine(self, losses, present, step):
        self._roll(step)
        mask = presence_mask(self.tasks, present)
        logits = self.ratios() / self.temperature
        w = spread(torch.exp(logits - logits.max()), mask)
        self.current.add(_loss_vector(self.tasks, losses), mask)
        total = sum(losses[t] * float(w[i]) for i, t in enumerate(self.tasks))
        return total, dict(zip(self.tasks, w.tolist()))

    def state_dict(self) -> dict:
        return {
            "history": self.history.clone(),
            "current": self.current.state_dict(),
            "period_index": self.period_index,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"].clone()
        self.current.load_state_dict(state["current"])
        self.period_index = state["period_index"]


class RandomLossWeighting(Balancer):
    """RLW (Lin et al. 2022): weights = softmax of standard normal samples, drawn once per optimiser step.

    The draws come from a seeded `torch.Generator` kept in the state, so a resumed run draws the same
    weights; K numbers are drawn every step whatever is labelled, so presence never shifts the stream.
    """

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None, *, seed: int = 0):
        super().__init__(tasks, None)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.drawn_step: int | None = None
        self.raw = torch.ones(len(self.tasks), dtype=torch.float64)

    def weights(self, present, step):
        if step != self.drawn_step:
            z = torch.randn(len(self.tasks), generator=self.generator, dtype=torch.float64)
            self.raw, self.drawn_step = torch.softmax(z, 0), step
        w = spread(self.raw, presence_mask(self.tasks, present))
        return dict(zip(self.tasks, w.tolist()))

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "drawn_step": self.drawn_step,
            "raw": self.raw.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.drawn_step, self.raw = state["drawn_step"], state["raw"].clone()


class FAMO(Balancer):
    """FAMO (Liu et al. 2023): minimise sum_t z_t log L_t / c with z = softmax(xi), c = sum_t z_t / L_t.

    The gradient is sum_t (z_t / (c L_t)) grad L_t (one backward). The logits xi follow Adam (lr, weight
    decay gamma) on the decrease of each log-loss between consecutive optimiser steps; the next step's
    batch stands in for the paper's second forward pass on the same batch (no extra forward). Adam
    moments and steps are per task, so xi_t only moves from steps where task t was labelled both times.
    Weights are scaled to sum to K like equal weighting.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        *,
        lr: float = 0.025,
        gamma: float = 0.01,
        eps: float = 1e-8,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        super().__init__(tasks, None)
        k = len(self.tasks)
        self.lr, self.gamma, self.eps, self.betas = float(lr), float(gamma), float(eps), tuple(betas)
        self.logits = torch.zeros(k, dtype=torch.float64)
        self.adam = {n: torch.zeros(k, dtype=torch.float64) for n in ("m", "v", "t")}
        self.previous = torch.full((k,), torch.nan, dtype=torch.float64)
        self.current = _StepStatistics(k)
        self.step_index: int | None = None

    def _roll(self, step: int) -> None:
        if self.step_index is not None and step != self.step_index:
            mean = self.current.pop()
            ok = ~torch.isnan(mean) & ~torch.isnan(self.previous)
            if bool(ok.any()):
                self._update_logits(self.previous.log() - mean.log(), ok)
            self.previous = torch.where(torch.isnan(mean), self.previous, mean)
        self.step_index = step

    def _update_logits(self, delta: Tensor, ok: Tensor) -> None:
        # d softmax(xi)/d xi^T delta, on the tasks seen in both steps; then Adam with L2 gamma (as the paper)
        z = torch.softmax(self.logits.masked_fill(~ok, -math.inf), 0)
        d = torch.where(ok, delta, 0.0)
        grad = z * (d - (z * d).sum()) + self.gamma * self.logits
        b1, b2 = self.betas
        m, v, t = self.adam["m"], self.adam["v"], self.adam["t"]
        m.copy_(torch.where(ok, b1 * m + (1 - b1) * grad, m))
        v.copy_(torch.where(ok, b2 * v + (1 - b2) * grad**2, v))
        t.add_(ok.double())
        mh, vh = m / (1 - b1 ** t.clamp_min(1)), v / (1 - b2 ** t.clamp_min(1))
        self.logits = torch.where(ok, self.logits - self.lr * mh / (vh.sqrt() + 1e-8), self.logits)

    def combine(self, losses, present, step):
        self._roll(step)
        mask = presence_mask(self.tasks, present)
        z = torch.softmax(self.logits.masked_fill(~mask, -math.inf), 0) if bool(mask.any()) else None
        loss_vec = _loss_vector(self.tasks, losses)
        self.current.add(loss_vec, mask)
        if z is None:
            return sum(losses[t] * 0.0 for t in self.tasks), {t: 0.0 for t in self.tasks}
        d = loss_vec.clamp_min(0) + self.eps
        c = float((torch.where(mask, z / d, 0.0)).sum())
        k = len(self.tasks)
        total = sum(
            (torch.log(losses[t].clamp_min(0) + self.eps) * float(z[i]) * k / c)
            if mask[i]
            else losses[t] * 0.0
            for i, t in enumerate(self.tasks)
        )
        w = torch.where(mask, z * k / (c * d), 0.0)
        return total, dict(zip(self.tasks, w.tolist()))

    def state_dict(self) -> dict:
        return {
            "logits": self.logits.clone(),
            "adam": {n: x.clone() for n, x in self.adam.items()},
            "previous": self.previous.clone(),
            "current": self.current.state_dict(),
            "step_index": self.step_index,
        }

    def load_state_dict(self, state: dict) -> None:
        self.logits = state["logits"].clone()
        self.adam = {n: x.clone() for n, x in state["adam"].items()}
        self.previous = state["previous"].clone()
        self.current.load_state_dict(state["current"])
        self.step_index = state["step_index"]
