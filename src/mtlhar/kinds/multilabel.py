"""Multi-label classification: a set of classes per clip (a cell lists them, `separator`-joined), binary
cross-entropy per class, mAP / macro-F1 / exact-match metrics (mAP is a set metric: studies recompute it
per bootstrap resample)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import metrics as M
from ..errors import DataError
from ..objectives import masked_bce
from .base import TaskKind, directions, mean_over_views, plan_flipped
from .classification import cached_flip_permutation, flip_rule_permutation

_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


class MultiLabel(TaskKind):
    name = "multilabel"
    default_loss = "bce"
    losses = ("bce",)
    default_metrics = ("mAP", "macro_f1", "exact_match")
    default_main = "mAP"
    metric_directions = directions(default_metrics, M.METRIC_DIRECTIONS)
    several_labels_per_cell = True
    set_metrics = {"mAP": M.mean_ap}

    def empty_target(self, task):
        return torch.zeros(len(task.classes)), torch.tensor([False])

    def target_from_cell(self, task, cell, where):
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

    def flip_permutation(self, task):
        return flip_rule_permutation(task)

    def move_target(self, task, target, plan):
        perm = cached_flip_permutation(task) if plan_flipped(plan) else None
        return target if perm is None else target[..., perm.to(target.device)]  # permute the class axis

    def loss(self, task, output, target, mask):
        return masked_bce(output, target, mask)

    def metrics(self, task, output, target, mask):
        res = M.multilabel_metrics(output, target, mask)
        return {k: v for k, v in res.items() if k in task.metrics}

    def average_views(self, task, outputs, starts):
        # mean sigmoid probabilities, returned as logits
        return mean_over_views(outputs, starts, lambda z: 1 / (1 + np.exp(-z)), _logit)

    def decode(self, task, output, k=3):
        prob = output.float().sigmoid()
        return [
            [(task.classes[i], float(p[i])) for i in torch.nonzero(p >= 0.5).flatten().tolist()] for p in prob
        ]

    def describe(self, task, output, target, mask):
        on = [task.classes[i] for i in np.flatnonzero(output > 0)]
        truth = [task.classes[i] for i in np.flatnonzero(target > 0.5)]
        guess = ", ".join(on) or "(none)"
        if not bool(np.asarray(mask).reshape(-1).any()):
            return "(no label)", guess, None
        return ", ".join(truth) or "(none)", guess, set(on) == set(truth)

    def saliency_score(self, task, output):
        cls = int(output[0].argmax())
        return output[0, cls], cls

    def example(self) -> dict[str, Any]:
        return {"task": {}, "classes": ["a", "b", "c"], "cells": ["a|c", "", "b", "a|b|c"]}
