"""A task is data, not a code path.

A `Task` names its label column, its kind, its loss and metrics (with direction), its role (primary tasks
count in the multi-task score; auxiliary tasks are reported but not counted), its weight, an optional
parent (hierarchy) and the encoder tap its head reads. The kind supplies everything that differs between
tasks: how a manifest cell becomes a target and a mask, the head's output size, the loss and the metrics.

Kinds here: single-label classification, multi-label classification, regression. Later kinds (caption,
dense decoding, pose, contrastive, distillation) plug in as further `TaskKind` classes in `KINDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import metrics as M
from .config import TaskConfig
from .errors import ConfigError, DataError
from .objectives import (
    class_balanced_weights,
    logit_adjustment,
    masked_bce,
    masked_cross_entropy,
    masked_regression,
)


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
        return M.METRIC_DIRECTIONS.get(self.main_metric, True)

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
        keys = TaskConfig.__dataclass_fields__.keys()
        out = {k: getattr(self, k) for k in keys if hasattr(self, k)}
        out["classes"] = self.classes
        out["num_outputs"] = self.num_outputs
        out["num_classes"] = len(self.classes) if self.classes is not None else None
        out["hierarchy"] = self.hierarchy
        out["class_counts"] = self.class_counts
        return out


class TaskKind:
    """Behaviour shared by all tasks of one kind."""

    name = ""
    default_loss = ""
    losses: tuple[str, ...] = ()
    default_metrics: tuple[str, ...] = ()
    default_main: str = ""
    needs_classes = True
    args: dict[str, Any] = {}  # kind-specific `args` keys and their defaults

    def out_dim(self, task: Task) -> int:
        return len(task.classes or [])

    def empty_target(self, task: Task) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def encode(self, task: Task, cell: str, where: str) -> tuple[Tensor, Tensor]:
        """Manifest cell -> (target, mask). An empty cell means "no label": mask False."""
        raise NotImplementedError

    def loss(self, task: Task, output: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def label_count(self, task: Task, target: Tensor, mask: Tensor) -> Tensor:
        """The count `loss` divides its sum by, from the targets alone (the mask broadcast to the target's
        shape): it weights the micro-batches of an accumulated step."""
        return torch.broadcast_to(mask, target.shape).sum()

    def compute_metrics(self, task: Task, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        raise NotImplementedError

    def decode(self, task: Task, output: Tensor, k: int = 3) -> Any:
        raise NotImplementedError


class Classification(TaskKind):
    name = "classification"
    default_loss = "ce"
    losses = ("ce", "class_balanced")
    default_metrics = (
        "top1",
        "top5",
        "mean_class_acc",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "roc_auc",
    )
    default_main = "top1"
    # hierarchy: CSV mapping the finer task's classes to the coarser task's (see `parent`);
    # beta: of the class-balanced loss (`loss: class_balanced`, Cui et al. 2019)
    args = {"hierarchy": None, "beta": 0.999}

    def check_args(self, args, where):
        beta = args.get("beta")
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta < 1:
            raise ConfigError(
                f"config key '{where}.beta': got {beta!r}, allowed values are numbers in [0, 1)"
            )

    def empty_target(self, task):
        return torch.tensor(0, dtype=torch.long), torch.tensor(False)

    def encode(self, task, cell, where):
        if cell == "":
            return self.empty_target(task)
        idx = task.index.get(cell)
        if idx is None:
            raise DataError(
                f"{where}: label {cell!r} of task '{task.name}' is not one of its {len(task.index)} classes"
            )
        return torch.tensor(idx, dtype=torch.long), torch.tensor(True)

    def loss(self, task, output, target, mask):
        weight = offset = None
        if task.loss == "class_balanced":
            weight = class_balanced_weights(
                _train_counts(task, "loss: class_balanced"), task.args.get("beta", 0.999)
            )
        if task.logit_adjust:
            offset = logit_adjustment(_train_counts(task, "logit_adjust"), task.logit_adjust)
        return masked_cross_entropy(
            output,
            target,
            mask,
            label_smoothing=task.label_smoothing,
            class_weight=weight,
            logit_offset=offset,
        )

    def compute_metrics(self, task, output, target, mask):
        res = M.classification_metrics(output, target, mask, num_classes=len(task.classes))
        return {k: v for k, v in res.items() if k in task.metrics}

    def decode(self, task, output, k=3):
        prob = output.float().softmax(-1)
        top = prob.topk(min(k, prob.shape[-1]), dim=-1)
        return [
            [(task.classes[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(top.values, top.indices)
        ]


def _train_counts(task: Task, what: str) -> list[int]:
    if task.class_counts is None:
        raise ConfigError(
            f"task '{task.name}': {what} needs the class counts of the training split; the trainer sets them "
            "(`mtlhar.tasks.fit_class_counts`) before the first step"
        )
    return task.class_counts


def fit_class_counts(tasks: list[Task], labels: list[dict]) -> None:
    """Store on every single-label classification task its per-class counts among `labels` (the encoded
    labels of the training split: {task: (target, mask)} per clip); unlabelled clips are not counted."""
    for t in tasks:
        if t.kind != "classification":
            continue
        counts = [0] * len(t.classes)
        for lab in labels:
            target, mask = lab[t.name]
            if bool(mask.all()):
                counts[int(target)] += 1
        t.class_counts = counts


class MultiLabel(TaskKind):
    name = "multilabel"
    default_loss = "bce"
    losses = ("bce",)
    default_metrics = ("mAP", "macro_f1", "exact_match")
    default_main = "mAP"

    def empty_target(self, task):
        return torch.zeros(len(task.classes)), torch.tensor([False])

    def encode(self, task, cell, where):
        if cell == "":
            return self.empty_target(task)
        target = torch.zeros(len(task.classes))
        for label in cell.split(task.separator):
            label = label.strip()
            if label == "":
                continue
            idx = task.index.get(label)
            if idx is None:
                raise DataError(f"{where}: label {label!r} of task '{task.name}' is not one of its classes")
            target[idx] = 1.0
        return target, torch.tensor([True])

    def loss(self, task, output, target, mask):
        return masked_bce(output, target, mask)

    def compute_metrics(self, task, output, target, mask):
        res = M.multilabel_metrics(output, target, mask)
        return {k: v for k, v in res.items() if k in task.metrics}

    def decode(self, task, output, k=3):
        prob = output.float().sigmoid()
        return [
            [(task.classes[i], float(p[i])) for i in torch.nonzero(p >= 0.5).flatten().tolist()] for p in prob
        ]


class Regression(TaskKind):
    name = "regression"
    default_loss = "mse"
    losses = ("mse", "l1", "smooth_l1")
    default_metrics = ("mae", "rmse")
    default_main = "mae"
    needs_classes = False

    def out_dim(self, task):
        return task.num_outputs

    def empty_target(self, task):
        return torch.zeros(task.num_outputs), torch.tensor([False])

    def encode(self, task, cell, where):
        if cell == "":
            return self.empty_target(task)
        try:
            values = [float(v) for v in cell.split(task.separator)]
        except ValueError:
            raise DataError(
                f"{where}: value {cell!r} of regression task '{task.name}' is not a number"
            ) from None
        if len(values) != task.num_outputs or not all(math.isfinite(v) for v in values):
            raise DataError(
                f"{where}: task '{task.name}' expects {task.num_outputs} finite value(s), got {cell!r}"
            )
        return torch.tensor(values, dtype=torch.float32), torch.tensor([True])

    def loss(self, task, output, target, mask):
        return masked_regression(output, target, mask, loss=task.loss)

    def compute_metrics(self, task, output, target, mask):
        res = M.regression_metrics(output, target, mask)
        return {k: v for k, v in res.items() if k in task.metrics}

    def decode(self, task, output, k=3):
        return [[round(float(v), 4) for v in row] for row in output.float()]


def _kinds() -> dict[str, TaskKind]:
    from .captions import CaptionKind  # defined beside its tokenizer and decoders

    return {k.name: k for k in (Classification(), MultiLabel(), Regression(), CaptionKind())}


KINDS: dict[str, TaskKind] = _kinds()


# Options every task kind takes: a negative control whose labels are permuted across the clips of each
# split (`mtlhar.data.dataset.ClipDataset`), with the permutation's seed; and the class-name pairs that
# trade places when a clip is flipped (`flip_swap`, checked by `mtlhar.data.transforms.flip_permutations`).
COMMON_ARGS = {"shuffle_labels": False, "shuffle_seed": 0, "flip_swap": None}


def build_task(cfg: TaskConfig, classes: list[str] | None = None, where: str = "tasks") -> Task:
    """Resolve a TaskConfig into a Task, given the label space found in the data (if the config has none)."""
    kind = KINDS.get(cfg.kind)
    if kind is None:
        raise ConfigError(
            f"config key '{where}.kind': {cfg.kind!r} is not a task kind; choose from {sorted(KINDS)}"
        )
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
    unknown_args = sorted(set(cfg.args) - set(kind.args) - set(COMMON_ARGS))
    if unknown_args:
        raise ConfigError(
            f"config key '{where}.args': {unknown_args} not options of a {kind.name} task; "
            f"allowed: {sorted(set(kind.args) | set(COMMON_ARGS))}"
        )
    args = {**kind.args, **{k: v for k, v in cfg.args.items() if k not in COMMON_ARGS or v}}
    if hasattr(kind, "check_args"):
        kind.check_args(args, f"{where}.args")
    if cfg.logit_adjust is not None:
        if kind.name != "classification":
            raise ConfigError(
                f"config key '{where}.logit_adjust': only single-label classification tasks take it "
                f"(task '{cfg.name}' is {kind.name!r}); allowed kinds: 'classification'"
            )
        if not 0 <= cfg.logit_adjust < math.inf:
            raise ConfigError(
                f"config key '{where}.logit_adjust': got {cfg.logit_adjust!r}, allowed values are finite "
                "numbers >= 0 (tau; 1.0 is the usual choice)"
            )
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
        if t.kind != "classification" or other.kind != "classification":
            raise ConfigError(f"{where}: a hierarchy links two classification tasks")
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
