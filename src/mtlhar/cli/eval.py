"""`mtlhar eval`: a run's selected checkpoint on a split, or on another dataset (--data)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import TRAIN_EXAMPLE, add_command, print_metrics

NAME = "eval"
EXAMPLES = [TRAIN_EXAMPLE, "mtlhar eval runs/mtl --split test"]


def add_parser(subparsers):
    p = add_command(subparsers, NAME, "evaluate a run's selected checkpoint on a split", EXAMPLES)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--data", help="another config whose data section names the dataset to evaluate on")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args) -> int:
    from ..evaluate import evaluate_run

    data = None
    if args.data:
        from ..config import load_config

        data = load_config(args.data)
    res = evaluate_run(args.run_dir, split=args.split, data=data)
    out = Path(args.run_dir) / f"eval_{args.split}.json"
    out.write_text(json.dumps(res, indent=2))
    if res["bad"]:  # on stderr, also with --json: a skipped clip is never silent
        print(
            f"{len(res['bad'])} unreadable clip(s) of split '{args.split}' skipped (listed in "
            f"{Path(args.run_dir) / 'bad_samples.json'}):",
            file=sys.stderr,
        )
        for b in res["bad"][:10]:
            print(f"  {b['id']}: {b['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(res["metrics"], indent=2))
    else:
        print_metrics(res["metrics"], f"{args.run_dir} on split '{args.split}' ({res['n']} clips)")
        print(f"written to {out}")
    return 0
