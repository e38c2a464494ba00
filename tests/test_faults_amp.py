"""`train.amp`: the default must give a bitwise reproducible, finite seeded run (mtlhar.precision).

A user's seeded run under `amp: auto` on a CPU with native bfloat16 (small3d width 8, 4 x 32 x 32 clips,
batch 8, lr 0.002) gave different losses from step 2 in 4 of 4 runs and NaN at step 3 in 2 of 4 (then
crashed in sklearn's roc_auc); float32 was fine. These tests pretend the CPU has native bfloat16.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from conftest import square_config
from mtlhar import precision, provenance, train
from mtlhar.config import load_config
from mtlhar.precision import (
    AUTO_CPU_EMULATED,
    AUTO_CPU_NATIVE,
    ON_CPU_EMULATED,
    ON_CPU_NATIVE,
    check_reproducible,
    choose_autocast,
    first_divergence,
    step_digests,
)
from mtlhar.train import Trainer


@pytest.fixture
def native_bf16(monkeypatch):
    """This CPU has native bfloat16, as the user's did (for the trainer's old probe and the new one)."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True, raising=False)


@pytest.mark.parametrize("native, reason", [(True, AUTO_CPU_NATIVE), (False, AUTO_CPU_EMULATED)])
def test_auto_is_float32_on_cpu(monkeypatch, native, reason):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    p = choose_autocast("auto", torch.device("cpu"))
    assert tuple(p) == (False, torch.float32, reason)
    assert p.name == "off"


@pytest.mark.parametrize("native, reason", [(True, ON_CPU_NATIVE), (False, ON_CPU_EMULATED)])
def test_on_autocasts_to_bfloat16_on_cpu_and_says_so(monkeypatch, native, reason):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    enabled, dtype, why = choose_autocast("on", "cpu")
    assert (enabled, dtype, why) == (True, torch.bfloat16, reason)
    assert choose_autocast("on", "cpu").name == "bfloat16"


def test_off_and_cuda_and_bad_setting(monkeypatch):
    assert tuple(choose_autocast("off", "cpu"))[:2] == (False, torch.float32)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_autocast("auto", torch.device("cuda", 0)).name == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_autocast("auto", "cuda").name == "float16"  # the trainer adds loss scaling
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        choose_autocast("bf16", "cpu")


def _seeded_default_run(manifest, run_dir):
    base = square_config(manifest, steps=3, eval_every=3, checkpoint_every=100, lr=0.002)
    base["data"]["frames"] = 4
    base["model"]["encoder_args"]["width"] = 8
    trainer = Trainer(load_config(base=base), run_dir)  # train.amp left at its default
    assert not trainer.amp, "amp: auto autocasts to bfloat16 on a CPU with native bfloat16"
    trainer.fit(log=None)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    return losses, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_default_seeded_run_is_bitwise_reproducible_on_a_native_bf16_cpu(
    native_bf16, squares, tmp_path, monkeypatch
):
    monkeypatch.setattr(provenance, "pip_freeze", list)  # ~1 s a run; plays no part in the numbers
    runs = [_seeded_default_run(squares, tmp_path / f"run{i}") for i in range(3)]
    losses, state = runs[0]
    assert len(losses) == 3
    assert all(math.isfinite(v) for step in losses for v in step.values())
    for other_losses, other_state in runs[1:]:
        assert other_losses == losses
        assert all(torch.equal(state[k], other_state[k]) for k in state)
    prov = json.loads((tmp_path / "run0" / "provenance.json").read_text())
    assert prov["amp"] == "off"
    assert prov["amp_reason"] == AUTO_CPU_NATIVE


def test_step_digests_find_the_first_divergent_or_non_finite_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 4)

    def loss(z):
        return z.float().square().mean()

    same = [step_digests(net, x, loss, enabled=False) for _ in range(2)]
    assert first_divergence(same) is None
    assert [name for name, _, _ in same[0]][:4] == ["forward 0", "forward 1", "forward 2", "loss"]
    assert all(p.grad is None for p in net.parameters())  # nothing left behind
    with torch.no_grad():
        net[2].weight[0, 0] += 1.0
    changed = step_digests(net, x, loss, enabled=False)
    assert first_divergence([same[0], changed]) == "forward 2: differs between runs"
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    assert first_divergence([changed, step_digests(net, x, loss, enabled=False)]) == "forward 0: not finite"


def test_check_reproducible_float32_here():
    assert check_reproducible(torch.float32, enabled=False, repeats=2) is None


def test_only_the_notable_decisions_are_logged(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert choose_autocast("auto", "cpu").should_log and choose_autocast("on", "cpu").should_log
    assert not choose_autocast("off", "cpu").should_log
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert not choose_autocast("auto", "cpu").should_log and choose_autocast("on", "cpu").should_log
