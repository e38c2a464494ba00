import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import square_config, whole_and_resumed
from mtlhar.balancing import BALANCERS, GradientBalancer, aggregators, build_balancer, diagnostics
from mtlhar.config import RunConfig, from_dict
from mtlhar.errors import ConfigError
from mtlhar.train import Trainer

GRADIENT = [n for n, (cls, _) in BALANCERS.items() if issubclass(cls, GradientBalancer)]
DETERMINISTIC_AGGREGATORS = {
    "mgda": aggregators.mgda,
    "imtl_g": aggregators.imtl_g,
    "aligned_mtl": aggregators.aligned_mtl,
    "upgrad": aggregators.upgrad,
    "cagrad": aggregators.cagrad,
    "nash_mtl": aggregators.nash_mtl,
}
fast = settings(max_examples=25, deadline=None)


def matrix(seed: int, k: int, d: int) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.flatten() @ b.flatten() / (a.norm() * b.norm()))


# ---- aggregators on fixed task-gradient matrices ------------------------------------------------------
@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4), extra=st.integers(0, 4))
def test_permuting_tasks_permutes_the_weights(seed, k, extra):
    j = matrix(seed, k, k + 1 + extra)  # full row rank: the weights are unique
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(seed))
    for name, fn in DETERMINISTIC_AGGREGATORS.items():
        w, wp = fn(j @ j.T), fn(j[perm] @ j[perm].T)
        d, dp = w @ j, wp @ j[perm]
        assert torch.allclose(d, dp, atol=2e-3 * float(d.norm()) + 1e-9), name


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(2, 8))
def test_mgda_and_upgrad_never_increase_a_loss_to_first_order(seed, k, d):
    j = matrix(seed, k, d)
    scale = float(j.norm(dim=1).max()) ** 2
    # g_t . d >= 0 for every task t, up to the solver's tolerance (Frank-Wolfe for MGDA, exact for UPGrad)
    for fn, tol in ((aggregators.mgda, 1e-2), (aggregators.upgrad, 1e-9)):
        direction = fn(j @ j.T) @ j
        assert (j @ direction >= -tol * scale).all(), fn.__name__


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(2, 8), c=st.floats(0.1, 0.95))
def test_cagrad_stays_in_its_ball_and_improves_the_worst_task(seed, k, d, c):
    j = matrix(seed, k, d)
    g0 = j.mean(0)
    direction = aggregators.cagrad(j @ j.T, c=c, rescale=0) @ j
    assert float((direction - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-4) + 1e-6
    # g0 itself lies in the ball, so the worst-case improvement is at least g0's
    assert float((j @ direction).min()) >= float((j @ g0).min()) - 1e-3 * float(j.norm() ** 2)


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(1, 8))
def test_pcgrad_leaves_non_conflicting_gradients_as_they_are(seed, k, d):
    j = matrix(seed, k, d).abs()  # all pairwise inner products >= 0
    w = aggregators.pcgrad(j @ j.T, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(w, torch.ones(k, dtype=w.dtype))


def test_pcgrad_projects_a_conflicting_pair():
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    d = aggregators.pcgrad(j @ j.T, generator=torch.Generator()) @ j
    # published example: g1 - (g1.g2/|g2|^2) g2 + g2 - (g2.g1/|g1|^2) g1
    g1, g2 = j
    expected = g1 - (g1 @ g2) / (g2 @ g2) * g2 + g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(d, expected)


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(5, 8))
def test_imtl_g_and_nash_mtl_satisfy_their_defining_equations(seed, k, d):
    j = matrix(seed, k, d)
    g = j @ j.T
    direction = aggregators.imtl_g(g) @ j
    proj = (j @ direction) / j.norm(dim=1)  # equal projections on every unit gradient
    assert torch.allclose(proj, proj.mean().expand(k), rtol=1e-6)
    alpha = aggregators.nash_mtl(g)
    gn = g / g.norm() + 1e-6 * torch.eye(k, dtype=g.dtype)
    assert (alpha > 0).all() and torch.allclose(gn @ alpha, 1 / alpha, rtol=1e-6)


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(1, 8))
def test_dual_cone_projection_satisfies_the_kkt_conditions(seed, k, d):
    j = matrix(seed, k, d)
    g = j @ j.T
    u = torch.eye(k, dtype=g.dtype)
    v = aggregators.dual_cone_projection(u, g)
    gv = v @ g  # row i: G v_i
    tol = 1e-7 * float(g.abs().max()) + 1e-9
    assert (v >= u - 1e-9).all() and (gv >= -tol).all()
    assert ((gv * (v - u)).abs() <= 1e-6 * (1 + float(g.abs().max()) * float(v.abs().max()))).all()


@fast
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5), d=st.integers(1, 8))
def test_wrapped_aggregators_give_torchjd_directions(seed, k, d):
    from torchjd import aggregation as tjd

    j = matrix(seed, k, d)
    g = j @ j.T
    assert torch.allclose(aggregators.mgda(g, epsilon=1e-3, max_iters=100) @ j, tjd.MGDA()(j))
    assert torch.allclose(aggregators.imtl_g(g) @ j, tjd.IMTLG()(j), atol=1e-8)
    assert torch.allclose(aggregators.aligned_mtl(g) @ j, tjd.AlignedMTL()(j), atol=1e-8)
    torch.manual_seed(seed)  # TorchJD's PCGrad draws from the global generator; ours from a given one
    expected = tjd.PCGrad()(j)
    ours = aggregators.pcgrad(g, generator=torch.Generator().manual_seed(seed)) @ j
    assert torch.allclose(ours, expected, atol=1e-8)


def test_diagnostics_of_known_gradients():
    d = diagnostics(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), ["a", "b"])
    assert d["cos/a__b"] == pytest.approx(0.0) and d["gms/a__b"] == pytest.approx(0.8)
    assert d["cond"] == pytest.approx(2.0) and d["norm/b"] == pytest.approx(2.0)
    assert math.isinf(diagnostics(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))["cond"])


# ---- balancers on a tiny model -------------------------------------------------------------------------
class Tiny(torch.nn.Module):
    def __init__(self, k: int):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))
        self.heads = torch.nn.ModuleList(torch.nn.Linear(8, 1) for _ in range(k))
        self.x, self.y = torch.randn(16, 6), torch.randn(k, 16, 1)

    def losses(self, names, factors=None):
        shared = self.encoder(self.x)
        factors = factors or {}
        out = {
            n: ((h(shared) - self.y[i]) ** 2).mean() * factors.get(n, 1.0)
            for i, (n, h) in enumerate(zip(names, self.heads))
        }
        return out, shared


def run_step(balancer, model, names, present, step, factors=None, scale=lambda x: x):
    losses, shared = model.losses(names, factors)
    if balancer.needs_gradients:
        return balancer.backward(
            losses,
            present,
            step=step,
            extra=None,
            shared=shared,
            shared_params=list(model.encoder.parameters()),
            scale=scale,
        )
    total, w = balancer.combine(losses, present, step)
    scale(total).backward()
    return w


def configs():
    for name in BALANCERS:
        yield name, {}
        if name in GRADIENT:
            yield name, {"mode": "parameters"}


@pytest.mark.parametrize("name,args", list(configs()))
def test_one_task_moves_like_plain_training(name, args):
    model = Tiny(1)
    b = build_balancer(name, ["a"], {"a": 1.0}, args)
    for step in range(3):  # later steps too: statistics (DWA, FAMO, GradNorm) have kicked in
        model.zero_grad()
        w = run_step(b, model, ["a"], {"a": True}, step, scale=lambda x: x * 4.0)
        got = torch.cat([p.grad.flatten() for p in model.parameters()])
        model.zero_grad()
        losses, _ = model.losses(["a"])
        losses["a"].backward()
        plain = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert w["a"] > 0 and cosine(got, plain) > 1 - 1e-6, (step, w)


@pytest.mark.parametrize("name,args", list(configs()))
def test_absent_task_gets_zero_weight_and_does_not_touch_statistics(name, args):
    """Two runs differ only in the (garbage) loss of task b on steps where b is unlabelled: the weights,
    the gradients and the balancer's state must not see the difference."""
    names = ["a", "b", "c"]
    results = []
    for garbage in (1e3, 1e-3):
        model = Tiny(3)
        b = build_balancer(
            name, names, {}, {**args, **({"diagnostics_every": 1} if name in GRADIENT else {})}
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        history = []
        for step in range(6):
            absent = step in (2, 3)
            present = {"a": True, "b": not absent, "c": True}
            model.zero_grad()
            for p in b.parameters():
                p.grad = None
            w = run_step(b, model, names, present, step, {"b": garbage} if absent else None)
            if absent:
                assert w["b"] == 0.0 and w["a"] > 0 and w["c"] > 0
            if absent and b.parameters():
                assert b.parameters()[0].grad[1] == 0.0
            history.append((w, [p.grad.clone() for p in model.parameters()]))
            opt.step()
        results.append((history, b.state_dict()))
    (h1, s1), (h2, s2) = results
    for (w1, g1), (w2, g2) in zip(h1, h2):
        assert w1 == pytest.approx(w2) and all(torch.allclose(x, y) for x, y in zip(g1, g2))
    assert repr(s1) == repr(s2)


# rlw and pcgrad are random; MGDA's weights are not unique when gradients coincide (any mix is min-norm)
@pytest.mark.parametrize("name", [n for n in BALANCERS if n not in ("rlw", "pcgrad", "mgda")])
def test_equal_losses_and_gradients_give_equal_weights(name):
    """Symmetric tasks: a deterministic method has no reason to prefer one (permutation invariance)."""
    model = Tiny(3)
    model.heads[1].load_state_dict(model.heads[0].state_dict())
    model.heads[2].load_state_dict(model.heads[0].state_dict())
    model.y[:] = model.y[0]
    b = build_balancer(name, ["a", "b", "c"], {}, {})
    for step in range(3):
        w = run_step(b, model, ["a", "b", "c"], dict.fromkeys("abc", True), step)
    assert w["a"] == pytest.approx(w["b"]) == pytest.approx(w["c"])


def test_loss_level_weights_renormalise_over_labelled_tasks():
    for name in ("equal", "dwa", "rlw", "famo", "uncertainty"):
        b = build_balancer(name, ["a", "b", "c", "d"], {}, {})
        losses = {t: torch.tensor(1.0 + i) for i, t in enumerate("abcd")}
        _, w = b.combine(losses, {"a": True, "b": False, "c": True, "d": False}, 0)
        assert w["b"] == w["d"] == 0.0 and w["a"] + w["c"] == pytest.approx(4.0), name


def test_dwa_follows_the_published_formula():
    b = build_balancer("dwa", ["a", "b"], {}, {"temperature": 2.0})
    for step, (la, lb) in enumerate([(1.0, 1.0), (0.5, 1.0)]):
        b.combine({"a": torch.tensor(la), "b": torch.tensor(lb)}, {"a": True, "b": True}, step)
    _, w = b.combine({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, {"a": True, "b": True}, 2)
    ea, eb = math.exp(0.5 / 2), math.exp(1.0 / 2)
    assert w["a"] == pytest.approx(2 * ea / (ea + eb)) and w["b"] == pytest.approx(2 * eb / (ea + eb))


def test_rlw_is_seeded_and_resumable():
    a = build_balancer("rlw", ["x", "y"], {}, {"seed": 3})
    present = {"x": True, "y": True}
    first = [a.weights(present, s) for s in range(2)]
    state = a.state_dict()
    later = [a.weights(present, s) for s in range(2, 5)]
    b = build_balancer("rlw", ["x", "y"], {}, {"seed": 3})
    b.load_state_dict(state)
    assert [b.weights(present, s) for s in range(2, 5)] == later
    assert first[0] != first[1] and sum(first[0].values()) == pytest.approx(2.0)


@pytest.mark.parametrize("name", [n for n in GRADIENT if n != "gradnorm"])
def test_gradient_methods_reuse_weights_between_updates(name, monkeypatch):
    """`update_every: 3`: gradients and a solve on steps 0 and 3 only; the steps between reuse the weights
    (renormalised when a task is unlabelled) and the state carries them over a resume."""
    model = Tiny(3)
    b = build_balancer(name, ["a", "b", "c"], {}, {"update_every": 3})
    solves = []
    original = type(b).solve
    monkeypatch.setattr(type(b), "solve", lambda self, g: solves.append(1) or original(self, g))
    every = dict.fromkeys("abc", True)
    ws = [run_step(b, model, ["a", "b", "c"], every, s) for s in range(3)]
    assert len(solves) == 1 and ws[1] == pytest.approx(ws[0]) and ws[2] == pytest.approx(ws[0])
    partial = run_step(b, model, ["a", "b", "c"], {"a": True, "b": False, "c": True}, 2)
    assert partial["b"] == 0 and sum(partial.values()) == pytest.approx(sum(ws[0].values()))
    state = b.state_dict()
    again = build_balancer(name, ["a", "b", "c"], {}, {"update_every": 3})
    again.load_state_dict(state)
    assert run_step(again, model, ["a", "b", "c"], every, 4) == pytest.approx(ws[0])  # the resumed cache
    run_step(b, model, ["a", "b", "c"], every, 3)
    assert len(solves) == 2
    with pytest.raises(ConfigError, match="update_every"):
        build_balancer(name, ["a"], {}, {"update_every": 0})


def test_unknown_balancer_arguments_are_named():
    with pytest.raises(ConfigError, match=r"unknown keys \['tmp'\] for 'dwa'.*temperature"):
        build_balancer("dwa", ["a"], {}, {"tmp": 2})
    with pytest.raises(ConfigError, match="mode"):
        build_balancer("pcgrad", ["a"], {}, {"mode": "both"})


# ---- through the Trainer ------------------------------------------------------------------------------
def cfg_of(manifest, balancer, **train):
    return from_dict(RunConfig, {**square_config(manifest, **train), "balancer": balancer})


@pytest.mark.parametrize(
    "balancer",
    [
        {"name": "uncertainty"},
        {"name": "pcgrad", "args": {"diagnostics_every": 2}},
        {"name": "upgrad", "args": {"mode": "parameters", "diagnostics_every": 2}},
    ],
)
def test_trainer_trains_and_logs_weights(squares, tmp_path, balancer):
    trainer = Trainer(cfg_of(squares, balancer, steps=4, eval_every=4, checkpoint_every=4), tmp_path / "r")
    trainer.fit(log=None)
    recs = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["split"] == "train"]
    assert len(train) == 4
    assert all(set(r["weights"]) == {"direction", "colour", "speed", "tags"} for r in train)
    if balancer["name"] == "uncertainty":
        log_vars = trainer.balancer.log_vars
        assert any(log_vars is p for g in trainer.opt.param_groups for p in g["params"])
        assert not torch.equal(log_vars.detach(), torch.zeros(4))
    else:
        diag = [r["diagnostics"] for r in train if "diagnostics" in r]
        assert [d["step"] for d in diag] == [0, 2] and "cos/direction__colour" in diag[0]


@pytest.mark.parametrize("balancer", [{"name": "dwa"}, {"name": "pcgrad"}])
def test_resume_with_a_stateful_balancer_is_bitwise_identical(squares, tmp_path, balancer):
    settings_ = {"steps": 4, "eval_every": 4, "checkpoint_every": 2}
    whole, resumed = whole_and_resumed(  # killed after the checkpoint of step 2
        lambda d: Trainer(cfg_of(squares, balancer, **settings_), d), tmp_path, kill_at=3
    )
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert repr(whole.balancer.state_dict()) == repr(resumed.balancer.state_dict())


def test_static_weights_from_balancer_args_override_task_weights():
    b = build_balancer(
        "static", ["cls", "cap"], {"cls": 1.0, "cap": 1.0}, {"weights": {"cls": 0.1, "cap": 0.9}}
    )
    losses = {"cls": torch.tensor(2.0), "cap": torch.tensor(4.0)}
    total, weights = b.combine(losses, {"cls": True, "cap": True}, 0)
    assert weights == pytest.approx({"cls": 0.1, "cap": 0.9})
    assert float(total) == pytest.approx(0.1 * 2 + 0.9 * 4)
    with pytest.raises(ConfigError, match="not tasks"):
        build_balancer("static", ["cls"], {}, {"weights": {"other": 1.0}})


@pytest.mark.parametrize(
    "balancer", [{"name": "pcgrad"}, {"name": "upgrad", "args": {"mode": "parameters"}}, {"name": "famo"}]
)
def test_gradient_methods_with_amp_and_accumulation(squares, tmp_path, balancer):
    """Mixed precision (bfloat16 autocast on CPU) with 2 micro-batches per step: the aggregated update is
    finite, every task keeps a weight, and the result equals the same run made again (deterministic)."""
    settings_ = {"steps": 3, "eval_every": 3, "checkpoint_every": 3, "accumulate": 2, "amp": "on"}
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(cfg_of(squares, balancer, **settings_), tmp_path / name)
        assert trainer.amp and trainer.amp_dtype == torch.bfloat16
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.fit(log=None)
        after = trainer.model.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        assert any(not torch.equal(before[k], after[k]) for k in after)
        recs = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in recs if r["split"] == "train"]
        assert len(train) == 3 and all(len(r["weights"]) == 4 for r in train)
        runs.append(after)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


class Deep(torch.nn.Module):
    """Shared tensor in the middle of the encoder: layers after it are shared by the heads (as a dense
    decoder on an early feature map makes it), plus a cross-task term over two heads."""

    def __init__(self, k: int):
        super().__init__()
        torch.manual_seed(1)
        self.stem = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh())
        self.trunk = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
        self.heads = torch.nn.ModuleList(torch.nn.Linear(8, 2) for _ in range(k))
        self.dense = torch.nn.Linear(8, 6)  # reads the shared tensor directly
        self.x, self.y = torch.randn(16, 6), torch.randn(k, 16, 2)

    def losses(self):
        shared = self.stem(self.x)
        z = self.trunk(shared)
        out = {f"t{i}": ((h(z) - self.y[i]) ** 2).mean() for i, h in enumerate(self.heads)}
        out["dense"] = ((self.dense(shared) - self.x) ** 2).mean()
        extra = (self.heads[0](z) - self.heads[1](z)).pow(2).mean() * 0.1
        return out, shared, extra


@pytest.mark.parametrize("name", GRADIENT)
def test_single_traversal_delivery_equals_the_summed_backward(name):
    """`params=` delivers the kept per-task gradients instead of backpropagating the weighted sum again:
    the gradients of every parameter must be the same (an unlabelled task, a cross-task term and a loss
    scale included), and so must the weights."""
    if name == "gradnorm":
        pytest.skip("GradNorm weights losses on the last shared layer; it has no representation mode")
    grads, weights = [], []
    for deliver in (False, True):
        model = Deep(3)
        tasks = ["t0", "t1", "t2", "dense"]
        b = build_balancer(name, tasks, {}, {})
        for step in range(3):
            model.zero_grad(set_to_none=True)
            losses, shared, extra = model.losses()
            present = {"t0": True, "t1": step != 1, "t2": True, "dense": True}
            w = b.backward(
                losses,
                present,
                step=step,
                extra=extra,
                shared=shared,
                shared_params=list(model.stem.parameters()),
                scale=lambda v: v * 8.0,
                params=list(model.parameters()) if deliver else (),
            )
        weights.append(w)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert weights[0] == pytest.approx(weights[1])
    for n, g in grads[0].items():  # same up to float32 rounding (summation order differs)
        assert float((g - grads[1][n]).abs().max()) <= 1e-5 * float(g.abs().max()), n


def test_gradnorm_takes_norms_only_every_k_steps(monkeypatch):
    """GradNorm `update_every: 2`: the per-task gradients of the last shared layer are taken on steps 0,
    2, ... only; the weights move only after those steps, and the steps between still train every task."""
    from mtlhar.balancing import gradient

    calls = []
    original = gradient.task_gradients
    monkeypatch.setattr(gradient, "task_gradients", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = Tiny(2)
    b = build_balancer("gradnorm", ["a", "b"], {}, {"update_every": 2, "lr": 0.5})
    every = dict.fromkeys("ab", True)
    ws = [run_step(b, model, ["a", "b"], every, s) for s in range(4)]
    assert len(calls) == 2  # steps 0 and 2
    # an update is applied when the next step begins: step 0's at step 1, none at step 2, step 2's at step 3
    assert ws[0] == {"a": 1.0, "b": 1.0} and ws[1] != ws[0]
    assert ws[2] == ws[1] and ws[3] != ws[2]
    with pytest.raises(ConfigError, match="update_every"):
        build_balancer("gradnorm", ["a"], {}, {"update_every": 0})
