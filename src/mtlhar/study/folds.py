"""Fold manifests of a k-fold / leave-one-subject-out study (`protocol`), written under OUT/folds/."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from ..data.manifest import Manifest
from ..data.splits import protocol_folds
from ..errors import ConfigError

SPLITS = ("train", "val", "test")


def write_folds(protocol: dict, manifest: Manifest, out: Path) -> list[Path]:
    """Write one manifest per fold under OUT/folds/fold<f>/ (only when its content changes, so a resumed
    study keeps its manifest hashes) and OUT/folds/folds.json; returns the manifest paths."""
    col = protocol["group"]
    if col not in manifest.columns:
        raise ConfigError(
            f"config key 'protocol.group': column {col!r} is not in {manifest.path} "
            f"(columns: {', '.join(manifest.columns)})"
        )
    strat = protocol.get("stratify")
    if strat is not None and strat not in manifest.columns:
        raise ConfigError(f"config key 'protocol.stratify': column {strat!r} is not in {manifest.path}")
    pool = [i for i, r in enumerate(manifest.rows) if r.get("split", "train") in SPLITS]
    groups = [manifest.rows[i].get(col) or manifest.rows[i]["id"] for i in pool]
    labels = [manifest.rows[i].get(strat, "") for i in pool] if strat else None
    folds = protocol_folds(
        groups,
        kind=protocol["kind"],
        k=protocol.get("k", 5),
        val=protocol["val"],
        labels=labels,
        seed=protocol["seed"],
    )
    paths, info = [], []
    for f, parts in enumerate(folds):
        split_of = {pool[j]: name for name, idx in zip(SPLITS, parts) for j in idx}
        folder = out / "folds" / f"fold{f}"
        paths.append(write_fold_manifest(manifest, split_of, folder))
        info.append(
            {
                "fold": f,
                "manifest": str(paths[-1]),
                **{f"{name}_groups": sorted({groups[j] for j in idx}) for name, idx in zip(SPLITS, parts)},
                **{f"n_{name}": len(idx) for name, idx in zip(SPLITS, parts)},
            }
        )
    (out / "folds").mkdir(parents=True, exist_ok=True)
    (out / "folds" / "folds.json").write_text(json.dumps({"protocol": protocol, "folds": info}, indent=2))
    return paths


def write_fold_manifest(manifest: Manifest, split_of: dict[int, str], folder: Path) -> Path:
    """FOLDER/manifest.csv: `manifest` with the split of row i set to `split_of[i]` (rows outside the pool
    keep theirs), rewritten only when its content changes; the label spaces and hierarchy beside it."""
    columns = list(manifest.columns) + ([] if "split" in manifest.columns else ["split"])
    rows = [dict(r, split=split_of.get(i, r.get("split", ""))) for i, r in enumerate(manifest.rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    if not path.is_file() or path.read_text() != buf.getvalue():
        tmp = folder / ".manifest.csv.tmp"
        tmp.write_text(buf.getvalue())
        tmp.replace(path)
    for side in ("classes.json", "hierarchy.csv"):
        src = manifest.path.parent / side
        if src.is_file():
            shutil.copyfile(src, folder / side)
    return path
