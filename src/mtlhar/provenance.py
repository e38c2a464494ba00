"""Provenance of a run: what produced it, so results are matched by keys, never by name alone."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

import mtlhar


def git_sha(path: str | Path | None = None) -> str | None:
    """The commit of the mtlhar source tree (or of `path`), with '-dirty' for uncommitted changes."""
    where = Path(path) if path else Path(mtlhar.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"], cwd=where, capture_output=True, text=True, timeout=5
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def pip_freeze() -> list[str]:
    """Installed distributions as `name==version` (like `pip freeze`, without running pip)."""
    names = {(d.metadata["Name"] or "?"): d.version for d in metadata.distributions()}
    return sorted(f"{n}=={v}" for n, v in names.items())


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode, forward in eval mode of one clip of the run's input shape; "
    "a multiply-add counts 2 FLOPs; element-wise ops (activations, norms, pooling) are not counted"
)


def count_flops(model, *args, **kwargs) -> int:
    """FLOPs of one forward call `model(*args, **kwargs)` (no gradients), as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*args, **kwargs)
    return int(counter.get_total_flops())


def collect(*, seed: int, device: torch.device, manifest=None, splits=(), extra: dict | None = None) -> dict:
    info = {
        "mtlhar_version": mtlhar.__version__,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device_name(device),
        "seed": seed,
        "pip_freeze": pip_freeze(),
    }
    if manifest is not None:
        info["manifest"] = str(manifest.path)
        info["manifest_sha256"] = manifest.sha256()
        info["split_hashes"] = {s: manifest.split_hash(s) for s in splits}
        gens = {r.get("generator", "") for r in manifest.rows} - {""}
        if gens:
            info["generator_version"] = sorted(gens)[0] if len(gens) == 1 else sorted(gens)
    info.update(extra or {})
    return info


def match_key(prov: dict) -> tuple:
    """Keys that must agree for a single-task baseline to be compared with a multi-task run."""
    return (
        prov.get("manifest_sha256"),
        tuple(sorted((prov.get("split_hashes") or {}).items())),
        prov.get("seed"),
        prov.get("generator_version") if isinstance(prov.get("generator_version"), str) else None,
    )
