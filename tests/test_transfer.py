"""Transfer: frozen probes leave the encoder bitwise unchanged, features are cached, fine-tuning trains it."""

from __future__ import annotations

import json

import pytest
import torch

import mtlhar.transfer as T
from mtlhar.config import load_config
from mtlhar.errors import ConfigError
from mtlhar.evaluate import load_run


@pytest.fixture(scope="module")
def source_run(squares, tmp_path_factory):
    from conftest import square_config
    from mtlhar.train import train

    cfg = square_config(squares, steps=4, eval_every=4, checkpoint_every=4)
    cfg["tasks"] = [{"name": "direction"}]
    run = tmp_path_factory.mktemp("transfer") / "src"
    train(load_config(base=cfg), run, log=None)
    return run


def _target(squares):
    return load_config(
        base={"data": {"manifest": str(squares), "frames": 8, "size": 32}, "tasks": [{"name": "colour"}]}
    )


def test_frozen_probe_leaves_encoder_bitwise_unchanged_and_caches_features(
    source_run, squares, tmp_path, monkeypatch
):
    seen = {}

    def spy(run_dir, **kw):
        model, tasks, cfg = load_run(run_dir, **kw)
        seen["model"] = model
        return model, tasks, cfg

    monkeypatch.setattr(T, "load_run", spy)
    out = tmp_path / "linear"
    res = T.transfer(source_run, _target(squares), probe="linear", out=out, epochs=5, log=None)
    reference, _, _ = load_run(source_run)
    after = seen["model"].encoder.state_dict()
    for k, v in reference.encoder.state_dict().items():  # parameters and BatchNorm statistics
        assert torch.equal(v, after[k]), k
    assert res["encoder_unchanged"] and res["task"] == "colour" and "top1" in res["metrics"]["test"]
    assert json.loads((out / "transfer.json").read_text())["probe"] == "linear"
    cached = sorted((out / "features").glob("*.pt"))
    assert len(cached) == 3  # train, val, test

    def no_extraction(*a, **k):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(T, "extract_features", no_extraction)
    res = T.transfer(source_run, _target(squares), probe="mlp", out=out, epochs=5, hidden=16, log=None)
    assert res["probe"] == "mlp" and res["encoder_unchanged"]


def test_finetune_trains_the_encoder_and_bad_arguments_are_named(source_run, squares, tmp_path):
    res = T.transfer(
        source_run, _target(squares), probe="finetune", out=tmp_path / "ft", steps=2, batch_size=8, log=None
    )
    assert "top1" in res["metrics"]["test"] and (tmp_path / "ft" / "predictions_test.npz").is_file()
    with pytest.raises(ConfigError, match="--probe"):
        T.transfer(source_run, _target(squares), probe="svm", out=tmp_path / "x", log=None)
    with pytest.raises(ConfigError, match="--task: 'nope'"):
        T.transfer(source_run, _target(squares), task="nope", out=tmp_path / "x", log=None)


def test_holdout_manifest_hides_target_classes_from_sources(squares, tmp_path):
    from mtlhar.data.manifest import Manifest

    spec = {"holdout": {"column": "colour", "classes": ["blue"]}, "target": {"name": "new_colour"}}
    m = T.prepare_holdout(spec, Manifest.read(squares), tmp_path, blank=["direction", "colour", "tags"])
    held = [r for r in m.rows if r["new_colour"]]
    assert held and all(r["split"].startswith("target_") and r["colour"] == "" for r in held)
    assert all(
        r["new_colour"] == "" and not r["split"].startswith("target_") for r in m.rows if r not in held
    )
    assert "blue" not in m.classes_for("colour")
    with pytest.raises(ConfigError, match="holdout.classes"):
        T.prepare_holdout(
            {**spec, "holdout": {"column": "colour", "classes": ["pink"]}},
            Manifest.read(squares),
            tmp_path,
            [],
        )


def test_granularity_study_config_plans_five_sources(tmp_path):
    from pathlib import Path

    from mtlhar.study import load_study, plan_runs

    spec = load_study(Path(__file__).parents[1] / "configs" / "study-granularity.yaml")
    T.check_transfer_spec(spec.transfer)
    plan = plan_runs(spec, seeds=spec.seeds, quick=False, manifest_path=str(tmp_path / "m.csv"))
    groups = {r.group: [t.name for t in r.config.tasks] for r in plan}
    assert groups == {
        "stl_coarse": ["coarse"],
        "stl_fine": ["fine"],
        "stl_template": ["template"],
        "stl_caption": ["caption"],
        "fine_caption": ["fine", "caption"],
    }
    joint = next(r.config for r in plan if r.group == "fine_caption")
    assert joint.balancer.name == "static" and [t.weight for t in joint.tasks] == [0.1, 0.9]
    assert spec.seeds == 3 and spec.quick_seeds == 1
    with pytest.raises(ConfigError, match="transfer.probe"):
        T.check_transfer_spec({"target": {"name": "x"}, "probe": ["linear"]})


def test_parent_outside_a_runs_tasks_is_dropped_for_that_run(tmp_path):
    """A study task declaring a parent still gets its single-task baseline (the parent is not in it)."""
    from mtlhar.study import StudySpec, plan_runs

    spec = StudySpec(
        name="h", base={}, tasks=[{"name": "fine", "parent": "coarse"}, {"name": "coarse"}], seeds=1
    )
    plan = {
        r.name: r.config for r in plan_runs(spec, seeds=1, quick=False, manifest_path=str(tmp_path / "m.csv"))
    }
    assert [t.parent for t in plan["stl_fine_s0"].tasks] == [None]
    assert [(t.name, t.parent) for t in plan["mtl_s0"].tasks] == [("fine", "coarse"), ("coarse", None)]
