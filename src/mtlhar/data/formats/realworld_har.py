"""RealWorld-HAR (Sztyler & Stuckenschmidt, PerCom 2016): body-worn smartphone sensors, 15 subjects.

Expected layout (the release, with each `*_csv.zip` either left zipped or unpacked to a folder)::

    ROOT/proband<N>/data/acc_<activity>_csv.zip  or  .../acc_<activity>_csv/
        acc_<activity>[_<session>]_<position>.csv          id,attr_time,attr_x,attr_y,attr_z
    ROOT/proband<N>/data/gyr_<activity>_csv[.zip]/
        Gyroscope_<activity>[_<session>]_<position>.csv    (a `gyr_` file prefix also works)

Some archives of the release are zips of zips (climbing up / down of probands 4, 7 and 14:
`acc_climbingup_csv.zip` holds `acc_climbingup_1_csv.zip` ... `acc_climbingup_3_csv.zip`, whose CSVs
carry the session number, `acc_climbingup_2_forearm.csv`): folders and zips are read at any depth,
and a session number in a CSV's name (or else in the name of the zip / folder holding it) makes a
separate recording; without one the session is 1. Nothing is dropped silently: an archive of a
sensor that is not read (GPS, light, sound, or one not in `sensors`) is recorded in `excluded`
unopened, and so is every other file that is not used (a name not of the form below, a second copy
of the same recording and sensor, e.g. a zip beside its unpacked folder: the first in name order is
used), and every recording of a position not in `positions`.

attr_time is in milliseconds, nominally 50 Hz. Simplifications (stated, since the release is not
uniform): a recording = one (subject, activity, session, position); the sensors are aligned on the
first sensor's time stamps by nearest time stamp (a sample with no partner within half a period is
invalid); the recording's activity is the label of all its windows.

Order of work, as the protocol requires: subjects are assigned to train / val / test first (given
lists, or a group holdout with `seed`), then each recording is cut into windows (1 s, 50 % overlap by
default). A window that crosses a time gap (> 1.5 periods between samples) or holds an invalid sample
is dropped and counted in `stats`. NaN in a CSV raises DataError naming the file and row, or with
nan="drop" only the windows containing it are dropped (counted).

Windows are saved as `out_dir/windows/<id>.npy`, float32 [T, 3 * len(sensors)], for
`ClipDataset(stream="seq")`. Columns: activity, subject, position, plus the columns of an optional
subject-attributes CSV (`subject` column = "proband3" or "3"; e.g. gender, age, height, weight).
group = subject.
"""

from __future__ import annotations

import functools
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import DataError
from ..splits import holdout_by_group
from .table import (
    RESERVED,
    Table,
    check_choice,
    decode_text,
    make_table,
    natural_key,
    parse_csv,
    read_csv_rows,
)

_FILE = re.compile(
    r"^(?P<sensor>[A-Za-z]+)_(?P<activity>[A-Za-z]+)(?:_(?P<session>\d+))?_(?P<position>[A-Za-z]+)\.csv$"
)
_SENSORS = {"acc": "acc", "accelerometer": "acc", "gyr": "gyr", "gyroscope": "gyr", "mag": "mag",
            "magneticfield": "mag"}  # fmt: skip
_SUBJECT = re.compile(r"^proband(\d+)$", re.IGNORECASE)
#: A folder or zip of the release: acc_walking_csv.zip, acc_climbingup_2_csv.zip (inside a zip), ...
_ARCHIVE = re.compile(
    r"^(?P<sensor>[A-Za-z]+)_(?P<activity>[A-Za-z]+)(?:_(?P<session>\d+))?_csv(?:\.zip)?$", re.IGNORECASE
)


def _subject_key(value: str) -> str:
    m = _SUBJECT.match(value.strip())
    return (
        f"proband{int(m.group(1)) if m else int(value)}" if (m or value.strip().isdigit()) else value.strip()
    )


Opener = Callable[[], bytes]
Recordings = dict[tuple[str, str, str, str], dict[str, tuple[str, Opener]]]


def _discover(root: Path, sensors: tuple[str, ...], table: Table) -> Recordings:
    """{(subject, activity, session, position): {sensor: (display name, bytes opener)}}.

    Every file under probandN/data is looked at, in folders and zips at any depth (the release's zips
    of zips for climbing); whatever is not used is recorded in `table.excluded` with the reason.
    """
    recs: Recordings = {}
    subjects = [
        p for p in sorted(root.iterdir(), key=lambda p: natural_key(p.name)) if _SUBJECT.match(p.name)
    ]
    if not subjects:
        raise DataError(
            f"{root}: no proband<N> folders (expected {root}/proband1/data/acc_<activity>_csv...)"
        )
    for sdir in subjects:
        data = sdir / "data" if (sdir / "data").is_dir() else sdir
        for entry in sorted(data.iterdir(), key=lambda p: natural_key(p.name)):
            m = _ARCHIVE.match(entry.name)
            if m and (entry.is_dir() or entry.suffix.lower() == ".zip"):
                sensor = _SENSORS.get(m.group("sensor").lower())
                if sensor not in sensors:  # left unopened: GPS, light, sound, or a sensor not asked for
                    table.exclude(entry, _not_read(m.group("sensor"), sensor, sensors))
                    table.count("archives_not_read")
                    continue
            for display, name, session, opener in _walk(entry):
                _add(recs, table, sdir.name.lower(), sensors, display, name, session, opener)
    return recs


def _add(
    recs: Recordings,
    table: Table,
    subject: str,
    sensors: tuple[str, ...],
    display: str,
    name: str,
    session: str | None,
    opener: Opener,
) -> None:
    m = _FILE.match(name)
    if m is None:
        table.exclude(display, "not a sensor CSV named <sensor>_<activity>[_<session>]_<position>.csv")
        table.count("files_not_read")
        return
    sensor = _SENSORS.get(m.group("sensor").lower())
    if sensor not in sensors:
        table.exclude(display, _not_read(m.group("sensor"), sensor, sensors))
        table.count("files_not_read")
        return
    session = m.group("session") or session or "1"
    key = (subject, m.group("activity").lower(), str(int(session)), m.group("position").lower())
    got = recs.setdefault(key, {})
    if sensor in got:
        table.exclude(display, f"same recording and sensor as {got[sensor][0]}, which is used")
        table.count("files_duplicate")
        return
    got[sensor] = (display, opener)


def _not_read(name: str, sensor: str | None, sensors: tuple[str, ...]) -> str:
    why = f"sensor {name!r} is not read" if sensor is None else "sensor not asked for"
    return f"{why} (sensors={','.join(sensors)})"


def _walk(path: Path, session: str | None = None):
    """(display name, file name, session from the folder / zip names, bytes opener) of every file under
    a folder or inside a zip, nested folders and zips included, in natural name order."""
    m = _ARCHIVE.match(path.name)
    session = (m.group("session") if m else None) or session
    if path.is_dir():
        for p in sorted(path.iterdir(), key=lambda p: natural_key(p.name)):
            yield from _walk(p, session)
    elif path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                yield from _walk_zip(path, (), z, session)
        except zipfile.BadZipFile:
            raise DataError(f"{path}: not a valid zip file") from None
    else:
        yield str(path), path.name, session, path.read_bytes


def _walk_zip(archive: Path, chain: tuple[str, ...], z: zipfile.ZipFile, session: str | None):
    inside = "/".join((str(archive), *chain))
    for info in sorted(z.infolist(), key=lambda i: natural_key(i.filename)):
        if info.is_dir():
            continue
        name = PurePosixPath(info.filename).name
        m = _ARCHIVE.match(name)
        here = (m.group("session") if m else None) or session
        if name.lower().endswith(".zip"):
            try:
                inner = zipfile.ZipFile(io.BytesIO(z.read(info.filename)))
            except zipfile.BadZipFile:
                raise DataError(f"{inside}/{info.filename}: not a valid zip file") from None
            with inner:
                yield from _walk_zip(archive, (*chain, info.filename), inner, here)
        else:
            yield (
                f"{inside}/{info.filename}",
                name,
                here,
                lambda chain=(*chain, info.filename): _read_member(archive, chain),
            )


def _read_member(archive: Path, chain: tuple[str, ...]) -> bytes:
    """The bytes of a member of `archive`, through any nested zips named in `chain`."""
    outer = _nested_zip_bytes(str(archive), chain[:-1]) if len(chain) > 1 else None
    with zipfile.ZipFile(io.BytesIO(outer) if outer is not None else archive) as z:
        return z.read(chain[-1])


@functools.lru_cache(maxsize=2)
def _nested_zip_bytes(archive: str, chain: tuple[str, ...]) -> bytes:
    """The bytes of the zip nested in `archive` at `chain` (cached: its CSVs are read one by one)."""
    with zipfile.ZipFile(archive) as z:
        data = z.read(chain[0])
    for name in chain[1:]:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(name)
    return data


def _load_sensor(display: str, raw: bytes, nan: str) -> tuple[np.ndarray, np.ndarray]:
    """(time in s [N], xyz [N, 3]); rows with NaN raise (nan='error') or become NaN (dropped later)."""
    cols = ("attr_time", "attr_x", "attr_y", "attr_z")
    table = parse_csv(decode_text(raw, display), display, required=cols)
    idx = [table.columns.index(c) for c in cols]
    times, values = [], []
    for line, cells in table.records:
        row = []
        for c, i in zip(cols, idx):
            cell = cells[i]
            try:
                v = float(cell) if cell else float("nan")
            except ValueError:
                raise DataError(f"{display}: row {line}: {c} = {cell!r} is not a number") from None
            if not np.isfinite(v):
                if nan == "error" or c == "attr_time":
                    raise DataError(
                        f"{display}: row {line}: {c} is {cell or 'empty'} (NaN); "
                        "fix the file or pass nan='drop' to drop the windows that contain it"
                    )
            row.append(v)
        times.append(row[0])
        values.append(row[1:])
    if not times:
        raise DataError(f"{display}: no samples")
    t = np.asarray(times) / 1000.0
    order = np.argsort(t, kind="stable")
    return t[order], np.asarray(values, np.float32)[order]


def _align(base_t: np.ndarray, t: np.ndarray, x: np.ndarray, tol: float) -> np.ndarray:
    """x resampled at base_t by nearest time stamp; NaN where no sample lies within `tol` seconds."""
    j = np.clip(np.searchsorted(t, base_t), 1, len(t) - 1) if len(t) > 1 else np.zeros(len(base_t), int)
    if len(t) > 1:
        j = np.where(np.abs(t[j - 1] - base_t) <= np.abs(t[j] - base_t), j - 1, j)
    out = x[j].copy()
    out[np.abs(t[j] - base_t) > tol] = np.nan
    return out


def read_realworld_har(
    root: str | Path,
    *,
    out_dir: str | Path | None = None,
    sensors: tuple[str, ...] = ("acc", "gyr"),
    positions: tuple[str, ...] | None = None,
    rate: float = 50.0,
    window: float = 1.0,
    overlap: float = 0.5,
    test_subjects: list[str | int] | None = None,
    val_subjects: list[str | int] | None = None,
    test_size: float = 0.2,
    val_size: float = 0.0,
    seed: int = 0,
    subject_attributes: str | Path | None = None,
    nan: str = "error",
) -> Table:
    """Read RealWorld-HAR into windows (see the module docstring for the layout and the rules)."""
    check_choice("nan", nan, ("error", "drop"))
    for s in sensors:
        check_choice("sensor", s, ("acc", "gyr", "mag"))
    if out_dir is None:
        raise DataError("read_realworld_har writes one .npy per window: pass out_dir= (convert() does this)")
    if not 0 <= overlap < 1:
        raise DataError(f"overlap must be in [0, 1), got {overlap}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    _nested_zip_bytes.cache_clear()  # never bytes of an earlier call (a zip rewritten since)
    found = make_table([], [], dataset="realworld_har")  # collects what discovery leaves out
    recs = _discover(root, tuple(sensors), found)
    if positions is not None:
        for k in [k for k in recs if k[3] not in positions]:
            found.exclude("/".join(k), f"position not asked for (positions={','.join(positions)})")
            found.count("recordings_other_position")
            del recs[k]
    subjects = sorted({k[0] for k in recs}, key=natural_key)
    split_of = _subject_splits(subjects, test_subjects, val_subjects, test_size, val_size, seed)
    attrs, attr_cols = _attributes(subject_attributes)

    arrays = Path(out_dir) / "windows"
    arrays.mkdir(parents=True, exist_ok=True)
    length = max(1, round(window * rate))
    step = max(1, round(length * (1 - overlap)))
    period = 1.0 / rate
    columns = ["activity", "subject", "position", *attr_cols]
    table = make_table([], columns, dataset="realworld_har", excluded=found.excluded, stats=found.stats)
    for key in sorted(recs, key=lambda k: tuple(natural_key(p) for p in k)):
        subject, activity, session, position = key
        files = recs[key]
        absent = [s for s in sensors if s not in files]
        if absent:
            table.exclude("/".join(key), f"no {', '.join(absent)} file for this recording")
            table.count("recordings_incomplete")
            continue
        x, base_t = _aligned(files, sensors, nan, period)
        row = {"split": split_of[subject], "group": subject, "dataset": "realworld_har", "activity": activity,
               "subject": subject, "position": position, **attrs.get(subject, dict.fromkeys(attr_cols, ""))}  # fmt: skip
        _write_windows(table, "_".join(key), x, base_t, period, length, step, arrays, row)
    _nested_zip_bytes.cache_clear()
    table.label_spaces["subject"] = subjects
    return table


def _aligned(files: dict, sensors, nan: str, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The recording's sensors side by side on the first sensor's time stamps: ([N, channels], times)."""
    loaded = [_load_sensor(files[s][0], files[s][1](), nan) for s in sensors]
    base_t = loaded[0][0]
    chans = [loaded[0][1]] + [_align(base_t, t, x, period / 2) for t, x in loaded[1:]]
    return np.concatenate(chans, axis=1), base_t


def _write_windows(
    table, stem: str, x: np.ndarray, base_t: np.ndarray, period: float, length: int, step: int,
    arrays: Path, row: dict[str, str],
) -> None:  # fmt: skip
    """One .npy and one manifest row per window of `length` samples every `step`; a window across a time
    gap or holding a non-finite value is dropped and counted."""
    invalid = ~np.isfinite(x).all(axis=1)
    gap_after = np.diff(base_t) > 1.5 * period  # gap between sample i and i + 1
    gap_cum = np.concatenate([[0], np.cumsum(gap_after)])
    bad_cum = np.concatenate([[0], np.cumsum(invalid)])
    table.count("recordings")
    for k, s0 in enumerate(range(0, len(x) - length + 1, step)):
        s1 = s0 + length
        if gap_cum[s1 - 1] - gap_cum[s0] > 0:
            table.count("windows_dropped_gap")
            continue
        if bad_cum[s1] - bad_cum[s0] > 0:
            table.count("windows_dropped_invalid")
            continue
        wid = f"{stem}_{k:05d}"
        dest = arrays / f"{wid}.npy"
        np.save(dest, x[s0:s1].astype(np.float32))
        table.count("windows")
        table.rows.append({"id": wid, "path": str(dest), **row})


def _subject_splits(subjects, test_subjects, val_subjects, test_size, val_size, seed) -> dict[str, str]:
    if test_subjects is not None or val_subjects is not None:
        test = {_subject_key(str(s)) for s in test_subjects or []}
        val = {_subject_key(str(s)) for s in val_subjects or []}
        unknown = sorted((test | val) - set(subjects))
        if unknown:
            raise DataError(f"test/val subjects {unknown} are not in the data (subjects: {subjects})")
        if test & val:
            raise DataError(f"subjects {sorted(test & val)} are both in test_subjects and val_subjects")
        return {s: "test" if s in test else "val" if s in val else "train" for s in subjects}
    out = dict.fromkeys(subjects, "train")
    if len(subjects) < 2:
        return out
    rest = list(subjects)
    if test_size > 0:
        tr, te = holdout_by_group(rest, test_size=test_size, seed=seed)
        out.update({rest[i]: "test" for i in te})
        rest = [rest[i] for i in tr]
    if val_size > 0 and len(rest) >= 2:
        tr, va = holdout_by_group(
            rest, test_size=min(0.5, val_size / max(1e-9, 1 - test_size)), seed=seed + 1
        )
        out.update({rest[i]: "val" for i in va})
    return out


def _attributes(path: str | Path | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    if path is None:
        return {}, []
    path = Path(path)
    out: dict[str, dict[str, str]] = {}
    cols: list[str] = []
    for line_no, r in read_csv_rows(path, required=("subject",)):
        cols = [c for c in r if c != "subject" and c not in RESERVED and c not in ("activity", "position")]
        key = _subject_key(r["subject"])
        if key in out:
            raise DataError(f"{path}: line {line_no}: subject {r['subject']!r} appears twice")
        out[key] = {c: r[c] for c in cols}
    return out, cols
