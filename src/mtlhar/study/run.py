"""`run_study`: prepare the data, plan the runs, train and test them (resuming), write OUT/results.json."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

from .. import distributed
from ..config import RunConfig, from_dict, merge_dicts
from ..data.dataset import release_decoded_clips
from ..data.manifest import Manifest
from ..transfer import check_transfer_spec, prepare_holdout, study_transfer, transfer_question
from .execute import barrier, execute_runs, share_devices
from .folds import write_folds
from .plan import PlannedRun, plan_runs
from .spec import StudySpec, check_protocol, tuning_grid
from .summary import summarise
from .tuning import select_trials


def run_study(
    spec: StudySpec,
    out: str | Path,
    *,
    seeds: int | None = None,
    quick: bool = False,
    jobs: int = 1,
    log: Callable = print,
) -> dict:
    """Train and evaluate every run of the study (skipping finished ones) and write OUT/results.json.

    `jobs` > 1 trains that many runs at once in worker processes (each with cores / jobs threads; runs are
    independent, so only floating-point summation order can differ from a sequential study). Under
    torchrun with N processes, process r takes runs r, r + N, ... on its own device (cuda:LOCAL_RANK when
    CUDA is present) and process 0 writes the results once all have finished.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    launch = distributed.launched()  # torchrun's ranks, without joining a process group
    rank, world = launch.rank, launch.world
    if world > 1 and rank != 0:
        barrier(out, "prepared", rank, world)  # process 0 prepares the data (world, holdout, folds) first
    seeds = seeds or (spec.quick_seeds if quick else None) or spec.seeds
    t0 = time.perf_counter()
    protocol = check_protocol(spec)
    manifest = prepare_manifest(spec, out, quick=quick)
    folds = [str(p) for p in write_folds(protocol, manifest, out)] if protocol is not None else None
    root = str(manifest.root) if folds else None
    plan = plan_runs(spec, seeds=seeds, quick=quick, manifest_path=str(manifest.path), folds=folds, root=root)
    grid = tuning_grid(spec)
    kind = protocol["kind"] if protocol else "holdout"
    what = plan_description(seeds, len(folds) if folds else 0, kind, len(grid))
    if world > 1:
        if rank == 0:
            barrier(out, "prepared", rank, world)  # the data is ready: the other processes may start
        share_devices(plan, launch.local_rank)
        n_mine = sum(1 for i in range(len(plan)) if i % world == rank)
        log(f"study {spec.name}: {len(plan)} runs ({what}), {n_mine} on process {rank} of {world} -> {out}")
    else:
        at_once = f", {jobs} at a time" if jobs > 1 else ""
        log(f"study {spec.name}: {len(plan)} runs ({what}) -> {out}{at_once}")
    plan, tuning = train_and_test(spec, plan, out, manifest, grid, jobs=jobs, rank=rank, world=world, log=log)
    if world > 1:
        barrier(out, "trained", rank, world)  # every process has finished its runs
        if rank != 0:
            return {}
    results = summarise(spec, plan, out, manifest, time.perf_counter() - t0, quick=quick)
    if tuning is not None:
        results["tuning"] = tuning
        results["settings"]["tune"] = spec.tune
    if spec.transfer:
        results["transfer"] = study_transfer(spec, plan, out, str(manifest.path), quick=quick, log=log)
        results["transfer_answer"] = transfer_question(results["transfer"])
        results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def train_and_test(
    spec: StudySpec,
    plan: list[PlannedRun],
    out: Path,
    manifest: Manifest,
    grid: list[dict],
    *,
    jobs: int,
    rank: int,
    world: int,
    log: Callable,
) -> tuple[list[PlannedRun], dict | None]:
    """Train and test this process's share of the runs; with `tune`, first train every grid point and keep
    per group the point best on validation. Returns the tested runs and the tuning record (or None)."""
    execute = functools.partial(
        execute_runs,
        out=out,
        manifest=manifest,
        spec_tasks=spec.tasks,
        test_splits=spec.test_splits,
        jobs=jobs,
        rank=rank,
        world=world,
        log=log,
    )
    tuning = None
    if spec.tune:  # train every grid point, select per group on validation, then test the chosen ones
        execute(plan, evaluate=False)
        if world > 1:
            barrier(out, "tuned", rank, world)
        plan, tuning = select_trials(plan, out, grid)
        chosen = ", ".join(f"{g['group']}: t{g['selected']}" for g in tuning["groups"])
        log(f"tuning: selected on validation: {chosen}")
    execute(plan, evaluate=True)
    release_decoded_clips()  # the decoded clips shared by the runs, their evaluations and measurements
    return plan, tuning


def prepare_manifest(spec: StudySpec, out: Path, *, quick: bool) -> Manifest:
    """The study's manifest: the base config's data (a synthetic world is generated), and with `transfer`
    the target classes carved out (OUT/data/manifest.csv) before any source run is trained."""
    from ..build import prepare_data

    base = merge_dicts(spec.base, spec.quick if quick else {})
    manifest = prepare_data(from_dict(RunConfig, {**base, "tasks": spec.tasks}))
    if spec.transfer:
        check_transfer_spec(spec.transfer)
        blank = [t.get("column") or t["name"] for t in spec.tasks]
        blank += [t["args"]["refs_column"] for t in spec.tasks if (t.get("args") or {}).get("refs_column")]
        manifest = prepare_holdout(spec.transfer, manifest, out, blank)
    return manifest


def plan_description(seeds: int, n_folds: int, protocol_kind: str, n_points: int) -> str:
    """What the runs of a group are, e.g. '3 paired seed(s) x 5 kfold folds x 2 tuning points'."""
    what = f"{seeds} paired seed(s)" + (f" x {n_folds} {protocol_kind} folds" if n_folds else "")
    return what + (f" x {n_points} tuning points" if n_points > 1 else "")
