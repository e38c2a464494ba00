"""Construction: everything a run is made of, built from the config sections it needs.

Training, evaluation, transfer, studies and benchmarks build their data, model, optimiser, schedule,
balancer and cross-task terms here, so none of them imports the training loop to get a model.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Sequence

import numpy as np
import torch

from .balancing import build_balancer as _balancer_from_name
from .config import RunConfig
from .data.dataset import ClipDataset
from .data.manifest import Manifest
from .errors import ConfigError
from .models import MultiTaskModel, build_encoder
from .models.encoders import ENCODERS
from .tasks import Task
from .terms import build_cross_terms

__all__ = [
    "build_balancer",
    "build_cross_terms",
    "build_model",
    "build_optimizer",
    "encoder_kwargs",
    "lr_factor",
    "make_dataset",
    "pick_device",
    "prepare_data",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """`train.device` as a torch device; ConfigError when that device is not on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(
            f"train.device: {name!r}, but this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(
            "train.device: 'mps' requested but Apple's MPS is not available; use 'cpu' or 'auto'"
        )
    return torch.device(name)


def prepare_data(cfg: RunConfig) -> Manifest:
    """The manifest named by the config, generating the synthetic world first when `data.synth` is set."""
    if cfg.data.synth is not None and cfg.data.manifest is None:
        from .data.synth_cache import ensure_synth

        try:
            cfg.data.manifest = str(ensure_synth(**cfg.data.synth))
        except ValueError as e:  # the generator's own checks of its settings
            raise ConfigError(f"config key 'data.synth': {e}") from None
    return Manifest.read(cfg.data.manifest, cfg.data.root)


def _builder_parameters(name: str) -> set[str]:
    """Keyword names the encoder builder `name` (an alias or a dotted path) accepts; empty if unknown."""
    factory = ENCODERS[name][0] if name in ENCODERS else None
    if factory is None:
        return set()  # a dotted path: the user's own builder gets exactly its encoder_args
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def encoder_kwargs(cfg: RunConfig, sample: np.ndarray | None = None) -> dict:
    """The encoder's keyword arguments: `encoder_args`, the weights file, the stream it reads (from
    `data.stream`) and, for a [T, C] sample of a non-RGB stream, its channel count (both only where the
    builder takes them and `encoder_args` does not set them). The channel count is written back into
    `cfg.model.encoder_args`, so the run's saved config rebuilds the same model."""
    kwargs = dict(cfg.model.encoder_args)
    if cfg.model.weights is not None:
        kwargs["weights"] = cfg.model.weights
    accepted = _builder_parameters(cfg.model.encoder)
    if "stream" in accepted:
        kwargs.setdefault("stream", cfg.data.stream)
    if (
        "in_channels" in accepted
        and "in_channels" not in kwargs
        and sample is not None
        and cfg.data.stream != "rgb"
    ):
        if np.ndim(sample) == 2:
            cfg.model.encoder_args["in_channels"] = kwargs["in_channels"] = int(np.shape(sample)[-1])
    return kwargs


def build_model(cfg: RunConfig, tasks: list[Task], *, sample: np.ndarray | None = None) -> MultiTaskModel:
    """The multi-task model: the configured encoder with one head per task."""
    return MultiTaskModel(build_encoder(cfg.model.encoder, **encoder_kwargs(cfg, sample)), tasks)


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
        streams=d.streams or None,
        inputs=d.inputs or None,
        sample_views=d.views if train else 1,
    )


def lr_factor(cfg: RunConfig, step: int) -> float:
    """The schedule's factor on `train.lr` at `step` (after `warmup_steps` of linear warm-up)."""
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


def build_optimizer(cfg: RunConfig, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def build_balancer(cfg: RunConfig, tasks: Sequence[Task], device: torch.device):
    """The configured balancer over the run's tasks (their `weight` fields as static lambdas)."""
    names = [x.name for x in tasks]
    return _balancer_from_name(
        cfg.balancer.name, names, {x.name: x.weight for x in tasks}, cfg.balancer.args
    ).to(device)
