"""Cost of every task balancer per training step, as a ratio to equal weighting measured in the same run.

Fixed setup (CPU): encoder small3d width 16, batch 16, uint8 clips 8 x 64 x 64, SGD; head sets of 2, 4
and 8 classification heads (10 classes, on `pooled`), and "dense": 2 classification heads plus one dense
frame decoder (two ConvTranspose3d layers reading `stage2`, MSE to the input frames), which makes the
shared tensor the stage2 feature map. With CUDA also: r2plus1d_18, 16 x 112 x 112, bf16 autocast.

Time: wall time of a full step (forward, balancer backward, optimiser step). Each method is timed in one
process next to its own equal-weighting twin (same model, same batch), their steps interleaved (method
first on odd steps, equal first on even ones) after one warm-up step each; the ratio is the median of the
per-step ratios, so a load that drifts during the run cancels. Representation mode delivers the update
with the model's parameters given (`params=`: each head traversed once); `--compare-summed` adds rows
`rep-summed`: the same methods with the weighted sum backpropagated again (the DDP path).
Peak memory: on CPU each configuration runs in a forked child and reports
`resource.getrusage(RUSAGE_SELF).ru_maxrss` minus the child's resident set size just before its first
step (so it includes activations, gradients and the balancer's temporaries); on CUDA
`torch.cuda.max_memory_allocated` minus the allocation before the first step.

    python benchmarks/balancers.py            # every head set, 8 interleaved timed steps
    python benchmarks/balancers.py --quick    # 4 classification heads and dense, 3 steps
    python benchmarks/balancers.py --quick --compare-summed   # + representation mode's DDP path
"""

from __future__ import annotations

import argparse
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
    """stage2 map -> frames: two transposed convolutions (x4 in space), then time resized to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose3d(channels, 16, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            nn.ReLU(),
            nn.ConvTranspose3d(16, 3, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
        )

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        y = self.net(x)
        return y if y.shape[2:] == size else F.interpolate(y, size=size, mode="trilinear")


class Bench(nn.Module):
    def __init__(self, encoder: nn.Module, n_cls: int, dense: bool, classes: int = 10):
        super().__init__()
        self.encoder = encoder
        dim = encoder.taps["pooled"][0]
        self.heads = nn.ModuleDict({f"cls{i}": nn.Linear(dim, classes) for i in range(n_cls)})
        self.decoder = Decoder(encoder.taps["stage2"][0]) if dense else None
        self.shared_tap = "stage2" if dense else "pooled"

    def forward(self, x, labels):
        taps = self.encoder(x)
        losses = {n: F.cross_entropy(h(taps["pooled"]).float(), labels[n]) for n, h in self.heads.items()}
        if self.decoder is not None:
            frames = x.float() / 255.0
            losses["frames"] = F.mse_loss(self.decoder(taps["stage2"], frames.shape[2:]).float(), frames)
        return losses, taps[self.shared_tap]


def configurations(summed: bool = False):
    for name, (cls, _) in BALANCERS.items():
        yield name, "representation" if issubclass(cls, GradientBalancer) else "-"
        if issubclass(cls, GradientBalancer):
            if summed and name != "gradnorm":
                yield name, "rep-summed"
            yield name, "parameters"


def make_step(setup: dict, name: str, mode: str):
    """A closure running one training step of one configuration (its own model, batch and optimiser)."""
    torch.manual_seed(0)
    dev = torch.device(setup["device"])
    enc = build_encoder(setup["encoder"], **setup["encoder_args"])
    model = Bench(enc, setup["n_cls"], setup["dense"]).to(dev)
    b, t, s = setup["batch"], setup["frames"], setup["size"]
    x = torch.randint(0, 256, (b, 3, t, s, s), dtype=torch.uint8, device=dev)
    labels = {n: torch.randint(0, 10, (b,), device=dev) for n in model.heads}
    tasks = list(model.heads) + (["frames"] if setup["dense"] else [])
    deliver = mode != "rep-summed"
    mode = "representation" if mode == "rep-summed" else mode
    balancer = build_balancer(name, tasks, {}, {"mode": mode} if mode != "-" else {}).to(dev)
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


def paired(setup: dict, name: str, mode: str, steps: int) -> tuple[float, float]:
    """(median seconds per step of the method, median of its per-step ratios to equal weighting), both
    run in this process with their steps interleaved."""
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
    return statistics.median(times), statistics.median(ratios)


def forked(fn, *args) -> tuple[float, float]:
    """`fn(*args)` -> two floats, run in a forked child (so that ru_maxrss is that child's own peak)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            res = fn(*args)
            os.write(w, f"{res[0]} {res[1]}".encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 256).decode()
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"benchmark child {fn.__name__}{args[1:3]} failed")
    a, b = data.split()
    return float(a), float(b)


def kind(name: str, mode: str) -> str:
    return "single" if name in SINGLE_BACKWARD else ("representation" if mode == "representation" else mode)


def run(setups: list[dict], steps: int, summed: bool = False) -> list[str]:
    misses: list[str] = []
    for setup in setups:
        cuda = setup["device"] == "cuda"

        def run_(fn, *args, cuda=cuda):
            return fn(*args) if cuda else forked(fn, *args)

        print(f"\n## {setup['label']}")
        print(
            f"{'method':<12} {'mode':<15} {'ms/step':>9} {'x equal':>8} {'peak MiB':>9} {'x equal':>8}  target"
        )
        base_t, base_m = run_(measure, setup, "equal", "-", steps)
        for name, mode in configurations(summed):
            if name == "equal":
                t, m, rt = base_t, base_m, 1.0
            else:
                t, rt = run_(paired, setup, name, mode, steps)
                m = run_(measure, setup, name, mode, 1)[1]
            rm = m / max(base_m, 1e-9)
            target = TARGETS.get(kind(name, mode))
            flag = "" if target is None else (f"<= {target}" + ("" if rt <= target else "  MISSED"))
            if target is not None and rt > target:
                misses.append(f"{setup['label']}: {name}/{mode} {rt:.2f}x")
            print(f"{name:<12} {mode:<15} {t * 1e3:>9.1f} {rt:>8.2f} {m:>9.1f} {rm:>8.2f}  {flag}")
    return misses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 heads and dense only, 2 timed steps")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 8)")
    ap.add_argument(
        "--compare-summed", action="store_true", help="also time representation mode's summed-backward path"
    )
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA setup even if a GPU is present")
    args = ap.parse_args()
    steps = args.steps or (3 if args.quick else 8)
    torch.set_num_threads(min(os.cpu_count() or 1, 8))
    cpu = {"device": "cpu", "encoder": "small3d", "encoder_args": {"width": 16}, "batch": 16}
    cpu |= {"frames": 8, "size": 64}
    heads = [(4, False), (2, True)] if args.quick else [(2, False), (4, False), (8, False), (2, True)]
    setups = [
        {**cpu, "n_cls": n, "dense": d, "label": f"cpu small3d-w16 b16 8x64x64, {n} cls" + (" + dense" * d)}
        for n, d in heads
    ]
    if torch.cuda.is_available() and not args.no_cuda:
        gpu = {"device": "cuda", "encoder": "r2plus1d_18", "encoder_args": {}, "batch": 16}
        gpu |= {"frames": 16, "size": 112}
        setups += [
            {
                **gpu,
                "n_cls": n,
                "dense": d,
                "label": f"cuda r2plus1d_18 b16 16x112x112, {n} cls" + (" + dense" * d),
            }
            for n, d in heads
        ]
    start = time.perf_counter()
    misses = run(setups, steps, args.compare_summed)
    print(
        f"\nsummary: {len(setups)} setups x {sum(1 for _ in configurations(args.compare_summed))} configurations in "
        f"{time.perf_counter() - start:.0f}s; targets (single-backward <= 1.05x, representation <= 1.2x of "
        f"equal time) " + ("all met" if not misses else f"missed by {len(misses)}: " + "; ".join(misses))
    )


if __name__ == "__main__":
    main()
