"""`mtlhar data inspect`: counts, missing labels, duplicates, imbalance and unreadable files."""

from __future__ import annotations

import json

from ..common import SAMPLE_CLIPS, SYNTH_EXAMPLE, add_command, parse_options

NAME = "inspect"
HELP = "counts, missing labels, duplicates, imbalance and unreadable files"
EXAMPLES = [
    SYNTH_EXAMPLE,
    "mtlhar data inspect data/synth/manifest.csv",
    f"mtlhar data inspect {SAMPLE_CLIPS} --format folder",
]


def add_parser(subparsers):
    p = add_command(subparsers, NAME, HELP, EXAMPLES)
    p.add_argument("source", help="a manifest.csv (or its folder), or a dataset root with --format")
    p.add_argument(
        "--format",
        default=None,
        help="dataset format (every format, its root and its options: mtlhar data convert --help); "
        "default: a manifest",
    )
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="reader option (repeatable)"
    )
    p.add_argument("--no-files", action="store_true", help="skip opening every file")
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    from ...data.inspect import inspect_source, print_inspection

    options = parse_options(args.option)
    if args.format is not None:
        from ...data.formats import check_options

        check_options(args.format, options)  # before the reader runs
    report = inspect_source(args.source, args.format, check_files=not args.no_files, **options)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_inspection(report)
    return 0
