"""Fixed-length multichannel time series: arrays N x C x T (.npy) with a labels file.

Layouts (`root` is a file or a folder)::

    DATA.npy  [N, C, T]  + labels=FILE    one label per line (.txt), a .npy of N labels, or a CSV with
                                          N rows (columns `label` or any task columns, optional
                                          id / split / group)
    ROOT/X_<split>.npy + ROOT/y_<split>.txt|.npy|.csv     one pair per split (train, val, test)

Each sample becomes `out_dir/series/<id>.npy`, float32 [T, C] (the `seq` stream's layout). Without a
`group` column each sample is its own group. A NaN or inf raises DataError naming the file and sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from .features import load_array
from .table import RESERVED, Table, make_table, normalise_split, read_csv_rows, read_lines


def _labels(path: Path, n: int) -> tuple[list[dict[str, str]], list[str]]:
    if path.suffix.lower() == ".npy":
        values = [str(v) for v in np.load(path, allow_pickle=False).ravel()]
        rows, tasks = [{"label": v} for v in values], ["label"]
    elif path.suffix.lower() == ".csv":
        pairs = list(read_csv_rows(path))
        rows = [r for _, r in pairs]
        tasks = [c for c in (rows[0] if rows else {}) if c not in RESERVED]
    else:
        rows, tasks = [{"label": line} for _, line in read_lines(path)], ["label"]
    if len(rows) != n:
        raise DataError(f"{path}: {len(rows)} labels for {n} samples")
    return rows, tasks


def series_rows(
    x: np.ndarray, labels: list[dict[str, str]], *, source: str, split: str, arrays: Path, prefix: str
) -> list[dict[str, str]]:
    """Save each [C, T] sample of x as [T, C] .npy and return its manifest rows."""
    if x.ndim != 3:
        raise DataError(f"{source}: expected an [N, C, T] array, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        n, c, t = np.argwhere(bad)[0]
        raise DataError(f"{source}: sample {n}, channel {c}, step {t} is NaN or inf")
    rows = []
    for i, (sample, lab) in enumerate(zip(x, labels)):
        rid = lab.get("id") or f"{prefix}{i:06d}"
        dest = arrays / f"{rid}.npy"
        np.save(dest, np.ascontiguousarray(sample.T, dtype=np.float32))
        row = {k: v for k, v in lab.items() if k != "id"}
        row.update(id=rid, path=str(dest), group=lab.get("group") or rid)
        row["split"] = normalise_split(lab.get("split") or split)
        rows.append(row)
    return rows


def read_timeseries(
    root: str | Path,
    *,
    labels: str | Path | None = None,
    out_dir: str | Path | None = None,
    split: str = "",
    dataset: str = "timeseries",
) -> Table:
    """Read N x C x T arrays and their labels (see the layouts above) into per-sample [T, C] .npy files."""
    if out_dir is None:
        raise DataError("read_timeseries writes one .npy per sample: pass out_dir= (convert() does this)")
    root = Path(root)
    arrays = Path(out_dir) / "series"
    arrays.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    tasks: list[str] = []
    if root.is_file():
        if labels is None:
            raise DataError(f"{root}: pass labels= (a .txt, .npy or .csv with one row per sample)")
        x = load_array(root)
        lab, tasks = _labels(Path(labels), len(x))
        rows = series_rows(x, lab, source=str(root), split=split, arrays=arrays, prefix=f"{root.stem}_")
    elif root.is_dir():
        pairs = sorted(root.glob("X_*.npy"))
        if not pairs:
            raise DataError(f"{root}: no X_<split>.npy files (or pass a single .npy and labels=)")
        for xp in pairs:
            part = xp.stem[2:]
            yp = next(
                (
                    root / f"y_{part}{e}"
                    for e in (".txt", ".npy", ".csv")
                    if (root / f"y_{part}{e}").is_file()
                ),
                None,
            )
            if yp is None:
                raise DataError(f"{xp}: no labels file y_{part}.txt / .npy / .csv beside it")
            x = load_array(xp)
            lab, t = _labels(yp, len(x))
            tasks += [c for c in t if c not in tasks]
            rows += series_rows(x, lab, source=str(xp), split=part, arrays=arrays, prefix=f"{part}_")
    else:
        raise DataError(f"not found: {root}")
    return make_table(rows, tasks, dataset=dataset)
