"""Inspect a manifest (or a dataset in any supported format) before training on it.

`inspect_manifest` reports counts per split / class / task, missing labels per task, classes of a
val / test split with 0 training clips, a primary-looking task with no training label, every malformed
CSV row (by line), duplicate ids and paths, groups that leak across splits, class imbalance, labels
outside `classes.json`, and every unreadable or suspicious file with the reason: missing, zero bytes,
extension that does not match the container, no video stream, truncated stream or no decodable
frames, fewer than `min_frames` frames, an array that is not [T, C] or holds NaN, a segment outside
its video. `inspect_source` runs a format reader first (into a temporary folder) and adds what the
reader left out.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError
from .formats.table import ARRAY_EXTENSIONS, RESERVED, decode_text, parse_csv
from .splits import check_group_leakage

#: FFmpeg demuxer names (PyAV `container.format.name` is a comma-separated list) per file extension.
CONTAINERS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm",
    ".mpg": "mpeg", ".mpeg": "mpeg", ".flv": "flv", ".wmv": "asf",
}  # fmt: skip


def probe_video(path: Path, *, decode: bool = True) -> tuple[dict[str, Any], list[str]]:
    """(facts, problems) of one video file: container, frames in the header, frames decoded, duration."""
    import av

    facts: dict[str, Any] = {}
    problems: list[str] = []
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - PyAV raises many error types for broken files
        return facts, [f"cannot open as a video ({type(e).__name__}: {e})"]
    with container:
        facts["container"] = container.format.name
        expected = CONTAINERS.get(path.suffix.lower())
        if expected and expected not in container.format.name.split(","):  # readable: a warning, not bad
            facts["warnings"] = [
                f"warning: extension {path.suffix} does not match the container ({container.format.name}); "
                "the file decodes, but tools that trust extensions may not"
            ]
        if not container.streams.video:
            return facts, problems + ["no video stream"]
        stream = container.streams.video[0]
        facts["header_frames"] = int(stream.frames or 0)
        if stream.duration is not None and stream.time_base is not None:
            facts["duration"] = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            facts["duration"] = container.duration / 1e6
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
                if not decode:
                    break
        except Exception as e:  # noqa: BLE001
            problems.append(
                f"decoding failed after {n} frames ({type(e).__name__}: {e}): truncated or corrupt"
            )
        facts["decoded_frames"] = n
        rate = float(stream.average_rate) if stream.average_rate else 0.0
    if n == 0 and not any("decoding failed" in p for p in problems):
        problems.append("no decodable frames")
    header = facts.get("header_frames", 0)
    if decode and header and 0 < n < header:
        problems.append(f"truncated stream: the header says {header} frames, only {n} decode")
    elif decode and not header and n > 0 and rate and facts.get("duration"):
        expected = facts["duration"] * rate  # containers without a frame count (matroska, webm)
        if n < 0.9 * expected - 1:
            problems.append(
                f"truncated stream: {facts['duration']:.2f} s at {rate:g} fps implies about "
                f"{expected:.0f} frames, only {n} decode"
            )
    return facts, problems


def _check_array(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                arr = arr["x"] if "x" in arr.files else arr[arr.files[0]]
    except Exception as e:  # noqa: BLE001
        return {}, [f"cannot read array ({type(e).__name__}: {e})"]
    facts = {"shape": list(arr.shape)}
    if arr.ndim != 2:
        return facts, [f"expected a [T, C] array, got shape {arr.shape}"]
    if np.issubdtype(arr.dtype, np.number) and not np.isfinite(arr).all():
        t = int(np.argwhere(~np.isfinite(arr))[0][0])
        return facts, [f"non-finite value (NaN or inf) at step {t}"]
    return facts, []


def check_file(path: Path, *, min_frames: int = 1, decode: bool = True) -> tuple[dict[str, Any], list[str]]:
    """(facts, problems) for one manifest file (a video or a .npy/.npz array)."""
    if not path.exists():
        return {}, ["file not found"]
    if not path.is_file():
        return {}, ["not a file"]
    if path.stat().st_size == 0:
        return {}, ["empty file (0 bytes)"]
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return _check_array(path)
    facts, problems = probe_video(path, decode=decode)
    n = facts.get("decoded_frames", 0)
    if decode and 0 < n < min_frames:
        problems.append(f"only {n} frames (fewer than min_frames={min_frames})")
    return facts, problems


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def inspect_manifest(
    manifest_path: str | Path, *, check_files: bool = True, min_frames: int = 8, decode: bool = True
) -> dict[str, Any]:
    """Everything worth knowing about a manifest before training on it (see the module docstring).

    decode=False only opens each video and decodes its first frame (fast, misses truncation).
    """
    path = Path(manifest_path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    # every bad byte and malformed row is reported; none stops the inspection
    bad_bytes: list[tuple[int, str]] = []
    text = decode_text(path.read_bytes(), str(path), bad_bytes)
    bad_rows: list[tuple[int, str]] = []
    table = parse_csv(text, str(path), required=("id",), problems=bad_rows)
    pairs = table.dicts()
    rows = [r for _, r in pairs]
    columns = list(table.columns)
    if "path" not in columns and "uri" in columns:
        for r in rows:
            r["path"] = r["uri"]
    spaces: dict[str, list[str]] = {}
    classes_file = path.parent / "classes.json"
    issues: list[dict[str, Any]] = [
        {"row": line, "id": "", "path": str(path), "problem": msg} for line, msg in bad_bytes
    ] + [
        {"row": line, "id": "", "path": str(path), "problem": f"row left out: {msg}"}
        for line, msg in bad_rows
    ]
    if classes_file.is_file():
        try:
            spaces = json.loads(classes_file.read_text())
        except json.JSONDecodeError as e:
            issues.append(
                {"row": None, "id": "", "path": str(classes_file), "problem": f"invalid JSON ({e})"}
            )
    tasks = [c for c in columns if c not in RESERVED and c != "uri"]
    report: dict[str, Any] = {
        "manifest": str(path),
        "rows": len(rows),
        "malformed_rows": len(bad_rows),
        "columns": columns,
        "tasks": tasks,
        "splits": dict(Counter(r.get("split", "") for r in rows)),
        "groups": {
            "count": len({r.get("group", "") for r in rows} - {""}),
            "missing": sum(not r.get("group") for r in rows),
            "leaking": check_group_leakage(rows),
        },
    }
    for g, splits in report["groups"]["leaking"].items():
        issues.append({"row": None, "id": "", "path": "", "problem": f"group {g!r} is in splits {splits}"})

    primary = [t for k, t in enumerate(tasks) if k == 0 or t.lower() in PRIMARY_NAMES]
    report["task_stats"] = {t: _task_stats(t, pairs, spaces.get(t), issues, t in primary) for t in tasks}
    _check_training_labels(report["task_stats"], primary, report["splits"], issues)

    report["duplicates"] = _duplicates(pairs, issues)
    files = {"checked": 0, "ok": 0, "bad": 0}
    if check_files and "path" in columns:
        files = _check_files(pairs, path.parent, issues, min_frames=min_frames, decode=decode)
    report["files"] = files
    report["issues"] = issues
    return report


def _duplicates(pairs: list[tuple[int, dict[str, str]]], issues: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated ids, and repeated (file, segment) pairs, with their lines; each also an issue."""
    dup_ids: dict[str, list[int]] = defaultdict(list)
    dup_paths: dict[str, list[int]] = defaultdict(list)
    for line_no, r in pairs:
        dup_ids[r["id"]].append(line_no)
        key = f"{r.get('path', '')} [{r.get('start', '')}, {r.get('end', '')}]"
        if r.get("path"):
            dup_paths[key].append(line_no)
    out = {
        "ids": {k: v for k, v in dup_ids.items() if len(v) > 1},
        "paths": {k: v for k, v in dup_paths.items() if len(v) > 1},
    }
    for k, lines in out["ids"].items():
        issues.append({"row": lines[1], "id": k, "path": "", "problem": f"id repeats (lines {lines})"})
    for k, lines in out["paths"].items():
        issues.append(
            {"row": lines[1], "id": "", "path": k, "problem": f"same file and segment on lines {lines}"}
        )
    return out


def _check_files(
    pairs: list[tuple[int, dict[str, str]]],
    folder: Path,
    issues: list[dict[str, Any]],
    *,
    min_frames: int,
    decode: bool,
) -> dict[str, int]:
    """Open (and decode) every file the manifest names once; problems and warnings become issues."""
    files = {"checked": 0, "ok": 0, "bad": 0}
    by_path: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line_no, r in pairs:
        by_path[r.get("path", "")].append((line_no, r))
    for rel, users in by_path.items():
        line_no, first = users[0]
        if not rel:
            issues.append({"row": line_no, "id": first["id"], "path": "", "problem": "empty path"})
            continue
        p = Path(rel) if Path(rel).is_absolute() else folder / rel
        facts, problems = check_file(p, min_frames=min_frames, decode=decode)
        problems += _segment_problems(users, facts)
        files["checked"] += 1
        files["bad" if problems else "ok"] += 1
        for problem in problems + facts.get("warnings", []):
            issues.append({"row": line_no, "id": first["id"], "path": str(p), "problem": problem})
    return files


def _segment_problems(users: list[tuple[int, dict[str, str]]], facts: dict[str, Any]) -> list[str]:
    out = []
    duration = facts.get("duration")
    for line_no, r in users:
        s, e = r.get("start", ""), r.get("end", "")
        if not s and not e:
            continue
        if (s and not _is_number(s)) or (e and not _is_number(e)):
            out.append(f"line {line_no}: start/end {s!r}, {e!r} are not numbers")
            continue
        if s and e and float(e) <= float(s):
            out.append(f"line {line_no}: segment end {e} is not after start {s}")
        elif duration is not None and s and float(s) >= duration:
            out.append(f"line {line_no}: segment starts at {s} s, after the video's end ({duration:.2f} s)")
    return out


def _task_stats(
    task: str,
    pairs: list[tuple[int, dict[str, str]]],
    space: list[str] | None,
    issues: list[dict[str, Any]],
    primary: bool = False,
) -> dict[str, Any]:
    cells = [(line_no, r, r.get(task, "")) for line_no, r in pairs]
    labelled = [c for c in cells if c[2]]
    out: dict[str, Any] = {"labelled": len(labelled), "missing": len(cells) - len(labelled)}
    per_split: Counter = Counter(r.get("split", "") for _, r, v in labelled)
    out["labelled_per_split"] = dict(per_split)
    values = [v for _, _, v in labelled]
    numeric = values and space is None and all(_is_number(v) for v in values) and len(set(values)) > 20
    if numeric:
        arr = np.array([float(v) for v in values])
        out.update(kind="numeric", min=float(arr.min()), max=float(arr.max()), mean=float(arr.mean()))
        return out
    multilabel = any("|" in v for v in values)
    counts: Counter = Counter()
    per_split_classes: dict[str, dict[str, None]] = defaultdict(dict)  # classes per split, in order seen
    for _, r, v in labelled:
        for part in v.split("|") if multilabel else [v]:
            counts[part.strip()] += 1
            per_split_classes[r.get("split", "")][part.strip()] = None
    _unseen_in_train(task, out, per_split_classes, primary, issues)
    out["kind"] = "multilabel" if multilabel else "classes"
    out["classes"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    out["imbalance_ratio"] = (max(counts.values()) / min(counts.values())) if counts else None
    if space is not None:
        known = set(space)
        unknown = sorted(set(counts) - known)
        out["unknown_labels"] = unknown
        out["classes_without_samples"] = [c for c in space if c not in counts]
        for line_no, r, v in labelled:
            bad = [p for p in (v.split("|") if multilabel else [v]) if p.strip() not in known]
            if bad:
                issues.append(
                    {
                        "row": line_no,
                        "id": r["id"],
                        "path": r.get("path", ""),
                        "problem": f"{task}: label {bad[0]!r} is not in classes.json",
                    }  # fmt: skip
                )
    return out


#: Task column names that look like the main label of a dataset (besides the first task column).
PRIMARY_NAMES = ("action", "activity", "label", "labels", "class", "gesture", "verb", "noun", "category")


def _unseen_in_train(
    task: str,
    out: dict[str, Any],
    per_split: dict[str, dict[str, None]],
    primary: bool,
    issues: list[dict[str, Any]],
) -> None:
    """Classes that a val / test split asks for but the training split never shows (0 training clips).

    Recorded as out["unseen_in_train"] = {split: [classes]} and reported. When no class of the split
    occurs in training at all, the column is one the splits are cut along (a held-out subject, camera
    or setup column): it is reported only for a primary-looking task, and listed in
    out["disjoint_from_train"].
    """
    train = per_split.get("train")
    if not train:
        return
    out["unseen_in_train"] = {}
    for split, seen in per_split.items():
        missing = sorted(c for c in seen if c not in train)
        if split == "train" or not missing:
            continue
        out["unseen_in_train"][split] = missing
        disjoint = len(missing) == len(seen)
        if disjoint:
            out.setdefault("disjoint_from_train", []).append(split)
            if not primary:
                continue
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        what = (
            f"no class of split {split!r} occurs"
            if disjoint
            else f"{len(missing)} of the {len(seen)} classes in split {split!r} never occur"
        )
        issues.append(
            {
                "row": None,
                "id": "",
                "path": "",
                "problem": f"task {task}: {what} in the training split (0 training clips): {shown}",
            }
        )


def _check_training_labels(
    stats: dict[str, dict[str, Any]], primary: list[str], splits: dict[str, int], issues: list[dict[str, Any]]
) -> None:
    """A primary-looking task column (the first task column, or one named like `action`, `label`...)
    with no label at all in the `train` split is reported (numeric tasks too)."""
    if not splits.get("train"):
        return
    for task in primary:
        st = stats[task]
        if st["labelled_per_split"].get("train", 0):
            continue
        elsewhere = {s: n for s, n in st["labelled_per_split"].items() if n}
        issues.append(
            {
                "row": None,
                "id": "",
                "path": "",
                "problem": f"task {task}: no label at all in the training split ({splits['train']} rows; "
                f"labelled rows elsewhere: {elsewhere or 'none'}); fill the column or leave the task out",
            }
        )


def inspect_source(
    source: str | Path, format: str | None = None, *, check_files: bool = True, **options: Any
) -> dict[str, Any]:
    """Inspect a manifest (format=None: a manifest.csv or its folder) or a dataset in `format`.

    For a format, the reader runs into a temporary folder (arrays it writes are deleted afterwards),
    and the report gains `conversion` (items the reader left out, with reasons, and its counts).
    A reader error (e.g. a split file naming a missing video) raises DataError.
    """
    if format is None:
        p = Path(source)
        if not (p.is_file() or (p / "manifest.csv").is_file()):
            raise DataError(f"{source}: no manifest.csv here; pass --format to read a dataset layout")
        return inspect_manifest(p, check_files=check_files)
    from .formats import read, reader_options

    if "missing" in reader_options(format) and "missing" not in options:
        options["missing"] = "report"  # list every file a split list names but the disk lacks, not the first
    with tempfile.TemporaryDirectory(prefix="mtlhar-inspect-") as tmp:
        table = read(format, source, out=tmp, **options)
        manifest = table.write(tmp)
        report = inspect_manifest(manifest, check_files=check_files)
    report["manifest"] = f"{source} (format {format})"
    report["conversion"] = {"excluded": table.excluded, "stats": table.stats}
    return report


def print_inspection(report: dict[str, Any], file: IO[str] | None = None, *, max_issues: int = 50) -> None:
    """Human-readable summary of an inspection report."""
    out = file or sys.stdout

    def say(s: str = "") -> None:
        print(s, file=out)

    say(f"manifest: {report['manifest']}")
    say(f"rows: {report['rows']}   columns: {', '.join(report['columns'])}")
    if report.get("malformed_rows"):
        say(f"malformed rows left out: {report['malformed_rows']} (listed under issues)")
    say("splits: " + ", ".join(f"{k or '(none)'}={v}" for k, v in sorted(report["splits"].items())))
    g = report["groups"]
    say(
        f"groups: {g['count']} (rows without a group: {g['missing']}; leaking across splits: {len(g['leaking'])})"
    )
    for task, st in report["task_stats"].items():
        line = f"task {task}: labelled {st['labelled']}, missing {st['missing']}"
        if st.get("kind") == "numeric":
            line += f", numeric [{st['min']:.4g}, {st['max']:.4g}]"
        elif st.get("classes") is not None:
            ratio = st.get("imbalance_ratio")
            line += f", {len(st['classes'])} classes ({st['kind']})"
            line += f", imbalance max/min {ratio:.1f}" if ratio else ""
            top = ", ".join(f"{k}={v}" for k, v in list(st["classes"].items())[:5])
            line += f"; most frequent: {top}"
        say(line)
    dups = report["duplicates"]
    say(f"duplicate ids: {len(dups['ids'])}   duplicate files/segments: {len(dups['paths'])}")
    f = report["files"]
    say(f"files checked: {f['checked']} (ok {f['ok']}, bad {f['bad']})")
    conv = report.get("conversion")
    if conv:
        say(f"left out by the reader: {len(conv['excluded'])}   counts: {conv['stats']}")
        for e in conv["excluded"][:max_issues]:
            say(f"  - {e['item']}: {e['reason']}")
    issues = report["issues"]
    say(f"issues: {len(issues)}")
    for i in issues[:max_issues]:
        where = " ".join(p for p in (f"line {i['row']}" if i["row"] else "", i["id"], i["path"]) if p)
        say(f"  - {where}: {i['problem']}" if where else f"  - {i['problem']}")
    if len(issues) > max_issues:
        say(f"  ... {len(issues) - max_issues} more (use --json for all)")
