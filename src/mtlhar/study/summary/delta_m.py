"""delta_m of each multi-task group against the single-task baselines of its primary tasks, with a
bootstrap interval (the table's resamples) and its spread over seeds (fold x seed runs)."""

from __future__ import annotations

import numpy as np

from ... import metrics as M
from ... import stats
from ...kinds import metric_direction
from ..plan import PlannedRun
from .metrics_table import SplitTable

DELTA_M_CONVENTION = (
    "delta_m = (100/K) sum_k (-1)^h_k (M_mtl,k - M_stl,k) / M_stl,k over the primary tasks' main metrics "
    "(mean over seeds), h_k = 1 if higher is better; lower is better (negative: multi-task beats single-task); "
    "baselines below 0.05 excluded; auxiliary tasks never counted"
)


def delta_m_rows(
    table: SplitTable,
    groups: dict[str, list[PlannedRun]],
    primary: list[str],
    main: dict[str, str],
    *,
    folded: bool,
) -> list[dict]:
    """One row per multi-task group of `groups` with a baseline for at least one primary task; `main`: the
    main metric of each task."""
    rows = []
    for group, runs in groups.items():
        present = [] if group.startswith("stl_") else table.compared_tasks(group, primary)
        if not present:
            continue
        higher_better = {t: metric_direction(main[t]) for t in present}
        mtl = {t: table.mean(group, t, main[t]) for t in present}
        stl = {t: table.mean(f"stl_{t}", t, main[t]) for t in present}
        value, details = M.delta_m(mtl, stl, higher_better)
        boots = bootstrap_delta_m(table.resamples, group, present, higher_better)
        per_seed = []
        for s, run in enumerate(runs):
            ms = {t: table.per_run[run.name][t][main[t]] for t in present}
            ss = {t: table.per_run[groups[f"stl_{t}"][s].name][t][main[t]] for t in present}
            per_seed.append(M.delta_m(ms, ss, higher_better)[0])
        lo, hi = stats.interval(np.asarray(boots)) if boots else (None, None)
        rows.append(
            {
                "run": group,
                "split": table.split,
                "mean": value,
                "std": float(np.std([v for v in per_seed if v is not None])),
                "ci_lo": lo,
                "ci_hi": hi,
                "n_seeds": len(per_seed),
                "per_seed": per_seed,
                "unit": "fold x seed run" if folded else "seed",
                "details": details,
                "tasks": present,
            }
        )
    return rows


def bootstrap_delta_m(
    resamples: dict[tuple[str, str], dict], group: str, tasks: list[str], higher_better: dict[str, bool]
) -> list[float]:
    """delta_m of `group` per bootstrap draw (the draws of each task paired with its baseline's)."""
    boots = []
    for b in range(len(resamples[(group, tasks[0])]["boot"])):
        mb = {t: resamples[(group, t)]["boot"][b] for t in tasks}
        sb = {t: resamples[(f"stl_{t}", t)]["boot"][b] for t in tasks}
        v, _ = M.delta_m(mb, sb, higher_better)
        if v is not None:
            boots.append(v)
    return boots
