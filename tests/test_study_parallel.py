"""A study's runs trained at once: `--jobs N` worker processes, and N processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
