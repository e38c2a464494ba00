"""`mtlhar train`: train a (multi-task) model from a YAML run config."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .common import TRAIN_EXAMPLE, add_command, add_overrides, configs_text, print_metrics

NAME = "train"
EXAMPLES = [TRAIN_EXAMPLE]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "train a (multi-task) model from a YAML config",
        EXAMPLES,
        notes=lambda: configs_text("train"),
    )
    p.add_argument("config", help="YAML run config")
    add_overrides(p, "override a config key, e.g. train.lr=0.001 or tasks.0.weight=2 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.add_argument(
        "--allow-change",
        dest="allow_changes",
        action="append",
        default=[],
        metavar="KEY",
        help="with --resume: a config key (or section) you changed on purpose, e.g. train.steps (repeatable); "
        "any other difference from the run's config is refused",
    )
    return p


def run(args) -> int:
    from ..config import load_config
    from ..distributed import launched
    from ..train import train

    cfg = load_config(args.config, args.overrides)
    out = args.out or str(Path("runs") / (cfg.name or Path(args.config).stem))
    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-change is only used with --resume")
    res = train(cfg, out, resume=args.resume, allow_changes=args.allow_changes)
    if not launched().main:  # under torchrun, rank 0 alone reports
        return 0
    print(
        f"run {res.run_dir}: {res.steps} steps in {res.wall_time_s:.0f}s; best step {res.best_step}, "
        f"validation score {res.best_score:.4f}"
    )
    print_metrics(res.val_metrics, "validation metrics of the selected checkpoint")
    return 0
