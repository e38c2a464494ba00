"""`tune`: the choice of one grid point per group (and fold) on validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .plan import PlannedRun


def select_trials(plan: list[PlannedRun], out: Path, grid: list[dict]) -> tuple[list[PlannedRun], dict]:
    """Per group (and fold): the grid point with the best mean validation score over seeds. Returns the
    selected runs (in plan order) and the record for results.json."""
    scores: dict[tuple, dict[int, list[float]]] = {}
    wall = 0.0
    for r in plan:
        summary = json.loads((out / "runs" / r.name / "summary.json").read_text())
        wall += summary.get("wall_time_s") or 0.0
        s = summary.get("best_val_score")
        value = float(s) if s is not None and np.isfinite(s) else float("-inf")
        scores.setdefault((r.group, r.fold), {}).setdefault(r.trial, []).append(value)
    chosen = {key: max(per, key=lambda k: (np.mean(per[k]), -k)) for key, per in scores.items()}
    selected = [r for r in plan if r.trial == chosen[(r.group, r.fold)]]
    record = {
        "grid": grid,
        "selection": "best mean validation score over seeds (the run's checkpoint-selection score)",
        "wall_time_s_all_points": round(wall, 1),  # training time of every grid point's runs
        "groups": [
            {
                "group": g,
                **({"fold": f} if f is not None else {}),
                "val_scores": [float(np.mean(per[k])) for k in sorted(per)],
                "selected": chosen[(g, f)],
                "values": grid[chosen[(g, f)]],
            }
            for (g, f), per in scores.items()
        ],
    }
    return selected, record
