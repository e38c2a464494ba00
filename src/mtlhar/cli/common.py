"""What the command modules share: help layout and examples, --option / --set parsing, metric tables,
report writing. Each command module has `add_parser(subparsers)` and `run(args) -> int`.

Every example in a help text runs as written from the repository root (tests/test_help_examples.py
runs them): commands that read a run, a study or a dataset list the example that makes it first.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import MtlharError
from ..progress import progress_bar

# examples that others build on (their output is what the next command reads)
SYNTH_EXAMPLE = "mtlhar data synth --out data/synth --clips 600 --size 64"
TRAIN_EXAMPLE = "mtlhar train configs/synth-mtl.yaml --set train.steps=300 --out runs/mtl"
STUDY_EXAMPLE = "mtlhar study configs/study-synth.yaml --out runs/study --seeds 3"
# a 2 s, 64 x 64 clip of the synthetic world shipped with the package (src/mtlhar/samples/README.md)
SAMPLE_CLIPS = "src/mtlhar/samples/clips"
SAMPLE_CLIP = f"{SAMPLE_CLIPS}/jump/jump.mp4"
STEMS = {"train": "synth-mtl", "study": "study-synth"}  # the by-name form in the config lists

__all__ = [
    "SAMPLE_CLIP",
    "SAMPLE_CLIPS",
    "STUDY_EXAMPLE",
    "SYNTH_EXAMPLE",
    "TRAIN_EXAMPLE",
    "HelpFormatter",
    "add_command",
    "add_overrides",
    "configs_text",
    "examples_text",
    "parse_options",
    "print_metrics",
    "progress_bar",
    "write_report",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog kept as written; either may be a function returning the text, called only
    when the help is shown (so that a command never pays for reading what only its help lists)."""

    def add_text(self, text):
        super().add_text(text() if callable(text) else text)


def examples_text(examples: list[str], notes: str | Callable[[], str] | None = None) -> str:
    """The epilog: 'Example:' and the command lines, then `notes`."""
    text = "Example:\n" + "".join(f"  {line}\n" for line in examples)
    if len(examples) > 1:
        text += "(run from the repository root, in this order)\n"
    if notes:
        text += "\n" + (notes() if callable(notes) else notes)
    return text


def add_command(
    subparsers,
    name: str,
    help_text: str,
    examples: list[str],
    *,
    description: str | None = None,
    notes: Callable[[], str] | str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand parser whose help ends with its examples (and `notes`, e.g. a list of configs)."""
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        epilog=lambda: examples_text(examples, notes),
        formatter_class=HelpFormatter,
    )
    parser.examples = examples  # read by the top-level help and the help-example test
    return parser


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--set KEY=VALUE (repeatable) into args.overrides."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def configs_text(kind: str) -> str:
    """The shipped configs of `kind` ("train": run configs, "study": study configs), each with the first
    line of its leading comment."""
    from ..config import SHIPPED_CONFIGS

    rows = []
    for path in sorted(SHIPPED_CONFIGS.glob("*.yaml")):
        lines = path.read_text(errors="replace").splitlines()
        if any(line.startswith(("base:", "variants:")) for line in lines) != (kind == "study"):
            continue
        comment = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "").rstrip(":")
        rows.append(f"  configs/{path.name:<24} {comment}")
    what = "study configs" if kind == "study" else "run configs"
    head = f"{what} shipped with mtlhar (by name from any folder too: mtlhar {kind} {STEMS[kind]}):\n"
    return head + "\n".join(rows) + "\n" if rows else ""


def parse_options(items: list[str]) -> dict:
    """--option key=value pairs, values parsed as YAML scalars (numbers, booleans, strings)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise MtlharError(f"--option expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def write_report(folder) -> Path:
    """Build the HTML report of a study folder, print and return its path."""
    from ..report import build_report

    if not (Path(folder) / "results.json").is_file():
        raise MtlharError(f"{folder}: no results.json (run `mtlhar study` or `mtlhar demo` into it first)")
    path = build_report(folder)
    print(f"report: {path}")
    return path


def print_metrics(metrics: dict, title: str) -> None:
    """A table of {task: {metric: value}} on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for task, m in metrics.items():
        for i, (name, value) in enumerate(m.items()):
            table.add_row(task if i == 0 else "", name, f"{value:.4f}")
    Console().print(table)
