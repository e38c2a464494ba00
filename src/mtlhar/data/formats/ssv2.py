"""Something-Something v2 (Goyal et al., 2017): label JSONs and `<id>.webm` videos.

Expected layout (the files as distributed; the short names labels.json / train.json / ... also work)::

    ROOT/labels/something-something-v2-labels.json       {"Putting something into something": "87", ...}
    ROOT/labels/something-something-v2-train.json        [{"id": "78687", "label": "holding potato next to
    ROOT/labels/something-something-v2-validation.json     vicks vaporub bottle", "template": "Holding
    ROOT/labels/something-something-v2-test.json           [something] next to [something]", "placeholders":
                                                           ["potato", "vicks vaporub bottle"]}, ...]
    ROOT/20bn-something-something-v2/<id>.webm

Columns: `fine` = the template with its brackets removed (the class names of the labels file, in
its id order), `caption` = the template with the placeholders filled in (the `label` field when the
placeholders do not fit the template), `generic_caption` = the lower-cased fine class ("putting
something into something"), and `coarse` from a mapping CSV (`fine,coarse`, validated by
`mtlhar.data.label_map.load_label_map`: every fine class mapped exactly once or dropped with '-').
group = the video id: the public annotations carry no actor id, so no grouping finer than the video exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...errors import DataError
from .table import Table, check_choice, find_dir, make_table

_SLOT = re.compile(r"\[([^\]]*)\]")
_SPLITS = (("train", "train"), ("val", "validation"), ("test", "test"))


def ssv2_fine(template: str) -> str:
    """'Putting [something] into [something]' -> 'Putting something into something'."""
    return _SLOT.sub(r"\1", template)


def ssv2_caption(template: str, placeholders: list[str]) -> str | None:
    """The template with each [slot] replaced by its placeholder, or None if the counts differ."""
    if len(_SLOT.findall(template)) != len(placeholders):
        return None
    it = iter(placeholders)
    return _SLOT.sub(lambda _: next(it), template)


def _find(ldir: Path, name: str) -> Path | None:
    for candidate in (f"something-something-v2-{name}.json", f"{name}.json"):
        if (ldir / candidate).is_file():
            return ldir / candidate
    return None


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None


def read_ssv2(
    root: str | Path,
    *,
    labels_dir: str | Path | None = None,
    videos: str | Path | None = None,
    coarse_map: str | Path | None = None,
    include_test: bool = True,
    missing: str = "report",
    extension: str = ".webm",
) -> Table:
    """Read Something-Something v2. missing: "report" (default) records absent videos, "error" raises."""
    check_choice("missing", missing, ("error", "report"))
    root = Path(root)
    ldir = Path(labels_dir) if labels_dir else (find_dir(root, "labels", "annotations") or root)
    vdir = Path(videos) if videos else (find_dir(root, "20bn-something-something-v2", "videos") or root)
    labels_file = _find(ldir, "labels")
    if labels_file is None:
        raise DataError(f"{ldir}: no something-something-v2-labels.json (or labels.json)")
    raw = _load_json(labels_file)
    if not isinstance(raw, dict):
        raise DataError(f"{labels_file}: expected an object {{template: id}}, got {type(raw).__name__}")
    try:
        fine_classes = [k for k, _ in sorted(raw.items(), key=lambda kv: int(kv[1]))]
    except ValueError:
        raise DataError(f"{labels_file}: every class id must be an integer") from None
    known = set(fine_classes)

    tasks = ["fine", "caption", "generic_caption"]
    spaces = {"fine": fine_classes}
    label_map = None
    if coarse_map is not None:
        from ..label_map import load_label_map  # here: label_map imports this package

        label_map = load_label_map(coarse_map, fine_classes)
        tasks.insert(1, "coarse")
        spaces["coarse"] = label_map.targets
    table = make_table([], tasks, label_spaces=spaces, dataset="ssv2")

    found_any = False
    for split, name in _SPLITS:
        if split == "test" and not include_test:
            continue
        path = _find(ldir, name)
        if path is None:
            continue
        found_any = True
        entries = _load_json(path)
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a list of videos, got {type(entries).__name__}")
        for i, e in enumerate(entries):
            where = f"{path}: entry {i} (id {e.get('id', '?') if isinstance(e, dict) else '?'})"
            if not isinstance(e, dict) or "id" not in e:
                raise DataError(f"{where}: expected an object with an 'id'")
            vid = str(e["id"])
            row = {"id": vid, "split": split, "group": vid, "dataset": "ssv2"}
            template = e.get("template", "")
            if template:
                fine = ssv2_fine(template)
                if fine not in known:
                    raise DataError(f"{where}: template {fine!r} is not a class of {labels_file}")
                placeholders = [str(p) for p in e.get("placeholders", [])]
                row["fine"] = fine
                row["caption"] = ssv2_caption(template, placeholders) or str(e.get("label", ""))
                row["generic_caption"] = fine.lower()
                if label_map is not None:
                    row["coarse"] = label_map(fine)
            video = vdir / f"{vid}{extension}"
            if not video.is_file():
                if missing == "error":
                    raise DataError(f"{where}: video {video} not found")
                table.exclude(video, f"{where}: video not found")
                continue
            row["path"] = str(video)
            table.rows.append(row)
    if not found_any:
        raise DataError(f"{ldir}: no something-something-v2-train.json / -validation.json / -test.json")
    return table
