"""Converters write manifest paths that resolve, whatever the working directory and however relative
`root` and `--out` are (they used to be written relative to the working directory but read relative to
the manifest's folder: every sample 'not found')."""

from __future__ import annotations

import numpy as np

from conftest import moving_square, write_video
from mtlhar.cli import main
from mtlhar.data.formats import convert
from mtlhar.data.manifest import Manifest


def test_folder_conversion_with_relative_root_and_out(tmp_path, monkeypatch):
    for cls in ("left", "right"):
        for i in range(2):
            write_video(
                tmp_path / "raw" / cls / f"{cls}{i}.mp4", moving_square(0 if cls == "right" else 1, 0)
            )
    monkeypatch.chdir(tmp_path)
    manifest = convert("folder", "raw", "data/conv")
    m = Manifest.read(manifest)
    assert len(m.rows) == 4
    assert all(m.resolve(r["path"]).is_file() for r in m.rows)
    assert not any(r["path"].startswith("raw/") for r in m.rows)  # not relative to the working directory
    # read from elsewhere: the paths still resolve
    monkeypatch.chdir(tmp_path / "data")
    assert all(Manifest.read("conv/manifest.csv").resolve(r["path"]).is_file() for r in m.rows)


def test_timeseries_conversion_from_the_cli_writes_paths_relative_to_the_manifest(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(6, 3, 20)).astype(np.float32))
    (tmp_path / "y.txt").write_text("\n".join("ab"[i % 2] for i in range(6)) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "convert", "timeseries", "x.npy", "--out", "p6/ts", "--option", "labels=y.txt"]) == 0
    m = Manifest.read(tmp_path / "p6" / "ts" / "manifest.csv")
    paths = [m.resolve(r["path"]) for r in m.rows]
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    assert all(not r["path"].startswith("p6/") for r in m.rows)


def _series(tmp_path, n=40, groups=10):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(n, 2, 16)).astype(np.float32))
    lines = ["label,group"] + [f"{'abcd'[i % 4]},s{i % groups}" for i in range(n)]
    (tmp_path / "y.csv").write_text("\n".join(lines) + "\n")


def test_val_fraction_carves_a_group_aware_seeded_validation_split(tmp_path, monkeypatch):
    import json

    _series(tmp_path)
    monkeypatch.chdir(tmp_path)

    def run(out, **kw):
        return Manifest.read(convert("timeseries", "x.npy", out, labels="y.csv", split="train", **kw))

    a, b = run("a", val_fraction=0.2), run("b", val_fraction=0.2)
    assert [r["split"] for r in a.rows] == [r["split"] for r in b.rows]  # seeded
    val = [r for r in a.rows if r["split"] == "val"]
    train = [r for r in a.rows if r["split"] == "train"]
    assert 4 <= len(val) <= 12 and len(val) + len(train) == 40
    assert not {r["group"] for r in val} & {r["group"] for r in train}  # whole groups only
    stats = json.loads((tmp_path / "a" / "conversion.json").read_text())["stats"]
    assert (
        stats["val_fraction"] == 0.2
        and stats["val_rows"] == len(val)
        and stats["val_stratified_by"] == "label"
    )
    c = run("c", val_fraction=0.2, val_seed=5)
    assert [r["split"] for r in c.rows] != [r["split"] for r in a.rows]


def test_missing_val_split_error_says_how_to_make_one(tmp_path, monkeypatch):
    import pytest

    from mtlhar.errors import DataError

    _series(tmp_path)
    monkeypatch.chdir(tmp_path)
    convert("timeseries", "x.npy", "d", labels="y.csv", split="train")
    with pytest.raises(DataError, match="--val-fraction 0.1"):
        Manifest.read("d/manifest.csv").indices("val")
    with pytest.raises(DataError, match=r"expected a number in \(0, 1\)"):
        convert("timeseries", "x.npy", "e", labels="y.csv", split="train", val_fraction=1.5)


def test_val_fraction_from_the_cli(tmp_path, monkeypatch, capsys):
    _series(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["data", "convert", "timeseries", "x.npy", "--option", "labels=y.csv", "--option", "split=train"]
    assert main([*argv, "--out", "a", "--val-fraction", "0.2", "--val-seed", "3"]) == 0
    a = Manifest.read("a/manifest.csv")
    assert a.rows == Manifest.read(convert("timeseries", "x.npy", "b", labels="y.csv", split="train",
                                           val_fraction=0.2, val_seed=3)).rows  # fmt: skip
    assert {r["split"] for r in a.rows} == {"train", "val"}
    assert main([*argv, "--out", "c", "--val-fraction", "1.5"]) == 2
    assert "expected a number in (0, 1)" in capsys.readouterr().err
