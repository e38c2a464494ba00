"""Pre-extracted features: one [T, D] array per clip (.npy / .npz), or one HDF5 file of them.

Layouts::

    ROOT/**/<clip>.npy | .npz (key 'x' or the first key) + ROOT/labels.csv (as for `folder`)
    ROOT/<class>/<clip>.npy                            no table: column `label` = the folder name
    FILE.h5 with one [T, D] dataset per clip           + labels=CSV whose `path` column names the
                                                         dataset key; needs h5py, and `out_dir`:
                                                         each dataset is saved as out_dir/arrays/<key>.npy

Every array is checked (2-D, finite) and a bad one raises naming the file. The manifest feeds
`ClipDataset(stream="seq")`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from .folder import find_label_file, rows_from_class_folders, rows_from_label_file
from .table import ARRAY_EXTENSIONS, RESERVED, Table, check_choice, make_table, read_csv_rows


def check_array(arr: np.ndarray, where: str, *, ndim: int = 2) -> np.ndarray:
    """Raise DataError naming `where` unless `arr` is a finite numeric array with `ndim` dimensions."""
    if arr.ndim != ndim or arr.size == 0:
        raise DataError(f"{where}: expected a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: expected numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise DataError(f"{where}: non-finite value (NaN or inf) at index {tuple(int(v) for v in i)}")
    return arr


def load_array(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                arr = arr["x"] if "x" in arr.files else arr[arr.files[0]]
    except Exception as e:  # noqa: BLE001 - numpy raises several types for broken files
        raise DataError(f"{path}: cannot read array ({type(e).__name__}: {e})") from None
    return arr


def read_features(
    root: str | Path,
    *,
    labels: str | Path | None = None,
    path_column: str | None = None,
    out_dir: str | Path | None = None,
    missing: str = "error",
    dataset: str = "features",
) -> Table:
    """Read pre-extracted [T, D] feature arrays (see the layouts above)."""
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    if root.suffix.lower() in (".h5", ".hdf5"):
        return _read_hdf5(root, labels, path_column, out_dir, dataset)
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    table = make_table([], [], dataset=dataset)
    label_file = Path(labels) if labels else find_label_file(root)
    if label_file is not None:
        rows, tasks = rows_from_label_file(
            root,
            label_file,
            path_column=path_column,
            extensions=ARRAY_EXTENSIONS,
            missing=missing,
            table=table,
            dataset=dataset,
        )
    else:
        rows, tasks = rows_from_class_folders(root, ARRAY_EXTENSIONS, dataset)
    for r in rows:
        check_array(load_array(Path(r["path"])), r["path"])
    return make_table(rows, tasks, dataset=dataset, excluded=table.excluded)


def _read_hdf5(path: Path, labels, path_column, out_dir, dataset) -> Table:
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading HDF5 needs the h5py package (pip install h5py)") from None
    if out_dir is None:
        raise DataError(f"{path}: HDF5 features are saved as .npy files: pass out_dir=")
    if labels is None:
        raise DataError(f"{path}: pass labels=CSV with a `path` column naming each dataset key")
    arrays = Path(out_dir) / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rows, tasks = [], []
    with h5py.File(path, "r") as f:
        for line_no, r in read_csv_rows(Path(labels)):
            key = r.get(path_column or "path", "")
            where = f"{labels}: line {line_no}"
            if key not in f:
                raise DataError(f"{where}: dataset {key!r} not in {path}")
            arr = check_array(np.asarray(f[key]), f"{path}:{key}")
            dest = arrays / (key.strip("/").replace("/", "__") + ".npy")
            np.save(dest, arr.astype(np.float32))
            tasks = [c for c in r if c not in RESERVED and c != (path_column or "path")]
            row = dict(r, path=str(dest), id=r.get("id") or key.strip("/"))
            row["group"] = r.get("group") or row["id"]
            rows.append(row)
    return make_table(rows, tasks, dataset=dataset)
