"""Cost of every task balancer per training step, as a ratio to equal weighting measured in the same run.

Fixed setup (CPU): encoder small3d width 16, batch 16, uint8 clips 8 x 64 x 64, SGD; head sets of 2, 4
and 8 classification heads (10 classes, on `pooled`), and two "dense" sets: 2 classification heads plus
one dense frame decoder (ConvTranspose3d layers, x2 in space each, up to the input size; MSE to the
input frames) reading
- the encoder's last feature map (stage4), as Rev2Net's decoders read the encoder's output z: the shared
  tensor is that map, one pooling below the classification heads;
- a mid-level map (stage2): the shared tensor is stage2, two encoder stages below the classification
  heads. Each classification task's gradient on it needs its own backward through stage3 and stage4
  (the heads' "cheap" backward is no longer cheap), so this set is reported as measured, without the
  1.2x target: the cost of putting a decoder low in the network.
With CUDA also: r2plus1d_18, 16 x 112 x 112, bf16 autocast.

Time: wall time of a full step (forward, balancer backward, optimiser step). Each method is timed in one
process next to its own equal-weighting twin (same model, same batch), their steps interleaved (method
first on odd steps, equal first on even ones) after one warm-up step each; the ratio is the median of the
per-step ratios, so a load that drifts during the run cancels; its 95% interval is the distribution-free
one from order statistics. The row `equal A/A` pairs equal weighting with its own twin: this machine's
noise floor in this run. A median above its target is `MISSED` when the whole interval is above it, and
`above, within noise` when the interval reaches the target. Representation mode delivers the update with
the model's parameters given (`params=`: each head traversed once); `--compare-summed` adds rows
`rep-summed`: the same methods with the weighted sum backpropagated again (the DDP path);
`--update-every K` adds rows `rep-everyK` (representation mode solving every K steps) and `everyK`
(GradNorm taking its gradient norms every K steps).

GradNorm is timed without a target: the issue lists it with the one-backward loss weightings, but its
norms take one gradient of the last shared layer per task (K weight gradients of that layer on top of the
summed backward), which `update_every` amortises.
Peak memory: on CPU each configuration runs in a forked child and reports
`resource.getrusage(RUSAGE_SELF).ru_maxrss` minus the child's resident set size just before its first
step (so it includes activations, gradients and the balancer's temporaries); on CUDA
`torch.cuda.max_memory_allocated` minus the allocation before the first step.

    python benchmarks/balancers.py            # every head set, 30 interleaved timed steps
    python benchmarks/balancers.py --quick    # 4 classification heads and dense (last map), 5 steps
    python benchmarks/balancers.py --quick --compare-summed   # + representation mode's DDP path
    python benchmarks/balancers.py --update-every 2           # + gradient methods solving every 2 steps
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mtlhar.balancing import BALANCERS, GradientBalancer, build_balancer
from mtlhar.models import build_encoder

SINGLE_BACKWARD = {"equal", "static", "uncertainty", "dwa", "rlw", "famo"}
TARGETS = {"single": 1.05, "representation": 1.2}


class Decoder(nn.Module):
    """feature map -> frames: `n_up` transposed convolutions (x2 in space each; 16 channels between),
    then resized to the input's shape (time, and space when the factor is not a power of 2)."""

    def __init__(self, channels: int, n_up: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_up):
            out = 3 if i == n_up - 1 else 16
            layers.append(nn.ConvTranspose3d(channels, out, (1, 4, 4), (1, 2, 2), (0, 1, 1)))
            if out != 3:
                layers.append(nn.ReLU())
            channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        y = self.net(x)
        return y if y.shape[2:] == size else F.interpolate(y, size=size, mode="trilinear")


def last_map(encoder: nn.Module) -> str:
    return [n for n, (_, layout) in encoder.taps.items() if layout == "map"][-1]


class Bench(nn.Module):
    """The encoder, `n_cls` linear heads on `pooled` and, with `dense` (a map tap's name, or "last"), a
    frame decoder on that map. `example`: an input clip, to size the decoder."""

    def __init__(self, encoder: nn.Module, n_cls: int, dense: str | None, example: torch.Tensor, classes=10):
        super().__init__()
        self.encoder = encoder
        dim = encoder.taps["pooled"][0]
        self.heads = nn.ModuleDict({f"cls{i}": nn.Linear(dim, classes) for i in range(n_cls)})
        self.dense_tap = last_map(encoder) if dense == "last" else dense
        self.decoder = None
        if self.dense_tap is not None:
            with torch.no_grad():
                side = encoder(example[:1])[self.dense_tap].shape[-1]
            n_up = max(1, round(math.log2(example.shape[-1] / side)))
            self.decoder = Decoder(encoder.taps[self.dense_tap][0], n_up)
        self.shared_tap = self.dense_tap or "pooled"

    def forward(self, x, labels):
        taps = self.encoder(x)
        losses = {n: F.cross_entropy(h(taps["pooled"]).float(), labels[n]) for n, h in self.heads.items()}
        if self.decoder is not None:
            frames = x.float() / 255.0
            recon = self.decoder(taps[self.dense_tap], frames.shape[2:]).float()
            losses["frames"] = F.mse_loss(recon, frames)
        return losses, taps[self.shared_tap]


def configurations(summed: bool = False, every: int = 1, methods: list[str] | None = None):
    """(method, mode) rows: `-` for loss weighting, `A/A` for equal weighting against itself, `rep-summed`
    (representation mode through the summed backward), `rep-everyK` (representation mode, update_every K),
    `everyK` (GradNorm's norms every K steps). `methods`: only these (and equal, the baseline)."""
    for name, (cls, _) in BALANCERS.items():
        if methods and name not in methods and name != "equal":
            continue
        gradient = issubclass(cls, GradientBalancer)
        yield name, "representation" if gradient else "-"
        if name == "equal":
            yield name, "A/A"
        if name == "gradnorm" and every > 1:
            yield name, f"every{every}"
        if gradient:
            if summed:
                yield name, "rep-summed"
            if every > 1:
                yield name, f"rep-every{every}"
            yield name, "parameters"


def make_step(setup: dict, name: str, mode: str):
    """A closure running one training step of one configuration (its own model, batch and optimiser)."""
    torch.manual_seed(0)
    dev = torch.device(setup["device"])
    b, t, s = setup["batch"], setup["frames"], setup["size"]
    x = torch.randint(0, 256, (b, 3, t, s, s), dtype=torch.uint8, device=dev)
    enc = build_encoder(setup["encoder"], **setup["encoder_args"]).to(dev)
    model = Bench(enc, setup["n_cls"], setup["dense"], x).to(dev)
    labels = {n: torch.randint(0, 10, (b,), device=dev) for n in model.heads}
    tasks = list(model.heads) + (["frames"] if model.decoder is not None else [])
    deliver = mode != "rep-summed"
    args = {}
    if "every" in mode:
        args["update_every"] = int(mode.split("every")[1])
    if mode not in ("-", "A/A") and not mode.startswith("every"):
        args["mode"] = "parameters" if mode == "parameters" else "representation"
    balancer = build_balancer(name, tasks, {}, args).to(dev)
    opt = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.0)
    present = dict.fromkeys(tasks, True)
    amp = dev.type == "cuda"

    def step(i: int) -> float:
        if amp:
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            losses, shared = model(x, labels)
        if balancer.needs_gradients:
            balancer.backward(
                losses,
                present,
                step=i,
                extra=None,
                shared=shared,
                shared_params=list(model.encoder.parameters()),
                scale=lambda v: v,
                params=list(model.parameters()) if deliver else (),
            )
        else:
            total, _ = balancer.combine(losses, present, i)
            total.backward()
        opt.step()
        if amp:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def measure(setup: dict, name: str, mode: str, steps: int) -> tuple[float, float]:
    """(median seconds per step, peak memory in MiB) of one configuration."""
    step = make_step(setup, name, mode)
    amp = setup["device"] == "cuda"
    if amp:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_kib()
    times = [step(i) for i in range(steps + 1)]
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if amp else (_maxrss_kib() - base) / 1024
    return statistics.median(times[1:]), peak


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics (j, k) with
    P(X_(j) <= median <= X_(k)) >= level under Binomial(n, 1/2); the whole range when n is too small."""
    x, n = sorted(values), len(values)
    cdf, j = 0.0, 0
    while j < n // 2 and cdf + math.comb(n, j) / 2**n <= (1 - level) / 2:
        cdf += math.comb(n, j) / 2**n
        j += 1
    return x[max(j - 1, 0)] if j else x[0], x[n - j] if j else x[-1]


def paired(setup: dict, name: str, mode: str, steps: int) -> tuple[float, ...]:
    """(median seconds per step of the method, median of its per-step ratios to equal weighting, that
    median's 95% interval), both run in this process with their steps interleaved."""
    method, equal = make_step(setup, name, mode), make_step(setup, "equal", "-")
    method(0), equal(0)  # warm-up
    times, ratios = [], []
    for i in range(1, steps + 1):
        if i % 2:
            tm, te = method(i), equal(i)
        else:
            te, tm = equal(i), method(i)
        times.append(tm)
        ratios.append(tm / te)
    return (statistics.median(times), statistics.median(ratios), *median_interval(ratios))


def forked(fn, *args) -> tuple[float, ...]:
    """`fn(*args)` -> a tuple of floats, run in a forked child (so that ru_maxrss is that child's own peak)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            res = fn(*args)
            os.write(w, " ".join(map(str, res)).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"benchmark child {fn.__name__}{args[1:3]} failed")
    return tuple(float(v) for v in data.split())


def kind(name: str, mode: str) -> str:
    if mode == "A/A":
        return mode
    return "single" if name in SINGLE_BACKWARD else ("representation" if mode == "representation" else mode)


def judge(ratio: float, low: float, target: float | None) -> str:
    """`met` (median ratio within the target), `MISSED` (the whole interval above it), or `above, within
    noise` (the median is above but the interval reaches the target)."""
    if target is None or ratio <= target:
        return "met"
    return "MISSED" if low > target else "above, within noise"


def run(
    setups: list[dict], steps: int, summed: bool = False, every: int = 1, methods: list[str] | None = None
) -> dict[str, list[str]]:
    misses: dict[str, list[str]] = {}
    for setup in setups:
        cuda = setup["device"] == "cuda"

        def run_(fn, *args, cuda=cuda):
            return fn(*args) if cuda else forked(fn, *args)

        print(f"\n## {setup['label']}")
        print(
            f"{'method':<12} {'mode':<15} {'ms/step':>9} {'x equal':>8} {'95% interval':>13} {'peak MiB':>9} "
            f"{'x equal':>8}  target"
        )
        base_t = run_(measure, setup, "equal", "-", steps)[0]
        base_m = run_(measure, setup, "equal", "-", 1)[1]  # every peak: the same 2 steps in a fresh child
        for name, mode in configurations(summed, every, methods):
            if name == "equal" and mode == "-":
                t, m, rt, lo, hi = base_t, base_m, 1.0, math.nan, math.nan
            else:
                t, rt, lo, hi = run_(paired, setup, name, "-" if mode == "A/A" else mode, steps)
                m = run_(measure, setup, name, mode, 1)[1]
            rm = m / max(base_m, 1e-9)
            target = TARGETS.get(kind(name, mode))
            if name == "equal" or (setup.get("no_target") and kind(name, mode) == "representation"):
                target = None
            verdict = judge(rt, lo, target)
            flag = "" if target is None else f"<= {target}" + ("" if verdict == "met" else f"  {verdict}")
            if setup.get("no_target") and kind(name, mode) == "representation":
                flag = "(no target: see docstring)"
            if verdict != "met":
                misses.setdefault(verdict, []).append(f"{setup['label']}: {name}/{mode} {rt:.2f}x")
            interval = "" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"
            print(
                f"{name:<12} {mode:<15} {t * 1e3:>9.1f} {rt:>8.2f} {interval:>13} {m:>9.1f} {rm:>8.2f}  {flag}"
            )
    return misses


DENSE_NAMES = {"last": "frame decoder on the last map", "stage2": "frame decoder on stage2 (mid-level)"}


def head_sets(quick: bool) -> list[tuple[int, str | None]]:
    if quick:
        return [(4, None), (2, "last")]
    return [(2, None), (4, None), (8, None), (2, "last"), (2, "stage2")]


def setup_list(quick: bool, cuda: bool) -> list[dict]:
    cpu = {"device": "cpu", "encoder": "small3d", "encoder_args": {"width": 16}, "batch": 16}
    cpu |= {"frames": 8, "size": 64, "label": "cpu small3d-w16 b16 8x64x64"}
    gpu = {"device": "cuda", "encoder": "r2plus1d_18", "encoder_args": {}, "batch": 16}
    gpu |= {"frames": 16, "size": 112, "label": "cuda r2plus1d_18 b16 16x112x112"}
    out = []
    for base in [cpu, gpu] if cuda else [cpu]:
        for n, dense in head_sets(quick):
            label = f"{base['label']}, {n} cls" + (f" + {DENSE_NAMES[dense]}" if dense else "")
            # a mid-level tap puts encoder stages between the shared tensor and the classification heads:
            # measured, without the representation-mode target (see the module's docstring)
            out.append({**base, "n_cls": n, "dense": dense, "label": label, "no_target": dense == "stage2"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 heads and dense (last map) only, 5 timed steps")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 30)")
    ap.add_argument(
        "--compare-summed", action="store_true", help="also time representation mode's summed-backward path"
    )
    ap.add_argument(
        "--update-every",
        type=int,
        default=1,
        metavar="K",
        help="also time gradient methods with update_every K",
    )
    ap.add_argument("--methods", nargs="+", choices=list(BALANCERS), help="only these methods (and equal)")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA setup even if a GPU is present")
    args = ap.parse_args()
    steps = args.steps or (5 if args.quick else 30)
    torch.set_num_threads(min(os.cpu_count() or 1, 8))
    setups = setup_list(args.quick, torch.cuda.is_available() and not args.no_cuda)
    start = time.perf_counter()
    misses = run(setups, steps, args.compare_summed, args.update_every, args.methods)
    n_conf = sum(1 for _ in configurations(args.compare_summed, args.update_every, args.methods))
    print(
        f"\nsummary: {len(setups)} setups x {n_conf} configurations, {steps} steps each, in "
        f"{time.perf_counter() - start:.0f}s; targets (single-backward <= 1.05x, representation <= 1.2x of "
        f"equal time, median of per-step ratios) "
        + (
            "all met"
            if not misses
            else "; ".join(f"{k}: {len(v)} ({', '.join(v)})" for k, v in misses.items())
        )
    )


if __name__ == "__main__":
    main()
