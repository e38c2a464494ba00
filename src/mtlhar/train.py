"""The training loop: explicit and readable.

One optimiser step = `accumulate` micro-batches. Every `checkpoint_every` steps the full state (model,
optimiser, schedule, balancer, scaler, RNG states, data position, history) is written atomically to
`RUN/checkpoints/last.pt`; `resume=True` continues from it and ends bitwise equal to an unbroken run on
CPU, because every random choice depends only on (seed, epoch, position). Every `eval_every` steps the
validation split is scored and the checkpoint with the best validation multi-task score is kept as
`RUN/checkpoints/best.pt` (the only checkpoint used for test numbers).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed, provenance
from .balancing import build_balancer
from .config import RunConfig, check_sampler, dump_yaml, to_dict
from .data.dataset import ClipDataset, collate, decode_batch_on, resolve_tasks
from .data.manifest import Manifest
from .errors import ConfigError, TooManyBadSamples
from .evaluate import evaluate_model, validation_score
from .models import MultiTaskModel, build_encoder
from .tasks import Task, fit_class_counts


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def prepare_data(cfg: RunConfig) -> Manifest:
    """The manifest named by the config, generating the synthetic world first when `data.synth` is set."""
    if cfg.data.synth is not None and cfg.data.manifest is None:
        from .data.synth_cache import ensure_synth

        cfg.data.manifest = str(ensure_synth(**cfg.data.synth))
    return Manifest.read(cfg.data.manifest, cfg.data.root)


def build_model(cfg: RunConfig, tasks: list[Task]) -> MultiTaskModel:
    kwargs = dict(cfg.model.encoder_args)
    if cfg.model.weights is not None:
        kwargs["weights"] = cfg.model.weights
    if cfg.model.encoder in ("small3d", "r3d_18", "r2plus1d_18", "mc3_18", "sequence", "two_channel"):
        kwargs.setdefault("stream", cfg.data.stream)
    return MultiTaskModel(build_encoder(cfg.model.encoder, **kwargs), tasks)


def make_dataset(
    cfg: RunConfig,
    manifest: Manifest,
    tasks,
    split: str,
    *,
    train: bool,
    seed: int | None = None,
    cache: bool | None = None,
    views: bool | None = None,
) -> ClipDataset:
    """The dataset of one split as the run's data config describes it (`seed`/`cache` override it).

    Training sets get `data.augment`. Evaluation sets are read as `data.test_clips` x `data.test_crops`
    views when `views` is true; by default every split but the validation split (validation during
    training stays one view per clip, so it costs no more than before).
    """
    d = cfg.data
    multi = (split != d.val_split) if views is None else views
    return ClipDataset(
        manifest,
        tasks,
        split=split,
        stream=d.stream,
        frames=d.frames,
        size=d.size,
        sampler=d.sampler,
        stride=d.stride,
        train=train,
        seed=cfg.train.seed if seed is None else seed,
        cache=(d.cache and d.frame_cache is None) if cache is None else cache,
        frame_cache=d.frame_cache,
        short_side=d.short_side,
        decoder=d.decoder,
        decode_on_device=d.jpeg_decode == "device" and train,
        augment=d.augment if train else None,
        test_clips=d.test_clips if multi and not train else 1,
        test_crops=d.test_crops if multi and not train else 1,
    )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where `amp: auto` autocasts:
    measured ~2x faster training steps for the demo's small3d on a 2-core AVX512-BF16 machine. Elsewhere
    bfloat16 is emulated and slower, so `auto` stays in float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


def lr_factor(cfg: RunConfig, step: int) -> float:
    t = cfg.train
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    if t.schedule == "cosine":
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if t.schedule == "wsd":  # warmup, stable (constant), then a cosine decay over the last fraction
        decay = max(1, round(t.decay_fraction * t.steps))
        progress = (step - (t.steps - decay)) / decay
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    if t.schedule == "step":
        return t.step_gamma ** sum(step >= m for m in t.step_milestones)
    return 1.0


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
        self.train_set = make_dataset(cfg, self.manifest, self.tasks, cfg.data.train_split, train=True)
        self.val_set = make_dataset(cfg, self.manifest, self.tasks, cfg.data.val_split, train=False)
        self.n_train_batches = len(self.train_set) // t.batch_size
        if self.n_train_batches == 0:
            raise ConfigError(
                f"train.batch_size {t.batch_size} is larger than the training split ({len(self.train_set)} samples)"
            )
        # class counts of the training split only: class-balanced loss, logit adjustment (saved with the run)
        fit_class_counts(self.tasks, self.train_set.labels)
        check_sampler(cfg)
        self.balance_labels = None
        if t.sampler == "balanced":
            name = t.balance_task
            self.balance_labels = [
                int(lab[name][0]) if bool(lab[name][1].all()) else -1 for lab in self.train_set.labels
            ]
        seed_everything(t.seed)
        if (
            cfg.model.encoder == "sequence"
            and "in_channels" not in cfg.model.encoder_args
            and len(self.train_set)
        ):
            # the channel count of [T, C] inputs comes from the data (and is saved with the run's config)
            sample = self.train_set._read(self.train_set.indices[0])
            cfg.model.encoder_args["in_channels"] = int(sample.shape[-1])
        self.model = build_model(cfg, self.tasks).to(self.device)
        self._fit_sequence_normalisation()
        self.forward = self.model
        if self.dist.world > 1:  # every head is always in the graph, so no unused-parameter search is needed
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_params = params
        if t.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            self.opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        self.balancer = build_balancer(
            cfg.balancer.name,
            [x.name for x in self.tasks],
            {x.name: x.weight for x in self.tasks},
            cfg.balancer.args,
        ).to(self.device)
        if self.balancer.parameters():  # learnable task weights (e.g. uncertainty): no weight decay
            self.opt.add_param_group({"params": self.balancer.parameters(), "weight_decay": 0.0})
        self.cross_terms = self._build_cross_terms()
        use_cuda = self.device.type == "cuda"
        self.amp = (t.amp == "on") or (t.amp == "auto" and (use_cuda or cpu_has_native_bf16()))
        self.amp_dtype = (
            torch.bfloat16 if (use_cuda and torch.cuda.is_bf16_supported()) or not use_cuda else torch.float16
        )
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

    # ----------------------------------------------------------------------------------------------
    def _fit_sequence_normalisation(self) -> None:
        """Sequence inputs are standardised with statistics of the training split only."""
        enc = self.model.encoder
        if not hasattr(enc, "set_normalization") or self.cfg.data.stream == "rgb":
            return
        arrays = [self.train_set._read(r) for r in self.train_set.indices]
        cat = torch.from_numpy(np.concatenate(arrays, axis=0))
        enc.set_normalization(cat.mean(0).to(self.device), cat.std(0).to(self.device))

    def _build_cross_terms(self):
        from .objectives import HierarchyConsistency

        terms = []
        by_name = {t.name: t for t in self.tasks}
        for i, spec in enumerate(self.cfg.cross_terms):
            spec = dict(spec)
            kind = spec.pop("kind", None)
            if kind != "hierarchy_consistency":
                raise ConfigError(
                    f"cross_terms.{i}.kind: {kind!r} is not a cross-task term; choose from ['hierarchy_consistency']"
                )
            fine, coarse = by_name.get(spec.get("fine")), by_name.get(spec.get("coarse"))
            if fine is None or coarse is None:
                raise ConfigError(
                    f"cross_terms.{i}: 'fine' and 'coarse' must name tasks; tasks are {list(by_name)}"
                )
            from .tasks import hierarchy_index

            mapping = (
                spec.get("mapping")
                or (fine.hierarchy or {}).get("map")
                or self._mapping_from_manifest(fine, coarse)
            )
            index = hierarchy_index(fine, coarse, mapping, where=f"cross_terms.{i}")
            divergence = spec.get("divergence", "kl")
            if divergence not in ("kl", "ce"):
                raise ConfigError(f"cross_terms.{i}.divergence: {divergence!r}; choose from ['ce', 'kl']")
            terms.append(
                HierarchyConsistency(
                    fine.name, coarse.name, index, float(spec.get("weight", 0.1)), divergence=divergence
                )
            )
        return terms

    def _mapping_from_manifest(self, fine: Task, coarse: Task) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for i, r in enumerate(self.manifest.rows):
            f, c = r.get(fine.column, ""), r.get(coarse.column, "")
            if f and c:
                if mapping.setdefault(f, c) != c:
                    raise ConfigError(
                        f"{self.manifest.where(i)}: fine class {f!r} maps to {c!r} here but to {mapping[f]!r} "
                        "elsewhere: the label hierarchy is not consistent"
                    )
        return mapping

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
            loader = DataLoader(
                self.train_set,
                batch_sampler=order,
                collate_fn=collate,
                num_workers=self.cfg.data.num_workers,
                persistent_workers=False,
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
        return {
            **batch,
            "inputs": {k: v.to(dev, non_blocking=nb) for k, v in batch["inputs"].items()},
            "targets": {k: v.to(dev, non_blocking=nb) for k, v in batch["targets"].items()},
            "mask": {k: v.to(dev, non_blocking=nb) for k, v in batch["mask"].items()},
        }

    def compute_losses(self, batch: dict):
        """Per-task masked mean losses, presence flags, and the cross-task terms."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.forward(batch["inputs"], batch["targets"], mode="train")
        totals, counts = {}, []
        for t in self.tasks:
            totals[t.name], count = t.spec.loss(
                t, out.heads[t.name].output, batch["targets"][t.name], batch["mask"][t.name]
            )
            counts.append(count.detach().float())
        # one all-reduce for every task's labelled count: means over all ranks' labelled samples, and a task
        # labelled on any rank counts as present everywhere (DDP's gradient average then gives the right mean)
        global_counts = distributed.all_reduce_sum(torch.stack(counts)).tolist()
        losses, present = {}, {}
        for t, n in zip(self.tasks, global_counts):
            losses[t.name] = totals[t.name] * (self.dist.world / max(n, 1.0))
            present[t.name] = n > 0
        cross = {
            term.name: term(out.heads, batch, {t.name: t for t in self.tasks}) * term.weight
            for term in self.cross_terms
        }
        return losses, present, cross, out

    def backward_step(self, batch: dict, step: int):
        """Forward, per-task losses, and the backward pass of one micro-batch as the balancer decides.

        Loss-level balancers return one weighted sum (one backward). Gradient balancers
        (`balancer.needs_gradients`) run their own backward from the task losses, the shared tensor
        (`model.shared_tap(out)`) and the shared parameters; cross-task terms are added as plain losses.
        """
        losses, present, cross, out = self.compute_losses(batch)
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
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "tasks": [t.to_dict() for t in self.tasks],
            "config": to_dict(self.cfg),
        }

    def _restore(self, path: Path) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        self.balancer.load_state_dict(ck["balancer"])
        self.state = dict(ck["state"])
        torch.set_rng_state(ck["rng"]["torch"])
        if ck["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])

    def save_best(self, metrics: dict) -> None:
        atomic_save(
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
    ) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        run = self.run_dir
        last = run / "checkpoints" / "last.pt"
        if resume:
            if not last.is_file():
                raise ConfigError(f"--resume: no checkpoint at {last}; start the run without --resume")
            self._restore(last)
        elif last.exists():
            raise ConfigError(
                f"{run} already holds a run; pass --resume to continue it or choose another --out"
            )
        main = self.dist.main  # under DDP only rank 0 writes files
        run.mkdir(parents=True, exist_ok=True)
        if main:
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
                "amp": str(self.amp_dtype).removeprefix("torch.") if self.amp else "off",
            },
        )
        prov["world_size"] = self.dist.world
        from torch.utils.tensorboard import SummaryWriter

        if main:
            write_json(run / "provenance.json", prov)
            tb, jsonl = SummaryWriter(str(run / "tb")), open(run / "metrics.jsonl", "a")
        else:
            tb, jsonl = _Discard(), io.StringIO()
        progress = _progress(t.progress and log is not None and main, t.steps, self.state["step"], run.name)
        batches = self._batches()
        started = time.perf_counter() - self.state["wall_time_s"]
        n_samples = len(self.train_set)
        try:
            self.model.train()
            while self.state["step"] < t.steps:
                step = self.state["step"]
                for g in self.opt.param_groups:
                    g["lr"] = t.lr * lr_factor(cfg, step)
                self.opt.zero_grad(set_to_none=True)
                sums: dict[str, float] = {}
                weights = {}
                for _ in range(t.accumulate):
                    batch = decode_batch_on(next(batches), self.device)  # data.jpeg_decode: device
                    self._record_bad(batch["meta"]["bad"], n_samples)
                    if batch["size"] == 0:
                        continue
                    batch = self._to_device(batch)
                    losses, present, cross, weights = self.backward_step(batch, step)
                    self.state["samples_seen"] += batch["size"]
                    for k, v in {**losses, **cross}.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / t.accumulate
                if t.grad_clip:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.state["step"] = step = step + 1
                self.state["wall_time_s"] = time.perf_counter() - started
                rec = {
                    "step": step,
                    "split": "train",
                    "lr": self.opt.param_groups[0]["lr"],
                    "loss": sums,
                    "weights": weights,
                    "epoch": self.state["epoch"],
                }
                diag = getattr(self.balancer, "last_diagnostics", None)
                if diag and diag.get("step") == step - 1:  # computed during this optimiser step
                    rec["diagnostics"] = diag
                    for k, v in diag.items():
                        if k != "step":
                            tb.add_scalar(f"train/balance/{k}", v, step)
                jsonl.write(json.dumps(rec) + "\n")
                for k, v in sums.items():
                    tb.add_scalar(f"train/loss/{k}", v, step)
                for k, v in weights.items():
                    tb.add_scalar(f"train/weight/{k}", v, step)
                progress.update(step, sums)
                if (
                    t.affinity_every
                    and step % t.affinity_every == 0
                    and len(self.tasks) > 1
                    and batch["size"]
                    and self.dist.world == 1
                ):
                    from .affinity import measure

                    aff = measure(self, batch)
                    if aff is not None:
                        jsonl.write(json.dumps({"step": step, "split": "affinity", **aff}) + "\n")
                if step % t.eval_every == 0 or step == t.steps:
                    stop = self._validate(step, jsonl, tb, log)
                    if stop:
                        break
                if (step % t.checkpoint_every == 0 or step == t.steps) and main:
                    jsonl.flush()
                    atomic_save(self._checkpoint_state(), last)
                if on_step is not None:
                    on_step(step)
        finally:
            progress.close()
            jsonl.close()
            tb.close()
        if main:
            atomic_save(self._checkpoint_state(), last)
            write_json(run / "bad_samples.json", self.state["bad"])
        if self.state["bad"] and log and main:
            log(
                f"{len(self.state['bad'])} unreadable sample(s) skipped; listed in {run / 'bad_samples.json'}"
            )
            for b in self.state["bad"][:10]:
                log(f"  {b['id']}: {b['reason']}")
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

    def _record_bad(self, bad: list, n_samples: int) -> None:
        known = {b["id"] for b in self.state["bad"]}
        for b in bad:
            if b["id"] not in known:
                self.state["bad"].append({**b, "step": self.state["step"]})
        limit = self.cfg.data.max_bad_fraction
        if len(self.state["bad"]) > max(1, limit * n_samples):
            write_json(self.run_dir / "bad_samples.json", self.state["bad"])
            raise TooManyBadSamples(
                f"{len(self.state['bad'])} of {n_samples} training samples are unreadable (more than "
                f"data.max_bad_fraction={limit}); first: {self.state['bad'][0]['path']}: {self.state['bad'][0]['reason']} "
                f"(all listed in {self.run_dir / 'bad_samples.json'})"
            )

    def _validate(self, step: int, jsonl, tb, log) -> bool:
        res = evaluate_model(
            self.model,
            self.val_set,
            self.tasks,
            device=self.device,
            batch_size=self.cfg.train.batch_size,
            num_workers=self.cfg.data.num_workers,
            amp=self.amp,
            amp_dtype=self.amp_dtype,
        )
        self.model.train()
        metrics = res["metrics"]
        score = validation_score(metrics, self.tasks)
        jsonl.write(json.dumps({"step": step, "split": "val", "metrics": metrics, "score": score}) + "\n")
        for task, ms in metrics.items():
            for k, v in ms.items():
                tb.add_scalar(f"val/{task}/{k}", v, step)
        tb.add_scalar("val/score", score, step)
        if score > self.state["best_score"]:
            self.state.update(
                best_score=score, best_step=step, best_val_metrics=metrics, evals_without_improvement=0
            )
            if self.dist.main:
                self.save_best(metrics)
        else:
            self.state["evals_without_improvement"] += 1
        patience = self.cfg.train.early_stop_patience
        if patience is not None and self.state["evals_without_improvement"] >= patience:
            if log:
                log(f"early stop at step {step}: no validation improvement in {patience} evaluations")
            return True
        return False


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


class _Discard:
    """A stand-in for the TensorBoard writer on ranks that do not write."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class _progress:
    """A rich progress bar (or nothing) showing step and per-task losses."""

    def __init__(self, enabled: bool, total: int, start: int, name: str):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
                transient=True,
            )
            self.bar.start()
            self.id = self.bar.add_task(name, total=total, completed=start, losses="")

    def update(self, step: int, losses: dict) -> None:
        if self.bar is not None:
            text = " ".join(f"{k}={v:.3f}" for k, v in list(losses.items())[:4])
            self.bar.update(self.id, completed=step, losses=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    manifest: Manifest | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train `cfg` into `run_dir` (the Python API behind `mtlhar train`)."""
    return Trainer(cfg, run_dir, manifest=manifest).fit(resume=resume, log=log)
