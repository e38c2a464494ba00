import pytest
import torch

from mtlhar.config import TaskConfig
from mtlhar.errors import ConfigError
from mtlhar.models import MultiTaskModel, build_encoder
from mtlhar.models.temporal import MaxPool, MeanPool
from mtlhar.tasks import build_task


def _tasks(**kw):
    return [
        build_task(TaskConfig(name="a", **kw), ["x", "y", "z"]),
        build_task(TaskConfig(name="b"), ["p", "q"]),
    ]


@pytest.mark.parametrize("name", ["small3d", "r3d_18", "r2plus1d_18", "mc3_18"])
def test_video_encoders_return_declared_taps(name):
    enc = build_encoder(name)
    x = torch.randint(0, 255, (2, 3, 4, 32, 32), dtype=torch.uint8)
    taps = enc(x)
    assert set(taps) == set(enc.taps)
    for tap, (dim, layout) in enc.taps.items():
        t = taps[tap]
        assert {"map": 5, "sequence": 3, "vector": 2}[layout] == t.ndim
        assert t.shape[1 if layout != "sequence" else 2] == dim


def test_heads_pick_their_tap_and_return_outputs():
    enc = build_encoder("small3d", width=4)
    model = MultiTaskModel(enc, _tasks(tap="stage3", temporal="max"))
    out = model({"rgb": torch.randint(0, 255, (2, 3, 4, 32, 32), dtype=torch.uint8)})
    assert out.heads["a"].output.shape == (2, 3) and out.heads["b"].output.shape == (2, 2)
    assert out.heads["a"].features.shape == (2, enc.taps["stage3"][0])
    assert out.shared.shape == (2, enc.out_dim)
    with pytest.raises(ConfigError, match="tap 'stage9' does not exist"):
        MultiTaskModel(enc, _tasks(tap="stage9"))


def test_sequence_encoder_for_imu_windows():
    enc = build_encoder("sequence", in_channels=6, width=8)
    model = MultiTaskModel(enc, _tasks(tap="frames"))
    out = model({"seq": torch.randn(3, 50, 6)})
    assert out.heads["a"].output.shape == (3, 3)


def test_temporal_modules_respect_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    valid = torch.tensor([[True, True, False]])
    assert MeanPool()(x, valid).item() == 2.0 and MaxPool()(x, valid).item() == 3.0
    assert MeanPool()(x).item() == pytest.approx(104 / 3)


def test_unknown_encoder_and_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="not an encoder"):
        build_encoder("resnet9000")
    from mtlhar.errors import DataError

    with pytest.raises(DataError, match="weights file not found"):
        build_encoder("r3d_18", weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"nonsense.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="do not match the architecture"):
        build_encoder("r3d_18", weights=str(bad))


def test_local_torchvision_weights_load(tmp_path):
    from torchvision.models.video import r3d_18

    ref = r3d_18(weights=None)
    path = tmp_path / "r3d.pth"
    torch.save(ref.state_dict(), path)
    enc = build_encoder("r3d_18", weights=str(path))
    assert torch.equal(enc.layer4[0].conv1[0].weight, ref.layer4[0].conv1[0].weight)


def test_small3d_rgb_difference_input_sees_motion_only_in_its_extra_channels():
    """`rgb_diff`: the stem's extra input channels carry frame differences: on a static clip they are zero
    (their weights do not matter); on a moving clip they do. `spatial_pool: max` takes the spatial max."""
    torch.manual_seed(0)
    enc = build_encoder("small3d", width=4, rgb_diff=True, spatial_pool="max").eval()
    stem = enc.stages[0][0]
    assert stem.in_channels == 6
    static = torch.randint(0, 255, (2, 3, 1, 32, 32), dtype=torch.uint8).repeat(1, 1, 8, 1, 1)
    moving = torch.randint(0, 255, (2, 3, 8, 32, 32), dtype=torch.uint8)
    before = [enc(x)["pooled"] for x in (static, moving)]
    with torch.no_grad():
        stem.weight[:, 3:] += 1.0  # only the difference channels' weights
    after = [enc(x)["pooled"] for x in (static, moving)]
    assert torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])
    out = enc(moving)
    last = out["stage4"]
    assert torch.equal(out["frames"], last.amax(dim=(3, 4)).transpose(1, 2))
