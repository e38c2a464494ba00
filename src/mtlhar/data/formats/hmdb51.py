"""HMDB51 (Kuehne et al., 2011): class folders and the official 70/30 split files.

Expected layout (hmdb51_org.rar unpacked, test_train_splits.rar unpacked)::

    ROOT/<class>/<video>.avi
    ROOT/testTrainMulti_7030_splits/<class>_test_split<K>.txt   "<video>.avi <code>"

with code 1 = train, 2 = test, 0 = not used in this split (left out, counted in `stats["unused"]`).
Video names follow `<source>_<class>_<body parts>_<camera motion>_<people>_<viewpoint>_<quality>_<n>`;
`group` is the `<source>` (the movie or web video the clip was cut from) when the class name can be
found in the video name, else the video name itself. Column `action`, classes sorted alphabetically
(HMDB51 defines no other order).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from .table import Table, check_choice, find_dir, make_table, read_lines

_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>\d)\.txt$")
_CODES = {"1": "train", "2": "test"}


def hmdb_group(video: str, cls: str) -> str:
    """The source video of an HMDB51 clip name, or the clip name when the class is not found in it."""
    stem = Path(video).stem
    i = stem.find(f"_{cls}_")
    return stem[:i] if i > 0 else stem


def read_hmdb51(
    root: str | Path,
    *,
    split: int = 1,
    videos: str | Path | None = None,
    splits_dir: str | Path | None = None,
    missing: str = "error",
) -> Table:
    """Read HMDB51 split `split` (1, 2 or 3).

    videos / splits_dir: override the class-folder root and `testTrainMulti_7030_splits`.
    missing: "error" (default) raises when a split file names a video not on disk; "report" records it.
    Videos on disk that the split files do not name are left out and recorded.
    """
    check_choice("split", split, (1, 2, 3))
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    vdir = Path(videos) if videos else (find_dir(root, "hmdb51_org", "videos") or root)
    sdir = Path(splits_dir) if splits_dir else find_dir(root, "testTrainMulti_7030_splits", "splits")
    if sdir is None or not sdir.is_dir():
        raise DataError(
            f"{root}: no split folder (expected {root / 'testTrainMulti_7030_splits'}/<class>_test_split1.txt)"
        )
    split_files = {}
    for p in sorted(sdir.glob(f"*_test_split{split}.txt")):
        m = _SPLIT_FILE.match(p.name)
        if m:
            split_files[m.group("cls")] = p
    if not split_files:
        raise DataError(f"{sdir}: no '<class>_test_split{split}.txt' files")
    classes = sorted(split_files)
    table = make_table([], ["action"], label_spaces={"action": classes}, dataset="hmdb51")
    listed: set[tuple[str, str]] = set()
    seen_ids: dict[str, str] = {}
    for cls in classes:
        split_file = split_files[cls]
        cdir = vdir / cls
        for line_no, line in read_lines(split_file):
            parts = line.split()
            where = f"{split_file}: line {line_no}"
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{where}: expected '<video>.avi <0|1|2>', got {line!r}")
            name, code = parts
            listed.add((cls, name))
            if code == "0":
                table.count("unused")
                continue
            path = cdir / name
            if not path.is_file():
                if missing == "error":
                    raise DataError(
                        f"{where}: video {path} not found (pass missing='report' to leave it out and list it)"
                    )
                table.exclude(path, f"named in {split_file.name} line {line_no} but not on disk")
                continue
            vid = Path(name).stem
            if vid in seen_ids:
                raise DataError(f"{where}: video name {name!r} also appears in class {seen_ids[vid]!r}")
            seen_ids[vid] = cls
            table.rows.append(
                {
                    "id": vid,
                    "path": str(path),
                    "split": _CODES[code],
                    "group": hmdb_group(name, cls),
                    "dataset": "hmdb51",
                    "action": cls,
                }
            )
    for cls in classes:
        if (vdir / cls).is_dir():
            for p in sorted((vdir / cls).glob("*.avi")):
                if (cls, p.name) not in listed:
                    table.exclude(p, f"not named in {split_files[cls].name}")
    for p in sorted(vdir.iterdir()) if vdir.is_dir() else []:
        if p.is_dir() and p.name not in split_files and p != sdir and any(p.glob("*.avi")):
            table.exclude(p, f"class folder without a split file {p.name}_test_split{split}.txt")
    return table
