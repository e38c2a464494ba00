"""Task kinds: one contract test over every registered kind (as timm tests every model of `list_models()`),
and a kind defined here, outside the package, that trains, evaluates, goes through a two-seed study and
into the report with no edit to the package.

The kind below is the per-clip (vector) form of frame regression: a cell lists one value per frame. Its dense
form, a per-frame map read from a second stream at the sample's frame indices (`TaskKind.target_stream` /
`target_from_stream`), waits for the dataset to read streams for targets (data/dataset.py, in progress).
"""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import make_square_dataset, moving_square, square_config
from mtlhar.config import RunConfig, TaskConfig, from_dict
from mtlhar.errors import ConfigError, DataError
from mtlhar.kinds import KINDS, TaskKind, metric_direction, register, unregister
from mtlhar.kinds.base import check_kind, plan_flipped
from mtlhar.objectives import HeadOutput
from mtlhar.tasks import build_task, task_from_dict


class FramePosition(TaskKind):
    """The square's horizontal position (0..1) in each of `args.frames` frames: a vector per clip."""

    name = "frame_position"
    default_loss = "huber"
    losses = ("huber", "mse")
    default_metrics = ("mae", "end_error")
    default_main = "mae"  # the mean over a clip's frames, then over clips: a per-clip score
    metric_directions = {"mae": False, "end_error": False}
    needs_classes = False
    args = {"frames": 8, "delta": 0.1}
    per_clip_metrics = ("mae",)

    def check_args(self, args, where):
        if isinstance(args["frames"], bool) or not isinstance(args["frames"], int) or args["frames"] < 1:
            raise ConfigError(
                f"config key '{where}.frames': expected an integer >= 1, got {args['frames']!r}"
            )

    def out_dim(self, task):
        return task.args["frames"]

    def target_from_cell(self, task, cell, where):
        if cell == "":
            return self.empty_target(task)
        values = [float(v) for v in cell.split(task.separator)]
        if len(values) != task.args["frames"]:
            raise DataError(
                f"{where}: task '{task.name}' expects {task.args['frames']} positions, got {cell!r}"
            )
        return torch.tensor(values), torch.tensor([True])

    def move_target(self, task, target, plan):
        return 1.0 - target if plan_flipped(plan) else target  # a mirrored clip: positions from the right

    def loss(self, task, output, target, mask):
        m = torch.broadcast_to(mask, output.shape).float()
        safe = torch.where(m > 0, target, output.detach())
        if task.loss == "huber":
            per = torch.nn.functional.huber_loss(output, safe, reduction="none", delta=task.args["delta"])
        else:
            per = (output - safe) ** 2
        return (per * m).sum() + 0.0 * output.sum(), m.sum()

    def metrics(self, task, output, target, mask):
        valid = np.asarray(mask).reshape(len(mask), -1)[:, 0].astype(bool)
        if not valid.any():
            return {}
        err = np.abs(np.asarray(output, np.float64) - np.asarray(target, np.float64))[valid]
        res = {"mae": float(err.mean()), "end_error": float(err[:, -1].mean())}
        return {k: v for k, v in res.items() if k in task.metrics}

    def per_clip_scores(self, task, output, target, mask):
        valid = np.asarray(mask).reshape(len(mask), -1)[:, 0].astype(bool)
        return np.abs(np.asarray(output, np.float64) - target).mean(1), valid

    def average_views(self, task, outputs, starts):
        counts = np.diff(np.append(starts, len(outputs)))[:, None]
        return (np.add.reduceat(outputs.astype(np.float64), starts, axis=0) / counts).astype(outputs.dtype)

    def example(self):
        return {"task": {"args": {"frames": 3}}, "classes": None, "cells": ["0|0.5|1", "", "0.2|0.2|0.3"]}


@pytest.fixture
def frame_kind():
    kind = register(FramePosition())
    yield kind
    unregister(kind.name)


# ---------------------------------------------------------------------------------------------------------
# The contract, for every registered kind


def _example_task(kind: TaskKind):
    ex = kind.example()
    return build_task(TaskConfig(name="t", kind=kind.name, **ex["task"]), ex["classes"]), ex["cells"]


def _eval_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as evaluation gives it to `metrics`: [N] for per-clip masks, else [N, ...] flattened."""
    m = mask.reshape(len(mask), -1)
    return m[:, 0] if m.shape[1] == 1 else m


def _targets(kind, task, cells):
    labels = [kind.target_from_row(task, {task.column: c}, f"row {i}") for i, c in enumerate(cells)]
    empty_target, empty_mask = kind.empty_target(task)
    assert not empty_mask.any()
    for (target, mask), cell in zip(labels, cells):
        assert target.shape == empty_target.shape and target.dtype == empty_target.dtype
        assert mask.shape == empty_mask.shape and mask.dtype == torch.bool
        torch.broadcast_to(mask, target.shape)  # the mask covers the target
        assert bool(mask.any()) == (cell != "")
        assert kind.move_target(task, target, None) is target  # no plan: unchanged
        assert kind.move_target(task, target, SimpleNamespace(flip=True)).shape == target.shape
    perm = kind.flip_permutation(task)
    assert perm is None or sorted(perm.tolist()) == list(range(kind.out_dim(task)))
    counts = kind.class_counts(task, labels)
    if counts is not None:
        assert len(counts) == len(task.classes) and sum(counts) == sum(c != "" for c in cells)
    return labels, torch.stack([t for t, _ in labels]), torch.stack([m for _, m in labels])


def _heads(kind, task, target, mask):
    """Every tap layout: train outputs, loss and its count, gradients, eval outputs of the declared shapes."""
    n = len(target)
    taps = {"vector": torch.randn(n, 6), "sequence": torch.randn(n, 3, 6), "map": torch.randn(n, 6, 3, 2, 2)}
    for layout, tap in taps.items():
        torch.manual_seed(0)
        head = kind.build_head(task, 6, layout)
        out = head(tap, target, "train")
        assert isinstance(out, HeadOutput)
        assert tuple(out.output.shape) == (n, *kind.output_shape(task, "train")), layout
        total, count = kind.loss(task, out.output, target, mask)
        assert total.ndim == 0 and torch.isfinite(total)
        assert float(count) == float(kind.label_count(task, target, mask)) > 0
        total.backward()
        assert any(p.grad is not None for p in head.parameters())
        head.eval()
        with torch.no_grad():
            ev = head(tap, None, "eval").output
        assert tuple(ev.shape) == (n, *kind.output_shape(task, "eval")), layout
    return head, taps["map"], ev


def _check_scores(kind, task, output, target, mask):
    m = _eval_mask(mask)
    res = kind.metrics(task, output, target, m)
    assert res and set(res) <= set(task.metrics) <= set(kind.metric_directions)
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())
    assert kind.metrics(task, output, target, np.zeros_like(m)) == {}  # nothing labelled
    assert task.main_metric == kind.default_main and kind.default_main in kind.metric_directions
    for metric in kind.per_clip_metrics:
        scores, valid = kind.per_clip_scores(task, output, target, mask)
        assert scores.shape == valid.shape == (len(output),)
        assert np.mean(scores[valid]) == pytest.approx(res[metric])  # the metric is their mean
    if not kind.per_clip_metrics:
        with pytest.raises(ValueError):
            kind.per_clip_scores(task, output, target, mask)
    for metric, fn in kind.set_metrics.items():
        valid = np.broadcast_to(mask.reshape(len(mask), *[1] * (target.ndim - 1)), target.shape)
        assert fn(output, target, valid) == pytest.approx(res[metric])
    # identical views average to an output with the same metrics
    views = np.repeat(output, 2, axis=0)
    merged = kind.average_views(task, views, np.arange(0, len(views), 2))
    assert merged.shape == output.shape
    assert kind.metrics(task, merged, target, m) == pytest.approx(res)
    return res


def _check_report_hooks(kind, task, output, target, mask):
    n = len(output)
    cm = kind.confusion(task, output, target, mask)
    labelled = int(np.asarray(mask).reshape(n, -1)[:, 0].sum())
    if cm is not None:
        assert cm.shape == (len(task.classes),) * 2 and cm.sum() == labelled
    f1 = kind.per_class_f1(task, output, target, mask)
    assert f1 is None or f1.shape == (len(task.classes),)
    for i in range(n):
        truth, guess, ok = kind.describe(task, output[i], target[i], mask[i])
        assert isinstance(truth, str) and isinstance(guess, str) and ok in (None, True, False)
        if not np.asarray(mask[i]).any():
            assert truth == "(no label)" and ok is None
        else:
            assert kind.clip_correct(task, output[i], target[i], mask[i]) in (None, True, False)
    assert len(kind.decode(task, torch.as_tensor(output))) == n


@pytest.mark.parametrize("name", [*KINDS, FramePosition.name])
def test_every_registered_kind_keeps_the_contract(name, request):
    if name == FramePosition.name:
        request.getfixturevalue("frame_kind")
    kind = KINDS[name]
    assert isinstance(kind, TaskKind)
    check_kind(kind, list(KINDS.values()))
    task, cells = _example_task(kind)
    assert task.spec is kind and task.higher_is_better == kind.metric_directions[task.main_metric]
    labels, target, mask = _targets(kind, task, cells)
    head, tap, ev = _heads(kind, task, target, mask)
    output, tgt, msk = ev.numpy(), target.numpy(), mask.numpy()
    _check_scores(kind, task, output, tgt, msk)
    _check_report_hooks(kind, task, output, tgt, msk)
    if kind.saliency:
        head.train()
        score, cls = kind.saliency_score(task, head(tap[:1], None, "eval").output.float())
        assert score.ndim == 0 and score.requires_grad
        assert cls is None or 0 <= cls < kind.out_dim(task)
    if kind.transfers:
        for probe in ("linear", "mlp"):
            out = kind.build_probe(task, 6, probe, 4, 0.0)(torch.randn(len(target), 6))
            assert out.shape == (len(target), kind.out_dim(task))
            assert torch.isfinite(kind.loss(task, out, target, mask)[0])
    assert task_from_dict(json.loads(json.dumps(task.to_dict()))).spec is kind


def test_register_checks_the_contract_and_keeps_one_direction_per_metric(frame_kind):
    assert metric_direction("end_error") is False and metric_direction("top1") is True
    with pytest.raises(ValueError, match="already registered"):
        register(FramePosition())

    class Upside(FramePosition):
        name = "upside"
        metric_directions = {"mae": True, "end_error": False}

    with pytest.raises(ConfigError, match="'mae' is higher-is-better here but not in kind"):
        register(Upside())

    class NoDirection(FramePosition):
        name = "no_direction"
        metric_directions = {"mae": False}

    with pytest.raises(ConfigError, match=r"metric_directions lacks \['end_error'\]"):
        register(NoDirection())
    assert "upside" not in KINDS and "no_direction" not in KINDS


def test_config_kinds_come_from_the_registry(frame_kind):
    base = {"data": {"manifest": "m.csv"}}
    cfg = from_dict(RunConfig, {**base, "tasks": [{"name": "x", "kind": "frame_position"}]})
    assert cfg.tasks[0].kind == "frame_position"
    unregister("frame_position")
    try:
        with pytest.raises(
            ConfigError, match=r"'tasks\.0\.kind': got 'frame_position', allowed values are 'classification'"
        ):
            from_dict(RunConfig, {**base, "tasks": [{"name": "x", "kind": "frame_position"}]})
    finally:
        register(frame_kind)
    with pytest.raises(ConfigError, match=r"'tasks\.0\.temporal': got 'bogus'.*'lstm'"):
        from_dict(RunConfig, {**base, "tasks": [{"name": "x", "temporal": "bogus"}]})


def test_a_kind_without_a_flip_rule_refuses_one_and_class_kinds_swap():
    task = build_task(TaskConfig(name="s", kind="regression", args={"flip_swap": [["a", "b"]]}))
    with pytest.raises(ConfigError, match="cannot swap labels on a flip"):
        KINDS["regression"].flip_permutation(task)
    task = build_task(TaskConfig(name="d", args={"flip_swap": [["left", "right"]]}), ["left", "right", "up"])
    kind = task.spec
    assert kind.move_target(task, torch.tensor(0), SimpleNamespace(flip=True)) == 1
    assert kind.move_target(task, torch.tensor(2), SimpleNamespace(params=SimpleNamespace(flip=True))) == 2
    assert kind.move_target(task, torch.tensor(0), SimpleNamespace(flip=False)) == 0
    multi = build_task(TaskConfig(name="m", kind="multilabel", args={"flip_swap": [["a", "b"]]}), ["a", "b"])
    moved = multi.spec.move_target(multi, torch.tensor([1.0, 0.0]), True)
    assert moved.tolist() == [0.0, 1.0]


# ---------------------------------------------------------------------------------------------------------
# The kind defined above, end to end


def _positions_manifest(root):
    """The square dataset with a `position` column: the square's centre x / width in each of its 8 frames."""
    path = make_square_dataset(root, n=24)
    rows = list(csv.DictReader(open(path)))
    for i, r in enumerate(rows):
        clip = moving_square(i % 2, (i // 2) % 3)
        xs = [float(np.flatnonzero(f.max(axis=(0, 2)))[[0, -1]].mean()) / clip.shape[2] for f in clip]
        r["position"] = "" if i % 7 == 3 else "|".join(f"{x:.4f}" for x in xs)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_a_kind_from_outside_trains_evaluates_goes_through_a_study_and_the_report(frame_kind, tmp_path):
    from mtlhar.evaluate import evaluate_run
    from mtlhar.report import build_report, tables
    from mtlhar.report.study import StudyData, higher_is_better
    from mtlhar.study import StudySpec, run_study
    from mtlhar.train import Trainer

    manifest = _positions_manifest(tmp_path / "sq")
    cfg = square_config(manifest, steps=3, eval_every=3, checkpoint_every=3)
    cfg["tasks"] = [
        {"name": "position", "kind": "frame_position", "temporal": "max"},
        {"name": "colour", "role": "auxiliary"},
    ]
    res = Trainer(from_dict(RunConfig, cfg), tmp_path / "run").fit(log=None)
    assert res.best_step == 3
    ev = evaluate_run(tmp_path / "run", split="test", device=torch.device("cpu"))
    assert set(ev["metrics"]["position"]) == {"mae", "end_error"} and "position" not in ev["confusion"]
    saved = json.loads((tmp_path / "run" / "tasks.json").read_text())
    assert saved[0]["kind"] == "frame_position" and saved[0]["args"]["frames"] == 8

    tasks = cfg.pop("tasks")
    spec = StudySpec(name="frames", base=cfg, tasks=tasks, seeds=2, variants=[{"name": "mtl"}])
    out = tmp_path / "study"
    results = run_study(spec, out, log=lambda *_: None)
    entry = next(
        e for e in results["summary"] if (e["run"], e["task"], e["metric"]) == ("mtl", "position", "mae")
    )
    assert "bootstrap over test clips" in entry["ci_method"] and entry["ci_lo"] <= entry["ci_hi"]
    (test,) = [t for t in results["tests"] if t["task"] == "position"]
    assert test["metric"] == "mae" and 0 < test["p"] <= 1
    assert next(d for d in results["delta_m_summary"] if d["run"] == "mtl")["tasks"] == ["position"]

    html = build_report(out).read_text(encoding="utf-8")
    rows = [r for r in tables.main_rows(StudyData(out)) if r["task"] == "position"]
    assert rows and all(r["metric"] == "mae" and r["arrow"] == "↓" for r in rows)  # the kind's direction
    assert "end_error" in html and higher_is_better("end_error") is False
    assert "Grad-CAM of position" in html  # saliency: the kind's default score (the outputs' sum)
    assert "(error " in html  # the gallery describes the output with the kind's default
