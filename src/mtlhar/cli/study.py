"""`mtlhar study`: single-task baselines vs multi-task variants over paired seeds, with tests."""

from __future__ import annotations

from ..errors import ConfigError
from .common import STUDY_EXAMPLE, add_command, configs_text, write_report

NAME = "study"
EXAMPLES = [STUDY_EXAMPLE]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "single-task baselines vs multi-task variants over paired seeds, with intervals and tests",
        EXAMPLES,
        notes=lambda: configs_text("study"),
    )
    p.add_argument("config", help="YAML study config (see configs/study-synth.yaml)")
    p.add_argument("--out", required=True, help="study directory (run again to resume)")
    p.add_argument("--seeds", type=int, default=None, help="paired seeds (default: the config's)")
    p.add_argument("--quick", action="store_true", help="apply the config's `quick` overrides")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once in worker processes, each with cores/jobs threads (default 1); under "
        "torchrun each process takes its share of the runs instead",
    )
    return p


def run(args) -> int:
    from rich.console import Console

    from ..demo import print_summary
    from ..study import load_study, run_study

    if args.jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
    results = run_study(load_study(args.config), args.out, seeds=args.seeds, quick=args.quick, jobs=args.jobs)
    if not results:  # a torchrun process other than 0: process 0 reports
        return 0
    print_summary(Console(), results)
    write_report(args.out)
    return 0
