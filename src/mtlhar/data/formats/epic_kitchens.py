"""EPIC-Kitchens-100 (Damen et al., 2022): action segments of long videos.

Expected layout (epic-kitchens-100-annotations repository + the videos)::

    ROOT/EPIC_100_train.csv, ROOT/EPIC_100_validation.csv       (or annotations={split: CSV})
        narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,
        start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes
    ROOT/EPIC_100_verb_classes.csv, ROOT/EPIC_100_noun_classes.csv   (optional) id,key,instances,category
    VIDEOS/<participant_id>/videos/<video_id>.MP4    (also VIDEOS/<participant_id>/<video_id>.MP4 or
                                                      VIDEOS/<video_id>.MP4; VIDEOS defaults to ROOT)

Timestamps HH:MM:SS.ff become `start`/`end` seconds (a segment of the long video). Columns `verb`,
`noun` (the class keys of the class CSVs, in id order; without them the `verb` / `noun` words of the
annotation rows, which EPIC maps many-to-one onto the classes, so give the class CSVs where you can)
and `action` = "<verb>+<noun>" (the pairs that occur). group = participant_id. Segments whose video
is missing, or whose stop is not after their start, are left out and recorded.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from .table import Table, check_choice, make_table, normalise_split, read_csv_rows

_TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_REQUIRED = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp")


def parse_timestamp(value: str, where: str) -> float:
    """'00:01:02.50' -> 62.5 seconds; DataError naming `where` otherwise."""
    m = _TIME.match(value.strip())
    if m is None:
        raise DataError(f"{where}: timestamp {value!r} is not HH:MM:SS.ff")
    h, mnt, s = int(m.group(1)), int(m.group(2)), float(m.group(3))
    return h * 3600 + mnt * 60 + s


def _classes(path: Path | None) -> dict[str, str] | None:
    if path is None or not path.is_file():
        return None
    out = {}
    for line_no, r in read_csv_rows(path, required=("id", "key")):
        if r["id"] in out:
            raise DataError(f"{path}: line {line_no}: class id {r['id']} repeats")
        out[r["id"]] = r["key"]
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _find_video(vdir: Path, participant: str, video: str, ext: str) -> Path | None:
    for rel in (f"{participant}/videos/{video}", f"{participant}/{video}", video):
        for e in (ext, ext.lower(), ext.upper()):
            p = vdir / f"{rel}{e}"
            if p.is_file():
                return p
    return None


def read_epic_kitchens(
    root: str | Path,
    *,
    annotations: dict[str, str | Path] | None = None,
    videos: str | Path | None = None,
    verb_classes: str | Path | None = None,
    noun_classes: str | Path | None = None,
    extension: str = ".MP4",
    missing: str = "report",
) -> Table:
    """Read EPIC-Kitchens-100 annotation CSVs (see the layout above). missing: "report" or "error"."""
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    if annotations is None:
        annotations = {}
        for split, name in (("train", "EPIC_100_train.csv"), ("val", "EPIC_100_validation.csv")):
            if (root / name).is_file():
                annotations[split] = root / name
        if not annotations:
            raise DataError(f"{root}: no EPIC_100_train.csv / EPIC_100_validation.csv (or pass annotations=)")
    vdir = Path(videos) if videos else root
    verbs = _classes(Path(verb_classes) if verb_classes else root / "EPIC_100_verb_classes.csv")
    nouns = _classes(Path(noun_classes) if noun_classes else root / "EPIC_100_noun_classes.csv")

    table = make_table([], ["verb", "noun", "action"], dataset="epic_kitchens")
    found: dict[tuple[str, str], Path | None] = {}
    for split, csv_path in annotations.items():
        csv_path = Path(csv_path)
        for line_no, r in read_csv_rows(csv_path, required=_REQUIRED):
            where = f"{csv_path}: line {line_no}"
            start = parse_timestamp(r["start_timestamp"], where)
            end = parse_timestamp(r["stop_timestamp"], where)
            verb = _label(r, "verb", verbs, where)
            noun = _label(r, "noun", nouns, where)
            key = (r["participant_id"], r["video_id"])
            if key not in found:
                found[key] = _find_video(vdir, *key, extension)
            video = found[key]
            if video is None:
                if missing == "error":
                    raise DataError(f"{where}: video {r['video_id']}{extension} not found under {vdir}")
                table.exclude(r["narration_id"], f"{where}: video {r['video_id']}{extension} not found")
                continue
            if end <= start:
                table.exclude(
                    r["narration_id"], f"{where}: stop {end:.2f} s is not after start {start:.2f} s"
                )
                continue
            table.rows.append(
                {
                    "id": r["narration_id"],
                    "path": str(video),
                    "split": normalise_split(split),
                    "group": r["participant_id"],
                    "start": f"{start:.3f}",
                    "end": f"{end:.3f}",
                    "dataset": "epic_kitchens",
                    "verb": verb,
                    "noun": noun,
                    "action": f"{verb}+{noun}" if verb and noun else "",
                }
            )
    table.columns[4:4] = ["start", "end"]
    if verbs is not None:
        table.label_spaces["verb"] = list(verbs.values())
    if nouns is not None:
        table.label_spaces["noun"] = list(nouns.values())
    return table


def _label(r: dict[str, str], kind: str, classes: dict[str, str] | None, where: str) -> str:
    cls = r.get(f"{kind}_class", "")
    if classes is None or not cls:
        return r.get(kind, "")
    if cls not in classes:
        raise DataError(f"{where}: {kind}_class {cls} is not in the {kind} class list")
    return classes[cls]
