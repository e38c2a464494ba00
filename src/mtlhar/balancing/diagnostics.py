"""How task gradients relate: pairwise cosine, magnitude similarity, and the condition number of J."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gramian_diagnostics(gramian: Tensor, names: Sequence[str] | None = None) -> dict[str, float]:
    """The diagnostics of a task-gradient matrix J from its Gramian G = J J^T (all that they need).

    Keys: `norm/<a>`, `cos/<a>__<b>` (cosine), `gms/<a>__<b>` (gradient magnitude similarity
    2 |g_a| |g_b| / (|g_a|^2 + |g_b|^2), Yu et al. 2020), `cos_min`, and `cond` (largest / smallest
    singular value of J; inf when J is rank deficient).
    """
    g = gramian.detach().double().cpu()
    k = len(g)
    names = list(names) if names is not None else [f"t{i}" for i in range(k)]
    sq = g.diagonal().clamp_min(0)
    norm = sq.sqrt()
    out: dict[str, float] = {f"norm/{n}": float(norm[i]) for i, n in enumerate(names)}
    cosines = []
    for i in range(k):
        for j in range(i + 1, k):
            pair = f"{names[i]}__{names[j]}"
            denom = float(norm[i] * norm[j])
            cos = float(g[i, j]) / denom if denom > 0 else 0.0
            cosines.append(cos)
            out[f"cos/{pair}"] = cos
            total = float(sq[i] + sq[j])
            out[f"gms/{pair}"] = 2 * denom / total if total > 0 else 1.0
    out["cos_min"] = min(cosines) if cosines else 1.0
    sv = torch.linalg.eigvalsh(g).clamp_min(0).sqrt()
    smax, smin = float(sv.max()), float(sv.min())
    out["cond"] = smax / smin if smin > 1e-12 * smax else float("inf")
    return out


def diagnostics(grads: Tensor, names: Sequence[str] | None = None) -> dict[str, float]:
    """Diagnostics of task gradients `grads` [K, D] (one row per task); see `gramian_diagnostics`.

    >>> d = diagnostics(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), ["a", "b"])
    >>> round(d["cos/a__b"], 3), round(d["gms/a__b"], 3)
    (0.707, 0.943)
    """
    g = grads.detach().double().flatten(1)
    return gramian_diagnostics(g @ g.T, names)
