"""Studies: single-task baselines vs multi-task variants over paired seeds, honestly measured.

A study config names a base run config (data, model, train), the tasks, and the multi-task variants
(task subsets x balancers x encoders). For every seed it trains one single-task model per primary task
(`stl_<task>`) and every variant, all with the same budget; evaluates each run's validation-selected
checkpoint on the test splits; and summarises with intervals, delta_m and Holm-corrected paired tests.
Finished runs are never repeated: run the same command again to resume a study.

```yaml
name: my-study
seeds: 3
test_splits: [test, test_xdomain]
base: {data: {...}, model: {...}, train: {...}}      # a run config without tasks
tasks: [{name: fine}, {name: coarse}, {name: tempo, role: auxiliary}]
variants:
  - {name: mtl_equal, balancer: {name: equal}}      # all tasks by default
  - {name: mtl_fine_tempo, tasks: [fine, tempo]}
quick: {train: {steps: 100}}                        # overrides applied with --quick
```
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as M
from . import stats
from .affinity import summarise_affinity
from .config import RunConfig, from_dict, load_yaml
from .data.manifest import Manifest
from .errors import ConfigError
from .evaluate import evaluate_run, load_predictions
from .representation import release_representation_data, representation_quality
from .tasks import Task, task_from_dict


@dataclass
class StudySpec:
    name: str
    base: dict[str, Any]
    tasks: list[dict[str, Any]]
    variants: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "mtl"}])
    seeds: int = 3
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    quick: dict[str, Any] = field(default_factory=dict)
    stl: bool = True
    transfer: dict[str, Any] | None = None  # frozen-encoder probes on a held-out target (mtlhar.transfer)
    quick_seeds: int | None = None  # seeds with --quick (default: `seeds`)


def load_study(path: str | Path) -> StudySpec:
    return from_dict(StudySpec, load_yaml(path))


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = (
            _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
        )
    return out


@dataclass
class PlannedRun:
    name: str
    group: str
    seed: int
    config: RunConfig


def plan_runs(spec: StudySpec, *, seeds: int, quick: bool, manifest_path: str) -> list[PlannedRun]:
    base = _merge(spec.base, spec.quick) if quick else copy.deepcopy(spec.base)
    base.setdefault("data", {})["manifest"] = manifest_path
    base["data"].pop("synth", None)
    by_name = {t["name"]: t for t in spec.tasks}
    primary = [t["name"] for t in spec.tasks if t.get("role", "primary") == "primary"]
    groups: list[tuple[str, dict]] = []
    if spec.stl:
        groups += [(f"stl_{t}", {"tasks": [by_name[t]]}) for t in primary]
    for i, v in enumerate(spec.variants):
        v = dict(v)
        name = v.pop("name", f"mtl_{i}")
        names = v.pop("tasks", None) or list(by_name)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"study variants.{i}.tasks: {unknown} are not tasks; tasks are {list(by_name)}")
        groups.append((name, {"tasks": [by_name[n] for n in names], **v}))
    for (
        _,
        extra,
    ) in groups:  # a declared parent outside a run's task set (e.g. STL baselines) is dropped there
        names = {t["name"] for t in extra["tasks"]}
        extra["tasks"] = [
            {k: v for k, v in t.items() if k != "parent"} if t.get("parent") not in (None, *names) else t
            for t in extra["tasks"]
        ]
    plan = []
    for seed in range(seeds):
        for group, extra in groups:
            cfg = _merge(base, extra)
            cfg.setdefault("train", {})["seed"] = seed
            cfg["name"] = f"{group}_s{seed}"
            plan.append(PlannedRun(cfg["name"], group, seed, from_dict(RunConfig, cfg)))
    return plan


def run_study(
    spec: StudySpec, out: str | Path, *, seeds: int | None = None, quick: bool = False, log=print
) -> dict:
    """Train and evaluate every run of the study (skipping finished ones) and write OUT/results.json."""
    from .train import Trainer, prepare_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = seeds or (spec.quick_seeds if quick else None) or spec.seeds
    t0 = time.perf_counter()
    base_cfg = from_dict(RunConfig, {**_merge(spec.base, spec.quick if quick else {}), "tasks": spec.tasks})
    manifest = prepare_data(base_cfg)
    if spec.transfer:  # target classes are carved out before any source run is trained
        from .transfer import check_transfer_spec, prepare_holdout

        check_transfer_spec(spec.transfer)
        blank = [t.get("column") or t["name"] for t in spec.tasks]
        blank += [t["args"]["refs_column"] for t in spec.tasks if (t.get("args") or {}).get("refs_column")]
        manifest = prepare_holdout(spec.transfer, manifest, out, blank)
    plan = plan_runs(spec, seeds=seeds, quick=quick, manifest_path=str(manifest.path))
    log(f"study {spec.name}: {len(plan)} runs ({seeds} paired seed(s)) -> {out}")
    for i, run in enumerate(plan):
        run_dir = out / "runs" / run.name
        if (run_dir / "summary.json").is_file():
            log(f"  {i + 1}/{len(plan)} {run.name}: finished earlier, reusing")
            continue
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        res = Trainer(run.config, run_dir, manifest=manifest).fit(resume=resume, log=log)
        log(
            f"  {i + 1}/{len(plan)} {run.name}: {res.steps} steps, {res.wall_time_s:.0f}s, best step {res.best_step}"
        )
    for run in plan:
        for split in spec.test_splits:
            run_dir = out / "runs" / run.name
            if not (run_dir / f"predictions_{split}.npz").is_file():
                ev = evaluate_run(run_dir, split=split)
                (run_dir / f"eval_{split}.json").write_text(json.dumps(ev, indent=2))
    for run in plan:
        path = out / "runs" / run.name / "representation.json"
        if not path.is_file():
            rq = representation_quality(out / "runs" / run.name, spec.tasks, test_split=spec.test_splits[0])
            path.write_text(json.dumps(rq, indent=2))
    release_representation_data()  # the decoded clips shared by the runs' measurements
    results = summarise(spec, plan, out, manifest, time.perf_counter() - t0, quick=quick)
    if spec.transfer:
        from .transfer import study_transfer, transfer_question

        results["transfer"] = study_transfer(spec, plan, out, str(manifest.path), quick=quick, log=log)
        results["transfer_answer"] = transfer_question(results["transfer"])
        results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


# --------------------------------------------------------------------------------------------------
def _load(out: Path, run: PlannedRun, split: str):
    pred = load_predictions(out / "runs" / run.name / f"predictions_{split}.npz")
    tasks = [task_from_dict(d) for d in json.loads((out / "runs" / run.name / "tasks.json").read_text())]
    return pred, {t.name: t for t in tasks}


def _task_metrics(task: Task, pred: dict) -> dict:
    out, tgt, msk = pred["outputs"][task.name], pred["targets"][task.name], pred["masks"][task.name]
    m = msk.reshape(len(msk), -1)
    return task.spec.compute_metrics(task, out, tgt, m[:, 0] if m.shape[1] == 1 else m)


def summarise(
    spec: StudySpec, plan: list[PlannedRun], out: Path, manifest: Manifest, wall: float, *, quick: bool
):
    groups: dict[str, list[PlannedRun]] = {}
    for r in plan:
        groups.setdefault(r.group, []).append(r)
    task_specs = {t["name"]: t for t in spec.tasks}
    primary = [n for n, t in task_specs.items() if t.get("role", "primary") == "primary"]
    summary, dm_summary, tests, resamples = [], [], [], {}
    per_run_metrics: dict[str, dict[str, dict]] = {}
    for split in spec.test_splits:
        for group, runs in groups.items():
            loaded = [_load(out, r, split) for r in runs]
            for r, (pred, tasks) in zip(runs, loaded):
                per_run_metrics.setdefault(split, {})[r.name] = {
                    n: _task_metrics(t, pred) for n, t in tasks.items()
                }
            for name, task in loaded[0][1].items():
                per_seed = [per_run_metrics[split][r.name][name] for r in runs]
                for metric in per_seed[0]:
                    values = [m[metric] for m in per_seed if metric in m]
                    entry = {
                        "run": group,
                        "task": name,
                        "role": task.role,
                        "metric": metric,
                        "split": split,
                        "mean": float(np.mean(values)),
                        "std": float(np.std(values)),
                        "n_seeds": len(values),
                    }
                    if metric in stats.PER_CLIP:
                        sc = np.stack(
                            [
                                stats.per_clip_scores(
                                    task, p["outputs"][name], p["targets"][name], p["masks"][name]
                                )[0]
                                for p, _ in loaded
                            ]
                        )
                        va = np.stack(
                            [
                                stats.per_clip_scores(
                                    task, p["outputs"][name], p["targets"][name], p["masks"][name]
                                )[1]
                                for p, _ in loaded
                            ]
                        )
                        boot = stats.bootstrap_seeds_clips(sc, va)
                        resamples[(split, group, name)] = (boot, sc, va)
                        entry["ci_lo"], entry["ci_hi"] = stats.interval(boot)
                        entry["ci_method"] = "bootstrap over test clips x seeds"
                    else:
                        entry["ci_lo"], entry["ci_hi"] = stats.seed_interval(values)
                        entry["ci_method"] = "bootstrap over seeds"
                    summary.append(entry)
        # delta_m and paired tests for each multi-task group against the single-task groups
        for group in groups:
            if group.startswith("stl_"):
                continue
            present = [
                t for t in primary if (split, group, t) in resamples and (split, f"stl_{t}", t) in resamples
            ]
            if not present:
                continue
            hib = {t: M.METRIC_DIRECTIONS[_main(task_specs[t])] for t in present}
            mtl = {t: _mean(summary, group, t, split, _main(task_specs[t])) for t in present}
            stl = {t: _mean(summary, f"stl_{t}", t, split, _main(task_specs[t])) for t in present}
            value, details = M.delta_m(mtl, stl, hib)
            boots = []
            for b in range(len(resamples[(split, group, present[0])][0])):
                mb = {t: resamples[(split, group, t)][0][b] for t in present}
                sb = {t: resamples[(split, f"stl_{t}", t)][0][b] for t in present}
                v, _ = M.delta_m(mb, sb, hib)
                if v is not None:
                    boots.append(v)
            seeds_dm = []
            for s in range(len(groups[group])):
                ms = {
                    t: per_run_metrics[split][groups[group][s].name][t][_main(task_specs[t])] for t in present
                }
                ss = {
                    t: per_run_metrics[split][groups[f"stl_{t}"][s].name][t][_main(task_specs[t])]
                    for t in present
                }
                seeds_dm.append(M.delta_m(ms, ss, hib)[0])
            lo, hi = stats.interval(np.asarray(boots)) if boots else (None, None)
            dm_summary.append(
                {
                    "run": group,
                    "split": split,
                    "mean": value,
                    "std": float(np.std([v for v in seeds_dm if v is not None])),
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "n_seeds": len(seeds_dm),
                    "per_seed": seeds_dm,
                    "details": details,
                    "tasks": present,
                }
            )
            for t in present:
                _, sm, vm = resamples[(split, group, t)]
                _, ss, vs = resamples[(split, f"stl_{t}", t)]
                both = vm & vs
                diff = np.where(both, sm - ss, np.nan)
                diff = np.nanmean(diff, axis=0)
                p = stats.sign_flip_test(diff)
                tests.append(
                    {
                        "run": group,
                        "task": t,
                        "split": split,
                        "metric": _main(task_specs[t]),
                        "mean_diff": float(np.nanmean(diff)),
                        "p": p,
                    }
                )
    adjusted = stats.holm([t["p"] for t in tests]) if tests else []
    for t, p in zip(tests, adjusted):
        t["p_holm"] = p
    affinity_by_run = {}
    for group, runs in groups.items():
        records = []
        for r in runs:
            path = out / "runs" / r.name / "metrics.jsonl"
            records += [
                rec
                for rec in map(json.loads, path.read_text().splitlines())
                if rec.get("split") == "affinity"
            ]
        summary_aff = summarise_affinity(records)
        if summary_aff is not None:
            affinity_by_run[group] = summary_aff
    headline = next((d for d in dm_summary if d["split"] == spec.test_splits[0]), None)
    first_split = spec.test_splits[0]
    return {
        "study": spec.name,
        "runs": per_run_metrics.get(first_split, {}),
        "runs_by_split": per_run_metrics,
        "delta_m": headline["mean"] if headline else None,
        "delta_m_summary": dm_summary,
        "representation": _representation(groups, out),
        "representation_method": "alignment (alpha=2, two frame samplings of each test clip) and uniformity (t=2) "
        "of L2-normalised pooled embeddings, lower is better; linear probe = logistic regression on frozen "
        "train embeddings, test accuracy",
        "affinity": next(iter(affinity_by_run.values()), None),
        "affinity_by_run": affinity_by_run,
        "delta_m_convention": DELTA_M_CONVENTION,
        "summary": summary,
        "tests": tests,
        "tests_method": "paired sign-flip permutation test on per-clip score differences (averaged over seeds), "
        "10,000 permutations, Holm-corrected across all tests of the study",
        "tasks": [dict(t, main_metric=_main(t)) for t in spec.tasks],
        "dataset": _dataset_info(manifest, spec.test_splits),
        "provenance": {
            r.name: json.loads((out / "runs" / r.name / "provenance.json").read_text()) for r in plan
        },
        "compute": {r.name: _compute(out / "runs" / r.name) for r in plan},
        "groups": {g: [r.name for r in rs] for g, rs in groups.items()},
        "settings": {
            "seeds": len(next(iter(groups.values()))),
            "quick": quick,
            "test_splits": spec.test_splits,
        },
        "wall_time_s": round(wall, 1),
    }


DELTA_M_CONVENTION = (
    "delta_m = (100/K) sum_k (-1)^h_k (M_mtl,k - M_stl,k) / M_stl,k over the primary tasks' main metrics "
    "(mean over seeds), h_k = 1 if higher is better; lower is better (negative: multi-task beats single-task); "
    "baselines below 0.05 excluded; auxiliary tasks never counted"
)


def _main(task_cfg: dict) -> str:
    if task_cfg.get("main_metric"):
        return task_cfg["main_metric"]
    kinds = {"regression": "mae", "multilabel": "mAP", "caption": "cider_d"}
    return kinds.get(task_cfg.get("kind", "classification"), "top1")


def _mean(summary: list, run: str, task: str, split: str, metric: str) -> float:
    return next(
        e["mean"]
        for e in summary
        if (e["run"], e["task"], e["split"], e["metric"]) == (run, task, split, metric)
    )


def _representation(groups: dict, out: Path) -> dict:
    res = {}
    for group, runs in groups.items():
        vals = [json.loads((out / "runs" / r.name / "representation.json").read_text()) for r in runs]
        entry = {k: float(np.mean([v[k] for v in vals])) for k in ("alignment", "uniformity")}
        tasks = sorted({t for v in vals for t in v["probe"]})
        entry["probe"] = {t: float(np.mean([v["probe"][t] for v in vals if t in v["probe"]])) for t in tasks}
        res[group] = entry
    return res


def _compute(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {
        k: s.get(k) for k in ("steps", "wall_time_s", "device", "n_parameters", "best_step", "samples_seen")
    }


def _dataset_info(manifest: Manifest, splits: list[str]) -> dict:
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
