"""Single-label classification: one class per clip (a manifest cell names it), cross-entropy (optionally
class-balanced, logit-adjusted or label-smoothed), top-k / per-class / ROC-AUC metrics, hierarchies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import metrics as M
from ..errors import ConfigError, DataError
from ..objectives import class_balanced_weights, logit_adjustment, masked_cross_entropy
from .base import TaskKind, TaskView, directions, mean_over_views, per_sample_mask, plan_flipped

_EPS = 1e-12
HIERARCHY_METRICS = ("hier_consistency", "mistake_severity", "hdist@1", "hdist@5")  # on the finer task


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def flip_rule_permutation(task: TaskView) -> Tensor | None:
    """`args.flip_swap` (class-name pairs that trade places when a clip is flipped) as a permutation of
    the class indices; ConfigError naming the task and the class for a malformed rule."""
    rule = (task.args or {}).get("flip_swap")
    if not rule:
        return None
    where = f"task '{task.name}': args.flip_swap"
    classes = task.classes or []
    perm = list(range(len(classes)))
    seen: set[str] = set()
    for pair in rule:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(isinstance(c, str) for c in pair):
            raise ConfigError(
                f"{where}: expected pairs of class names like [[wave_left, wave_right]], got {pair!r}"
            )
        for c in pair:
            if c not in task.index:
                shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
                raise ConfigError(
                    f"{where}: unknown class {c!r}; task '{task.name}' has {len(classes)} classes: {shown}"
                )
            if c in seen:
                raise ConfigError(f"{where}: class {c!r} appears in more than one pair")
            seen.add(c)
        a, b = task.index[pair[0]], task.index[pair[1]]
        perm[a], perm[b] = b, a
    return torch.tensor(perm, dtype=torch.long)


def cached_flip_permutation(task: TaskView) -> Tensor | None:
    """`flip_rule_permutation`, computed once per task (the dataset asks for every flipped clip)."""
    cached = getattr(task, "_flip_perm", False)
    if cached is False:
        cached = flip_rule_permutation(task)
        object.__setattr__(task, "_flip_perm", cached)
    return cached


def train_counts(task: TaskView, what: str) -> list[int]:
    if task.class_counts is None:
        raise ConfigError(
            f"task '{task.name}': {what} needs the class counts of the training split; the trainer sets them "
            "(`mtlhar.tasks.fit_class_counts`) before the first step"
        )
    return task.class_counts


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
    metric_directions = directions((*default_metrics, *HIERARCHY_METRICS), M.METRIC_DIRECTIONS)
    # hierarchy: CSV mapping the finer task's classes to the coarser task's (see `parent`);
    # beta: of the class-balanced loss (`loss: class_balanced`, Cui et al. 2019)
    args = {"hierarchy": None, "beta": 0.999}
    supports_hierarchy = True
    supports_logit_adjust = True
    one_class_per_clip = True
    per_clip_metrics = ("top1",)

    def check_args(self, args, where):
        beta = args.get("beta")
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta < 1:
            raise ConfigError(
                f"config key '{where}.beta': got {beta!r}, allowed values are numbers in [0, 1)"
            )

    def empty_target(self, task):
        return torch.tensor(0, dtype=torch.long), torch.tensor(False)

    def target_from_cell(self, task, cell, where):
        if cell == "":
            return self.empty_target(task)
        idx = task.index.get(cell)
        if idx is None:
            raise DataError(
                f"{where}: label {cell!r} of task '{task.name}' is not one of its {len(task.index)} classes"
            )
        return torch.tensor(idx, dtype=torch.long), torch.tensor(True)

    def flip_permutation(self, task):
        return flip_rule_permutation(task)

    def move_target(self, task, target, plan):
        perm = cached_flip_permutation(task) if plan_flipped(plan) else None
        return target if perm is None else perm.to(target.device)[target]

    def class_counts(self, task, labels: Iterable[tuple[Tensor, Tensor]]) -> list[int]:
        counts = [0] * len(task.classes)
        for target, mask in labels:
            if bool(mask.all()):
                counts[int(target)] += 1
        return counts

    def output_shape(self, task, mode):
        return (len(task.classes),)

    def loss(self, task, output, target, mask):
        weight = offset = None
        if task.loss == "class_balanced":
            weight = class_balanced_weights(
                train_counts(task, "loss: class_balanced"), task.args.get("beta", 0.999)
            )
        if task.logit_adjust:
            offset = logit_adjustment(train_counts(task, "logit_adjust"), task.logit_adjust)
        return masked_cross_entropy(
            output,
            target,
            mask,
            label_smoothing=task.label_smoothing,
            class_weight=weight,
            logit_offset=offset,
        )

    def metrics(self, task, output, target, mask):
        res = M.classification_metrics(output, target, mask, num_classes=len(task.classes))
        return {k: v for k, v in res.items() if k in task.metrics}

    def per_clip_scores(self, task, output, target, mask):
        return (output.argmax(-1) == target).astype(np.float64), per_sample_mask(mask)

    def average_views(self, task, outputs, starts):
        # the mean of softmax probabilities comes back as its log: a logit whose softmax is that mean
        return mean_over_views(outputs, starts, softmax, lambda p: np.log(np.maximum(p, _EPS)))

    def confusion(self, task, output, target, mask):
        return M.confusion(output, target, np.asarray(mask).reshape(-1), num_classes=len(task.classes))

    def per_class_f1(self, task, output, target, mask):
        return M.per_class_f1(output, target, per_sample_mask(mask), num_classes=len(task.classes))

    def decode(self, task, output, k=3):
        prob = output.float().softmax(-1)
        top = prob.topk(min(k, prob.shape[-1]), dim=-1)
        return [
            [(task.classes[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(top.values, top.indices)
        ]

    def describe(self, task, output, target, mask):
        z = output.astype(np.float64)
        prob = np.exp(z - z.max())
        prob /= prob.sum()
        c = int(np.argmax(z))
        guess = f"{task.classes[c]} ({prob[c]:.0%})"
        if not bool(np.asarray(mask).reshape(-1).any()):
            return "(no label)", guess, None
        return task.classes[int(target)], guess, c == int(target)

    def clip_correct(self, task, output, target, mask):
        return int(np.argmax(output)) == int(target)

    def saliency_score(self, task, output):
        cls = int(output[0].argmax())
        return output[0, cls], cls

    def example(self) -> dict[str, Any]:
        return {"task": {}, "classes": ["left", "right", "up"], "cells": ["left", "", "up", "right"]}
