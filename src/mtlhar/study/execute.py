"""Running a study's runs: train (resuming a killed run), test and measure each one, in this process, in
worker processes (`jobs`), or as this process's share under torchrun."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..data.manifest import Manifest
from ..evaluate import evaluate_run
from ..representation import representation_quality
from .plan import PlannedRun


def run_one(
    run: PlannedRun,
    run_dir: Path,
    manifest: Manifest,
    spec_tasks: list[dict],
    test_splits: list[str],
    evaluate: bool = True,
    log: Callable | None = None,
) -> str:
    """Train one run (resuming a killed one), then (`evaluate`) test it on the test splits and measure its
    encoder; each step is skipped when its output exists. Returns the log line."""
    from ..train import Trainer

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


def execute_runs(
    runs: list[PlannedRun],
    out: Path,
    *,
    manifest: Manifest,
    spec_tasks: list[dict],
    test_splits: list[str],
    evaluate: bool,
    jobs: int,
    rank: int,
    world: int,
    log: Callable,
) -> None:
    """`run_one` for each of `runs`: in this process, in `jobs` worker processes, or (under torchrun with
    `world` processes) this process's share, runs rank, rank + world, ..."""
    mine = [(i, r) for i, r in enumerate(runs) if i % world == rank]
    work = [(run, out / "runs" / run.name, manifest, spec_tasks, test_splits, evaluate) for _, run in mine]
    if jobs > 1 and world == 1:
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
            log(f"  {i + 1}/{len(runs)} {run.name}: {run_one(*w, log=None if world > 1 else log)}")


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_one_quiet(args: tuple) -> str:
    return run_one(*args, log=None)


def share_devices(plan: list[PlannedRun], local_rank: int) -> None:
    """Under torchrun on CUDA: this process's runs train on cuda:LOCAL_RANK (unless they name a device)."""
    import torch

    if torch.cuda.is_available():
        for run in plan:
            if run.config.train.device in ("auto", "cuda"):
                run.config.train.device = f"cuda:{local_rank}"


def barrier(out: Path, phase: str, rank: int, world: int) -> None:
    """Wait until every torchrun process has reached `phase`: a file per process under OUT/.ranks (the
    study folder is shared by the processes anyway). Not a process group: the runs check
    `torch.distributed.is_initialized()` to decide whether to all-reduce, and each process trains alone."""
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
