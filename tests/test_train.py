import csv
import json
import os
import shutil

import pytest
import torch

from conftest import square_config, whole_and_resumed
from mtlhar.config import RunConfig, from_dict
from mtlhar.data.dataset import ClipDataset, resolve_tasks
from mtlhar.data.manifest import Manifest
from mtlhar.errors import ConfigError, DataError, TooManyBadSamples
from mtlhar.evaluate import evaluate_run, load_run
from mtlhar.train import Trainer


def cfg_of(manifest, **train):
    return from_dict(RunConfig, square_config(manifest, **train))


def test_tiny_train_and_eval_end_to_end(squares, tmp_path):
    res = Trainer(cfg_of(squares, steps=40, eval_every=10), tmp_path / "run").fit(log=None)
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "provenance.json",
        "tasks.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "bad_samples.json",
    ):
        assert (run / name).is_file(), name
    prov = json.loads((run / "provenance.json").read_text())
    assert {"git_sha", "pip_freeze", "manifest_sha256", "split_hashes", "seed", "device"} <= set(prov)
    assert res.best_step in (10, 20, 30, 40)
    ev = evaluate_run(run, split="test", device=torch.device("cpu"))
    m = ev["metrics"]
    assert set(m) == {"direction", "colour", "speed", "tags"}
    assert {"top1", "macro_f1", "mean_class_acc"} <= set(m["direction"])
    assert {"mae", "rmse"} == set(m["speed"]) and "mAP" in m["tags"]
    # the task needs motion; a trained model separates left from right
    assert m["direction"]["top1"] >= 0.75
    assert len(ev["confusion"]["direction"]) == 2


def test_resume_after_kill_is_bitwise_identical(squares, tmp_path):
    # killed mid-epoch, after the checkpoint of step 6 and before the one of step 9
    whole, resumed = whole_and_resumed(lambda d: Trainer(cfg_of(squares), d), tmp_path, kill_at=8)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    oa, ob = whole.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(oa[i][k], ob[i][k]) for i in oa for k in oa[i] if torch.is_tensor(oa[i][k]))
    assert whole.state["step"] == resumed.state["step"] == 12


def test_existing_run_needs_resume_flag(squares, tmp_path):
    Trainer(cfg_of(squares, steps=3, eval_every=3), tmp_path / "r").fit(log=None)
    with pytest.raises(ConfigError, match="pass --resume"):
        Trainer(cfg_of(squares, steps=3, eval_every=3), tmp_path / "r").fit(log=None)


def test_missing_labels_are_masked_not_dropped(squares):
    manifest = Manifest.read(squares)
    tasks = resolve_tasks(cfg_of(squares).tasks, manifest)
    ds = ClipDataset(manifest, tasks, split="train", size=32)
    counts = ds.labelled_counts()
    assert counts["colour"] == len(ds) and 0 < counts["direction"] < len(ds)


def _copy_dataset(squares, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(squares.parent, root)
    return root / "manifest.csv"


def _edit_rows(manifest, fn):
    rows = list(csv.DictReader(open(manifest)))
    fn(rows)
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_unknown_label_names_the_row(squares, tmp_path):
    manifest = _copy_dataset(squares, tmp_path)
    cfg = square_config(manifest)
    cfg["tasks"][0]["classes"] = ["right", "left"]

    def bad(rows):
        rows[3]["direction"] = "upward"

    _edit_rows(manifest, bad)
    with pytest.raises(DataError, match=r"row 5 \(id 'clip003'\): label 'upward' of task 'direction'"):
        Trainer(from_dict(RunConfig, cfg), tmp_path / "run")


def test_corrupt_videos_are_skipped_listed_and_limited(squares, tmp_path):
    manifest = _copy_dataset(squares, tmp_path)
    root = manifest.parent
    (root / "videos" / "000.mp4").write_bytes(b"this is not a video")  # a text file with an .mp4 name
    data = (root / "videos" / "002.mp4").read_bytes()
    (root / "videos" / "002.mp4").write_bytes(data[: len(data) // 3])  # truncated
    (root / "videos" / "004.mp4").unlink()  # missing
    cfg = from_dict(RunConfig, square_config(manifest, steps=8, eval_every=8))
    cfg.data.max_bad_fraction = 0.2
    res = Trainer(cfg, tmp_path / "run").fit(log=None)
    listed = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    ids = {b["id"] for b in listed}
    assert {"clip000", "clip004"} <= ids and all(b["reason"] for b in listed)
    assert "video not found" in next(b["reason"] for b in listed if b["id"] == "clip004")
    assert res.steps == 8
    cfg.data.max_bad_fraction = 0.0
    with pytest.raises(TooManyBadSamples, match="unreadable"):
        Trainer(cfg, tmp_path / "run2").fit(log=None)


def test_inconsistent_hierarchy_is_reported(squares, tmp_path):
    manifest = _copy_dataset(squares, tmp_path)
    cfg = square_config(manifest)
    cfg["cross_terms"] = [{"kind": "hierarchy_consistency", "fine": "colour", "coarse": "direction"}]
    with pytest.raises(DataError, match="label hierarchy is not consistent"):
        Trainer(from_dict(RunConfig, cfg), tmp_path / "run")


def test_hierarchy_term_trains(squares, tmp_path):
    cfg = square_config(squares, steps=4, eval_every=4)
    cfg["tasks"] = [
        {"name": "tags", "kind": "multilabel"},
        {"name": "colour"},
        {"name": "speed", "kind": "regression"},
    ]
    cfg["tasks"][1]["role"] = "primary"
    cfg["cross_terms"] = [
        {
            "kind": "hierarchy_consistency",
            "fine": "colour",
            "coarse": "colour",
            "mapping": {"red": "red", "green": "green", "blue": "blue"},
        }
    ]
    res = Trainer(from_dict(RunConfig, cfg), tmp_path / "run").fit(log=None)
    assert res.steps == 4
    rec = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any("consistency:colour->colour" in r.get("loss", {}) for r in rec)


def test_single_task_is_the_same_model_with_one_task(squares, tmp_path):
    cfg = square_config(squares, steps=3, eval_every=3)
    cfg["tasks"] = [{"name": "direction"}]
    Trainer(from_dict(RunConfig, cfg), tmp_path / "stl").fit(log=None)
    model, tasks, _ = load_run(tmp_path / "stl")
    assert list(model.heads) == ["direction"] and [t.name for t in tasks] == ["direction"]


def test_sequence_encoder_takes_its_channel_count_from_the_data(tmp_path):
    """[T, C] inputs (IMU windows): no in_channels in the config; the run learns and reloads."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        y = i % 2
        x = rng.normal(size=(20, 5)).astype(np.float32)
        x[:, 2] += np.linspace(-2, 2, 20) * (1 if y else -1)  # the class is the sign of a trend
        np.save(tmp_path / f"s{i}.npy", x)
        rows.append(
            {
                "id": f"s{i}",
                "path": f"s{i}.npy",
                "split": ["train", "train", "val", "test"][i % 4],
                "trend": ["down", "up"][y],
            }
        )
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = from_dict(
        RunConfig,
        {
            "data": {"manifest": str(tmp_path / "manifest.csv"), "stream": "seq", "frames": 20},
            "model": {"encoder": "sequence", "encoder_args": {"width": 8}},
            "tasks": [{"name": "trend"}],
            "train": {"steps": 30, "batch_size": 8, "lr": 0.01, "eval_every": 10, "progress": False},
        },
    )
    Trainer(cfg, tmp_path / "run").fit(log=None)
    model, _, saved = load_run(tmp_path / "run")
    assert saved.model.encoder_args["in_channels"] == 5
    assert evaluate_run(tmp_path / "run", split="test")["metrics"]["trend"]["top1"] >= 0.9


def test_shuffled_labels_negative_control(squares):
    """args.shuffle_labels permutes a task's labels within each split: same counts, order broken, fixed."""
    m = Manifest.read(squares)
    cfgs = from_dict(RunConfig, square_config(squares)).tasks
    plain = ClipDataset(m, resolve_tasks(cfgs[:1], m), split="train", frames=8, size=32)
    cfgs[0].args = {"shuffle_labels": True}
    shuffled = [
        ClipDataset(m, resolve_tasks(cfgs[:1], m), split="train", frames=8, size=32) for _ in range(2)
    ]
    a = [int(lab["direction"][0]) for lab in plain.labels]
    b, c = ([int(lab["direction"][0]) for lab in ds.labels] for ds in shuffled)
    assert sorted(a) == sorted(b) and a != b
    assert b == c


def test_lr_schedules():
    from mtlhar.train import lr_factor

    def cfg(**train):
        return from_dict(
            RunConfig, {"tasks": [{"name": "a", "column": "a"}], "train": {"steps": 100, **train}}
        )

    wsd = cfg(schedule="wsd", warmup_steps=10, decay_fraction=0.2)
    assert lr_factor(wsd, 0) == pytest.approx(0.1)  # warming up
    assert [lr_factor(wsd, s) for s in (10, 50, 80)] == [1.0, 1.0, 1.0]  # stable until the last 20%
    assert lr_factor(wsd, 90) == pytest.approx(0.5)  # half-way through the cosine decay
    assert lr_factor(wsd, 100) == pytest.approx(0.0)
    cos = cfg(schedule="cosine")
    assert lr_factor(cos, 50) == pytest.approx(0.5) and lr_factor(cos, 0) == 1.0
    assert lr_factor(cfg(schedule="constant"), 99) == 1.0
    step = cfg(schedule="step", step_milestones=[30, 60], step_gamma=0.1)
    assert [lr_factor(step, s) for s in (0, 30, 60)] == pytest.approx([1.0, 0.1, 0.01])
    with pytest.raises(ConfigError, match=r"'train\.decay_fraction': got 0"):
        cfg(schedule="wsd", decay_fraction=0)


def test_datasets_of_a_process_share_decoded_clips(squares, tmp_path, monkeypatch):
    """Runs of a study decode each clip once: a second dataset over the same files reads from the shared
    store; a file rewritten in place is decoded again; samples are writable copies."""
    import mtlhar.data.dataset as D

    root = _copy_dataset(squares, tmp_path)
    manifest = Manifest.read(root)
    tasks = resolve_tasks(cfg_of(root).tasks, manifest)
    calls = []
    real = D.read_video
    monkeypatch.setattr(D, "read_video", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    D.release_decoded_clips()
    first = ClipDataset(manifest, tasks, split="train", size=32, cache=True)
    for i in range(len(first)):
        first[i]
    assert len(calls) == len(first)
    again = ClipDataset(manifest, tasks, split="train", size=32, cache=True, train=True, seed=3)
    x = again[0]["inputs"]["rgb"]
    x += 1  # writable, and the store is untouched
    assert len(calls) == len(first)
    path = manifest.resolve(manifest.rows[again.indices[0]]["path"])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # rewritten in place
    again[0]
    assert len(calls) == len(first) + 1
    uncached = ClipDataset(manifest, tasks, split="train", size=32, cache=False)
    uncached[0]
    assert len(calls) == len(first) + 2
    D.release_decoded_clips()
    assert D.DECODED.nbytes == 0


def test_temporal_args_from_the_config(squares, tmp_path):
    """A head's temporal module takes its options from `temporal_args`; unknown ones name the task and key,
    and the saved run rebuilds the same module."""
    cfg = cfg_of(squares, steps=2, eval_every=2, checkpoint_every=2)
    cfg.tasks[0].tap, cfg.tasks[0].temporal, cfg.tasks[0].temporal_args = (
        "frames",
        "subevents",
        {"filters": 3},
    )
    trainer = Trainer(cfg, tmp_path / "r")
    head = trainer.model.heads["direction"]
    assert head.temporal.n == 3 and head.mlp[-1].in_features == 3 * head.temporal.out_dim // 3
    trainer.fit(log=None)
    model, tasks, _ = load_run(tmp_path / "r")
    assert model.heads["direction"].temporal.n == 3
    bad = cfg_of(squares, steps=2)
    bad.tasks[0].tap, bad.tasks[0].temporal, bad.tasks[0].temporal_args = (
        "frames",
        "subevents",
        {"filtres": 3},
    )
    with pytest.raises(
        ConfigError,
        match=r"task 'direction': temporal_args: 'subevents' takes no argument 'filtres'.*filters",
    ):
        Trainer(bad, tmp_path / "bad")
