"""How hard is the synthetic action world? Calibration of its default settings (issue: synthetic world).

Trains the demo's small 3D CNN (RGB differences, spatial max, wsd schedule) on the fine actions for a fixed
wall-clock budget (default 5 minutes; the step count is set from the step rate measured at the start, so
the schedule ends on time) and compares:

- `motion`: the clip model (8 frames), tested on unseen subjects (`test`) and on the held-out domain;
- `single_frame`: the same network fed one frame per clip (random in training, the middle one at test);
- `background`: the clip model trained and tested on videos where the figure and the object are hidden
  behind a grey box (the union of their masks over the clip, dilated, full height): what is left is
  background, camera and domain;
- `shuffled`: the clip model trained on shuffled fine labels (a floor for what memorisation gives).

It also checks from the manifest that no label is predictable from another beyond the declared relations
(fine -> coarse/template, subject -> attributes): chi-square tests and Cramer's V of fine vs subject,
domain and view.

    python benchmarks/synth_difficulty.py                 # default: 3000 clips, 5 minutes per model
    python benchmarks/synth_difficulty.py --minutes 1 --clips 900   # a quicker look

Prints tables; writes OUT/difficulty.json. Figures depend on the machine (it says how many steps fit).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chi2_contingency

from mtlhar.config import RunConfig, from_dict
from mtlhar.data.synth import TIME_ORDER_PAIRS, decode_video, load_pose, read_manifest
from mtlhar.data.synth.scene import OBJ_LABEL
from mtlhar.data.synth.store import encode_video
from mtlhar.data.synth_cache import ensure_synth
from mtlhar.evaluate import evaluate_run, load_predictions, load_run
from mtlhar.train import Trainer


def cramers_v(a: list[str], b: list[str]) -> tuple[float, float]:
    """(Cramer's V, chi-square p-value) of two label columns."""
    ua, ub = sorted(set(a)), sorted(set(b))
    ia, ib = {v: i for i, v in enumerate(ua)}, {v: i for i, v in enumerate(ub)}
    table = np.zeros((len(ua), len(ub)))
    for x, y in zip(a, b):
        table[ia[x], ib[y]] += 1
    chi2, p, _, _ = chi2_contingency(table)
    v = np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
    return float(v), float(p)


def independence(rows: list[dict]) -> list[dict]:
    out = []
    for other in ("subject", "domain", "view"):
        rs = [r for r in rows if r["split"] in ("train", "val", "test")]
        v, p = cramers_v([r["fine"] for r in rs], [r[other] for r in rs])
        out.append({"pair": f"fine vs {other}", "cramers_v": v, "p": p})
    return out


def background_only(src_manifest: Path, out: Path) -> Path:
    """A copy of the dataset whose videos hide the figure and object behind a grey full-height box."""
    done = out / "manifest.csv"
    if done.exists():
        return done
    src = src_manifest.parent
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = read_manifest(src_manifest)
    for r in rows:
        v = decode_video(src / r["path"])
        pose = load_pose(src, r)
        label = pose["label"]  # [T,H,W] layer ids
        fg = (label >= 1) & (label <= OBJ_LABEL)  # the figure's parts and its object
        cols = np.flatnonzero(fg.any(axis=(0, 1)))
        x = v.copy()
        if cols.size:
            lo, hi = max(0, cols.min() - 3), min(v.shape[2], cols.max() + 4)
            x[:, :, lo:hi] = 128
        rgba = np.concatenate([x, np.zeros(x.shape[:3] + (1,), np.uint8)], -1)
        encode_video(out / r["path"], rgba, 16)
    with open(src_manifest, newline="") as f, open(out / "manifest.tmp", "w", newline="") as g:
        g.write(f.read())
    (out / "manifest.tmp").rename(done)
    return done


def config(manifest: Path, *, frames: int, steps: int, column: str = "fine", seed: int = 0) -> RunConfig:
    """The demo's model and schedule (`mtlhar.demo.demo_spec`: small3d with RGB differences and a spatial
    max, wsd), fine actions only."""
    from mtlhar.demo import demo_spec

    model = demo_spec(quick=False).base["model"]
    return from_dict(
        RunConfig,
        {
            "data": {"manifest": str(manifest), "frames": frames, "size": 64, "cache": True},
            "model": model,
            "tasks": [{"name": "fine", "column": column}],
            "train": {
                "steps": steps,
                "batch_size": 32,
                "lr": 3e-3,
                "schedule": "wsd",
                "warmup_steps": min(20, steps // 10),
                "eval_every": max(steps // 5, 1),
                "checkpoint_every": max(steps // 5, 1),
                "seed": seed,
                "progress": False,
            },
        },
    )


def steps_for(manifest: Path, frames: int, minutes: float) -> tuple[int, float]:
    """Steps that fill `minutes`: the budget less the one-time decoding of the training clips (measured on
    24 clips; later epochs read the in-memory cache), divided by the time of one training step of the
    model on a batch of this shape (measured over 5 steps after 2 warm-up steps)."""
    from mtlhar.build import build_model, make_dataset
    from mtlhar.data.dataset import resolve_tasks
    from mtlhar.data.manifest import Manifest

    cfg = config(manifest, frames=frames, steps=1)
    m = Manifest.read(str(manifest))
    tasks = resolve_tasks(cfg.tasks, m)
    ds = make_dataset(cfg, m, tasks, "train", train=True, cache=False)
    t0 = time.perf_counter()
    batch = [ds[i] for i in range(24)]
    decode = (time.perf_counter() - t0) / 24 * len(ds)
    x = torch.stack([b["inputs"]["rgb"] for b in batch] + [batch[0]["inputs"]["rgb"]] * 8)  # batch of 32
    model = build_model(cfg, tasks)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        loss = model({"rgb": x}).heads["fine"].output.logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[2:]))
    return max(20, int((minutes * 60 - decode) / per_step)), per_step


def pair_accuracy(run: Path, split: str) -> tuple[float, float]:
    """(top-1 on the clips of direction / time-order pairs, fraction of those predicted as the partner)."""
    _, tasks, _ = load_run(run)
    classes = tasks[0].classes
    pred = load_predictions(run / f"predictions_{split}.npz")
    y, out = pred["targets"]["fine"].astype(int), pred["outputs"]["fine"]
    p = out.argmax(-1)
    partner = {}
    for a, b in TIME_ORDER_PAIRS:
        if a in classes and b in classes:
            partner[classes.index(a)], partner[classes.index(b)] = classes.index(b), classes.index(a)
    sel = np.array([t in partner for t in y])
    if not sel.any():
        return float("nan"), float("nan")
    swapped = np.array([partner.get(t, -1) == q for t, q in zip(y, p)])
    return float((p[sel] == y[sel]).mean()), float(swapped[sel].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    ap.add_argument("--out", default="difficulty-out")
    ap.add_argument("--only", nargs="*", default=None, help="variants to run (default all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    manifest = ensure_synth(clips=args.clips, frames=16, size=64, seed=0)
    rows = read_manifest(manifest)
    n_fine = len({r["fine"] for r in rows})

    print(f"dataset {manifest.parent} ({len(rows)} clips, {n_fine} fine classes, chance {1 / n_fine:.3f})")
    indep = independence(rows)
    print(f"\n{'relation':<22}{'Cramer V':>10}{'chi2 p':>10}")
    for e in indep:
        print(f"{e['pair']:<22}{e['cramers_v']:>10.3f}{e['p']:>10.3f}")

    shuffled = work / "shuffled_manifest.csv"
    if not shuffled.exists():
        rng = np.random.default_rng(0)
        perm = rng.permutation(len(rows))
        with open(manifest, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames) + ["fine_shuffled"]
            data = list(reader)
        for r, j in zip(data, perm):
            r["fine_shuffled"] = data[j]["fine"]
        tmp = manifest.parent / "manifest_shuffled.csv"
        with open(tmp, "w", newline="") as g:
            w = csv.DictWriter(g, fieldnames=fields)
            w.writeheader()
            w.writerows(data)
        shuffled.write_text(str(tmp))
    variants = {
        "motion": (manifest, 8, "fine"),
        "single_frame": (manifest, 1, "fine"),
        "background": (None, 8, "fine"),
        "shuffled": (Path(shuffled.read_text()), 8, "fine_shuffled"),
    }
    results = []
    for name, (mpath, frames, column) in variants.items():
        if args.only and name not in args.only:
            continue
        if name == "background":
            t0 = time.perf_counter()
            mpath = background_only(manifest, manifest.parent.with_name(manifest.parent.name + "-bgonly"))
            print(f"background-only videos written in {time.perf_counter() - t0:.0f}s")
        steps, per_step = steps_for(mpath, frames, args.minutes)
        run = work / name
        t0 = time.perf_counter()
        cfg = config(mpath, frames=frames, steps=steps, column=column)
        if not (run / "summary.json").exists():
            Trainer(cfg, run).fit()
        wall = time.perf_counter() - t0
        entry = {"variant": name, "frames": frames, "steps": steps, "s_per_step": per_step, "wall_s": wall}
        for split in ("test", "test_xdomain"):
            m = evaluate_run(run, split=split)["metrics"]["fine"]
            pa, swap = pair_accuracy(run, split)
            entry[split] = {
                "top1": m["top1"],
                "macro_f1": m["macro_f1"],
                "pair_top1": pa,
                "pair_swapped": swap,
            }
        results.append(entry)
        print(
            f"{name}: {steps} steps in {wall:.0f}s, test top1 {entry['test']['top1']:.3f}, "
            f"pairs {entry['test']['pair_top1']:.3f}"
        )

    print(
        f"\n{'variant':<14}{'frames':>7}{'steps':>7}{'wall s':>8}{'test top1':>11}{'xdomain':>9}"
        f"{'pair top1':>11}{'swapped':>9}"
    )
    for e in results:
        t, x = e["test"], e["test_xdomain"]
        print(
            f"{e['variant']:<14}{e['frames']:>7}{e['steps']:>7}{e['wall_s']:>8.0f}{t['top1']:>11.3f}"
            f"{x['top1']:>9.3f}{t['pair_top1']:>11.3f}{t['pair_swapped']:>9.3f}"
        )
    base = next((e for e in results if e["variant"] == "motion"), None)
    if base:
        for e in results:
            if e is not base:
                d = 100 * (base["test"]["pair_top1"] - e["test"]["pair_top1"])
                print(f"motion - {e['variant']}: {d:+.1f} points on the pair classes (test)")
    (work / "difficulty.json").write_text(
        json.dumps({"chance": 1 / n_fine, "independence": indep, "results": results}, indent=2)
    )
    print(f"\nwritten {work / 'difficulty.json'}")


if __name__ == "__main__":
    main()
