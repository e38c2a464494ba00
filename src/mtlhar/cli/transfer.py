"""`mtlhar transfer`: a new head for a target task on a run's encoder (frozen probe or finetune)."""

from __future__ import annotations

from pathlib import Path

from .common import TRAIN_EXAMPLE, add_command, add_overrides, configs_text, print_metrics

NAME = "transfer"
EXAMPLES = [
    TRAIN_EXAMPLE,
    "mtlhar transfer runs/mtl --data configs/synth-stl-fine.yaml --probe linear --task fine --out runs/transfer",
]


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "train a new head for a target task on a run's encoder (frozen probe or finetune)",
        EXAMPLES,
        notes=lambda: configs_text("train"),
    )
    p.add_argument("run_dir", help="a finished run directory (its best checkpoint is used)")
    p.add_argument("--data", required=True, help="YAML run config naming the target data and task(s)")
    p.add_argument("--probe", choices=["linear", "mlp", "finetune"], default="linear")
    p.add_argument("--task", help="target task name in --data (default: its first primary task)")
    p.add_argument("--out", required=True, help="output folder (transfer.json, probe, cached features)")
    p.add_argument("--tap", default="pooled", help="encoder tap the probe reads (default pooled)")
    p.add_argument("--epochs", type=int, default=100, help="linear/mlp: epochs over the cached features")
    p.add_argument("--steps", type=int, default=200, help="finetune: optimiser steps")
    p.add_argument("--lr", type=float, default=None, help="default 3e-3 (probes), 1e-3 (finetune)")
    p.add_argument("--seed", type=int, default=0)
    add_overrides(p, "override a key of the --data config (repeatable)")
    return p


def run(args) -> int:
    from ..config import load_config
    from ..transfer import transfer

    target = load_config(args.data, args.overrides)
    res = transfer(args.run_dir, target, probe=args.probe, task=args.task, out=args.out, tap=args.tap,
                   epochs=args.epochs, steps=args.steps, lr=args.lr, seed=args.seed)  # fmt: skip
    print_metrics(res["metrics"], f"{args.probe} probe of {args.run_dir} on '{res['task']}'")
    print(f"written to {Path(args.out) / 'transfer.json'}")
    return 0
