"""`mtlhar predict RUN INPUT` for every input a run trains on: [T, C] series (.npy / .npz / .csv) and
feature stores (feature arrays, or videos through the store's extractor)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mtlhar.cli import main
from mtlhar.config import load_config
from mtlhar.predict import predict_path
from mtlhar.train import Trainer


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    """A sequence run: the class of a [20, 5] series is the sign of a trend in channel 2."""
    root = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        y = i % 2
        x = rng.normal(size=(20, 5)).astype(np.float32)
        x[:, 2] += np.linspace(-3, 3, 20) * (1 if y else -1)
        np.save(root / f"s{i}.npy", x)
        rows.append({"id": f"s{i}", "path": f"s{i}.npy", "split": ["train", "train", "val", "test"][i % 4],
                     "trend": ["down", "up"][y]})  # fmt: skip
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = load_config(base={
        "data": {"manifest": str(root / "manifest.csv"), "stream": "seq", "frames": 20},
        "model": {"encoder": "sequence", "encoder_args": {"width": 8}},
        "tasks": [{"name": "trend"}],
        "train": {"steps": 40, "batch_size": 8, "lr": 0.01, "eval_every": 20, "progress": False},
    })  # fmt: skip
    Trainer(cfg, root / "run").fit(log=None)
    return root


def test_a_sequence_run_predicts_npy_npz_and_csv_series(series_run, tmp_path):
    x = np.load(series_run / "s1.npy")  # an "up" series
    np.savez(tmp_path / "a.npz", x=x)
    np.savetxt(tmp_path / "b.csv", x, delimiter=",", header="ax,ay,az,gx,gy", comments="")
    np.save(tmp_path / "c.npy", x)
    (tmp_path / "d.npy").write_bytes(b"not an array")
    res = predict_path(series_run / "run", tmp_path)
    by_file = {r["file"].rsplit("/", 1)[-1]: r for r in res}
    assert set(by_file) == {"a.npz", "b.csv", "c.npy", "d.npy"}
    tops = {k: by_file[k]["predictions"]["trend"][0] for k in ("a.npz", "b.csv", "c.npy")}
    assert tops["a.npz"][0] == "up"
    assert (
        tops["a.npz"] == pytest.approx(tops["b.csv"], abs=1e-5) == tops["c.npy"]
    )  # same series, same output
    assert "d.npy" in by_file["d.npy"]["error"]
    # the same output as evaluation gives for that clip
    from mtlhar.evaluate import evaluate_run, load_predictions

    evaluate_run(series_run / "run", split="train")
    pred = load_predictions(series_run / "run" / "predictions_train.npz")
    p = torch.softmax(torch.from_numpy(pred["outputs"]["trend"][pred["ids"].index("s1")]), -1)
    assert float(p.max()) == pytest.approx(tops["c.npy"][1], abs=1e-4)


def test_predict_cli_on_a_series_and_a_bad_csv(series_run, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("1,2,3,4,5\n1,2,x,4,5\n")
    assert main(["predict", str(series_run / "run"), str(tmp_path / "bad.csv"), "--json"]) == 2
    assert "bad.csv" in capsys.readouterr().err
    assert main(["predict", str(series_run / "run"), str(series_run / "s0.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["predictions"]["trend"][0][0] == "down"


def test_a_features_run_predicts_arrays_and_videos_through_the_stores_extractor(squares, tmp_path):
    from torchvision.models.video import r3d_18

    from conftest import square_config
    from mtlhar.features import array_name, extract_features

    torch.manual_seed(0)
    weights = tmp_path / "r3d.pt"
    torch.save(r3d_18().state_dict(), weights)
    args = {"weights": str(weights)}
    extract_features(
        squares, tmp_path / "f", encoder="r3d_18", encoder_args=args, window=4, stride=4, size=32
    )
    cfg = square_config(tmp_path / "f" / "manifest.csv", steps=4, eval_every=4)
    cfg["data"].update(stream="features", frames=2)
    cfg["model"] = {"encoder": "features", "encoder_args": {"dim": 512}}
    cfg["tasks"] = [{"name": "direction"}, {"name": "colour", "role": "auxiliary"}]
    Trainer(load_config(base=cfg), tmp_path / "run").fit(log=None)
    video = squares.parent / "videos" / "007.mp4"
    array = tmp_path / "f" / "arrays" / array_name("clip007")
    from_video, from_array = predict_path(tmp_path / "run", video), predict_path(tmp_path / "run", array)
    for task in ("direction", "colour"):
        (va, vp), (aa, ap) = from_video[0]["predictions"][task][0], from_array[0]["predictions"][task][0]
        assert va == aa and vp == pytest.approx(ap, abs=1e-4)
    # a store whose extractor was randomly initialised cannot be rebuilt for a new video: said so
    meta = tmp_path / "f" / "features.json"
    settings = json.loads(meta.read_text())
    meta.write_text(json.dumps({**settings, "encoder_args": {}}))
    res = predict_path(tmp_path / "run", video)
    assert "randomly initialised" in res[0]["error"]
