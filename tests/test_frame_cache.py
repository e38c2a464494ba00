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


def assert_frames_match(cached: np.ndarray, decoded: np.ndarray, key: str) -> None:
    """Every cached frame is its own decoded frame up to JPEG error, and nearer to it than to any other.

    The square moves 2 pixels a frame, so consecutive frames differ in a few hundred values only: a clip
    mean absolute error cannot tell a shifted or repeated frame from JPEG noise (on these clips JPEG q95
    costs ~1.6-2.3 per value, a neighbouring frame ~3.5-4.9). Per frame, root mean square errors separate
    them: ~6-7.5 to the frame's own decoded frame against >= 22 to a neighbour.
    """
    assert cached.shape == decoded.shape, key
    c, d = cached.astype(np.float64), decoded.astype(np.float64)
    # rmse[i, j]: cached frame i against decoded frame j
    rmse = np.sqrt(((c[:, None] - d[None]) ** 2).mean(axis=(2, 3, 4)))
    own = np.diag(rmse)
    mae = np.abs(c - d).mean(axis=(1, 2, 3))
    assert (mae < 3).all() and (own < 10).all(), (key, mae.round(2), own.round(2))  # JPEG q95, per frame
    other = np.where(np.eye(len(c), dtype=bool), np.inf, rmse).min(axis=1)
    assert (own < 0.5 * other).all(), (key, own.round(2), other.round(2))  # no shifted or repeated frame
    assert (rmse.argmin(axis=1) == np.arange(len(c))).all(), key


def test_cache_matches_decoded_frames_and_trains(squares, tmp_path):
    res = build_cache(squares, tmp_path / "cache", short_side=None, quality=95, workers=2)
    assert res["videos"] == len(Manifest.read(squares).rows) and not res["failed"]
    cache = FrameCache(tmp_path / "cache")
    for key in ("videos/000.mp4", "videos/003.mp4", "videos/004.mp4", "videos/047.mp4"):
        video = read_video(squares.parent / key)
        assert cache.n_frames(key) == len(video)
        every = cache.read(key, list(range(len(video))))
        assert_frames_match(every, video, key)
        frames = cache.read(key, [0, 5, 7])  # a subset reads the same frames
        assert frames.shape == (3, *video.shape[1:]) and np.array_equal(frames, every[[0, 5, 7]])
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


def _datasets(squares, cache, augment):
    from mtlhar.data.dataset import resolve_tasks
    from mtlhar.train import make_dataset

    out = []
    for mode in ("worker", "device"):
        cfg = from_dict(RunConfig, square_config(squares, steps=2, eval_every=2))
        cfg.data.frame_cache, cfg.data.short_side, cfg.data.jpeg_decode = str(cache), 36, mode
        cfg.data.augment = augment
        m = Manifest.read(squares)
        out.append(make_dataset(cfg, m, resolve_tasks(cfg.tasks, m), "train", train=True))
    return out


@pytest.mark.parametrize(
    "augment", [{}, {"crop_scale": [0.4, 1.0], "flip": 0.5, "jitter": 0.3, "rotate_deg": 10}]
)
def test_device_decode_gives_the_loader_batch_bit_for_bit(squares, tmp_path, augment):
    """`data.jpeg_decode: device`: the loader ships JPEG bytes and the clip's plan, the training process
    decodes the whole batch in one call; the batch must equal the loader-decoded one exactly."""
    from mtlhar.data.dataset import collate, decode_batch_on

    build_cache(squares, tmp_path / "cache", short_side=40)
    worker, device = _datasets(squares, tmp_path / "cache", augment)
    for epoch in (0, 1):
        worker.set_epoch(epoch)
        device.set_epoch(epoch)
        a = collate([worker[i] for i in range(8)])
        raw = collate([device[i] for i in range(8)])
        assert "rgb" not in raw["inputs"] and len(raw["inputs"]["rgb_jpeg"]) == 8
        b = decode_batch_on(raw, "cpu")
        assert torch.equal(a["inputs"]["rgb"], b["inputs"]["rgb"])
        assert all(torch.equal(a["targets"][k], b["targets"][k]) for k in a["targets"])
        assert b["size"] == 8 and not b["meta"]["bad"]


def test_device_decode_drops_a_clip_with_a_corrupt_frame_and_lists_it(squares, tmp_path):
    from mtlhar.data.dataset import collate, decode_batch_on

    build_cache(squares, tmp_path / "cache", short_side=40)
    _, device = _datasets(squares, tmp_path / "cache", {})
    raw = collate([device[i] for i in range(4)])
    raw["inputs"]["rgb_jpeg"][2]["frames"][0] = torch.zeros(50, dtype=torch.uint8)  # not a JPEG
    out = decode_batch_on(raw, "cpu")
    assert out["size"] == 3 and out["inputs"]["rgb"].shape[0] == 3
    assert all(v.shape[0] == 3 for v in out["targets"].values())
    (bad,) = out["meta"]["bad"]
    assert bad["id"] == raw["meta"]["ids"][2] and bad["path"] and "corrupt JPEG" in bad["reason"]
    assert out["meta"]["ids"] == [raw["meta"]["ids"][j] for j in (0, 1, 3)]


def test_training_with_device_decode_equals_loader_decode(squares, tmp_path):
    build_cache(squares, tmp_path / "cache", short_side=40)
    states = []
    for mode in ("worker", "device"):
        cfg = from_dict(RunConfig, square_config(squares, steps=3, eval_every=3, checkpoint_every=3))
        cfg.data.frame_cache, cfg.data.short_side, cfg.data.jpeg_decode = str(tmp_path / "cache"), 36, mode
        cfg.data.augment = {"flip": 0.5, "jitter": 0.2}
        trainer = Trainer(cfg, tmp_path / mode)
        trainer.fit(log=None)
        states.append(trainer.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    raw = square_config(squares, steps=1)
    raw["data"]["jpeg_decode"] = "device"
    with pytest.raises(DataError, match=r"jpeg_decode: device needs data\.frame_cache"):
        Trainer(from_dict(RunConfig, raw), tmp_path / "nocache")
    raw["data"]["jpeg_decode"] = "gpu"
    with pytest.raises(Exception, match=r"jpeg_decode"):
        from_dict(RunConfig, raw)
