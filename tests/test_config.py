import re

import pytest
import yaml

import mtlhar.data.transforms  # noqa: F401  (torch: imported while collecting, not in the first test)
from mtlhar.config import RunConfig, apply_overrides, dump_yaml, from_dict, load_config
from mtlhar.errors import ConfigError

BASE = {"data": {"manifest": "m.csv"}, "tasks": [{"name": "fine"}, {"name": "coarse", "parent": None}]}


def test_unknown_key_is_named_with_allowed_keys():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'train\.lrate'.*allowed keys in train:.*\blr\b"
    ):
        from_dict(RunConfig, {**BASE, "train": {"lrate": 0.1}})


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"'tasks\.0\.kind': got 'pose'.*'classification'"):
        from_dict(RunConfig, {**BASE, "tasks": [{"name": "fine", "kind": "pose"}]})
    with pytest.raises(ConfigError, match=r"'train\.steps': got 'many', expected an integer"):
        from_dict(RunConfig, {**BASE, "train": {"steps": "many"}})


def test_missing_tasks_and_bad_parent(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {manifest: m.csv}\n")
    with pytest.raises(ConfigError, match="'tasks' is required"):
        load_config(p)
    p.write_text("data: {manifest: m.csv}\ntasks: [{name: fine, parent: nope}]\n")
    with pytest.raises(ConfigError, match=r"tasks\.0\.parent.*'nope' is not a task"):
        load_config(p)
    p.write_text("data: {manifest: m.csv}\ntasks: [{name: fine, role: auxiliary}]\n")
    with pytest.raises(ConfigError, match="at least one task must have role 'primary'"):
        load_config(p)


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("tasks: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_overrides_set_nested_keys_and_list_items(tmp_path):
    data = apply_overrides(
        {"tasks": [{"name": "a"}], "train": {}}, ["train.lr=0.5", "tasks.0.weight=2", "model.encoder=r3d_18"]
    )
    assert (
        data["train"]["lr"] == 0.5
        and data["tasks"][0]["weight"] == 2
        and data["model"]["encoder"] == "r3d_18"
    )
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides({"tasks": []}, ["tasks.3.weight=1"])
    with pytest.raises(ConfigError, match="expects key=value"):
        apply_overrides({}, ["train.lr"])


def test_relative_manifest_resolved_against_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("data: {manifest: data/manifest.csv}\ntasks: [{name: fine}]\n")
    cfg = load_config(p)
    assert cfg.data.manifest == str(tmp_path / "sub" / "data" / "manifest.csv")


def test_balancer_arguments_are_checked_when_the_config_loads(tmp_path):
    """A bad balancer argument fails at load time (and when a study plans its runs), not when training
    reaches it."""
    from mtlhar.study import StudySpec, plan_runs

    p = tmp_path / "c.yaml"
    p.write_text(
        "data: {manifest: m.csv}\ntasks: [{name: fine}]\nbalancer: {name: nash_mtl, args: {update_every: 0}}\n"
    )
    with pytest.raises(ConfigError, match="balancer.args.update_every: an integer >= 1, got 0"):
        load_config(p)
    p.write_text("data: {manifest: m.csv}\ntasks: [{name: fine}]\nbalancer: {name: dwa, args: {tmp: 2}}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['tmp'\] for 'dwa'"):
        load_config(p)
    variants = [{"name": "ok", "balancer": {"name": "equal"}}, {"name": "bad", "balancer": {"name": "pcgrd"}}]
    spec = StudySpec(name="s", base={}, tasks=[{"name": "fine"}, {"name": "coarse"}], variants=variants)
    with pytest.raises(ConfigError, match=r"study run bad_s0: balancer.name: 'pcgrd' is not a balancer"):
        plan_runs(spec, seeds=1, quick=False, manifest_path="m.csv")


def test_amp_on_and_off_as_the_readme_writes_them(tmp_path):
    """YAML reads `amp: off` as false: it means the choice 'off', in a file and in a --set override."""
    p = tmp_path / "c.yaml"
    for text, amp in (("off", "off"), ("on", "on"), ("auto", "auto"), ("'off'", "off")):
        p.write_text(f"data: {{manifest: m.csv}}\ntasks: [{{name: fine}}]\ntrain: {{amp: {text}}}\n")
        cfg = load_config(p)
        assert cfg.train.amp == amp
        assert load_config(base=yaml.safe_load(dump_yaml(cfg))).train.amp == amp  # dumped as text
    assert load_config(p, ["train.amp=off"]).train.amp == "off"
    assert load_config(base=BASE, overrides=["train.amp=on"]).train.amp == "on"
    data = apply_overrides({**BASE, "train": {}}, ["train.amp=off"])
    assert data["train"]["amp"] is False and from_dict(RunConfig, data).train.amp == "off"
    with pytest.raises(ConfigError, match=r"'train\.amp': got 'of', allowed values are 'auto', 'on', 'off'"):
        load_config(base=BASE, overrides=["train.amp=of"])


# key, the edge value accepted, the nearest value refused, the allowed range as the message writes it
RANGE_CASES = [
    ("train.lr", 1e-9, 0, "finite numbers > 0"),
    ("train.lr", "1e-3", "nan", "finite numbers > 0"),
    ("train.lr", 1e308, ".inf", "finite numbers > 0"),
    ("train.weight_decay", 0, -1e-9, "finite numbers >= 0"),
    ("train.momentum", 0, 1, r"numbers in \[0, 1\)"),
    ("train.step_gamma", 1e-3, 0, "finite numbers > 0"),
    ("train.step_milestones", [0, 5], [5, -1], "integers >= 0"),
    ("train.warmup_steps", 0, -3, "integers >= 0"),
    ("train.grad_clip", "null", 0, "finite numbers > 0 or null"),
    ("train.early_stop_patience", 1, 0, "integers >= 1 or null"),
    ("train.seed", 2**63 - 1, 2**63, r"integers in \[0, 2\*\*63\)"),
    ("train.seed", 0, -1, r"integers in \[0, 2\*\*63\)"),
    ("train.threads", "null", 0, r"integers in \[1, 2\*\*31\) or null"),
    ("train.threads", 2**31 - 1, 2**31, r"integers in \[1, 2\*\*31\) or null"),
    ("train.affinity_every", 0, -1, "integers >= 0"),
    ("train.steps", 1, 0, "integers >= 1"),
    ("train.batch_size", 1, 0, "integers >= 1"),
    ("train.accumulate", 1, 0, "integers >= 1"),
    ("train.eval_every", 1, 0, "integers >= 1"),
    ("train.checkpoint_every", 1, 0, "integers >= 1"),
    ("train.max_nonfinite_steps", 1, 0, "integers >= 1"),
    ("train.device", "cuda:1", "bogus", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
    ("train.device", "mps", "cuda:x", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
    ("data.size", 1, 0, "integers >= 1"),
    ("data.frames", 1, 0, "integers >= 1"),
    ("data.short_side", "null", 0, "integers >= 1 or null"),
    ("data.stride", 1, 0, "integers >= 1"),
    ("data.num_workers", 0, -1, "integers >= 0"),
    ("data.max_bad_fraction", 1, 2, r"numbers in \[0, 1\]"),
    ("data.max_bad_fraction", 0, -0.1, r"numbers in \[0, 1\]"),
    ("data.test_clips", 1, 0, "integers >= 1"),
    ("tasks.0.num_classes", 1, 0, "integers >= 1 or null"),
    ("tasks.0.weight", 0, -1, "finite numbers >= 0"),
    ("tasks.0.weight", 2, ".nan", "finite numbers >= 0"),
    ("tasks.0.hidden", 0, -1, "integers >= 0"),
    ("tasks.0.dropout", 0.999, 1.5, r"numbers in \[0, 1\)"),
    ("tasks.0.dropout", 0, 1, r"numbers in \[0, 1\)"),
    ("tasks.0.label_smoothing", 0, -0.1, r"numbers in \[0, 1\)"),
    ("tasks.0.logit_adjust", 0, "-.inf", "finite numbers >= 0 or null"),
]


@pytest.mark.parametrize(
    ("key", "edge", "bad", "allowed"), RANGE_CASES, ids=[f"{c[0]}={c[2]}" for c in RANGE_CASES]
)
def test_values_out_of_range_name_the_key_the_value_and_the_range(key, edge, bad, allowed):
    """Loading accepts the edge of each range and refuses the value just past it, in one line."""
    load_config(base=BASE, overrides=[f"{key}={edge}"])
    with pytest.raises(ConfigError) as e:
        load_config(base=BASE, overrides=[f"{key}={bad}"])
    message = str(e.value)
    assert re.fullmatch(
        rf"config key '{re.escape(key)}(\.\d+)?': got .+, allowed values are {allowed}", message
    )


def test_synth_settings_are_the_generators_keywords():
    load_config(base={"data": {"synth": {"clips": 24, "size": 32, "long_tail": 5}}, "tasks": [{"name": "f"}]})
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data\.synth\.clipz'; allowed keys .*\bclips\b"
    ):
        load_config(base={"data": {"synth": {"clipz": 24}}, "tasks": [{"name": "f"}]})
    with pytest.raises(ConfigError, match=r"'data\.synth\.clips': got 'many', expected an integer"):
        load_config(base={"data": {"synth": {"clips": "many"}}, "tasks": [{"name": "f"}]})


def test_overrides_leave_the_base_mapping_as_it_was():
    base = {"data": {"manifest": "m.csv"}, "tasks": [{"name": "fine"}], "train": {"lr": 0.1}}
    assert load_config(base=base, overrides=["train.lr=0.5", "tasks.0.weight=2"]).train.lr == 0.5
    assert base == {"data": {"manifest": "m.csv"}, "tasks": [{"name": "fine"}], "train": {"lr": 0.1}}


def test_values_the_section_checks_do_not_foresee_are_config_errors():
    """Mixed-type keys inside data.augment and balancer arguments of the wrong type: one ConfigError line."""
    with pytest.raises(
        ConfigError, match=r"^config key 'data\.augment': got \{'jitter'.*allowed keys: crop_scale"
    ):
        load_config(base={**BASE, "data": {"manifest": "m.csv", "augment": {"jitter": {1: 0.1, "a": 0.2}}}})
    for args in ({"temperature": "x"}, {"period": None}):
        with pytest.raises(
            ConfigError, match=r"^config key 'balancer\.args': got .*'dwa' cannot take .*temperature"
        ):
            load_config(base={**BASE, "balancer": {"name": "dwa", "args": args}})
    with pytest.raises(ConfigError, match=r"^config key 'balancer\.args': got \{'weights': 5\}"):
        load_config(base={**BASE, "balancer": {"name": "static", "args": {"weights": 5}}})


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    from mtlhar.config import SHIPPED_CONFIGS, find_config, shipped_configs

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert {"synth-mtl", "study-synth"} <= set(shipped_configs())
    assert find_config("synth-mtl") == SHIPPED_CONFIGS / "synth-mtl.yaml"
    assert find_config("configs/synth-mtl.yaml") == SHIPPED_CONFIGS / "synth-mtl.yaml"
    assert load_config("synth-mtl").data.synth is not None
    with pytest.raises(ConfigError, match="shipped configs, usable by name: .*synth-mtl"):
        load_config("no-such-config")
