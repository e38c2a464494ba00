"""`Table`: what every format reader returns, and the small helpers the readers share.

A reader turns a dataset's native layout into rows of strings (the manifest's cells), the ordered label
spaces it knows (written to `classes.json`), and a record of what it left out and why (`excluded`), so
nothing is dropped silently. `Table.write(out)` writes `manifest.csv`, `classes.json` and
`conversion.json` (excluded items and counts) into `out`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError

#: Columns with a fixed meaning; every other column is a task (label) column.
RESERVED = ("id", "path", "split", "group", "start", "end", "domain", "dataset")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
ARRAY_EXTENSIONS = (".npy", ".npz")


@dataclass
class Table:
    """Manifest rows made by a reader.

    rows: one dict per sample (all values strings; "" = no label / not set); `path` may be absolute.
    columns: column order for the CSV. label_spaces: ordered classes per column (-> classes.json).
    excluded: items left out, each {"item": ..., "reason": ...}. stats: counts (e.g. windows dropped).
    """

    rows: list[dict[str, str]]
    columns: list[str]
    label_spaces: dict[str, list[str]] = field(default_factory=dict)
    excluded: list[dict[str, str]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return [c for c in self.columns if c not in RESERVED]

    def write(self, out: str | Path) -> Path:
        """Write `manifest.csv` (or the given `.csv` path), `classes.json` and `conversion.json`.

        Paths inside the output folder are written relative to it, other paths stay absolute.
        Returns the manifest path.
        """
        out = Path(out)
        manifest = out if out.suffix.lower() == ".csv" else out / "manifest.csv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        base = manifest.parent.resolve()
        seen: dict[str, int] = {}
        for i, r in enumerate(self.rows):
            if r.get("id", "") in seen:
                raise DataError(f"id {r['id']!r} occurs twice (rows {seen[r['id']] + 1} and {i + 1})")
            seen[r.get("id", "")] = i
        tmp = manifest.with_name(manifest.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                cells = {c: r.get(c, "") for c in self.columns}
                if cells.get("path"):
                    cells["path"] = _relative(cells["path"], base)
                w.writerow(cells)
        os.replace(tmp, manifest)
        classes = manifest.parent / "classes.json"
        if self.label_spaces:
            classes.write_text(json.dumps(self.label_spaces, indent=1) + "\n")
        elif classes.exists():
            classes.unlink()  # a stale label space would silently reorder the classes
        report = {"rows": len(self.rows), "excluded": self.excluded, "stats": self.stats}
        (manifest.parent / "conversion.json").write_text(json.dumps(report, indent=1) + "\n")
        return manifest

    def exclude(self, item: str | Path, reason: str) -> None:
        self.excluded.append({"item": str(item), "reason": reason})

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n


def make_table(
    rows: list[dict[str, str]],
    tasks: Iterable[str],
    *,
    label_spaces: dict[str, list[str]] | None = None,
    dataset: str = "",
    excluded: list[dict[str, str]] | None = None,
    stats: dict[str, int] | None = None,
) -> Table:
    """A Table with the standard column order: id, path, split, group, [start, end], [domain], dataset, tasks."""
    tasks = list(tasks)
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    columns = ["id", "path", "split", "group"]
    columns += [c for c in ("start", "end", "domain") if c in present]
    columns.append("dataset")
    columns += [t for t in tasks if t not in columns]
    for r in rows:
        r.setdefault("dataset", dataset)
    return Table(
        rows=rows,
        columns=columns,
        label_spaces={k: list(v) for k, v in (label_spaces or {}).items()},
        excluded=list(excluded or []),
        stats=dict(stats or {}),
    )


def _relative(path: str, base: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(p)


def read_csv_rows(path: Path, *, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV with a header; cells stripped. Checks the required columns."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in fields]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(fields) or 'none'})"
            )
        reader.fieldnames = fields
        for row in reader:
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for the non-empty lines of a text file."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip():
            yield i, line.strip()


def find_dir(root: Path, *candidates: str) -> Path | None:
    """The first existing folder among root/candidate (case-insensitive on the last part)."""
    for c in candidates:
        p = root / c
        if p.is_dir():
            return p
    if root.is_dir():
        lowered = {c.lower() for c in candidates}
        for p in sorted(root.iterdir()):
            if p.is_dir() and p.name.lower() in lowered:
                return p
    return None


def index_files(root: Path, extensions: Iterable[str]) -> dict[str, Path]:
    """Map file name (and stem) -> path for every file under `root` with one of the extensions."""
    exts = tuple(e.lower() for e in extensions)
    out: dict[str, Path] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(exts):
                p = Path(dirpath) / name
                out.setdefault(name, p)
                out.setdefault(p.stem, p)
    return out


def check_choice(name: str, value: object, allowed: Iterable[object]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise DataError(f"{name}={value!r} is not allowed; use one of {allowed}")


_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def normalise_split(name: str) -> str:
    """train / val / test for the usual spellings (validate, validation, testing...); others unchanged."""
    return _SPLIT_NAMES.get(name.strip().lower(), name.strip())


def natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
