"""A study's runs trained at once: `--jobs N` worker processes, and N processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import make_square_dataset, square_config
from mtlhar.study import StudySpec, run_study


def _spec_dict(squares) -> dict:
    cfg = square_config(squares, steps=3, eval_every=3, checkpoint_every=3)
    cfg["train"]["threads"] = 1
    tasks = cfg.pop("tasks")[:2]
    return {
        "name": "par",
        "base": cfg,
        "tasks": tasks,
        "seeds": 2,
        "variants": [{"name": "mtl"}],
    }


@pytest.fixture(scope="module")
def squares36(tmp_path_factory):
    return make_square_dataset(tmp_path_factory.mktemp("sq"), n=36)


@pytest.fixture(scope="module")
def sequential(squares36, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    return run_study(StudySpec(**_spec_dict(squares36)), out, log=lambda *_: None)


def _same_results(a: dict, b: dict) -> None:
    assert sorted(a["runs"]) == sorted(b["runs"]) and a["groups"] == b["groups"]
    key = lambda e: (e["run"], e["task"], e["metric"], e["split"])  # noqa: E731
    sa, sb = {key(e): e for e in a["summary"]}, {key(e): e for e in b["summary"]}
    assert sa.keys() == sb.keys()
    for k in sa:  # one thread per run in both: the same arithmetic, so the same numbers
        assert sa[k]["mean"] == pytest.approx(sb[k]["mean"], abs=1e-6), k


def test_jobs_train_runs_in_worker_processes_with_the_same_results(squares36, sequential, tmp_path):
    lines = []
    res = run_study(StudySpec(**_spec_dict(squares36)), tmp_path / "par", jobs=2, log=lines.append)
    assert "2 at a time" in lines[0]
    assert sum("steps," in line for line in lines) == 4  # 2 groups x 2 seeds, each trained once
    _same_results(sequential, res)
    for run in res["runs"]:
        assert json.loads((tmp_path / "par" / "runs" / run / "summary.json").read_text())["steps"] == 3
    lines.clear()
    again = run_study(StudySpec(**_spec_dict(squares36)), tmp_path / "par", jobs=2, log=lines.append)
    assert sum("reusing" in line for line in lines) == 4 and again["summary"] == res["summary"]


def test_study_under_torchrun_splits_the_runs_over_processes(squares36, sequential, tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(_spec_dict(squares36)))
    out = tmp_path / "tr"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "mtlhar", "study", str(cfg), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on process 0 of 2" in proc.stdout and "on process 1 of 2" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    _same_results(sequential, res)
    for run in res["runs"]:  # every run trained as a single process
        assert json.loads((out / "runs" / run / "provenance.json").read_text())["world_size"] == 1
    assert (out / "report" / "index.html").is_file()


def test_tuning_grid_trains_every_point_and_keeps_the_best_on_validation(squares36, tmp_path):
    """`tune`: every group trains every grid point per seed; the point with the best mean validation
    score is kept per group, and only its runs are tested and summarised."""
    from mtlhar.errors import ConfigError

    d = _spec_dict(squares36)
    d["tune"] = {"train.lr": [1e-9, 0.01]}  # lr 1e-9 cannot learn: its validation score stays the initial one
    lines = []
    res = run_study(StudySpec(**d), tmp_path / "tuned", log=lines.append)
    runs_dir = tmp_path / "tuned" / "runs"
    assert len(list(runs_dir.iterdir())) == 8  # 2 groups x 2 seeds x 2 points
    assert "x 2 tuning points" in lines[0] and any(line.startswith("tuning: selected") for line in lines)
    tuning = res["tuning"]
    assert tuning["grid"] == [{"train.lr": 1e-9}, {"train.lr": 0.01}]
    for g in tuning["groups"]:
        assert (
            g["selected"] == int(np.argmax(g["val_scores"])) and g["values"] == tuning["grid"][g["selected"]]
        )
        chosen = [r for r in res["groups"][g["group"]]]
        assert all(r.endswith(f"_t{g['selected']}") for r in chosen)
        for r in chosen:  # the selected runs were trained with the selected value and tested
            cfg = yaml.safe_load((runs_dir / r / "config.yaml").read_text())
            assert cfg["train"]["lr"] == g["values"]["train.lr"]
            assert (runs_dir / r / "predictions_test.npz").is_file()
        for r in runs_dir.iterdir():  # the other points were never tested
            if r.name.startswith(g["group"] + "_s") and r.name not in chosen:
                assert not (r / "predictions_test.npz").exists()
    assert res["settings"]["tune"] == {"train.lr": [1e-9, 0.01]}
    from mtlhar.report import build_report

    page = build_report(tmp_path / "tuned").read_text()
    assert "<h3>Tuning</h3>" in page and "t1: train.lr=0.01" in page
    d["tune"] = {"lr": [0.1]}
    with pytest.raises(ConfigError, match=r"tune\.lr.*dotted"):
        run_study(StudySpec(**d), tmp_path / "bad", log=lambda *_: None)
    d["tune"] = {"train.lrr": [0.1]}
    with pytest.raises(ConfigError, match=r"study run .*lrr"):
        run_study(StudySpec(**d), tmp_path / "bad2", log=lambda *_: None)
