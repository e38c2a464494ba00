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
    # each rank read half of every global batch of 8
    assert summary["samples_seen"] == 4 * 4
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    assert set(ck["model"]) and not any(k.startswith("module.") for k in ck["model"])
