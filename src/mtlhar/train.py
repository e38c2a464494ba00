"""The training loop: explicit and readable.

One optimiser step = `accumulate` micro-batches. Every `checkpoint_every` steps the full state (model,
optimiser, schedule, balancer, scaler, RNG states, data position, history) is written atomically to
`RUN/checkpoints/last.pt`; `resume=True` continues from it and ends bitwise equal to an unbroken run on
CPU, because every random choice depends only on (seed, epoch, position). Every `eval_every` steps the
validation split is scored and the checkpoint with the best validation multi-task score is kept as
`RUN/checkpoints/best.pt` (the only checkpoint used for test numbers).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import checkpoint, distributed, provenance, runs
from .build import (
    build_balancer,
    build_cross_terms,
    build_model,
    build_optimizer,
    lr_factor,
    make_dataset,
    pick_device,
    prepare_data,
    seed_everything,
)
from .config import RunConfig, check_sampler, dump_yaml, to_dict
from .data.dataset import ClipDataset, collate, decode_batch_on, resolve_tasks
from .data.manifest import Manifest
from .errors import ConfigError, DataError, Diverged, TooManyBadSamples
from .evaluate import evaluate_model, validation_score
from .precision import choose_autocast
from .progress import Progress
from .tasks import Task, fit_class_counts

# the construction functions used to live here; they are importable from here as before
__all__ = [
    "Trainer",
    "TrainResult",
    "balanced_indices",
    "build_model",
    "lr_factor",
    "make_dataset",
    "prepare_data",
    "train",
]


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


@dataclass
class TrainResult:
    run_dir: Path
    best_step: int
    best_score: float
    val_metrics: dict
    steps: int
    wall_time_s: float
    bad_samples: list


class Trainer:
    """Builds everything a run needs from a RunConfig and trains it into `run_dir`."""

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        manifest: Manifest | None = None,
        single_process: bool = False,
    ):
        """`single_process`: train in this process alone even when launched by torchrun (a study gives
        each process its own runs)."""
        self.cfg, self.run_dir = cfg, Path(run_dir)
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.dist = distributed.DistInfo() if single_process else distributed.setup()
        self.device = pick_device(t.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if t.batch_size % self.dist.world:
            raise ConfigError(
                f"train.batch_size {t.batch_size} must be divisible by the {self.dist.world} processes"
            )
        self.manifest = manifest or prepare_data(cfg)
        self.tasks = resolve_tasks(cfg.tasks, self.manifest)
        self._setup_data()
        seed_everything(t.seed)
        self._setup_model()
        self.opt_params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = build_optimizer(cfg, self.opt_params)
        self.balancer = build_balancer(cfg, self.tasks, self.device)
        if self.balancer.parameters():  # learnable task weights (e.g. uncertainty): no weight decay
            self.opt.add_param_group({"params": self.balancer.parameters(), "weight_decay": 0.0})
        self.cross_terms = build_cross_terms(cfg.cross_terms, self.tasks, self.manifest)
        # amp: auto stays in float32 on CPU, where bfloat16 is not bitwise reproducible (mtlhar.precision)
        self.precision = choose_autocast(t.amp, self.device)
        self.amp, self.amp_dtype, self.amp_reason = self.precision
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.state = {
            "step": 0,
            "epoch": 0,
            "batch_in_epoch": 0,
            "best_score": -math.inf,
            "best_step": -1,
            "evals_without_improvement": 0,
            "bad": [],
            "samples_seen": 0,
            "wall_time_s": 0.0,
        }

    def _setup_data(self) -> None:
        """The training and validation sets, the training split's class counts, the label checks and the
        balanced sampler's labels."""
        cfg, t = self.cfg, self.cfg.train
        self.train_set = make_dataset(cfg, self.manifest, self.tasks, cfg.data.train_split, train=True)
        self.val_set = make_dataset(cfg, self.manifest, self.tasks, cfg.data.val_split, train=False)
        self.n_train_batches = len(self.train_set) // t.batch_size
        if self.n_train_batches == 0:
            raise ConfigError(
                f"train.batch_size {t.batch_size} is larger than the training split ({len(self.train_set)} samples)"
            )
        # class counts of the training split only: class-balanced loss, logit adjustment (saved with the run)
        fit_class_counts(self.tasks, self.train_set.labels)
        self.unseen_classes = check_labels(self.tasks, self.train_set, self.val_set, cfg.data)
        for name, classes in self.unseen_classes.items():
            if self.dist.main:
                print(
                    f"warning: task {name!r}: {len(classes)} class(es) have no training clip and can never be "
                    f"learnt: {', '.join(classes[:8])}{' ...' if len(classes) > 8 else ''}"
                )
        check_sampler(cfg)
        self.balance_labels = None
        if t.sampler == "balanced":
            name = t.balance_task
            self.balance_labels = [
                int(lab[name][0]) if bool(lab[name][1].all()) else -1 for lab in self.train_set.labels
            ]

    def _setup_model(self) -> None:
        """The model (shapes it takes from the data: a [T, C] sample's channels; statistics of the training
        split where the encoder fits them), on its device, wrapped for DDP when there are several ranks."""
        cfg, t = self.cfg, self.cfg.train
        sample = (
            self.train_set._read(self.train_set.indices[0])
            if cfg.data.stream != "rgb" and len(self.train_set)
            else None
        )
        self.model = build_model(cfg, self.tasks, sample=sample).to(self.device)
        fit = getattr(self.model.encoder, "fit_to_data", None)  # the encoder protocol's optional hook
        if fit is not None and cfg.data.stream != "rgb":
            fit([self.train_set._read(r) for r in self.train_set.indices])
        self.forward = self.model
        if self.dist.world > 1:  # every head is always in the graph, so no unused-parameter search is needed
            if t.sync_bn:  # BatchNorm statistics over the global batch, as one process would see it
                from .models.sync_bn import convert_sync_batchnorm

                self.model = convert_sync_batchnorm(self.model, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.dist.rank > 0:  # the same weights everywhere (DDP broadcasts them), other dropout draws
                torch.manual_seed(t.seed + 1_000_003 * self.dist.rank)

    # ----------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch)
        b = self.cfg.train.batch_size
        if self.balance_labels is not None:
            perm = balanced_indices(self.balance_labels, self.n_train_batches * b, g)
        else:
            perm = torch.randperm(len(self.train_set), generator=g).tolist()
        batches = [perm[i * b : (i + 1) * b] for i in range(self.n_train_batches)]
        return [batch[self.dist.rank :: self.dist.world] for batch in batches]

    def _batches(self):
        """Yield batches forever from the saved data position (epoch, batch_in_epoch)."""
        while True:
            epoch, start = self.state["epoch"], self.state["batch_in_epoch"]
            self.train_set.set_epoch(epoch)
            order = self._epoch_order(epoch)[start:]
            # the loader's own generator (seeded by seed and epoch): creating it draws nothing from the
            # global torch RNG, which dropout uses, so a loader made mid-epoch by a resume changes no draw
            gen = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch + 7)
            loader = DataLoader(
                self.train_set,
                batch_sampler=order,
                collate_fn=collate,
                num_workers=self.cfg.data.num_workers,
                persistent_workers=False,
                generator=gen,
            )
            for batch in loader:
                self.state["batch_in_epoch"] += 1
                yield batch
            self.state["epoch"] += 1
            self.state["batch_in_epoch"] = 0

    def _to_device(self, batch: dict) -> dict:
        dev = self.device
        nb = dev.type == "cuda"
        batch = decode_batch_on(batch, dev)  # data.jpeg_decode: device
        moved = {
            key: {k: v.to(dev, non_blocking=nb) for k, v in batch[key].items()}
            for key in ("inputs", "targets", "mask", "streams", "valid")
            if key in batch  # streams and their validity only when the config declares streams
        }
        return {**batch, **moved}

    def compute_losses(self, batch: dict, step_counts: list[float] | None = None):
        """Per-task masked mean losses, presence flags, and the cross-task terms.

        `step_counts`: every task's labelled count over all micro-batches of the optimiser step (and all
        ranks). Each micro-batch's loss is then its labelled sum over that count, times `accumulate`, so
        that the trainer's division by `accumulate` gives the mean over the whole step's labels, as one
        large batch would, when micro-batches hold different numbers of labels.
        """
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.forward(batch["inputs"], batch["targets"], mode="train")
        totals, counts = {}, []
        for t in self.tasks:
            totals[t.name], count = t.spec.loss(
                t, out.heads[t.name].output, batch["targets"][t.name], batch["mask"][t.name]
            )
            counts.append(count.detach().float())
        scale = float(self.dist.world)
        if step_counts is None:
            # one all-reduce for every task's labelled count: means over all ranks' labelled samples, and a
            # task labelled on any rank counts as present everywhere (DDP's gradient average then gives the
            # right mean)
            step_counts = distributed.all_reduce_sum(torch.stack(counts)).tolist()
        else:
            scale *= self.cfg.train.accumulate
        losses, present = {}, {}
        for t, n in zip(self.tasks, step_counts):
            losses[t.name] = totals[t.name] * (scale / max(n, 1.0))
            present[t.name] = n > 0
        cross = {
            term.name: term(out.heads, batch, {t.name: t for t in self.tasks}) * term.weight
            for term in self.cross_terms
        }
        return losses, present, cross, out

    def backward_step(self, batch: dict, step: int, step_counts: list[float] | None = None):
        """Forward, per-task losses, and the backward pass of one micro-batch as the balancer decides.

        Loss-level balancers return one weighted sum (one backward). Gradient balancers
        (`balancer.needs_gradients`) run their own backward from the task losses, the shared tensor
        (`model.shared_tap(out)`) and the shared parameters; cross-task terms are added as plain losses.
        """
        losses, present, cross, out = self.compute_losses(batch, step_counts)
        scale = self.cfg.train.accumulate
        if getattr(self.balancer, "needs_gradients", False):
            weights = self.balancer.backward(
                losses,
                present,
                step=step,
                extra=sum(cross.values()) if cross else None,
                shared=out.taps[self.model.shared_tap()],
                shared_params=[p for p in self.model.shared_parameters() if p.requires_grad],
                scale=lambda x: self.scaler.scale(x / scale),
                params=self.opt_params,  # single traversal of the heads (single process)
            )
        else:
            total, weights = self.balancer.combine(losses, present, step)
            for v in cross.values():
                total = total + v
            self.scaler.scale(total / scale).backward()
        return losses, present, cross, weights

    # ----------------------------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "balancer": self.balancer.state_dict(),
            "state": dict(self.state),
            "rng": checkpoint.rng_state(),
            "rng_ranks": distributed.all_gather_objects(checkpoint.rng_state())
            if self.dist.world > 1
            else None,
            "tasks": [t.to_dict() for t in self.tasks],
            "config": to_dict(self.cfg),
        }

    def _save(self, obj: dict, path: Path) -> None:
        """Write a checkpoint, never one whose weights hold a NaN or an infinite value."""
        # the model's tensors and learnable task weights (balancer statistics may hold NaN as "not yet")
        learnt = {f"balancer parameter {i}": p.detach() for i, p in enumerate(self.balancer.parameters())}
        bad = checkpoint.first_nonfinite(obj["model"]) or checkpoint.first_nonfinite(learnt)
        if bad is not None:
            raise Diverged(
                f"step {self.state['step']}: parameter {bad!r} is NaN or infinite; no checkpoint written "
                f"({path.name} keeps the last finite weights)"
            )
        checkpoint.save(obj, path)

    def _restore(self, path: Path, allow_changes: Sequence[str], log) -> int:
        """Load `last.pt` into this trainer after checking that the config is the one it was trained with
        (changes only where `allow_changes` names them). Returns the checkpoint's step."""
        ck = checkpoint.load(path, map_location=self.device)
        diff = runs.check_resume_changes(ck["config"], to_dict(self.cfg), allow_changes)
        old_tasks = {d["name"]: d for d in ck["tasks"]}
        new_tasks = {t.name: t.to_dict() for t in self.tasks}
        if old_tasks != new_tasks:  # the same config over a changed manifest (new classes, counts)
            runs.check_resume_changes(old_tasks, new_tasks, (), where="--resume (tasks from the data)")
        try:
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise DataError(f"{path}: does not fit this run's model ({str(e).splitlines()[0]})") from None
        self.scaler.load_state_dict(ck["scaler"])
        self.balancer.load_state_dict(ck["balancer"])
        self.state = dict(ck["state"])
        ranks = ck.get("rng_ranks")
        checkpoint.set_rng_state(
            ranks[self.dist.rank] if ranks and len(ranks) == self.dist.world else ck["rng"]
        )
        if diff and log:
            log(f"resuming with changed config: {', '.join(f'{k}={v[1]!r}' for k, v in diff.items())}")
        self.resume_changes = {k: [v[0], v[1]] for k, v in diff.items()}
        return int(self.state["step"])

    def _save_last(self) -> None:
        """`last.pt` (every rank takes part: the random states of all ranks go into it; rank 0 writes)."""
        state = self._checkpoint_state()
        if self.dist.main:
            self._save(state, self.run_dir / "checkpoints" / "last.pt")

    def save_best(self, metrics: dict) -> None:
        self._save(
            {
                "model": self.model.state_dict(),
                "tasks": [t.to_dict() for t in self.tasks],
                "config": to_dict(self.cfg),
                "step": self.state["step"],
                "val_metrics": metrics,
            },
            self.run_dir / "checkpoints" / "best.pt",
        )

    # ----------------------------------------------------------------------------------------------
    def fit(
        self,
        *,
        resume: bool = False,
        on_step: Callable[[int], None] | None = None,
        log: Callable[[str], None] | None = print,
        allow_changes: Sequence[str] = (),
    ) -> TrainResult:
        """Train to `train.steps` (or an early stop). `resume` continues from `last.pt`; the config must be
        the one the run was trained with, except for the keys named in `allow_changes` (e.g. `train.steps`)."""
        t = self.cfg.train
        resume_step = self._open(resume, allow_changes, log)
        main = self.dist.main  # under DDP only rank 0 writes files
        prov = self._write_records(resume_step)
        if log is not None and main and self.precision.should_log:
            log(self.amp_reason)
        metrics = runs.MetricsLog(self.run_dir, write=main, resume_step=resume_step)
        if resume_step is not None and self.resume_changes:
            metrics.record({"step": resume_step, "split": "resume", "changed": self.resume_changes})
        progress = Progress(
            f"train {self.run_dir.name}",
            t.steps,
            start=self.state["step"],
            enabled=t.progress and log is not None and main,
        )
        batches = self._batches()
        started = time.perf_counter() - self.state["wall_time_s"]
        try:
            self.model.train()
            while self.state["step"] < t.steps:
                sums, weights, batch = self._optimiser_step(batches)
                step = self.state["step"]
                self.state["wall_time_s"] = time.perf_counter() - started
                self._log_step(metrics, step, sums, weights)
                progress.update(step, " ".join(f"{k}={v:.3f}" for k, v in list(sums.items())[:4]))
                if t.affinity_every and step % t.affinity_every == 0 and batch is not None:
                    self._affinity(metrics, step, batch)
                if (step % t.eval_every == 0 or step == t.steps) and self._validate(step, metrics, log):
                    break
                if step % t.checkpoint_every == 0 or step == t.steps:
                    metrics.flush()
                    self._save_last()
                if on_step is not None:
                    on_step(step)
        finally:
            progress.close()
            metrics.close()
        return self._finish(prov, log)

    def _open(self, resume: bool, allow_changes: Sequence[str], log) -> int | None:
        """Check the run directory and restore `last.pt` when resuming; the checkpoint's step, or None."""
        run = self.run_dir
        self.resume_changes: dict = {}
        if not resume:
            runs.check_fresh(run)
            self._check_validation_readable()
            return None
        last = run / "checkpoints" / "last.pt"
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint at {last}; start the run without --resume")
        return self._restore(last, allow_changes, log)

    def _write_records(self, resume_step: int | None) -> dict:
        cfg, t = self.cfg, self.cfg.train
        run = self.run_dir
        if self.dist.main:
            run.mkdir(parents=True, exist_ok=True)
            (run / "config.yaml").write_text(dump_yaml(cfg))
            write_json(run / "tasks.json", [x.to_dict() for x in self.tasks])
        prov = provenance.collect(
            seed=t.seed,
            device=self.device,
            manifest=self.manifest,
            splits=[cfg.data.train_split, cfg.data.val_split],
            extra={
                "n_parameters": sum(p.numel() for p in self.model.parameters()),
                "flops_per_clip": self._flops_per_clip(),
                "flops_method": provenance.FLOPS_METHOD,
                "amp": self.precision.name,
                "amp_reason": self.amp_reason,
            },
        )
        prov["world_size"] = self.dist.world
        prov["classes_without_training_clips"] = self.unseen_classes
        if resume_step is not None:
            prov["resumed_at_step"] = resume_step
            prov["resume_changes"] = self.resume_changes
        if self.dist.main:
            write_json(run / "provenance.json", prov)
        return prov

    def _optimiser_step(self, batches) -> tuple[dict, dict, dict | None]:
        """One optimiser step of `accumulate` micro-batches; a step whose loss or gradient is not finite is
        skipped (no weight changes), and `train.max_nonfinite_steps` skipped steps in a row stop the run."""
        cfg, t = self.cfg, self.cfg.train
        step = self.state["step"]
        for g in self.opt.param_groups:
            g["lr"] = t.lr * lr_factor(cfg, step)
        self.opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        weights: dict = {}
        last = None
        seen = 0
        micro = [
            decode_batch_on(next(batches), self.device) for _ in range(t.accumulate)
        ]  # jpeg_decode: device
        counts = self._step_counts(micro) if t.accumulate > 1 else None
        for batch in micro:
            self._record_bad(batch["meta"]["bad"], len(self.train_set))
            if batch["size"] == 0:
                continue
            batch = self._to_device(batch)
            losses, present, cross, weights = self.backward_step(batch, step, counts)
            seen += batch["size"]
            for k, v in {**losses, **cross}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / t.accumulate
            last = batch
        sums = self._global_means(sums, seen)
        fault = self._nonfinite(sums)
        if fault is None or self.scaler.is_enabled():  # a GradScaler skips non-finite gradients itself
            if t.grad_clip:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
        self._count_nonfinite(fault, step)
        self.state["step"] = step + 1
        return sums, weights, last

    def _step_counts(self, micro: list[dict]) -> list[float]:
        """Every task's labelled count over the micro-batches of one step, summed over ranks (the count its
        kind's loss divides by)."""
        counts = torch.zeros(len(self.tasks), dtype=torch.float64)
        for batch in micro:
            if batch["size"]:
                for i, t in enumerate(self.tasks):
                    counts[i] += float(t.spec.label_count(t, batch["targets"][t.name], batch["mask"][t.name]))
        return distributed.all_reduce_sum(counts).tolist()

    def _global_means(self, sums: dict[str, float], seen: int) -> dict[str, float]:
        """Count the samples of every rank, and log each loss as the mean over ranks (each rank's value is
        already its share of the global mean, scaled by the world size)."""
        if self.dist.world == 1:
            self.state["samples_seen"] += seen
            return sums
        names = sorted(sums)
        both = distributed.all_reduce_sum(
            torch.tensor([float(seen)] + [sums[k] for k in names], dtype=torch.float64)
        )
        self.state["samples_seen"] += int(both[0])
        return {k: float(v) / self.dist.world for k, v in zip(names, both[1:].tolist())}

    def _nonfinite(self, sums: dict[str, float]) -> str | None:
        """What is not finite in this step (a task's loss, else a parameter's gradient), or None."""
        for name, value in sums.items():
            if not math.isfinite(value):
                return f"task {name!r} loss = {value}"
        if self.scaler.is_enabled():
            return None
        grads = [p.grad for p in self.opt_params if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            names = {id(p): n for n, p in self.model.named_parameters()}
            bad = next(
                p for p in self.opt_params if p.grad is not None and not bool(torch.isfinite(p.grad).all())
            )
            return f"gradient of {names.get(id(bad), 'a balancer parameter')!r} is NaN or infinite"
        return None

    def _count_nonfinite(self, fault: str | None, step: int) -> None:
        if fault is None:
            self.state["nonfinite_in_a_row"] = 0
            return
        self.state["nonfinite_in_a_row"] = self.state.get("nonfinite_in_a_row", 0) + 1
        self.state.setdefault("skipped_steps", []).append({"step": step + 1, "reason": fault})
        limit = self.cfg.train.max_nonfinite_steps
        if self.state["nonfinite_in_a_row"] >= limit:
            raise Diverged(
                f"training diverged: {limit} step(s) in a row with a non-finite loss or gradient (last: step "
                f"{step + 1}, {fault}); no checkpoint holds non-finite weights; lower train.lr, set "
                "train.grad_clip, check the inputs' range, or raise train.max_nonfinite_steps"
            )

    def _log_step(self, metrics: runs.MetricsLog, step: int, sums: dict, weights: dict) -> None:
        rec = {
            "step": step,
            "split": "train",
            "lr": self.opt.param_groups[0]["lr"],
            "loss": sums,
            "weights": weights,
            "epoch": self.state["epoch"],
        }
        if self.state.get("nonfinite_in_a_row"):
            rec["skipped"] = self.state["skipped_steps"][-1]["reason"]
        diag = getattr(self.balancer, "last_diagnostics", None)
        if diag and diag.get("step") == step - 1:  # computed during this optimiser step
            rec["diagnostics"] = diag
            for k, v in diag.items():
                if k != "step":
                    metrics.scalar(f"train/balance/{k}", v, step)
        metrics.record(rec)
        for k, v in sums.items():
            metrics.scalar(f"train/loss/{k}", v, step)
        for k, v in weights.items():
            metrics.scalar(f"train/weight/{k}", v, step)

    def _affinity(self, metrics: runs.MetricsLog, step: int, batch: dict) -> None:
        if len(self.tasks) < 2 or self.dist.world != 1:
            return
        from .affinity import measure

        aff = measure(self, batch)
        if aff is not None:
            metrics.record({"step": step, "split": "affinity", **aff})

    def _finish(self, prov: dict, log) -> TrainResult:
        run, main = self.run_dir, self.dist.main
        self._save_last()
        if main:
            write_json(run / "bad_samples.json", self.state["bad"])
        if self.state["bad"] and log and main:
            log(
                f"{len(self.state['bad'])} unreadable sample(s) skipped; listed in {run / 'bad_samples.json'}"
            )
            for b in self.state["bad"][:10]:
                where = f" ({b['split']})" if b.get("split") not in (None, self.cfg.data.train_split) else ""
                log(f"  {b['id']}{where}: {b['reason']}")
        skipped = self.state.get("skipped_steps", [])
        if skipped and log and main:
            log(
                f"{len(skipped)} step(s) skipped for a non-finite loss or gradient (first: step {skipped[0]['step']})"
            )
        summary = {
            "best_step": self.state["best_step"],
            "best_val_score": self.state["best_score"],
            "steps": self.state["step"],
            "wall_time_s": round(self.state["wall_time_s"], 2),
            "samples_seen": self.state["samples_seen"],
            "device": provenance.device_name(self.device),
            "n_parameters": prov["n_parameters"],
            "flops_per_clip": prov["flops_per_clip"],
            "val_metrics": self.state.get("best_val_metrics", {}),
            "skipped_steps": skipped,
        }
        if main:
            write_json(run / "summary.json", summary)
        return TrainResult(
            run,
            self.state["best_step"],
            self.state["best_score"],
            self.state.get("best_val_metrics", {}),
            self.state["step"],
            self.state["wall_time_s"],
            self.state["bad"],
        )

    def _flops_per_clip(self) -> int | None:
        """Forward FLOPs of the model (eval mode) on one clip of the run's input shape (the first readable
        validation clip, else training clip); None when no clip can be read. Touches no random state."""
        for ds in (self.val_set, self.train_set):
            for i in range(min(len(ds), 8)):
                sample = ds[i]
                if "bad" not in sample:
                    batch = self._to_device(collate([sample]))
                    was_training = self.model.training
                    self.model.eval()
                    try:
                        return provenance.count_flops(self.model, batch["inputs"], mode="eval")
                    finally:
                        self.model.train(was_training)
        return None

    def _check_validation_readable(self) -> None:
        """Stop before training when not one validation clip can be read (no checkpoint could be selected)."""
        reasons = []
        for i in range(len(self.val_set)):
            sample = self.val_set[i]
            if "bad" not in sample:
                return
            reasons.append(sample["bad"])
        if reasons:
            raise DataError(
                f"split {self.cfg.data.val_split!r}: none of its {len(reasons)} samples can be read (first: "
                f"{reasons[0]['path']}: {reasons[0]['reason']}); no checkpoint could be selected"
            )

    def _record_bad(self, bad: list, n_samples: int, split: str | None = None) -> None:
        known = {(b["id"], b.get("split")) for b in self.state["bad"]}
        split = split or self.cfg.data.train_split
        for b in bad:
            if (b["id"], split) not in known:
                self.state["bad"].append({**b, "split": split, "step": self.state["step"]})
        limit = self.cfg.data.max_bad_fraction
        n_bad = sum(1 for b in self.state["bad"] if b["split"] == split)
        if n_bad > max(1, limit * n_samples):
            write_json(self.run_dir / "bad_samples.json", self.state["bad"])
            first = next(b for b in self.state["bad"] if b["split"] == split)
            raise TooManyBadSamples(
                f"{n_bad} of {n_samples} {split!r} samples are unreadable (more than "
                f"data.max_bad_fraction={limit}); first: {first['path']}: {first['reason']} "
                f"(all listed in {self.run_dir / 'bad_samples.json'})"
            )

    def _validate(self, step: int, metrics: runs.MetricsLog, log) -> bool:
        res = evaluate_model(
            self.model,
            self.val_set,
            self.tasks,
            device=self.device,
            batch_size=self.cfg.train.batch_size,
            num_workers=self.cfg.data.num_workers,
            amp=self.amp,
            amp_dtype=self.amp_dtype,
            split=self.cfg.data.val_split,
        )
        self.model.train()
        self._record_bad(res["bad"], len(self.val_set), self.cfg.data.val_split)
        scores = res["metrics"]
        score = validation_score(scores, self.tasks)
        metrics.record({"step": step, "split": "val", "metrics": scores, "score": score})
        for task, ms in scores.items():
            for k, v in ms.items():
                metrics.scalar(f"val/{task}/{k}", v, step)
        metrics.scalar("val/score", score, step)
        if score > self.state["best_score"]:
            self.state.update(
                best_score=score, best_step=step, best_val_metrics=scores, evals_without_improvement=0
            )
            if self.dist.main:
                self.save_best(scores)
        else:
            self.state["evals_without_improvement"] += 1
        patience = self.cfg.train.early_stop_patience
        stop = patience is not None and self.state["evals_without_improvement"] >= patience
        stop = distributed.broadcast_flag(stop)  # rank 0 decides (ranks' BatchNorm statistics may differ)
        if stop and log and self.dist.main:
            log(f"early stop at step {step}: no validation improvement in {patience} evaluations")
        return stop


def check_labels(
    tasks: list[Task], train_set: ClipDataset, val_set: ClipDataset, data
) -> dict[str, list[str]]:
    """Stop when a primary task has no label in the training split (it would train at weight 0 and still
    count in checkpoint selection) or none in the validation split; return, per classification task, the
    classes with no training clip (present in other splits or in classes.json), for a warning."""

    def labelled(ds: ClipDataset) -> dict[str, int]:  # a clip with any label element (a caption's tokens)
        return {t.name: sum(bool(lab[t.name][1].any()) for lab in ds.labels) for t in tasks}

    train_counts, val_counts = labelled(train_set), labelled(val_set)
    for t in tasks:
        if t.role != "primary":
            continue
        for split, counts in ((data.train_split, train_counts), (data.val_split, val_counts)):
            if counts.get(t.name, 0) == 0:
                raise DataError(
                    f"primary task {t.name!r}: no clip of split {split!r} has a label in column {t.column!r}; "
                    "label some, or make the task role: auxiliary"
                )
    return {
        t.name: [c for c, n in zip(t.classes, t.class_counts) if n == 0]
        for t in tasks
        if t.class_counts and 0 in t.class_counts  # set only by kinds that count classes
    }


def balanced_indices(labels: list[int], n: int, generator: torch.Generator) -> list[int]:
    """`n` training positions drawn with replacement so that every class present in `labels` (class index
    per clip, -1 = unlabelled, never drawn) is equally likely, and clips uniformly within their class.
    Depends only on `labels`, `n` and the generator's seed (the trainer seeds it from (seed, epoch))."""
    lab = torch.as_tensor(labels, dtype=torch.long)
    labelled = lab >= 0
    if not bool(labelled.any()):
        raise ConfigError(
            "train.sampler 'balanced': no clip of the training split has a label of train.balance_task"
        )
    counts = torch.bincount(lab[labelled])
    weights = torch.zeros(len(lab), dtype=torch.float64)
    weights[labelled] = 1.0 / counts[lab[labelled]].double()
    return torch.multinomial(weights, n, replacement=True, generator=generator).tolist()


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    manifest: Manifest | None = None,
    log: Callable[[str], None] | None = print,
    allow_changes: Sequence[str] = (),
) -> TrainResult:
    """Train `cfg` into `run_dir` (the Python API behind `mtlhar train`); see `Trainer.fit`."""
    return Trainer(cfg, run_dir, manifest=manifest).fit(resume=resume, log=log, allow_changes=allow_changes)
