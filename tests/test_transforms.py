"""Clip-consistent augmentation, flip label rules and multi-view testing."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import square_config
from mtlhar.config import RunConfig, from_dict
from mtlhar.data.dataset import ClipDataset, _Window, collate, resolve_tasks
from mtlhar.data.manifest import Manifest
from mtlhar.data.transforms import (
    apply_batch,
    apply_params,
    augment_clip,
    check_augment,
    crop_origin,
    flip_permutations,
    flip_targets,
    sample_batch_params,
)
from mtlhar.data.video import sample_indices
from mtlhar.errors import ConfigError
from mtlhar.evaluate import evaluate_run, predict_outputs
from mtlhar.train import Trainer

FULL = {"crop_scale": [0.4, 1.0], "flip": True, "rotate_deg": 15, "jitter": 0.4}


def _clip(frames=6, h=40, w=48, seed=0, same=False):
    g = torch.Generator().manual_seed(seed)
    if same:
        return torch.randint(0, 256, (3, 1, h, w), generator=g, dtype=torch.uint8).expand(3, frames, h, w)
    return torch.randint(0, 256, (3, frames, h, w), generator=g, dtype=torch.uint8)


def _tasks(squares, **args):
    """The square tasks with `args` added to the named tasks' configs: {task: {arg: value}}."""
    m = Manifest.read(squares)
    cfgs = from_dict(RunConfig, square_config(squares)).tasks
    for c in cfgs:
        c.args = {**c.args, **args.get(c.name, {})}
    return m, resolve_tasks(cfgs, m)


def test_every_frame_gets_the_same_parameters():
    aug = check_augment(FULL)
    clip = _clip(same=True)
    for seed in range(6):
        out, params = augment_clip(clip, np.random.default_rng(seed), aug, size=32)
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[:, t], out[:, 0]) for t in range(6)), params
        assert not torch.equal(out[:, 0], clip[:, 0, :32, :32])  # something was done


def test_same_seed_same_clip_and_batch_matches_single_clips():
    aug = check_augment(FULL)
    clip = _clip()
    a, pa = augment_clip(clip, np.random.default_rng(7), aug, size=32)
    b, pb = augment_clip(clip, np.random.default_rng(7), aug, size=32)
    assert pa == pb and torch.equal(a, b)
    draws = {augment_clip(clip, np.random.default_rng(s), aug, size=32)[1] for s in range(5)}
    assert len(draws) == 5
    batch = torch.stack([_clip(seed=1), _clip(seed=2)])
    params = sample_batch_params(np.random.default_rng(3), 2, 40, 48, aug)
    out = apply_batch(batch, params, size=32)
    assert torch.equal(out[1], apply_params(batch[1], params[1], size=32))


def test_flip_mirrors_the_clip():
    clip = _clip()
    out, params = augment_clip(clip, np.random.default_rng(0), check_augment({"flip": 1.0}))
    assert params.flip and torch.equal(out, clip.flip(-1))
    out, params = augment_clip(clip, np.random.default_rng(0), check_augment({"flip": False, "jitter": 0.0}))
    assert not params.flip and torch.equal(out, clip)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_augmentation_runs_on_the_gpu():
    aug = check_augment(FULL)
    batch = torch.stack([_clip(seed=1), _clip(seed=2)])
    params = sample_batch_params(np.random.default_rng(3), 2, 40, 48, aug)
    cpu = apply_batch(batch, params, size=32)
    gpu = apply_batch(batch.cuda(), params, size=32)
    assert gpu.is_cuda and (gpu.cpu().int() - cpu.int()).abs().float().mean() < 2


def test_flip_swaps_labels_only_for_the_declaring_task(squares):
    m, tasks = _tasks(squares, direction={"flip_swap": [["left", "right"]]})
    plain = ClipDataset(m, tasks, split="train", size=32, train=True, seed=3)
    flipped = ClipDataset(m, tasks, split="train", size=32, train=True, seed=3, augment={"flip": 1.0})
    for i in range(4):
        a, b = plain[i], flipped[i]
        assert torch.equal(b["inputs"]["rgb"], a["inputs"]["rgb"].flip(-1))  # really mirrored
        assert int(b["targets"]["direction"]) == 1 - int(a["targets"]["direction"])
        for name in ("colour", "tags", "speed"):  # no rule: labels kept
            assert torch.equal(b["targets"][name], a["targets"][name])
        assert all(torch.equal(b["mask"][k], a["mask"][k]) for k in a["mask"])


def test_flip_targets_of_a_batch_and_multilabel_rules(squares):
    _, tasks = _tasks(squares, tags={"flip_swap": [["left", "right"]]})
    perms = flip_permutations(tasks)
    assert set(perms) == {"tags"}
    tags = next(t for t in tasks if t.name == "tags")
    left, right, red = (tags.index[c] for c in ("left", "right", "red"))
    y = torch.zeros(2, len(tags.classes))
    y[:, left] = y[:, red] = 1
    out = flip_targets({"tags": y, "colour": torch.tensor([1, 2])}, torch.tensor([True, False]), perms)
    assert out["tags"][0, right] == 1 and out["tags"][0, left] == 0 and out["tags"][0, red] == 1
    assert torch.equal(out["tags"][1], y[1]) and torch.equal(out["colour"], torch.tensor([1, 2]))


def test_unknown_flip_class_names_the_task_and_class(squares):
    m, tasks = _tasks(squares, direction={"flip_swap": [["left", "wave_right"]]})
    with pytest.raises(ConfigError, match=r"task 'direction'.*unknown class 'wave_right'"):
        ClipDataset(m, tasks, split="train", size=32)
    _, tasks = _tasks(squares, speed={"flip_swap": [["a", "b"]]})
    with pytest.raises(ConfigError, match="task 'speed'.*classification"):
        flip_permutations(tasks)
    _, tasks = _tasks(squares, direction={"flip_swap": ["left", "right"]})
    with pytest.raises(ConfigError, match="pairs of class names"):
        flip_permutations(tasks)


@pytest.mark.parametrize(
    ("augment", "match"),
    [
        ({"flp": True}, r"'data.augment.flp'.*crop_scale, crop_ratio, flip, rotate_deg, jitter"),
        ({"crop_scale": [0.9, 0.5]}, r"'data.augment.crop_scale'.*0 < min <= max"),
        ({"crop_scale": 0.5}, r"'data.augment.crop_scale'.*\[min, max\] pair"),
        ({"flip": 2}, r"'data.augment.flip'.*\[0, 1\]"),
        ({"rotate_deg": -5}, r"'data.augment.rotate_deg'"),
        ({"jitter": {"hue": 0.1}}, r"'data.augment.jitter.hue'.*brightness, contrast, saturation"),
    ],
)
def test_augment_config_is_validated(squares, augment, match):
    cfg = square_config(squares)
    cfg["data"]["augment"] = augment
    with pytest.raises(ConfigError, match=match):
        from_dict(RunConfig, cfg)


def test_test_views_config_is_validated(squares):
    cfg = square_config(squares)
    cfg["data"].update(test_clips=0)
    with pytest.raises(ConfigError, match="'data.test_clips'.*>= 1"):
        from_dict(RunConfig, cfg)
    cfg["data"].update(test_clips=2, test_crops=3, augment={"flip": True})
    d = from_dict(RunConfig, cfg).data
    assert (d.test_clips, d.test_crops, d.augment) == (2, 3, {"flip": True})
    assert check_augment({}) is None and check_augment({"jitter": 0.1})["flip"] == 0.0


def test_fixed_views_positions():
    assert [crop_origin(i, 3, 24, 40, 24) for i in range(3)] == [(0, 0), (0, 8), (0, 16)]  # along width
    assert [crop_origin(i, 3, 40, 24, 24) for i in range(3)] == [(0, 0), (8, 0), (16, 0)]  # portrait
    assert [crop_origin(i, 5, 32, 32, 24) for i in range(5)] == [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]
    starts = [
        int(sample_indices(40, 4, mode="dense", stride=2, rng=_Window((j + 0.5) / 3))[0]) for j in range(3)
    ]
    assert starts == sorted(starts) and len(set(starts)) == 3 and starts[0] > 0
    windows = [sample_indices(40, 4, rng=_Window((j + 0.5) / 2)) for j in range(2)]
    assert (windows[0] < windows[1]).all()


class PositionModel(torch.nn.Module):
    """Outputs that depend on where the crop and the window are (means of image halves)."""

    def forward(self, inputs, mode="eval"):
        v = inputs["rgb"].float().mean(1) / 64  # [B, T, H, W]
        w, t, h = v.shape[-1] // 2, v.shape[1] // 2, v.shape[2] // 2
        f = torch.stack(
            [
                v[..., :w].mean((1, 2, 3)),
                v[..., w:].mean((1, 2, 3)),
                v[:, :t].mean((1, 2, 3)),
                v[:, t:].mean((1, 2, 3)),
                v[:, :, :h].mean((1, 2, 3)),
            ],
            1,
        )
        outs = {"direction": f[:, :2], "colour": f[:, 1:4], "tags": f - 0.5, "speed": f[:, 4:]}
        return SimpleNamespace(heads={k: SimpleNamespace(output=o) for k, o in outs.items()})


def test_multi_view_outputs_are_the_mean_of_the_views(squares):
    m, tasks = _tasks(squares)
    ds = ClipDataset(m, tasks, split="test", size=24, short_side=32, test_clips=2, test_crops=3)
    assert ds.views == 6
    model = PositionModel()
    # batches of 4 views: the 6 views of a clip straddle batches
    pred = predict_outputs(model, ds, device=torch.device("cpu"), batch_size=4)
    assert len(pred["ids"]) == len(ds) == len(pred["outputs"]["direction"])
    single = predict_outputs(
        model, ClipDataset(m, tasks, split="test", size=24, short_side=32), device=torch.device("cpu")
    )
    assert pred["ids"] == single["ids"]
    for name in pred["targets"]:
        assert np.array_equal(pred["targets"][name], single["targets"][name])
    for i in range(3):
        views = model(collate([ds.view_item(i, v) for v in range(6)])["inputs"]).heads
        assert views["speed"].output.std() > 0.001  # the views really differ
        probs = views["direction"].output.softmax(-1).mean(0)
        assert np.allclose(torch.tensor(pred["outputs"]["direction"][i]).softmax(-1), probs, atol=1e-5)
        assert np.allclose(pred["outputs"]["speed"][i], views["speed"].output.mean(0), atol=1e-5)
        sig = views["tags"].output.sigmoid().mean(0)
        assert np.allclose(torch.tensor(pred["outputs"]["tags"][i]).sigmoid(), sig, atol=1e-5)


def test_tiny_train_with_augmentation_and_multi_view_test(squares, tmp_path):
    cfg = square_config(squares, steps=6, eval_every=6, checkpoint_every=6)
    cfg["data"].update(
        augment={"crop_scale": [0.6, 1.0], "flip": True, "rotate_deg": 10, "jitter": 0.2},
        test_clips=2,
        test_crops=3,
    )
    cfg["tasks"][0]["args"] = {"flip_swap": [["left", "right"]]}
    trainer = Trainer(from_dict(RunConfig, cfg), tmp_path / "run")
    assert trainer.train_set.augment is not None and trainer.val_set.views == 1
    res = trainer.fit(log=None)
    assert res.steps == 6
    ev = evaluate_run(tmp_path / "run", split="test", device=torch.device("cpu"))
    assert ev["n"] == 8 and set(ev["metrics"]) == {"direction", "colour", "speed", "tags"}
    saved = np.load(tmp_path / "run" / "predictions_test.npz")
    assert saved["outputs/direction"].shape == (8, 2)
