"""Run directories: what makes a folder a run, the metrics log, and what a resume may change.

A run directory is recognised by its own records (`config.yaml`, `provenance.json`, `metrics.jsonl`,
`tasks.json`, `summary.json`, `checkpoints/`), never by `last.pt` alone: a fresh run refuses a folder
that holds a run (pass resume) or any other non-empty folder (a dataset folder is never written into).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

RECORDS = ("config.yaml", "provenance.json", "metrics.jsonl", "tasks.json", "summary.json", "checkpoints")
# keys a resume may change without being asked: they do not change what is computed
HARMLESS_CHANGES = ("train.progress", "data.num_workers")


def is_run(folder: Path) -> bool:
    """Whether `folder` holds the records of an mtlhar run."""
    return folder.is_dir() and any((folder / name).exists() for name in RECORDS)


def check_fresh(folder: Path) -> None:
    """Refuse to start a new run in a folder that holds a run or anything else."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"--out {folder}: exists and is not a folder; choose another --out")
    if is_run(folder):
        last = folder / "checkpoints" / "last.pt"
        hint = (
            "pass --resume to continue it" if last.is_file() else "it has no checkpoint to resume: remove it"
        )
        raise ConfigError(f"{folder} already holds a run; {hint}, or choose another --out")
    if any(folder.iterdir()):
        raise ConfigError(
            f"--out {folder}: the folder is not empty and is not an mtlhar run; a run is written into a new "
            "or empty folder: choose another --out"
        )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "l": [x, y]} -> {"a.b": 1, "l.0": x, "l.1": y}."""
    if isinstance(data, Mapping):
        items: Iterable = data.items()
    elif isinstance(data, list | tuple):
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        nested = flatten(v, key)
        out.update(nested if nested else {key: v})
    return out


def changes(old: Mapping, new: Mapping) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs between two nested mappings: {key: (old, new)}."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume_changes(
    old: Mapping, new: Mapping, allowed: Iterable[str] = (), *, where: str = "--resume"
) -> dict[str, tuple[Any, Any]]:
    """The changes of `new` against the checkpoint's `old` config; ConfigError when one is not allowed.

    `allowed` names keys (or sections: `train` allows every `train.*` key) the user changes on purpose.
    """
    allowed = tuple(allowed) + HARMLESS_CHANGES
    diff = changes(old, new)

    def ok(key: str) -> bool:
        return any(key == a or key.startswith(a + ".") for a in allowed)

    refused = {k: v for k, v in diff.items() if not ok(k)}
    if refused:
        shown = "; ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in list(refused.items())[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        keys = " ".join(f"--allow-change {k}" for k in list(refused)[:3])
        raise ConfigError(
            f"{where}: the config differs from the one the run was trained with: {shown}{more}; resume with the "
            f"original config, or allow a deliberate change with {keys}"
        )
    return diff


class MetricsLog:
    """`metrics.jsonl` (one JSON record per line) and the TensorBoard log of a run.

    On resume from the checkpoint of `step`, records after that step (written by the killed process
    after its last checkpoint) are dropped, and TensorBoard purges them, so every step appears once.
    Ranks other than the main one write nothing.
    """

    def __init__(self, run: Path, *, write: bool, resume_step: int | None = None):
        self.write_files = write
        self.path = run / "metrics.jsonl"
        self.tb = None
        self.file = None
        if not write:
            return
        if resume_step is not None:
            truncate(self.path, resume_step)
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self.tb = SummaryWriter(str(run / "tb"), purge_step=purge)
        self.file = open(self.path, "a")

    def record(self, rec: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.tb.close()
            self.file = self.tb = None


def truncate(path: Path, step: int) -> int:
    """Drop the records of `path` (metrics.jsonl) after `step`, and a torn last line; returns how many."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the killed process stopped in the middle of a line
            dropped += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped


def read_metrics(run: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
