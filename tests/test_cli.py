import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import square_config
from mtlhar.cli import main


def test_info_json_lists_what_exists(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"small3d", "r3d_18", "r2plus1d_18", "mc3_18", "sequence"} <= set(data["encoders"])
    assert {"classification", "multilabel", "regression", "caption"} <= set(data["task_kinds"])
    assert {"mean", "max"} <= set(data["temporal_modules"]) and "equal" in data["balancers"]


def test_every_command_has_help_with_an_example():
    for cmd in ("train", "eval", "predict", "info", "demo"):
        out = subprocess.run([sys.executable, "-m", "mtlhar", cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "Example:" in out.stdout and "mtlhar " + cmd in out.stdout


def test_bad_config_is_one_clear_line(tmp_path, capsys, squares):
    cfg = square_config(squares)
    cfg["train"]["optimiser"] = "adam"
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(p), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key 'train.optimiser'" in err[0] and "optimizer" in err[0]


def test_missing_file_names_the_path(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "norun"), str(tmp_path / "x.mp4")]) == 2
    assert "no best checkpoint" in capsys.readouterr().err


def test_train_eval_predict_from_the_cli(tmp_path, capsys, squares):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(square_config(squares, steps=4, eval_every=2)))
    run = tmp_path / "run"
    assert main(["train", str(p), "--out", str(run), "--set", "train.lr=0.005"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == json.loads((run / "eval_test.json").read_text())["metrics"]
    assert "direction" in metrics and "top1" in metrics["direction"]
    video = squares.parent / "videos" / "001.mp4"
    assert main(["predict", str(run), str(video), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["predictions"]["direction"][0][0] in ("left", "right")


def test_data_inspect_and_cache_from_the_cli(tmp_path, capsys, squares):
    assert main(["data", "inspect", str(squares), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 48 and any("is in splits" in str(i) for i in report["issues"])
    assert main(["data", "cache", str(squares), "--out", str(tmp_path / "cache"), "--short-side", "16"]) == 0
    assert "cached 48 videos" in capsys.readouterr().out
    assert main(["data", "convert", "nosuchformat", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_data_synth_rejects_bad_knobs_in_one_line(tmp_path, capsys):
    from mtlhar.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--clips", "30", "--occlusion", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "occlusion" in err and "[0, 1]" in err and "Traceback" not in err


def test_demo_compares_its_balancers_with_equal_weighting(tmp_path):
    """The demo's study plans with `reference: mtl_equal` and prints the comparisons it yields."""
    from rich.console import Console

    from mtlhar.demo import demo_spec, print_summary
    from mtlhar.study import plan_runs

    spec = demo_spec(quick=True)
    plan = plan_runs(spec, seeds=1, quick=True, manifest_path=str(tmp_path / "manifest.csv"))
    assert spec.reference == "mtl_equal" and {r.group for r in plan} >= {"mtl_equal", "mtl_uncertainty"}
    test = {"run": "mtl_uncertainty", "reference": "mtl_equal", "split": "test", "task": "fine"}
    test |= {"metric": "top1", "mean_diff": 0.0125, "p": 0.2, "p_holm": 0.4}
    console = Console(record=True, width=200)
    results = {"study": "demo", "tasks": [], "summary": [], "delta_m_summary": [], "tests": []}
    print_summary(console, results | {"reference_tests": [test]})
    out = console.export_text()
    assert "paired test mtl_uncertainty vs mtl_equal (test, fine top1): diff +0.013" in out
    assert "Holm p = 0.4000" in out


def test_convert_refuses_an_unknown_option_in_one_line(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["data", "convert", "folder", str(tmp_path), "--out", str(out), "--option", "bogus=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'bogus'" in err[0] and "path_column" in err[0], err
    assert not out.exists()  # refused before anything was read or written
    assert main(["data", "inspect", str(tmp_path), "--format", "folder", "--option", "bogus=1"]) == 2
    assert "'bogus'" in capsys.readouterr().err


def test_argument_errors_stay_argparse_errors(capsys):
    for argv in (["data", "convert", "folder"], ["train"], ["nosuchcommand"], ["study", "x.yaml"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        assert "usage: mtlhar" in capsys.readouterr().err


def test_every_command_module_is_registered_and_complete():
    import pkgutil

    import mtlhar.cli
    import mtlhar.cli.data
    from mtlhar.cli import COMMANDS
    from mtlhar.cli.data import SUBCOMMANDS

    for package, registry in ((mtlhar.cli, COMMANDS), (mtlhar.cli.data, SUBCOMMANDS)):
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"common", "__main__"}
        assert modules == {m.__name__.rsplit(".", 1)[1] for m in registry.values()}, package
        for name, module in registry.items():
            assert module.NAME == name and callable(module.add_parser) and callable(module.run)


def test_cli_functions_are_short_and_demo_does_not_import_the_cli():
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "mtlhar"
    for path in sorted((src / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.name}:{node.lineno} {node.name} has {length} lines"
    demo = ast.parse((src / "demo.py").read_text())
    imported = {n.module for n in ast.walk(demo) if isinstance(n, ast.ImportFrom)}
    assert not any(m and (m == "cli" or m.startswith(("cli.", "mtlhar.cli"))) for m in imported)


def test_info_lists_the_registries_and_the_reliability_options(capsys):
    from mtlhar.terms import CROSS_TERMS

    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["cross_task_terms"]) == set(CROSS_TERMS)
    assert "synth-mtl" in data["shipped_configs"]
    assert "max_nonfinite_steps" in data["reliability"] and "sync_bn" in data["distributed"]
