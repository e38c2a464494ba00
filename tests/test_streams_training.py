"""Declared streams reach the training step: the run's datasets read them (built by mtlhar.build) and the
trainer moves them to the device with the inputs; `mtlhar data synth --streams` writes them."""

from __future__ import annotations

import torch

from mtlhar.cli import main
from mtlhar.config import load_config
from mtlhar.train import Trainer


def test_a_run_with_declared_streams_trains_and_sees_them(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    argv = ["data", "synth", "--out", str(out), "--clips", "92", "--frames", "8", "--size", "32"]
    assert main([*argv, "--streams", "flow,parts"]) == 0
    cfg = load_config(base={
        "data": {"manifest": str(out / "manifest.csv"), "frames": 4, "size": 32,
                 "streams": {"flow": "synth_flow", "parts": "synth_parts"}},
        "model": {"encoder": "small3d", "encoder_args": {"width": 4}},
        "tasks": [{"name": "coarse"}],
        "train": {"steps": 2, "batch_size": 4, "eval_every": 2, "progress": False},
    })  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    seen = {}
    original = trainer.compute_losses

    def spy(batch, *args):
        seen.update({k: v.shape for k, v in batch["streams"].items()})
        seen["device"] = {v.device for v in batch["streams"].values()}
        return original(batch, *args)

    monkeypatch.setattr(trainer, "compute_losses", spy)
    trainer.fit(log=None)
    assert seen["flow"][:3] == (4, 2, 4) and seen["parts"][:2] == (4, 4)  # [B, 2, T, H, W], [B, T, H, W]
    assert seen["device"] == {torch.device("cpu")}
