"""NTU RGB+D 60 / 120 (Shahroudy et al., CVPR 2016; Liu et al., TPAMI 2019) skeletons.

Two input layouts:

1. The released `.skeleton` text files, `ROOT/**/SsssCcccPpppRrrrAaaa.skeleton`::

       <frame count>
       per frame:   <body count>
         per body:  <bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
                     handRightState isRestricted leanX leanY trackingState>
                    <joint count = 25>
                    25 x <x y z depthX depthY colorX colorY orientationW orientationX orientationY
                          orientationZ trackingState>

2. The pyskl pickle (`ROOT` is the .pkl file): {"split": {"xsub_train": [names], "xsub_val": [...], ...},
   "annotations": [{"frame_dir": name, "label": 0-based int, "keypoint": float [M, T, V, C]}, ...]}.
   It is read with a restricted unpickler (arrays and plain data only), so a pickle cannot run code.

Setup, camera, performer (subject), replication and action come from the name. Benchmarks:
`xsub` (training subjects below), `xview` (cameras 2, 3 train, camera 1 test), `xset` (even setups
train; NTU 120 only). Samples in the published "samples with missing skeletons" list (`missing_list=`
a text file, one name a line; its prose lines, such as the header of the official lists, are
skipped and counted in stats) are left out, as are files with no body in any frame (both recorded).

The cross-view protocol is defined for NTU RGB+D 60 only (NTU-120 uses xsub / xset): `xview` on data
holding NTU-120 actions (A061 and above) raises DataError before anything is written, rather than
making a split no paper uses. To get the NTU-60 cross-view benchmark out of the NTU-120 release, pass
`num_actions=60`: samples of actions beyond `num_actions` are left out and recorded (with any
benchmark).

Each sample's joints (x, y, z) become `out_dir/skeletons/<name>.npy` of shape [T, bodies * 25 * 3]
(`bodies=1`: the main body; 2: two bodies side by side, zero-padded) for `ClipDataset(stream="seq")`,
normalised per sample by `mtlhar.data.skeleton.normalize` unless normalize=False. Bodies in a
.skeleton file are tracked by bodyID and ranked by the number of frames they appear in.
Columns: action (A001...), subject (P...), camera (C...), setup (S...), replication (R...);
group = subject; domain = camera.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...checkpoint import load_pickle_arrays
from ...errors import DataError
from .. import skeleton as sk
from .table import Table, check_choice, make_table, read_lines

NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
FULL_NAME = re.compile(r"S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}")
#: The cross-view benchmark exists for NTU RGB+D 60 only (actions A001-A060).
XVIEW_MAX_ACTION = 60

# Training subjects of the cross-subject benchmark: NTU RGB+D 60 (Shahroudy et al., CVPR 2016) uses
# those up to 40; NTU RGB+D 120 (Liu et al., TPAMI 2019) extends the list.
XSUB_TRAIN_SUBJECTS = frozenset(
    [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
    + [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86]
    + [89, 91, 92, 93, 94, 95, 97, 98, 100, 103]
)
# Cross-view (Shahroudy et al., 2016): cameras 2 and 3 train, camera 1 test.
XVIEW_TRAIN_CAMERAS = frozenset([2, 3])
# Cross-setup (Liu et al., 2019): even setup ids train, odd test.
XSET_TRAIN_SETUPS = frozenset(range(2, 33, 2))
BENCHMARKS = ("xsub", "xview", "xset")


def parse_name(name: str) -> dict[str, int] | None:
    """'S001C002P003R002A013' -> {'setup': 1, 'camera': 2, 'subject': 3, 'replication': 2, 'action': 13}."""
    m = NAME.search(name)
    if m is None:
        return None
    return dict(zip(("setup", "camera", "subject", "replication", "action"), map(int, m.groups())))


def benchmark_split(info: dict[str, int], benchmark: str) -> str:
    if benchmark == "xsub":
        return "train" if info["subject"] in XSUB_TRAIN_SUBJECTS else "test"
    if benchmark == "xview":
        return "train" if info["camera"] in XVIEW_TRAIN_CAMERAS else "test"
    return "train" if info["setup"] in XSET_TRAIN_SETUPS else "test"


def read_skeleton_file(path: str | Path, max_bodies: int = 2) -> np.ndarray:
    """Parse a .skeleton file -> float32 [M, T, 25, 3] (M <= max_bodies; M = 0 when no body is seen).

    Raises DataError naming the file and line for a truncated or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"skeleton file not found: {path}")
    lines = path.read_text(errors="replace").splitlines()
    pos = 0

    def take(n_fields: int | None, what: str) -> list[str]:
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1
        if pos >= len(lines):
            raise DataError(f"{path}: line {pos + 1}: file ends early (expected {what}); truncated file?")
        parts = lines[pos].split()
        pos += 1
        if n_fields is not None and len(parts) != n_fields:
            raise DataError(f"{path}: line {pos}: expected {n_fields} values ({what}), got {len(parts)}")
        return parts

    def integer(parts: list[str], what: str) -> int:
        try:
            return int(parts[0])
        except ValueError:
            raise DataError(f"{path}: line {pos}: expected an integer ({what}), got {parts[0]!r}") from None

    n_frames = integer(take(1, "frame count"), "frame count")
    bodies: dict[str, dict[int, np.ndarray]] = {}
    order: list[str] = []
    for t in range(n_frames):
        n_bodies = integer(take(1, f"body count of frame {t + 1}"), "body count")
        for _ in range(n_bodies):
            body_id = take(10, "body info line")[0]
            n_joints = integer(take(1, "joint count"), "joint count")
            if n_joints != 25:
                raise DataError(f"{path}: line {pos}: expected 25 joints, got {n_joints}")
            joints = np.empty((25, 3), np.float32)
            for j in range(25):
                parts = take(12, f"joint {j + 1} (12 numbers)")
                try:
                    joints[j] = [float(v) for v in parts[:3]]
                except ValueError:
                    raise DataError(f"{path}: line {pos}: joint coordinates are not numbers") from None
            if body_id not in bodies:
                bodies[body_id] = {}
                order.append(body_id)
            bodies[body_id][t] = joints
    ranked = sorted(order, key=lambda b: (-len(bodies[b]), order.index(b)))[:max_bodies]
    out = np.zeros((len(ranked), n_frames, 25, 3), np.float32)
    for m, b in enumerate(ranked):
        for t, joints in bodies[b].items():
            out[m, t] = joints
    return out


def _missing_names(missing_list: str | Path | None) -> tuple[set[str], int]:
    """(sample names, number of other non-empty lines) of a missing-skeleton list.

    The official lists (NTU_RGBD_samples_with_missing_skeletons.txt, NTU_RGBD120_...) start with prose
    lines; only lines whose first word is a sample name (SsssCcccPpppRrrrAaaa, optionally with an
    extension) count.
    """
    if missing_list is None:
        return set(), 0
    names: set[str] = set()
    other = 0
    for _, line in read_lines(Path(missing_list)):
        stem = Path(line.split()[0]).stem
        if FULL_NAME.fullmatch(stem):
            names.add(stem)
        else:
            other += 1
    if not names:
        raise DataError(
            f"{missing_list}: no sample name (SsssCcccPpppRrrrAaaa) in this missing-skeleton list; "
            "pass the published list, one sample name a line"
        )
    return names, other


def _action_classes(actions: list[int], num_actions: int | None) -> list[str]:
    n = num_actions or (120 if max(actions, default=0) > 60 else 60)
    return [f"A{i:03d}" for i in range(1, n + 1)]


def read_ntu(
    root: str | Path,
    *,
    out_dir: str | Path | None = None,
    benchmark: str = "xsub",
    missing_list: str | Path | None = None,
    bodies: int = 1,
    normalize: bool = True,
    num_actions: int | None = None,
) -> Table:
    """Read NTU RGB+D skeletons (a folder of .skeleton files, or a pyskl .pkl) into .npy sequences.

    out_dir: where `skeletons/<name>.npy` go (required). benchmark: xsub | xview | xset.
    missing_list: the published list of samples with missing skeletons. bodies: 1 or 2.
    num_actions: size of the action label space (default 60, or 120 if any action id exceeds 60);
    samples of a higher action are left out (recorded). xview with NTU-120 actions raises (see the
    module docstring).
    """
    check_choice("benchmark", benchmark, BENCHMARKS)
    check_choice("bodies", bodies, (1, 2))
    if out_dir is None:
        raise DataError("read_ntu writes one .npy per sample: pass out_dir= (convert() does this)")
    root = Path(root)
    arrays = Path(out_dir) / "skeletons"
    arrays.mkdir(parents=True, exist_ok=True)
    skip, prose = _missing_names(missing_list)
    table = make_table([], ["action", "subject", "camera", "setup", "replication"], dataset="ntu")
    if prose:
        table.count("missing_list_other_lines", prose)
    names, samples = _samples(root, benchmark)
    if benchmark == "xview":
        _check_xview(root, names, skip, num_actions)

    actions: list[int] = []
    for name, source, data, split in samples:
        info = parse_name(name)
        if info is None:
            raise DataError(f"{source}: name {name!r} is not of the form SsssCcccPpppRrrrAaaa")
        if name in skip:
            table.exclude(source, f"in the missing-skeleton list {missing_list}")
            table.count("missing_skeleton_list")
            continue
        if num_actions is not None and info["action"] > num_actions:
            table.exclude(source, f"action A{info['action']:03d} is beyond num_actions={num_actions}")
            table.count("beyond_num_actions")
            continue
        if data is None:
            data = read_skeleton_file(source, max_bodies=max(bodies, 2))
        present = np.abs(data).sum(axis=(0, 2, 3)) > 0 if data.size else np.zeros(0, bool)
        if not present.any():
            table.exclude(source, "no body in any frame")
            table.count("no_skeleton")
            continue
        if normalize and data.shape[-2] == 25:  # NTU joint indices; other layouts stay raw
            data = sk.normalize(data, align_line=sk.NTU_SHOULDERS if data.shape[-1] == 3 else None)
        dest = arrays / f"{name}.npy"
        np.save(dest, sk.to_sequence(data, bodies).astype(np.float32))
        actions.append(info["action"])
        table.rows.append(_row(name, dest, split or benchmark_split(info, benchmark), info))
    table.label_spaces["action"] = _action_classes(actions, num_actions)
    table.columns.insert(table.columns.index("dataset"), "domain")
    return table


def _samples(root: Path, benchmark: str):
    """(sample names, iterator of (name, source, data or None, split or None)) of a pyskl pickle or a
    folder of .skeleton files."""
    if root.is_file() and root.suffix.lower() in (".pkl", ".pickle"):
        pickled = _load_pickle(root)
        names = [str(a.get("frame_dir", "")) for a in pickled["annotations"] if isinstance(a, dict)]
        return names, _pyskl_samples(pickled, root, benchmark)
    if root.is_dir():
        files = sorted(root.rglob("*.skeleton"))
        if not files:
            raise DataError(f"{root}: no .skeleton files")
        return [f.stem for f in files], ((f.stem, f, None, None) for f in files)
    raise DataError(f"not found: {root} (expected a folder of .skeleton files or a pyskl .pkl)")


def _row(name: str, dest: Path, split: str, info: dict) -> dict[str, str]:
    """The manifest row of one sample (subject = group, camera = domain)."""
    return {
        "id": name,
        "path": str(dest),
        "split": split,
        "group": f"P{info['subject']:03d}",
        "domain": f"C{info['camera']:03d}",
        "dataset": "ntu",
        "action": f"A{info['action']:03d}",
        "subject": f"P{info['subject']:03d}",
        "camera": f"C{info['camera']:03d}",
        "setup": f"S{info['setup']:03d}",
        "replication": f"R{info['replication']:03d}",
    }


def _check_xview(root: Path, names: list[str], skip: set[str], num_actions: int | None) -> None:
    """The cross-view benchmark is defined for NTU RGB+D 60; NTU-120 actions under it are an error."""
    if num_actions is not None and num_actions <= XVIEW_MAX_ACTION:
        return  # the samples of higher actions are left out (and recorded) by read_ntu
    beyond = [n for n in names if n not in skip and (i := parse_name(n)) and i["action"] > XVIEW_MAX_ACTION]
    if beyond:
        raise DataError(
            f"{root}: benchmark 'xview' is defined for NTU RGB+D 60 (actions A001-A060), but {len(beyond)} "
            f"sample(s) are NTU RGB+D 120 actions (e.g. {beyond[0]}); use benchmark='xsub' or 'xset' for "
            "NTU-120, or pass num_actions=60 to keep only the NTU-60 actions (the others are recorded as left out)"
        )


def _load_pickle(path: Path) -> dict:
    data = load_pickle_arrays(path, what="pyskl pickle")  # arrays and plain data only: nothing in it runs
    if not isinstance(data, dict) or "annotations" not in data:
        raise DataError(f"{path}: expected a dict with 'split' and 'annotations' (pyskl layout)")
    return data


def _pyskl_samples(data: dict, path: Path, benchmark: str):
    splits = data.get("split", {}) or {}
    lookup: dict[str, str] = {}
    for part, names in splits.items():
        if part.startswith(f"{benchmark}_"):
            for n in names:
                lookup[str(n)] = "train" if part.endswith("train") else "test"
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or "frame_dir" not in ann or "keypoint" not in ann:
            raise DataError(f"{where}: needs 'frame_dir' and 'keypoint'")
        kp = np.asarray(ann["keypoint"], dtype=np.float32)
        if kp.ndim != 4:
            raise DataError(f"{where}: keypoint must be [M, T, V, C], got shape {kp.shape}")
        if not np.isfinite(kp).all():
            raise DataError(f"{where} ({ann['frame_dir']}): keypoint has NaN or inf")
        name = str(ann["frame_dir"])
        if parse_name(name) is not None and "label" in ann:
            action = parse_name(name)["action"]
            if int(ann["label"]) + 1 != action:
                raise DataError(
                    f"{where}: label {ann['label']} does not match action A{action:03d} in {name}"
                )
        yield name, f"{where} ({name})", kp, lookup.get(name) if lookup else None
