"""`mtlhar data`: datasets. One module per subcommand (synth, inspect, convert, cache), each with
`add_parser(subparsers)` and `run(args) -> int`; SUBCOMMANDS is their registry."""

from __future__ import annotations

from ..common import HelpFormatter, examples_text
from . import cache, convert, inspect, synth

NAME = "data"
SUBCOMMANDS = {m.NAME: m for m in (synth, inspect, convert, cache)}
EXAMPLES = list(dict.fromkeys(line for m in SUBCOMMANDS.values() for line in m.EXAMPLES))
HELP = "datasets: generate the synthetic world, convert a dataset to a manifest, inspect it, cache its frames"


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME,
        help=HELP,
        description=HELP,
        epilog=lambda: examples_text(EXAMPLES, "Each subcommand's --help lists its options.\n"),
        formatter_class=HelpFormatter,
    )
    p.examples = EXAMPLES
    sub = p.add_subparsers(dest="data_command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return p


def run(args) -> int:
    return SUBCOMMANDS[args.data_command].run(args)
