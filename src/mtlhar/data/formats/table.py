"""`Table`: what every format reader returns, and the small helpers the readers share.

A reader turns a dataset's native layout into rows of strings (the manifest's cells), the ordered label
spaces it knows (written to `classes.json`), and a record of what it left out and why (`excluded`), so
nothing is dropped silently. `Table.write(out)` writes `manifest.csv`, `classes.json` and
`conversion.json` (excluded items and counts) into `out`.
"""

from __future__ import annotations

import codecs
import csv
import io
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

    def carve_validation(self, fraction: float, *, seed: int = 0, source: str = "train") -> int:
        """Move about `fraction` of the `source` split's rows into a new `val` split, whole groups only
        (a subject or recording never in both), stratified by the first task column where the groups
        allow, seeded; recorded in `stats`. Returns the number of rows moved."""
        from ..splits import holdout_by_group

        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
            raise DataError(f"--val-fraction: got {fraction!r}, expected a number in (0, 1)")
        if any(r.get("split") == "val" for r in self.rows):
            raise DataError("--val-fraction: the dataset already has a 'val' split; convert without it")
        pool = [i for i, r in enumerate(self.rows) if r.get("split") == source]
        if not pool:
            raise DataError(
                f"--val-fraction: the dataset has no {source!r} split to carve a validation split from"
            )
        groups = [self.rows[i].get("group") or self.rows[i].get("id", "") for i in pool]
        task = next(iter(self.tasks), None)
        labels = [self.rows[i].get(task, "") for i in pool] if task else None
        if len(set(groups)) < 2:
            raise DataError(
                f"--val-fraction: the {source!r} split has {len(set(groups))} group; need 2 or more"
            )
        _, val = holdout_by_group(groups, test_size=float(fraction), labels=labels, seed=seed)
        for j in val:
            self.rows[pool[j]]["split"] = "val"
        if "split" not in self.columns:
            self.columns.append("split")
        self.stats.update(
            val_fraction=float(fraction),
            val_seed=int(seed),
            val_rows=len(val),
            val_groups=len({groups[j] for j in val}),
            val_stratified_by=task or "",
        )
        return len(val)

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
    """A reader's path (absolute, or relative to the working directory it ran in, as the dataset root and
    --out were given) as the manifest stores it: relative to the manifest's folder when inside it (the
    manifest resolves paths against its own folder), absolute otherwise."""
    p = Path(path).resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


@dataclass
class CsvFile:
    """A CSV read by `read_csv` / `parse_csv`: the header, the well-formed rows, and what was wrong.

    records: (line, cells) per row, `line` the physical line where the row starts (quoted newlines
    counted), cells stripped, exactly one per column. problems: (line, message) for every row that was
    left out (wrong number of cells, an unclosed quote, bytes that are not UTF-8).
    """

    where: str
    columns: list[str]
    records: list[tuple[int, list[str]]]
    problems: list[tuple[int, str]] = field(default_factory=list)

    def dicts(self) -> list[tuple[int, dict[str, str]]]:
        return [(line, dict(zip(self.columns, cells))) for line, cells in self.records]

    def raise_problems(self) -> None:
        """DataError naming the first problem (file: line: what: what to do) and the lines of the others."""
        if not self.problems:
            return
        line, msg = self.problems[0]
        rest = [str(n) for n, _ in self.problems[1:]]
        more = ""
        if rest:
            shown = ", ".join(rest[:8]) + (", ..." if len(rest) > 8 else "")
            more = f" [{len(rest)} more bad row(s), at lines {shown}]"
        raise DataError(f"{self.where}: line {line}: {msg}{more}")


def decode_text(data: bytes, where: str, problems: list[tuple[int, str]] | None = None) -> str:
    """`data` as UTF-8 text (a leading UTF-8 BOM is dropped).

    A byte that is not UTF-8 raises DataError naming the line, the byte and the fix; with a `problems`
    list the problem is appended instead and the undecodable bytes become U+FFFD.
    """
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[bom:]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        pos = e.start
        line = body.count(b"\n", 0, pos) + 1
        column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
        bad_lines = 0
        for chunk in body.split(b"\n"):
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines += 1
        others = f" ({bad_lines - 1} more line(s) like it)" if bad_lines > 1 else ""
        utf16 = "the file is UTF-16; " if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        msg = (
            f"byte 0x{body[pos]:02x} (column {column}, byte offset {pos + bom}) is not valid UTF-8{others}; "
            f"{utf16}save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8') and try again"
        )
        if problems is None:
            raise DataError(f"{where}: line {line}: {msg}") from None
        problems.append((line, msg))
        return body.decode("utf-8", errors="replace")


def _line_offsets(text: str) -> list[int]:
    """Offset where each physical line starts (LF, CR LF and a lone CR end a line, as for the csv module)."""
    offsets, pos = [0], 0
    for line in io.StringIO(text, newline=""):
        pos += len(line)
        offsets.append(pos)
    return offsets


def _quoted_cells(text: str, offsets: list[int], first: int, last: int) -> list[tuple[int, int | None]]:
    """(opening line, closing line or None if still open) of the quoted cells that open on lines first..last."""
    spans: list[tuple[int, int | None]] = []
    i, n, line = offsets[first - 1] if first - 1 < len(offsets) else len(text), len(text), first
    state = "start"  # start of a cell, inside an unquoted cell, inside quotes, just after a closing quote
    opened = 0
    while i < n:
        ch = text[i]
        if ch in "\r\n":
            if ch == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            line += 1
            if line > last:
                break
            if state != "quoted":
                state = "start"
        elif state == "quoted":
            if ch == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 1
                else:
                    spans.append((opened, line))
                    state = "after"
        elif ch == '"' and state == "start":
            state, opened = "quoted", line
        elif ch == ",":
            state = "start"
        elif state == "start":
            state = "cell"
        i += 1
    if state == "quoted":
        spans.append((opened, None))
    return spans


def parse_csv(
    text: str,
    where: str,
    *,
    required: Iterable[str] = (),
    problems: list[tuple[int, str]] | None = None,
) -> CsvFile:
    """Parse CSV text with a header row (see `read_csv`); `where` names the source in messages."""
    collect = problems is not None
    found: list[tuple[int, str]] = problems if collect else []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    offsets: list[int] = []
    end = 0  # physical lines consumed so far
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            offsets = offsets or _line_offsets(text)
            line, msg, fatal = _csv_error(str(e), text, offsets, start, reader.line_num)
            if columns is None:
                raise DataError(f"{where}: line {line}: header row: {msg}") from None
            found.append((line, msg))
            if fatal:
                break
            end = reader.line_num
            continue
        end = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        cells = [c.strip() for c in row]
        if columns is None:
            cells[0] = cells[0].lstrip("\ufeff").strip()
            repeated = sorted({c for c in cells if c and cells.count(c) > 1})
            if repeated:
                raise DataError(
                    f"{where}: line {start}: column(s) {', '.join(map(repr, repeated))} appear more than once "
                    "in the header; rename them"
                )
            unnamed = [str(i + 1) for i, c in enumerate(cells) if not c]
            if len(unnamed) > 1:
                raise DataError(
                    f"{where}: line {start}: columns {', '.join(unnamed)} of the header have no name; "
                    "name them, or delete the empty columns"
                )
            columns = cells
            continue
        if len(cells) != len(columns):
            offsets = offsets or _line_offsets(text)
            found.append((start, _count_problem(len(cells), columns, text, offsets, start, end)))
            continue
        records.append((start, cells))
    columns = columns or []
    missing = [c for c in required if c not in columns]
    if missing:
        shown = ", ".join(map(repr, columns)) or "none: the file is empty"
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
            hint = "; the file seems to use another separator: save it comma-separated"
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (columns: {shown}){hint}")
    out = CsvFile(where=where, columns=columns, records=records, problems=found)
    if not collect:
        out.raise_problems()
    return out


def _count_problem(n: int, columns: list[str], text: str, offsets: list[int], start: int, end: int) -> str:
    shown = ", ".join(c if c.isprintable() and c else repr(c) for c in columns[:12])
    shown += ", ..." if len(columns) > 12 else ""
    if n > len(columns):
        msg = (
            f"{n} cells where the header has {len(columns)} columns ({shown}); quote a cell that holds a "
            'comma ("a, b") or remove the extra cells'
        )
    else:
        msg = (
            f"{n} cell(s) where the header has {len(columns)} columns ({shown}); add the missing cells "
            "(an empty cell is fine: a,,c)"
        )
    if end > start:
        spans = [s for s in _quoted_cells(text, offsets, start, end) if s[1] is None or s[1] > s[0]]
        if spans:
            msg += (
                f"; the row runs over lines {start}-{end} because the quoted cell opened on line {spans[0][0]} "
                "spans lines: check that quote"
            )
    return msg


def _csv_error(error: str, text: str, offsets: list[int], start: int, end: int) -> tuple[int, str, bool]:
    """(line, message, whether the rest of the file is unreadable) for a csv.Error."""
    if "unexpected end of data" in error or "field larger than field limit" in error:
        spans = [s for s in _quoted_cells(text, offsets, start, end) if s[1] is None]
        line = spans[0][0] if spans else start
        if "unexpected end" in error:
            how = f"it runs to the end of the file, line {end}"
        else:
            how = f"it is still open on line {end}, over {csv.field_size_limit()} characters later"
        return (
            line,
            f"a quoted cell opens here and is never closed ({how}), so the rows from here on were not read; "
            'add the closing quote (a quote inside a quoted cell is written twice: "")',
            True,
        )
    if "expected after" in error:
        spans = [s for s in _quoted_cells(text, offsets, start, end) if s[0] < end and s[1] == end]
        if spans:  # the quote that closed on this line opened lines earlier: that one is unbalanced
            return (
                spans[0][0],
                f"a quoted cell opens here and closes only on line {end}, where text follows its closing "
                'quote: this quote is most likely unbalanced; remove it or write it twice ("")',
                False,
            )
        return (
            end,
            'text follows the closing quote of a quoted cell; write a quote inside a quoted cell twice ("") '
            "or quote the whole cell",
            False,
        )
    return end, f"not valid CSV ({error})", False


def read_csv(
    path: str | Path, *, required: Iterable[str] = (), problems: list[tuple[int, str]] | None = None
) -> CsvFile:
    """Read a UTF-8 CSV file with a header row: every CSV the package reads goes through here.

    A UTF-8 BOM is accepted; blank lines are skipped. Each row must have one cell per header column, a
    quoted cell must be closed, and the bytes must be UTF-8: otherwise DataError names file: line, the
    problem and the fix (and how many other rows are bad). With a `problems` list, bad rows are left
    out and listed there instead (`mtlhar data inspect` reports them all). Missing `required` columns,
    a repeated column name or an unreadable header always raise.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    return parse_csv(decode_text(path.read_bytes(), str(path), problems), str(path), required=required,
                     problems=problems)  # fmt: skip


def read_csv_rows(path: Path, *, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV with a header (see `read_csv`); cells stripped."""
    return iter(read_csv(path, required=required).dicts())


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
    """Map file name (and stem) -> path for every file under `root` with one of the extensions.

    Folders are walked in sorted order, so when two files share a name the first in sorted path order
    is the one mapped, on every machine.
    """
    exts = tuple(e.lower() for e in extensions)
    out: dict[str, Path] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
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
