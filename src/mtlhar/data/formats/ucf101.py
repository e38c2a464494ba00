"""UCF101 (Soomro et al., 2012): the official layout and its three train/test splits.

Expected layout (as unpacked from UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip)::

    ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ROOT/ucfTrainTestlist/classInd.txt        "1 ApplyEyeMakeup" (1-based index, class name)
    ROOT/ucfTrainTestlist/trainlist0K.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist0K.txt      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

Manifest: id = file stem, split train / test, group = gXX (the 25 groups of clips cut from the same
long video: the official splits never separate them), column `action` in classInd order.
The class is the folder named in the list (the official lists write `HandstandPushups/v_HandStandPushups_...`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from .table import Table, check_choice, find_dir, index_files, make_table, read_lines

_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)


def _read_classes(class_file: Path) -> list[str]:
    """The class names of `classInd.txt` ('<index> <ClassName>' lines, indices 1, 2, ... in order)."""
    classes: list[str] = []
    for line_no, line in read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{class_file}: line {line_no}: expected '<index> <ClassName>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise DataError(
                f"{class_file}: line {line_no}: index {parts[0]} out of order (expected {len(classes) + 1})"
            )
        classes.append(parts[1])
    return classes


def read_ucf101(
    root: str | Path,
    *,
    split: int = 1,
    videos: str | Path | None = None,
    lists: str | Path | None = None,
    missing: str = "error",
) -> Table:
    """Read UCF101 split `split` (1, 2 or 3).

    videos / lists: override the `UCF-101` and `ucfTrainTestlist` folders. missing: "error" (default)
    raises when a list names a video that is not on disk; "report" leaves it out and records it.
    Videos on disk that neither list names are left out and recorded in `Table.excluded`.
    """
    check_choice("split", split, (1, 2, 3))
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    vdir = Path(videos) if videos else find_dir(root, "UCF-101", "UCF101", "videos")
    ldir = Path(lists) if lists else find_dir(root, "ucfTrainTestlist", "splits", "lists")
    if vdir is None or not vdir.is_dir():
        raise DataError(f"{root}: no UCF-101 video folder (expected {root / 'UCF-101'}/<Class>/v_*.avi)")
    if ldir is None or not ldir.is_dir():
        raise DataError(f"{root}: no split folder (expected {root / 'ucfTrainTestlist'}/classInd.txt)")

    class_file = ldir / "classInd.txt"
    classes = _read_classes(class_file)
    class_set = set(classes)

    on_disk = {p.relative_to(vdir).as_posix().lower(): p for p in index_files(vdir, (".avi",)).values()}
    table = make_table([], ["action"], label_spaces={"action": classes}, dataset="ucf101")
    listed: set[str] = set()
    for split_name, list_name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        list_file = ldir / list_name
        for line_no, line in read_lines(list_file):
            parts = line.split()
            rel = parts[0].replace("\\", "/")
            where = f"{list_file}: line {line_no}"
            if "/" not in rel:
                raise DataError(f"{where}: expected '<Class>/<video>.avi', got {rel!r}")
            cls = rel.split("/")[0]
            if cls not in class_set:
                raise DataError(f"{where}: class {cls!r} is not in {class_file}")
            if len(parts) > 1 and parts[1] != str(classes.index(cls) + 1):
                raise DataError(
                    f"{where}: label {parts[1]} does not match folder {cls!r} "
                    f"(classInd gives {classes.index(cls) + 1})"
                )
            listed.add(rel.lower())
            path = on_disk.get(rel.lower())
            if path is None:
                if missing == "error":
                    raise DataError(
                        f"{where}: video {rel} not found under {vdir} "
                        "(pass missing='report' to leave it out and list it)"
                    )
                table.exclude(vdir / rel, f"named in {list_file.name} line {line_no} but not on disk")
                continue
            m = _GROUP.search(path.stem)
            if m is None:
                raise DataError(f"{where}: cannot read the group gXX from the file name {path.name}")
            table.rows.append(
                {
                    "id": path.stem,
                    "path": str(path),
                    "split": split_name,
                    "group": f"g{int(m.group(1)):02d}",
                    "dataset": "ucf101",
                    "action": cls,
                }
            )
    for key, path in sorted(on_disk.items()):
        if key not in listed:
            table.exclude(path, f"in neither trainlist0{split}.txt nor testlist0{split}.txt")
    return table
