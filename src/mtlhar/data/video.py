"""Video decoding with PyAV (FFmpeg inside the wheel) and frame-index sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


def read_video(path: str | Path, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Decode every frame of a video (or of the [start, end] seconds segment) to uint8 [T, H, W, 3].

    Raises DataError naming the file for a missing, empty, corrupt or truncated video.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                if start is not None and t < start:
                    continue
                if end is not None and t > end:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many error types for broken files
        raise DataError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from None
    if not frames:
        raise DataError(f"{path}: no decodable frames")
    return np.stack(frames)


def sample_indices(
    n_frames: int, k: int, *, mode: str = "uniform", stride: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of `k` frames out of `n_frames`.

    uniform: one frame per equal segment (TSN style): a random frame within each segment when `rng` is
    given (training), the segment's centre otherwise. dense: `k` consecutive frames `stride` apart, at a
    random start (training) or centred. Clips shorter than needed repeat their last frame.
    """
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    if mode == "uniform":
        edges = np.linspace(0, n_frames, k + 1)
        if rng is None:
            idx = (edges[:-1] + edges[1:]) / 2
        else:
            idx = edges[:-1] + rng.random(k) * (edges[1:] - edges[:-1])
        return np.clip(idx.astype(np.int64), 0, n_frames - 1)
    if mode == "dense":
        span = (k - 1) * stride + 1
        room = max(n_frames - span, 0)
        start = int(rng.integers(0, room + 1)) if rng is not None else room // 2
        return np.clip(start + np.arange(k) * stride, 0, n_frames - 1)
    raise ValueError(f"unknown sampler {mode!r}; use uniform or dense")
