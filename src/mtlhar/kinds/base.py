"""The task-kind contract: every hook the engine calls, each with its default.

A kind is everything that differs between tasks of different kinds: where a target comes from (a manifest
cell, or a stream read at the sample's frame indices), how a clip's augmentation moves it, the head built
on an encoder tap, the masked loss and the count it divides by, the metrics with their directions, the
per-clip scores of the paired tests, how test views are averaged, confusion matrices, how the report
describes an output, and whether saliency and transfer apply. The engine (dataset, model, trainer,
evaluation, statistics, report, transfer) asks the task's kind (`task.spec`) and never branches on a kind's
name, so a new kind is one class: a subclass of `TaskKind` given to `mtlhar.kinds.register` (or one module
and one row in `mtlhar.kinds.KINDS` for a kind shipped with the package).

Three hooks have no sensible default and must be written: `target_from_cell`, `loss` and `metrics`. The
others default to a per-clip vector of `out_dim` numbers (a regression-like output): override what differs.

Kinds sit below `mtlhar.tasks` (which lists them), so they see a task through `TaskView`: what a kind may
read of a resolved `mtlhar.tasks.Task`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.multitask import Head

LAYOUTS = ("vector", "sequence", "map")  # tap layouts: [B, D], [B, T, D], [B, C, T, H, W]


class TaskView(Protocol):
    """What a kind reads of a task (`mtlhar.tasks.Task` has all of it)."""

    name: str
    kind: str
    column: str
    classes: list[str] | None
    num_outputs: int
    loss: str
    metrics: list[str]
    main_metric: str
    args: dict[str, Any]
    label_smoothing: float
    separator: str
    temporal: str
    temporal_args: dict[str, Any]
    hidden: int
    dropout: float
    logit_adjust: float | None
    class_counts: list[int] | None
    hierarchy: dict[str, Any] | None

    @property
    def index(self) -> dict[str, int]: ...


def plan_flipped(plan: Any) -> bool:
    """Whether a clip's augmentation plan flips it horizontally: `plan` is a bool, an object with `flip`
    (`data.transforms.ClipParams`) or one whose `params` has it (`data.transforms.ClipPlan`), or None."""
    if plan is None or isinstance(plan, bool):
        return bool(plan)
    params = getattr(plan, "params", plan)
    return bool(getattr(params, "flip", False))


def mean_over_views(
    outputs: np.ndarray, starts: np.ndarray, to_space: Callable, back: Callable
) -> np.ndarray:
    """One output per clip: the mean of its views' outputs (rows `starts[i]` up to `starts[i + 1]`) taken in
    the space `to_space` maps into (probabilities, say), mapped back to an output by `back`."""
    values = to_space(outputs.astype(np.float64))
    counts = np.diff(np.append(starts, len(outputs))).reshape(-1, *([1] * (outputs.ndim - 1)))
    return back(np.add.reduceat(values, starts, axis=0) / counts).astype(outputs.dtype)


def directions(metrics: Iterable[str], table: Mapping[str, bool]) -> dict[str, bool]:
    """`{metric: higher is better}` for `metrics`, looked up in `table` (a KeyError names a missing one)."""
    return {m: table[m] for m in metrics}


def per_sample_mask(mask: np.ndarray) -> np.ndarray:
    """A clip's label mask [N, ...] -> [N] bool: whether its first entry is labelled."""
    return np.asarray(mask).reshape(len(mask), -1)[:, 0].astype(bool)


class TaskKind(ABC):
    """Behaviour shared by all tasks of one kind. Subclass it, set the class attributes, write
    `target_from_cell`, `loss` and `metrics`, and override any other hook whose default does not fit."""

    # ---- what the kind is (class attributes) ------------------------------------------------------------
    name: ClassVar[str] = ""  # the `kind:` of a task config
    default_loss: ClassVar[str] = ""
    losses: ClassVar[tuple[str, ...]] = ()  # the `loss:` values the kind takes
    default_metrics: ClassVar[tuple[str, ...]] = ()  # every metric the kind computes (a task picks some)
    default_main: ClassVar[str] = ""  # the metric checkpoints and studies select on
    # metric -> True when higher is better, for every metric the kind's `metrics` may return
    metric_directions: ClassVar[dict[str, bool]] = {}
    needs_classes: ClassVar[bool] = True  # the task has a label space (`classes`) taken from the data
    several_labels_per_cell: ClassVar[bool] = False  # a cell lists several classes (`separator`)
    args: ClassVar[dict[str, Any]] = {}  # kind-specific `args` keys and their defaults
    supports_hierarchy: ClassVar[bool] = False  # may be linked to a coarser task (`parent`)
    supports_logit_adjust: ClassVar[bool] = False  # takes `logit_adjust` (a class prior in the loss)
    one_class_per_clip: ClassVar[bool] = False  # a target is one class index (balanced sampling draws by it)
    per_clip_metrics: ClassVar[tuple[str, ...]] = ()  # metrics that are means of `per_clip_scores`
    # metrics of a whole clip set (not means of per-clip values) that studies recompute per bootstrap
    # resample: name -> fn(outputs [N, ...], targets [N, ...], valid [N, ...]) -> float
    set_metrics: ClassVar[dict[str, Callable[..., float]]] = {}
    saliency: ClassVar[bool] = True  # a head output has a score Grad-CAM can explain (`saliency_score`)
    transfers: ClassVar[bool] = True  # a frozen-feature probe can learn it (`build_probe`, `mtlhar transfer`)

    # ---- configuration ------------------------------------------------------------------------------------
    def check_args(self, args: dict[str, Any], where: str) -> None:
        """Refuse bad values of the kind's `args` (ConfigError naming `where.key`); defaults are merged in.
        Default: every value is accepted."""
        return None

    def resolve_classes(self, cfg: Any, manifest: Any, train_split: str = "train") -> list[str] | None:
        """The label space of a task config without `classes`, from the manifest (None: no label space)."""
        if not self.needs_classes:
            return None
        column = cfg.column or cfg.name
        manifest.require_column(column, cfg.name)
        return manifest.classes_for(column, multilabel=self.several_labels_per_cell, separator=cfg.separator)

    def out_dim(self, task: TaskView) -> int:
        """The size of the head's output vector."""
        return len(task.classes or []) if self.needs_classes else task.num_outputs

    # ---- targets --------------------------------------------------------------------------------------
    def empty_target(self, task: TaskView) -> tuple[Tensor, Tensor]:
        """(target, mask) of a clip without a label: the mask is all False (default: `out_dim` zeros)."""
        return torch.zeros(self.out_dim(task)), torch.tensor([False])

    @abstractmethod
    def target_from_cell(self, task: TaskView, cell: str, where: str) -> tuple[Tensor, Tensor]:
        """Manifest cell -> (target, mask broadcastable to the target). An empty cell means "no label"
        (`empty_target`); a value the kind cannot read raises DataError naming `where` (file:line)."""

    def target_from_row(self, task: TaskView, cells: Mapping[str, str], where: str) -> tuple[Tensor, Tensor]:
        """A manifest row -> (target, mask); kinds that read several columns override it (caption
        references). Default: the task's own column through `target_from_cell`."""
        return self.target_from_cell(task, cells.get(task.column, ""), where)

    def encode(self, task: TaskView, cell: str, where: str) -> tuple[Tensor, Tensor]:
        """The same as `target_from_cell` (the name callers used before)."""
        return self.target_from_cell(task, cell, where)

    def encode_row(self, task: TaskView, cells: Mapping[str, str], where: str) -> tuple[Tensor, Tensor]:
        """The same as `target_from_row` (the name `data.dataset` calls)."""
        return self.target_from_row(task, cells, where)

    def target_stream(self, task: TaskView) -> str | None:
        """The stream a task's target is read from at the sample's frame indices (a dense per-frame map,
        keypoints), or None when it comes from the manifest's cells (the default)."""
        return None

    def target_from_stream(self, task: TaskView, array: Any, where: str) -> tuple[Tensor, Tensor]:
        """A stream read at the sample's frame indices -> (target, mask), for kinds whose `target_stream` is
        set. Default: not supported (ConfigError)."""
        raise ConfigError(f"{where}: a {self.name} task reads its target from a manifest cell, not a stream")

    def flip_permutation(self, task: TaskView) -> Tensor | None:
        """`perm` with class `i` of a flipped clip becoming class `perm[i]`, from `args.flip_swap`; None
        without a rule. Default: a rule is refused (the target does not index classes)."""
        if (task.args or {}).get("flip_swap"):
            raise ConfigError(
                f"task '{task.name}': args.flip_swap: a {self.name} task cannot swap labels on a flip "
                "(its target does not index classes)"
            )
        return None

    def move_target(self, task: TaskView, target: Tensor, plan: Any) -> Tensor:
        """The target of a clip after its augmentation plan (`plan_flipped(plan)` says whether it was
        flipped; a dense target would be warped with the pixels). Default: unchanged."""
        return target

    def class_counts(self, task: TaskView, labels: Iterable[tuple[Tensor, Tensor]]) -> list[int] | None:
        """Per-class counts of the labelled (target, mask) pairs given (the training split's), or None when
        the kind has no per-clip class (the default). Class-balanced losses and logit adjustment use them."""
        return None

    # ---- model ----------------------------------------------------------------------------------------
    def build_head(self, task: TaskView, tap_dim: int, tap_layout: str) -> nn.Module:
        """The head on an encoder tap of size `tap_dim` and layout "vector", "sequence" or "map": a module
        called as `head(tap, targets, mode)` that returns a `HeadOutput`. Default: `models.multitask.Head`
        (spatial mean of maps, the task's temporal module over time, an MLP to `out_dim`)."""
        return Head(
            tap_dim,
            tap_layout,
            self.out_dim(task),
            temporal=task.temporal,
            temporal_args=task.temporal_args,
            hidden=task.hidden,
            dropout=task.dropout,
            where=f"task '{task.name}': temporal_args",
        )

    def output_shape(self, task: TaskView, mode: str) -> tuple[int, ...]:
        """The shape of one clip's head output in `mode` ("train" with targets, or "eval")."""
        return (self.out_dim(task),)

    # ---- loss -----------------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, task: TaskView, output: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(sum of the labelled entries' losses, their count) of a batch; the sum stays connected to
        `output` when nothing is labelled (see `mtlhar.objectives`)."""

    def label_count(self, task: TaskView, target: Tensor, mask: Tensor) -> Tensor:
        """The count `loss` divides its sum by, from the targets alone (the mask broadcast to the target's
        shape): it weights the micro-batches of an accumulated step."""
        return torch.broadcast_to(mask, target.shape).sum()

    # ---- metrics --------------------------------------------------------------------------------------
    @abstractmethod
    def metrics(self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
        """`{metric: value}` of the task's `metrics` over the labelled clips (`mask` [N] per clip, or the
        target's shape); `{}` when nothing is labelled. Every name has an entry in `metric_directions`."""

    def compute_metrics(self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray):
        """The same as `metrics` (the name callers used before)."""
        return self.metrics(task, output, target, mask)

    def higher_is_better(self, metric: str) -> bool:
        """The direction of one of the kind's metrics (True for a name it does not declare)."""
        return self.metric_directions.get(metric, True)

    def per_clip_scores(
        self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(score [N], valid [N]) whose mean over valid clips is the kind's `per_clip_metrics` metric: what
        the bootstrap over clips and the paired tests resample. Default: none (ValueError)."""
        raise ValueError(f"no per-clip score for kind {self.name}")

    def average_views(self, task: TaskView, outputs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """One output per clip from its test views (rows `starts[i]` up to `starts[i + 1]`). Default: the
        first view (outputs with no meaningful mean, such as decoded tokens)."""
        return outputs[starts]

    def confusion(
        self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> np.ndarray | None:
        """The [C, C] confusion matrix (rows true, columns predicted), or None where it does not apply."""
        return None

    def per_class_f1(
        self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> np.ndarray | None:
        """Per-class F1 [C] (the report's head / middle / tail bands), or None where it does not apply."""
        return None

    # ---- report ---------------------------------------------------------------------------------------
    def decode(self, task: TaskView, output: Tensor, k: int = 3) -> list:
        """A batch of outputs as readable predictions (`mtlhar predict`). Default: the rounded values."""
        return [[round(float(v), 4) for v in row] for row in output.float().reshape(len(output), -1)]

    def describe(
        self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> tuple[str, str, bool | None]:
        """(truth, prediction, correct) of one clip as text for the report's gallery; correct is None where
        an output is not simply right or wrong. Default: the values, and the mean absolute error."""
        values = np.asarray(output, dtype=float).reshape(-1)
        guess = ", ".join(f"{v:.3g}" for v in values)
        if not bool(np.asarray(mask).reshape(-1).any()):
            return "(no label)", guess, None
        truth = np.asarray(target, dtype=float).reshape(-1)
        err = float(np.mean(np.abs(values - truth)))
        return ", ".join(f"{v:.3g}" for v in truth), f"{guess} (error {err:.3g})", None

    def clip_correct(self, task: TaskView, output: np.ndarray, target: np.ndarray, mask: np.ndarray):
        """Whether one labelled clip's prediction is right (the gallery shows right and wrong clips), or
        None where there is no single right answer (the default)."""
        return None

    def saliency_score(self, task: TaskView, output: Tensor) -> tuple[Tensor, int | None]:
        """(the scalar Grad-CAM explains, the explained class or None) of a one-clip head output [1, ...].
        Default: the sum of the outputs."""
        return output.float().sum(), None

    # ---- transfer -------------------------------------------------------------------------------------
    def build_probe(
        self, task: TaskView, feature_dim: int, probe: str, hidden: int, dropout: float
    ) -> nn.Module:
        """The head `mtlhar transfer` trains on frozen features [N, feature_dim] ("linear" or "mlp"); its
        output goes to `loss` and `metrics` like the head's."""
        out = self.out_dim(task)
        if probe == "linear":
            return nn.Linear(feature_dim, out)
        return nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out)
        )

    # ---- documentation and the contract test ------------------------------------------------------------
    def example(self) -> dict[str, Any]:
        """A tiny task of this kind: `{"task": TaskConfig keys, "classes": label space or None, "cells":
        manifest cells (valid ones and an empty one)}`; the contract test runs every hook on it."""
        return {"task": {"num_classes": 2}, "classes": None, "cells": ["0.5|1", "", "-2|0.25"]}


def check_kind(kind: TaskKind, registered: Sequence[TaskKind] = ()) -> None:
    """Refuse a kind that breaks the contract: ConfigError naming the kind and the problem."""
    where = f"task kind {getattr(kind, 'name', kind)!r}"
    if not isinstance(kind, TaskKind):
        raise ConfigError(f"{where}: a task kind is an instance of a subclass of mtlhar.kinds.TaskKind")
    if not kind.name or not isinstance(kind.name, str):
        raise ConfigError(f"{where}: set the class attribute `name` (the `kind:` of a task config)")
    if kind.default_loss not in kind.losses:
        raise ConfigError(f"{where}: default_loss {kind.default_loss!r} is not one of losses {kind.losses}")
    if kind.default_main not in kind.default_metrics:
        raise ConfigError(f"{where}: default_main {kind.default_main!r} is not one of {kind.default_metrics}")
    named = (*kind.default_metrics, *kind.per_clip_metrics, *kind.set_metrics)
    missing = [m for m in named if m not in kind.metric_directions]
    if missing:
        raise ConfigError(f"{where}: metric_directions lacks {missing} (True when higher is better)")
    for other in registered:
        for m, up in kind.metric_directions.items():
            if other.name != kind.name and other.metric_directions.get(m, up) != up:
                raise ConfigError(
                    f"{where}: metric {m!r} is {'higher' if up else 'lower'}-is-better here but not in kind "
                    f"{other.name!r}: give the metric another name"
                )
