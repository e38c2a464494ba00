"""A task is data, not a code path.

A `Task` names its label column, its kind, its loss and metrics (with direction), its role (primary tasks
count in the multi-task score; auxiliary tasks are reported but not counted), its weight, an optional
parent (hierarchy) and the encoder tap its head reads. The kind (`task.spec`, from `mtlhar.kinds.KINDS`)
supplies everything that differs between tasks: where the target comes from, the head, the loss, the
metrics and their directions, how the report shows an output (see `mtlhar.kinds.base.TaskKind`).

Kinds in the package: single-label classification, multi-label classification, regression, caption; a
new one is a `TaskKind` subclass given to `mtlhar.kinds.register`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, DataError
from .kinds import KINDS, TaskKind, kinds_with
from .kinds.caption import CaptionKind
from .kinds.classification import Classification
from .kinds.multilabel import MultiLabel
from .kinds.regression import Regression


@dataclass
class Task:
    """A resolved task: its config plus its label space (classes) once the data is known."""

    name: str
    kind: str
    column: str
    classes: list[str] | None = None
    num_outputs: int = 1
    loss: str = "ce"
    metrics: list[str] = field(default_factory=list)
    main_metric: str = "top1"
    role: str = "primary"
    weight: float = 1.0
    parent: str | None = None
    tap: str = "pooled"
    temporal: str = "mean"
    temporal_args: dict[str, Any] = field(default_factory=dict)
    hidden: int = 0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    separator: str = "|"
    args: dict[str, Any] = field(default_factory=dict)
    hierarchy: dict[str, Any] | None = (
        None  # on the finer task: {"parent": coarse task, "map": {fine: coarse}}
    )
    logit_adjust: float | None = None  # tau: the training loss sees logits + tau * log(prior)
    class_counts: list[int] | None = None  # per-class counts of the training split (saved with the run)

    @property
    def spec(self) -> TaskKind:
        return KINDS[self.kind]

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better(self.main_metric)

    @property
    def index(self) -> dict[str, int]:
        if self.classes is None:
            return {}
        cached = getattr(self, "_index", None)
        if cached is None:
            cached = {c: i for i, c in enumerate(self.classes)}
            object.__setattr__(self, "_index", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        """The config's fields (a `TaskConfig` has each of them), then what the data resolved."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _RESOLVED}
        out["num_outputs"] = self.num_outputs
        out["num_classes"] = len(self.classes) if self.classes is not None else None
        out["hierarchy"] = self.hierarchy
        out["class_counts"] = self.class_counts
        return out


_RESOLVED = ("num_outputs", "hierarchy", "class_counts")  # Task fields a TaskConfig does not have


def fit_class_counts(tasks: list[Task], labels: list[dict]) -> None:
    """Store on every task whose kind counts classes (`TaskKind.class_counts`: single-label classification)
    its per-class counts among `labels` (the encoded labels of the training split: {task: (target, mask)}
    per clip); unlabelled clips are not counted."""
    for t in tasks:
        counts = t.spec.class_counts(t, [lab[t.name] for lab in labels])
        if counts is not None:
            t.class_counts = counts


# Options every task kind takes: a negative control whose labels are permuted across the clips of each
# split (`mtlhar.data.dataset.ClipDataset`), with the permutation's seed; and the class-name pairs that
# trade places when a clip is flipped (`flip_swap`, read by the kind's `flip_permutation`).
COMMON_ARGS = {"shuffle_labels": False, "shuffle_seed": 0, "flip_swap": None}


def _check_choices(cfg, kind: TaskKind, classes: list[str] | None, where: str) -> tuple[str, list, list]:
    """(loss, label space, metrics) of a task config, each checked against what its kind offers."""
    loss = cfg.loss or kind.default_loss
    if loss not in kind.losses:
        raise ConfigError(
            f"config key '{where}.loss': {loss!r} is not a {kind.name} loss; choose from {kind.losses}"
        )
    resolved = cfg.classes or classes
    if kind.needs_classes:
        if not resolved:
            raise ConfigError(
                f"task '{cfg.name}': no classes given and none found in column '{cfg.column or cfg.name}'"
            )
        if cfg.num_classes is not None and cfg.num_classes != len(resolved):
            raise ConfigError(
                f"config key '{where}.num_classes': {cfg.num_classes} but the label space has {len(resolved)} classes"
            )
    metrics = list(cfg.metrics or kind.default_metrics)
    unknown = [m for m in metrics if m not in kind.default_metrics]
    if unknown:
        raise ConfigError(
            f"config key '{where}.metrics': {unknown} not available for {kind.name}; choose from {kind.default_metrics}"
        )
    return loss, resolved, metrics


def _check_args(cfg, kind: TaskKind, where: str) -> dict[str, Any]:
    """The kind's `args` defaults with the config's values, checked by the kind."""
    unknown_args = sorted(set(cfg.args) - set(kind.args) - set(COMMON_ARGS))
    if unknown_args:
        raise ConfigError(
            f"config key '{where}.args': {unknown_args} not options of a {kind.name} task; "
            f"allowed: {sorted(set(kind.args) | set(COMMON_ARGS))}"
        )
    args = {**kind.args, **{k: v for k, v in cfg.args.items() if k not in COMMON_ARGS or v}}
    kind.check_args(args, f"{where}.args")
    if cfg.logit_adjust is not None:
        if not kind.supports_logit_adjust:
            allowed = ", ".join(repr(k) for k in kinds_with("supports_logit_adjust"))
            raise ConfigError(
                f"config key '{where}.logit_adjust': only single-label classification tasks take it "
                f"(task '{cfg.name}' is {kind.name!r}); allowed kinds: {allowed}"
            )
        if not 0 <= cfg.logit_adjust < math.inf:
            raise ConfigError(
                f"config key '{where}.logit_adjust': got {cfg.logit_adjust!r}, allowed values are finite "
                "numbers >= 0 (tau; 1.0 is the usual choice)"
            )
    return args


def build_task(cfg, classes: list[str] | None = None, where: str = "tasks") -> Task:
    """Resolve a `mtlhar.config.TaskConfig` into a Task, given the label space found in the data (if the
    config has none)."""
    kind = KINDS.get(cfg.kind)
    if kind is None:
        raise ConfigError(
            f"config key '{where}.kind': {cfg.kind!r} is not a task kind; choose from {sorted(KINDS)}"
        )
    loss, resolved, metrics = _check_choices(cfg, kind, classes, where)
    args = _check_args(cfg, kind, where)
    main = cfg.main_metric or kind.default_main
    if main not in metrics:
        raise ConfigError(
            f"config key '{where}.main_metric': {main!r} must be one of the task's metrics {metrics}"
        )
    return Task(
        name=cfg.name,
        kind=kind.name,
        column=cfg.column or cfg.name,
        classes=list(resolved) if kind.needs_classes else None,
        num_outputs=cfg.num_classes or 1 if not kind.needs_classes else len(resolved),
        loss=loss,
        metrics=metrics,
        main_metric=main,
        role=cfg.role,
        weight=cfg.weight,
        parent=cfg.parent,
        tap=cfg.tap,
        temporal=cfg.temporal,
        temporal_args=dict(cfg.temporal_args),
        hidden=cfg.hidden,
        dropout=cfg.dropout,
        label_smoothing=cfg.label_smoothing,
        separator=cfg.separator,
        args=args,
        logit_adjust=cfg.logit_adjust,
    )


def task_from_dict(data: dict[str, Any]) -> Task:
    """Rebuild a Task saved with `Task.to_dict` (run directories store them)."""
    data = dict(data)
    data.pop("num_classes", None)
    classes = data.pop("classes", None)
    num_outputs = data.pop("num_outputs", None)
    task = Task(**{k: v for k, v in data.items() if k in Task.__dataclass_fields__}, classes=classes)
    task.num_outputs = num_outputs or (len(classes) if classes else 1)
    return task


# ------------------------------------------------------------------------------------------------------
# Hierarchies (coarse group -> fine action). A task declares `parent: OTHER`; the level with more classes
# is the finer one. The mapping fine class -> coarse class comes from (first found) the `args.hierarchy`
# CSV of either task, a `hierarchy.csv` beside the manifest, or the rows labelled at both levels; it must
# send every fine class to exactly one known coarse class, and labelled rows must agree with it.


def hierarchy_index(fine: Task, coarse: Task, mapping: dict[str, str], where: str = "hierarchy") -> list[int]:
    """`index[i]` = coarse index of fine class i; ConfigError naming the first unmapped / unknown class."""
    index = []
    for c in fine.classes or []:
        if c not in mapping:
            raise ConfigError(
                f"{where}: fine class {c!r} of task '{fine.name}' has no coarse class of task '{coarse.name}' "
                "(every fine class must map to exactly one coarse class)"
            )
        if mapping[c] not in coarse.index:
            raise ConfigError(
                f"{where}: fine class {c!r} maps to {mapping[c]!r}, which is not a class of task "
                f"'{coarse.name}' ({len(coarse.index)} classes)"
            )
        index.append(coarse.index[mapping[c]])
    return index


def read_hierarchy_csv(path, fine_col: str, coarse_col: str) -> dict[str, str]:
    """Read a mapping CSV with (at least) columns `fine_col` and `coarse_col` (e.g. `fine,coarse`)."""
    from pathlib import Path

    from .data.formats.table import read_csv  # the package's one checked CSV reader

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"hierarchy mapping file not found: {path}")
    table = read_csv(path)
    if fine_col not in table.columns or coarse_col not in table.columns:
        raise DataError(f"{path}: needs columns '{fine_col}' and '{coarse_col}'; it has {table.columns}")
    mapping: dict[str, str] = {}
    for line, row in table.dicts():
        f_, c_ = row[fine_col], row[coarse_col]
        if not f_:
            continue
        if mapping.setdefault(f_, c_) != c_:
            raise DataError(
                f"{path}: line {line}: fine class {f_!r} maps to {c_!r} here but to {mapping[f_]!r} on an "
                "earlier row (a fine class must have exactly one coarse class)"
            )
    return mapping


def mapping_from_manifest(manifest, fine: Task, coarse: Task, base: dict[str, str] | None = None) -> dict:
    """Fine -> coarse pairs seen in rows labelled at both levels; any disagreement is a DataError."""
    mapping = dict(base or {})
    given = base is not None
    for i, r in enumerate(manifest.rows):
        f_, c_ = r.get(fine.column, ""), r.get(coarse.column, "")
        if f_ and c_ and mapping.setdefault(f_, c_) != c_:
            src = "the hierarchy mapping" if given else "other rows"
            raise DataError(
                f"{manifest.where(i)}: fine class {f_!r} is labelled with coarse {c_!r} here but maps to "
                f"{mapping[f_]!r} in {src}: the label hierarchy is not consistent"
            )
    return mapping


def link_hierarchies(tasks: list[Task], manifest) -> None:
    """Resolve every declared `parent`: orient (finer task -> coarser task), validate the mapping and store it
    on the finer task as `task.hierarchy` (saved with the run, used by metrics and the consistency term)."""
    by_name = {t.name: t for t in tasks}
    for t in tasks:
        if not t.parent or t.parent not in by_name:
            continue
        other = by_name[t.parent]
        where = f"task '{t.name}' (parent {other.name!r})"
        if not (t.spec.supports_hierarchy and other.spec.supports_hierarchy):
            allowed = " or ".join(kinds_with("supports_hierarchy"))
            raise ConfigError(f"{where}: a hierarchy links two {allowed} tasks")
        fine, coarse = (t, other) if len(t.classes) >= len(other.classes) else (other, t)
        csv_path = fine.args.get("hierarchy") or coarse.args.get("hierarchy")
        beside = manifest.path.parent / "hierarchy.csv"
        base = None
        if csv_path:
            from pathlib import Path

            p = Path(csv_path)
            base = read_hierarchy_csv(
                p if p.is_absolute() else manifest.path.parent / p, fine.column, coarse.column
            )
        elif beside.is_file():
            import csv

            with beside.open(newline="") as f:
                cols = csv.DictReader(f).fieldnames or []
            if fine.column in cols and coarse.column in cols:
                base = read_hierarchy_csv(beside, fine.column, coarse.column)
        mapping = mapping_from_manifest(manifest, fine, coarse, base)
        hierarchy_index(fine, coarse, mapping, where)
        fine.hierarchy = {"parent": coarse.name, "map": {c: mapping[c] for c in fine.classes}}


__all__ = [
    "COMMON_ARGS",
    "KINDS",
    "CaptionKind",
    "Classification",
    "MultiLabel",
    "Regression",
    "Task",
    "TaskKind",
    "build_task",
    "fit_class_counts",
    "hierarchy_index",
    "link_hierarchies",
    "mapping_from_manifest",
    "read_hierarchy_csv",
    "task_from_dict",
]
