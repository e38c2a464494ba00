"""Masked per-task losses and cross-task objective terms.

Every loss returns `(sum_of_losses, labelled_count)` so that the caller can average over the labelled
count (all-reduced across ranks under DDP). A batch in which a task has no labels yields a zero loss that
is still connected to the head's output (`0 * output.sum()`), so that every parameter receives a gradient
(zero) on every rank and DDP never waits for a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


def _connected_zero(output: Tensor) -> Tensor:
    return output.sum() * 0.0


def masked_cross_entropy(
    logits: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    label_smoothing: float = 0.0,
    class_weight: Tensor | None = None,
    logit_offset: Tensor | None = None,
):
    """logits [B, C], target [B] long (any value where masked), mask [B] bool.

    `class_weight` [C]: each sample's loss is multiplied by the weight of its true class (class-balanced
    loss); the caller still divides by the labelled count, as Cui et al. do. `logit_offset` [C] is added to
    the logits inside the loss only (logit adjustment); the model's outputs are untouched.
    """
    safe_target = torch.where(mask, target, torch.zeros_like(target))
    z = logits.float()
    if logit_offset is not None:
        z = z + logit_offset.to(z.device, z.dtype)
    per = F.cross_entropy(z, safe_target, reduction="none", label_smoothing=label_smoothing)
    if class_weight is not None:
        per = per * class_weight.to(per.device, per.dtype)[safe_target]
    m = mask.to(per.dtype)
    return (per * m).sum() + _connected_zero(logits), m.sum()


def class_balanced_weights(counts, beta: float = 0.999) -> Tensor:
    """Class-balanced weights of Cui et al. (2019) from per-class training counts.

    w_c = (1 - beta) / (1 - beta ** n_c), the inverse "effective number" of samples of class c, normalised so
    that the weights sum to the number of classes. A class absent from training (n_c = 0) is given n_c = 1
    (the largest weight) rather than an infinite one. beta = 0 gives equal weights; beta -> 1 inverse frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"class-balanced beta must be in [0, 1), got {beta}")
    n = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)
    effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n)) / (1.0 - beta)
    w = 1.0 / effective
    return (w * len(n) / w.sum()).to(torch.float32)


def logit_adjustment(counts, tau: float = 1.0) -> Tensor:
    """tau * log(prior) per class (Menon et al. 2021), prior = training count / total count.

    A class absent from training is counted once, so its offset stays finite.
    """
    n = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)
    return (tau * torch.log(n / n.sum())).to(torch.float32)


def masked_bce(logits: Tensor, target: Tensor, mask: Tensor):
    """logits/target [B, C]; mask broadcastable to [B, C] (per sample or per class)."""
    m = torch.broadcast_to(mask, logits.shape).to(torch.float32)
    per = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    per = torch.where(m > 0, per, torch.zeros_like(per))
    return (per * m).sum() + _connected_zero(logits), m.sum()


def masked_regression(pred: Tensor, target: Tensor, mask: Tensor, *, loss: str = "mse"):
    """pred/target [B, D]; mask broadcastable to [B, D]."""
    m = torch.broadcast_to(mask, pred.shape).to(torch.float32)
    diff = pred.float() - torch.where(m > 0, target.float(), pred.detach().float())
    if loss == "mse":
        per = diff**2
    elif loss == "l1":
        per = diff.abs()
    elif loss == "smooth_l1":
        per = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none")
    else:  # validated in tasks.py; kept as a guard for direct callers
        raise ValueError(f"unknown regression loss {loss!r}; use mse, l1 or smooth_l1")
    return (per * m).sum() + _connected_zero(pred), m.sum()


def masked_mean(total: Tensor, count: Tensor, *, distributed: bool = False) -> Tensor:
    """Average a summed loss over its labelled count; 0 (still in the graph) when nothing is labelled.

    Under DDP the count is all-reduced and the result scaled by the world size, so that DDP's gradient
    averaging gives the mean over every labelled sample on every rank.
    """
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        count = count.detach().clone()
        torch.distributed.all_reduce(count)
        return total * torch.distributed.get_world_size() / count.clamp_min(1.0)
    return total / count.detach().clamp_min(1.0)


@dataclass
class HeadOutput:
    """What a head returns: its output (logits / values) and named intermediates for cross-task terms."""

    output: Tensor
    features: Tensor
    extras: dict[str, Tensor] | None = None


class CrossTaskTerm(Protocol):
    """An objective over several heads' outputs (hierarchy consistency, decoding discrepancy, ...).

    Returns a scalar tensor. `batch` gives access to masks; `tasks` to the task specs.
    """

    name: str
    weight: float

    def __call__(
        self, outputs: Mapping[str, HeadOutput], batch: Mapping[str, Any], tasks: Mapping
    ) -> Tensor: ...


class HierarchyConsistency:
    """Coarse/fine consistency: fine probabilities summed per coarse group (q) against the coarse head (p).

    `fine_to_coarse[i]` is the coarse index of fine class i (validated by `tasks.hierarchy_index`).
    `divergence`: "kl" (default) = KL(q || p) = sum_g q_g (log q_g - log p_g), or "ce" = -sum_g q_g log p_g
    (the same gradient for the coarse head, plus the entropy of q). Gradients reach both heads. Samples count
    whatever their labels (the term needs none), so a clip labelled at one level still ties the two heads
    together. Mean over the batch.
    """

    def __init__(
        self,
        fine: str,
        coarse: str,
        fine_to_coarse: list[int] | Tensor,
        weight: float = 0.1,
        divergence: str = "kl",
    ):
        if divergence not in ("kl", "ce"):
            raise ValueError(f"hierarchy consistency divergence {divergence!r}: use 'kl' or 'ce'")
        self.name = f"consistency:{fine}->{coarse}"
        self.fine, self.coarse, self.weight, self.divergence = fine, coarse, weight, divergence
        self.index = torch.as_tensor(fine_to_coarse, dtype=torch.long)

    def grouped(self, fine_logits: Tensor, n_coarse: int) -> Tensor:
        """Fine probabilities summed within each coarse group: [B, n_coarse]."""
        fine = fine_logits.float().softmax(-1)
        index = self.index.to(fine.device).expand(fine.shape[0], -1)
        return torch.zeros(fine.shape[0], n_coarse, device=fine.device).scatter_add(1, index, fine)

    def __call__(self, outputs, batch, tasks) -> Tensor:
        coarse_logits = outputs[self.coarse].output
        q = self.grouped(outputs[self.fine].output, coarse_logits.shape[-1])
        log_p = coarse_logits.float().log_softmax(-1)
        if self.divergence == "ce":
            return -(q * log_p).sum(-1).mean()
        return F.kl_div(log_p, q.clamp_min(1e-8), reduction="batchmean")


def masked_token_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor, *, label_smoothing: float = 0.0):
    """Token-level CE for sequence outputs: logits [B, L, V], target [B, L] long, mask [B, L] bool.

    Padding (mask False) contributes nothing whatever its logits; returns (sum, number of real tokens), so
    the caller's mean is the token-averaged cross-entropy.
    """
    safe = torch.where(mask, target, torch.zeros_like(target))
    per = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        safe.reshape(-1),
        reduction="none",
        label_smoothing=label_smoothing,
    ).view_as(safe)
    per = torch.where(mask, per, torch.zeros_like(per))
    m = mask.to(per.dtype)
    return (per * m).sum() + _connected_zero(logits), m.sum()
