"""2D-per-frame encoders: taps, TSN averaging, the temporal shift, local torchvision weights."""

from __future__ import annotations

import pytest
import torch

from mtlhar.errors import DataError
from mtlhar.models import build_encoder
from mtlhar.models.frame2d import temporal_shift


def test_tsm_wraps_mobilenet_residual_blocks():
    enc = build_encoder("frame2d", arch="mobilenet_v3_small", tsm=True)
    assert len(enc.shifts) == sum(getattr(b, "use_res_connect", False) for b in enc.stages[0]) > 0


def test_temporal_shift_moves_channel_folds_in_time():
    x = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, 8, 1, 1).reshape(3, 8, 1, 1)  # frame t = t
    y = temporal_shift(x, frames=3, shift_div=4).view(3, 8)
    assert y[:, 0].tolist() == [0, 0, 1] and y[:, 1].tolist() == [0, 0, 1]  # from the previous frame
    assert y[:, 2].tolist() == [1, 2, 0] and y[:, 3].tolist() == [1, 2, 0]  # from the next frame
    assert y[:, 4:].tolist() == x.view(3, 8)[:, 4:].tolist()


@pytest.mark.parametrize("arch,dim,taps", [("resnet18", 512, 4), ("mobilenet_v3_small", 576, 1)])
def test_taps_and_tsn_average(arch, dim, taps):
    enc = build_encoder("frame2d", arch=arch).eval()
    x = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        out = enc(x)
    assert out["frames"].shape == (2, 3, dim) and sum(v[1] == "map" for v in enc.taps.values()) == taps
    torch.testing.assert_close(out["pooled"], out["frames"].mean(1))
    last = [k for k, v in enc.taps.items() if v[1] == "map"][-1]
    assert out[last].shape[:3] == (2, dim, 3)


def test_tsm_lets_frames_see_their_neighbours():
    arch = "resnet18"
    x = torch.randint(0, 256, (1, 3, 3, 32, 32), dtype=torch.uint8)
    x2 = x.clone()
    x2[:, :, 0] = 255 - x2[:, :, 0]  # change frame 0 only
    for tsm in (False, True):
        torch.manual_seed(0)
        enc = build_encoder("frame2d", arch=arch, tsm=tsm)  # train mode: batch statistics per frame set
        with torch.no_grad():
            a, b = enc(x)["frames"], enc(x2)["frames"]
        a, b = a / a.abs().amax(), b / a.abs().amax()
        if tsm:
            assert (a[:, 1] - b[:, 1]).abs().max() > 1e-3  # frame 1 sees frame 0
        else:
            assert len(enc.shifts) == 0


def test_tsm_is_per_frame_free_without_shift():
    torch.manual_seed(0)
    enc = build_encoder("frame2d", arch="resnet18").eval()
    x = torch.randint(0, 256, (1, 3, 3, 32, 32), dtype=torch.uint8)
    x2 = x.clone()
    x2[:, :, 0] = 255 - x2[:, :, 0]
    with torch.no_grad():
        a, b = enc(x)["frames"], enc(x2)["frames"]
    torch.testing.assert_close(a[:, 1:], b[:, 1:])


def test_local_torchvision_weights(tmp_path):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.mobilenet_v3_small()
    torch.save(net.state_dict(), tmp_path / "mnv3.pth")
    enc = build_encoder("frame2d", arch="mobilenet_v3_small", weights=str(tmp_path / "mnv3.pth"))
    assert torch.equal(enc.stages[0][0][0].weight, net.features[0][0].weight)
    (tmp_path / "other.pth").write_bytes(b"")
    with pytest.raises(DataError, match="other.pth"):
        build_encoder("frame2d", arch="mobilenet_v3_small", weights=str(tmp_path / "other.pth"))
