"""Kinetics-400/600/700 (Kay et al., 2017; Carreira et al., 2018/2019): annotation CSVs and trimmed clips.

Expected layout::

    ROOT/annotations/{train,validate,test}.csv   (or any *.csv given with `annotations=`)
        label,youtube_id,time_start,time_end,split[,is_cc]     (test CSVs may lack `label`)
    ROOT/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4    nested layout
    ROOT/<anything>/<youtube_id>_<start:06d>_<end:06d>.mp4         flat layout (all clips in one folder)

Clips are found by file name anywhere under the video folder, so both layouts (and class folders
with spaces or underscores) work. A CSV row whose clip is missing is left out and recorded in
`Table.excluded` (or raises with missing="error"); it is never dropped silently.

Two files with the same clip name (the same stem, whatever the extension): the CVDF release ships
`replacement/replacement_for_corrupted_k400/` with the names of about 1,400 corrupted train clips.
Rule: a copy under a folder whose name starts with `replacement` (any case, at any depth below the
video folder) wins; otherwise the first in sorted path order. Every other copy is recorded in
`Table.excluded` (its path, and the path used) and `stats["duplicate_clip_names"]` counts the names.
Manifest: id = clip file stem, split train / val / test, group = youtube_id, column `action`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from .table import (
    VIDEO_EXTENSIONS,
    Table,
    check_choice,
    make_table,
    normalise_split,
    read_csv_rows,
    read_lines,
)


def kinetics_clip_name(youtube_id: str, start: str, end: str) -> str:
    """`<youtube_id>_<start:06d>_<end:06d>` as the official download scripts name a clip."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def read_kinetics(
    root: str | Path,
    *,
    annotations: str | Path | list[str | Path] | None = None,
    videos: str | Path | None = None,
    classes: str | Path | None = None,
    missing: str = "report",
) -> Table:
    """Read Kinetics annotation CSVs and match each row to its clip file.

    annotations: CSV file(s); default every *.csv in ROOT/annotations (or ROOT). videos: folder
    searched for clips (default ROOT). classes: optional text file, one class per line, fixing the
    label order (default: sorted). missing: "report" (default) or "error".
    """
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    if annotations is None:
        adir = root / "annotations" if (root / "annotations").is_dir() else root
        csvs = sorted(adir.glob("*.csv"))
        if not csvs:
            raise DataError(f"{root}: no annotation CSVs (expected {root / 'annotations'}/train.csv ...)")
    else:
        csvs = [Path(a) for a in (annotations if isinstance(annotations, list) else [annotations])]
    vdir = Path(videos) if videos else root
    clips, duplicates = index_clips(vdir)

    rows: list[tuple[str, int, dict[str, str]]] = []
    for path in csvs:
        for line_no, r in read_csv_rows(path, required=("youtube_id", "time_start", "time_end")):
            rows.append((str(path), line_no, r))

    class_list: list[str]
    if classes is not None:
        class_list = [line for _, line in read_lines(Path(classes))]
    else:
        class_list = sorted({r.get("label", "") for _, _, r in rows} - {""})
    known = set(class_list)

    table = make_table([], ["action"], label_spaces={"action": class_list}, dataset="kinetics")
    for stem, kept, others, why in duplicates:
        for other in others:
            table.exclude(other, f"duplicate clip name {stem}: {kept} is used ({why})")
    table.stats["duplicate_clip_names"] = len(duplicates)
    missing_clips = 0
    for path, line_no, r in rows:
        where = f"{path}: line {line_no}"
        try:
            name = kinetics_clip_name(r["youtube_id"], r["time_start"], r["time_end"])
        except ValueError:
            raise DataError(
                f"{where}: time_start/time_end must be numbers, got {r['time_start']!r}, {r['time_end']!r}"
            ) from None
        label = r.get("label", "")
        if label and label not in known:
            raise DataError(f"{where}: label {label!r} is not in the class list {classes or ''}".rstrip())
        split = normalise_split(r.get("split", "") or Path(path).stem)
        clip = clips.get(name)
        if clip is None:
            if missing == "error":
                raise DataError(f"{where}: clip {name}.* not found under {vdir}")
            table.exclude(name, f"{where}: clip file not found under {vdir}")
            missing_clips += 1
            continue
        table.rows.append(
            {
                "id": name,
                "path": str(clip),
                "split": split,
                "group": r["youtube_id"],
                "dataset": "kinetics",
                "action": label,
            }
        )
    table.stats["missing_clips"] = missing_clips
    return table


def _in_replacement_folder(path: Path, root: Path) -> bool:
    return any(part.lower().startswith("replacement") for part in path.relative_to(root).parts[:-1])


def index_clips(root: Path) -> tuple[dict[str, Path], list[tuple[str, Path, list[Path], str]]]:
    """{clip name (file stem): path} of the videos under `root`, and the names found more than once as
    (name, path used, other paths, why); see the module docstring for the rule."""
    by_name: dict[str, list[Path]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(VIDEO_EXTENSIONS):
                p = Path(dirpath) / f
                by_name.setdefault(p.stem, []).append(p)
    clips: dict[str, Path] = {}
    duplicates: list[tuple[str, Path, list[Path], str]] = []
    for name in sorted(by_name):
        paths = sorted(by_name[name], key=lambda p: p.relative_to(root).as_posix())
        preferred = [p for p in paths if _in_replacement_folder(p, root)]
        kept = (preferred or paths)[0]
        clips[name] = kept
        if len(paths) > 1:
            why = "the copy under a replacement* folder wins" if preferred else "first in sorted path order"
            duplicates.append((name, kept, [p for p in paths if p != kept], why))
    return clips, duplicates
