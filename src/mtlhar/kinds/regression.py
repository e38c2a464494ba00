"""Regression: `num_classes` numbers per clip (a cell holds them, `separator`-joined), MSE / L1 / smooth-L1,
MAE and RMSE (MAE is the mean of per-clip absolute errors: the paired tests resample clips)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import metrics as M
from ..errors import DataError
from ..objectives import masked_regression
from .base import TaskKind, directions, mean_over_views


class Regression(TaskKind):
    name = "regression"
    default_loss = "mse"
    losses = ("mse", "l1", "smooth_l1")
    default_metrics = ("mae", "rmse")
    default_main = "mae"
    metric_directions = directions(default_metrics, M.METRIC_DIRECTIONS)
    needs_classes = False
    per_clip_metrics = ("mae",)

    def out_dim(self, task):
        return task.num_outputs

    def empty_target(self, task):
        return torch.zeros(task.num_outputs), torch.tensor([False])

    def target_from_cell(self, task, cell, where):
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

    def metrics(self, task, output, target, mask):
        res = M.regression_metrics(output, target, mask)
        return {k: v for k, v in res.items() if k in task.metrics}

    def per_clip_scores(self, task, output, target, mask):
        """Absolute error, the mean over a clip's labelled outputs."""
        m = mask.reshape(len(mask), -1)
        err = np.abs(output - target).reshape(len(output), -1)
        valid = np.broadcast_to(m, err.shape)
        per = np.where(valid, err, 0).sum(1) / np.maximum(valid.sum(1), 1)
        return per, valid.any(1)

    def average_views(self, task, outputs, starts):
        return mean_over_views(outputs, starts, lambda z: z, lambda z: z)

    def example(self) -> dict[str, Any]:
        return {"task": {"num_classes": 2}, "classes": None, "cells": ["0.5|1", "", "-2|0.25", "3|3"]}
