"""Gradient balancers: task weights from the task gradients (PCGrad, CAGrad, MGDA, Nash-MTL, Aligned-MTL,
IMTL-G, UPGrad) and GradNorm.

Modes. `representation` (default): one `autograd.grad` per labelled task w.r.t. the shared tensor (through
the heads only), a K x K Gramian, weights from the method's solver, then the update. Every method here
combines gradients linearly (d = sum_t w_t g_t), so the update is d into the shared tensor (hence the
encoder) and w_t grad L_t into head t. Two ways to deliver it:
- given the model's parameters (`params=`, single process): each task's `autograd.grad` also returns its
  gradients on the parameters downstream of the shared tensor (its head, and encoder layers between the
  shared tap and the head), kept and summed with the weights; then one backward from the shared tensor
  alone (`shared.backward(d)`, with `extra` in the same pass). The heads are traversed once, as in equal
  weighting: what matters when a head is a dense decoder.
- otherwise (and always under DDP, whose reducer must see every gradient arrive through autograd): ONE
  backward of `scale(sum_t w_t L_t + extra)`, which delivers the same gradients but traverses the heads a
  second time.
`parameters` (exact, costly): the per-task gradients are taken on the shared parameters (K extra backward
passes through the encoder), then the single backward.

Scale: weights are expressed like equal weighting's (summing to about K when gradients agree), so a
learning rate tuned for equal weights stays sensible. Under DDP the Gramian is averaged over ranks so
that every rank uses the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .. import distributed
from ..errors import ConfigError
from . import aggregators
from .base import Balancer, distributed_mean, presence_mask, spread
from .diagnostics import gramian_diagnostics

MODES = ("representation", "parameters")


def _identity(x: Tensor) -> Tensor:
    return x


def task_gradients(
    losses: Sequence[Tensor],
    wrt: Sequence[Tensor],
    scale: Callable[[Tensor], Tensor] = _identity,
    keep: Sequence[Tensor] = (),
) -> Tensor | tuple[Tensor, list[tuple[Tensor | None, ...]]]:
    """J [K, D]: row t is d losses[t] / d wrt (flattened, float32, in unscaled units).

    The losses are scaled before differentiation (so fp16 gradients do not underflow) and the rows are
    divided by the same factor afterwards. With `keep`, the same calls also differentiate w.r.t. those
    tensors and return (J, [per task: their gradients, scaled, None where unused]).
    """
    factor = float(scale(torch.ones((), device=wrt[0].device)))
    rows, kept = [], []
    for loss in losses:
        grads = torch.autograd.grad(scale(loss), [*wrt, *keep], retain_graph=True, allow_unused=True)
        flat = [
            (torch.zeros(x.numel(), device=x.device) if g is None else g.float().flatten())
            for g, x in zip(grads, wrt)
        ]
        rows.append(torch.cat(flat) / factor)
        kept.append(grads[len(wrt) :])
    return (torch.stack(rows), kept) if keep else torch.stack(rows)


def params_upstream_of(x: Tensor) -> set[int]:
    """ids of the leaf tensors (parameters) `x` was computed from: a walk of its autograd graph (no
    arithmetic; a few hundred nodes for a video CNN)."""
    seen, out, stack = set(), set(), [x.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if variable is not None:
            out.add(id(variable))
        stack.extend(n for n, _ in node.next_functions)
    return out


def _check_update_every(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"balancer.args.update_every: an integer >= 1, got {k!r}")
    return k


class GradientBalancer(Balancer):
    """Weights from the Gramian of the task gradients; subclasses implement `solve(gramian)`."""

    needs_gradients = True
    mean_scaled = True  # the method's own weights sum to ~1; multiplied by K to match equal weighting

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        *,
        mode: str = "representation",
        diagnostics_every: int = 50,
        update_every: int = 1,
    ):
        super().__init__(tasks, None)
        if mode not in MODES:
            raise ConfigError(f"balancer.args.mode: {mode!r} is not a mode; choose from {list(MODES)}")
        self.mode, self.diagnostics_every = mode, int(diagnostics_every)
        # the weights are solved every `update_every` optimiser steps and reused in between, where no task
        # gradient is computed at all (those steps cost what equal weighting costs)
        self.update_every = _check_update_every(update_every)
        self.cached = torch.ones(len(self.tasks), dtype=torch.float64)
        self.cached_total = float(len(self.tasks))
        self.last_diagnostics = None
        self._downstream: list[Tensor] = []  # this step's parameters below the shared tensor (see backward)
        self._kept = None  # this step's per-task gradients of those parameters

    def solve(self, gramian: Tensor) -> Tensor:
        raise NotImplementedError

    def due(self, step: int) -> bool:
        """Whether this step needs the task gradients (every `update_every`-th step)."""
        return step % self.update_every == 0

    def combine(self, losses, present, step):
        raise ConfigError(
            f"{type(self).__name__} is a gradient balancer: the trainer calls its backward(), not combine()"
        )

    def gramian(self, losses, active, shared, shared_params, scale, downstream=()) -> Tensor:
        """The K x K Gramian of the labelled tasks' gradients. In representation mode with `downstream`
        parameters, their per-task gradients are kept in `self._kept` for `_deliver`."""
        self._kept = None
        if self.mode == "representation":
            if shared is None:
                raise ValueError("representation mode needs the shared tensor (`shared=`)")
            wrt = [shared]
        else:
            wrt = [p for p in shared_params if p.requires_grad]
        if self.mode == "representation" and downstream:
            j, kept = task_gradients([losses[t] for t in active], wrt, scale, keep=downstream)
            self._kept = (j, kept, list(downstream))
        else:
            j = task_gradients([losses[t] for t in active], wrt, scale)
        return distributed_mean(j @ j.T).double().cpu()

    def _deliver(self, w: Tensor, active, losses, shared, extra, scale) -> None:
        """The update from the kept per-task gradients: w_t * (scaled) grad into each downstream
        parameter, and d = J^T w (scaled) into the shared tensor in one backward that also carries `extra`
        and the (zero-weighted) losses of unlabelled tasks, so their heads get the zero gradients a summed
        backward would give them."""
        j, kept, downstream = self._kept
        self._kept = None
        idx = {t: i for i, t in enumerate(self.tasks)}
        wa = torch.tensor([float(w[idx[t]]) for t in active], dtype=torch.float32, device=j.device)
        factor = float(scale(torch.ones((), device=j.device)))
        for k, p in enumerate(downstream):
            total = None
            for a, grads in enumerate(kept):
                g = grads[k]
                if g is not None:
                    total = g * wa[a].to(g.dtype) if total is None else total + g * wa[a].to(g.dtype)
            if total is not None:
                p.grad = total if p.grad is None else p.grad + total
        d = (wa @ j) * factor
        rest = extra
        for t in self.tasks:
            if t not in active and losses[t].requires_grad:
                rest = losses[t] * 0.0 if rest is None else rest + losses[t] * 0.0
        tensors, grads = [shared], [d.view_as(shared).to(shared.dtype)]
        if rest is not None:
            tensors.append(scale(rest))
            grads.append(None)
        torch.autograd.backward(tensors, grads)

    def active_weights(self, gramian: Tensor, n_tasks: int) -> Tensor:
        """The method's weights for the labelled tasks, on equal weighting's scale (sum ~ K)."""
        if not bool(torch.isfinite(gramian).all()):
            # fp16 overflow: GradScaler skips this step anyway; keep the weights finite
            return torch.ones(len(gramian), dtype=torch.float64)
        w = self.solve(gramian).double()
        return w * (n_tasks if self.mean_scaled else n_tasks / len(gramian))

    def backward(
        self,
        losses: Mapping[str, Tensor],
        present: Mapping[str, bool],
        *,
        step: int,
        extra: Tensor | None = None,
        shared: Tensor | None = None,
        shared_params: Sequence[Tensor] = (),
        scale: Callable[[Tensor], Tensor] = _identity,
        params: Sequence[Tensor] = (),
    ) -> dict[str, float]:
        """Weights from the labelled tasks' gradients, then the update (see the module's docstring):
        `params` (all the model's trainable parameters) enables the single-traversal delivery."""
        mask = presence_mask(self.tasks, present)
        active = [t for t, m in zip(self.tasks, mask.tolist()) if m]
        w = torch.zeros(len(self.tasks), dtype=torch.float64)
        self._downstream, self._kept = [], None
        deliver = params and self.mode == "representation" and shared is not None and not distributed.active()
        if deliver and active and self.due(step):  # only steps that take task gradients need them
            upstream = params_upstream_of(shared)
            self._downstream = [p for p in params if p.requires_grad and id(p) not in upstream]
        if active:
            w = self.step_weights(losses, active, mask, step, shared, shared_params, scale)
        if self._kept is not None:
            self._deliver(w, active, losses, shared, extra, scale)
            return dict(zip(self.tasks, w.tolist()))
        total = sum(losses[t] * float(w[i]) for i, t in enumerate(self.tasks))
        if extra is not None:
            total = total + extra
        scale(total).backward()
        return dict(zip(self.tasks, w.tolist()))

    def step_weights(self, losses, active, mask, step, shared, shared_params, scale) -> Tensor:
        if not self.due(step):  # reuse the last solved weights, renormalised over the labelled tasks
            return spread(self.cached, mask, self.cached_total)
        g = self.gramian(losses, active, shared, shared_params, scale, self._downstream)
        if self.diagnostics_every and step % self.diagnostics_every == 0:
            self.last_diagnostics = {"step": step, **gramian_diagnostics(g, active)}
        w = torch.zeros(len(self.tasks), dtype=torch.float64)
        w[mask] = self.active_weights(g, len(self.tasks))
        self.cached = torch.where(mask, w, self.cached)
        self.cached_total = float(w.sum())
        return w

    def state_dict(self) -> dict:
        return {"cached": self.cached.clone(), "cached_total": self.cached_total}

    def load_state_dict(self, state: dict) -> None:
        if "cached" in state:  # absent in checkpoints written before update_every was general
            self.cached, self.cached_total = state["cached"].clone(), float(state["cached_total"])


class MGDA(GradientBalancer):
    """MGDA (Sener & Koltun 2018): the min-norm convex combination; no task's loss rises to first order."""

    def __init__(self, tasks, weights=None, *, epsilon: float = 1e-5, max_iters: int = 250, **kw):
        super().__init__(tasks, weights, **kw)
        self.epsilon, self.max_iters = float(epsilon), int(max_iters)

    def solve(self, gramian):
        return aggregators.mgda(gramian, epsilon=self.epsilon, max_iters=self.max_iters)


class IMTLG(GradientBalancer):
    """IMTL-G (Liu et al. 2021): the update has equal projections on every task's unit gradient."""

    def solve(self, gramian):
        return aggregators.imtl_g(gramian)


class AlignedMTL(GradientBalancer):
    """Aligned-MTL (Senushkin et al. 2023): align the gradient matrix's principal components."""

    def __init__(self, tasks, weights=None, *, scale_mode: str = "min", **kw):
        super().__init__(tasks, weights, **kw)
        if scale_mode not in ("min", "median", "rmse"):
            raise ConfigError(f"balancer.args.scale_mode: {scale_mode!r}; choose from min, median, rmse")
        self.scale_mode = scale_mode

    def solve(self, gramian):
        return aggregators.aligned_mtl(gramian, scale_mode=self.scale_mode)


class UPGrad(GradientBalancer):
    """UPGrad (Quinton & Rey 2024): average of each gradient projected onto the dual cone of all of them."""

    def solve(self, gramian):
        return aggregators.upgrad(gramian)


class CAGrad(GradientBalancer):
    """CAGrad (Liu et al. 2021): best worst-task improvement within radius c ||g0|| of the mean gradient."""

    def __init__(self, tasks, weights=None, *, c: float = 0.5, rescale: int = 1, **kw):
        super().__init__(tasks, weights, **kw)
        if not 0 <= c < 1 or rescale not in (0, 1, 2):
            # c < 1 is the paper's range (it converges to a stationary point of the mean loss); with c >= 1
            # the ball contains 0 and, when 0 is in the hull of the task gradients, the dual is degenerate.
            raise ConfigError(
                f"balancer.args: CAGrad needs 0 <= c < 1 and rescale in 0, 1, 2; got c={c}, rescale={rescale}"
            )
        self.c, self.rescale = float(c), int(rescale)

    def solve(self, gramian):
        return aggregators.cagrad(gramian, c=self.c, rescale=self.rescale)


class PCGrad(GradientBalancer):
    """PCGrad (Yu et al. 2020): project away conflicting components, in a random order (seeded)."""

    mean_scaled = False

    def __init__(self, tasks, weights=None, *, seed: int = 0, **kw):
        super().__init__(tasks, weights, **kw)
        self.generator = torch.Generator().manual_seed(int(seed))

    def solve(self, gramian):
        return aggregators.pcgrad(gramian, generator=self.generator)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


class NashMTL(GradientBalancer):
    """Nash-MTL (Navon et al. 2022): the Nash bargaining solution, G alpha = 1 / alpha. With
    `update_every` (any gradient method takes it) the weights are solved every k steps, as the paper does."""

    mean_scaled = False

    def __init__(self, tasks, weights=None, *, iters: int = 50, **kw):
        super().__init__(tasks, weights, **kw)
        self.iters = int(iters)

    def solve(self, gramian):
        return aggregators.nash_mtl(gramian, iters=self.iters)


class GradNorm(Balancer):
    """GradNorm (Chen et al. 2018) on the last shared layer (the last shared weight with >= 2 dims).

    Weights w (sum K) move by plain gradient steps of size `lr` on sum_t |w_t n_t - mean(w n) r_t^alpha|,
    n_t = ||d L_t / d W||, r_t = (L_t / L_t(0)) normalised over the labelled tasks; the target is held
    constant as in the paper. L_t(0) is the loss at the first step where task t was labelled. The update
    is accumulated over an optimiser step's micro-batches and applied when the next step begins.

    Cost: the norms take one gradient of the last shared layer per labelled task (K weight gradients of
    that layer on top of the summed backward). With `update_every: k` they are taken (and the weights
    moved) every k optimiser steps only; the steps between cost what static weights cost.
    """

    needs_gradients = True

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        update_every: int = 1,
    ):
        super().__init__(tasks, None)
        k = len(self.tasks)
        self.alpha, self.lr = float(alpha), float(lr)
        self.update_every = _check_update_every(update_every)
        self.w = torch.ones(k, dtype=torch.float64)
        self.initial = torch.full((k,), torch.nan, dtype=torch.float64)
        self.pending = torch.zeros(k, dtype=torch.float64)
        self.pending_count = torch.zeros(k, dtype=torch.float64)
        self.step_index: int | None = None

    def _roll(self, step: int) -> None:
        if self.step_index is not None and step != self.step_index and bool((self.pending_count > 0).any()):
            grad = self.pending / self.pending_count.clamp_min(1)
            w = (self.w - self.lr * grad).clamp_min(1e-4)
            self.w = w * (len(self.tasks) / w.sum())  # renormalise to sum K, as the paper
            self.pending.zero_()
            self.pending_count.zero_()
        self.step_index = step

    def combine(self, losses, present, step):
        raise ConfigError("GradNorm is a gradient balancer: the trainer calls its backward(), not combine()")

    def backward(
        self, losses, present, *, step, extra=None, shared=None, shared_params=(), scale=_identity, params=()
    ):
        self._roll(step)
        mask = presence_mask(self.tasks, present)
        active = [t for t, m in zip(self.tasks, mask.tolist()) if m]
        weights = spread(self.w, mask)
        if active and step % self.update_every == 0:
            layer = [p for p in shared_params if p.requires_grad]
            layer = [p for p in layer if p.dim() >= 2][-1:] or layer[-1:]
            if not layer:
                raise ValueError("GradNorm needs the shared parameters (`shared_params=`)")
            j = task_gradients([losses[t] for t in active], layer, scale)
            norms = distributed_mean(j.norm(dim=1)).double().cpu()
            loss = distributed_mean(torch.stack([losses[t].detach().float() for t in active])).double().cpu()
            self.initial[mask] = torch.where(torch.isnan(self.initial[mask]), loss, self.initial[mask])
            ratio = loss / self.initial[mask].clamp_min(1e-12)
            ratio = ratio / ratio.mean()
            g = weights[mask] * norms
            target = g.mean() * ratio**self.alpha
            self.pending[mask] += torch.sign(g - target) * norms
            self.pending_count[mask] += 1
        total = sum(losses[t] * float(weights[i]) for i, t in enumerate(self.tasks))
        if extra is not None:
            total = total + extra
        scale(total).backward()
        return dict(zip(self.tasks, weights.tolist()))

    def state_dict(self) -> dict:
        return {n: getattr(self, n).clone() for n in ("w", "initial", "pending", "pending_count")} | {
            "step_index": self.step_index
        }

    def load_state_dict(self, state: dict) -> None:
        for n in ("w", "initial", "pending", "pending_count"):
            setattr(self, n, state[n].clone())
        self.step_index = state["step_index"]
