"""A generic folder of videos, labelled by a CSV / Parquet table or by class folders.

Layouts::

    ROOT/**/<video>.mp4 + ROOT/labels.csv (or labels=PATH, .csv or .parquet)
        path,split,group,action,scene      a `path` (or `file`, `video`, `filename`) column relative to
        a/0001.mp4,train,s1,jump,park      ROOT; optional id, split, group, start, end, domain, dataset;
        a/0002.mp4,test,s2,,indoor         every other column is a task; an empty cell = no label
    ROOT/<class>/<video>.mp4               no table: column `label` = the folder name
    ROOT/<split>/<class>/<video>.mp4       the same, when the top folders are train / val / test

Without a `group` column each file is its own group (say so in a study: splits cannot be grouped).
Parquet needs pyarrow (`pip install pyarrow`); it is imported only for .parquet files.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .table import (
    RESERVED,
    VIDEO_EXTENSIONS,
    Table,
    check_choice,
    make_table,
    normalise_split,
    read_csv_rows,
)

PATH_COLUMNS = ("path", "file", "video", "filename", "uri")


def read_label_file(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, row) pairs of a .csv, or (row number + 2, row) of a .parquet (needs pyarrow)."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{path}: reading Parquet needs the pyarrow package (pip install pyarrow), "
                "or save the table as CSV"
            ) from None
        if not path.is_file():
            raise DataError(f"file not found: {path}")
        data = pq.read_table(path).to_pylist()
        return [
            (i + 2, {k: "" if v is None else str(v).strip() for k, v in r.items()})
            for i, r in enumerate(data)
        ]
    return list(read_csv_rows(path))


def rows_from_label_file(
    root: Path,
    label_file: Path,
    *,
    path_column: str | None,
    extensions: tuple[str, ...],
    missing: str,
    table: Table,
    dataset: str,
) -> tuple[list[dict[str, str]], list[str]]:
    """Rows (with absolute paths) and task columns from a label table; see the folder layout above."""
    pairs = read_label_file(label_file)
    if not pairs:
        raise DataError(f"{label_file}: no rows")
    header = list(pairs[0][1])
    col = path_column or next((c for c in PATH_COLUMNS if c in header), None)
    if col is None or col not in header:
        raise DataError(
            f"{label_file}: no file column (looked for {path_column or ', '.join(PATH_COLUMNS)}; "
            f"columns: {', '.join(header)}); pass path_column="
        )
    tasks = [c for c in header if c not in RESERVED and c != col]
    rows = []
    for line_no, r in pairs:
        where = f"{label_file}: line {line_no}"
        rel = r.get(col, "")
        if not rel:
            raise DataError(f"{where}: empty {col!r} cell")
        p = Path(rel) if Path(rel).is_absolute() else root / rel
        if extensions and p.suffix.lower() not in extensions:
            raise DataError(f"{where}: {rel!r} does not end in one of {', '.join(extensions)}")
        if not p.is_file():
            if missing == "error":
                raise DataError(f"{where}: file {p} not found (pass missing='report' to list and skip it)")
            table.exclude(p, f"{where}: file not found")
            continue
        row = {c: r[c] for c in header if c in RESERVED and c != "path"}
        row.update({t: r.get(t, "") for t in tasks})
        row["path"] = str(p)
        row["id"] = r.get("id") or Path(rel).with_suffix("").as_posix()
        row["group"] = r.get("group") or row["id"]
        row["split"] = normalise_split(r.get("split", "")) if r.get("split") else ""
        row.setdefault("dataset", dataset)
        rows.append(row)
    return rows, tasks


def rows_from_class_folders(
    root: Path, extensions: tuple[str, ...], dataset: str
) -> tuple[list[dict[str, str]], list[str]]:
    """ROOT/<class>/<file> or ROOT/<split>/<class>/<file> -> rows with column `label`."""
    top = [p for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    split_layout = bool(top) and all(normalise_split(p.name) in ("train", "val", "test") for p in top)
    rows = []
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions):
        parts = f.relative_to(root).parts
        depth = 3 if split_layout else 2
        if len(parts) != depth:
            raise DataError(
                f"{f}: expected {'<split>/' if split_layout else ''}<class>/<file> under {root}, "
                "or give a labels table (labels=...)"
            )
        rid = f.relative_to(root).with_suffix("").as_posix()
        rows.append(
            {
                "id": rid,
                "path": str(f),
                "split": normalise_split(parts[0]) if split_layout else "",
                "group": rid,
                "dataset": dataset,
                "label": parts[-2],
            }
        )
    if not rows:
        raise DataError(f"{root}: no files ending in {', '.join(extensions)}")
    return rows, ["label"]


def find_label_file(root: Path) -> Path | None:
    for name in ("labels.csv", "labels.parquet", "annotations.csv"):
        if (root / name).is_file():
            return root / name
    return None


def read_folder(
    root: str | Path,
    *,
    labels: str | Path | None = None,
    path_column: str | None = None,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
    missing: str = "error",
    dataset: str = "folder",
) -> Table:
    """Read a folder of videos labelled by `labels` (CSV / Parquet; default ROOT/labels.csv) or class folders.

    missing: "error" (default) raises for a table row whose file is absent; "report" records and skips it.
    """
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    table = make_table([], [], dataset=dataset)
    label_file = Path(labels) if labels else find_label_file(root)
    exts = tuple(e.lower() for e in extensions)
    if label_file is not None:
        rows, tasks = rows_from_label_file(
            root,
            label_file,
            path_column=path_column,
            extensions=exts,
            missing=missing,
            table=table,
            dataset=dataset,
        )
    else:
        rows, tasks = rows_from_class_folders(root, exts, dataset)
    out = make_table(rows, tasks, dataset=dataset, excluded=table.excluded)
    return out
