"""Task affinity measured during multi-task training.

- Gradient cosine: cosine between the task losses' gradients with respect to the shared representation
  (the deepest tensor all heads read), per pair of tasks.
- Lookahead affinity (Fifty et al., 2021, "Efficiently identifying task groupings"): take a plain SGD step
  on the shared encoder with task i's gradient alone, and measure how task j's loss on the same batch
  changes: `A[i, j] = 1 - L_j(after) / L_j(before)` (positive: a step on i helps j).
Both are measured every `train.affinity_every` steps on the current batch, logged to metrics.jsonl,
averaged over training by the study, and turned into a suggested grouping.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


def measure(trainer, batch: dict, *, lr: float | None = None) -> dict | None:
    """Gradient cosine and lookahead affinity on one batch; None when fewer than two tasks are labelled."""
    model = trainer.model
    was_training = model.training
    model.eval()  # no dropout / BN statistics updates while probing
    try:
        losses, present, _, out = trainer.compute_losses(batch)
        names = [t.name for t in trainer.tasks if present[t.name]]
        if len(names) < 2:
            return None
        shared = out.taps[model.shared_tap()]
        grads = []
        for n in names:
            (g,) = torch.autograd.grad(losses[n], shared, retain_graph=True)
            grads.append(g.flatten().float())
        G = torch.stack(grads)
        unit = G / G.norm(dim=1, keepdim=True).clamp_min(1e-12)
        cosine = (unit @ unit.T).tolist()
        lookahead = _lookahead(trainer, batch, names, {n: float(losses[n].detach()) for n in names}, lr)
    finally:
        model.train(was_training)
    return {"tasks": names, "gradient_cosine": cosine, "lookahead": lookahead}


def _lookahead(trainer, batch, names, before, lr):
    model = trainer.model
    params = [p for p in model.shared_parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    lr = lr if lr is not None else trainer.opt.param_groups[0]["lr"]
    matrix = np.zeros((len(names), len(names)))
    for i, ni in enumerate(names):
        losses, _, _, _ = trainer.compute_losses(batch)
        grads = torch.autograd.grad(losses[ni], params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p.sub_(lr * g)
            after, _, _, _ = trainer.compute_losses(batch)
            for j, nj in enumerate(names):
                matrix[i, j] = 1.0 - float(after[nj]) / max(before[nj], 1e-12)
            for p, s in zip(params, saved):
                p.copy_(s)
    return matrix.tolist()


def suggest_groups(tasks: list[str], affinity: np.ndarray) -> list[list[str]]:
    """Split tasks into groups that help each other: the partition (into at most 3 groups) maximising the
    mean symmetric within-group affinity, tasks alone scoring 0 (exhaustive: fine for a handful of tasks)."""
    k = len(tasks)
    sym = (affinity + affinity.T) / 2
    best, best_score = [list(range(k))], -np.inf
    if k > 8:  # the search is exponential; keep everything together beyond a handful of tasks
        return [list(tasks)]
    for labels in itertools.product(range(min(3, k)), repeat=k):
        if labels[0] != 0:
            continue
        groups = [[i for i in range(k) if labels[i] == g] for g in range(3)]
        groups = [g for g in groups if g]
        score = 0.0
        for g in groups:
            pairs = [(a, b) for a in g for b in g if a < b]
            score += sum(sym[a, b] for a, b in pairs) / max(1, len(pairs)) * len(g) if pairs else 0.0
        if score > best_score + 1e-12:
            best, best_score = groups, score
    return [[tasks[i] for i in g] for g in best]


def summarise_affinity(records: list[dict]) -> dict | None:
    """Average the logged matrices over training (over records that measured the same task set)."""
    if not records:
        return None
    names = max((r["tasks"] for r in records), key=len)
    same = [r for r in records if r["tasks"] == names]
    cos = np.mean([r["gradient_cosine"] for r in same], axis=0)
    look = np.mean([r["lookahead"] for r in same], axis=0)
    return {
        "tasks": names,
        "gradient_cosine": cos.tolist(),
        "lookahead": look.tolist(),
        "n_measurements": len(same),
        "steps": [r["step"] for r in same],
        "suggested_groups": suggest_groups(names, look),
    }
