"""`mtlhar data synth`: generate the synthetic action world (videos, labels, poses)."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..common import SYNTH_EXAMPLE, add_command, progress_bar

NAME = "synth"
HELP = "generate the synthetic action world"
EXAMPLES = [SYNTH_EXAMPLE]


def add_parser(subparsers):
    p = add_command(subparsers, NAME, HELP, EXAMPLES)
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--domain", action="append", dest="domains", help="training domain(s) (repeatable)")
    p.add_argument("--heldout-domain", default="lowlight")
    p.add_argument(
        "--long-tail", type=float, default=None, help="imbalance ratio of the train split, e.g. 50"
    )
    p.add_argument("--composite", action="store_true", help="clips of 2-3 actions with a multi-label column")
    p.add_argument("--occlusion", type=float, default=0.0, help="probability of an occluding box per clip")
    p.add_argument("--distractors", type=float, default=0.0, help="probability of moving background blobs")
    p.add_argument("--clutter", type=float, default=0.0, help="probability of static clutter shapes")
    p.add_argument(
        "--noise", type=float, default=None, help="sensor noise std in 8-bit levels (default: per domain)"
    )
    p.add_argument(
        "--store-flow",
        action="store_true",
        help="also write DIR/flow/<id>.npy (else load_flow computes it exactly)",
    )
    p.add_argument(
        "--streams",
        default="",
        metavar="LIST",
        help="ground truth to write beside the videos as per-clip arrays, comma-separated: flow, pose "
        "(2D joints with visibility), mask (person), parts (body-part label maps); read with data.streams",
    )
    p.add_argument("--codec", choices=["h264", "ffv1"], default="h264")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    return p


def run(args) -> int:
    from ...data import synth

    kwargs = dict(
        clips=args.clips,
        frames=args.frames,
        size=args.size,
        heldout_domain=args.heldout_domain,
        long_tail=args.long_tail,
        composite=args.composite,
        occlusion=args.occlusion,
        distractors=args.distractors,
        clutter=args.clutter,
        noise=args.noise,
        store_flow=args.store_flow,
        codec=args.codec,
        seed=args.seed,
        workers=args.workers,
    )
    if args.domains:
        kwargs["domains"] = tuple(args.domains)
    if args.streams:
        kwargs["streams"] = [x.strip() for x in args.streams.split(",") if x.strip()]
    try:
        path = synth.generate(args.out, progress=progress_bar("generating clips"), **kwargs)
    except ValueError as e:  # the generator's own checks of its settings
        raise ConfigError(str(e)) from None
    print(f"wrote {path} ({sum(1 for _ in open(path)) - 1} clips); see {Path(args.out) / 'README.md'}")
    return 0
