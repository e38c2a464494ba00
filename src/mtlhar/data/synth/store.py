"""Writing and reading one clip: video encoding, pose/ground-truth npz, flow, and the per-clip stream
arrays written on request (`generate(streams=...)`): keypoints, person masks and body-part masks."""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import av
import numpy as np

from .flow import compute_flow
from .scene import N_PERSON, Rendered

# stream name -> (manifest column, folder) of the per-clip arrays `generate(streams=...)` writes
STREAM_FILES = {
    "flow": ("flow", "flow"),
    "pose": ("keypoints", "keypoints"),
    "mask": ("mask", "masks"),
    "parts": ("parts", "parts"),
}

CODECS = {"h264": ".mp4", "ffv1": ".mkv"}
# mbtree=0: with macroblock-tree rate control this libx264 build is not bit-exact run to run (measured:
# the same frames gave differing streams), which would break byte-identical regeneration.
H264_OPTIONS = {"crf": "23", "preset": "veryfast", "threads": "1", "x264-params": "rc-lookahead=4:mbtree=0"}


def encode_video(path: Path, rgba: np.ndarray, fps: int, codec: str = "h264") -> None:
    """Encode [T,H,W,4] RGBA frames. h264: libx264 yuv420p, one thread (bit-exact across runs);
    ffv1: lossless RGB in Matroska."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {list(CODECS)}, got {codec!r}")
    T, H, W = rgba.shape[:3]
    fmt = "mp4" if codec == "h264" else "matroska"
    # bitexact: no encoder version strings or random UIDs, so files are byte-identical across runs.
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as out:
        if codec == "h264":
            stream = out.add_stream("libx264", rate=fps, options=dict(H264_OPTIONS))
            stream.pix_fmt = "yuv420p"
        else:
            stream = out.add_stream("ffv1", rate=fps)
            stream.pix_fmt = "bgr0"
        stream.codec_context.thread_count = 1
        stream.width, stream.height = W, H
        for frame in rgba:
            vf = av.VideoFrame.from_ndarray(frame, format="rgba")
            # Convert explicitly on one thread: the encoder's implicit conversion is not bit-exact run to run.
            out.mux(stream.encode(vf.reformat(format=stream.pix_fmt, threads=1)))
        out.mux(stream.encode())


def decode_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as uint8 [T,H,W,3] RGB."""
    with av.open(str(path)) as src:
        return np.stack([f.to_ndarray(format="rgb24") for f in src.decode(video=0)])


def save_pose(path: Path, r: Rendered, actions: tuple[str, ...]) -> None:
    """Ground truth of one clip. `label`/`kind`/`anchors`/`radius` let `load_flow` recompute flow."""
    T, H, W = r.mask.shape
    write_npz(
        path,
        joints=r.joints,
        joints3d=r.joints3d,
        visible=r.visible,
        mask=np.packbits(r.mask, axis=-1),
        mask_shape=np.array([T, H, W]),
        label=r.label,
        n_person=np.array(N_PERSON),
        kind=r.kind,
        anchors=r.anchors,
        radius=r.radius,
        frame_labels=r.frame_labels,
        actions=np.array(actions),
    )


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but fast (deflate level 1) and byte-deterministic (fixed zip dates)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            # A ZipInfo carries its own level (named compress_level from Python 3.13 on).
            setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", 1)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def _resolve(dir_or_path: str | os.PathLike, row, key: str) -> Path:
    """Path of a clip file from a manifest row (dict or pandas-like) relative to the dataset dir."""
    base = Path(dir_or_path)
    if base.is_file():
        base = base.parent
    rel = row[key] if not isinstance(row, str) else row
    return base / rel


def load_pose(dir_or_path: str | os.PathLike, row) -> dict[str, np.ndarray]:
    """{"joints": float32 [T,J,2] (x, y pixels), "visible": bool [T,J], "mask": bool [T,H,W]}, plus
    "joints3d" [T,J,3], "frame_labels" [T,A] and "label" [T,H,W] (layer map).

    `dir_or_path` is the dataset dir (or its manifest.csv); `row` a manifest row (mapping with a
    "pose" entry) or the relative npz path itself.
    """
    with np.load(_resolve(dir_or_path, row, "pose")) as z:
        T, H, W = (int(v) for v in z["mask_shape"])
        return {
            "joints": z["joints"].astype(np.float32),
            "visible": z["visible"].astype(bool),
            "mask": np.unpackbits(z["mask"], axis=-1, count=W).astype(bool).reshape(T, H, W),
            "joints3d": z["joints3d"],
            "frame_labels": z["frame_labels"],
            "label": z["label"],
        }


def load_flow(dataset_dir: str | os.PathLike, row) -> np.ndarray:
    """Ground-truth flow float32 [T-1, 2, H, W] (dx, dy) from frame t to t+1.

    Read from `flow/<id>.npy` when stored, otherwise recomputed exactly from the pose npz.
    """
    flow_rel = row.get("flow", "") if hasattr(row, "get") else ""
    if flow_rel:
        return np.load(_resolve(dataset_dir, row, "flow")).astype(np.float32)
    with np.load(_resolve(dataset_dir, row, "pose")) as z:
        return compute_flow(z["label"], z["kind"], z["anchors"], z["radius"])


def read_manifest(dataset_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of DIR/manifest.csv as dicts (all values strings)."""
    path = Path(dataset_dir)
    path = path if path.is_file() else path / "manifest.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stream_arrays(r: Rendered, streams) -> dict[str, np.ndarray]:
    """The per-clip arrays of `streams` (names of STREAM_FILES) for one rendered clip:
    flow float32 [T-1, 2, H, W] (from frame t to t+1), pose float32 [T, J, 3] (x, y pixels, visible),
    mask uint8 [T, H, W] (1 = person), parts uint8 [T, H, W] (body-part ids, `scene.PART_NAMES`)."""
    makers = {
        "flow": r.flow,
        "pose": lambda: np.concatenate([r.joints, r.visible[..., None].astype(np.float32)], -1),
        "mask": lambda: r.mask.astype(np.uint8),
        "parts": lambda: np.where(r.label <= N_PERSON, r.label, 0).astype(np.uint8),
    }
    return {name: makers[name]() for name in streams}


def _stored(dir_or_path, row, name: str) -> np.ndarray | None:
    """The stored array of stream `name` of a row, or None when the dataset was generated without it."""
    column = STREAM_FILES[name][0]
    rel = row.get(column, "") if hasattr(row, "get") else ""
    return np.load(_resolve(dir_or_path, row, column)) if rel else None


def load_keypoints(dir_or_path: str | os.PathLike, row) -> np.ndarray:
    """float32 [T, J, 3]: x, y (pixels of the rendered frame) and visibility (1/0) of every joint."""
    stored = _stored(dir_or_path, row, "pose")
    if stored is not None:
        return stored.astype(np.float32)
    with np.load(_resolve(dir_or_path, row, "pose")) as z:
        return np.concatenate([z["joints"], z["visible"][..., None]], -1).astype(np.float32)


def load_mask(dir_or_path: str | os.PathLike, row) -> np.ndarray:
    """uint8 [T, H, W]: 1 on the visible person, 0 elsewhere."""
    stored = _stored(dir_or_path, row, "mask")
    if stored is not None:
        return stored
    with np.load(_resolve(dir_or_path, row, "pose")) as z:
        T, H, W = (int(v) for v in z["mask_shape"])
        return np.unpackbits(z["mask"], axis=-1, count=W).reshape(T, H, W)


def load_parts(dir_or_path: str | os.PathLike, row) -> np.ndarray:
    """uint8 [T, H, W]: the visible body part's id (`scene.PART_NAMES`) at every pixel, 0 off the person."""
    stored = _stored(dir_or_path, row, "parts")
    if stored is not None:
        return stored
    with np.load(_resolve(dir_or_path, row, "pose")) as z:
        label = z["label"]
    return np.where(label <= N_PERSON, label, 0).astype(np.uint8)
