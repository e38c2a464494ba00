"""Fault injection: poisoned checkpoints, divergence, kill-and-resume, changed configs, run folders,
unreadable validation clips and unlabelled primary tasks. Each test was seen to fail on the code before
the fix it guards."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import square_config, whole_and_resumed
from mtlhar import checkpoint
from mtlhar.cli import main
from mtlhar.config import load_config
from mtlhar.errors import ConfigError, DataError, Diverged
from mtlhar.train import Trainer

MARKER = "mtlhar-poison-ran"


class _Payload:
    """Unpickling this calls os.system: what an attacker puts into a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _poison(path: Path, marker: Path) -> None:
    """Rewrite a real checkpoint with one extra entry whose unpickling runs a shell command."""
    ck = torch.load(path, weights_only=True)
    ck = {**ck, "extra": _Payload(marker)} if isinstance(ck, dict) else {"x": ck, "extra": _Payload(marker)}
    torch.save(ck, path)


def _cfg(manifest, **train):
    return load_config(base=square_config(manifest, **train))


@pytest.fixture(scope="module")
def finished_run(squares, tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "run"
    cfg = square_config(squares, steps=4, eval_every=2, checkpoint_every=2)
    cfg["tasks"] = [{"name": "direction"}, {"name": "colour", "role": "auxiliary"}]
    Trainer(load_config(base=cfg), run).fit(log=None)
    return run


def _copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


# ------------------------------------------------------------------------------------------ security
def test_checkpoints_hold_only_weights_only_loadable_data(finished_run):
    for name in ("best.pt", "last.pt"):
        ck = torch.load(finished_run / "checkpoints" / name, weights_only=True)  # raises on any object
        assert "model" in ck
    rng = torch.load(finished_run / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert torch.is_tensor(rng["numpy"]["keys"]) and torch.is_tensor(rng["python"]["state"])


@pytest.mark.parametrize("command", ["eval", "predict", "transfer", "resume"])
def test_poisoned_checkpoint_is_refused_by_every_command(finished_run, squares, tmp_path, capsys, command):
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / MARKER
    which = "last.pt" if command == "resume" else "best.pt"
    _poison(run / "checkpoints" / which, marker)
    if command == "eval":
        argv = ["eval", str(run)]
    elif command == "predict":
        argv = ["predict", str(run), str(squares.parent / "videos" / "001.mp4")]
    elif command == "transfer":
        target = tmp_path / "target.yaml"
        target.write_text(yaml.safe_dump({"data": {"manifest": str(squares)}, "tasks": [{"name": "colour"}]}))
        argv = ["transfer", str(run), "--data", str(target), "--out", str(tmp_path / "t")]
    else:
        cfg = tmp_path / "c.yaml"
        cfg.write_text((run / "config.yaml").read_text())
        argv = ["train", str(cfg), "--out", str(run), "--resume"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and which in err[0], err
    assert not marker.exists(), "the payload ran"


def test_poisoned_feature_cache_and_weights_files_are_refused(finished_run, squares, tmp_path):
    import mtlhar.transfer as T
    from mtlhar.models.import_keys import read_checkpoint

    out = tmp_path / "probe"
    target = load_config(
        base={"data": {"manifest": str(squares), "frames": 8, "size": 32}, "tasks": [{"name": "colour"}]}
    )
    T.transfer(finished_run, target, probe="linear", out=out, epochs=1, log=None)
    cache = sorted((out / "features").glob("*.pt"))[0]
    marker = tmp_path / MARKER
    _poison(cache, marker)
    with pytest.raises(DataError, match="refused"):
        T.transfer(finished_run, target, probe="linear", out=out, epochs=1, log=None)
    weights = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(1), "meta": _Payload(marker)}, weights)
    with pytest.raises(DataError, match="refused"):
        read_checkpoint(weights)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_checkpoint_is_one_line_at_eval_and_resume(finished_run, tmp_path, capsys, damage):
    run = _copy_run(finished_run, tmp_path)
    for name in ("best.pt", "last.pt"):
        path = run / "checkpoints" / name
        data = path.read_bytes()
        path.write_bytes(
            {"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(300)}[damage]
        )
    cfg = tmp_path / "c.yaml"
    cfg.write_text((run / "config.yaml").read_text())
    for argv in (["eval", str(run)], ["train", str(cfg), "--out", str(run), "--resume"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "checkpoints" in err[0] and "Traceback" not in err[0], err


# ------------------------------------------------------------------------------------------ divergence
def test_a_diverging_run_stops_naming_the_step_and_keeps_finite_checkpoints(squares, tmp_path):
    cfg = _cfg(squares, steps=12, eval_every=2, checkpoint_every=1, lr=1e6, amp="off")
    cfg.train.max_nonfinite_steps = 2
    run = tmp_path / "run"
    with pytest.raises(Diverged, match=r"step \d+.*(loss|gradient)") as info:
        Trainer(cfg, run).fit(log=None)
    assert "task" in str(info.value) or "gradient" in str(info.value)
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            state = torch.load(path, weights_only=True)["model"]
            assert checkpoint.first_nonfinite(state) is None, name


def test_one_non_finite_step_is_skipped_and_the_run_goes_on(squares, tmp_path, monkeypatch):
    cfg = _cfg(squares, steps=6, eval_every=3, amp="off")
    trainer = Trainer(cfg, tmp_path / "run")
    original = trainer.compute_losses

    def poisoned(batch, *args):
        losses, present, cross, out = original(batch, *args)
        if trainer.state["step"] == 2:  # one bad step: the loss of one task is NaN
            losses["colour"] = losses["colour"] * float("nan")
        return losses, present, cross, out

    monkeypatch.setattr(trainer, "compute_losses", poisoned)
    before = {}

    def snap(step):
        # parameters, not BatchNorm's running statistics (the forward pass of a skipped step updates them)
        if step == 2:
            before.update({k: v.detach().clone() for k, v in trainer.model.named_parameters()})
        if step == 3:
            assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())
            before["checked"] = True

    res = trainer.fit(log=None, on_step=snap)
    assert res.steps == 6 and before.get("checked")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["step"] for s in summary["skipped_steps"]] == [3] and "colour" in summary["skipped_steps"][0][
        "reason"
    ]
    assert (
        checkpoint.first_nonfinite(torch.load(tmp_path / "run" / "checkpoints" / "last.pt")["model"]) is None
    )


def test_non_finite_outputs_give_a_clear_error_not_a_sklearn_traceback():
    import numpy as np

    from mtlhar.evaluate import metrics_from_outputs
    from mtlhar.tasks import Task

    t = Task(name="a", kind="classification", column="a", classes=["x", "y"], metrics=["top1"])
    pred = {
        "outputs": {"a": np.array([[0.0, 1.0], [np.nan, 0.0]], np.float32)},
        "targets": {"a": np.array([0, 1])},
        "masks": {"a": np.array([True, True])},
        "ids": ["c0", "c1"],
    }
    with pytest.raises(DataError, match=r"task 'a'.*1 of 2 clips of split 'val'.*first: c1"):
        metrics_from_outputs(pred, [t], split="val")


# ------------------------------------------------------------------------------------------ resume
RESUME_MATRIX = {
    "dropout": {"tasks.0.dropout": 0.5, "tasks.0.hidden": 32},
    "augmentation": {
        "data.augment": {"flip": True, "crop_scale": [0.5, 1.0], "jitter": 0.3, "rotate_deg": 10}
    },
    "balanced_sampler": {"train.sampler": "balanced", "train.balance_task": "colour"},
    "rlw": {"balancer.name": "rlw"},
    "pcgrad": {"balancer.name": "pcgrad"},
    "accumulate": {"train.accumulate": 2, "train.batch_size": 4},
    "amp_off": {"train.amp": "off", "tasks.0.dropout": 0.3, "tasks.0.hidden": 16},
    "amp_bf16": {"train.amp": "on", "tasks.0.dropout": 0.3, "tasks.0.hidden": 16},
}


@pytest.mark.parametrize("case", list(RESUME_MATRIX))
def test_kill_and_resume_is_bitwise_identical(squares, tmp_path, case):
    from mtlhar.config import set_key

    raw = square_config(squares)
    for key, value in RESUME_MATRIX[case].items():
        set_key(raw, key, value)

    whole, resumed = whole_and_resumed(lambda d: Trainer(load_config(base=raw), d), tmp_path, kill_at=8)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)}/{len(a)} model tensors differ, e.g. {differ[:3]}"
    oa, ob = whole.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(oa[i][k], ob[i][k]) for i in oa for k in oa[i] if torch.is_tensor(oa[i][k]))
    assert whole.balancer.state_dict().keys() == resumed.balancer.state_dict().keys()


def test_metrics_log_has_every_step_once_after_a_resume(squares, tmp_path):
    whole, resumed = whole_and_resumed(lambda d: Trainer(_cfg(squares), d), tmp_path, kill_at=8)

    def steps(run):
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in recs if r["split"] == "train"], [
            r["step"] for r in recs if r["split"] == "val"
        ]

    assert steps(tmp_path / "b") == steps(tmp_path / "a") == (list(range(1, 13)), [6, 12])


def test_resume_refuses_a_changed_config_unless_allowed(squares, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(_cfg(squares, steps=4, eval_every=4, checkpoint_every=2), run).fit(log=None)
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.01 -> 0\.02.*--allow-change train\.lr"):
        Trainer(_cfg(squares, steps=4, eval_every=4, checkpoint_every=2, lr=0.02), run).fit(
            resume=True, log=None
        )
    raw = square_config(squares, steps=4, eval_every=4, checkpoint_every=2)
    raw["tasks"][1]["column"] = "direction"  # the task now reads another column
    raw["tasks"][1]["name"] = "colour"
    with pytest.raises(ConfigError, match=r"tasks\.1\.column"):
        Trainer(load_config(base=raw), run).fit(resume=True, log=None)
    raw = square_config(squares, steps=4, eval_every=4, checkpoint_every=2)
    raw["model"]["encoder_args"]["width"] = 8  # another architecture: refused before any size mismatch
    with pytest.raises(ConfigError, match=r"model\.encoder_args\.width: 4 -> 8"):
        Trainer(load_config(base=raw), run).fit(resume=True, log=None)
    config_before = (run / "config.yaml").read_text()
    assert "lr: 0.02" not in config_before
    res = Trainer(_cfg(squares, steps=8, eval_every=4, checkpoint_every=2), run).fit(
        resume=True, log=None, allow_changes=["train.steps"]
    )
    assert res.steps == 8
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "resume" and r["changed"] == {"train.steps": [4, 8]} for r in recs)
    # from the CLI
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(square_config(squares, steps=8, eval_every=4, checkpoint_every=2, lr=0.5)))
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 2
    assert "--allow-change train.lr" in capsys.readouterr().err


def test_a_folder_that_is_not_a_run_is_never_written_into(squares, tmp_path):
    data_folder = tmp_path / "dataset"
    data_folder.mkdir()
    (data_folder / "manifest.csv").write_text("id,path\n")
    with pytest.raises(ConfigError, match="not empty and is not an mtlhar run"):
        Trainer(_cfg(squares, steps=2), data_folder).fit(log=None)
    assert sorted(p.name for p in data_folder.iterdir()) == ["manifest.csv"]
    run = tmp_path / "run"
    Trainer(_cfg(squares, steps=2, eval_every=2), run).fit(log=None)
    (run / "checkpoints" / "last.pt").unlink()  # a finished run whose last.pt was deleted
    summary = (run / "summary.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(_cfg(squares, steps=2, eval_every=2), run).fit(log=None)
    assert (run / "summary.json").read_text() == summary
    Trainer(_cfg(squares, steps=2, eval_every=2), tmp_path / "empty").fit(log=None)  # a new folder is fine


# ------------------------------------------------------------------------------------------ data
def _copy_dataset(squares, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(squares.parent, root)
    return root / "manifest.csv"


def _rows(manifest: Path) -> list[dict]:
    return list(csv.DictReader(open(manifest)))


def _write_rows(manifest: Path, rows: list[dict]) -> None:
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_unreadable_validation_clips_are_listed_and_none_readable_stops_before_training(
    squares, tmp_path, capsys
):
    manifest = _copy_dataset(squares, tmp_path)
    val = [r for r in _rows(manifest) if r["split"] == "val"]
    (manifest.parent / val[0]["path"]).write_bytes(b"not a video")
    cfg = _cfg(manifest, steps=4, eval_every=2)
    cfg.data.max_bad_fraction = 0.5
    Trainer(cfg, tmp_path / "run").fit(log=None)
    listed = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    assert [(b["id"], b["split"]) for b in listed] == [(val[0]["id"], "val")]
    test = [r for r in _rows(manifest) if r["split"] == "test"]
    (manifest.parent / test[0]["path"]).write_bytes(b"")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "1 unreadable clip(s) of split 'test' skipped" in captured.err and test[0]["id"] in captured.err
    listed = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    assert {(b["id"], b["split"]) for b in listed} == {(val[0]["id"], "val"), (test[0]["id"], "test")}
    for r in val:
        (manifest.parent / r["path"]).write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"split 'val': none of its \d+ samples can be read"):
        Trainer(_cfg(manifest, steps=4, eval_every=2), tmp_path / "run2").fit(log=None)
    assert not (tmp_path / "run2").exists()


def test_a_primary_task_without_training_labels_is_an_error(squares, tmp_path):
    manifest = _copy_dataset(squares, tmp_path)
    rows = _rows(manifest)
    for r in rows:
        if r["split"] == "train":
            r["direction"] = ""
    _write_rows(manifest, rows)
    with pytest.raises(DataError, match=r"primary task 'direction': no clip of split 'train' has a label"):
        Trainer(_cfg(manifest, steps=2), tmp_path / "run")


def test_a_class_without_training_clips_is_announced(squares, tmp_path, capsys):
    manifest = _copy_dataset(squares, tmp_path)
    rows = _rows(manifest)
    for r in rows:
        if r["split"] == "test" and r["colour"] == "blue":
            r["colour"] = "purple"  # only in the test split
    _write_rows(manifest, rows)
    trainer = Trainer(_cfg(manifest, steps=2, eval_every=2), tmp_path / "run")
    assert "purple" in capsys.readouterr().out
    trainer.fit(log=None)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["classes_without_training_clips"] == {"colour": ["purple"]}


def test_a_pyskl_pickle_that_would_run_code_is_refused(tmp_path):
    import pickle

    import numpy as np

    from mtlhar.data.formats import read

    marker = tmp_path / MARKER
    good = {"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": []}
    good["annotations"].append(
        {"frame_dir": "S001C001P001R001A001", "label": 0, "keypoint": np.zeros((1, 4, 25, 3), np.float16)}
    )
    with open(tmp_path / "ok.pkl", "wb") as f:
        pickle.dump(good, f)
    read("ntu", tmp_path / "ok.pkl", out=tmp_path / "out")  # arrays and plain data: read
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump({**good, "extra": _Payload(marker)}, f)
    with pytest.raises(DataError, match=r"bad.pkl: refused.*posix.system|bad.pkl: refused"):
        read("ntu", tmp_path / "bad.pkl", out=tmp_path / "out2")
    assert not marker.exists()
