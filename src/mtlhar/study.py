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
protocol: {kind: loso, group: subject}              # optional: group k-fold / leave-one-subject-out
tune: {train.lr: [0.001, 0.003]}                    # optional: the same grid for every group
reference: mtl_equal                                # optional: also test every variant against this one
```

Reference (e.g. balancers against equal weighting): with `reference: VARIANT`, every other multi-task
variant is also compared with that variant on each primary task and test split, with the same paired tests
as against the single-task baselines; those comparisons are Holm-corrected as their own family and listed
in `results.json` `reference_tests` and the report's "Against the reference" table.

Tuning (PROTOCOLS: every baseline tuned with the same budget as any balancer): with `tune`, every group
(single-task baselines, equal weights, every balancer) trains each point of the grid (the cartesian
product of the listed values) for every seed (and fold), named `<group>_s<seed>_t<k>`; each group then
keeps the grid point with the best mean validation score over seeds (per fold), and only those runs are
tested and summarised. `results.json` `tuning` lists every point's validation scores and the choice.

Protocols: without `protocol` (or with `kind: holdout`) the manifest's `split` column is used as it is.
`{kind: kfold, k: 5, group: COLUMN}` and `{kind: loso, group: COLUMN}` re-split the rows of the train, val
and test splits per fold (`mtlhar.data.splits.protocol_folds`): each fold's test split is one fold of groups,
a validation split (about `val`, default 0.15, of the rest) is carved from the remaining groups, and every
run is trained once per fold and seed (`<group>_f<fold>_s<seed>`). Fold manifests are written to
OUT/folds/fold<k>/. Results aggregate over folds: the mean is over fold x seed runs, `std` is over folds
(of the per-fold means over seeds), and intervals resample fold x seed units (and test clips within them).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed, stats
from . import metrics as M
from .affinity import summarise_affinity
from .config import RunConfig, from_dict, load_yaml, set_key, validate
from .data.dataset import release_decoded_clips
from .data.manifest import Manifest
from .errors import ConfigError
from .evaluate import evaluate_run, load_predictions
from .representation import representation_quality
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
    protocol: dict[str, Any] | None = None  # {kind: holdout | kfold | loso, k, group, val, seed, stratify}
    tune: dict[str, list] | None = None  # {dotted.config.key: [values]}: the same grid for every group
    reference: str | None = None  # a variant every other multi-task variant is also tested against


PROTOCOL_KINDS = ("holdout", "kfold", "loso")
PROTOCOL_KEYS = {"kind", "k", "group", "val", "seed", "stratify"}


def check_protocol(spec: StudySpec) -> dict[str, Any] | None:
    """The study's split protocol with defaults filled in; None for the manifest's own splits (holdout)."""
    if spec.protocol is None:
        return None
    p = dict(spec.protocol)
    unknown = sorted(set(p) - PROTOCOL_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown config key 'protocol.{unknown[0]}'; allowed keys in protocol: {', '.join(sorted(PROTOCOL_KEYS))}"
        )
    kind = p.get("kind", "holdout")
    if kind not in PROTOCOL_KINDS:
        allowed = ", ".join(repr(k) for k in PROTOCOL_KINDS)
        raise ConfigError(f"config key 'protocol.kind': got {kind!r}, allowed values are {allowed}")
    if kind == "holdout":
        extra = sorted(set(p) - {"kind"})
        if extra:
            raise ConfigError(f"config key 'protocol.{extra[0]}': not used by protocol kind 'holdout'")
        return None
    k = p.get("k", 5)
    if kind == "kfold" and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        raise ConfigError(f"config key 'protocol.k': got {k!r}, expected an integer >= 2")
    if kind == "loso" and "k" in p:
        raise ConfigError("config key 'protocol.k': not used by protocol kind 'loso' (one fold per group)")
    val = p.get("val", 0.15)
    if isinstance(val, bool) or not isinstance(val, int | float) or not 0 < val < 1:
        raise ConfigError(f"config key 'protocol.val': got {val!r}, expected a fraction in (0, 1)")
    seed = p.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"config key 'protocol.seed': got {seed!r}, expected an integer")
    group = p.get("group", "group")
    if not isinstance(group, str) or not group:
        raise ConfigError(f"config key 'protocol.group': got {group!r}, expected a manifest column name")
    if list(spec.test_splits) != ["test"]:
        raise ConfigError(
            f"config key 'test_splits': got {spec.test_splits!r}; with protocol kind {kind!r} each fold defines "
            "the test split, allowed values are ['test']"
        )
    if spec.transfer:
        raise ConfigError(f"config key 'transfer': not available with protocol kind {kind!r}; use 'holdout'")
    out = {"kind": kind, "group": group, "val": float(val), "seed": seed, "stratify": p.get("stratify")}
    if kind == "kfold":
        out["k"] = k
    return out


def tuning_grid(spec: StudySpec) -> list[dict[str, Any]]:
    """The grid points of `tune` in order (the cartesian product of its lists); [{}] without tuning."""
    import itertools

    if not spec.tune:
        return [{}]
    if not isinstance(spec.tune, dict):
        raise ConfigError(
            f"study key 'tune': a mapping from config keys to lists of values, got {spec.tune!r}"
        )
    keys = list(spec.tune)
    for k in keys:
        values = spec.tune[k]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"study key 'tune.{k}': a non-empty list of values, got {values!r}")
        if k.split(".")[0] not in ("train", "model", "balancer", "data") or "." not in k:
            raise ConfigError(
                f"study key 'tune.{k}': a dotted run-config key under train, model, balancer or data "
                "(e.g. train.lr)"
            )
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.tune[k] for k in keys))]


def write_folds(protocol: dict, manifest: Manifest, out: Path) -> list[Path]:
    """Write one manifest per fold under OUT/folds/fold<f>/ (only when its content changes, so a resumed
    study keeps its manifest hashes) and OUT/folds/folds.json; returns the manifest paths."""
    import csv
    import io

    from .data.splits import protocol_folds

    col = protocol["group"]
    if col not in manifest.columns:
        raise ConfigError(
            f"config key 'protocol.group': column {col!r} is not in {manifest.path} "
            f"(columns: {', '.join(manifest.columns)})"
        )
    strat = protocol.get("stratify")
    if strat is not None and strat not in manifest.columns:
        raise ConfigError(f"config key 'protocol.stratify': column {strat!r} is not in {manifest.path}")
    pool = [i for i, r in enumerate(manifest.rows) if r.get("split", "train") in ("train", "val", "test")]
    groups = [manifest.rows[i].get(col) or manifest.rows[i]["id"] for i in pool]
    labels = [manifest.rows[i].get(strat, "") for i in pool] if strat else None
    folds = protocol_folds(
        groups,
        kind=protocol["kind"],
        k=protocol.get("k", 5),
        val=protocol["val"],
        labels=labels,
        seed=protocol["seed"],
    )
    columns = list(manifest.columns) + ([] if "split" in manifest.columns else ["split"])
    paths, info = [], []
    for f, parts in enumerate(folds):
        split_of = {}
        for name, idx in zip(("train", "val", "test"), parts):
            split_of.update({pool[j]: name for j in idx})
        rows = [dict(r, split=split_of.get(i, r.get("split", ""))) for i, r in enumerate(manifest.rows)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        folder = out / "folds" / f"fold{f}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "manifest.csv"
        if not path.is_file() or path.read_text() != buf.getvalue():
            tmp = folder / ".manifest.csv.tmp"
            tmp.write_text(buf.getvalue())
            tmp.replace(path)
        for side in ("classes.json", "hierarchy.csv"):  # label spaces and hierarchy beside the manifest
            src = manifest.path.parent / side
            if src.is_file():
                shutil.copyfile(src, folder / side)
        paths.append(path)
        info.append(
            {
                "fold": f,
                "manifest": str(path),
                **{
                    f"{name}_groups": sorted({groups[j] for j in idx})
                    for name, idx in zip(("train", "val", "test"), parts)
                },
                **{f"n_{name}": len(idx) for name, idx in zip(("train", "val", "test"), parts)},
            }
        )
    (out / "folds").mkdir(parents=True, exist_ok=True)
    (out / "folds" / "folds.json").write_text(json.dumps({"protocol": protocol, "folds": info}, indent=2))
    return paths


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
    fold: int | None = None  # with a k-fold / leave-one-subject-out protocol
    trial: int | None = None  # grid point of `tune`


def plan_runs(
    spec: StudySpec,
    *,
    seeds: int,
    quick: bool,
    manifest_path: str,
    folds: list[str] | None = None,
    root: str | None = None,
) -> list[PlannedRun]:
    """Every run of the study: per seed (and per fold manifest in `folds`, data read from `root`), one
    single-task run per primary task and every variant. Runs of a group are ordered (fold, seed), so the
    i-th runs of two groups are paired."""
    base = _merge(spec.base, spec.quick) if quick else copy.deepcopy(spec.base)
    base.setdefault("data", {})["manifest"] = manifest_path
    base["data"].pop("synth", None)
    if root is not None:
        base["data"]["root"] = root
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
        options = v.pop("task_options", None) or {}  # per-variant task settings, e.g. a long-tail loss
        if not isinstance(options, dict) or set(options) - set(names):
            raise ConfigError(
                f"study variants.{i}.task_options: a mapping from this variant's tasks {names} to task "
                f"settings (e.g. {{fine: {{loss: class_balanced}}}}); got {options!r}"
            )
        tasks = [_merge(by_name[n], options.get(n) or {}) for n in names]
        groups.append((name, {"tasks": tasks, **v}))
    for (
        _,
        extra,
    ) in groups:  # a declared parent outside a run's task set (e.g. STL baselines) is dropped there
        names = {t["name"] for t in extra["tasks"]}
        extra["tasks"] = [
            {k: v for k, v in t.items() if k != "parent"} if t.get("parent") not in (None, *names) else t
            for t in extra["tasks"]
        ]
    for _, extra in groups:  # balanced sampling by a task the run lacks (e.g. another STL baseline): random
        train = extra.get("train") or {}
        sampler = train.get("sampler", (base.get("train") or {}).get("sampler"))
        task = train.get("balance_task", (base.get("train") or {}).get("balance_task"))
        if sampler == "balanced" and task not in {t["name"] for t in extra["tasks"]}:
            extra["train"] = {**train, "sampler": "random", "balance_task": None}
    variants = [g for g, _ in groups if not (spec.stl and g.startswith("stl_"))]
    if spec.reference is not None and spec.reference not in variants:
        raise ConfigError(f"study reference: {spec.reference!r} is not a variant; variants are {variants}")
    grid = tuning_grid(spec)
    plan = []
    for fold, fold_manifest in enumerate(folds) if folds else [(None, None)]:
        for seed in range(seeds):
            for group, extra in groups:
                for trial, point in enumerate(grid):
                    cfg = _merge(base, extra)
                    for key, value in point.items():
                        set_key(cfg, key, copy.deepcopy(value), where="study tune:")
                    cfg.setdefault("train", {})["seed"] = seed
                    name = f"{group}_s{seed}" if fold is None else f"{group}_f{fold}_s{seed}"
                    if spec.tune:
                        name += f"_t{trial}"
                    cfg["name"] = name
                    if fold_manifest is not None:
                        cfg["data"]["manifest"] = fold_manifest
                    try:
                        config = from_dict(RunConfig, cfg)
                        validate(config)
                    except ConfigError as e:
                        raise ConfigError(f"study run {name}: {e}") from None
                    plan.append(PlannedRun(name, group, seed, config, fold, trial if spec.tune else None))
    return plan


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


def _run_one(
    run: PlannedRun, run_dir: Path, manifest: Manifest, spec_tasks, test_splits, evaluate=True, log=None
) -> str:
    """Train one run (resuming a killed one), then (`evaluate`) test it on the test splits and measure its
    encoder; each step is skipped when its output exists. Returns the log line."""
    from .train import Trainer

    line = "trained earlier, reusing"
    if not (run_dir / "summary.json").is_file():
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        if not resume and run_dir.is_dir():  # killed before its first checkpoint: nothing to resume
            shutil.rmtree(run_dir)
        res = Trainer(run.config, run_dir, manifest=manifest, single_process=True).fit(resume=resume, log=log)
        line = f"{res.steps} steps, {res.wall_time_s:.0f}s, best step {res.best_step}"
    if not evaluate:
        return line
    tested = False
    for split in test_splits:
        if not (run_dir / f"predictions_{split}.npz").is_file():
            ev = evaluate_run(run_dir, split=split)
            (run_dir / f"eval_{split}.json").write_text(json.dumps(ev, indent=2))
            tested = True
    path = run_dir / "representation.json"
    if not path.is_file():
        rq = representation_quality(run_dir, spec_tasks, test_split=test_splits[0])
        path.write_text(json.dumps(rq, indent=2))
    return line + ("; tested" if tested else "")


def _execute(runs, out: Path, common: tuple, evaluate: bool, jobs: int, ranks: tuple, log) -> None:
    """Run `_run_one` for `runs`: in this process, in `jobs` worker processes, or (under torchrun) the
    share of this process (runs r, r + N, ...)."""
    import os

    rank, world = ranks
    mine = [(i, r) for i, r in enumerate(runs) if i % world == rank]
    work = [(run, out / "runs" / run.name, *common, evaluate) for _, run in mine]
    if jobs > 1 and world == 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(threads,),
        ) as pool:
            futures = {pool.submit(_run_one_quiet, w): (i, w[0]) for (i, _), w in zip(mine, work)}
            for f in as_completed(futures):
                i, run = futures[f]
                log(f"  {i + 1}/{len(runs)} {run.name}: {f.result()}")
    else:
        for (i, run), w in zip(mine, work):
            log(f"  {i + 1}/{len(runs)} {run.name}: {_run_one(*w, log=None if world > 1 else log)}")


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_one_quiet(args) -> str:
    return _run_one(*args, log=None)


def _barrier(out: Path, phase: str, rank: int, world: int) -> None:
    """Wait until every torchrun process has reached `phase`: a file per process under OUT/.ranks (the
    study folder is shared by the processes anyway). Not a process group: the runs check
    `torch.distributed.is_initialized()` to decide whether to all-reduce, and each process trains alone."""
    import os

    token = "-".join(
        os.environ.get(k, "")
        for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")
    )
    folder = out / ".ranks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{phase}-{rank}").write_text(token)
    while True:
        ready = 0
        for r in range(world):
            try:
                ready += (folder / f"{phase}-{r}").read_text() == token
            except OSError:
                pass
        if ready == world:
            return
        time.sleep(0.5)


def run_study(
    spec: StudySpec,
    out: str | Path,
    *,
    seeds: int | None = None,
    quick: bool = False,
    jobs: int = 1,
    log=print,
) -> dict:
    """Train and evaluate every run of the study (skipping finished ones) and write OUT/results.json.

    `jobs` > 1 trains that many runs at once in worker processes (each with cores / jobs threads; runs are
    independent, so only floating-point summation order can differ from a sequential study). Under
    torchrun with N processes, process r takes runs r, r + N, ... on its own device (cuda:LOCAL_RANK when
    CUDA is present) and process 0 writes the results once all have finished.
    """

    from .train import prepare_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    launch = distributed.launched()  # torchrun's ranks, without joining a process group
    rank, world, local_rank = launch.rank, launch.world, launch.local_rank
    if world > 1 and rank != 0:
        _barrier(out, "prepared", rank, world)  # process 0 prepares the data (world, holdout, folds) first
    seeds = seeds or (spec.quick_seeds if quick else None) or spec.seeds
    t0 = time.perf_counter()
    protocol = check_protocol(spec)
    base_cfg = from_dict(RunConfig, {**_merge(spec.base, spec.quick if quick else {}), "tasks": spec.tasks})
    manifest = prepare_data(base_cfg)
    if spec.transfer:  # target classes are carved out before any source run is trained
        from .transfer import check_transfer_spec, prepare_holdout

        check_transfer_spec(spec.transfer)
        blank = [t.get("column") or t["name"] for t in spec.tasks]
        blank += [t["args"]["refs_column"] for t in spec.tasks if (t.get("args") or {}).get("refs_column")]
        manifest = prepare_holdout(spec.transfer, manifest, out, blank)
    folds = None
    if protocol is not None:
        folds = [str(p) for p in write_folds(protocol, manifest, out)]
    plan = plan_runs(
        spec,
        seeds=seeds,
        quick=quick,
        manifest_path=str(manifest.path),
        folds=folds,
        root=str(manifest.root) if folds else None,
    )
    what = f"{seeds} paired seed(s)" + (f" x {len(folds)} {protocol['kind']} folds" if folds else "")
    grid = tuning_grid(spec)
    if len(grid) > 1:
        what += f" x {len(grid)} tuning points"
    if world > 1:
        if rank == 0:
            _barrier(out, "prepared", rank, world)  # the data is ready: the other processes may start
        import torch

        if torch.cuda.is_available():
            for run in plan:
                if run.config.train.device in ("auto", "cuda"):
                    run.config.train.device = f"cuda:{local_rank}"
        n_mine = sum(1 for i in range(len(plan)) if i % world == rank)
        log(f"study {spec.name}: {len(plan)} runs ({what}), {n_mine} on process {rank} of {world} -> {out}")
    else:
        log(
            f"study {spec.name}: {len(plan)} runs ({what}) -> {out}"
            + (f", {jobs} at a time" if jobs > 1 else "")
        )
    common = (manifest, spec.tasks, spec.test_splits)
    tuning = None
    if spec.tune:  # train every grid point, select per group on validation, then test the chosen ones
        _execute(plan, out, common, False, jobs, (rank, world), log)
        if world > 1:
            _barrier(out, "tuned", rank, world)
        plan, tuning = select_trials(plan, out, grid)
        chosen = ", ".join(f"{g['group']}: t{g['selected']}" for g in tuning["groups"])
        log(f"tuning: selected on validation: {chosen}")
    _execute(plan, out, common, True, jobs, (rank, world), log)
    release_decoded_clips()  # the decoded clips shared by the runs, their evaluations and measurements
    if world > 1:
        _barrier(out, "trained", rank, world)  # every process has finished its runs
        if rank != 0:
            return {}
    results = summarise(spec, plan, out, manifest, time.perf_counter() - t0, quick=quick)
    if tuning is not None:
        results["tuning"] = tuning
        results["settings"]["tune"] = spec.tune
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
    summary, dm_summary, tests, reference_tests, resamples = [], [], [], [], {}
    per_run_metrics: dict[str, dict[str, dict]] = {}
    folded = any(r.fold is not None for r in plan)
    for split in spec.test_splits:
        clip_ids = None
        if folded:  # the test clips differ between folds: units (fold x seed) are aligned on clip ids
            ids = {i for r in plan for i in _load(out, r, split)[0]["ids"]}
            clip_ids = {c: j for j, c in enumerate(sorted(ids))}
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
                    if folded:
                        entry.update(_fold_stats(runs, per_seed, metric))
                    unit = "fold x seed units" if folded else "seeds"
                    if metric in stats.PER_CLIP:
                        sc, va = _clip_matrix(task, name, loaded, clip_ids)
                        boot = (stats.bootstrap_units_clips if folded else stats.bootstrap_seeds_clips)(
                            sc, va
                        )
                        resamples[(split, group, name)] = {"boot": boot, "scores": sc, "valid": va}
                        entry["ci_lo"], entry["ci_hi"] = stats.interval(boot)
                        entry["ci_method"] = f"bootstrap over test clips x {unit}"
                    elif metric in stats.SET_METRICS and not folded:
                        fn = stats.SET_METRICS[metric]
                        outs, tgt, va = _set_inputs(name, loaded)
                        boot = stats.bootstrap_set_metric(fn, outs, tgt, va)
                        resamples[(split, group, name)] = {
                            "boot": boot,
                            "set": (fn, outs, tgt, va),
                        }
                        entry["ci_lo"], entry["ci_hi"] = stats.interval(boot)
                        entry["ci_method"] = (
                            f"bootstrap over test clips x seeds, {metric} recomputed per resample"
                        )
                    else:
                        entry["ci_lo"], entry["ci_hi"] = stats.seed_interval(values)
                        entry["ci_method"] = f"bootstrap over {unit}"
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
            for b in range(len(resamples[(split, group, present[0])]["boot"])):
                mb = {t: resamples[(split, group, t)]["boot"][b] for t in present}
                sb = {t: resamples[(split, f"stl_{t}", t)]["boot"][b] for t in present}
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
                    "unit": "fold x seed run" if folded else "seed",
                    "details": details,
                    "tasks": present,
                }
            )
            for t in present:
                mean_diff, p, method = _paired_test(
                    resamples[(split, group, t)], resamples[(split, f"stl_{t}", t)]
                )
                tests.append(
                    {
                        "run": group,
                        "task": t,
                        "split": split,
                        "metric": _main(task_specs[t]),
                        "mean_diff": mean_diff,
                        "p": p,
                        "method": method,
                    }
                )
        # every other multi-task group against the reference variant (its own Holm family)
        for group in groups if spec.reference else ():
            if group == spec.reference or group.startswith("stl_"):
                continue
            for t in primary:
                keys = (split, group, t), (split, spec.reference, t)
                if keys[0] not in resamples or keys[1] not in resamples:
                    continue
                mean_diff, p, method = _paired_test(resamples[keys[0]], resamples[keys[1]])
                reference_tests.append(
                    {
                        "run": group,
                        "reference": spec.reference,
                        "task": t,
                        "split": split,
                        "metric": _main(task_specs[t]),
                        "mean_diff": mean_diff,
                        "run_mean": _mean(summary, group, t, split, _main(task_specs[t])),
                        "reference_mean": _mean(summary, spec.reference, t, split, _main(task_specs[t])),
                        "p": p,
                        "method": method,
                    }
                )
    for family in (tests, reference_tests):
        for t, p in zip(family, stats.holm([t["p"] for t in family]) if family else []):
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
        "tests_method": "per-clip metrics (top1, mae): paired sign-flip permutation test on per-clip score "
        "differences (averaged over seeds), 10,000 permutations; set metrics (mAP): paired approximate "
        "randomisation (each clip's outputs swapped between the runs, metric recomputed), 2,000 permutations; "
        "Holm-corrected across all tests against the single-task baselines (each test names its method); tests "
        "against the `reference` variant (reference_tests) are Holm-corrected as their own family",
        "reference": spec.reference,
        "reference_tests": reference_tests,
        "tasks": [dict(t, main_metric=_main(t)) for t in spec.tasks],
        "dataset": _dataset_info(manifest, spec.test_splits),
        "provenance": {
            r.name: json.loads((out / "runs" / r.name / "provenance.json").read_text()) for r in plan
        },
        "compute": {r.name: _compute(out / "runs" / r.name) for r in plan},
        "compute_method": "per run: optimiser steps, wall time, device, parameter count and forward FLOPs per "
        "clip (torch.utils.flop_counter.FlopCounterMode, one clip of the run's input shape, eval mode; a "
        "multiply-add counts 2)",
        "groups": {g: [r.name for r in rs] for g, rs in groups.items()},
        "settings": {
            "seeds": len({r.seed for r in next(iter(groups.values()))}),
            "quick": quick,
            "test_splits": spec.test_splits,
            "protocol": check_protocol(spec) or {"kind": "holdout"},
        },
        **({"folds": json.loads((out / "folds" / "folds.json").read_text())["folds"]} if folded else {}),
        "wall_time_s": round(wall, 1),  # this invocation (a resumed study counts only what it redid)
        "runs_wall_time_s": round(
            sum((_compute(out / "runs" / r.name).get("wall_time_s") or 0.0) for r in plan), 1
        ),  # training time of every run, whenever it was trained
    }


DELTA_M_CONVENTION = (
    "delta_m = (100/K) sum_k (-1)^h_k (M_mtl,k - M_stl,k) / M_stl,k over the primary tasks' main metrics "
    "(mean over seeds), h_k = 1 if higher is better; lower is better (negative: multi-task beats single-task); "
    "baselines below 0.05 excluded; auxiliary tasks never counted"
)


def _paired_test(a: dict, b: dict) -> tuple[float, float, str]:
    """(mean difference a - b, p, method) of two groups' resamples of one task on one split."""
    if "set" in a:  # a set metric: approximate randomisation over clips
        fn, outs_a, tgt, va = a["set"]
        mean_diff, p = stats.randomisation_test(fn, outs_a, b["set"][1], tgt, va)
        return mean_diff, p, "paired approximate randomisation over test clips (metric recomputed)"
    both = a["valid"] & b["valid"]
    diff = np.where(both, a["scores"] - b["scores"], np.nan)
    with warnings.catch_warnings():  # clips labelled in no run stay NaN (skipped by the test)
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = np.nanmean(diff, axis=0)
    return (
        float(np.nanmean(diff)),
        stats.sign_flip_test(diff),
        "paired sign-flip permutation test on per-clip score differences",
    )


def _clip_matrix(task: Task, name: str, loaded: list, clip_ids: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip scores and validity [runs, clips]. Without folds every run saw the same clips in the same
    order; with folds each run fills the columns of its own test clips (the others are invalid)."""
    per = [
        stats.per_clip_scores(task, p["outputs"][name], p["targets"][name], p["masks"][name])
        for p, _ in loaded
    ]
    if clip_ids is None:
        return np.stack([sc for sc, _ in per]), np.stack([va for _, va in per])
    sc = np.zeros((len(loaded), len(clip_ids)))
    va = np.zeros((len(loaded), len(clip_ids)), dtype=bool)
    for u, ((p, _), (s_, v_)) in enumerate(zip(loaded, per)):
        cols = [clip_ids[c] for c in p["ids"]]
        sc[u, cols], va[u, cols] = s_, v_
    return sc, va


def _set_inputs(name: str, loaded: list) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A set metric's inputs: every run's outputs [N, C], and the targets and validity [N, C] they share
    (every run of a fixed-split study is tested on the same clips in the same order)."""
    p0 = loaded[0][0]
    tgt = p0["targets"][name]
    m = p0["masks"][name].astype(bool)
    va = np.broadcast_to(m.reshape(len(m), -1), tgt.shape) if m.ndim < tgt.ndim or m.shape != tgt.shape else m
    return [p["outputs"][name] for p, _ in loaded], tgt, np.ascontiguousarray(va)


def _fold_stats(runs: list[PlannedRun], per_run: list[dict], metric: str) -> dict:
    """Mean and std over folds (of each fold's mean over seeds), and the spread over fold x seed units."""
    by_fold: dict[int, list[float]] = {}
    for r, m in zip(runs, per_run):
        if metric in m:
            by_fold.setdefault(r.fold, []).append(m[metric])
    fold_means = [float(np.mean(v)) for _, v in sorted(by_fold.items())]
    units = [v for vs in by_fold.values() for v in vs]
    return {
        "std": float(np.std(fold_means)),
        "std_over": "folds (each fold's mean over seeds)",
        "std_units": float(np.std(units)),
        "per_fold": fold_means,
        "n_folds": len(fold_means),
        "n_seeds": len({r.seed for r in runs}),
        "n_units": len(units),
    }


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
        k: s.get(k)
        for k in (
            "steps",
            "wall_time_s",
            "device",
            "n_parameters",
            "flops_per_clip",
            "best_step",
            "samples_seen",
        )
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
