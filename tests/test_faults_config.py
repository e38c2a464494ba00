"""Fault injection on config values: whatever a config file holds, loading it gives a RunConfig or one
ConfigError line naming the key, and `mtlhar train` refuses a bad value (exit 2) before touching data."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import re
import tempfile
import types
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtlhar.data.synth  # noqa: F401  (imported once here, not inside a timed test)
import mtlhar.train
from mtlhar.cli import main
from mtlhar.config import RunConfig, from_dict, load_config, to_dict
from mtlhar.errors import ConfigError

VALID = {"data": {"manifest": "m.csv"}, "tasks": [{"name": "fine"}, {"name": "coarse", "parent": "fine"}]}
BASE = to_dict(from_dict(RunConfig, copy.deepcopy(VALID)))  # every key spelled out, with its default


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _sections(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, type, bool]]:
    """(dotted key, dataclass, is a leaf) for every key of a config section, depth first."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        if dataclasses.is_dataclass(inner):
            yield key, inner, False
            if inner is tp:
                yield from _sections(inner, key + ".")
            else:  # a list of sections: the ones in BASE
                for i in range(len(BASE[f.name])):
                    yield f"{key}.{i}", inner, False
                    yield from _sections(inner, f"{key}.{i}.")
        else:
            yield key, cls, True


KEYS = {key: (cls, leaf) for key, cls, leaf in _sections(RunConfig)}  # leaves and the sections above them


def _put(data: dict, key: str, value) -> None:
    """Set the dotted `key` of `data`, adding the sections above it that are missing."""
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(last) if isinstance(node, list) else last] = value


WORDS = [
    # choices some key takes, so that valid values are drawn too
    *("classification", "multilabel", "regression", "caption", "primary", "auxiliary", "fine", "coarse"),
    *("auto", "cpu", "cuda", "cuda:0", "cuda:x", "mps", "on", "off", "sgd", "wsd", "step", "balanced"),
    *("dense", "device", "worker", "rgb", "flow", "pooled", "gru", "dwa", "static", "uncertainty", "pyav"),
    # texts YAML or float() read as numbers, and texts that upset paths and messages
    *("", "nan", "inf", "-1", "1e-3", "0x10", "a\nb", "a\rb", "a\x00b", "x" * 300, "../../etc", "é☃"),
]
HUGE = [2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, -(10**400)]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2, -3, 7, *HUGE]),
    st.floats(),  # nan, inf and huge ones included
    st.sampled_from([0.0, -0.0, 0.5, 0.999, 1.0, 1.5, -1e-9, 1e308, math.nan, math.inf, -math.inf]),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
mapping_keys = st.one_of(
    st.sampled_from(["flip", "jitter", "crop_scale", "clips", "size", "weights", "temperature", "filters"]),
    st.text(max_size=6),
    st.integers(),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(mapping_keys, inner, max_size=3),
    max_leaves=4,
)
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 2, -3, 7, *HUGE]),
    st.integers(),
    st.sampled_from([0.0, -0.0, 0.5, 0.999, 1.0, 1.5, -1e-9, 1e308, math.nan, math.inf, -math.inf]),
    st.floats(),
)


def _of_type(tp) -> st.SearchStrategy:
    """Values of the type `tp` or near it (any number for a number, the choices and booleans for a
    Literal), so that the range checks are reached and not only the type checks."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return st.sampled_from(args) | st.booleans()
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_of_type(a) for a in args])
    if origin is list:
        return st.lists(_of_type(args[0]), max_size=3)
    if tp in (int, float):
        return NUMBERS
    if tp is str:
        return st.sampled_from(WORDS) | st.text(max_size=12)
    if tp is type(None):
        return st.none()
    return values  # bool, mappings, Any, sections


@functools.cache
def _change(key: str) -> st.SearchStrategy:
    cls, leaf = KEYS[key]
    near = _of_type(_hints(cls)[key.rsplit(".", 1)[-1]]) if leaf else values
    return st.tuples(st.just(key), st.one_of(near, near, values))  # mostly values of about the right type


def _numeric(key: str) -> bool:
    """Whether `key` is a field holding numbers (`int`, `float | None`, `list[int]`, ...)."""
    cls, leaf = KEYS[key]
    tp = _hints(cls)[key.rsplit(".", 1)[-1]] if leaf else None
    return bool(
        {int, float}
        & (set(typing.get_args(tp)) | {tp} | {a for t in typing.get_args(tp) for a in typing.get_args(t)})
    )


NUMERIC = [k for k in sorted(KEYS) if _numeric(k)]
# half of the changes go to a numeric key, where the range checks are
changes = st.lists(
    (st.sampled_from(sorted(KEYS)) | st.sampled_from(NUMERIC)).flatmap(_change), min_size=1, max_size=2
)


def _assert_loads_or_names_the_key(load, keys: list[str]) -> None:
    try:
        cfg = load()
    except ConfigError as e:
        message = str(e)
        assert len(message.splitlines()) == 1 and message.strip() == message, repr(message)
        # the message names a changed key (or something under it), or the section above one
        names = [rf"(?<![\w.]){re.escape(k)}(?![\w])" for k in keys]
        for k in keys:
            parts = k.split(".")
            names += [rf"(?<![\w.]){re.escape('.'.join(parts[:n]))}(?![\w.])" for n in range(1, len(parts))]
        assert any(re.search(n, message) for n in names), (keys, message)
        return
    assert isinstance(cfg, RunConfig)
    for section in (cfg.data, cfg.train, *cfg.tasks):  # no NaN, inf or integer beyond int64 reaches training
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            for v in value if isinstance(value, list) else [value]:
                assert not (isinstance(v, float) and not math.isfinite(v)), (f.name, value)
                assert not (isinstance(v, int) and not -(2**63) <= v < 2**63), (f.name, value)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(changes, st.booleans())
def test_fuzzed_config_values_load_or_raise_one_config_error_line_naming_the_key(changes, from_file):
    """In memory the changes go into BASE (every key spelled out); a file holds VALID and the changes
    (pure-Python YAML reads the long BASE slowly)."""
    data = copy.deepcopy(VALID if from_file else BASE)
    for key, value in changes:
        try:
            _put(data, key, value)
        except (
            AttributeError,
            IndexError,
            TypeError,
            ValueError,
        ):  # a section above was replaced by an earlier change
            pass
    keys = [key for key, _ in changes]
    if not from_file:
        _assert_loads_or_names_the_key(lambda: load_config(base=data), keys)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(yaml.safe_dump(data))
        _assert_loads_or_names_the_key(lambda: load_config(path), keys)


def _balancer_args(name: str) -> list[str]:
    from mtlhar.balancing import BALANCERS

    cls = BALANCERS[name][0]
    found = {"weights"} if name == "static" else set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            found |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    return sorted(found)


def _balancer() -> st.SearchStrategy:
    from mtlhar.balancing import BALANCERS

    def of(name):
        keys = st.sampled_from(_balancer_args(name) or ["x"])
        weights = st.dictionaries(
            st.sampled_from(["fine", "coarse", "other"]) | mapping_keys, NUMBERS | values
        )
        return st.fixed_dictionaries(
            {"name": st.just(name), "args": st.dictionaries(keys, NUMBERS | values | weights, max_size=3)}
        )

    return st.sampled_from(sorted(BALANCERS)).flatmap(of)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(_balancer())
def test_fuzzed_balancer_arguments_load_or_raise_one_config_error_line(balancer):
    """The balancer's own argument names with any values: loading never ends in another exception."""
    data = copy.deepcopy(VALID)
    data["balancer"] = balancer
    _assert_loads_or_names_the_key(lambda: load_config(base=data), ["balancer.args", "balancer.name"])


def test_every_numeric_field_of_every_section_has_a_range():
    from mtlhar.config import RANGES

    fields = {(KEYS[k][0], k.rsplit(".", 1)[-1]) for k in NUMERIC}
    assert len(fields) >= 30  # the walk found them: tasks, data and train hold 30-odd numbers
    missing = sorted(f"{cls.__name__}.{name}" for cls, name in fields if name not in RANGES.get(cls, {}))
    assert not missing, f"numeric fields without a RANGES entry: {missing}"
    assert "device" in RANGES[_hints(RunConfig)["train"]]


BAD = [
    ("train.lr", 0, "> 0"),
    ("train.lr", math.nan, "> 0"),
    ("data.size", 0, ">= 1"),
    ("train.device", "bogus", "'cuda:N'"),
    ("data.max_bad_fraction", 2, r"\[0, 1\]"),
    ("train.warmup_steps", -3, ">= 0"),
    ("train.threads", 0, r"\[1, 2\*\*31\) or null"),
    ("tasks.0.dropout", 1.5, r"\[0, 1\)"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_train_command_refuses_a_bad_value_in_one_line_before_reading_data(
    key, value, allowed, tmp_path, capsys, monkeypatch
):
    def no_training(*args, **kwargs):
        raise AssertionError(f"training started with {key}={value!r}")

    monkeypatch.setattr(mtlhar.train, "train", no_training)
    (tmp_path / "manifest.csv").write_text("id,path,split,fine\nc1,c1.mp4,train,a\n")
    data = copy.deepcopy(VALID)
    data["data"]["manifest"] = "manifest.csv"
    _put(data, key, value)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"mtlhar train: error: config key '{key}': got ") and re.search(allowed, err[0])
