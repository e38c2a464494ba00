"""Task kinds: the registry `KINDS` ({name: kind}), one row per kind module of this package.

A new kind is a subclass of `TaskKind` (`mtlhar.kinds.base`: every hook, with its default) added with
`register(MyKind())`; a task config then names it (`kind: my_kind`). Nothing else in the package changes:
the dataset, model, trainer, evaluation, statistics, report and transfer ask the task's kind.

Example:
    >>> from mtlhar.kinds import KINDS
    >>> KINDS["classification"].default_main, KINDS["regression"].higher_is_better("mae")
    ('top1', False)
"""

from __future__ import annotations

from .base import TaskKind, TaskView, check_kind
from .caption import CaptionKind
from .classification import Classification
from .multilabel import MultiLabel
from .regression import Regression

#: name -> kind; one row per kind shipped with the package (`register` adds others)
KINDS: dict[str, TaskKind] = {
    k.name: k
    for k in (
        Classification(),
        MultiLabel(),
        Regression(),
        CaptionKind(),
    )
}


def register(kind: TaskKind, *, replace: bool = False) -> TaskKind:
    """Add `kind` to `KINDS` after checking it against the contract (`base.check_kind`: its defaults are
    among its choices, every metric has a direction, no metric name changes direction between kinds).
    A name already registered needs `replace=True`. Returns the kind."""
    check_kind(kind, list(KINDS.values()))
    if kind.name in KINDS and not replace and KINDS[kind.name] is not kind:
        raise ValueError(f"task kind {kind.name!r} is already registered (replace=True replaces it)")
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> TaskKind | None:
    """Remove a registered kind (tests that register their own); returns it, or None if absent."""
    return KINDS.pop(name, None)


def kind_names() -> list[str]:
    """The registered kinds' names, in registration order (config checks list them)."""
    return list(KINDS)


def metric_direction(metric: str) -> bool:
    """Whether higher is better for `metric`, by name over every registered kind (True when no kind
    declares it); `register` keeps one direction per name."""
    for kind in KINDS.values():
        if metric in kind.metric_directions:
            return kind.metric_directions[metric]
    return True


def kinds_with(flag: str) -> list[str]:
    """The registered kinds with a capability set, e.g. `kinds_with("transfers")` (for messages)."""
    return [name for name, kind in KINDS.items() if getattr(kind, flag, False)]


for _kind in KINDS.values():  # the package's own kinds keep the contract too
    check_kind(_kind, list(KINDS.values()))

__all__ = [
    "KINDS",
    "CaptionKind",
    "Classification",
    "MultiLabel",
    "Regression",
    "TaskKind",
    "TaskView",
    "kind_names",
    "kinds_with",
    "metric_direction",
    "register",
    "unregister",
]
