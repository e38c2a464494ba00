"""Gramian -> task weights: the solvers behind the gradient balancers.

Every method here combines task gradients linearly, d = sum_t w_t g_t, so it only needs the K x K Gramian
G = J J^T of the task-gradient matrix J [K, D]. That is what lets the balancers work in representation
mode (J is the gradient of the shared tensor) and in parameter mode alike, and it keeps the solvers tiny:
they run in float64 on the CPU on a K x K matrix.

TorchJD's weightings are used where TorchJD has the method without optional solvers (MGDA, IMTL-G,
Aligned-MTL, UPGrad with the dual-cone projector below instead of quadprog). PCGrad is TorchJD's algorithm
with a seeded generator (TorchJD draws from the global RNG); CAGrad and Nash-MTL need cvxpy in TorchJD and
are written here from their papers' official code (scipy SLSQP for CAGrad, Newton's method for Nash-MTL).

Scales: each function returns the method's own weights. `MEAN_SCALED` lists those whose weights sum to
about 1 (the mean of the gradients when they agree); the balancers multiply those by K.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mgda(gramian: Tensor, *, epsilon: float = 1e-5, max_iters: int = 250) -> Tensor:
    """MGDA (Sener & Koltun 2018): the min-norm point of the convex hull (Frank-Wolfe, TorchJD)."""
    from torchjd.aggregation import MGDAWeighting

    return MGDAWeighting(epsilon=epsilon, max_iters=max_iters)(gramian)


def imtl_g(gramian: Tensor) -> Tensor:
    """IMTL-G (Liu et al. 2021): equal projections of d on every unit task gradient (TorchJD)."""
    from torchjd.aggregation import IMTLGWeighting

    return IMTLGWeighting()(gramian)


def aligned_mtl(gramian: Tensor, *, scale_mode: str = "min") -> Tensor:
    """Aligned-MTL (Senushkin et al. 2023): align the gradients' principal components (TorchJD)."""
    from torchjd.aggregation import AlignedMTLWeighting

    return AlignedMTLWeighting(scale_mode=scale_mode)(gramian)


def dual_cone_projection(u: Tensor, gramian: Tensor) -> Tensor:
    """Weights v of the projection of J^T u onto the dual cone of J's rows: min v^T G v subject to v >= u.

    With v = u + z, z >= 0 and G = A^T A this is non-negative least squares ||A z + A u||^2, solved
    exactly by scipy's Lawson-Hanson NNLS. `u` is [..., K]; the result has the same shape.
    """
    import numpy as np
    from scipy.optimize import nnls

    g = gramian.detach().double().cpu()
    lam, vec = torch.linalg.eigh(g)
    a = (vec * lam.clamp_min(0).sqrt()).T.numpy()  # a^T a = G
    rows = u.detach().double().cpu().reshape(-1, len(g)).numpy()
    out = np.stack([r + nnls(a, -a @ r)[0] for r in rows])
    return torch.tensor(out, dtype=u.dtype, device=u.device).reshape(u.shape)


def upgrad(gramian: Tensor) -> Tensor:
    """UPGrad (Quinton & Rey 2024): mean of each gradient projected onto the dual cone (TorchJD)."""
    from torchjd.aggregation import UPGradWeighting
    from torchjd.linalg import DualConeProjector

    class _NNLSProjector(DualConeProjector):
        def __call__(self, U: Tensor, G: Tensor) -> Tensor:
            return dual_cone_projection(U, G)

    return UPGradWeighting(projector=_NNLSProjector())(gramian)


def pcgrad(gramian: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad (Yu et al. 2020), Algorithm 1 in Gramian form: each g_i is projected onto the normal plane
    of every g_j it conflicts with, in a random order, and the projected gradients are summed."""
    g = gramian.detach().double().cpu()
    k = len(g)
    weights = torch.zeros(k, dtype=torch.float64)
    for i in range(k):
        order = torch.randperm(k, generator=generator)
        w = torch.zeros(k, dtype=torch.float64)
        w[i] = 1.0
        for j in order.tolist():
            inner = float(g[j] @ w)
            if j != i and inner < 0.0 and g[j, j] > 0:
                w[j] -= inner / g[j, j]
        weights += w
    return weights.to(gramian)


def cagrad(gramian: Tensor, *, c: float = 0.5, rescale: int = 1) -> Tensor:
    """CAGrad (Liu et al. 2021), as the official code: the best worst-case improvement within a ball of
    radius c ||g0|| around the mean gradient g0 (scipy SLSQP on the simplex), returned as weights."""
    import numpy as np
    from scipy.optimize import minimize

    a = gramian.detach().double().cpu().numpy()
    k = len(a)
    b = np.full(k, 1.0 / k)
    radius = c * float(np.sqrt(max(b @ a @ b, 0.0) + 1e-8)) + 1e-8

    def objective(x):
        return float(x @ a @ b + radius * np.sqrt(max(x @ a @ x, 0.0) + 1e-8))

    res = minimize(
        objective,
        b,
        bounds=[(0.0, 1.0)] * k,
        constraints={"type": "eq", "fun": lambda x: 1.0 - x.sum()},
    )
    x = res.x
    lmbda = radius / (np.sqrt(max(x @ a @ x, 0.0)) + 1e-8)
    w = b + lmbda * x
    w = w / (1 + c**2) if rescale == 1 else (w / (1 + c) if rescale == 2 else w)
    return torch.tensor(w, dtype=gramian.dtype, device=gramian.device)


def nash_mtl(gramian: Tensor, *, iters: int = 50, ridge: float = 1e-6) -> Tensor:
    """Nash-MTL (Navon et al. 2022): alpha > 0 with (G alpha)_i = 1 / alpha_i, G normalised to unit
    Frobenius norm as in the official code. That is the minimiser of the convex
    1/2 a^T G a - sum log a, found by damped Newton steps that keep alpha positive (no cvxpy)."""
    g = gramian.detach().double().cpu()
    k = len(g)
    g = g / g.norm().clamp_min(1e-30) + ridge * torch.eye(k, dtype=torch.float64)  # ridge: a zero gradient
    alpha = torch.ones(k, dtype=torch.float64)
    for _ in range(iters):
        grad = g @ alpha - 1.0 / alpha
        if float(grad.abs().max()) < 1e-12:
            break
        step = torch.linalg.solve(g + torch.diag(1.0 / alpha**2), grad)
        decrement = (
            float(grad @ step) ** 0.5
        )  # self-concordant damping: 1 / (1 + lambda) far from the optimum
        shrink = torch.where(step > 0, alpha / step, torch.inf)  # and never cross the boundary alpha > 0
        t = min(1.0 if decrement < 0.25 else 1.0 / (1.0 + decrement), 0.99 * float(shrink.min()))
        alpha = alpha - t * step
    return alpha.to(gramian)


MEAN_SCALED = {"mgda", "imtl_g", "aligned_mtl", "upgrad", "cagrad"}
