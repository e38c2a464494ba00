"""The `mtlhar` command line: thin, every command calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError, MtlharError

EXAMPLES = {
    "train": "mtlhar train configs/demo.yaml --set train.steps=300 --out runs/mtl",
    "eval": "mtlhar eval runs/mtl --split test",
    "predict": "mtlhar predict runs/mtl clip.mp4",
    "info": "mtlhar info --json",
    "demo": "mtlhar demo --quick --out mtlhar-demo",
    "data": "mtlhar data synth --out data/synth --clips 600 --size 64",
    "study": "mtlhar study configs/study-synth.yaml --out runs/study --seeds 3",
    "report": "mtlhar report runs/study",
    "transfer": "mtlhar transfer runs/mtl --data configs/target.yaml --probe linear --task new_action --out runs/tr",
    "features": "mtlhar features data/synth/manifest.csv --encoder i3d --window 16 --stride 8 --out feats/i3d",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtlhar",
        description="Multi-task learning for human action recognition.",
        epilog="Examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name, help_text):
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"Example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    t = cmd("train", "train a (multi-task) model from a YAML config")
    t.add_argument("config", help="YAML run config")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.lr=0.001 or tasks.0.weight=2 (repeatable)",
    )
    t.add_argument("--out", help="run directory (default runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    t.add_argument(
        "--allow-change",
        dest="allow_changes",
        action="append",
        default=[],
        metavar="KEY",
        help="with --resume: a config key (or section) you changed on purpose, e.g. train.steps (repeatable); "
        "any other difference from the run's config is refused",
    )

    e = cmd("eval", "evaluate a run's selected checkpoint on a split")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test")
    e.add_argument("--data", help="another config whose data section names the dataset to evaluate on")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pr = cmd("predict", "predict every task for a video file or a folder of videos")
    pr.description += (
        "\n\nWith a run directory, a file that cannot be read (empty, corrupt, no video stream) is skipped:"
        '\nit is listed in the --json output as an entry with an "error" field and on stderr, one line per'
        "\nbad file after the results. A video shorter than the run's clip (data.frames) is predicted from"
        '\nrepeated frames, with a "warning" field and a line on stderr. Exit status: 0 when at least one'
        '\nfile was predicted (check the "error" entries for skipped ones), 2 when none could be.'
    )
    pr.add_argument("run_dir", help="a run directory, or kinetics400-i3d (the built-in pretrained I3D)")
    pr.add_argument("input", help="a video file or a folder of videos")
    pr.add_argument("--top", type=int, default=3)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--window", type=int, default=64, help="kinetics400-i3d: frames per window")
    pr.add_argument("--stride", type=int, default=32, help="kinetics400-i3d: frames between windows")

    fe = cmd("features", "per-segment T x D features of every clip of a manifest into a feature store")
    fe.add_argument("source", help="a manifest.csv (or its folder)")
    fe.add_argument(
        "--encoder", default="i3d", help="encoder alias or dotted path (default i3d, Kinetics-400)"
    )
    fe.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="encoder argument (repeatable)"
    )
    fe.add_argument("--window", type=int, default=16, help="frames per segment")
    fe.add_argument("--stride", type=int, default=8, help="frames between segment starts")
    fe.add_argument("--size", type=int, default=224, help="short side resize and centre crop")
    fe.add_argument("--batch-size", type=int, default=8, help="segments per forward pass")
    fe.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    fe.add_argument("--out", required=True, help="feature store folder (run again to resume)")

    tr = cmd("transfer", "train a new head for a target task on a run's encoder (frozen probe or finetune)")
    tr.add_argument("run_dir", help="a finished run directory (its best checkpoint is used)")
    tr.add_argument("--data", required=True, help="YAML run config naming the target data and task(s)")
    tr.add_argument("--probe", choices=["linear", "mlp", "finetune"], default="linear")
    tr.add_argument("--task", help="target task name in --data (default: its first primary task)")
    tr.add_argument("--out", required=True, help="output folder (transfer.json, probe, cached features)")
    tr.add_argument("--tap", default="pooled", help="encoder tap the probe reads (default pooled)")
    tr.add_argument("--epochs", type=int, default=100, help="linear/mlp: epochs over the cached features")
    tr.add_argument("--steps", type=int, default=200, help="finetune: optimiser steps")
    tr.add_argument("--lr", type=float, default=None, help="default 3e-3 (probes), 1e-3 (finetune)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the --data config (repeatable)")  # fmt: skip

    i = cmd("info", "list what exists: encoders, temporal modules, task kinds, balancers, data formats")
    i.add_argument("--json", action="store_true")

    d = cmd("demo", "the main job on the embedded synthetic world: single-task vs multi-task, end to end")
    d.add_argument(
        "--quick",
        action="store_true",
        help="720 clips, 150 steps, 1 seed: about 2 minutes on 2 cores (full: 3000 clips, 3 seeds x 600 steps, about 18 minutes)",
    )
    d.add_argument("--out", default="mtlhar-demo", help="output folder (default mtlhar-demo)")
    d.add_argument("--seeds", type=int, default=None, help="paired seeds (default 1 with --quick, 3 full)")

    st = cmd(
        "study", "single-task baselines vs multi-task variants over paired seeds, with intervals and tests"
    )
    st.add_argument("config", help="YAML study config (see configs/study-synth.yaml)")
    st.add_argument("--out", required=True, help="study directory (run again to resume)")
    st.add_argument("--seeds", type=int, default=None, help="paired seeds (default: the config's)")
    st.add_argument("--quick", action="store_true", help="apply the config's `quick` overrides")
    st.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once in worker processes, each with cores/jobs threads (default 1); under "
        "torchrun each process takes its share of the runs instead",
    )

    rp = cmd("report", "write the HTML report of a study or demo directory (DIR/report/index.html)")
    rp.add_argument("dir")

    da = cmd("data", "datasets: generate the synthetic action world")
    dsub = da.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser(
        "synth",
        help="generate the synthetic action world",
        epilog="Example:\n  " + EXAMPLES["data"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--out", required=True)
    s.add_argument("--clips", type=int, default=2000)
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--size", type=int, default=112)
    s.add_argument("--domain", action="append", dest="domains", help="training domain(s) (repeatable)")
    s.add_argument("--heldout-domain", default="lowlight")
    s.add_argument(
        "--long-tail", type=float, default=None, help="imbalance ratio of the train split, e.g. 50"
    )
    s.add_argument("--composite", action="store_true", help="clips of 2-3 actions with a multi-label column")
    s.add_argument("--occlusion", type=float, default=0.0, help="probability of an occluding box per clip")
    s.add_argument("--distractors", type=float, default=0.0, help="probability of moving background blobs")
    s.add_argument("--clutter", type=float, default=0.0, help="probability of static clutter shapes")
    s.add_argument(
        "--noise", type=float, default=None, help="sensor noise std in 8-bit levels (default: per domain)"
    )
    s.add_argument(
        "--store-flow",
        action="store_true",
        help="also write DIR/flow/<id>.npy (else load_flow computes it exactly)",
    )
    s.add_argument("--codec", choices=["h264", "ffv1"], default="h264")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=1)
    ins = dsub.add_parser(
        "inspect",
        help="counts, missing labels, duplicates, imbalance and unreadable files",
        epilog="Example:\n  mtlhar data inspect /data/UCF101 --format ucf101 --option split=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ins.add_argument("source", help="a manifest.csv (or its folder), or a dataset root with --format")
    ins.add_argument("--format", default=None, help="dataset format (see `mtlhar info`); default: a manifest")
    ins.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option")
    ins.add_argument("--no-files", action="store_true", help="skip opening every file")
    ins.add_argument("--json", action="store_true")
    cv = dsub.add_parser(
        "convert",
        help="read a dataset in its native layout and write an mtlhar manifest",
        epilog="Example:\n  mtlhar data convert ucf101 /data/UCF101 --out data/ucf101 --option split=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cv.add_argument("format")
    cv.add_argument("root")
    cv.add_argument("--out", required=True)
    cv.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option")
    c = dsub.add_parser(
        "cache",
        help="decode every video once into a JPEG frame cache (resumable)",
        epilog="Example:\n  mtlhar data cache data/synth/manifest.csv --out data/synth-cache --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("manifest")
    c.add_argument("--out", required=True)
    c.add_argument("--short-side", type=int, default=128, help="resize so the short side is this (0: keep)")
    c.add_argument("--fps", type=float, default=None, help="keep at most this many frames per second")
    c.add_argument("--quality", type=int, default=90, help="JPEG quality")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument(
        "--decoder",
        choices=["pyav", "torchcodec"],
        default=None,
        help="video decoder (default: $MTLHAR_VIDEO_BACKEND, else pyav)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(_run(args) or 0)
    except MtlharError as e:
        if args.debug:
            raise
        print(f"mtlhar {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted (a run can continue with --resume)", file=sys.stderr)
        return 130


def _run(args) -> int:
    if args.command == "train":
        from .config import load_config
        from .train import train

        cfg = load_config(args.config, args.overrides)
        out = args.out or str(Path("runs") / (cfg.name or Path(args.config).stem))
        if args.allow_changes and not args.resume:
            raise ConfigError("--allow-change is only used with --resume")
        res = train(cfg, out, resume=args.resume, allow_changes=args.allow_changes)
        from .distributed import launched

        if not launched().main:  # under torchrun, rank 0 alone reports
            return 0
        print(
            f"run {res.run_dir}: {res.steps} steps in {res.wall_time_s:.0f}s; best step {res.best_step}, "
            f"validation score {res.best_score:.4f}"
        )
        _print_metrics(res.val_metrics, "validation metrics of the selected checkpoint")
        return 0
    if args.command == "eval":
        from .evaluate import evaluate_run

        data = None
        if args.data:
            from .config import load_config

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
            _print_metrics(res["metrics"], f"{args.run_dir} on split '{args.split}' ({res['n']} clips)")
            print(f"written to {out}")
        return 0
    if args.command == "predict" and args.run_dir == "kinetics400-i3d":
        from .pretrained import predict_kinetics

        results = predict_kinetics(args.input, top=args.top, window=args.window, stride=args.stride)
        if args.json:
            print(json.dumps(results, indent=2))
        for r in [] if args.json else results:
            print(
                f"{r['file']} ({r['frames']} frames): " + ", ".join(f"{c} {p:.2f}" for c, p in r["overall"])
            )
            for w in r["windows"]:
                span = (
                    f"{w['start_s']:7.2f}-{w['end_s']:.2f}s" if "start_s" in w else f"{w['start']}-{w['end']}"
                )
                print(f"  {span}: " + ", ".join(f"{c} {p:.2f}" for c, p in w["top"]))
        return 0
    if args.command == "features":
        from .features import extract_features

        res = extract_features(
            args.source,
            args.out,
            encoder=args.encoder,
            encoder_args=_options(args.option) or None,
            window=args.window,
            stride=args.stride,
            size=args.size,
            batch_size=args.batch_size,
            device=args.device,
            progress=_bar("extracting features"),
        )
        print(
            f"{res['out']}: {res['written']} clips written, {res['skipped']} already there, "
            f"{len(res['failed'])} failed; {res['dim']}-d features; train on them with data.manifest="
            f"{Path(res['out']) / 'manifest.csv'}, data.stream=features, model.encoder=features"
        )
        for f in res["failed"]:
            print(f"  skipped {f['path']}: {f['reason']}")
        return 0
    if args.command == "predict":
        from .errors import DataError
        from .predict import predict_path

        results = predict_path(args.run_dir, args.input, top=args.top)
        bad = [r for r in results if "error" in r]
        if len(bad) == len(results) == 1:  # a single bad file: its error, as one line
            raise DataError(bad[0]["error"])
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                if "error" in r:
                    continue
                print(r["file"])
                for task, preds in r["predictions"].items():
                    text = (
                        ", ".join(f"{c} {p:.2f}" if isinstance(p, float) else str(c) for c, p in preds)
                        if preds and isinstance(preds[0], (list, tuple))
                        else str(preds)
                    )
                    print(f"  {task}: {text}")
        sys.stdout.flush()
        for r in results:
            if "warning" in r:
                print(f"mtlhar predict: warning: {r['warning']}", file=sys.stderr)
        for r in bad:
            print(f"mtlhar predict: skipped: {r['error']}", file=sys.stderr)
        if len(bad) == len(results):
            raise DataError(f"{args.input}: none of the {len(bad)} video files could be predicted")
        return 0
    if args.command == "transfer":
        from .config import load_config
        from .transfer import transfer

        target = load_config(args.data, args.overrides)
        res = transfer(args.run_dir, target, probe=args.probe, task=args.task, out=args.out, tap=args.tap,
                       epochs=args.epochs, steps=args.steps, lr=args.lr, seed=args.seed)  # fmt: skip
        _print_metrics(res["metrics"], f"{args.probe} probe of {args.run_dir} on '{res['task']}'")
        print(f"written to {Path(args.out) / 'transfer.json'}")
        return 0
    if args.command == "info":
        from .info import info

        data = info()
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            for section, entries in data.items():
                print(f"{section}:")
                if isinstance(entries, dict):
                    for k, v in entries.items():
                        print(f"  {k:<16} {v}")
                else:
                    print(f"  {entries}")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        run_demo(out=args.out, quick=args.quick, seeds=args.seeds)
        _write_report(args.out)
        return 0
    if args.command == "study":
        from rich.console import Console

        from .demo import print_summary
        from .study import load_study, run_study

        if args.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
        results = run_study(
            load_study(args.config), args.out, seeds=args.seeds, quick=args.quick, jobs=args.jobs
        )
        if not results:  # a torchrun process other than 0: process 0 reports
            return 0
        print_summary(Console(), results)
        _write_report(args.out)
        return 0
    if args.command == "report":
        _write_report(args.dir)
        return 0
    if args.command == "data" and args.data_command in ("inspect", "convert"):
        options = _options(args.option)
        if args.data_command == "convert":
            from .data.formats import convert

            path = convert(args.format, args.root, args.out, **options)
            print(f"wrote {path}")
            return 0
        from .data.inspect import inspect_source, print_inspection

        report = inspect_source(args.source, args.format, check_files=not args.no_files, **options)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_inspection(report)
        return 0
    if args.command == "data" and args.data_command == "cache":
        from .data.frame_cache import build_cache

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
    if args.command == "data" and args.data_command == "synth":
        from .data import synth

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
        try:
            path = synth.generate(args.out, progress=_bar("generating clips"), **kwargs)
        except ValueError as e:  # the generator's own checks of its settings
            raise ConfigError(str(e)) from None
        print(f"wrote {path} ({sum(1 for _ in open(path)) - 1} clips); see {Path(args.out) / 'README.md'}")
        return 0
    raise AssertionError(args.command)


def _options(items: list[str]) -> dict:
    """--option key=value pairs, values parsed as YAML scalars (numbers, booleans, strings)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise MtlharError(f"--option expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def _write_report(folder):
    """Build the HTML report of a study folder and return its path."""
    from .report import build_report

    if not (Path(folder) / "results.json").is_file():
        raise MtlharError(f"{folder}: no results.json (run `mtlhar study` or `mtlhar demo` into it first)")
    path = build_report(folder)
    print(f"report: {path}")
    return path


def _bar(label: str):
    """A progress callback (done, total) drawing a rich bar on the terminal."""
    from rich.progress import Progress

    state = {}

    def update(done: int, total: int) -> None:
        if "p" not in state:
            state["p"] = Progress(transient=True)
            state["p"].start()
            state["id"] = state["p"].add_task(label, total=total)
        state["p"].update(state["id"], completed=done)
        if done >= total:
            state["p"].stop()

    return update


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for task, m in metrics.items():
        for i, (name, value) in enumerate(m.items()):
            table.add_row(task if i == 0 else "", name, f"{value:.4f}")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
