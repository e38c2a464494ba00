"""Feature store: windows, round trip into the `features` stream, resume, bad videos, training on it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import square_config
from mtlhar.cli import main
from mtlhar.config import RunConfig, from_dict
from mtlhar.data.dataset import ClipDataset, resolve_tasks
from mtlhar.data.manifest import Manifest
from mtlhar.errors import ConfigError
from mtlhar.features import array_name, extract_features, resize_crop, windows
from mtlhar.models import build_encoder
from mtlhar.train import Trainer

ENC = {"encoder": "small3d", "encoder_args": {"width": 4}, "window": 4, "stride": 2, "size": 32}


def _store(manifest, out, **kw):
    torch.manual_seed(0)
    return extract_features(manifest, out, **{**ENC, **kw})


def test_windows_cover_the_clip_and_pad_short_clips():
    assert [w.tolist() for w in windows(8, 4, 2)] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert [w[0] for w in windows(9, 4, 3)] == [0, 3, 5]  # the tail window ends at the last frame
    assert windows(3, 4, 2)[0].tolist() == [0, 1, 2, 2]


def test_round_trip_into_the_features_stream(squares, tmp_path):
    res = _store(squares, tmp_path / "f", batch_size=5)  # batches straddle clips
    assert res["written"] == 48 and res["skipped"] == 0 and res["failed"] == [] and res["dim"] == 24
    meta = json.loads((tmp_path / "f" / "features.json").read_text())
    assert (meta["encoder"], meta["window"], meta["stride"], meta["dim"]) == ("small3d", 4, 2, 24)
    # each row is the encoder's pooled vector of one window
    m = Manifest.read(squares)
    torch.manual_seed(0)
    enc = build_encoder("small3d", width=4).eval()
    from mtlhar.data.video import read_video

    video = resize_crop(read_video(m.resolve(m.rows[7]["path"])), 32)
    with torch.no_grad():
        expected = enc(torch.stack([video[:, torch.from_numpy(w)] for w in windows(8, 4, 2)]))["pooled"]
    stored = np.load(tmp_path / "f" / "arrays" / array_name(m.rows[7]["id"]))
    np.testing.assert_allclose(stored, expected.numpy(), atol=1e-5)
    # the store's manifest keeps ids, splits and labels and feeds ClipDataset(stream="features")
    fm = Manifest.read(tmp_path / "f")
    assert [r["id"] for r in fm.rows] == [r["id"] for r in m.rows]
    assert fm.rows[7]["direction"] == m.rows[7]["direction"]
    cfg = from_dict(RunConfig, square_config(squares))
    tasks = resolve_tasks(cfg.tasks, fm)
    ds = ClipDataset(fm, tasks, split=None, stream="features", frames=3)
    sample = ds[7]
    assert sample["inputs"]["features"].shape == (3, 24)
    np.testing.assert_allclose(sample["inputs"]["features"].numpy(), stored)


def _subset(manifest, tmp_path, n: int):
    """The first n rows of a manifest, paths made absolute."""
    rows = list(csv.DictReader(open(manifest)))[:n]
    for r in rows:
        r["path"] = str(manifest.parent / r["path"])
    path = tmp_path / "subset.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_resume_after_interruption_and_settings_check(squares, tmp_path):
    manifest, out = _subset(squares, tmp_path, 12), tmp_path / "f"

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _store(manifest, out, progress=stop, batch_size=4)
    assert len(list((out / "arrays").glob("*.npy"))) == 5
    assert not list((out / "arrays").glob("*.tmp.npy"))
    res = _store(manifest, out)
    assert (res["written"], res["skipped"]) == (7, 5)
    whole = _store(manifest, tmp_path / "g")
    assert whole["written"] == 12
    for r in Manifest.read(manifest).rows:
        a, b = (np.load(d / "arrays" / array_name(r["id"])) for d in (out, tmp_path / "g"))
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert len(Manifest.read(out).rows) == 12
    with pytest.raises(ConfigError, match=r"features.json: this store was made with other settings \(stride"):
        _store(manifest, out, stride=3)


def test_unreadable_videos_are_listed_not_stored(squares, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(squares.parent, root)
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    (root / rows[2]["path"]).write_bytes(b"not a video")
    res = _store(root / "manifest.csv", tmp_path / "f")
    assert [f["id"] for f in res["failed"]] == [rows[2]["id"]] and res["written"] == 47
    ids = [r["id"] for r in Manifest.read(tmp_path / "f").rows]
    assert rows[2]["id"] not in ids and len(ids) == 47


def test_frozen_features_train_multitask_heads(squares, tmp_path):
    _store(squares, tmp_path / "f")
    cfg = square_config(tmp_path / "f" / "manifest.csv", steps=20, eval_every=10)
    cfg["data"].update(stream="features", frames=3)
    cfg["model"] = {"encoder": "features", "encoder_args": {"dim": 24}}
    temporal = ["subevents", "pyramid", "tconv", "lstm"]
    for task, t in zip(cfg["tasks"], temporal):
        task.update(tap="frames", temporal=t)
    res = Trainer(from_dict(RunConfig, cfg), tmp_path / "run").fit(log=None)
    assert res.steps == 20 and set(res.val_metrics) == {"direction", "colour", "speed", "tags"}


def test_cli_features(squares, tmp_path, capsys):
    args = ["features", str(squares), "--encoder", "small3d", "--option", "width=4"]
    args += ["--window", "8", "--stride", "8", "--size", "32", "--out", str(tmp_path / "f")]
    assert main(args) == 0
    assert "48 clips written" in capsys.readouterr().out
    assert np.load(next((tmp_path / "f" / "arrays").glob("*.npy"))).shape == (1, 24)
