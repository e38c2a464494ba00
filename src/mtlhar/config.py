"""Typed run configuration loaded from YAML.

The YAML keys map one-to-one onto the dataclass fields below (and those onto constructor arguments).
Every error names the offending key, the value given and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError


@dataclass
class TaskConfig:
    """One task of an experiment. See `mtlhar.tasks.Task` for the meaning of each field."""

    name: str
    kind: str = "classification"  # a name in mtlhar.kinds.KINDS (checked through RANGES)
    column: str | None = None
    num_classes: int | None = None
    classes: list[str] | None = None
    loss: str | None = None
    metrics: list[str] | None = None
    main_metric: str | None = None
    role: Literal["primary", "auxiliary"] = "primary"
    weight: float = 1.0
    parent: str | None = None
    tap: str = "pooled"
    temporal: str = "mean"  # an alias in mtlhar.models.temporal.TEMPORAL (checked through RANGES)
    temporal_args: dict[str, Any] = field(default_factory=dict)  # e.g. {filters: 8} for subevents
    hidden: int = 0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    separator: str = "|"
    args: dict[str, Any] = field(default_factory=dict)  # kind-specific options (caption, hierarchy, beta)
    logit_adjust: float | None = None  # tau of the logit-adjusted loss (classification; training loss only)


@dataclass
class DataConfig:
    manifest: str | None = None
    root: str | None = None
    synth: dict[str, Any] | None = None
    stream: str = "rgb"
    frames: int = 8
    size: int = 64
    short_side: int | None = None  # resize the short side to this, then crop `size` (None: to `size`)
    train_split: str = "train"
    val_split: str = "val"
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    sampler: Literal["uniform", "dense"] = "uniform"
    stride: int = 1
    num_workers: int = 0
    cache: bool = True
    frame_cache: str | None = (
        None  # a folder built by `mtlhar data cache` (JPEG frames; read instead of decoding)
    )
    max_bad_fraction: float = 0.05
    # video decoder for `stream: rgb`: pyav (default, FFmpeg inside the wheel) or torchcodec (needs system
    # FFmpeg); None: $MTLHAR_VIDEO_BACKEND, else pyav
    decoder: str | None = None
    # frame-cache JPEGs of training clips decoded in the loader workers ("worker") or per batch on the
    # training device ("device": one decode_jpeg call per batch, nvjpeg on CUDA)
    jpeg_decode: Literal["worker", "device"] = "worker"
    # training-clip augmentation (`mtlhar.data.transforms.AUGMENT_KEYS`): crop_scale, crop_ratio, flip,
    # rotate_deg, jitter; {} = none
    augment: dict[str, Any] = field(default_factory=dict)
    test_clips: int = 1  # evaluation: temporal windows per clip, outputs averaged per clip
    test_crops: int = 1  # evaluation: spatial crops per window (3: along the long side, 5: centre + corners)
    # every stream of a sample, read at the same frames and moved by the same plan (`mtlhar.data.sources`):
    # {name: {source: video | array | sequence | features | synth_flow | synth_pose | synth_mask |
    # synth_parts, column: ..., ...}}; {} = the one stream `stream`
    streams: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # the streams the encoder reads ([] = [stream])
    views: int = 1  # augmented views per training sample, each from its own frames and plan

    def __post_init__(self) -> None:
        from .data.sources import check_inputs, check_streams  # beside the sources they configure
        from .data.transforms import AUGMENT_KEYS, check_augment  # beside the transforms it configures

        self.streams = check_streams(self.streams, "data.streams")
        check_inputs(self.inputs, self.streams, self.stream, "data.inputs")

        try:
            check_augment(self.augment, "data.augment")
        except (TypeError, ValueError) as e:  # a value its own checks missed ({jitter: {1: 0.1, a: 0.2}})
            raise ConfigError(
                f"config key 'data.augment': got {_show(self.augment)} ({' '.join(str(e).split())}); "
                f"allowed keys: {', '.join(AUGMENT_KEYS)}"
            ) from None
        if self.decoder is not None:
            from .data.video import BACKENDS

            if self.decoder not in BACKENDS:
                raise ConfigError(
                    f"config key 'data.decoder': got {self.decoder!r}, expected one of {', '.join(BACKENDS)}"
                )
        if isinstance(self.synth, dict):
            _check_synth(self.synth, "data.synth")
        check_ranges(self, "data")


@dataclass
class ModelConfig:
    encoder: str = "small3d"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None


@dataclass
class BalancerConfig:
    name: str = "equal"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9
    schedule: Literal["cosine", "step", "constant", "wsd"] = "cosine"
    warmup_steps: int = 0
    decay_fraction: float = 0.2  # wsd: the last fraction of the steps decays (cosine) to zero
    step_milestones: list[int] = field(default_factory=list)
    step_gamma: float = 0.1
    accumulate: int = 1
    amp: Literal["auto", "on", "off"] = "auto"
    eval_every: int = 100
    checkpoint_every: int = 100
    early_stop_patience: int | None = None
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    affinity_every: int = 0  # measure task affinity every N steps (0 = never)
    # steps in a row with a NaN/inf loss or gradient (each skipped) before the run stops
    max_nonfinite_steps: int = 3
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch (SyncBatchNorm)
    sampler: Literal["random", "balanced"] = "random"  # data order of an epoch (balanced: by `balance_task`)
    balance_task: str | None = None  # the classification task whose classes `sampler: balanced` equalises

    def __post_init__(self) -> None:
        check_ranges(self, "train")  # also when built in code, not from a mapping


@dataclass
class RunConfig:
    tasks: list[TaskConfig]
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cross_terms: list[dict[str, Any]] = field(default_factory=list)
    name: str | None = None


# ---- allowed values ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pattern:
    """Allowed values of a string field: a full match of `regex`, shown to the user as `allowed`."""

    regex: str
    allowed: str


DEVICE = Pattern(r"auto|cpu|mps|cuda(:[0-9]+)?", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")


class Names(Pattern):
    """Allowed values of a string field: the names of a registry, read each time a value is checked (so a
    name registered after this module loads counts, and the list is never copied here)."""

    def __init__(self, names: typing.Callable[[], list[str]]):
        object.__setattr__(self, "names", names)

    @property
    def regex(self) -> str:
        return "|".join(re.escape(n) for n in self.names())

    @property
    def allowed(self) -> str:
        return ", ".join(repr(n) for n in self.names())


def _task_kinds() -> list[str]:
    from .kinds import kind_names  # the registry of task kinds (it never imports this module)

    return kind_names()


def _temporal_modules() -> list[str]:
    from .models.temporal import TEMPORAL

    return list(TEMPORAL)


# The allowed values of every numeric field (of each item of a list field), checked when a config loads:
# ">= a", "> a" or an interval "[a, b)", "(a, b]", ... Floats must also be finite (NaN and inf refused) and
# integers lie in [-2**63, 2**63); a field typed `X | None` also takes null. Types and Literal choices are
# checked by `_coerce`, cross-field rules by `validate`. tests/test_faults_config.py checks that every
# numeric field of every section is listed here.
RANGES: dict[type, dict[str, str | Pattern]] = {
    TaskConfig: {
        "num_classes": ">= 1",
        "weight": ">= 0",
        "hidden": ">= 0",
        "dropout": "[0, 1)",
        "label_smoothing": "[0, 1)",
        "logit_adjust": ">= 0",  # tau; mtlhar.tasks.build_task refuses negative values too
        "kind": Names(_task_kinds),
        "temporal": Names(_temporal_modules),
    },
    DataConfig: {
        "frames": ">= 1",
        "size": ">= 1",
        "short_side": ">= 1",
        "stride": ">= 1",
        "num_workers": ">= 0",
        "max_bad_fraction": "[0, 1]",
        "test_clips": ">= 1",
        "test_crops": ">= 1",
        "views": ">= 1",
    },
    TrainConfig: {
        "steps": ">= 1",
        "batch_size": ">= 1",
        "lr": "> 0",
        "weight_decay": ">= 0",
        "momentum": "[0, 1)",
        "warmup_steps": ">= 0",
        "decay_fraction": "(0, 1]",
        "step_milestones": ">= 0",
        "step_gamma": "> 0",
        "accumulate": ">= 1",
        "eval_every": ">= 1",
        "checkpoint_every": ">= 1",
        "early_stop_patience": ">= 1",
        "grad_clip": "> 0",
        "seed": "[0, 2**63)",
        "device": DEVICE,
        "threads": "[1, 2**31)",  # torch.set_num_threads takes a C int
        "affinity_every": ">= 0",
        "max_nonfinite_steps": ">= 1",
    },
}
INT_LIMIT = 2**63  # integers are stored as int64 by torch and numpy

# YAML 1.1 reads these words as booleans; a Literal choice spelled like one is given back (`amp: off`)
_YAML_WORDS = {True: ("on", "yes", "true", "y"), False: ("off", "no", "false", "n")}


def _number(text: str) -> float:
    base, _, exponent = text.partition("**")
    if exponent:
        return int(base) ** int(exponent)
    return int(text) if text.lstrip("-").isdigit() else float(text)


@functools.cache
def _bounds(rule: str) -> tuple[float, bool, float, bool]:
    """(low, low included, high, high included) of a range written '>= a', '> a' or '[a, b)' etc."""
    m = re.fullmatch(r"(>=?)\s*(\S+)", rule)
    if m:
        return _number(m[2]), m[1] == ">=", math.inf, False
    m = re.fullmatch(r"([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])", rule)
    if m is None:
        raise ValueError(f"not a range: {rule!r}")
    return _number(m[2]), m[1] == "[", _number(m[3]), m[4] == "]"


def _leaves(tp: Any) -> set:
    """The plain types inside an annotation (`int | None` -> {int, NoneType}, `list[int]` -> {int})."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType, list):
        return set().union(*(_leaves(a) for a in args))
    return {tp}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(rule: str | Pattern, integer: bool, nullable: bool) -> str:
    if isinstance(rule, Pattern):
        text = rule.allowed
    elif rule.startswith(("[", "(")):
        text = f"{'integers' if integer else 'numbers'} in {rule}"
    else:
        text = f"integers {rule}" if integer else f"finite numbers {rule}"
    return text + (" or null" if nullable else "")


def _check_field(cls: type, name: str, value: Any, key: str) -> None:
    """Raise ConfigError unless `value` (already of the field's type) is in the field's RANGES entry."""
    rule = RANGES.get(cls, {}).get(name)
    if rule is None or value is None:
        return
    leaves = _leaves(_hints(cls)[name])
    integer, nullable = float not in leaves, type(None) in leaves
    items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
    for i, v in items:
        where = key if i is None else f"{key}.{i}"
        allowed = _describe(rule, integer, nullable and i is None)
        if isinstance(rule, Pattern):
            if not isinstance(v, str) or re.fullmatch(rule.regex, v) is None:
                raise ConfigError(f"config key '{where}': got {_show(v)}, allowed values are {allowed}")
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue  # not a number: the type check's business
        lo, lo_in, hi, hi_in = _bounds(rule)
        if isinstance(v, int) and not -INT_LIMIT <= v < INT_LIMIT:
            limit = " below 2**63" if hi == math.inf else ""
            raise ConfigError(f"config key '{where}': got {_show(v)}, allowed values are {allowed}{limit}")
        finite = isinstance(v, int) or math.isfinite(v)
        if not (finite and (lo <= v if lo_in else lo < v) and (v <= hi if hi_in else v < hi)):
            raise ConfigError(f"config key '{where}': got {_show(v)}, allowed values are {allowed}")


def check_ranges(obj: Any, prefix: str) -> None:
    """Check every field of the config section `obj` that has a RANGES entry, naming keys `prefix.field`."""
    for name in RANGES.get(type(obj), {}):
        _check_field(type(obj), name, getattr(obj, name), f"{prefix}.{name}")


def _show(value: Any, limit: int = 80) -> str:
    """`repr(value)` for a one-line message, shortened when long."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _part(name: Any) -> str:
    """A mapping key as shown inside a dotted config key."""
    return name if isinstance(name, str) and name.isprintable() else _show(name)


def _check_synth(settings: Any, key: str) -> None:
    """`data.synth` holds the keyword arguments of `mtlhar.data.synth.generate` (and `out`, the folder)."""
    import inspect

    from .data.synth import generate

    params = inspect.signature(generate).parameters
    keywords = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    allowed = sorted((keywords - {"progress", "reuse"}) | {"out"})
    try:
        hints = typing.get_type_hints(generate)
    except Exception:  # annotations that cannot be resolved here: check the names only
        hints = {}
    hints["out"] = str | None
    for name, value in settings.items():
        if name not in allowed:
            raise ConfigError(
                f"unknown config key '{key}.{_part(name)}'; allowed keys in {key}: {', '.join(allowed)}"
            )
        coerced = _coerce(value, hints.get(name, Any), f"{key}.{name}")
        if isinstance(value, str) and not isinstance(coerced, str):  # the generator is given the raw value
            raise ConfigError(f"config key '{key}.{name}': got {_show(value)}, expected a number")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce) `value` against the annotation `tp`; raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected {_type_name(tp)}")
    if origin is Literal:
        if isinstance(value, bool):  # `amp: off` read by YAML as false
            spelled = [a for a in args if isinstance(a, str) and a.lower() in _YAML_WORDS[value]]
            if len(spelled) == 1:
                return spelled[0]
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"config key '{key}': got {_show(value)}, allowed values are {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}': got {_show(value)}, expected a list")
        return [_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': got {_show(value)}, expected a mapping")
        bad = [k for k in value if not (isinstance(k, str) and k.isprintable())]
        if args and args[0] is str and bad:
            raise ConfigError(
                f"config key '{key}': got key {_show(bad[0])} in {_show(value)}, expected a mapping with text keys"
            )
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected an integer")
    if tp is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                return float(value)  # "1e-3": YAML 1.1 reads exponents without a dot as text
            except (ValueError, OverflowError):  # not a number, or an integer beyond any float
                pass
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected a number")
    if tp is str:
        if isinstance(value, str) and "\0" not in value:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return str(value)
            except ValueError:  # an integer with more digits than Python converts to text
                pass
        nul = " without NUL characters" if isinstance(value, str) else ""
        raise ConfigError(f"config key '{key}': got {_show(value)}, expected a string{nul}")
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrongly typed values."""
    where = prefix or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where}': expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        allowed = ", ".join(sorted(fields))
        key = f"{prefix}.{_part(unknown[0])}" if prefix else _part(unknown[0])
        raise ConfigError(f"unknown config key '{key}'; allowed keys in {where}: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
            _check_field(cls, name, kwargs[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key '{key}' is required")
    return cls(**kwargs)


def merge_dicts(a: dict, b: dict) -> dict:
    """A deep copy of `a` with `b` merged into it: nested mappings merge, every other value of `b` replaces
    `a`'s (how a study's variants and quick settings extend its base config)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = merge_dicts(out[k], v) if nested else copy.deepcopy(v)
    return out


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def set_key(data: dict, key: str, value: Any, where: str = "--set") -> dict:
    """Set the dotted `key` (list items addressed by index) of a raw config mapping to `value`."""
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where} {key}: '{part}' is not an index of a list of {len(node)} items")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict | list):
                    raise ConfigError(f"{where} {key}: '{part}' is not a section")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` overrides (values parsed as YAML; list items addressed by index)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_key(data, key, _parse_scalar(raw))
    return data


#: the configs shipped in the package (`mtlhar train synth-mtl` finds configs/synth-mtl.yaml)
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def find_config(path: str | Path) -> Path:
    """`path` if it is a file, else the shipped config of that name (with or without `.yaml`)."""
    path = Path(path)
    if path.is_file():
        return path
    if len(path.parts) == 1 or path.parts[:-1] == ("configs",):
        shipped = SHIPPED_CONFIGS / (path.name if path.suffix in (".yaml", ".yml") else path.name + ".yaml")
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"config file not found: {path} (shipped configs, usable by name: {', '.join(shipped_configs())})"
    )


def load_yaml(path: str | Path) -> dict:
    path = find_config(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None):
    """Load a RunConfig from a YAML file (or a dict), applying `--set` overrides; relative data paths
    are resolved against the config file's folder."""
    path = None if path is None else find_config(path)
    data = copy.deepcopy(base or {}) if path is None else load_yaml(path)  # overrides leave `base` as it was
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(RunConfig, data)
    if path is not None:
        folder = Path(path).resolve().parent
        if cfg.data.manifest and not Path(cfg.data.manifest).is_absolute():
            candidate = folder / cfg.data.manifest
            if os.path.exists(candidate) or not os.path.exists(cfg.data.manifest):  # False for a bad name
                cfg.data.manifest = str(candidate)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that a dataclass type or a RANGES entry cannot express."""
    if not cfg.tasks:
        raise ConfigError("config key 'tasks' must list at least one task")
    names = [t.name for t in cfg.tasks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"config key 'tasks': duplicate task name(s) {sorted(dup)}")
    for i, t in enumerate(cfg.tasks):
        if t.parent is not None and t.parent not in names:
            raise ConfigError(f"config key 'tasks.{i}.parent': {t.parent!r} is not a task; tasks are {names}")
    check_sampler(cfg)
    from .balancing import BALANCERS, build_balancer  # its arguments checked now, not when training starts

    try:
        build_balancer(cfg.balancer.name, names, {t.name: t.weight for t in cfg.tasks}, cfg.balancer.args)
    except (TypeError, ValueError, ArithmeticError, RuntimeError) as e:  # a value its own checks missed
        raise ConfigError(
            f"config key 'balancer.args': got {_show(cfg.balancer.args)}, which {cfg.balancer.name!r} cannot "
            f"take ({' '.join(str(e).split())}); {cfg.balancer.name}: {BALANCERS[cfg.balancer.name][1]}"
        ) from None
    if not any(t.role == "primary" for t in cfg.tasks):
        raise ConfigError("config key 'tasks': at least one task must have role 'primary'")
    if cfg.data.manifest is None and cfg.data.synth is None:
        raise ConfigError(
            "config key 'data.manifest' is required (or 'data.synth' to generate a synthetic set)"
        )


def check_sampler(cfg: RunConfig) -> None:
    """`train.sampler: balanced` needs `train.balance_task` naming a single-label classification task."""
    from .kinds import KINDS

    one = {t.name: t.kind in KINDS and KINDS[t.kind].one_class_per_clip for t in cfg.tasks}
    if cfg.train.sampler == "balanced" and not one.get(cfg.train.balance_task):
        single = [n for n, ok in one.items() if ok]
        raise ConfigError(
            f"config key 'train.balance_task': got {cfg.train.balance_task!r}; with train.sampler 'balanced' it "
            f"must name a single-label classification task, allowed values are {single}"
        )
    if cfg.train.sampler != "balanced" and cfg.train.balance_task is not None:
        raise ConfigError(
            f"config key 'train.balance_task': {cfg.train.balance_task!r} is only used with "
            "train.sampler 'balanced' (allowed values of train.sampler: 'random', 'balanced')"
        )


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
