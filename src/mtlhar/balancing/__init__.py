"""Task balancing: how several task losses become one update.

Every method is one small class behind one protocol, selected by name (`BALANCERS`, `build_balancer`):

- Loss level (`needs_gradients = False`): `combine(losses, present, step) -> (total, weights)`; the
  trainer adds the cross-task terms and runs one backward.
- Gradient level (`needs_gradients = True`): `backward(losses, present, *, step, extra, shared,
  shared_params, scale) -> weights` runs the whole backward of a micro-batch; `scale(x)` (GradScaler and
  the accumulation division) is applied to whatever is backpropagated; `extra` (cross-task terms) is
  added with weight 1. Gradient methods take `mode: representation` (default) or `parameters`, and keep
  their latest `diagnostics` (gradient cosines, magnitude similarity, condition number) in
  `last_diagnostics` every `diagnostics_every` steps.
- Both: `state_dict()` / `load_state_dict()` (saved in checkpoints: a resumed run is bitwise equal to an
  unbroken one), `parameters()` (learnable weights; the trainer optimises them), weights as {task: float}.

Missing labels: a task absent from a batch is left out of that step (weight 0, still in the graph), the
remaining weights are renormalised to the same total, and a method's statistics update only from steps
where the task was labelled.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

from ..errors import ConfigError
from .base import Balancer, EqualWeights, StaticWeights
from .diagnostics import diagnostics
from .gradient import IMTLG, MGDA, AlignedMTL, CAGrad, GradientBalancer, GradNorm, NashMTL, PCGrad, UPGrad
from .weighting import FAMO, DynamicWeightAverage, RandomLossWeighting, UncertaintyWeighting

BALANCERS = {
    "equal": (EqualWeights, "equal weights (renormalised over the tasks labelled in a batch)"),
    "static": (StaticWeights, "fixed lambda per task (task `weight` or balancer.args.weights)"),
    "uncertainty": (UncertaintyWeighting, "Kendall et al. 2018: learnable log-variances (init)"),
    "dwa": (DynamicWeightAverage, "dynamic weight average, Liu et al. 2019 (temperature, period)"),
    "rlw": (RandomLossWeighting, "random loss weighting, softmax of normal draws (seed)"),
    "famo": (FAMO, "fast adaptive multitask optimisation, Liu et al. 2023 (lr, gamma)"),
    "gradnorm": (GradNorm, "GradNorm on the last shared layer, Chen et al. 2018 (alpha, lr, update_every)"),
    "pcgrad": (PCGrad, "projecting conflicting gradients, Yu et al. 2020 (mode, seed)"),
    "cagrad": (CAGrad, "conflict-averse gradient descent, Liu et al. 2021 (mode, c)"),
    "mgda": (MGDA, "multiple-gradient descent, min-norm, Sener & Koltun 2018 (mode)"),
    "nash_mtl": (NashMTL, "Nash bargaining, Navon et al. 2022 (mode, iters)"),
    "aligned_mtl": (AlignedMTL, "aligned principal components, Senushkin et al. 2023 (mode, scale_mode)"),
    "imtl_g": (IMTLG, "impartial MTL, gradient part, Liu et al. 2021 (mode)"),
    "upgrad": (UPGrad, "unconflicting projection of gradients, Quinton & Rey 2024 (mode)"),
}
# every gradient method (pcgrad ... upgrad) also takes update_every (solve every k steps, reuse between)
# and diagnostics_every

__all__ = [
    "BALANCERS",
    "Balancer",
    "GradientBalancer",
    "build_balancer",
    "diagnostics",
    *(cls.__name__ for cls, _ in BALANCERS.values()),
]


def _allowed_args(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in names:
                names.append(p.name)
    return names


def build_balancer(
    name: str, tasks: Sequence[str], weights: Mapping[str, float], args: Mapping | None = None
) -> Balancer:
    """The balancer called `name` (a key of `BALANCERS`) for `tasks`, configured by `args`.

    >>> build_balancer("dwa", ["a", "b"], {}, {"temperature": 2.0}).temperature
    2.0
    """
    if name not in BALANCERS:
        raise ConfigError(f"balancer.name: {name!r} is not a balancer; choose from {sorted(BALANCERS)}")
    cls = BALANCERS[name][0]
    args = dict(args or {})
    if cls is EqualWeights:
        if args:
            raise ConfigError(f"balancer.args: 'equal' takes no arguments, got {sorted(args)}")
        return cls(tasks)
    if cls is not StaticWeights:
        allowed = _allowed_args(cls)
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            raise ConfigError(f"balancer.args: unknown keys {unknown} for {name!r} (allowed: {allowed})")
    if cls is StaticWeights:  # balancer.args.weights overrides the tasks' own `weight` fields
        return cls(tasks, weights, override=args.pop("weights", None), **args)
    return cls(tasks, weights, **args)
