"""Cross-task terms: losses over several heads' outputs, declared in `cross_terms:` and registered here.

A term is built from its config entry (`{kind: NAME, ...options}`), the run's tasks and its manifest by
the builder in `CROSS_TERMS`, and called as `term(head_outputs, batch, tasks) -> Tensor` each step; the
trainer adds `term.weight * term(...)` to the loss. Adding one is a class (in `objectives.py` or its own
module) and one row in `CROSS_TERMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError
from .objectives import HierarchyConsistency
from .tasks import Task, hierarchy_index, mapping_from_manifest


def hierarchy_consistency(spec: dict[str, Any], tasks: dict[str, Task], manifest, where: str):
    """`{kind: hierarchy_consistency, fine: TASK, coarse: TASK, weight: 0.1, divergence: kl | ce,
    mapping: {fine class: coarse class}}` (mapping default: the tasks' declared hierarchy, else the
    manifest's rows labelled at both levels)."""
    unknown = sorted(set(spec) - {"fine", "coarse", "weight", "divergence", "mapping"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {unknown}; allowed: coarse, divergence, fine, mapping, weight"
        )
    fine, coarse = tasks.get(spec.get("fine")), tasks.get(spec.get("coarse"))
    if fine is None or coarse is None:
        raise ConfigError(f"{where}: 'fine' and 'coarse' must name tasks; tasks are {list(tasks)}")
    mapping = (
        spec.get("mapping")
        or (fine.hierarchy or {}).get("map")
        or mapping_from_manifest(manifest, fine, coarse)
    )
    index = hierarchy_index(fine, coarse, mapping, where=where)
    divergence = spec.get("divergence", "kl")
    if divergence not in ("kl", "ce"):
        raise ConfigError(f"{where}.divergence: {divergence!r}; choose from ['ce', 'kl']")
    weight = spec.get("weight", 0.1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        raise ConfigError(f"{where}.weight: got {weight!r}, expected a number >= 0")
    return HierarchyConsistency(fine.name, coarse.name, index, float(weight), divergence=divergence)


#: kind -> (builder(spec, tasks by name, manifest, where), one line for `mtlhar info`)
CROSS_TERMS: dict[str, tuple[Callable[..., Any], str]] = {
    "hierarchy_consistency": (
        hierarchy_consistency,
        "KL between the fine head grouped by coarse class and the coarse head",
    ),
}


def build_cross_terms(specs: Sequence[dict], tasks: Sequence[Task], manifest) -> list:
    """The run's cross-task terms from its `cross_terms` config entries."""
    by_name = {t.name: t for t in tasks}
    terms = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in CROSS_TERMS:
            raise ConfigError(
                f"cross_terms.{i}.kind: {kind!r} is not a cross-task term; choose from {sorted(CROSS_TERMS)}"
            )
        terms.append(CROSS_TERMS[kind][0](spec, by_name, manifest, f"cross_terms.{i}"))
    return terms
