"""Several streams per sample: one plan moves pixels, label maps, flow and keypoints together; every stream
is read at the same frames; several views per sample; the typed batch; today's one-stream batches unchanged."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlhar.config import DataConfig, TaskConfig, from_dict
from mtlhar.data.batch import Batch, collate_batch
from mtlhar.data.dataset import ClipDataset, collate, decode_batch_on, resolve_tasks
from mtlhar.data.manifest import Manifest
from mtlhar.data.synth import FLIP_PAIRS, PART_FLIP_PAIRS, generate, load_keypoints, load_mask, load_parts
from mtlhar.data.synth.store import encode_video
from mtlhar.data.transforms import (
    ClipParams,
    ClipPlan,
    apply_plan,
    check_augment,
    move_stream,
    plan_clip,
    plan_matrix,
)
from mtlhar.errors import ConfigError, DataError

FULL = {"crop_scale": [0.4, 1.0], "flip": 0.5, "rotate_deg": 15, "jitter": 0.4}


# ------------------------------------------------------------------------------------------------------
# Today's one-stream configs: exactly the batches the code gave before streams existed


def _legacy_world(root: Path) -> dict[str, Path]:
    """Six lossless videos (12 frames, 40 x 48), [T, C] arrays and pose files, in two manifests."""
    root.mkdir(parents=True, exist_ok=True)
    rows, seq_rows = [], []
    yy, xx = np.mgrid[0:40, 0:48]
    for sub in ("videos", "seq", "pose"):
        (root / sub).mkdir(exist_ok=True)
    for i in range(6):
        g = np.random.default_rng([11, i])
        frames = np.zeros((12, 40, 48, 4), np.uint8)
        for t in range(12):
            base = (xx * 5 + yy * 3 + 17 * t + 40 * i) % 256
            frames[t, ..., 0] = base
            frames[t, ..., 1] = (255 - base + g.integers(0, 30, (40, 48))) % 256
            frames[t, ..., 2] = g.integers(0, 256, (40, 48))
        encode_video(root / "videos" / f"{i}.mkv", frames, 8, "ffv1")
        np.save(root / "seq" / f"{i}.npy", g.normal(size=(12, 5)).astype(np.float32))
        np.savez(root / "pose" / f"{i}.npz", joints=g.uniform(0, 40, (12, 18, 2)).astype(np.float32))
        labels = {
            "split": "train" if i < 4 else "test",
            "direction": ("right", "left")[i % 2] if i != 2 else "",
            "colour": ("red", "green", "blue")[i % 3],
            "speed": f"{0.5 + 0.25 * (i % 3):.2f}",
            "tags": f"{('right', 'left')[i % 2]}|{('red', 'green', 'blue')[i % 3]}",
        }
        rows.append({"id": f"c{i}", "path": f"videos/{i}.mkv", "pose": f"pose/{i}.npz", **labels})
        seq_rows.append({"id": f"c{i}", "path": f"seq/{i}.npy", **labels})
    for name, table in (("manifest.csv", rows), ("seq.csv", seq_rows)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    return {"video": root / "manifest.csv", "seq": root / "seq.csv"}


def _tasks(manifest):
    cfgs = [
        TaskConfig(name="direction", args={"flip_swap": [["left", "right"]]}),
        TaskConfig(name="colour", role="auxiliary"),
        TaskConfig(name="speed", kind="regression", role="auxiliary"),
        TaskConfig(name="tags", kind="multilabel", role="auxiliary"),
    ]
    return resolve_tasks(cfgs, manifest)


def _digest(batch: dict) -> str:
    h = hashlib.sha256()
    for part in ("inputs", "targets", "mask"):
        for k in sorted(batch[part]):
            v = batch[part][k]
            h.update(f"{part}/{k}/{v.dtype}/{tuple(v.shape)}".encode())
            h.update(v.contiguous().numpy().tobytes())
    h.update(repr((batch["meta"]["ids"], batch["meta"]["rows"], batch["size"])).encode())
    return h.hexdigest()[:16]


LEGACY_CASES = {
    "rgb-train": dict(split="train", train=True, seed=3, size=32),
    "rgb-train-cached": dict(split="train", train=True, seed=3, size=32, cache=True),
    "rgb-train-full": dict(split="train", train=True, seed=3, size=32, augment=FULL),
    "rgb-train-plain": dict(
        split="train",
        train=True,
        seed=5,
        size=32,
        short_side=36,
        augment={"flip": 0.5, "rotate_deg": 10, "jitter": 0.3},
    ),
    "rgb-dense": dict(split=None, frames=4, sampler="dense", stride=2, size=24),
    "rgb-dense-train": dict(split=None, frames=4, sampler="dense", stride=2, size=24, train=True, seed=1),
    "seq-train": dict(split="train", stream="seq", frames=5, train=True, seed=2),
    "seq-eval": dict(split=None, stream="seq", frames=5),
    "pose-train": dict(split="train", stream="pose", frames=6, train=True, seed=2, size=40),
}
# Recorded with the code at 2f2db18, before streams (the same builder, torch 2.14.1 / torchvision 0.29.1 on
# x86-64): a change here means a one-stream config no longer gives the batches it gave then.
LEGACY_DIGESTS = {
    "rgb-train@0": "8b41a3ea83a9ba69",
    "rgb-train@1": "c60e0ff57590e45c",
    "rgb-train-cached@0": "8b41a3ea83a9ba69",
    "rgb-train-cached@1": "c60e0ff57590e45c",
    "rgb-train-full@0": "b552bb9169812c3f",
    "rgb-train-full@1": "002466094b4af556",
    "rgb-train-plain@0": "9626ec023aaaf114",
    "rgb-train-plain@1": "af57efebd5934ec0",
    "rgb-dense@0": "4276f0b2b8235427",
    "rgb-dense@1": "4276f0b2b8235427",
    "rgb-dense-train@0": "483c681c5e3fc448",
    "rgb-dense-train@1": "196a301e4e4e18a9",
    "seq-train@0": "60a693d5619ca129",
    "seq-train@1": "3ff4a0f452af979c",
    "seq-eval@0": "2a41e1c2509d80b9",
    "seq-eval@1": "2a41e1c2509d80b9",
    "pose-train@0": "bc6f3a5bdc80d2f9",
    "pose-train@1": "e0b6dcc7fe03728d",
    "rgb-views": "0c2a02926818c504",
    "cache-worker": "1cbf471d51b6598d",
    "cache-device": "1cbf471d51b6598d",
}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    return _legacy_world(tmp_path_factory.mktemp("legacy"))


def test_one_stream_configs_give_the_batches_they_gave_before_streams(legacy, tmp_path):
    from mtlhar.data.frame_cache import build_cache

    got = {}
    for name, kw in LEGACY_CASES.items():
        m = Manifest.read(legacy["seq" if kw.get("stream") == "seq" else "video"])
        ds = ClipDataset(m, _tasks(m), **kw)
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            got[f"{name}@{epoch}"] = _digest(collate([ds[i] for i in range(len(ds))]))
    m = Manifest.read(legacy["video"])
    ds = ClipDataset(m, _tasks(m), split="test", size=24, short_side=32, test_clips=2, test_crops=3)
    got["rgb-views"] = _digest(collate([ds.view_item(i, v) for i in range(len(ds)) for v in range(ds.views)]))
    build_cache(m, tmp_path / "cache", short_side=36, quality=90)
    for mode in ("worker", "device"):
        ds = ClipDataset(
            m, _tasks(m), split="train", size=32, train=True, seed=4, short_side=32,
            frame_cache=str(tmp_path / "cache"), augment=FULL, decode_on_device=mode == "device",
        )  # fmt: skip
        got[f"cache-{mode}"] = _digest(decode_batch_on(collate([ds[i] for i in range(len(ds))]), "cpu"))
    assert got == LEGACY_DIGESTS


def test_declaring_the_input_stream_changes_nothing_and_more_streams_add_only_keys(legacy):
    m = Manifest.read(legacy["video"])
    plain = ClipDataset(m, _tasks(m), split="train", size=32, train=True, seed=3, augment=FULL)
    declared = ClipDataset(
        m, _tasks(m), split="train", size=32, train=True, seed=3, augment=FULL,
        streams={"rgb": {"source": "video"}, "seq": {"source": "pose_vector"}},
    )  # fmt: skip
    for i in range(len(plain)):
        a, b = plain[i], declared[i]
        assert set(a) == {"inputs", "targets", "mask", "meta"} and set(a["inputs"]) == {"rgb"}
        assert set(b["inputs"]) == {"rgb"} and set(b["streams"]) == {"rgb", "seq"}
        assert (
            torch.equal(a["inputs"]["rgb"], b["inputs"]["rgb"]) and b["streams"]["rgb"] is b["inputs"]["rgb"]
        )
        assert all(torch.equal(a["targets"][k], b["targets"][k]) for k in a["targets"])
    batch = collate([declared[i] for i in range(4)])
    assert batch["streams"]["rgb"] is batch["inputs"]["rgb"]  # stacked once
    assert batch["streams"]["seq"].shape == (4, 8, 36) and batch["meta"]["frames"].shape == (4, 8)


# ------------------------------------------------------------------------------------------------------
# Property: a random plan moves a label map, flow and keypoints exactly as it moves the pixels

MARK, PAIR = 5, 6  # label values of the marked disc, and its mirror partner under a flip


def _disc(h: int, w: int, x: float, y: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def _centroid(weights: torch.Tensor) -> np.ndarray:
    w = weights.double()
    yy, xx = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    s = w.sum()
    return np.array([float((w * xx).sum() / s), float((w * yy).sum() / s)])


@st.composite
def plans(draw):
    h, w = draw(st.integers(20, 48)), draw(st.integers(20, 48))
    size = draw(st.integers(max(12, math.ceil(max(h, w) / 3)), min(h, w)))
    augment = {
        "crop_scale": [0.3, 1.0] if draw(st.booleans()) else None,
        "flip": float(draw(st.booleans())),
        "rotate_deg": draw(st.sampled_from([0, 10, 45, 90])),
    }
    short_side = draw(st.sampled_from([None, size, size + 5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    plan = plan_clip(h, w, size, short_side=short_side, rng=rng, augment=check_augment(augment))
    r = 4.0
    x0, y0 = draw(st.floats(r + 1, w - r - 2)), draw(st.floats(r + 1, h - r - 2))
    u, v = draw(st.floats(-2.5, 2.5)), draw(st.floats(-2.5, 2.5))
    return h, w, size, plan, (x0, y0), (u, v), r


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(plans())
def test_a_plan_moves_maps_flow_and_keypoints_as_it_moves_the_pixels(case):
    _check_plan(*case)


@pytest.mark.parametrize(
    ("size", "plan", "uv"),
    [
        (16, ClipPlan((16, 16), 0, 0, None), (1.5, -2.0)),  # a third: pixel centres move by 1/3 input pixel
        (
            36,
            ClipPlan(None, None, None, ClipParams(crop=(13, 16, 12, 12), flip=True, angle=30.0)),
            (0.5, -0.5),
        ),
        (40, ClipPlan((60, 60), 10, 14, ClipParams(angle=-90.0)), (1.5, -2.0)),
    ],
)
def test_strong_resizes_move_the_marked_pixel_onto_its_keypoint(size, plan, uv):
    assert _check_plan(48, 48, size, plan, (22.0, 19.0), uv, 2.0) == 2  # both frames checked


def _check_plan(h, w, size, plan, p0, uv, r) -> int:
    """A disc at `p0` moving by `uv` between two frames, as pixels, a label map and keypoints, with a flow
    field of `uv`: after the plan, the disc's pixels sit on the keypoint, the flow is where the keypoint
    went, labels stay label values (the pair swapped under a flip), and so do the joints."""
    (x0, y0), (u, v) = p0, uv
    p1 = (min(max(x0 + u, r), w - 1 - r), min(max(y0 + v, r), h - 1 - r))  # where the disc is at frame 1
    u, v = p1[0] - x0, p1[1] - y0
    image = np.zeros((2, h, w, 3), np.uint8)
    labels = np.zeros((2, h, w), np.uint8)
    for t, (x, y) in enumerate([(x0, y0), p1]):
        image[t, _disc(h, w, x, y, r)] = 200
        labels[t, _disc(h, w, x, y, r)] = MARK
    points = np.array([[[x0, y0, 1], [1.0, 1.0, 1]], [[p1[0], p1[1], 1], [1.0, 1.0, 1]]], np.float32)
    flow = np.zeros((2, 2, h, w), np.float32)
    flow[0, 0], flow[0, 1] = u, v
    hw, flipped = (h, w), bool(plan.params is not None and plan.params.flip)

    pixels, _ = move_stream("image", image, plan, hw, size, grid=hw)
    maps, inside = move_stream("labels", labels, plan, hw, size, grid=hw, pairs=[(MARK, PAIR)])
    moved, _ = move_stream("flow", flow, plan, hw, size, grid=hw)
    keys, _ = move_stream("keypoints", points, plan, hw, size, grid=hw, pairs=[(0, 1)])

    assert torch.equal(pixels, apply_plan(torch.from_numpy(image).permute(0, 3, 1, 2), plan, size))
    assert maps.dtype == torch.uint8 and set(maps.unique().tolist()) <= {0, PAIR if flipped else MARK}
    mark = keys[:, 1 if flipped else 0]  # left/right swapped under a flip: the marked joint is now joint 1
    m = plan_matrix(plan, h, w, size)
    for t, (x, y) in enumerate([(x0, y0), p1]):
        assert np.allclose(mark[t, :2].numpy(), (m @ [x, y, 1])[:2], atol=1e-4)
    scale = np.linalg.norm(m[:2, :2], 2)
    checked = 0
    for t in range(2):
        x, y, visible = mark[t].tolist()
        margin = r * scale + 1.5
        if not (margin <= x <= size - 1 - margin and margin <= y <= size - 1 - margin):
            continue  # the disc is (partly) outside: only its visibility is defined
        assert visible == 1.0
        checked += 1
        assert np.abs(_centroid(pixels[0, t]) - (x, y)).max() < 0.25  # the disc's pixels are on the point
        assert np.abs(_centroid(maps[t] > 0) - (x, y)).max() < 0.6  # so are its labels (nearest: coarser)
    x, y = mark[0, :2].tolist()
    if all(margin <= c <= size - 1 - margin for c in (x, y)) and mark[1, 2] == 1:
        iy, ix = round(y), round(x)
        assert inside[0, iy, ix]
        # flow at the point = where the point went (keypoints and pixels of frame 1), in output pixels
        assert np.allclose(moved[:, 0, iy, ix].numpy(), (mark[1, :2] - mark[0, :2]).numpy(), atol=1e-3)
        shift = _centroid(pixels[0, 1]) - _centroid(pixels[0, 0])
        assert np.abs(moved[:, 0, iy, ix].numpy() - shift).max() < 0.4
    outside = ~((keys[..., :2] >= -0.5) & (keys[..., :2] < size - 0.5)).all(-1)
    assert not keys[..., 2][outside].any()  # a keypoint that left the frame is not visible
    return checked


def _flip_only(h: int, w: int, angle: float = 0.0) -> tuple[ClipPlan, ClipPlan]:
    keep = ClipPlan(None, 0, 0, ClipParams(angle=angle))
    return keep, ClipPlan(None, 0, 0, ClipParams(flip=True, angle=angle))


def test_a_flip_negates_horizontal_flow_swaps_joints_and_part_labels():
    rng = np.random.default_rng(0)
    flow = torch.from_numpy(rng.normal(size=(3, 2, 16, 16)).astype(np.float32))
    keep, flip = _flip_only(16, 16)
    a, _ = move_stream("flow", flow, keep, (16, 16), 16, grid=(16, 16))
    b, _ = move_stream("flow", flow, flip, (16, 16), 16, grid=(16, 16))
    assert torch.allclose(a, flow.transpose(0, 1), atol=1e-6)
    assert torch.allclose(b[0], -a[0].flip(-1), atol=1e-6) and torch.allclose(b[1], a[1].flip(-1), atol=1e-6)
    parts = torch.from_numpy(rng.integers(0, 20, (3, 16, 16)).astype(np.uint8))
    out, _ = move_stream("labels", parts, flip, (16, 16), 16, grid=(16, 16), pairs=PART_FLIP_PAIRS)
    table = torch.arange(20)
    for i, j in PART_FLIP_PAIRS:
        table[i], table[j] = j, i
    assert torch.equal(out, table[parts.flip(-1).long()].to(torch.uint8))
    joints = torch.from_numpy(rng.uniform(0, 15, (3, 18, 3)).astype(np.float32))
    joints[..., 2] = 1
    out, _ = move_stream("keypoints", joints, flip, (16, 16), 16, grid=(16, 16), pairs=FLIP_PAIRS)
    for i, j in FLIP_PAIRS:
        assert torch.allclose(out[:, i, 0], 15 - joints[:, j, 0]) and torch.equal(
            out[:, i, 1], joints[:, j, 1]
        )
    # a resize scales flow by its factors (here x 1.5, y x 2), then a quarter turn takes (u, v) to (v, -u)
    turn = ClipPlan((32, 24), 0, 0, ClipParams(angle=90.0))
    flow = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16)
    out, _ = move_stream("flow", flow, turn, (16, 16), 24, grid=(16, 16))
    assert torch.allclose(out[:, 0, 12, 12], torch.tensor([2.0, -1.5]), atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# Every stream of a sample is read at the same frame indices


def _index_world(root: Path, n: int = 4, frames: int = 20) -> Path:
    """Videos whose frame t is one flat colour (10 t, 5 t, 0), and arrays holding t at every element."""
    rows = []
    for sub in ("videos", "tick", "labmap", "depth", "flow"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    t = np.arange(frames)
    for i in range(n):
        rgba = np.zeros((frames, 24, 32, 4), np.uint8)
        rgba[..., 0], rgba[..., 1] = (10 * t)[:, None, None], (5 * t)[:, None, None]
        encode_video(root / "videos" / f"{i}.mkv", rgba, 8, "ffv1")
        np.save(root / "tick" / f"{i}.npy", t[:, None].astype(np.float32))
        np.save(
            root / "labmap" / f"{i}.npy", np.broadcast_to(t[:, None, None], (frames, 24, 32)).astype(np.int64)
        )
        np.save(
            root / "depth" / f"{i}.npy", np.broadcast_to(t[:, None, None, None], (frames, 1, 24, 32)) * 1.0
        )
        flow = np.zeros((frames, 2, 24, 32), np.float32)
        flow[:, 0] = t[:, None, None]
        np.save(root / "flow" / f"{i}.npy", flow)
        rows.append(
            {"id": f"v{i}", "path": f"videos/{i}.mkv", "split": "train", "tick": f"tick/{i}.npy",
             "labmap": f"labmap/{i}.npy", "depth": f"depth/{i}.npy", "flow": f"flow/{i}.npy", "speed": "1.0"}
        )  # fmt: skip
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


INDEX_STREAMS = {
    "tick": {"source": "array"},
    "labmap": {"source": "array", "kind": "labels"},
    "depth": {"source": "array", "kind": "map"},
    "motion": {"source": "array", "column": "flow", "kind": "flow"},
}


@pytest.fixture(scope="module")
def index_world(tmp_path_factory):
    m = Manifest.read(_index_world(tmp_path_factory.mktemp("index")))
    return m, resolve_tasks([TaskConfig(name="speed", kind="regression")], m)


def _frames_of(sample: dict, *, flow: bool) -> dict[str, list[int]]:
    s, c = sample["streams"], 12  # the centre pixel: never rotated in from outside
    out = {
        "rgb": (s["rgb"][0, :, c, c].float() / 10).round().long().tolist(),
        "rgb_g": (s["rgb"][1, :, c, c].float() / 5).round().long().tolist(),
        "tick": s["tick"][:, 0].long().tolist(),
        "labmap": s["labmap"][:, c, c].tolist(),
        "depth": s["depth"][0, :, c, c].round().long().tolist(),
    }
    if flow:  # no resize, no flip, no rotation: the flow's values are not moved
        out["motion"] = s["motion"][0, :, c, c].round().long().tolist()
    return out


@pytest.mark.parametrize(
    ("kw", "flow"),
    [
        (dict(train=True, augment={"crop_scale": [0.5, 1.0], "flip": 0.5, "rotate_deg": 20}), False),
        (dict(train=True, sampler="dense", stride=2, augment={"flip": 0.5}, short_side=30), False),
        (dict(train=False, test_clips=3), True),
        (dict(train=True, sample_views=2, sampler="dense"), True),
    ],
)
def test_every_stream_of_a_sample_is_read_at_the_same_frames(index_world, kw, flow):
    m, tasks = index_world
    ds = ClipDataset(m, tasks, split="train", frames=6, size=24, seed=9, streams=INDEX_STREAMS, **kw)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            samples = [ds.view_item(i, v) for v in range(ds.views)] if ds.views > 1 else [ds[i]]
            if "views" in samples[0]:
                samples = [{**samples[0], **view, "meta": view} for view in samples[0]["views"]]
            for s in samples:
                frames = s["meta"]["frames"].tolist()
                assert len(set(frames)) > 1
                for name, got in _frames_of(s, flow=flow).items():
                    assert got == frames, (name, got, frames, kw)


def test_a_stream_with_other_frames_makes_the_sample_bad_naming_it(index_world, tmp_path):
    m, tasks = index_world
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((5, 1), np.float32))
    m.rows[1]["tick"] = str(short)
    try:
        s = ClipDataset(m, tasks, split="train", frames=4, size=24, streams=INDEX_STREAMS)[1]
    finally:
        m.rows[1]["tick"] = "tick/1.npy"
    assert "stream 'tick' has 5 frames but stream 'rgb' has 20" in s["bad"]["reason"]
    batch = collate([s])
    assert batch["size"] == 0 and batch["meta"]["bad"][0]["id"] == "v1"


# ------------------------------------------------------------------------------------------------------
# Several views of one clip


def test_two_views_differ_and_are_reproducible(index_world):
    m, tasks = index_world

    def make():
        return ClipDataset(
            m, tasks, split="train", frames=4, size=20, train=True, seed=2, sample_views=2,
            augment={"crop_scale": [0.4, 1.0], "flip": 0.5}, streams={"labmap": INDEX_STREAMS["labmap"]},
        )  # fmt: skip

    a, b = make(), make()
    for i in range(len(a)):
        x, y = a[i], b[i]
        v0, v1 = x["views"]
        assert v0["streams"]["rgb"] is x["inputs"]["rgb"] and set(v1["inputs"]) == {"rgb"}
        assert not torch.equal(v0["frames"], v1["frames"]) or not torch.equal(
            v0["streams"]["rgb"], v1["streams"]["rgb"]
        )
        for p, q in zip(x["views"], y["views"]):  # a fresh dataset (a resumed run) draws the same views
            assert torch.equal(p["frames"], q["frames"]) and p["flipped"] == q["flipped"]
            assert all(torch.equal(p["streams"][k], q["streams"][k]) for k in p["streams"])
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["views"][1]["frames"], b[i]["views"][1]["frames"]) for i in range(len(a)))
    batch = collate_batch([b[i] for i in range(len(b))])
    assert len(batch.views) == 2 and batch.views[1]["streams"]["rgb"].shape == (4, 3, 4, 20, 20)
    assert (
        batch.views[0]["streams"]["rgb"] is batch.inputs["rgb"]
        and batch.views[1]["flipped"].dtype == torch.bool
    )


# ------------------------------------------------------------------------------------------------------
# The typed batch


def test_the_batch_dataclass_moves_everything_and_reads_like_the_dict(index_world):
    m, tasks = index_world
    ds = ClipDataset(
        m, tasks, split="train", frames=4, size=24, train=True, streams=INDEX_STREAMS, sample_views=2
    )
    d = collate([ds[i] for i in range(3)])
    b = Batch.from_dict(d)
    assert b["mask"] is b.masks is d["mask"] and b["inputs"] is d["inputs"] and b.size == 3
    assert set(b) == set(d) == {"inputs", "targets", "mask", "streams", "valid", "views", "meta", "size"}
    assert {**b}.keys() == d.keys() and "views" in b and "nothing" not in b
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.streams["labmap"], d["streams"]["labmap"])
    assert moved.valid["motion"].dtype == torch.bool and moved.valid["motion"].shape == (3, 4, 24, 24)
    assert torch.equal(moved.views[1]["streams"]["depth"], d["views"][1]["streams"]["depth"])
    plain = collate_batch([ds[i] for i in range(0)])
    assert plain.size == 0 and plain.as_dict() == collate([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_batch_goes_to_the_gpu(index_world):
    m, tasks = index_world
    ds = ClipDataset(
        m, tasks, split="train", frames=4, size=24, train=True, streams=INDEX_STREAMS, sample_views=2
    )
    b = collate_batch([ds[i] for i in range(2)]).to("cuda")
    assert b.inputs["rgb"].is_cuda and b.streams["motion"].is_cuda and b.views[1]["valid"]["labmap"].is_cuda
    assert b.meta["frames"].is_cuda and b.targets["speed"].is_cuda and b.masks["speed"].is_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streams_move_on_the_gpu_as_on_the_cpu():
    rng = np.random.default_rng(1)
    plan = plan_clip(
        30, 40, 24, rng=rng, augment=check_augment({"crop_scale": [0.4, 1.0], "flip": 1.0, "rotate_deg": 30})
    )
    data = {
        "labels": torch.from_numpy(rng.integers(0, 20, (3, 30, 40)).astype(np.uint8)),
        "flow": torch.from_numpy(rng.normal(size=(3, 2, 30, 40)).astype(np.float32)),
        "map": torch.from_numpy(rng.normal(size=(3, 1, 30, 40)).astype(np.float32)),
        "keypoints": torch.from_numpy(rng.uniform(0, 30, (3, 18, 3)).astype(np.float32)),
    }
    for kind, x in data.items():
        pairs = FLIP_PAIRS if kind == "keypoints" else PART_FLIP_PAIRS if kind == "labels" else ()
        cpu, inside = move_stream(kind, x, plan, (30, 40), 24, grid=(30, 40), pairs=pairs)
        gpu, inside_gpu = move_stream(kind, x.cuda(), plan, (30, 40), 24, grid=(30, 40), pairs=pairs)
        assert gpu.is_cuda and torch.allclose(gpu.cpu().float(), cpu.float(), atol=1e-4), kind
        assert inside is None or torch.equal(inside_gpu.cpu(), inside), kind


def test_device_decode_with_streams_gives_the_loader_batch(index_world, tmp_path):
    from mtlhar.data.frame_cache import build_cache

    m, tasks = index_world
    build_cache(m, tmp_path / "cache", short_side=None, quality=95)
    kw = dict(split="train", frames=4, size=20, train=True, seed=1, frame_cache=str(tmp_path / "cache"),
              augment={"crop_scale": [0.5, 1.0], "flip": 0.5}, streams=INDEX_STREAMS)  # fmt: skip
    worker = collate([ClipDataset(m, tasks, **kw)[i] for i in range(4)])
    raw = collate([ClipDataset(m, tasks, decode_on_device=True, **kw)[i] for i in range(4)])
    assert "rgb" not in raw["streams"] and len(raw["inputs"]["rgb_jpeg"]) == 4
    out = Batch.from_dict(raw).to("cpu")
    assert torch.equal(out.inputs["rgb"], worker["inputs"]["rgb"]) and out.streams["rgb"] is out.inputs["rgb"]
    assert all(torch.equal(out.streams[k], worker["streams"][k]) for k in worker["streams"])


# ------------------------------------------------------------------------------------------------------
# The synthetic world's streams agree with its video

SYNTH = dict(
    clips=69, frames=8, size=48, domains=("studio",), heldout_domain=None, noise=0.0, codec="ffv1", seed=5
)
SYNTH_STREAMS = {
    "flow": {"source": "synth_flow"},
    "pose": {"source": "synth_pose"},
    "mask": {"source": "synth_mask"},
    "parts": {"source": "synth_parts"},
}


@pytest.fixture(scope="module")
def synth_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, **SYNTH, streams=["flow", "pose", "mask", "parts"])
    m = Manifest.read(out / "manifest.csv")
    return m, resolve_tasks([TaskConfig(name="fine")], m)


def _synth(m, tasks, **kw) -> ClipDataset:
    args = dict(split="train", frames=8, size=48, streams=SYNTH_STREAMS, sampler="dense")
    return ClipDataset(m, tasks, **{**args, **kw})


def test_stored_streams_equal_the_ones_derived_from_the_pose_file(synth_world):
    m, _ = synth_world
    assert {"keypoints", "mask", "parts", "flow"} <= set(m.columns)
    for row in m.rows[:6]:
        bare = {**row, "keypoints": "", "mask": "", "parts": ""}
        assert np.array_equal(load_keypoints(m.root, row), load_keypoints(m.root, bare))
        assert np.array_equal(load_mask(m.root, row), load_mask(m.root, bare))
        assert np.array_equal(load_parts(m.root, row), load_parts(m.root, bare))
        assert np.array_equal(load_mask(m.root, row), load_parts(m.root, row) > 0)
    # the stored keypoints read as a plain array stream move exactly as the synth_pose stream
    streams = {**SYNTH_STREAMS, "kp": {"source": "array", "column": "keypoints", "kind": "keypoints",
                                       "flip_pairs": [list(p) for p in FLIP_PAIRS]}}  # fmt: skip
    ds = _synth(*synth_world, streams=streams, train=True, augment={"crop_scale": [0.5, 1.0], "flip": 0.5})
    for i in range(6):
        s = ds[i]
        assert torch.equal(s["streams"]["kp"], s["streams"]["pose"])


def test_the_person_mask_covers_the_pixels_that_differ_from_the_backdrop(synth_world):
    ds = _synth(*synth_world, streams={"mask": SYNTH_STREAMS["mask"], "parts": SYNTH_STREAMS["parts"]})
    for i in range(0, 30, 5):
        s = ds[i]
        rgb = s["streams"]["rgb"].permute(1, 2, 3, 0).reshape(-1, 3).numpy()
        mask = s["streams"]["mask"].reshape(-1).numpy().astype(bool)
        colours, counts = np.unique(rgb[~mask], axis=0, return_counts=True)
        wall = colours[np.argsort(counts)[-2:]]  # studio: a flat wall and a flat floor
        differs = ~(rgb[:, None] == wall[None]).all(-1).any(-1)
        assert differs[mask].mean() > 0.97 and mask[differs].mean() > 0.9, i
        assert torch.equal(s["streams"]["parts"] > 0, s["streams"]["mask"].bool())


def test_flow_moves_the_joints_as_the_augmented_frames_show_them(synth_world):
    aug = {"crop_scale": [0.5, 1.0], "flip": 0.5, "rotate_deg": 20}
    ds = _synth(*synth_world, train=True, augment=aug, size=40)
    errors, flips, warped, mirrored, still = [], 0, [], [], []
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(8):
            s = ds[i]
            flow, kp, mask, valid = (
                s["streams"]["flow"],
                s["streams"]["pose"],
                s["streams"]["mask"],
                s["valid"]["flow"],
            )
            flips += bool(s["meta"]["flipped"])
            assert torch.equal(s["streams"]["mask"].bool(), s["streams"]["parts"] > 0)
            assert not valid[-1].any()  # the last frame has no next frame
            errors += _joint_flow_errors(flow, kp, mask.bool() & valid)
            for t in range(kp.shape[0] - 1):
                warp = _warp_errors(
                    s["streams"]["rgb"][:, t : t + 2].float(), flow[:, t], mask[t].bool() & valid[t]
                )
                for k, e in zip((warped, mirrored, still), warp):
                    k.append(e)
    assert flips >= 4 and len(errors) > 500
    assert np.median(errors) < 0.6 and np.percentile(errors, 90) < 1.5, (
        np.median(errors),
        np.percentile(errors, 90),
    )
    # the moved flow carries frame t onto frame t + 1, better than no flow or flow with u of the wrong sign
    assert np.mean(warped) < 0.8 * np.mean(still) and np.mean(warped) < 0.7 * np.mean(mirrored)


def _joint_flow_errors(flow: torch.Tensor, kp: torch.Tensor, where: torch.Tensor) -> list[float]:
    """|flow at joint j's pixel in frame t - (joint j at t + 1 - joint j at t)| for the joints seen in both
    frames whose pixel at t is on the person and has flow."""
    k0, k1, n = kp[:-1], kp[1:], flow.shape[-1] - 1
    ix, iy = k0[..., 0].round().long().clamp(0, n), k0[..., 1].round().long().clamp(0, n)
    t = torch.arange(len(k0))[:, None]
    seen = (k0[..., 2] > 0) & (k1[..., 2] > 0) & where[t, iy, ix]
    du, dv = flow[0, t, iy, ix] - (k1[..., 0] - k0[..., 0]), flow[1, t, iy, ix] - (k1[..., 1] - k0[..., 1])
    return torch.hypot(du, dv)[seen].tolist()


def _warp_errors(frames: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Mean colour error between frame 0 and frame 1 sampled at p + (u, v), p + (-u, v) and p, over the
    inner person pixels (`mask` eroded by one pixel)."""
    core = mask & mask.roll(1, 0) & mask.roll(-1, 0) & mask.roll(1, 1) & mask.roll(-1, 1)
    ys, xs = torch.nonzero(core, as_tuple=True)
    n = frames.shape[-1] - 1
    out = []
    for su, sv in ((1, 1), (-1, 1), (0, 0)):
        x1 = (xs + su * flow[0, ys, xs]).round().long().clamp(0, n)
        y1 = (ys + sv * flow[1, ys, xs]).round().long().clamp(0, n)
        out.append(float((frames[:, 0, ys, xs] - frames[:, 1, y1, x1]).abs().mean()))
    return out


def test_a_flipped_sample_is_the_mirror_of_the_unflipped_one_in_every_stream(synth_world):
    m, tasks = synth_world
    plain = _synth(m, tasks, train=True, seed=4, augment={"flip": 0.0})
    mirror = _synth(m, tasks, train=True, seed=4, augment={"flip": 1.0})
    table = torch.arange(20)
    for a, b in PART_FLIP_PAIRS:
        table[a], table[b] = b, a
    for i in range(5):
        a, b = plain[i]["streams"], mirror[i]["streams"]
        assert torch.equal(b["rgb"], a["rgb"].flip(-1)) and torch.equal(b["mask"], a["mask"].flip(-1))
        assert torch.equal(b["parts"], table[a["parts"].flip(-1).long()].to(torch.uint8))
        assert torch.allclose(b["flow"][0], -a["flow"][0].flip(-1), atol=1e-5)
        assert torch.allclose(b["flow"][1], a["flow"][1].flip(-1), atol=1e-5)
        for left, right in FLIP_PAIRS:  # the mirrored left wrist is where the right wrist was
            assert torch.allclose(b["pose"][:, left, 0], 47 - a["pose"][:, right, 0], atol=1e-4)
            assert torch.equal(b["pose"][:, left, 2], a["pose"][:, right, 2])


# ------------------------------------------------------------------------------------------------------
# Config


def test_streams_in_the_config_are_checked_naming_the_key():
    d = from_dict(
        DataConfig,
        {"streams": {"flow": "synth_flow", "rgb": {"source": "video"}}, "inputs": ["rgb"], "views": 2},
    )
    assert d.streams == {"flow": {"source": "synth_flow"}, "rgb": {"source": "video"}} and d.views == 2
    cases = [
        (
            {"streams": {"flow": {"source": "synth_flo"}}},
            r"'data\.streams\.flow\.source': got 'synth_flo', allowed values are video, array",
        ),
        (
            {"streams": {"d": {"source": "array", "kind": "depth"}}},
            r"'data\.streams\.d\.kind': got 'depth', allowed values are image, map",
        ),
        (
            {"streams": {"d": {"source": "video", "kind": "map"}}},
            r"unknown config key 'data\.streams\.d\.kind'; allowed keys for source video: source, column",
        ),
        (
            {"streams": {"k": {"source": "array", "frame_size": [0, 4]}}},
            r"'data\.streams\.k\.frame_size'.*\[height, width\]",
        ),
        (
            {"streams": {"k": {"source": "array", "flip_pairs": [[1]]}}},
            r"'data\.streams\.k\.flip_pairs'.*pairs of indices",
        ),
        ({"streams": {"a.b": "video"}}, r"'data\.streams': stream name 'a\.b' is not a plain name"),
        (
            {"streams": {"flow": 3}},
            r"'data\.streams\.flow': got 3, expected a mapping like \{source: video\}",
        ),
        (
            {"inputs": ["flow"]},
            r"'data\.inputs\.0': got 'flow', expected a stream of data\.streams \(none declared\)",
        ),
        ({"views": 0}, r"'data\.views': got 0, allowed values are integers >= 1"),
    ]
    for data, match in cases:
        with pytest.raises(ConfigError, match=match):
            from_dict(DataConfig, data, prefix="data")
    # the synthetic world's stored streams are generator keywords, so data.synth keys
    assert from_dict(DataConfig, {"synth": {"clips": 30, "streams": ["flow", "mask"]}}).synth["streams"]
    with pytest.raises(ConfigError, match=r"unknown config key 'data\.synth\.stream'.*\bstreams\b"):
        from_dict(DataConfig, {"synth": {"stream": ["flow"]}}, prefix="data")


def test_keypoints_without_a_frame_from_a_frame_cache_name_the_stream(index_world, tmp_path):
    from mtlhar.data.frame_cache import build_cache

    m, tasks = index_world
    kp = tmp_path / "kp.npy"
    np.save(kp, np.zeros((20, 2, 3), np.float32))
    for r in m.rows:
        r["kp"] = str(kp)
    m.columns.append("kp")
    try:
        streams = {"kp": {"source": "array", "kind": "keypoints"}}
        video = ClipDataset(m, tasks, split="train", frames=4, size=24, streams=streams)[0]
        assert video["streams"]["kp"].shape == (4, 2, 3)  # in the video's pixels
        build_cache(m, tmp_path / "cache", short_side=None)
        s = ClipDataset(
            m, tasks, split="train", frames=4, size=24, streams=streams, frame_cache=str(tmp_path / "cache")
        )[0]
        assert "stream 'kp': keypoints need the size of the frame" in s["bad"]["reason"]
        with pytest.raises(DataError, match="stream 'nope' reads column 'nope', which the manifest lacks"):
            ClipDataset(m, tasks, split="train", streams={"nope": {"source": "array"}})
    finally:
        m.columns.remove("kp")
        for r in m.rows:
            del r["kp"]
