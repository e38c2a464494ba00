"""The synthetic world, generated once per settings and cached (`$MTLHAR_CACHE`, default ~/.cache/mtlhar)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("MTLHAR_CACHE", Path.home() / ".cache" / "mtlhar"))


def ensure_synth(
    out: str | Path | None = None, progress: Callable[[int, int], None] | None = None, **settings
) -> Path:
    """Path of the manifest of a synthetic dataset with these settings (the keywords of `synth.generate`,
    e.g. `streams=["flow", "pose", "mask", "parts"]` for ground-truth arrays beside the videos), generating
    it if needed.

    The folder name holds a hash of the settings and the generator version, so changed settings or a
    new generator never reuse stale data; generation goes to a temporary folder renamed when complete,
    so an interrupted generation is never mistaken for a finished one.
    """
    from . import synth

    key = json.dumps({"v": synth.GENERATOR_VERSION, **settings}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = Path(out) if out else cache_root() / f"synth-{digest}"
    manifest = target / "manifest.csv"
    if manifest.is_file():
        return manifest
    tmp = target.with_name(target.name + f".partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    synth.generate(tmp, progress=progress, **settings)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return manifest
