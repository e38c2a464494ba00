"""Long-tail baselines (class-balanced loss, logit adjustment, balanced sampling), group-aware k-fold and
leave-one-subject-out study protocols, and the compute record (FLOPs per clip, parameters)."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_square_dataset, square_config, whole_and_resumed
from mtlhar.config import RunConfig, TaskConfig, from_dict
from mtlhar.data.manifest import Manifest
from mtlhar.data.splits import protocol_folds
from mtlhar.errors import ConfigError
from mtlhar.evaluate import load_run, predict_outputs
from mtlhar.objectives import class_balanced_weights, logit_adjustment
from mtlhar.provenance import count_flops
from mtlhar.study import StudySpec, check_protocol, run_study
from mtlhar.tasks import build_task
from mtlhar.train import Trainer, balanced_indices, make_dataset


def cfg_of(manifest, tasks=None, **train) -> RunConfig:
    data = square_config(manifest, **train)
    if tasks is not None:
        data["tasks"] = tasks
    return from_dict(RunConfig, data)


def train_counts(manifest: Path, column: str, classes: list[str]) -> list[int]:
    rows = Manifest.read(manifest).rows
    c = Counter(r[column] for r in rows if r["split"] == "train" and r[column])
    return [c[k] for k in classes]


# ---- class-balanced loss ---------------------------------------------------------------------------------
def test_class_balanced_weights_follow_the_effective_number_formula():
    counts, beta = [500, 40, 3, 0], 0.99
    w = class_balanced_weights(counts, beta).double()
    n = np.maximum(np.array(counts, float), 1)  # an absent class counts once
    raw = (1 - beta) / (1 - beta**n)
    expected = raw / raw.sum() * len(counts)
    assert np.allclose(w.numpy(), expected, rtol=1e-6)
    assert w.sum().item() == pytest.approx(len(counts))
    assert w[0] < w[1] < w[2] <= w[3]  # rarer classes weigh more
    assert torch.allclose(class_balanced_weights(counts, 0.0), torch.ones(4))  # beta 0: plain CE
    with pytest.raises(ValueError):
        class_balanced_weights(counts, 1.0)


def test_class_balanced_loss_weights_each_sample_by_its_class():
    task = build_task(TaskConfig(name="a", loss="class_balanced", args={"beta": 0.9}), ["x", "y", "z"])
    task.class_counts = [20, 5, 1]
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 0, 2, 1])
    mask = torch.tensor([True, True, True, False, True, True])
    total, count = task.spec.loss(task, logits, target, mask)
    w = class_balanced_weights([20, 5, 1], 0.9)
    per = F.cross_entropy(logits, target, reduction="none") * w[target]
    assert total.item() == pytest.approx(per[mask].sum().item(), rel=1e-6)
    assert count.item() == 5
    task.class_counts = None
    with pytest.raises(ConfigError, match="class counts of the training split"):
        task.spec.loss(task, logits, target, mask)


def test_longtail_options_are_validated_with_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"tasks.0.loss.*'focal'.*class_balanced"):
        build_task(TaskConfig(name="a", loss="focal"), ["x", "y"], where="tasks.0")
    with pytest.raises(ConfigError, match=r"tasks.0.args.beta.*\[0, 1\)"):
        build_task(TaskConfig(name="a", loss="class_balanced", args={"beta": 1.5}), ["x"], where="tasks.0")
    with pytest.raises(ConfigError, match=r"tasks.1.logit_adjust.*'classification'"):
        build_task(TaskConfig(name="m", kind="multilabel", logit_adjust=1.0), ["x", "y"], where="tasks.1")
    with pytest.raises(ConfigError, match=r"tasks.0.logit_adjust.*>= 0"):
        build_task(TaskConfig(name="a", logit_adjust=-1.0), ["x", "y"], where="tasks.0")


# ---- logit adjustment ------------------------------------------------------------------------------------
def test_logit_adjustment_shifts_the_training_loss_only():
    task = build_task(TaskConfig(name="a", logit_adjust=1.5), ["x", "y", "z"])
    task.class_counts = [60, 30, 10]
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 2, 1])
    mask = torch.ones(5, dtype=torch.bool)
    offset = 1.5 * torch.log(torch.tensor([0.6, 0.3, 0.1]))
    assert torch.allclose(logit_adjustment([60, 30, 10], 1.5), offset, atol=1e-6)
    total, _ = task.spec.loss(task, logits, target, mask)
    expected = F.cross_entropy(logits + offset, target, reduction="sum")
    plain = F.cross_entropy(logits, target, reduction="sum")
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert abs(total.item() - plain.item()) > 1e-3
    # the rare class needs a larger margin in training: its loss grows, the frequent class's shrinks
    rare = task.spec.loss(task, logits[2:3], target[2:3], mask[2:3])[0]
    assert rare.item() > F.cross_entropy(logits[2:3], target[2:3]).item()


def test_trainer_counts_train_split_adjusts_loss_and_evaluates_raw_logits(squares, tmp_path):
    tasks = [
        {"name": "direction", "logit_adjust": 1.0},
        {"name": "colour", "role": "auxiliary", "loss": "class_balanced", "args": {"beta": 0.9}},
    ]
    trainer = Trainer(cfg_of(squares, tasks, steps=2, eval_every=2, checkpoint_every=2), tmp_path / "r")
    by = {t.name: t for t in trainer.tasks}
    for name in ("direction", "colour"):
        assert by[name].class_counts == train_counts(squares, name, by[name].classes)
    batch = trainer._to_device(next(trainer._batches()))
    losses, _, _, out = trainer.compute_losses(batch)
    logits = out.heads["direction"].output.float()
    m = batch["mask"]["direction"]
    prior = torch.tensor(by["direction"].class_counts, dtype=torch.float) / sum(by["direction"].class_counts)
    ce = F.cross_entropy(logits + prior.log(), batch["targets"]["direction"], reduction="none")
    assert losses["direction"].item() == pytest.approx(ce[m].mean().item(), rel=1e-5)
    trainer.fit(log=None)
    # saved with the run: eval / predict rebuild the same tasks, and the evaluated outputs are raw logits
    saved = {t["name"]: t for t in json.loads((tmp_path / "r" / "tasks.json").read_text())}
    assert saved["direction"]["class_counts"] == by["direction"].class_counts
    assert saved["direction"]["logit_adjust"] == 1.0 and saved["colour"]["loss"] == "class_balanced"
    model, loaded, cfg = load_run(tmp_path / "r")
    lt = {t.name: t for t in loaded}
    assert (
        lt["direction"].class_counts == by["direction"].class_counts and lt["direction"].logit_adjust == 1.0
    )
    ds = make_dataset(cfg, Manifest.read(squares), loaded, "test", train=False, cache=False)
    pred = predict_outputs(model, ds, device=torch.device("cpu"), batch_size=64)
    from mtlhar.data.dataset import collate

    x = collate([ds[i] for i in range(len(ds))])["inputs"]
    with torch.no_grad():
        raw = model(x, mode="eval").heads["direction"].output.float().numpy()
    assert np.allclose(pred["outputs"]["direction"], raw, atol=1e-6)


# ---- balanced sampling -----------------------------------------------------------------------------------
def test_balanced_indices_draw_classes_uniformly_and_deterministically():
    labels = [0] * 900 + [1] * 90 + [2] * 10 + [-1] * 50  # 90:9:1 imbalance plus unlabelled clips
    draw = lambda seed, n=6000: balanced_indices(labels, n, torch.Generator().manual_seed(seed))  # noqa: E731
    idx = draw(3)
    freq = Counter(labels[i] for i in idx)
    assert -1 not in freq  # unlabelled clips are never drawn
    for c in (0, 1, 2):
        assert abs(freq[c] / len(idx) - 1 / 3) < 0.03
    assert draw(3) == idx and draw(4) != idx
    assert len(set(i for i in idx if labels[i] == 2)) == 10  # the rare class's clips are all used


def test_balanced_sampler_epoch_order_is_per_seed_and_epoch(squares, tmp_path):
    tasks = [{"name": "direction"}, {"name": "colour", "role": "auxiliary"}]
    kw = {"sampler": "balanced", "balance_task": "direction", "steps": 6, "checkpoint_every": 3}
    a = Trainer(cfg_of(squares, tasks, **kw), tmp_path / "a")
    b = Trainer(cfg_of(squares, tasks, **kw), tmp_path / "b")
    assert a._epoch_order(0) == b._epoch_order(0) and a._epoch_order(1) == b._epoch_order(1)
    assert a._epoch_order(0) != a._epoch_order(1)
    drawn = [i for batch in a._epoch_order(0) for i in batch]
    assert len(drawn) == a.n_train_batches * 8
    assert all(a.balance_labels[i] >= 0 for i in drawn)  # clips without a direction label are not drawn
    c = Trainer(cfg_of(squares, tasks, **{**kw, "seed": 1}), tmp_path / "c")
    assert c._epoch_order(0) != a._epoch_order(0)
    with pytest.raises(
        ConfigError, match=r"train.balance_task.*allowed values are \['direction', 'colour'\]"
    ):
        Trainer(cfg_of(squares, tasks, sampler="balanced", balance_task="speed"), tmp_path / "d")


def test_resume_with_balanced_sampler_is_bitwise_identical(squares, tmp_path):
    tasks = [{"name": "direction"}, {"name": "colour", "role": "auxiliary"}]
    kw = {"sampler": "balanced", "balance_task": "colour", "steps": 7, "checkpoint_every": 3, "eval_every": 7}
    whole, resumed = whole_and_resumed(
        lambda d: Trainer(cfg_of(squares, tasks, **kw), d), tmp_path, kill_at=5
    )
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- group-aware protocols -------------------------------------------------------------------------------
def _groups(seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"s{g}" for g in rng.integers(0, 7, 200)]  # 7 subjects of different sizes


@pytest.mark.parametrize("kind", ["kfold", "loso"])
def test_protocol_folds_partition_groups_without_leakage(kind):
    groups = _groups()
    folds = protocol_folds(groups, kind=kind, k=3, val=0.2, seed=0)
    assert len(folds) == (3 if kind == "kfold" else 7)
    tested = Counter()
    for train, val, test in folds:
        assert len(train) and len(val) and len(test)
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(groups)))
        parts = [{groups[i] for i in p} for p in (train, val, test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        tested.update(parts[2])
        if kind == "loso":
            assert len(parts[2]) == 1
    assert set(tested) == set(groups) and set(tested.values()) == {1}  # each group tested exactly once
    assert protocol_folds(groups, kind=kind, k=3, val=0.2, seed=0)[0][1].tolist() == folds[0][1].tolist()


def test_protocol_config_errors_name_the_key():
    spec = lambda **p: StudySpec(name="x", base={}, tasks=[{"name": "a"}], protocol=p)  # noqa: E731
    with pytest.raises(ConfigError, match=r"protocol.kind.*'holdout', 'kfold', 'loso'"):
        check_protocol(spec(kind="bootstrap"))
    with pytest.raises(ConfigError, match=r"protocol.k"):
        check_protocol(spec(kind="kfold", k=1))
    with pytest.raises(ConfigError, match=r"unknown config key 'protocol.folds'"):
        check_protocol(spec(kind="loso", folds=3))
    with pytest.raises(ConfigError, match=r"test_splits.*\['test'\]"):
        check_protocol(StudySpec(name="x", base={}, tasks=[], protocol={"kind": "loso"}, test_splits=["val"]))
    assert check_protocol(spec(kind="kfold", k=4, group="subject"))["k"] == 4
    assert check_protocol(StudySpec(name="x", base={}, tasks=[])) is None


# ---- compute record --------------------------------------------------------------------------------------
def test_flops_of_conv3d_and_linear_match_the_hand_count():
    model = nn.Sequential(
        nn.Conv3d(3, 4, kernel_size=3, padding=1), nn.Flatten(), nn.Linear(4 * 4 * 6 * 6, 5)
    )
    x = torch.zeros(1, 3, 4, 6, 6)
    conv = 2 * (4 * 4 * 6 * 6) * (3 * 3 * 3 * 3)  # 2 x output elements x (in channels x kernel volume)
    linear = 2 * (4 * 4 * 6 * 6) * 5
    assert count_flops(model, x) == conv + linear


# ---- a tiny leave-one-subject-out study ------------------------------------------------------------------
def test_tiny_loso_study_end_to_end(tmp_path):
    manifest = make_square_dataset(tmp_path / "data", n=36)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        r["subject"] = f"p{i % 3}"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = square_config(manifest, steps=2, eval_every=2, checkpoint_every=2)
    cfg.pop("tasks")
    spec = StudySpec(
        name="loso",
        base=cfg,
        tasks=[{"name": "direction"}, {"name": "colour", "role": "auxiliary"}],
        seeds=1,
        variants=[{"name": "mtl"}],
        protocol={"kind": "loso", "group": "subject"},
    )
    out = tmp_path / "study"
    res = run_study(spec, out, log=lambda *_: None)
    assert res["groups"] == {
        "stl_direction": [f"stl_direction_f{f}_s0" for f in range(3)],
        "mtl": [f"mtl_f{f}_s0" for f in range(3)],
    }
    assert sorted(g for f in res["folds"] for g in f["test_groups"]) == ["p0", "p1", "p2"]
    for f, fold in enumerate(res["folds"]):
        fm = Manifest.read(out / "folds" / f"fold{f}" / "manifest.csv")
        by_split = {s: {r["subject"] for r in fm.rows if r["split"] == s} for s in ("train", "val", "test")}
        assert by_split["test"] == set(fold["test_groups"]) and len(by_split["test"]) == 1
        assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"])
        assert not (by_split["val"] & by_split["test"])
        # each fold's run was trained and tested on that fold's manifest
        assert json.loads((out / "runs" / f"mtl_f{f}_s0" / "eval_test.json").read_text())["n"] == 12
    top1 = next(
        e for e in res["summary"] if (e["run"], e["task"], e["metric"]) == ("mtl", "direction", "top1")
    )
    assert top1["n_folds"] == 3 and top1["n_units"] == 3 and len(top1["per_fold"]) == 3
    assert top1["mean"] == pytest.approx(np.mean(top1["per_fold"]))
    assert top1["std"] == pytest.approx(np.std(top1["per_fold"]))
    assert top1["ci_lo"] <= top1["mean"] <= top1["ci_hi"] and "fold x seed" in top1["ci_method"]
    assert res["delta_m_summary"] and res["settings"]["protocol"]["kind"] == "loso"
    for run, c in res["compute"].items():
        assert c["flops_per_clip"] > 0 and c["n_parameters"] > 0 and c["steps"] == 2, run
        prov = res["provenance"][run]
        assert prov["flops_per_clip"] == c["flops_per_clip"] and "FlopCounterMode" in prov["flops_method"]
    assert math.isfinite(res["delta_m"])
    # a second call reuses every run
    again = run_study(spec, out, log=lambda *_: None)
    assert again["summary"] == res["summary"]


def test_study_variants_take_task_options_and_every_shipped_study_config_plans():
    """`task_options` sets a variant's task losses (the long-tail baselines of configs/study-longtail.yaml);
    every study config in configs/ loads and plans its runs."""
    from mtlhar.study import load_study, plan_runs

    configs = Path(__file__).parents[1] / "configs"
    spec = load_study(configs / "study-longtail.yaml")
    plan = {r.group: r for r in plan_runs(spec, seeds=1, quick=True, manifest_path="m.csv")}
    assert set(plan) == {
        "stl_fine",
        "fine_class_balanced",
        "fine_logit_adjusted",
        "fine_balanced_sampling",
        "mtl_fine_coarse",
    }
    fine = {g: r.config.tasks[0] for g, r in plan.items()}
    assert fine["fine_class_balanced"].loss == "class_balanced" and fine["stl_fine"].loss is None
    assert fine["fine_logit_adjusted"].logit_adjust == 1.0 and fine["stl_fine"].logit_adjust is None
    assert plan["fine_balanced_sampling"].config.train.sampler == "balanced"
    assert spec.base["data"]["synth"]["long_tail"] == 20
    spec.variants[0]["task_options"] = {"coarse": {"loss": "class_balanced"}}  # not a task of that variant
    with pytest.raises(ConfigError, match=r"variants\.0\.task_options"):
        plan_runs(spec, seeds=1, quick=True, manifest_path="m.csv")
    for path in sorted(configs.glob("study-*.yaml")):
        plan_runs(load_study(path), seeds=1, quick=True, manifest_path="m.csv")
