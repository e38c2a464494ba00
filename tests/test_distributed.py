import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import square_config


@pytest.mark.parametrize("balancer", ["equal", "pcgrad"])
def test_ddp_under_torchrun_two_cpu_processes(tmp_path, squares, balancer):
    """`torchrun -m mtlhar train` with 2 gloo processes: one run directory, rank 0 writes it; a gradient
    method (PCGrad on the shared representation) runs under DDP too."""
    cfg = square_config(squares, steps=4, eval_every=2, checkpoint_every=2)
    cfg["balancer"] = {"name": balancer}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "mtlhar",
        "train",
        str(p),
        "--out",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((run / "provenance.json").read_text())["world_size"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4
    # each rank read half of every global batch of 8; the summary counts both
    assert summary["samples_seen"] == 4 * 8
    assert out.stdout.count("best step") == 1  # rank 0 alone reports
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert set(ck["model"]) and not any(k.startswith("module.") for k in ck["model"])


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    cmd += ["-m", "mtlhar", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("norm,sync_bn", [("group", False), ("batch", True)])
def test_two_processes_with_half_batches_match_one_process(tmp_path, squares, norm, sync_bn):
    """2 gloo ranks with batch 4 each train the same model as 1 process with batch 8 (a model without
    batch coupling, or BatchNorm with train.sync_bn); SGD so that float noise is not amplified."""
    from mtlhar.config import load_config
    from mtlhar.train import Trainer

    cfg = square_config(
        squares, steps=4, eval_every=4, checkpoint_every=4, amp="off", optimizer="sgd", lr=0.05
    )
    cfg["model"]["encoder_args"]["norm"] = norm
    cfg["train"]["sync_bn"] = sync_bn
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    _torchrun(["train", str(p), "--out", str(tmp_path / "ddp")])
    Trainer(load_config(base=cfg), tmp_path / "one").fit(log=None)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "ddp")
    assert set(a) == set(b)
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(k.endswith("running_mean") for k in a) == (norm == "batch")


def test_ddp_resume_is_bitwise_identical_with_dropout(tmp_path, squares):
    """Stopped at step 3 and resumed under torchrun (constant schedule, so that more steps change no lr):
    the same weights as the unbroken 2-process run, dropout included (every rank's random state is in
    the checkpoint)."""
    cfg = square_config(squares, steps=6, eval_every=3, checkpoint_every=3, schedule="constant")
    cfg["tasks"][0].update(dropout=0.5, hidden=16)
    full, part = tmp_path / "full.yaml", tmp_path / "part.yaml"
    full.write_text(yaml.safe_dump(cfg))
    cfg["train"]["steps"] = 3
    part.write_text(yaml.safe_dump(cfg))
    _torchrun(["train", str(full), "--out", str(tmp_path / "a")])
    _torchrun(["train", str(part), "--out", str(tmp_path / "b")])
    _torchrun(["train", str(full), "--out", str(tmp_path / "b"), "--resume", "--allow-change", "train.steps"])
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
