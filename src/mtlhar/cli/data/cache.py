"""`mtlhar data cache`: decode every video of a manifest once into a JPEG frame cache (resumable)."""

from __future__ import annotations

from ..common import SYNTH_EXAMPLE, add_command

NAME = "cache"
HELP = "decode every video once into a JPEG frame cache (resumable)"
EXAMPLES = [SYNTH_EXAMPLE, "mtlhar data cache data/synth/manifest.csv --out data/synth-cache --workers 2"]


def add_parser(subparsers):
    p = add_command(subparsers, NAME, HELP, EXAMPLES)
    p.add_argument("manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--short-side", type=int, default=128, help="resize so the short side is this (0: keep)")
    p.add_argument("--fps", type=float, default=None, help="keep at most this many frames per second")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--decoder",
        choices=["pyav", "torchcodec"],
        default=None,
        help="video decoder (default: $MTLHAR_VIDEO_BACKEND, else pyav)",
    )
    return p


def run(args) -> int:
    from ...data.frame_cache import build_cache

    res = build_cache(
        args.manifest,
        args.out,
        short_side=args.short_side or None,
        fps=args.fps,
        quality=args.quality,
        workers=args.workers,
        decoder=args.decoder,
    )
    print(
        f"cached {res['videos']} videos in {args.out} ({res['bytes'] / 2**20:.1f} MiB); "
        f"use it with --set data.frame_cache={args.out}"
    )
    for f in res["failed"]:
        print(f"  skipped {f['path']}: {f['reason']}")
    return 0
