import json

import numpy as np
import pytest

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
