"""Charades (Sigurdsson et al., 2016): multi-label actions with temporal extents.

Expected layout::

    ROOT/Charades_v1_train.csv, ROOT/Charades_v1_test.csv
        id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
        46GP8,HR43,Kitchen,6,7,Yes,...,"c092 11.90 21.20;c147 0.00 12.60",24.83
    ROOT/Charades_v1_classes.txt      "c000 Holding some clothes" (fixes the class order)
    ROOT/Charades_v1_480/<id>.mp4     (or videos=...)

Default: one row per video with the multi-label column `actions` ("c092|c147") and `scene`.
segments=True: one row per action instance, id "<video>_<k>", with `start`/`end` and column `action`.
group = subject. A video with no actions gets an empty `actions` cell (no label), not "no action".
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .table import Table, check_choice, find_dir, make_table, read_csv_rows, read_lines


def parse_actions(cell: str, where: str) -> list[tuple[str, float, float]]:
    """'c092 11.90 21.20;c147 0.00 12.60' -> [('c092', 11.9, 21.2), ('c147', 0.0, 12.6)]."""
    out = []
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        bits = part.split()
        if len(bits) != 3:
            raise DataError(f"{where}: action {part!r} is not '<class> <start> <end>'")
        try:
            out.append((bits[0], float(bits[1]), float(bits[2])))
        except ValueError:
            raise DataError(f"{where}: action {part!r} has non-numeric times") from None
    return out


def read_charades(
    root: str | Path,
    *,
    videos: str | Path | None = None,
    segments: bool = False,
    extension: str = ".mp4",
    missing: str = "report",
) -> Table:
    """Read Charades CSVs (see the layout above). missing: "report" (default) or "error"."""
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    vdir = Path(videos) if videos else (find_dir(root, "Charades_v1_480", "Charades_v1", "videos") or root)
    class_file = root / "Charades_v1_classes.txt"
    classes = [line.split()[0] for _, line in read_lines(class_file)] if class_file.is_file() else None
    known = set(classes or [])
    csvs = [(s, root / f"Charades_v1_{s}.csv") for s in ("train", "test")]
    csvs = [(s, p) for s, p in csvs if p.is_file()]
    if not csvs:
        raise DataError(f"{root}: no Charades_v1_train.csv / Charades_v1_test.csv")

    task = "action" if segments else "actions"
    table = make_table([], [task, "scene"], dataset="charades")
    for split, path in csvs:
        for line_no, r in read_csv_rows(path, required=("id", "subject", "actions")):
            where = f"{path}: line {line_no}"
            acts = parse_actions(r["actions"], where)
            for cls, _, _ in acts:
                if classes is not None and cls not in known:
                    raise DataError(f"{where}: class {cls!r} is not in {class_file}")
            video = vdir / f"{r['id']}{extension}"
            if not video.is_file():
                if missing == "error":
                    raise DataError(f"{where}: video {video} not found")
                table.exclude(video, f"{where}: video not found")
                continue
            base = {
                "path": str(video),
                "split": split,
                "group": r["subject"],
                "dataset": "charades",
                "scene": r.get("scene", ""),
            }
            if not segments:
                labels = list(dict.fromkeys(c for c, _, _ in acts))
                table.rows.append({"id": r["id"], **base, "actions": "|".join(labels)})
                continue
            for k, (cls, s, e) in enumerate(acts):
                if e <= s:
                    table.exclude(f"{r['id']}_{k}", f"{where}: segment {cls} ends before it starts")
                    continue
                table.rows.append(
                    {"id": f"{r['id']}_{k}", **base, "start": f"{s:.2f}", "end": f"{e:.2f}", "action": cls}
                )
    if segments:
        table.columns[4:4] = ["start", "end"]
    if classes is not None:
        table.label_spaces[task] = classes
    return table
