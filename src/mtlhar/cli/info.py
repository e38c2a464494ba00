"""`mtlhar info`: what exists (encoders, temporal modules, task kinds, balancers, data formats)."""

from __future__ import annotations

import json

from .common import add_command

NAME = "info"
EXAMPLES = ["mtlhar info --json"]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "list what exists: encoders, temporal modules, task kinds, balancers, data formats",
        EXAMPLES,
    )
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    from ..info import info

    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for section, entries in data.items():
        print(f"{section}:")
        if isinstance(entries, dict):
            for k, v in entries.items():
                print(f"  {k:<16} {v}")
        else:
            print(f"  {entries}")
    return 0
