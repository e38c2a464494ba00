"""`predict` on a folder with bad and short videos: bad files are skipped and listed, short ones warned."""

import json

import numpy as np
import pytest

from conftest import make_square_dataset, moving_square, square_config, write_video
from mtlhar.cli import main
from mtlhar.config import RunConfig, from_dict
from mtlhar.predict import predict_path
from mtlhar.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained for 4 steps on 12 square clips."""
    manifest = make_square_dataset(tmp_path_factory.mktemp("data"), n=12)
    cfg = from_dict(RunConfig, square_config(manifest, steps=4, eval_every=2, checkpoint_every=2))
    out = tmp_path_factory.mktemp("run") / "run"
    train(cfg, out, log=None)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good 8-frame videos, a corrupt file, an empty file and a 1-frame video; the bad files sort
    first so that stopping at the first one keeps nothing."""
    d = tmp_path_factory.mktemp("videos")
    (d / "a_corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (d / "b_empty.mp4").write_bytes(b"")
    write_video(d / "c_good.mp4", moving_square(0, 0))
    write_video(d / "d_good.mp4", moving_square(1, 2))
    write_video(d / "e_one_frame.mp4", moving_square(0, 1)[:1])
    return d


def _by_name(results):
    return {r["file"].rsplit("/", 1)[-1]: r for r in results}


def test_bad_files_are_skipped_and_listed_short_ones_warned(run, folder):
    res = _by_name(predict_path(run, folder))
    assert sorted(res) == ["a_corrupt.mp4", "b_empty.mp4", "c_good.mp4", "d_good.mp4", "e_one_frame.mp4"]
    for name in ("c_good.mp4", "d_good.mp4"):
        r = res[name]
        assert r["predictions"]["direction"][0][0] in ("left", "right")
        assert r["frames_decoded"] == 8 and "warning" not in r and "error" not in r
    for name in ("a_corrupt.mp4", "b_empty.mp4"):
        r = res[name]
        assert str(folder / name) in r["error"] and "predictions" not in r
    assert "empty file" in res["b_empty.mp4"]["error"]
    one = res["e_one_frame.mp4"]
    assert one["frames_decoded"] == 1 and "direction" in one["predictions"]
    assert str(folder / "e_one_frame.mp4") in one["warning"] and "data.frames=8" in one["warning"]


def test_cli_json_lists_errors_and_warnings_exit_0(run, folder, capsys):
    assert main(["predict", str(run), str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    res = _by_name(json.loads(captured.out))
    assert {n for n, r in res.items() if "predictions" in r} == {
        "c_good.mp4",
        "d_good.mp4",
        "e_one_frame.mp4",
    }
    assert {n for n, r in res.items() if "error" in r} == {"a_corrupt.mp4", "b_empty.mp4"}
    err = captured.err.strip().splitlines()
    assert len(err) == 3  # one line per bad file, one for the short video
    assert sum("warning" in line and "e_one_frame.mp4" in line for line in err) == 1
    for name in ("a_corrupt.mp4", "b_empty.mp4"):
        assert sum("skipped" in line and str(folder / name) in line for line in err) == 1


def test_cli_text_output_keeps_the_good_files(run, folder, capsys):
    assert main(["predict", str(run), str(folder)]) == 0
    captured = capsys.readouterr()
    assert str(folder / "c_good.mp4") in captured.out and str(folder / "d_good.mp4") in captured.out
    assert "a_corrupt.mp4" not in captured.out and "a_corrupt.mp4" in captured.err


def test_cli_exits_2_only_when_nothing_could_be_predicted(run, folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a_corrupt.mp4", "b_empty.mp4"):
        (bad / name).write_bytes((folder / name).read_bytes())
    assert main(["predict", str(run), str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert all("error" in r for r in json.loads(captured.out))
    err = captured.err.strip().splitlines()
    assert len(err) == 3 and "none of the 2 video files could be predicted" in err[-1]
    assert str(bad / "a_corrupt.mp4") in err[0] and str(bad / "b_empty.mp4") in err[1]
    # a single bad file: its own error, one line
    assert main(["predict", str(run), str(bad / "b_empty.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad / "b_empty.mp4") in err[0] and "empty file" in err[0]


def test_short_clip_warning_counts_the_dense_span():
    from types import SimpleNamespace

    from mtlhar.predict import _short_clip_warning

    dense = SimpleNamespace(frames=8, stride=2, sampler="dense")
    assert "15 frames" in _short_clip_warning("v.mp4", 10, dense)  # 8 frames 2 apart need 15
    assert _short_clip_warning("v.mp4", 15, dense) is None
    uniform = SimpleNamespace(frames=8, stride=2, sampler="uniform")
    assert _short_clip_warning("v.mp4", 8, uniform) is None
    assert "only 3 frames decoded" in _short_clip_warning("v.mp4", 3, uniform)
