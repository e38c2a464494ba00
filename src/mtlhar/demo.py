"""`mtlhar demo`: the main job on the embedded synthetic action world, end to end.

1. Generate the synthetic world (cached after the first run).
2. Train one single-task model per primary task and one multi-task model per seed; seed s of every run
   sees the same initialisation of the shared encoder and the same data order (paired seeds).
3. Evaluate each run's validation-selected checkpoint on the unseen-subject test split and on the
   held-out visual domain; write OUT/results.json and print a summary table with delta_m.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import metrics as M
from .config import RunConfig, from_dict
from .data.manifest import Manifest
from .data.synth_cache import ensure_synth
from .evaluate import evaluate_run

QUICK = {"clips": 640, "frames": 16, "size": 64, "steps": 150, "eval_every": 50, "seeds": 1, "width": 16}
FULL = {"clips": 3000, "frames": 16, "size": 64, "steps": 600, "eval_every": 100, "seeds": 2, "width": 16}

TASKS = [
    {"name": "fine", "column": "fine", "role": "primary"},
    {"name": "coarse", "column": "coarse", "role": "primary"},
    {"name": "tempo", "column": "tempo", "role": "auxiliary"},
]


def demo_config(settings: dict, manifest: Path, tasks: list[dict], seed: int, name: str) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "name": name,
            "data": {
                "manifest": str(manifest),
                "frames": 8,
                "size": settings["size"],
                "cache": True,
                "test_splits": ["test", "test_xdomain"],
            },
            "model": {"encoder": "small3d", "encoder_args": {"width": settings["width"]}},
            "tasks": tasks,
            "train": {
                "steps": settings["steps"],
                "batch_size": 32,
                "lr": 3e-3,
                "eval_every": settings["eval_every"],
                "checkpoint_every": settings["eval_every"],
                "seed": seed,
                "warmup_steps": 20,
            },
        },
    )


def run_plan(settings: dict, manifest: Path, seeds: int) -> list[tuple[str, str, RunConfig]]:
    """(run name, group, config): single-task per primary task and the multi-task model, per seed."""
    plan = []
    for seed in range(seeds):
        for t in TASKS:
            if t["role"] == "primary":
                name = f"stl_{t['name']}_s{seed}"
                plan.append((name, f"stl_{t['name']}", demo_config(settings, manifest, [t], seed, name)))
        name = f"mtl_s{seed}"
        plan.append((name, "mtl", demo_config(settings, manifest, TASKS, seed, name)))
    return plan


def run_demo(
    out: str | Path = "mtlhar-demo", *, quick: bool = False, seeds: int | None = None, log=print
) -> dict:
    from rich.console import Console

    from .train import Trainer

    console = Console()
    settings = dict(QUICK if quick else FULL)
    seeds = seeds or settings["seeds"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    synth_args = {
        "clips": settings["clips"],
        "frames": settings["frames"],
        "size": settings["size"],
        "seed": 0,
    }
    log(
        f"[1/3] synthetic action world ({settings['clips']} clips, {settings['frames']}x{settings['size']}px; cached)"
    )
    from .cli import _bar

    manifest_path = ensure_synth(progress=_bar("generating clips"), **synth_args)
    manifest = Manifest.read(manifest_path)
    log(f"      {manifest_path}")

    plan = run_plan(settings, manifest_path, seeds)
    log(f"[2/3] training {len(plan)} runs ({settings['steps']} steps each, {seeds} paired seed(s))")
    runs, per_run = {}, {}
    for i, (name, group, cfg) in enumerate(plan):
        run_dir = out / "runs" / name
        summary = run_dir / "summary.json"
        if summary.is_file():
            log(f"      {i + 1}/{len(plan)} {name}: finished earlier, reusing")
        else:
            resume = (run_dir / "checkpoints" / "last.pt").is_file()
            res = Trainer(cfg, run_dir, manifest=manifest).fit(resume=resume, log=log)
            log(
                f"      {i + 1}/{len(plan)} {name}: {res.steps} steps, {res.wall_time_s:.0f}s, best step {res.best_step}"
            )
        per_run[name] = {"group": group, "seed": cfg.train.seed, "summary": json.loads(summary.read_text())}

    log("[3/3] evaluating on unseen subjects (test) and a held-out visual domain (test_xdomain)")
    for name, info in per_run.items():
        info["test"] = evaluate_run(out / "runs" / name, split="test")["metrics"]
        info["test_xdomain"] = evaluate_run(out / "runs" / name, split="test_xdomain")["metrics"]
        runs[name] = info["test"]

    results = summarise(per_run, manifest, settings, seeds, time.perf_counter() - t0)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print_summary(console, results)
    log(f"results: {out / 'results.json'}  (total {results['wall_time_s']:.0f}s)")
    return results


def _main_metric(task: dict) -> str:
    return "mae" if task.get("kind") == "regression" else "top1"


def _group_mean(per_run: dict, group: str, split: str, task: str, metric: str) -> tuple[float, float, int]:
    vals = [r[split][task][metric] for r in per_run.values() if r["group"] == group and task in r[split]]
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def _seed_value(per_run: dict, group: str, seed: int, split: str, task: str) -> float:
    run = next(r for r in per_run.values() if r["group"] == group and r["seed"] == seed)
    return run[split][task]["top1"]


def summarise(per_run: dict, manifest: Manifest, settings: dict, seeds: int, wall: float) -> dict:
    primary = [t["name"] for t in TASKS if t["role"] == "primary"]
    table, dm = [], {}
    for split in ("test", "test_xdomain"):
        mtl_vals, stl_vals, hib = {}, {}, {}
        for t in TASKS:
            metric = _main_metric(t)
            m_mean, m_std, n = _group_mean(per_run, "mtl", split, t["name"], metric)
            row = {
                "split": split,
                "task": t["name"],
                "role": t["role"],
                "metric": metric,
                "mtl_mean": m_mean,
                "mtl_std": m_std,
                "n_seeds": n,
            }
            if t["role"] == "primary":
                s_mean, s_std, _ = _group_mean(per_run, f"stl_{t['name']}", split, t["name"], metric)
                row.update(stl_mean=s_mean, stl_std=s_std)
                mtl_vals[t["name"]], stl_vals[t["name"]] = m_mean, s_mean
                hib[t["name"]] = M.METRIC_DIRECTIONS[metric]
            table.append(row)
        value, details = M.delta_m(mtl_vals, stl_vals, hib, floor=0.05)
        per_seed = []
        for s in range(seeds):
            mtl_s = {t: _seed_value(per_run, "mtl", s, split, t) for t in primary}
            stl_s = {t: _seed_value(per_run, f"stl_{t}", s, split, t) for t in primary}
            per_seed.append(M.delta_m(mtl_s, stl_s, hib)[0])
        dm[split] = {"delta_m": value, "details": details, "per_seed": per_seed}
    return {
        "runs": {name: r["test"] for name, r in per_run.items()},
        "runs_xdomain": {name: r["test_xdomain"] for name, r in per_run.items()},
        "delta_m": dm["test"]["delta_m"],
        "delta_m_xdomain": dm["test_xdomain"]["delta_m"],
        "delta_m_details": dm,
        "delta_m_convention": "delta_m = (100/K) sum_k (-1)^h_k (M_mtl,k - M_stl,k) / M_stl,k over primary tasks' "
        "main metrics (test top-1), h_k = 1 if higher is better; lower is better (negative: "
        "multi-task beats single-task); baselines below 0.05 are excluded; means over seeds",
        "table": table,
        "tasks": [dict(t, main_metric=_main_metric(t)) for t in TASKS],
        "dataset": {
            "manifest": str(manifest.path),
            "sha256": manifest.sha256(),
            "clips": len(manifest.rows),
            "splits": {s: len(manifest.indices(s)) for s in ("train", "val", "test", "test_xdomain")},
            "generator": sorted({r.get("generator", "") for r in manifest.rows}),
        },
        "settings": {**settings, "seeds": seeds},
        "compute": {
            name: {
                k: r["summary"][k] for k in ("steps", "wall_time_s", "device", "n_parameters", "best_step")
            }
            for name, r in per_run.items()
        },
        "wall_time_s": round(wall, 1),
    }


def print_summary(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title="mtlhar demo: single-task (STL) vs multi-task (MTL), mean ± std over seeds")
    for col in ("split", "task", "role", "metric", "STL", "MTL", "MTL - STL"):
        table.add_column(col, justify="right" if col in ("STL", "MTL", "MTL - STL") else "left")
    for r in results["table"]:
        stl = f"{r['stl_mean']:.3f} ± {r['stl_std']:.3f}" if "stl_mean" in r else "-"
        diff = f"{r['mtl_mean'] - r['stl_mean']:+.3f}" if "stl_mean" in r else ""
        table.add_row(
            r["split"],
            r["task"],
            r["role"],
            r["metric"],
            stl,
            f"{r['mtl_mean']:.3f} ± {r['mtl_std']:.3f}",
            diff,
        )
    console.print(table)
    for split, key in (("unseen subjects", "delta_m"), ("held-out domain", "delta_m_xdomain")):
        v = results[key]
        text = "n/a" if v is None else f"{v:+.2f}%"
        console.print(f"delta_m ({split}): {text}  (lower is better; negative = MTL beats STL)")
