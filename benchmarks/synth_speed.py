"""Speed of the synthetic action world generator (one worker, per core).

    python benchmarks/synth_speed.py --clips 200 --frames 16 --size 112

Prints clips/s per CPU core (process CPU time, so other load on the machine matters less) for:
render only, encode only (h264), pose npz only, and the total per clip as `generate` does it; plus
the ratio to a baseline measured in the same run: encoding a static background-only clip.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mtlhar.data.synth import FINE_ACTIONS, ClipSpec, render_clip
from mtlhar.data.synth.store import encode_video, save_pose
from mtlhar.data.synth.subjects import make_subjects


def _timed(fn, items) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fn over items."""
    c0, w0 = time.process_time(), time.perf_counter()
    for it in items:
        fn(it)
    return time.process_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--codec", default="h264", choices=["h264", "ffv1"])
    ap.add_argument("--domain", default="mixed", help="studio, outdoor, lowlight or mixed")
    args = ap.parse_args(argv)

    subjects = make_subjects(16, 0)
    domains = ["studio", "outdoor"] if args.domain == "mixed" else [args.domain]
    specs = [
        ClipSpec(
            i,
            0,
            subjects[i % 16],
            (FINE_ACTIONS[i % len(FINE_ACTIONS)],),
            domains[i % len(domains)],
            frames=args.frames,
            size=args.size,
        )
        for i in range(args.clips)
    ]
    render_clip(specs[0])  # warm-up (imports, caches)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rendered = []
        t_render = _timed(lambda s: rendered.append(render_clip(s)), specs)
        t_encode = _timed(
            lambda r: encode_video(out / "v.mp4", r[1].rgba, 8, args.codec), enumerate(rendered)
        )
        t_pose = _timed(lambda r: save_pose(out / "p.npz", r, ("x",)), rendered)

        def total(s: ClipSpec) -> None:
            r = render_clip(s)
            encode_video(out / f"{s.index}.mp4", r.rgba, 8, args.codec)
            save_pose(out / f"{s.index}.npz", r, s.actions)

        t_total = _timed(total, specs)
        plain = np.full_like(rendered[0].rgba, 160)
        t_base = _timed(lambda _: encode_video(out / "b.mp4", plain, 8, args.codec), range(args.clips))

    n = args.clips
    print(
        f"synth generator speed: {n} clips x {args.frames} frames x {args.size}px, codec={args.codec}, "
        f"domains={'+'.join(domains)}, 1 worker"
    )
    print(f"{'stage':<34}{'clips/s/core':>14}{'ms/clip':>10}{'wall clips/s':>14}{'vs baseline':>13}")
    base = n / t_base[0]
    for name, (cpu, wall) in [
        ("render (numpy)", t_render),
        ("encode", t_encode),
        ("pose npz", t_pose),
        ("total (render+encode+npz)", t_total),
        ("baseline: encode static clip", t_base),
    ]:
        print(f"{name:<34}{n / cpu:>14.1f}{1000 * cpu / n:>10.2f}{n / wall:>14.1f}{(n / cpu) / base:>13.2f}")


if __name__ == "__main__":
    main()
