"""`mtlhar demo`: the main job on the embedded synthetic action world, end to end.

A small study (`mtlhar.study`): the synthetic world is generated (cached after the first run); per paired
seed, one single-task model per primary task (fine action, coarse group) and the multi-task variants
(fine + coarse + the subject attribute `tempo` as an auxiliary task) are trained with the same encoder,
budget and data order; every run's validation-selected checkpoint is tested on unseen subjects (`test`)
and on a held-out visual domain (`test_xdomain`). Writes OUT/results.json and prints a summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .data.synth_cache import ensure_synth
from .progress import progress_bar
from .study import StudySpec, run_study

SYNTH = {"clips": 3000, "frames": 16, "size": 64, "seed": 0}
SYNTH_QUICK = {"clips": 720, "frames": 16, "size": 64, "seed": 0}


def demo_spec(quick: bool) -> StudySpec:
    # wsd (constant, then a cosine decay over the last 20%): on this budget the fine action learns; with a
    # cosine over the whole run it stays near chance (README: schedules)
    train = {
        "steps": 600,
        "batch_size": 32,
        "lr": 3e-3,
        "schedule": "wsd",
        "warmup_steps": 20,
        "eval_every": 150,
        "checkpoint_every": 150,
        "affinity_every": 50,
    }
    if quick:
        train.update(steps=150, eval_every=50, checkpoint_every=50, affinity_every=25)
    return StudySpec(
        name="demo-quick" if quick else "demo",
        seeds=1 if quick else 3,
        test_splits=["test", "test_xdomain"],
        base={
            "data": {"frames": 8, "size": 64, "cache": True},
            # frame differences and a spatial max: the actor is small in a 64 x 64 frame and only its limbs'
            # motion tells most fine actions apart (README: the demo's encoder)
            "model": {
                "encoder": "small3d",
                "encoder_args": {"width": 16, "rgb_diff": True, "spatial_pool": "max"},
            },
            "train": train,
        },
        tasks=[
            {"name": "fine", "column": "fine"},
            {"name": "coarse", "column": "coarse"},
            {"name": "tempo", "column": "tempo", "role": "auxiliary"},
        ],
        variants=[
            {"name": "mtl_equal", "balancer": {"name": "equal"}},
            {"name": "mtl_uncertainty", "balancer": {"name": "uncertainty"}},
        ],
        reference="mtl_equal",  # uncertainty weighting is also tested against equal weighting
    )


def run_demo(
    out: str | Path = "mtlhar-demo", *, quick: bool = False, seeds: int | None = None, log=print
) -> dict:
    from rich.console import Console

    settings = SYNTH_QUICK if quick else SYNTH
    log(
        f"synthetic action world: {settings['clips']} clips of {settings['frames']} frames at {settings['size']}px "
        "(generated once, then cached)"
    )
    manifest = ensure_synth(progress=progress_bar("generating clips"), **settings)
    spec = demo_spec(quick)
    spec.base["data"]["manifest"] = str(manifest)
    results = run_study(spec, out, seeds=seeds, log=log)
    print_summary(Console(width=None if sys.stdout.isatty() else 150), results)  # piped: no 80-col wrap
    log(f"results: {Path(out) / 'results.json'}  (total {results['wall_time_s']:.0f}s)")
    return results


def print_summary(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{results['study']}: single-task (STL) vs multi-task (MTL), test metrics")
    for col in ("split", "task", "role", "metric", "run", "mean ± std", "95% CI", "seeds"):
        table.add_column(col, justify="right" if col in ("mean ± std", "95% CI", "seeds") else "left")
    main = {t["name"]: t["main_metric"] for t in results["tasks"]}
    for e in results["summary"]:
        if e["metric"] != main.get(e["task"]):
            continue
        ci = f"[{e['ci_lo']:.3f}, {e['ci_hi']:.3f}]" if e.get("ci_lo") is not None else ""
        table.add_row(
            e["split"],
            e["task"],
            e["role"],
            e["metric"],
            e["run"],
            f"{e['mean']:.3f} ± {e['std']:.3f}",
            ci,
            str(e["n_seeds"]),
        )
    console.print(table)
    for d in results["delta_m_summary"]:
        ci = f" 95% CI [{d['ci_lo']:+.2f}, {d['ci_hi']:+.2f}]" if d.get("ci_lo") is not None else ""
        console.print(
            f"delta_m {d['run']} on {d['split']}: {d['mean']:+.2f}%{ci} over {d['tasks']} "
            "(lower is better; negative = MTL beats STL)"
        )
    for t in results["tests"]:
        console.print(
            f"paired test {t['run']} vs stl_{t['task']} ({t['split']}, {t['metric']}): "
            f"diff {t['mean_diff']:+.3f}, p = {t['p']:.4f}, Holm p = {t['p_holm']:.4f}"
        )
    for t in results.get("reference_tests", []):
        console.print(
            f"paired test {t['run']} vs {t['reference']} ({t['split']}, {t['task']} {t['metric']}): "
            f"diff {t['mean_diff']:+.3f}, p = {t['p']:.4f}, Holm p = {t['p_holm']:.4f}"
        )
