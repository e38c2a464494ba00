import json

import numpy as np
import pytest
import torch

from conftest import square_config
from mtlhar.config import RunConfig, from_dict
from mtlhar.data.frame_cache import FrameCache, build_cache
from mtlhar.data.manifest import Manifest
from mtlhar.data.video import read_video
from mtlhar.errors import DataError
from mtlhar.train import Trainer


def test_cache_matches_decoded_frames_and_trains(squares, tmp_path):
    res = build_cache(squares, tmp_path / "cache", short_side=None, quality=95, workers=2)
    assert res["videos"] == len(Manifest.read(squares).rows) and not res["failed"]
    cache = FrameCache(tmp_path / "cache")
    video = read_video(squares.parent / "videos" / "003.mp4")
    assert cache.n_frames("videos/003.mp4") == len(video)
    frames = cache.read("videos/003.mp4", [0, 5, 7])
    assert frames.shape == (3, *video.shape[1:])
    assert np.abs(frames.astype(int) - video[[0, 5, 7]].astype(int)).mean() < 3  # JPEG q95 is close
    cfg = from_dict(RunConfig, square_config(squares, steps=3, eval_every=3))
    cfg.data.frame_cache = str(tmp_path / "cache")
    assert Trainer(cfg, tmp_path / "run").fit(log=None).steps == 3


def test_interrupted_cache_resumes_and_drops_partial_bytes(squares, tmp_path):
    out = tmp_path / "cache"
    build_cache(squares, out, short_side=16)
    index = out / "index-0.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:10]) + "\n" + lines[10][:25])  # killed while writing line 11
    with open(out / "shard-0-0.bin", "ab") as f:
        f.write(b"half a jpeg")
    res = build_cache(squares, out, short_side=16)
    assert res["videos"] == len(lines)
    cache = FrameCache(out)
    assert len(cache.index) == len(lines)
    for key in list(cache.index)[:12]:
        assert cache.read(key, [0]).shape[1] == 16


def test_cache_settings_mismatch_and_missing_video(squares, tmp_path):
    out = tmp_path / "cache"
    build_cache(squares, out, short_side=16)
    with pytest.raises(DataError, match="other settings"):
        build_cache(squares, out, short_side=32)
    with pytest.raises(DataError, match="not in the frame cache"):
        FrameCache(out).read("videos/nope.mp4", [0])
    assert json.loads((out / "meta.json").read_text())["short_side"] == 16


def test_dataset_reads_cache_frames_as_tensors_same_clip_as_numpy_path(squares, tmp_path):
    """The loader crops the decoder's [T, 3, H, W] tensor directly; it must give the clip the numpy
    [T, H, W, 3] path gives (resize, random crop and test crop alike)."""
    from mtlhar.data.dataset import resize_clip

    build_cache(squares, tmp_path / "cache", short_side=40)
    cache = FrameCache(tmp_path / "cache")
    key = "videos/003.mp4"
    t = cache.read_frames(key, [0, 2, 4, 6])
    assert t.shape[:2] == (4, 3) and t.dtype == torch.uint8
    frames = cache.read(key, [0, 2, 4, 6])
    assert np.array_equal(t.permute(0, 2, 3, 1).numpy(), frames)
    for kw in (
        {"short_side": 40},  # crop only
        {"short_side": 36},  # resize, then crop
        {"short_side": 40, "crop": (2, 3)},
    ):
        a = resize_clip(t, 32, **kw)
        b = resize_clip(frames, 32, **kw)
        c = resize_clip(np.ascontiguousarray(frames), 32, **kw)
        assert a.shape == (3, 4, 32, 32) and a.is_contiguous()
        assert torch.equal(a, b) and torch.equal(a, c)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    assert torch.equal(
        resize_clip(t, 32, short_side=40, rng=r1), resize_clip(frames, 32, short_side=40, rng=r2)
    )
    cfg = from_dict(RunConfig, square_config(squares, steps=2, eval_every=2))
    cfg.data.frame_cache, cfg.data.short_side = str(tmp_path / "cache"), 40
    cfg.data.augment = {"crop_scale": [0.5, 1.0], "flip": 0.5}
    from mtlhar.data.dataset import resolve_tasks
    from mtlhar.train import make_dataset

    m = Manifest.read(squares)
    ds = make_dataset(cfg, m, resolve_tasks(cfg.tasks, m), "train", train=True)
    x = ds[0]["inputs"]["rgb"]
    assert x.shape == (3, 8, 32, 32) and x.dtype == torch.uint8
