"""Tables and labels: malformed CSVs name file:line, readers leave nothing out silently, label gaps in
`data inspect`. Every fixture is a few lines made here."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlhar.data.formats import convert, read, read_kinetics, read_ntu
from mtlhar.data.formats.realworld_har import read_realworld_har
from mtlhar.data.formats.table import read_csv_rows
from mtlhar.data.inspect import inspect_manifest, print_inspection
from mtlhar.data.manifest import Manifest
from mtlhar.errors import DataError

HEADER = ["id", "path", "split", "group", "action"]


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def manifest_text(
    n: int = 132, action=lambda i: f"a{i % 3}", split=lambda i: "train" if i % 4 else "val"
) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for i in range(n):
        w.writerow([f"c{i:03d}", f"clips/c{i:03d}.npy", split(i), f"s{i % 7}", action(i)])
    return buf.getvalue()


def with_line(text: str, line: int, new: str) -> str:
    """`text` with physical line `line` (1-based) replaced by `new`."""
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


# ---------------------------------------------------------------- malformed CSV
def test_unbalanced_quote_late_names_the_line_where_the_quote_opens(tmp_path):
    # row 126 of 132 is line 127; the old reader returned 125 rows and exit 0
    text = with_line(manifest_text(), 127, 'c125,"clips/c125.npy,train,s6,a2')
    path = put(tmp_path / "manifest.csv", text)
    with pytest.raises(DataError) as e:
        Manifest.read(path)
    msg = one_line(e)
    assert f"{path}: line 127: a quoted cell opens here and is never closed" in msg
    assert "runs to the end of the file, line 133" in msg


def test_unbalanced_quote_early_is_named_not_a_giant_split_name(tmp_path):
    # the old reader swallowed the rest into one cell: "split 'val' has no rows; splits present: [...KB]"
    text = with_line(manifest_text(), 3, 'c001,clips/c001.npy,"train,s1,a1')
    path = put(tmp_path / "manifest.csv", text)
    with pytest.raises(
        DataError, match=r"manifest\.csv: line 3: a quoted cell opens here and is never closed"
    ):
        Manifest.read(path)
    # the quote opened on the second line of a row whose first cell spans two lines
    text = manifest_text(6).replace("c002,", '"c0\n02",', 1)
    text = with_line(text, 6, 'c003,clips/c003.npy,train,s3,"a0')
    with pytest.raises(DataError, match=r"line 6: a quoted cell opens here"):
        Manifest.read(put(tmp_path / "m2.csv", text))


def test_unbalanced_quote_in_a_big_file_is_named_not_a_field_limit_error(tmp_path):
    # over 128 KiB after the quote: the csv module's "field larger than field limit" becomes the quote's line
    # (the limit is process-wide: scipy.io.arff, which pyts imports, raises it, and then the cell runs to EOF)
    text = with_line(manifest_text(5000), 4, 'c002,clips/c002.npy,train,s2,"a2')
    with pytest.raises(DataError) as e:
        Manifest.read(put(tmp_path / "manifest.csv", text))
    msg = one_line(e)
    assert "line 4: a quoted cell opens here and is never closed (it " in msg
    if csv.field_size_limit() < len(text):
        assert "(it is still open on line" in msg


def test_rows_with_extra_or_missing_cells_name_their_physical_line(tmp_path):
    text = manifest_text(10)
    text = text.replace("c002,", '"c0\n02",', 1)  # a quoted newline: every later row moves down a line
    text = with_line(text, 6, "c004,clips/c004.npy,val,s4,a1,EXTRA")
    text = with_line(text, 9, "c007,clips/c007.npy,train,s0")
    path = put(tmp_path / "manifest.csv", text)
    with pytest.raises(DataError) as e:
        Manifest.read(path)
    msg = one_line(e)
    assert f"{path}: line 6: 6 cells where the header has 5 columns" in msg
    assert "[1 more bad row(s), at lines 9]" in msg
    with pytest.raises(
        DataError, match=r"line 9: 4 cell\(s\) where the header has 5 columns .*add the missing"
    ):
        Manifest.read(
            put(tmp_path / "m2.csv", with_line(manifest_text(10), 9, "c007,clips/c007.npy,train,s0"))
        )
    # a shared reader (Kinetics) gets the same check: the old DictReader dropped the extra cell
    put(
        tmp_path / "k/annotations/train.csv",
        "label,youtube_id,time_start,time_end,split\nrun,abc,0,10,train,x\n",
    )
    with pytest.raises(DataError, match=r"train\.csv: line 2: 6 cells where the header has 5"):
        read_kinetics(tmp_path / "k")


def test_a_quote_that_runs_over_rows_is_pointed_at(tmp_path):
    # the stray quote on line 3 is closed by a stray one on line 5: one row of 3 lines, too many cells
    text = manifest_text(6)
    text = with_line(text, 3, 'c001,clips/c001.npy,train,s1,"a1')
    text = with_line(text, 5, 'c003,clips/c003.npy,train",s3,a0')
    with pytest.raises(
        DataError, match=r"line 3: .*runs over lines 3-5 because the quoted cell opened on line 3"
    ):
        Manifest.read(put(tmp_path / "manifest.csv", text))


def test_text_after_a_closing_quote_is_named(tmp_path):
    text = with_line(manifest_text(4), 3, 'c001,"clips/c001"x.npy,train,s1,a1')
    with pytest.raises(DataError, match=r"line 3: text follows the closing quote"):
        Manifest.read(put(tmp_path / "manifest.csv", text))
    # closed by a quoted cell two lines on: the opening quote is the one named
    text = with_line(with_line(manifest_text(6), 3, 'c001,clips/c001.npy,train,s1,"a1'), 5, 'c003,"x",t,s,a')
    with pytest.raises(DataError, match=r"line 3: a quoted cell opens here and closes only on line 5"):
        Manifest.read(put(tmp_path / "m2.csv", text))


def test_non_utf8_byte_names_line_and_byte_and_the_fix(tmp_path):
    data = manifest_text(5).encode().replace(b"a1", b"caf\xe9", 1)  # Latin-1 e-acute on line 3
    path = put(tmp_path / "manifest.csv", data)
    with pytest.raises(DataError) as e:  # was a UnicodeDecodeError traceback
        Manifest.read(path)
    msg = one_line(e)
    assert f"{path}: line 3: byte 0xe9 (column 33," in msg and "save the file as UTF-8" in msg
    utf16 = put(tmp_path / "u16.csv", manifest_text(3).encode("utf-16"))
    with pytest.raises(DataError, match=r"line 1: byte 0xff .*the file is UTF-16; save the file as UTF-8"):
        list(read_csv_rows(utf16))


def test_bom_and_blank_trailing_lines_are_accepted(tmp_path):
    # the old reader said "no 'id' column" for a file saved by a spreadsheet with a BOM
    path = put(tmp_path / "manifest.csv", b"\xef\xbb\xbf" + manifest_text(4).encode() + b"\n\n  \n")
    m = Manifest.read(path)
    assert m.columns == HEADER and [r["id"] for r in m.rows] == ["c000", "c001", "c002", "c003"]
    crlf = put(tmp_path / "crlf.csv", manifest_text(3).replace("\n", "\r\n") + "\r\n")
    assert [line for line, _ in read_csv_rows(crlf)] == [2, 3, 4]


def test_header_problems_are_named(tmp_path):
    with pytest.raises(DataError, match=r"line 1: column\(s\) 'split' appear more than once"):
        Manifest.read(put(tmp_path / "a.csv", "id,path,split,split\n1,a,train,val\n"))
    with pytest.raises(DataError, match=r"no 'id' column \(columns: none: the file is empty\)"):
        Manifest.read(put(tmp_path / "b.csv", ""))
    with pytest.raises(DataError, match=r"missing column\(s\) id.*another separator"):
        list(read_csv_rows(put(tmp_path / "c.csv", "id;path\n1;a\n"), required=("id",)))


def test_manifest_rows_know_their_lines(tmp_path):
    text = manifest_text(4).replace("c001,", '"c0\n01",', 1) + "c000,x,train,s1,a1\n"
    path = put(tmp_path / "manifest.csv", text.replace("c003,", "\nc003,", 1))
    with pytest.raises(DataError, match=r"line 8: id 'c000' repeats line 2"):
        Manifest.read(path)
    m = Manifest.read(
        put(tmp_path / "ok.csv", text.replace("c000,x", "c009,x").replace("c003,", "\nc003,", 1))
    )
    assert m.lines == [2, 3, 5, 7, 8] and m.where(3) == f"{tmp_path / 'ok.csv'}: row 7 (id 'c003')"


def test_sensor_csv_inside_a_zip_is_checked_too(tmp_path):
    root = tmp_path / "rw"
    good = "id,attr_time,attr_x,attr_y,attr_z\n" + "".join(f"{i},{20 * i},0.1,0.2,0.3\n" for i in range(60))
    with zipfile.ZipFile(put(root / "proband1/data/acc_walking_csv.zip", b""), "w") as z:
        z.writestr("acc_walking_chest.csv", with_line(good, 5, "4,80,0.1,0.2"))
    put(root / "proband1/data/gyr_walking_csv/Gyroscope_walking_chest.csv", good)
    with pytest.raises(DataError, match=r"acc_walking_csv\.zip/acc_walking_chest\.csv: line 5: 4 cell\(s\)"):
        read_realworld_har(root, out_dir=tmp_path / "o", test_subjects=[])


# ---------------------------------------------------------------- inspect
def test_inspect_reports_every_malformed_row_and_carries_on(tmp_path):
    text = manifest_text(12)
    text = with_line(text, 4, "c002,clips/c002.npy,train,s2,a2,EXTRA")
    text = with_line(text, 7, "c005,clips/c005.npy")
    text = with_line(text, 10, 'c008,clips/c008.npy,train,s1,"a2')
    path = put(tmp_path / "manifest.csv", text.encode().replace(b"s0,a0", b"s0,a\xe90", 1))  # line 2
    rep = inspect_manifest(path, check_files=False)
    bad = [(i["row"], i["problem"]) for i in rep["issues"] if i["problem"].startswith("row left out")]
    assert [line for line, _ in bad] == [4, 7, 10] and rep["malformed_rows"] == 3
    assert "never closed" in bad[2][1] and rep["rows"] == 12 - 2 - 4  # rows 8.. are inside the open quote
    assert rep["issues"][0]["row"] == 2 and "byte 0xe9 (column 29," in rep["issues"][0]["problem"]
    assert rep["task_stats"]["action"]["classes"]["a\ufffd0"] == 1  # the row stays, its bad byte replaced
    out = io.StringIO()
    print_inspection(rep, out)
    assert "malformed rows left out: 3" in out.getvalue()


def test_inspect_lists_classes_with_no_training_clips(tmp_path):
    rows = [
        # id, split, action, subject, scene: scene is empty in train (but not primary-looking)
        ("c0", "train", "run", "p1", ""), ("c1", "train", "walk", "p1", ""), ("c2", "train", "run", "p2", ""),
        ("c3", "test", "run", "p3", "park"), ("c4", "test", "jump", "p3", "park"), ("c5", "val", "swim", "p4", ""),
        ("c6", "val", "walk", "p4", ""),
    ]  # fmt: skip
    text = "id,path,split,group,action,subject,scene\n" + "".join(
        f"{i},x/{i}.npy,{s},{subj},{a},{subj},{sc}\n" for i, s, a, subj, sc in rows
    )
    rep = inspect_manifest(put(tmp_path / "manifest.csv", text), check_files=False)
    problems = [i["problem"] for i in rep["issues"]]
    assert (
        "task action: 1 of the 2 classes in split 'test' never occur in the training split (0 training clips): jump"
        in problems
    )
    assert any(
        p.startswith("task action: 1 of the 2 classes in split 'val'") and p.endswith(": swim")
        for p in problems
    )
    assert rep["task_stats"]["action"]["unseen_in_train"] == {"test": ["jump"], "val": ["swim"]}
    # held-out subjects are the protocol, not a gap: recorded, not reported
    assert not any("task subject" in p for p in problems)
    assert rep["task_stats"]["subject"]["disjoint_from_train"] == ["test", "val"]
    assert not any("task scene" in p for p in problems)

    # the first task column (and one named like a main label) with no label in train is flagged
    empty = text.replace(",run,", ",,").replace(",walk,", ",,")
    rep = inspect_manifest(put(tmp_path / "m2.csv", empty), check_files=False)
    problems = [i["problem"] for i in rep["issues"]]
    assert any(p.startswith("task action: no label at all in the training split (3 rows") for p in problems)
    assert not any("task scene: no label" in p for p in problems)


# ---------------------------------------------------------------- reader options
def test_unknown_reader_option_is_named_with_the_accepted_ones(tmp_path):
    put(tmp_path / "k/annotations/train.csv", "label,youtube_id,time_start,time_end,split\n")
    with pytest.raises(DataError) as e:  # was a TypeError from the reader call
        convert("kinetics", tmp_path / "k", tmp_path / "out", missng="error")
    msg = one_line(e)
    assert "format 'kinetics' has no option 'missng' (did you mean 'missing'?)" in msg
    assert "its options: annotations, videos, classes, missing" in msg
    with pytest.raises(
        DataError, match=r"format 'ntu' has no option 'split'; its options: out_dir, benchmark"
    ):
        read("ntu", tmp_path, split=1)


# ---------------------------------------------------------------- RealWorld-HAR: zips of zips
def rw(n: int = 100, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    rows = "".join(f"{i + 1},{1435000000000 + 20 * i},{x:.4f},{y:.4f},{z:.4f}\n" for i, (x, y, z) in
                   enumerate(rng.normal(size=(n, 3))))  # fmt: skip
    return "id,attr_time,attr_x,attr_y,attr_z\n" + rows


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_realworld_har_reads_zips_of_zips_as_separate_sessions(tmp_path):
    root = tmp_path / "rw"
    for s in (1, 4):
        data = root / f"proband{s}/data"
        put(data / "acc_walking_csv.zip", zip_bytes({"acc_walking_chest.csv": rw(seed=s)}))
        put(data / "gyr_walking_csv.zip", zip_bytes({"Gyroscope_walking_chest.csv": rw(seed=s + 9)}))
        put(data / "gps_walking_csv.zip", zip_bytes({"GPS_walking.csv": "id,attr_time,attr_lat\n"}))
    # proband4 climbing up, as released: a zip of three session zips, session numbers in the CSV names
    data = root / "proband4/data"
    for sensor, prefix in (("acc", "acc"), ("gyr", "Gyroscope")):
        sessions = {
            f"{sensor}_climbingup_{k}_csv.zip": zip_bytes(
                {
                    f"{prefix}_climbingup_{k}_chest.csv": rw(50 + 25 * k, seed=k),
                    f"{prefix}_climbingup_{k}_forearm.csv": rw(50 + 25 * k, seed=k + 3),
                }
            )  # fmt: skip
            for k in (1, 2, 3)
        }
        sessions["readme.txt"] = "not data"
        put(data / f"{sensor}_climbingup_csv.zip", zip_bytes(sessions))
    # an unpacked copy of one session beside it, in nested folders: used (first in name order), the
    # copy inside the zip is recorded as a duplicate
    put(data / "acc_climbingup_csv/acc_climbingup_2_csv/acc_climbingup_2_chest.csv", rw(100, seed=2))

    t = read_realworld_har(root, out_dir=tmp_path / "out", test_subjects=[1])
    recs = {r["id"].rsplit("_", 1)[0] for r in t.rows if r["activity"] == "climbingup"}
    assert recs == {f"proband4_climbingup_{k}_{p}" for k in (1, 2, 3) for p in ("chest", "forearm")}
    windows = {
        k: sum(r["id"].startswith(f"proband4_climbingup_{k}_chest") for r in t.rows) for k in (1, 2, 3)
    }
    assert windows == {1: 2, 2: 3, 3: 4}  # 75 / 100 / 125 samples: separate recordings, not merged
    assert t.stats["recordings"] == 2 + 6
    reasons = {Path(e["item"]).name: e["reason"] for e in t.excluded}
    assert "not a sensor CSV" in reasons["readme.txt"] and reasons["gps_walking_csv.zip"].startswith(
        "sensor 'gps' is not read"
    )
    dup = next(e for e in t.excluded if e["item"].endswith("acc_climbingup_csv.zip/acc_climbingup_2_csv.zip/"
                                                           "acc_climbingup_2_chest.csv"))  # fmt: skip
    assert (
        "same recording and sensor as" in dup["reason"]
        and "acc_climbingup_2_csv/acc_climbingup_2_chest" in dup["reason"]
    )
    assert (
        t.stats["archives_not_read"] == 2
        and t.stats["files_not_read"] == 2
        and t.stats["files_duplicate"] == 1
    )
    only_chest = read_realworld_har(root, out_dir=tmp_path / "o2", test_subjects=[1], positions=("chest",))
    assert only_chest.stats["recordings_other_position"] == 3


# ---------------------------------------------------------------- Kinetics: duplicate clip names
def test_kinetics_prefers_the_replacement_copy_and_records_every_duplicate(tmp_path):
    root = tmp_path / "k400"
    put(root / "annotations/train.csv", "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa,0,10,train\nabseiling,bbb,5,15,train\n")  # fmt: skip
    a, b = "aaa_000000_000010", "bbb_000005_000015"
    put(root / f"train/abseiling/{a}.mp4", b"corrupt")
    put(root / f"replacement/replacement_for_corrupted_k400/{a}.mp4", b"good")
    put(root / f"train/abseiling/{b}.mp4", b"one")
    put(root / f"val/abseiling/{b}.mp4", b"two")  # no replacement copy: the first in sorted path order
    t = read_kinetics(root)
    used = {r["id"]: Path(r["path"]).relative_to(root).as_posix() for r in t.rows}
    assert used == {a: f"replacement/replacement_for_corrupted_k400/{a}.mp4", b: f"train/abseiling/{b}.mp4"}
    dups = {Path(e["item"]).relative_to(root).as_posix(): e["reason"] for e in t.excluded}
    assert set(dups) == {f"train/abseiling/{a}.mp4", f"val/abseiling/{b}.mp4"}
    assert (
        f"replacement_for_corrupted_k400/{a}.mp4 is used (the copy under a replacement* folder wins)"
        in dups[f"train/abseiling/{a}.mp4"]
    )
    assert f"train/abseiling/{b}.mp4 is used (first in sorted path order)" in dups[f"val/abseiling/{b}.mp4"]
    assert t.stats == {"duplicate_clip_names": 2, "missing_clips": 0}


# ---------------------------------------------------------------- NTU: missing lists, xview on NTU-120
NTU_BODY = "1\n1\n1 0 1 1 1 1 0 0.1 0.2 2\n25\n" + "".join(
    f"{0.1 * j:.3f} {0.05 * j:.3f} 3.0 250 200 1000 500 0.1 0.2 0.3 0.9 2\n" for j in range(25)
)


def test_ntu_missing_list_prose_lines_are_not_sample_names(tmp_path):
    root = tmp_path / "ntu"
    for name in ("S001C001P001R001A001", "S001C002P002R001A002", "S002C001P003R002A003"):
        put(root / f"{name}.skeleton", NTU_BODY)
    # the official list opens with prose; "302" and "If" used to become skip entries
    put(tmp_path / "NTU_RGBD_samples_with_missing_skeletons.txt",
        "302 samples of NTU RGB+D have missing or incomplete skeletons.\n"
        "If you use the skeleton data, leave these samples out.\n\n"
        "S001C002P002R001A002\nS009C001P001R001A001.skeleton\n")  # fmt: skip
    t = read_ntu(
        root, out_dir=tmp_path / "o", missing_list=tmp_path / "NTU_RGBD_samples_with_missing_skeletons.txt"
    )
    assert sorted(r["id"] for r in t.rows) == ["S001C001P001R001A001", "S002C001P003R002A003"]
    assert t.stats == {"missing_list_other_lines": 2, "missing_skeleton_list": 1}
    put(tmp_path / "prose.txt", "302 samples\nIf you use them\n")
    with pytest.raises(DataError, match=r"prose\.txt: no sample name \(SsssCcccPpppRrrrAaaa\)"):
        read_ntu(root, out_dir=tmp_path / "o", missing_list=tmp_path / "prose.txt")


def test_ntu_xview_on_ntu120_actions_raises_unless_num_actions_keeps_ntu60(tmp_path):
    root = tmp_path / "ntu"
    for name in (
        "S001C001P001R001A001",
        "S001C002P002R001A002",
        "S018C001P050R001A061",
        "S018C002P050R001A100",
    ):
        put(root / f"{name}.skeleton", NTU_BODY)
    out = tmp_path / "o"
    with pytest.raises(DataError) as e:
        read_ntu(root, out_dir=out, benchmark="xview")
    msg = one_line(e)
    assert "benchmark 'xview' is defined for NTU RGB+D 60" in msg and "2 sample(s)" in msg
    assert "S018C001P050R001A061" in msg and "num_actions=60" in msg
    assert not list((out / "skeletons").glob("*.npy"))  # raised before writing anything
    t = read_ntu(root, out_dir=out, benchmark="xview", num_actions=60)
    assert sorted(r["id"] for r in t.rows) == ["S001C001P001R001A001", "S001C002P002R001A002"]
    assert t.stats["beyond_num_actions"] == 2 and {Path(e["item"]).stem for e in t.excluded} == {
        "S018C001P050R001A061", "S018C002P050R001A100"}  # fmt: skip
    assert len(read_ntu(root, out_dir=out, benchmark="xsub").rows) == 4  # xsub / xset are fine on NTU-120


# ---------------------------------------------------------------- property: manifest rows survive or fail clearly
TRICKY = [
    '"',
    ",",
    "\n",
    "\r\n",
    "\r",
    '""',
    " ",
    "",
    "é",
    "€",
    "😀",
    "\t",
    "\x00",
    "\ufeff",
    "\u2028",
    "a,b",
    '"x"',
]
cells = st.lists(
    st.sampled_from(TRICKY) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=4), max_size=3
).map("".join)


def render(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)  # QUOTE_MINIMAL, \r\n: what a spreadsheet or pandas writes
    return buf.getvalue()


def lines_before(text: str) -> int:
    return len(io.StringIO(text, newline="").readlines())


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    extra=st.lists(cells, max_size=2),
    body=st.lists(st.lists(cells, min_size=5, max_size=5), max_size=6),
    mutation=st.sampled_from(["none", "extra cell", "missing cell", "open quote", "bad byte", "cut"]),
    where=st.integers(0, 10**6),
    bom=st.booleans(),
    trailing=st.sampled_from(["", "\r\n", "\n\n", "\r\n \r\n"]),
)
def test_manifest_read_returns_the_rows_written_or_a_one_line_data_error(
    tmp_path_factory, extra, body, mutation, where, bom, trailing
):
    header = ["id", "path", "split", *extra]
    width = len(header)
    rows = [[f"r{i}-{r[0]}", *r[1:width]] + [""] * max(0, width - len(r)) for i, r in enumerate(body)]
    parts = [render(header)] + [render(r) for r in rows]
    bad_line = None
    if mutation in ("extra cell", "missing cell", "open quote") and rows:
        k = 1 + where % len(rows)
        if mutation == "extra cell":
            parts[k] = render([*rows[k - 1], "more"])
        elif mutation == "missing cell":
            parts[k] = render(rows[k - 1][:-1])
        elif mutation == "open quote":
            parts[k] = parts[k].replace(",", ',"', 1)
        bad_line = lines_before("".join(parts[:k])) + 1
    data = ("".join(parts) + trailing).encode()
    if mutation == "bad byte":
        data = data[: where % (len(data) + 1)] + b"\xff" + data[where % (len(data) + 1) :]
    elif mutation == "cut":
        data = data[: where % (len(data) + 1)]
    path = tmp_path_factory.getbasetemp() / "fuzz" / "manifest.csv"
    put(path, (b"\xef\xbb\xbf" if bom else b"") + data)

    names = [h.strip() for h in header]
    header_ok = len(set(names)) == len(names)
    well_formed = mutation == "none" or (
        not rows and mutation in ("extra cell", "missing cell", "open quote")
    )
    try:
        m = Manifest.read(path)
    except DataError as e:
        msg = str(e)
        assert "\n" not in msg and "\r" not in msg, msg
        assert msg.startswith(str(path)), msg
        assert not (well_formed and header_ok), msg  # a well-formed file fails only for a repeated column
        if bad_line is not None and mutation != "open quote" and header_ok:
            assert f": line {bad_line}: " in msg, msg  # the physical line of the bad row
        return
    except Exception as e:  # noqa: BLE001 - the property: nothing but DataError escapes
        pytest.fail(f"{type(e).__name__}: {e}")
    assert mutation != "bad byte" and (bad_line is None or mutation == "open quote"), "should have raised"
    if well_formed:
        assert m.columns == names
        assert m.rows == [dict(zip(names, (c.strip() for c in r))) for r in rows]
