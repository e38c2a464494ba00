"""Checkpoint import: torchvision, MMAction2 and PySlowFast layouts, partial loading, new classifiers."""

from __future__ import annotations

import re

import pytest
import torch
from torchvision.models.video import r3d_18

from mtlhar.errors import DataError
from mtlhar.models import build_encoder
from mtlhar.models.import_keys import load_checkpoint, map_keys, replace_classifier

# hand-written renames torchvision -> foreign layout, independent of the module's rules
TO_MMACTION2 = [
    (r"^stem\.0\.", "backbone.conv1.conv."),
    (r"^stem\.1\.", "backbone.conv1.bn."),
    (r"^(layer\d\.\d)\.(conv\d)\.0\.", r"backbone.\1.\2.conv."),
    (r"^(layer\d\.\d)\.(conv\d)\.1\.", r"backbone.\1.\2.bn."),
    (r"^(layer\d\.\d)\.downsample\.0\.", r"backbone.\1.downsample.conv."),
    (r"^(layer\d\.\d)\.downsample\.1\.", r"backbone.\1.downsample.bn."),
    (r"^fc\.", "cls_head.fc_cls."),
]
BRANCH = {
    "conv1.0": "branch2.a",
    "conv1.1": "branch2.a_bn",
    "conv2.0": "branch2.b",
    "conv2.1": "branch2.b_bn",
}
BRANCH.update({"downsample.0": "branch1", "downsample.1": "branch1_bn"})


def to_pyslowfast(key: str) -> str:
    key = key.replace("stem.0.", "s1.pathway0_stem.conv.").replace("stem.1.", "s1.pathway0_stem.bn.")
    key = key.replace("fc.", "head.projection.")
    m = re.match(r"layer(\d)\.(\d)\.(conv\d\.\d|downsample\.\d)\.(.*)", key)
    if m:
        key = f"s{int(m.group(1)) + 1}.pathway0_res{m.group(2)}.{BRANCH[m.group(3)]}.{m.group(4)}"
    return key


def foreign(state, layout):
    out = {}
    for k, v in state.items():
        if layout == "mmaction2":
            for p, r in TO_MMACTION2:
                k = re.sub(p, r, k)
        else:
            k = to_pyslowfast(k)
        out[k] = v.clone()
    return out


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return r3d_18(num_classes=400).state_dict()


def test_documented_examples():
    mapped, _ = map_keys({"backbone.layer2.0.downsample.conv.weight": torch.zeros(1)}, "mmaction2")
    assert list(mapped) == ["layer2.0.downsample.0.weight"]
    mapped, _ = map_keys({"s3.pathway0_res1.branch2.b_bn.running_mean": torch.zeros(1)}, "pyslowfast")
    assert list(mapped) == ["layer2.1.conv2.1.running_mean"]


@pytest.mark.parametrize("layout", ["mmaction2", "pyslowfast"])
def test_foreign_layouts_load_completely_into_torchvision_and_the_encoder(source, layout, tmp_path):
    if layout == "mmaction2":  # through a file, as MMAction2 saves it
        path = tmp_path / "mmaction2.pth"
        torch.save({"state_dict": foreign(source, layout), "meta": {"epoch": 3}}, path)
    else:  # as PySlowFast saves it, already read
        path = {"model_state": foreign(source, layout), "epoch": 3}
    net = r3d_18(num_classes=400)
    report = load_checkpoint(net, path, layout=layout, strict=True)
    assert report.complete and not report.dropped
    for k, v in net.state_dict().items():
        assert torch.equal(v, source[k]), k
    enc = build_encoder("r3d_18")  # no classifier: heads replace it
    report = load_checkpoint(enc, path, layout=layout, strict=True)
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"]
    assert torch.equal(enc.state_dict()["layer3.1.conv2.0.weight"], source["layer3.1.conv2.0.weight"])


def test_torchvision_layout_with_ddp_prefix(source):
    net = r3d_18(num_classes=400)
    report = load_checkpoint(net, {"module." + k: v for k, v in source.items()}, strict=True)
    assert report.complete and torch.equal(net.state_dict()["stem.0.weight"], source["stem.0.weight"])


def test_partial_loading_reports_missing_unexpected_and_shapes(source):
    state = foreign(source, "mmaction2")
    del state["backbone.layer4.1.conv2.bn.weight"]
    state["backbone.layer9.0.conv1.conv.weight"] = torch.zeros(1)
    state["backbone.extra_thing"] = torch.zeros(1)
    state["cls_head.fc_cls.weight"] = torch.zeros(10, 512)
    net = r3d_18(num_classes=400)
    report = load_checkpoint(net, {"state_dict": state}, layout="mmaction2")
    assert report.missing == ["fc.weight", "layer4.1.conv2.1.weight"]
    assert report.unexpected == ["layer9.0.conv1.0.weight"]
    assert report.unmapped == ["backbone.extra_thing"]
    assert report.shape_mismatch == ["fc.weight: (10, 512) vs model (400, 512)"]
    assert torch.equal(net.state_dict()["layer1.0.conv1.0.weight"], source["layer1.0.conv1.0.weight"])
    with pytest.raises(DataError, match=r"<state dict> \[mmaction2\]: .*1 unexpected"):
        load_checkpoint(net, state, layout="mmaction2", strict=True)


def test_replace_classifier_for_a_new_label_space(source):
    net = r3d_18(num_classes=400)
    load_checkpoint(net, source, strict=True)
    replace_classifier(net, 7)
    assert net(torch.randn(1, 3, 4, 32, 32)).shape == (1, 7)
    assert torch.equal(net.state_dict()["stem.0.weight"], source["stem.0.weight"])


def test_unreadable_checkpoint_names_the_file(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.pth: the weights file is truncated or corrupt"):
        load_checkpoint(r3d_18(), tmp_path / "bad.pth")
