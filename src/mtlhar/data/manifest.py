"""The manifest: one table for every dataset.

Columns: `id`, `path` (or `uri`; relative to the manifest's folder unless absolute), `split`, `group`
(subject / recording: never split across train and test), optional `domain`, `dataset`, `start`/`end`,
and one column per task (an empty cell = no label for that task). A `classes.json` beside the manifest
fixes the label spaces (class order); otherwise they are the sorted distinct values of the column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .formats.table import read_csv


@dataclass
class Manifest:
    path: Path
    root: Path
    columns: list[str]
    rows: list[dict[str, str]]
    label_spaces: dict[str, list[str]] = field(default_factory=dict)
    #: physical line of each row in the file (quoted newlines and blank lines counted); [] = unknown
    lines: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path, root: str | Path | None = None) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.csv"
        if not path.is_file():
            raise DataError(f"manifest not found: {path}")
        table = read_csv(path)  # DataError for a malformed row, an unclosed quote or bytes that are not UTF-8
        columns = list(table.columns)
        rows = [dict(zip(columns, cells)) for _, cells in table.records]
        lines = [line for line, _ in table.records]
        if "path" not in columns and "uri" in columns:
            for r in rows:
                r["path"] = r["uri"]
            columns.append("path")
        for required in ("id", "path"):
            if required not in columns:
                shown = ", ".join(map(repr, columns)) or "none: the file is empty"
                raise DataError(f"{path}: manifest has no '{required}' column (columns: {shown})")
        seen: dict[str, int] = {}
        for i, r in enumerate(rows):
            if r["id"] in seen:
                raise DataError(
                    f"{path}: line {lines[i]}: id {r['id']!r} repeats line {lines[seen[r['id']]]}; ids must be unique"
                )
            seen[r["id"]] = i
        spaces = {}
        classes_file = path.parent / "classes.json"
        if classes_file.is_file():
            try:
                spaces = json.loads(classes_file.read_text())
            except json.JSONDecodeError as e:
                raise DataError(f"{classes_file}: not valid JSON ({e})") from None
        return cls(
            path=path,
            root=Path(root) if root else path.parent,
            columns=columns,
            rows=rows,
            label_spaces=spaces,
            lines=lines,
        )

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def where(self, index: int) -> str:
        """Human-readable location of a row: "row N" with N its line in the file (the header is line 1)."""
        line = self.lines[index] if len(self.lines) == len(self.rows) else index + 2
        return f"{self.path}: row {line} (id {self.rows[index]['id']!r})"

    def indices(self, split: str | None) -> list[int]:
        if split is None:
            return list(range(len(self.rows)))
        if "split" not in self.columns:
            raise DataError(f"{self.path}: no 'split' column, cannot select split {split!r}")
        idx = [i for i, r in enumerate(self.rows) if r["split"] == split]
        if not idx:
            found = sorted(
                {r["split"] if len(r["split"]) <= 40 else r["split"][:40] + "..." for r in self.rows}
            )
            hint = ""
            if split in ("val", "validation") and "train" in found:
                hint = (
                    "; to select checkpoints on a validation split carved from train (by group, never on test), "
                    "convert with `mtlhar data convert FORMAT ROOT --out DIR --val-fraction 0.1`, or set "
                    "data.val_split to a split that exists"
                )
            raise DataError(f"{self.path}: split {split!r} has no rows; splits present: {found}{hint}")
        return idx

    def require_column(self, column: str, task: str) -> None:
        if column not in self.columns:
            raise DataError(
                f"{self.path}: task '{task}' reads column '{column}', which the manifest lacks "
                f"(columns: {', '.join(self.columns)})"
            )

    def classes_for(self, column: str, *, multilabel: bool = False, separator: str = "|") -> list[str]:
        if column in self.label_spaces:
            return list(self.label_spaces[column])
        values: set[str] = set()
        for r in self.rows:
            cell = r.get(column, "")
            if cell:
                values.update(v.strip() for v in cell.split(separator)) if multilabel else values.add(cell)
        values.discard("")
        return sorted(values)

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def split_hash(self, split: str) -> str:
        ids = "\n".join(sorted(self.rows[i]["id"] for i in self.indices(split)))
        return hashlib.sha256(ids.encode()).hexdigest()[:16]
