"""`mtlhar report`: the HTML report of a study or demo directory."""

from __future__ import annotations

from .common import STUDY_EXAMPLE, add_command, write_report

NAME = "report"
EXAMPLES = [STUDY_EXAMPLE, "mtlhar report runs/study"]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "write the HTML report of a study or demo directory (DIR/report/index.html)",
        EXAMPLES,
    )
    p.add_argument("dir")
    return p


def run(args) -> int:
    write_report(args.dir)
    return 0
