"""Label spaces across datasets: mapping CSVs and co-training manifests.

A mapping CSV has a header and two columns, the dataset's class and the shared class::

    source,target            (any two column names; the first two columns are used)
    ApplyEyeMakeup,groom
    Archery,-                '-' drops the class explicitly (its samples get no label)

It is validated against the dataset's class list: every class mapped exactly once or dropped with
'-'; a class the dataset does not have, a repeated class or an empty target is an error naming the
file, the line and the class. `merge` concatenates several manifests for co-training: each supplies
the task columns it has, the others stay empty (masked), and a `dataset` column says where a row came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .formats.table import RESERVED, Table, make_table, read_csv_rows
from .manifest import Manifest

DROP = "-"


@dataclass
class LabelMap:
    """source class -> target class (None = dropped), with the target classes in first-seen order."""

    path: Path
    mapping: dict[str, str | None]
    targets: list[str]

    def __call__(self, label: str) -> str:
        """Map one cell ('' stays ''; multi-label cells 'a|b' map each part and drop duplicates)."""
        if not label:
            return ""
        out: list[str] = []
        for part in label.split("|"):
            if part not in self.mapping:
                raise DataError(f"{self.path}: class {part!r} has no mapping")
            t = self.mapping[part]
            if t is not None and t not in out:
                out.append(t)
        return "|".join(out)

    def apply(self, table: Table, column: str, *, to: str | None = None) -> Table:
        """Map `column` of every row into column `to` (default: replace `column`), in place; returns table."""
        to = to or column
        for r in table.rows:
            r[to] = self(r.get(column, ""))
        if to not in table.columns:
            table.columns.append(to)
        table.label_spaces[to] = list(self.targets)
        return table


def load_label_map(
    path: str | Path,
    classes: Iterable[str],
    *,
    source_column: str | None = None,
    target_column: str | None = None,
) -> LabelMap:
    """Read and validate a mapping CSV against the dataset's `classes` (see the module docstring)."""
    path = Path(path)
    classes = list(classes)
    known = set(classes)
    mapping: dict[str, str | None] = {}
    first_line: dict[str, int] = {}
    targets: list[str] = []
    rows = list(read_csv_rows(path))
    if not rows:
        raise DataError(f"{path}: no mapping rows (expected a header and 'class,shared_class' lines)")
    header = list(rows[0][1])
    if len(header) < 2:
        raise DataError(f"{path}: needs two columns (dataset class, shared class); header has {header}")
    src = source_column or header[0]
    dst = target_column or header[1]
    for col in (src, dst):
        if col not in header:
            raise DataError(f"{path}: no column {col!r} (columns: {', '.join(header)})")
    for line_no, r in rows:
        s, t = r.get(src, ""), r.get(dst, "")
        where = f"{path}: line {line_no}"
        if not s:
            raise DataError(f"{where}: empty class name in column {src!r}")
        if s not in known:
            raise DataError(f"{where}: class {s!r} is not a class of the dataset ({_preview(classes)})")
        if s in mapping:
            raise DataError(f"{where}: class {s!r} is mapped twice (first on line {first_line[s]})")
        if not t:
            raise DataError(f"{where}: class {s!r} has an empty target; write '{DROP}' to drop it explicitly")
        first_line[s] = line_no
        mapping[s] = None if t == DROP else t
        if t != DROP and t not in targets:
            targets.append(t)
    unmapped = [c for c in classes if c not in mapping]
    if unmapped:
        raise DataError(
            f"{path}: {len(unmapped)} class(es) not mapped: {_preview(unmapped)}; add a line "
            f"'{unmapped[0]},<shared class>' for each (or '{unmapped[0]},{DROP}' to drop it)"
        )
    return LabelMap(path=path, mapping=mapping, targets=targets)


def _preview(items: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def table_from_manifest(path: str | Path) -> Table:
    """A manifest on disk as a Table with absolute paths (so it can be merged or rewritten elsewhere)."""
    m = Manifest.read(path)
    rows = []
    for r in m.rows:
        r = dict(r)
        if r.get("path"):
            r["path"] = str(m.resolve(r["path"]).resolve())
        rows.append(r)
    return Table(rows=rows, columns=list(m.columns), label_spaces=dict(m.label_spaces))


def merge(
    tables: Sequence[Table | str | Path],
    *,
    names: Sequence[str] | None = None,
    prefix: bool = True,
) -> Table:
    """Concatenate manifests for co-training.

    tables: Tables or manifest paths. names: one dataset name each (default: the rows' `dataset`
    column, else "d0", "d1", ...). With prefix=True ids and groups become "<dataset>/<id>" so that two
    datasets can never share an id or a group. Task columns are the union; a dataset without a column
    leaves it empty (= no label, masked in the loss). Label spaces: the first table's order, then
    classes new in later tables appended.
    """
    loaded = [t if isinstance(t, Table) else table_from_manifest(t) for t in tables]
    if names is not None and len(names) != len(loaded):
        raise DataError(f"merge: {len(loaded)} tables but {len(names)} names")
    rows: list[dict[str, str]] = []
    tasks: list[str] = []
    spaces: dict[str, list[str]] = {}
    extra: list[str] = []
    for i, t in enumerate(loaded):
        for c in t.columns:
            if c not in RESERVED and c not in tasks:
                tasks.append(c)
            if c in ("start", "end", "domain") and c not in extra:
                extra.append(c)
        for col, classes in t.label_spaces.items():
            space = spaces.setdefault(col, [])
            space.extend(c for c in classes if c not in space)
        for r in t.rows:
            name = names[i] if names is not None else (r.get("dataset") or f"d{i}")
            r = dict(r, dataset=name)
            if prefix:
                group = r.get("group") or r["id"]
                r["id"], r["group"] = f"{name}/{r['id']}", f"{name}/{group}"
            rows.append(r)
    for r in rows:
        for t in tasks:
            r.setdefault(t, "")  # no label for a task this dataset lacks: masked in the loss
    out = make_table(rows, tasks, label_spaces=spaces)
    for c in extra:
        if c not in out.columns:
            out.columns.insert(out.columns.index("dataset"), c)
    for t in loaded:
        out.excluded.extend(t.excluded)
    return out
