"""Where the results come from: each run's provenance and compute, and the dataset the study used."""

from __future__ import annotations

import json
from pathlib import Path

from ...data.manifest import Manifest
from ..plan import PlannedRun

COMPUTE_METHOD = (
    "per run: optimiser steps, wall time, device, parameter count and forward FLOPs per "
    "clip (torch.utils.flop_counter.FlopCounterMode, one clip of the run's input shape, eval mode; a "
    "multiply-add counts 2)"
)
COMPUTE_KEYS = (
    "steps",
    "wall_time_s",
    "device",
    "n_parameters",
    "flops_per_clip",
    "best_step",
    "samples_seen",
)


def provenance_by_run(plan: list[PlannedRun], out: Path) -> dict[str, dict]:
    return {r.name: json.loads((out / "runs" / r.name / "provenance.json").read_text()) for r in plan}


def compute_by_run(plan: list[PlannedRun], out: Path) -> dict[str, dict]:
    """Per run, what its training cost (COMPUTE_KEYS of its summary.json)."""
    return {r.name: compute_record(out / "runs" / r.name) for r in plan}


def compute_record(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {k: s.get(k) for k in COMPUTE_KEYS}


def dataset_info(manifest: Manifest) -> dict:
    """The manifest's path, hash, clip count per split and the generator versions of its synthetic clips."""
    counts = {}
    for s in sorted({r.get("split", "") for r in manifest.rows}):
        counts[s] = sum(1 for r in manifest.rows if r.get("split") == s)
    return {
        "manifest": str(manifest.path),
        "sha256": manifest.sha256(),
        "clips": len(manifest.rows),
        "splits": counts,
        "generator": sorted({r.get("generator", "") for r in manifest.rows} - {""}),
    }
