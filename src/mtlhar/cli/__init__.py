"""The `mtlhar` command line: thin, every command calls the library.

One module per command, each with `add_parser(subparsers)` and `run(args) -> int`; COMMANDS is the
registry (a new command is one module and one entry). Shared helpers are in `mtlhar.cli.common`.
Commands import the library inside `run`, so that `--help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import MtlharError
from . import data, demo, features, info, predict, report, study, train, transfer
from . import eval as eval_command
from .common import HelpFormatter

COMMANDS = {
    m.NAME: m for m in (train, eval_command, predict, features, transfer, info, demo, study, report, data)
}


def build_parser() -> argparse.ArgumentParser:
    """The `mtlhar` parser with every command of COMMANDS."""
    p = argparse.ArgumentParser(
        prog="mtlhar",
        description="Multi-task learning for human action recognition.",
        epilog=top_examples,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def top_examples() -> str:
    """Every command's example lines, each once, in an order that runs (what a line reads comes first)."""
    lines = dict.fromkeys(line for m in COMMANDS.values() for line in m.EXAMPLES)
    return (
        "Examples (from the repository root, in this order):\n"
        + "".join(f"  {line}\n" for line in lines)
        + "Each command's --help says more: mtlhar train --help\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except MtlharError as e:
        if args.debug:
            raise
        print(f"mtlhar {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted (a run can continue with --resume)", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
