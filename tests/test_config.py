import pytest

from mtlhar.config import RunConfig, apply_overrides, from_dict, load_config
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
