"""The precision a run trains and evaluates in (`train.amp`), and the reason for it.

`choose_autocast(setting, device)` returns `Precision(enabled, dtype, reason)`: whether the forward pass runs
under `torch.autocast`, the dtype it computes in (float32 when it does not) and one sentence saying why, which
the trainer logs and records in provenance.

`amp: auto` autocasts on CUDA only. On CPU it stays in float32, also on CPUs with native bfloat16
(AVX512-BF16 / AMX). There PyTorch hands bfloat16 convolutions (forward and both backward passes) and
matmuls to oneDNN's bfloat16 kernels. A user's seeded small3d run in bfloat16 gave different losses from
step 2 in 4 of 4 runs and NaN at step 3 in 2 of 4, while float32 on the same machine was reproducible.
The rest of such a step runs in ATen's own kernels, and these are bitwise reproducible across runs
and thread counts on a CPU where bfloat16 convolutions stay in ATen too (an AVX2 machine). By elimination
the fault lies in oneDNN's bfloat16 kernels; it was not observed directly (no native-bfloat16 machine was
at hand), and this project cannot fix those kernels. Float32 costs the ~2x bfloat16 speed-up measured
on such a CPU. `amp: on` still autocasts to bfloat16, for users who accept runs that are not
reproducible. Where bfloat16 is emulated it is far slower than float32 (about 21x per small3d training
step on a 2-core AVX2 machine).

`python -m mtlhar.precision` runs `check_reproducible` on this machine. It repeats one seeded small3d
training step (width 8, 4 x 32 x 32 clips, batch 8) in bfloat16 and float32 and names the first layer
whose forward output or gradient differs between repetitions or is not finite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

AUTO_CPU_NATIVE = (
    "amp: auto trains in float32 on this CPU although it has native bfloat16: there PyTorch runs bfloat16 "
    "convolutions and matmuls in oneDNN kernels that are not bitwise reproducible run to run (a seeded "
    "small3d run gave different losses from step 2 and NaN at step 3); amp: on trains in bfloat16 anyway "
    "(about 2x faster, not reproducible)"
)
AUTO_CPU_EMULATED = (
    "amp: auto trains in float32 on this CPU: it has no native bfloat16 (emulated bfloat16 is far slower)"
)
ON_CPU_NATIVE = (
    "amp: on: bfloat16 autocast on a CPU with native bfloat16; oneDNN's bfloat16 kernels make such runs "
    "not bitwise reproducible (and have given NaN losses); use amp: auto or off for reproducible runs"
)
ON_CPU_EMULATED = (
    "amp: on: bfloat16 autocast on a CPU without native bfloat16 (emulated: about 21x slower per small3d "
    "training step than float32 on a 2-core AVX2 machine)"
)


class Precision(NamedTuple):
    """What `choose_autocast` decided: unpacks as `(enabled, dtype, reason)`."""

    enabled: bool
    dtype: torch.dtype  # what autocast regions compute in; float32 when autocast is off
    reason: str

    @property
    def name(self) -> str:
        """'bfloat16', 'float16' or 'off' (the provenance field `amp`)."""
        return str(self.dtype).removeprefix("torch.") if self.enabled else "off"

    @property
    def should_log(self) -> bool:
        """Whether the trainer should tell the user: bfloat16 on a CPU (not reproducible, or slow), or
        float32 under `auto` where bfloat16 would be faster."""
        return self.reason in (AUTO_CPU_NATIVE, ON_CPU_NATIVE, ON_CPU_EMULATED)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


def choose_autocast(setting: str, device: torch.device | str) -> Precision:
    """The precision of `train.amp` = `setting` ('auto', 'on' or 'off') on `device`."""
    device = torch.device(device)
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"amp setting must be 'auto', 'on' or 'off', got {setting!r}")
    if setting == "off":
        return Precision(False, torch.float32, "amp: off: float32")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(True, torch.bfloat16, f"amp: {setting}: bfloat16 autocast on CUDA")
        return Precision(True, torch.float16, f"amp: {setting}: float16 autocast with loss scaling on CUDA")
    if device.type != "cpu":
        if setting == "auto":
            return Precision(False, torch.float32, f"amp: auto trains in float32 on {device.type}")
        return Precision(True, torch.bfloat16, f"amp: on: bfloat16 autocast on {device.type}")
    native = cpu_has_native_bf16()
    if setting == "auto":
        return Precision(False, torch.float32, AUTO_CPU_NATIVE if native else AUTO_CPU_EMULATED)
    return Precision(True, torch.bfloat16, ON_CPU_NATIVE if native else ON_CPU_EMULATED)


# ------------------------------------------------------------------------------------------------------
# Diagnosis: is a training step bitwise reproducible here, and where does it first diverge?


def _digest(t: torch.Tensor) -> str:
    t = t.detach().contiguous()
    return hashlib.sha1(t.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def step_digests(
    model: nn.Module,
    inputs: torch.Tensor,
    loss_fn: Callable[[object], torch.Tensor],
    *,
    dtype: torch.dtype = torch.bfloat16,
    enabled: bool = True,
) -> list[tuple[str, str, bool]]:
    """One forward and backward pass of `model` on `inputs` (CPU) under autocast to `dtype`.

    Returns (name, digest, finite) in computation order: the output of every leaf module in the forward
    pass, then the loss, then every parameter's gradient. Nothing is updated (gradients are reset after)."""
    rows: list[tuple[str, str, bool]] = []

    def hook(name):
        def record(_module, _inputs, out):
            if isinstance(out, torch.Tensor):
                rows.append((f"forward {name}", _digest(out), bool(torch.isfinite(out).all())))

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n and not list(m.children())
    ]
    try:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype, enabled=enabled):
            out = model(inputs)
        loss = loss_fn(out)
        rows.append(("loss", _digest(loss), bool(torch.isfinite(loss).all())))
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    for n, p in model.named_parameters():
        if p.grad is not None:
            rows.append((f"grad {n}", _digest(p.grad), bool(torch.isfinite(p.grad).all())))
    model.zero_grad(set_to_none=True)
    return rows


def first_divergence(runs: list[list[tuple[str, str, bool]]]) -> str | None:
    """The first entry (in computation order) that is not finite or differs between runs; None if none."""
    for entries in zip(*runs):
        name = entries[0][0]
        if not all(finite for _, _, finite in entries):
            return f"{name}: not finite"
        if len({d for _, d, _ in entries}) > 1:
            return f"{name}: differs between runs"
    return None


def check_reproducible(
    dtype: torch.dtype = torch.bfloat16, *, enabled: bool = True, repeats: int = 3, threads: int | None = None
) -> str | None:
    """Repeat one seeded training step of a small3d model (width 8, 4 x 32 x 32 clips, batch 8, two
    heads) `repeats` times with fresh identical weights; None when every repetition is bitwise equal and
    finite, else where it first diverged (see `first_divergence`)."""
    from .models.encoders import Small3DCNN

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (8, 3, 4, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 2, (8,), generator=g)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Small3DCNN(width=8)
            self.head = nn.Linear(self.encoder.out_dim, 2)

        def forward(self, x):
            return self.head(self.encoder(x)["pooled"])

    runs = []
    for _ in range(repeats):
        torch.manual_seed(0)
        model = Net()
        runs.append(
            step_digests(
                model,
                clips,
                lambda z: nn.functional.cross_entropy(z.float(), labels),
                dtype=dtype,
                enabled=enabled,
            )
        )
    return first_divergence(runs)


if __name__ == "__main__":  # python -m mtlhar.precision
    native, threads = cpu_has_native_bf16(), torch.get_num_threads()
    print(f"torch {torch.__version__}; native bfloat16: {native}; threads {threads}")
    print(choose_autocast("auto", "cpu").reason)
    for label, dt, on in (("bfloat16", torch.bfloat16, True), ("float32", torch.float32, False)):
        verdict = check_reproducible(dt, enabled=on)
        print(f"{label}: {'reproducible and finite over 3 repetitions' if verdict is None else verdict}")
