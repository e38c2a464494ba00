"""Sources: one reader per kind of stream a sample can carry.

A data config names each stream of a sample and the source that reads it; every stream is read at the
frame indices the sampler drew for the sample (`mtlhar.data.sampling`) and moved by the sample's one plan
(`mtlhar.data.transforms.move_stream`):

    data:
      streams:
        rgb: {source: video}                  # the input (data.inputs, default [data.stream])
        flow: {source: synth_flow}            # targets a task names
        pose: {source: synth_pose}
        mask: {source: synth_mask}
        parts: {source: synth_parts}
        depth: {source: array, column: depth, kind: map}

`SOURCES` is the alias table (`source:` -> class); each class lists its options in `OPTIONS`. A source
opens one clip of one manifest row (`open(row) -> Opened`: its frame count and a reader of any frames of
it) and gives back a `Read`: the frames, the pixel grid they lie on and, for keypoints, the pixel frame
their coordinates refer to. Bad files raise DataError naming the file; the dataset marks the sample bad.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .manifest import Manifest
from .transforms import STREAM_KINDS, resize_short_side


class DecodedClips:
    """Decoded (and resized) clips shared by every dataset of this process that has `cache: true`.

    The runs of a study or the demo, their evaluations and the representation measurements read the same
    clips many times: each clip is decoded once per process. Keyed by the resolved file, segment, stream and
    the resize target. Bounded: once `MTLHAR_DECODED_CACHE_GB` (default 4) is held, further clips are decoded
    on every read instead of evicting others (no thrashing). Arrays are read-only; samples copy out of them.
    """

    def __init__(self, limit_bytes: int):
        self.limit, self.nbytes, self.store = limit_bytes, 0, {}

    def get(self, key):
        return self.store.get(key)

    def put(self, key, data: np.ndarray) -> None:
        if self.nbytes + data.nbytes <= self.limit:
            data.flags.writeable = False
            self.store[key] = data
            self.nbytes += data.nbytes

    def clear(self) -> None:
        self.store.clear()
        self.nbytes = 0


DECODED = DecodedClips(int(float(os.environ.get("MTLHAR_DECODED_CACHE_GB", "4")) * 2**30))


def release_decoded_clips() -> None:
    """Drop the clips held by the process-wide decoded-clip store (`DecodedClips`)."""
    DECODED.clear()


@dataclass
class Read:
    """One stream of one clip at the sampled frames."""

    data: Any  # numpy / tensor frames in the source's layout, or JPEG bytes (`VideoSource`, device decode)
    grid: tuple[int, int] | None = None  # (height, width) of the data's pixels (dense kinds)
    frame: tuple[int, int] | None = None  # keypoints: (height, width) of the frame their pixels are in
    valid: np.ndarray | None = None  # bool [T]: frames that have data (flow: the last has no next frame)


@dataclass
class Opened:
    """One clip of one stream, opened: its frame count and a reader of any of its frames."""

    length: int
    read: Callable[[np.ndarray], Read]


@dataclass(frozen=True)
class ReadContext:
    """What sources need from the dataset: output size, decoders, caches."""

    size: int
    short_side: int | None = None
    cache: bool = False  # whole clips go to the process-wide store `DECODED`
    decoder: str | None = None  # read_video backend
    frame_cache: Any = None  # a FrameCache, read instead of decoding (video source)
    read_video: Callable | None = None  # the decoder function (None: mtlhar.data.video.read_video)
    keep_last: bool = False  # the views of one clip decode it once


class Source:
    """Base: a stream read from a file named in one manifest column, whole clips cached."""

    kind = "sequence"  # a key of transforms.STREAM_KINDS: how the plan moves it
    column = "path"
    OPTIONS = {"column": "manifest column holding each sample's file"}
    flip_pairs: tuple[tuple[int, int], ...] = ()

    def __init__(self, name: str, manifest: Manifest, options: dict, ctx: ReadContext):
        self.name, self.manifest, self.ctx = name, manifest, ctx
        self.column = options.get("column", self.column)
        self._last: tuple[int, np.ndarray] | None = None

    def check_column(self) -> None:
        """DataError unless the manifest has the column this stream reads (checked for declared streams)."""
        if self.column not in self.manifest.columns:
            raise DataError(
                f"{self.manifest.path}: stream '{self.name}' reads column '{self.column}', which the manifest "
                f"lacks (columns: {', '.join(self.manifest.columns)}); set data.streams.{self.name}.column"
            )

    def path(self, row: int, column: str | None = None) -> Path:
        column = column or self.column
        cell = self.manifest.rows[row].get(column, "")
        if not cell:
            raise DataError(f"{self.manifest.where(row)}: stream '{self.name}': no file in column '{column}'")
        return self.manifest.resolve(cell)

    def cache_path(self, row: int) -> Path:
        """The file a cached clip depends on (its time stamp is part of the key)."""
        return self.manifest.resolve(self.manifest.rows[row].get(self.column, ""))

    def load(self, row: int) -> np.ndarray:
        """The whole clip (subclasses)."""
        raise NotImplementedError

    def whole(self, row: int) -> np.ndarray:
        """The whole clip, from `DECODED` when caching (a file rewritten in place is read again)."""
        key = None
        if self.ctx.cache:
            cells = self.manifest.rows[row]
            path = self.cache_path(row)
            try:
                st = path.stat()
            except OSError:
                st = None
            stamp = (st.st_mtime_ns, st.st_size) if st else None
            seg = (cells.get("start"), cells.get("end"))
            key = (str(path), stamp, seg, type(self).__name__, self.ctx.short_side, self.ctx.size)
            data = DECODED.get(key)
            if data is not None:
                return data
        if self._last is not None and self._last[0] == row:
            return self._last[1]
        data = self.load(row)
        if key is not None:
            DECODED.put(key, data)
        if self.ctx.keep_last:
            self._last = (row, data)
        return data

    def open(self, row: int) -> Opened:
        data = self.whole(row)
        return Opened(len(data), lambda idx: self.take(data, idx))

    def take(self, data: np.ndarray, idx: np.ndarray) -> Read:
        return Read(data[idx])

    def native_frame(self, row: int) -> tuple[int, int] | None:
        """(height, width) of the pixels of the file as stored (keypoints without a frame refer to it)."""
        return None


def _video_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.height, ctx.width


class VideoSource(Source):
    """RGB frames: the file at `path` decoded with PyAV or torchcodec (`data.decoder`), short side resized
    once to `data.short_side` (default `data.size`); or the sampled frames read from `data.frame_cache`."""

    kind = "image"

    def __init__(self, name, manifest, options, ctx):
        super().__init__(name, manifest, options, ctx)
        self._native: dict[int, tuple[int, int]] = {}

    def load(self, row: int) -> np.ndarray:
        from .video import read_video

        cells = self.manifest.rows[row]
        start = float(cells["start"]) if cells.get("start") else None
        end = float(cells["end"]) if cells.get("end") else None
        reader = self.ctx.read_video or read_video
        data = reader(self.manifest.resolve(cells[self.column]), start, end, backend=self.ctx.decoder)
        self._native[row] = tuple(data.shape[1:3])
        target = self.ctx.short_side or self.ctx.size
        if min(data.shape[1:3]) != target:  # resize once (cached), crop per sample
            data = resize_short_side(data, target)
        return data

    def take(self, data, idx):
        return Read(data[idx], grid=tuple(data.shape[1:3]))

    def open(self, row: int) -> Opened:
        cache = self.ctx.frame_cache
        if cache is None:
            return super().open(row)
        from .frame_cache import clip_key  # read only the sampled frames (JPEG) instead of decoding

        key = clip_key(self.manifest.rows[row])

        def read(idx):
            frames = cache.read_frames(key, idx.tolist())
            return Read(frames, grid=tuple(frames.shape[-2:]))

        return Opened(cache.n_frames(key), read)

    def open_encoded(self, row: int) -> Opened:
        """The sampled frames as JPEG bytes (`data.jpeg_decode: device`), decoded per batch later."""
        from .frame_cache import clip_key

        cache = self.ctx.frame_cache
        key = clip_key(self.manifest.rows[row])
        entry = cache._entry(key)

        def read(idx):
            encoded = {"frames": cache.read_encoded(key, idx.tolist()), "where": cache._where(key)}
            return Read(encoded, grid=(entry["height"], entry["width"]))

        return Opened(entry["n"], read)

    def native_frame(self, row: int) -> tuple[int, int] | None:
        if self.ctx.frame_cache is not None:
            return None  # the cache holds resized frames; the original size is not recorded
        if row not in self._native:
            self._native[row] = _video_size(self.path(row))
        return self._native[row]


def load_array(path: Path) -> np.ndarray:
    """A [T, C] float32 array (.npy, or .npz key 'x'), checked: shape and finite values."""
    arr = _read_array(path, "x")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a [T, C] array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{path}: non-finite value (NaN or inf) at step {bad[0]}, channel {bad[1]}")
    return arr


def _read_array(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"array file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                arr = arr[key] if key in arr.files else arr[arr.files[0]]
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot read array ({e})") from None
    return arr


class SequenceSource(Source):
    """[T, C] float arrays at `path` (.npy, or .npz key 'x'): IMU windows, skeleton sequences, feature
    stores (`mtlhar features`); the `seq` and `features` input streams."""

    def load(self, row: int) -> np.ndarray:
        return load_array(self.manifest.resolve(self.manifest.rows[row][self.column]))


class PoseVectorSource(Source):
    """The `pose` input stream: a synthetic-world pose file -> [T, 2 * joints] float, normalised to the
    frame (x / size - 0.5)."""

    column = "pose"

    def load(self, row: int) -> np.ndarray:
        cells = self.manifest.rows[row]
        path = self.manifest.resolve(cells.get(self.column, ""))
        if not cells.get(self.column) or not path.is_file():
            raise DataError(f"pose file not found: {path}")
        with np.load(path) as z:
            joints = z["joints"].astype(np.float32)  # [T, J, 2] pixels
            size = float(z["size"]) if "size" in z.files else float(self.ctx.size)
        return (joints / size - 0.5).reshape(joints.shape[0], -1)


# the on-disk layout of each kind for `ArraySource` (number of dimensions)
_ARRAY_DIMS = {"image": 4, "map": 4, "flow": 4, "labels": 3}


class ArraySource(Source):
    """Any per-sample array file (.npy, or .npz key 'x') indexed by frame on its first axis, moved as its
    `kind` says (`transforms.STREAM_KINDS`): image [T, H, W, C] uint8, map/flow [T, C, H, W], labels
    [T, H, W] integers, keypoints [T, J, 2 or 3], sequence [T, ...]."""

    OPTIONS = {
        "column": "manifest column holding each sample's array file (default: the stream's name)",
        "kind": f"how the plan moves it: {', '.join(STREAM_KINDS)} (default sequence)",
        "frame_size": "keypoints: [height, width] of the pixels their coordinates are in (default: the video's)",
        "flip_pairs": "keypoints: [[left, right], ...] joint indices; labels: label values, swapped by a flip",
    }

    def __init__(self, name, manifest, options, ctx):
        options = {"column": name, **options}
        super().__init__(name, manifest, options, ctx)
        self.kind = options.get("kind", "sequence")
        self.frame = tuple(options["frame_size"]) if options.get("frame_size") else None
        self.flip_pairs = tuple(tuple(p) for p in options.get("flip_pairs", ()))

    def load(self, row: int) -> np.ndarray:
        path = self.path(row)
        arr = _read_array(path, "x")
        dims = _ARRAY_DIMS.get(self.kind)
        if self.kind == "keypoints" and (arr.ndim != 3 or arr.shape[-1] not in (2, 3)):
            raise DataError(
                f"{path}: stream '{self.name}': keypoints are [T, J, 2 or 3], got shape {arr.shape}"
            )
        if dims is not None and arr.ndim != dims:
            raise DataError(
                f"{path}: stream '{self.name}' ({self.kind}) needs {dims} dimensions, got {arr.shape}"
            )
        if self.kind == "flow" and arr.shape[1] != 2:
            raise DataError(f"{path}: stream '{self.name}': flow is [T, 2, H, W], got shape {arr.shape}")
        if self.kind == "labels" and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise DataError(f"{path}: stream '{self.name}': labels must be integers, got {arr.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(f"{path}: stream '{self.name}': non-finite value (NaN or inf)")
        return arr.astype(np.uint8) if arr.dtype == bool else arr

    def take(self, data, idx):
        x = data[idx]
        if self.kind == "image":
            return Read(x, grid=tuple(x.shape[1:3]))
        if self.kind in ("map", "flow", "labels"):
            return Read(x, grid=tuple(x.shape[-2:]))
        return Read(x, frame=self.frame)


class SynthSource(Source):
    """Ground truth of the synthetic world: the stored per-clip array in column `stored` when the dataset
    was generated with it (`generate(streams=...)`), otherwise derived from the clip's pose file."""

    OPTIONS = {"column": "manifest column of each clip's pose file (default pose)"}
    column = "pose"
    stored = ""  # manifest column of the stored array
    loader = ""  # the `synth.store` function reading it

    def cache_path(self, row: int) -> Path:
        cells = self.manifest.rows[row]
        return self.path(row, self.stored if cells.get(self.stored) else self.column)

    def load(self, row: int) -> np.ndarray:
        from .synth import store

        path = self.cache_path(row)
        if not path.is_file():
            raise DataError(f"{path}: stream '{self.name}': file not found ({self.manifest.where(row)})")
        cells = self.manifest.rows[row]
        try:
            return getattr(store, self.loader)(self.manifest.root, {**cells, "pose": cells[self.column]})
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: the sample is bad, not the run
            raise DataError(f"{path}: stream '{self.name}': cannot read ({e})") from None

    def take(self, data, idx):
        return Read(data[idx], grid=tuple(data.shape[-2:]))


class SynthFlowSource(SynthSource):
    """Optical flow [T, 2, H, W] (dx, dy pixels) from frame t to t + 1; the last frame has none (zeros,
    invalid): the stored flow/<id>.npy, or computed exactly from the pose file."""

    kind, stored, loader = "flow", "flow", "load_flow"

    def load(self, row: int) -> np.ndarray:
        flow = super().load(row)
        return np.concatenate([flow, np.zeros_like(flow[:1])])

    def take(self, data, idx):
        return Read(data[idx], grid=tuple(data.shape[-2:]), valid=np.asarray(idx) < len(data) - 1)


class SynthPoseSource(SynthSource):
    """2D keypoints [T, J, 3] (x, y pixels of the rendered frame, visible) of `synth.JOINTS`; a flip swaps
    `synth.FLIP_PAIRS`. Read from the pose file (its mask's shape gives the frame)."""

    kind, loader = "keypoints", "load_keypoints"

    def __init__(self, name, manifest, options, ctx):
        from .synth import FLIP_PAIRS

        super().__init__(name, manifest, options, ctx)
        self.flip_pairs = tuple(FLIP_PAIRS)
        self._frames: dict[int, tuple[int, int]] = {}

    def cache_path(self, row: int) -> Path:
        return self.path(row)

    def open(self, row: int) -> Opened:
        data = self.whole(row)
        if row not in self._frames:
            with np.load(self.path(row)) as z:
                self._frames[row] = tuple(int(v) for v in z["mask_shape"][1:])
        frame = self._frames[row]
        return Opened(len(data), lambda idx: Read(data[idx], frame=frame))


class SynthMaskSource(SynthSource):
    """Person mask [T, H, W] uint8 (1 = person): the stored masks/<id>.npy, or the pose file's mask."""

    kind, stored, loader = "labels", "mask", "load_mask"


class SynthPartsSource(SynthSource):
    """Body-part mask [T, H, W] uint8: one id per body part (`synth.PART_NAMES`, 0 off the person); a flip
    swaps `synth.PART_FLIP_PAIRS`. The stored parts/<id>.npy, or the pose file's layer map."""

    kind, stored, loader = "labels", "parts", "load_parts"

    def __init__(self, name, manifest, options, ctx):
        from .synth import PART_FLIP_PAIRS

        super().__init__(name, manifest, options, ctx)
        self.flip_pairs = tuple(PART_FLIP_PAIRS)


SOURCES: dict[str, type[Source]] = {
    "video": VideoSource,
    "array": ArraySource,
    "sequence": SequenceSource,
    "features": SequenceSource,
    "pose_vector": PoseVectorSource,
    "synth_flow": SynthFlowSource,
    "synth_pose": SynthPoseSource,
    "synth_mask": SynthMaskSource,
    "synth_parts": SynthPartsSource,
}

# The one-stream configs of before (`data.stream`) and the source each stream name stands for.
LEGACY_STREAMS = {
    "rgb": {"source": "video"},
    "seq": {"source": "sequence"},
    "pose": {"source": "pose_vector"},
    "features": {"source": "features"},
}


# ------------------------------------------------------------------------------------------------------
# Config checks


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        text = "<a very long integer>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _integers(value: Any, n: int | None, low: int) -> bool:
    """Whether `value` is a list of `n` (any number when None) integers >= `low`."""
    if not isinstance(value, list | tuple) or (n is not None and len(value) != n):
        return False
    return all(isinstance(v, int) and not isinstance(v, bool) and low <= v < 2**31 for v in value)


def _check_option(name: str, value: Any, key: str) -> None:
    if name == "column" and not (isinstance(value, str) and value and value.isprintable()):
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected the name of a manifest column")
    if name == "kind" and not (isinstance(value, str) and value in STREAM_KINDS):
        raise ConfigError(
            f"config key '{key}': got {_show(value)}, allowed values are {', '.join(STREAM_KINDS)}"
        )
    if name == "frame_size" and not _integers(value, 2, 1):
        raise ConfigError(
            f"config key '{key}': got {_show(value)}, expected [height, width] in pixels (>= 1)"
        )
    if name == "flip_pairs" and not (
        isinstance(value, list | tuple) and all(_integers(p, 2, 0) for p in value)
    ):
        raise ConfigError(
            f"config key '{key}': got {_show(value)}, expected pairs of indices like [[1, 2], [3, 4]]"
        )


def check_streams(streams: Any, where: str = "data.streams") -> dict[str, dict[str, Any]]:
    """Validate a `data.streams` mapping `{name: {source: NAME, option: value, ...}}` (or `{name: NAME}`);
    returns it with every entry a mapping. Raises ConfigError naming the key, the value and what is allowed.

    >>> check_streams({"rgb": "video", "flow": {"source": "synth_flow"}})
    {'rgb': {'source': 'video'}, 'flow': {'source': 'synth_flow'}}
    """
    if not streams:
        return {}
    if not isinstance(streams, dict):
        raise ConfigError(
            f"config key '{where}': got {_show(streams)}, expected a mapping like {{flow: {{source: synth_flow}}}}"
        )
    out = {}
    for name, spec in streams.items():
        if (
            not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))
            or name == "rgb_jpeg"
        ):
            raise ConfigError(
                f"config key '{where}': stream name {_show(name)} is not a plain name (letters, digits, _)"
            )
        key = f"{where}.{name}"
        spec = {"source": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            raise ConfigError(
                f"config key '{key}': got {_show(spec)}, expected a mapping like {{source: video}}"
            )
        source = spec.get("source")
        if not (isinstance(source, str) and source in SOURCES):
            raise ConfigError(
                f"config key '{key}.source': got {_show(source)}, allowed values are {', '.join(SOURCES)}"
            )
        options = SOURCES[source].OPTIONS
        for option, value in spec.items():
            if option == "source":
                continue
            if option not in options:
                raise ConfigError(
                    f"unknown config key '{key}.{option if isinstance(option, str) and option.isprintable() else _show(option)}'; "
                    f"allowed keys for source {source}: source, {', '.join(options)}"
                )
            _check_option(option, value, f"{key}.{option}")
        out[name] = dict(spec)
    return out


def check_inputs(inputs: Any, streams: dict, stream: str, where: str = "data.inputs") -> list[str]:
    """The streams the encoder reads: `inputs`, or `[stream]` when empty; each one declared in `streams`
    or a one-stream name (`LEGACY_STREAMS`)."""
    if not inputs:
        return [stream]  # a one-stream config: the dataset names an unknown stream
    names = list(inputs)
    known = set(streams) | set(LEGACY_STREAMS)
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in known:
            raise ConfigError(
                f"config key '{where}.{i}': got {_show(name)}, expected a stream of data.streams "
                f"({', '.join(streams) or 'none declared'}) or one of {', '.join(LEGACY_STREAMS)}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"config key '{where}': got {_show(names)}, a stream appears twice")
    return names
