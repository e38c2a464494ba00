"""`mtlhar demo`: the main job on the embedded synthetic world, single-task vs multi-task, end to end."""

from __future__ import annotations

from .common import add_command, write_report

NAME = "demo"
EXAMPLES = ["mtlhar demo --quick --out mtlhar-demo"]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "the main job on the embedded synthetic world: single-task vs multi-task, end to end",
        EXAMPLES,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="720 clips, 150 steps, 1 seed: about 2 minutes on 2 cores (full: 3000 clips, 3 seeds x 600 steps, about 18 minutes)",
    )
    p.add_argument("--out", default="mtlhar-demo", help="output folder (default mtlhar-demo)")
    p.add_argument("--seeds", type=int, default=None, help="paired seeds (default 1 with --quick, 3 full)")
    return p


def run(args) -> int:
    from ..demo import run_demo

    run_demo(out=args.out, quick=args.quick, seeds=args.seeds)
    write_report(args.out)
    return 0
