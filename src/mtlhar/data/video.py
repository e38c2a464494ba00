"""Video decoding and frame-index sampling.

Two decoders give the same output (uint8 [T, H, W, 3] RGB, the frames whose time is within [start, end]):
- PyAV (default): FFmpeg inside the wheel, works everywhere;
- torchcodec (optional, `pip install torchcodec`): needs the FFmpeg shared libraries (4 to 9) installed on
  the system (e.g. `apt install ffmpeg`, `conda install ffmpeg`).
Choose with `read_video(..., backend=...)` or, for every call at once (datasets, cache building, predict),
the environment variable MTLHAR_VIDEO_BACKEND=pyav|torchcodec.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError

Backend = Literal["pyav", "torchcodec"]
BACKENDS = ("pyav", "torchcodec")
BACKEND_ENV = "MTLHAR_VIDEO_BACKEND"


def video_backend(backend: str | None = None) -> str:
    """The decoder to use: `backend` if given, else $MTLHAR_VIDEO_BACKEND, else "pyav"."""
    source = "backend"
    if backend is None:
        backend, source = os.environ.get(BACKEND_ENV, "").strip() or "pyav", BACKEND_ENV
    name = backend.strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"{source}={backend!r}: unknown video decoder; use one of {', '.join(BACKENDS)}")
    return name


_TORCHCODEC_MISSING = (
    "video decoder 'torchcodec' was requested but cannot run here ({why}); it needs `pip install "
    "torchcodec` and the FFmpeg shared libraries (4 to 9) installed on the system (apt/conda/brew "
    f"install ffmpeg), or use the default: {BACKEND_ENV}=pyav"
)


@functools.cache
def _torchcodec_decoder():
    """torchcodec's VideoDecoder class once its FFmpeg libraries load (cached only on success)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # noqa: BLE001 - ImportError, or a library load error at import
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
        raise ConfigError(_TORCHCODEC_MISSING.format(why=why)) from None
    try:  # torchcodec loads FFmpeg lazily: an empty buffer fails fast, with a load error if FFmpeg is missing
        VideoDecoder(b"\0" * 16)
    except Exception as e:  # noqa: BLE001
        if "libtorchcodec" in str(e) or isinstance(e, (ImportError, OSError)):
            raise ConfigError(
                _TORCHCODEC_MISSING.format(why="its FFmpeg libraries could not be loaded")
            ) from None
    return VideoDecoder


def torchcodec_available() -> tuple[bool, str]:
    """(True, "") when the torchcodec decoder works here, else (False, the reason)."""
    try:
        _torchcodec_decoder()
    except ConfigError as e:
        return False, str(e)
    return True, ""


def read_video(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    *,
    backend: Backend | None = None,
) -> np.ndarray:
    """Decode every frame of a video (or of the [start, end] seconds segment) to uint8 [T, H, W, 3].

    `backend`: "pyav" or "torchcodec" (None: $MTLHAR_VIDEO_BACKEND, default "pyav"); a frame is kept when
    its presentation time t satisfies start <= t <= end. A video torchcodec cannot decode is decoded
    with PyAV (one warning per process). Raises DataError naming the file for a missing, empty, corrupt
    or truncated video, and ConfigError for an unknown or unavailable decoder.
    """
    name = video_backend(backend)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    if name == "torchcodec":
        return _read_torchcodec(path, start, end)
    return _read_pyav(path, start, end)


def _read_pyav(path: Path, start: float | None, end: float | None) -> np.ndarray:
    import av

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


_FALLBACKS: list[str] = []  # files torchcodec could not decode but PyAV could (this process)


def _read_torchcodec(path: Path, start: float | None, end: float | None) -> np.ndarray:
    """torchcodec decoding; a file it cannot read goes to PyAV, which gives the frames (a one-time warning
    says so: e.g. H.264 with B-frames in AVI, whose frame index torchcodec gets wrong) or the same
    DataError as the PyAV backend for a broken file."""
    VideoDecoder = _torchcodec_decoder()
    try:
        dec = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=0, seek_mode="exact")
        lo, hi = dec.metadata.begin_stream_seconds, dec.metadata.end_stream_seconds
        # ask for a range that surely holds every wanted frame, then keep start <= t <= end exactly
        a = lo if start is None else min(max(start, lo), hi)
        b = hi if end is None else min(max(end + 1e-6, lo), hi)
        frames = np.empty((0,))
        if a < hi and a <= b:
            batch = dec.get_frames_played_in_range(a, b)
            t = batch.pts_seconds.numpy()
            keep = np.ones(len(t), bool)
            if start is not None:
                keep &= t >= start
            if end is not None:
                keep &= t <= end
            frames = batch.data.numpy()[keep]
        if len(frames):
            return np.ascontiguousarray(frames)
        why = "no frames in the range"
    except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError / ValueError for broken files
        why = re.sub(r"^\w+, \S+:\d+, ", "", str(e).splitlines()[0] if str(e) else type(e).__name__)
    frames = _read_pyav(path, start, end)  # a broken file raises PyAV's DataError here
    if not _FALLBACKS:
        warnings.warn(
            f"{path}: torchcodec could not decode this video ({why}); decoded with PyAV instead "
            "(later files that need this are not reported)",
            RuntimeWarning,
            stacklevel=3,
        )
    _FALLBACKS.append(str(path))
    return frames


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
