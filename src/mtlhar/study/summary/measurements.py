"""What the runs measured beside their test metrics, per group: task affinity during training and the
quality of the encoder's representation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...affinity import summarise_affinity
from ..plan import PlannedRun

REPRESENTATION_METHOD = (
    "alignment (alpha=2, two frame samplings of each test clip) and uniformity (t=2) "
    "of L2-normalised pooled embeddings, lower is better; linear probe = logistic regression on frozen "
    "train embeddings, test accuracy"
)


def affinity_by_group(groups: dict[str, list[PlannedRun]], out: Path) -> dict[str, dict]:
    """The affinity summary of each group whose runs logged affinity records (train.affinity_every)."""
    by_group = {}
    for group, runs in groups.items():
        records = []
        for r in runs:
            lines = (out / "runs" / r.name / "metrics.jsonl").read_text().splitlines()
            records += [rec for rec in map(json.loads, lines) if rec.get("split") == "affinity"]
        summary = summarise_affinity(records)
        if summary is not None:
            by_group[group] = summary
    return by_group


def representation_by_group(groups: dict[str, list[PlannedRun]], out: Path) -> dict[str, dict]:
    """Per group, the means over its runs of alignment, uniformity and each task's linear-probe accuracy."""
    res = {}
    for group, runs in groups.items():
        vals = [json.loads((out / "runs" / r.name / "representation.json").read_text()) for r in runs]
        entry = {k: float(np.mean([v[k] for v in vals])) for k in ("alignment", "uniformity")}
        tasks = sorted({t for v in vals for t in v["probe"]})
        entry["probe"] = {t: float(np.mean([v["probe"][t] for v in vals if t in v["probe"]])) for t in tasks}
        res[group] = entry
    return res
