"""Tests of the synthetic action world (mtlhar.data.synth)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtlhar.data.synth import (
    COARSE_OF,
    DOMAINS,
    FINE_ACTIONS,
    GENERATOR_VERSION,
    JOINTS,
    TEMPLATE_OF,
    TIME_ORDER_PAIRS,
    ClipSpec,
    decode_video,
    generate,
    load_flow,
    load_keypoints,
    load_mask,
    load_parts,
    load_pose,
    read_manifest,
    render_clip,
    spec_for,
)
from mtlhar.data.synth.actions import action_params
from mtlhar.data.synth.flow import warp_error
from mtlhar.data.synth.scene import N_PERSON, PART_FLIP_PAIRS, PART_NAMES
from mtlhar.data.synth.skeleton import FLIP_PAIRS, forward_kinematics
from mtlhar.data.synth.subjects import make_subjects
from mtlhar.data.synth.world import COLUMNS

SMALL = dict(clips=60, frames=8, size=64, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, **SMALL)
    return out


def _tree_digest(folder: Path) -> str:
    """Hash of every file's name and bytes under `folder`."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def test_outputs_without_stored_streams_are_the_bytes_of_before(dataset):
    """Generator version unchanged: a dataset generated without `streams` is byte for byte what synth-1.1
    wrote before they existed (digest recorded with the code at 2f2db18; numpy 2.4, libx264 of PyAV)."""
    assert GENERATOR_VERSION == "synth-1.1"
    assert _tree_digest(dataset) == "32a6969c5a8cdcd0"


def test_label_spaces():
    assert len(JOINTS) >= 15
    assert len(FINE_ACTIONS) >= 20 and len(set(COARSE_OF.values())) >= 5
    assert set(COARSE_OF) == set(FINE_ACTIONS) == set(TEMPLATE_OF)
    assert {"studio", "outdoor", "lowlight"} <= set(DOMAINS)
    assert sum("[something]" in TEMPLATE_OF[a] for a in FINE_ACTIONS) >= 5


def test_manifest_and_side_files(dataset):
    rows = read_manifest(dataset)
    header = (dataset / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header[: len(COLUMNS)] == COLUMNS
    classes = json.loads((dataset / "classes.json").read_text())
    assert classes["fine"] == FINE_ACTIONS
    hier = (dataset / "hierarchy.csv").read_text().splitlines()
    assert hier[0] == "fine,coarse" and len(hier) == len(FINE_ACTIONS) + 1
    assert GENERATOR_VERSION in (dataset / "README.md").read_text()
    for r in rows:
        assert r["coarse"] == COARSE_OF[r["fine"]] and r["template"] == TEMPLATE_OF[r["fine"]]
        assert r["generator"] == GENERATOR_VERSION and r["dataset"] == "synth" and r["group"] == r["subject"]
        assert len(r["caption_alt"].split(" | ")) >= 2
        assert (dataset / r["path"]).exists() and (dataset / r["pose"]).exists()
        if "[something]" in r["template"]:
            assert r["object"] and r["object"] in r["caption"] and "[something]" not in r["caption"]
        else:
            assert r["object"] == "" and r["caption"] == r["template"]
        for key in ("size", "build", "tempo", "view", "domain", "subject"):
            assert r[key] in classes[key]


def test_splits(dataset):
    rows = read_manifest(dataset)
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test", "test_xdomain")}
    for split, rs in by_split.items():
        assert {r["fine"] for r in rs} == set(FINE_ACTIONS), split
    subj = {s: {r["subject"] for r in rs} for s, rs in by_split.items()}
    assert len(subj["train"]) == 10 and len(subj["val"]) == 3 and len(subj["test"]) == 3
    assert not (subj["train"] & subj["val"]) and not (subj["train"] & subj["test"])
    assert not (subj["val"] & subj["test"])
    assert subj["test_xdomain"] <= subj["test"]
    assert {r["domain"] for r in by_split["test_xdomain"]} == {"lowlight"}
    assert {r["domain"] for s in ("train", "val", "test") for r in by_split[s]} == {"studio", "outdoor"}
    # A subject's attributes are constant (subject -> attributes is the only relation).
    attrs = {(r["subject"], r["size"], r["build"], r["tempo"], r["height"]) for r in rows}
    assert len(attrs) == len({r["subject"] for r in rows})


def test_pose_and_mask(dataset):
    rows = read_manifest(dataset)
    for r in rows[:20]:
        pose = load_pose(dataset, r)
        T, S = int(r["frames"]), 64
        assert pose["joints"].shape == (T, len(JOINTS), 2) and pose["joints"].dtype == np.float32
        assert pose["mask"].shape == (T, S, S) and pose["mask"].any()
        vis = pose["joints"][pose["visible"]]
        assert vis.size and (vis >= -0.5).all() and (vis <= S - 0.5).all()
        assert pose["visible"].mean() > 0.5


def test_determinism_and_workers(tmp_path, dataset):
    a = generate(tmp_path / "a", **SMALL, workers=2)
    assert a.read_bytes() == (dataset / "manifest.csv").read_bytes()
    rows = read_manifest(a)
    for r in rows[::9]:
        np.testing.assert_array_equal(decode_video(a.parent / r["path"]), decode_video(dataset / r["path"]))
        pa, pb = load_pose(a.parent, r), load_pose(dataset, r)
        for k in pa:
            np.testing.assert_array_equal(pa[k], pb[k])
    c = generate(tmp_path / "c", **{**SMALL, "seed": 4})
    assert c.read_bytes() != a.read_bytes()


def test_lossless_frames_and_masks(tmp_path):
    m = generate(
        tmp_path,
        clips=30,
        frames=6,
        size=64,
        domains=("studio",),
        heldout_domain=None,
        noise=0.0,
        codec="ffv1",
        seed=1,
    )
    rows = read_manifest(m)
    for r in rows[::7]:
        assert r["path"].endswith(".mkv")
        raw = render_clip(spec_for(tmp_path, r))
        video = decode_video(tmp_path / r["path"])
        np.testing.assert_array_equal(video, raw.frames)
        pose = load_pose(tmp_path, r)
        np.testing.assert_array_equal(pose["mask"], raw.mask)
        # Pixels of the figure differ from the backdrop; pixels of no layer are exactly the backdrop.
        backdrop = video[raw.label == 0]
        person = video[pose["mask"]]
        wall = np.unique(backdrop.reshape(-1, 3), axis=0)
        assert len(wall) <= 2  # studio: flat wall and floor colours
        differs = ~(person[:, None, :] == wall[None]).all(-1).any(-1)
        assert differs.mean() > 0.97


def test_flow_warps_frames():
    subj = make_subjects(16, 0)
    errs, zero = [], []
    for i, act in enumerate(["wave_left_hand", "jump", "turn_left", "throw", "pick_up", "step_right"]):
        spec = ClipSpec(i, 5, subj[i], (act,), "studio", frames=10, size=96, noise=0.0, distractors=1.0)
        r = render_clip(spec)
        flow = r.flow()
        assert flow.shape == (9, 2, 96, 96) and flow.dtype == np.float32
        for t in range(9):
            fg = (r.label[t] > 0) & (r.label[t] <= N_PERSON)
            core = fg & np.roll(fg, 1, 0) & np.roll(fg, -1, 0) & np.roll(fg, 1, 1) & np.roll(fg, -1, 1)
            ys, xs = np.nonzero(core)
            x1 = np.clip(np.rint(xs + flow[t, 0, ys, xs]).astype(int), 0, 95)
            y1 = np.clip(np.rint(ys + flow[t, 1, ys, xs]).astype(int), 0, 95)
            keep = np.zeros_like(core)
            keep[ys, xs] = r.label[t + 1, y1, x1] == r.label[t, ys, xs]  # not occluded at t+1
            errs.append(warp_error(r.frames[t], r.frames[t + 1], flow[t], keep))
            zero.append(warp_error(r.frames[t], r.frames[t + 1], np.zeros_like(flow[t]), keep))
    assert np.mean(errs) < 4.0 and np.mean(errs) < 0.5 * np.mean(zero)


def test_load_flow_matches_render(dataset):
    r = read_manifest(dataset)[5]
    flow = load_flow(dataset, r)
    raw = render_clip(spec_for(dataset, r))
    np.testing.assert_allclose(flow, raw.flow(), atol=1e-4)


def test_long_tail(tmp_path):
    m = generate(tmp_path, clips=400, frames=2, size=16, long_tail=10.0, heldout_domain=None, seed=2)
    rows = read_manifest(m)
    train = Counter(r["fine"] for r in rows if r["split"] == "train")
    assert len(train) == len(FINE_ACTIONS)
    ratio = max(train.values()) / min(train.values())
    assert 7.0 <= ratio <= 14.0
    for split in ("val", "test"):
        c = Counter(r["fine"] for r in rows if r["split"] == split)
        assert max(c.values()) - min(c.values()) <= 1


def test_composite(tmp_path):
    m = generate(
        tmp_path, clips=30, frames=8, size=32, composite=True, heldout_domain=None, seed=2, store_flow=True
    )
    rows = read_manifest(m)
    assert "labels" in (tmp_path / "manifest.csv").read_text().splitlines()[0].split(",")
    for r in rows:
        labels = r["labels"].split("|")
        assert 2 <= len(labels) <= 3 and labels[0] == r["fine"] and set(labels) <= set(FINE_ACTIONS)
        fl = load_pose(tmp_path, r)["frame_labels"]
        assert fl.shape == (8, len(labels)) and fl.any(0).all()
    stored = load_flow(tmp_path, rows[0])
    assert rows[0]["flow"] and stored.shape == (7, 2, 32, 32)
    np.testing.assert_allclose(stored, load_flow(tmp_path, {**rows[0], "flow": ""}), atol=1e-5)
    assert _tree_digest(tmp_path) == "1da5e3b76f60925c"  # store_flow: the bytes of before streams existed


def test_stored_streams_are_the_clips_ground_truth(tmp_path):
    m = generate(
        tmp_path, clips=30, frames=4, size=32, heldout_domain=None, seed=2, streams="pose,mask,parts"
    )
    header = m.read_text().splitlines()[0].split(",")
    assert header == COLUMNS + ["keypoints", "mask", "parts"]
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["streams"] == ["pose", "mask", "parts"] and not settings["store_flow"]
    assert "masks/<id>.npy" in (tmp_path / "README.md").read_text()
    rows = read_manifest(m)
    for r in rows[::11]:
        raw = render_clip(spec_for(tmp_path, r))
        assert r["flow"] == "" and (tmp_path / r["keypoints"]).is_file()
        keypoints = np.load(tmp_path / r["keypoints"])
        assert keypoints.shape == (4, len(JOINTS), 3) and keypoints.dtype == np.float32
        np.testing.assert_array_equal(keypoints[..., :2], raw.joints)
        np.testing.assert_array_equal(keypoints[..., 2], raw.visible)
        np.testing.assert_array_equal(np.load(tmp_path / r["mask"]), raw.mask)
        parts = np.load(tmp_path / r["parts"])
        assert parts.dtype == np.uint8 and parts.max() <= N_PERSON
        np.testing.assert_array_equal(parts > 0, raw.mask)
        np.testing.assert_array_equal(parts[raw.mask], raw.label[raw.mask])
        bare = {**r, "keypoints": "", "mask": "", "parts": ""}  # read from the pose file instead: the same
        for load in (load_keypoints, load_mask, load_parts):
            np.testing.assert_array_equal(load(tmp_path, r), load(tmp_path, bare))
    with pytest.raises(ValueError, match="unknown stream 'masks' to store; expected some of flow, pose"):
        generate(tmp_path / "x", clips=30, frames=2, size=16, streams=["masks"])


def test_left_right_pairs_of_joints_and_parts():
    names = {JOINTS[a]: JOINTS[b] for a, b in FLIP_PAIRS}
    assert names == {
        f"l_{j}": f"r_{j}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "toe")
    }
    parts = {PART_NAMES[a]: PART_NAMES[b] for a, b in PART_FLIP_PAIRS}
    assert parts["torso_l"] == "torso_r" and parts["l_hand"] == "r_hand" and len(parts) == 7
    assert PART_NAMES[0] == "background" and len(PART_NAMES) == N_PERSON + 1


@pytest.mark.parametrize("a,b", TIME_ORDER_PAIRS)
def test_direction_pairs_are_time_reversals(a, b):
    s = np.linspace(0, 1, 9)
    pa, pb = action_params(a, s), action_params(b, s[::-1])
    np.testing.assert_allclose(pa, pb, atol=1e-9)
    body = make_subjects(16, 0)[0].body
    ja, jb = forward_kinematics(pa, body), forward_kinematics(action_params(b, s), body)
    # First frame of one is the last frame of the other, and the clips do move.
    np.testing.assert_allclose(ja[0], jb[-1], atol=1e-9)
    assert np.abs(ja[0] - ja[-1]).max() > 0.05


def test_rendered_pairs_share_poses():
    """Rendered with the same clip variation, frame t of a equals frame T-1-t of b in joint space."""
    subj = make_subjects(16, 0)[2]
    ra = render_clip(ClipSpec(7, 0, subj, ("sit_down",), "studio", frames=8, size=64))
    rb = render_clip(ClipSpec(7, 0, subj, ("stand_up",), "studio", frames=8, size=64))
    first_a, last_b = ra.joints[0], rb.joints[-1]
    scale = np.ptp(ra.joints[..., 1])
    assert np.abs(first_a - last_b).max() < 0.35 * scale
    assert np.abs(ra.joints[0] - ra.joints[-1]).max() > 0.1 * scale
