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


PLANNED = "caption, dense decoding, pose, contrastive, distillation task kinds; pretrained I3D; ONNX export"


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
            "hierarchy_consistency": "KL between the coarse head and fine probabilities summed per group"
        },
        "input_streams": dict(STREAMS),
        "dataset_formats": dataset_formats(),
        "frame_cache": "JPEG frames in shards with an index (`mtlhar data cache`; data.frame_cache in a config)",
        "not_yet": PLANNED,
    }
