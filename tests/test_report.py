"""`mtlhar.report`: the HTML report of a study, checked as HTML and in a real (headless) browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_square_dataset, square_config
from mtlhar.errors import ConfigError, DataError
from mtlhar.report import build_report, tables
from mtlhar.report.study import StudyData
from mtlhar.study import StudySpec, run_study

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """A tiny study: STL baseline + one MTL variant (affinity measured), 2 seeds, 2 test splits."""
    squares = make_square_dataset(tmp_path_factory.mktemp("squares36"), n=36)  # 24 train, 6 val, 6 test
    cfg = square_config(squares, steps=4, eval_every=2, checkpoint_every=2)
    tasks = cfg.pop("tasks")
    spec = StudySpec(
        name="tiny",
        base=cfg,
        tasks=tasks,
        seeds=2,
        test_splits=["test", "val"],
        variants=[{"name": "mtl_equal", "balancer": {"name": "equal"}, "train": {"affinity_every": 2}}],
    )
    out = tmp_path_factory.mktemp("study")
    run_study(spec, out, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def report(study) -> Path:
    return build_report(study)


class _Page(HTMLParser):
    """Collects what the checks need: ids, referenced files, and the text of every table cell by class."""

    def __init__(self):
        super().__init__()
        self.ids, self.refs, self.cells, self.tags = set(), [], [], []
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.refs.append(a.get("src", ""))
        if tag == "a" and not (a.get("href") or "").startswith(("#", "http:", "https:")):
            self.refs.append(a.get("href", ""))
        if tag == "td":
            self._cell = [a.get("class") or "", ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell[0], self._cell[1].strip()))
            self._cell = None


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_page_parses_references_exist_and_numbers_are_numbers(report):
    page = _parse(report)
    assert report.name == "index.html" and report.parent.name == "report"
    for section in ("headline", "results", "charts", "cross-domain", "confusion", "curves"):
        assert section in page.ids
    assert {"weights", "affinity", "gallery", "compute", "render-check"} <= page.ids
    assert page.refs, "the page references no figures"
    for ref in page.refs:
        assert ref and (report.parent / ref).is_file(), f"{ref} is referenced but missing"
    nums = [text for cls, text in page.cells if "num" in cls.split()]
    assert len(nums) > 50
    for text in nums:
        float(text)  # raises on anything that is not a number
    assert all(text == "—" for cls, text in page.cells if cls == "na")
    assert "details" in page.tags and "summary" in page.tags


def test_page_answers_the_question_and_shows_every_section(report, study):
    html = report.read_text(encoding="utf-8")
    results = json.loads((study / "results.json").read_text())
    assert "Does MTL help here?" in html and "p_holm" in html
    assert results["delta_m_convention"] in unescape(html)
    for d in results["delta_m_summary"]:
        assert f"{d['mean']:+.2f}" in html
    # one bar chart per test split, learning curves per task, confusion of STL and MTL, affinity heatmap
    pngs = {p.name for p in report.parent.glob("*.png")}
    assert {"bars_0_test.png", "bars_1_val.png", "weights.png", "affinity_0.png"} <= pngs
    assert {f"curves_{t['name']}.png" for t in results["tasks"]} <= pngs
    assert {"confusion_direction.png", "confusion_colour.png"} <= pngs
    # the squares' training classes are balanced: no long-tail bands, and the page says why
    assert not [p for p in pngs if p.startswith("bands_")] and 'id="long-tail"' not in html
    assert "its training classes are balanced" in html
    assert "test → val" in html
    assert "not measured for this study" not in html
    assert len([p for p in pngs if p.startswith("clip_")]) == 6
    assert "Grad-CAM of direction" in html
    for run in results["compute"]:
        assert run in html


def test_frequency_bands_split_classes_by_training_counts(study):
    bands = {b["task"]: b for b in tables.frequency_bands(StudyData(study))}
    colour = bands["colour"]
    members = sorted(i for b in colour["bands"] for i in b["members"])
    assert members == list(range(len(colour["classes"])))  # every class in exactly one band
    freq = np.asarray(colour["freq"])
    head, _, tail = (set(b["members"]) for b in colour["bands"])
    if head and tail:
        assert freq[list(head)].min() > freq[list(tail)].max()


def test_grad_cam_covers_the_clip_and_is_normalised(study):
    from mtlhar.evaluate import load_run
    from mtlhar.report.saliency import grad_cam

    model, _, cfg = load_run(study / "runs" / "mtl_equal_s0")
    clip = torch.randint(0, 255, (3, cfg.data.frames, cfg.data.size, cfg.data.size), dtype=torch.uint8)
    cam, cls = grad_cam(model, clip, "direction")
    assert cam.shape == (cfg.data.frames, cfg.data.size, cfg.data.size)
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6 and cls in (0, 1)
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_verdicts_follow_the_holm_corrected_tests(tmp_path):
    tests = [
        {
            "run": "mtl",
            "task": "a",
            "split": "test",
            "metric": "top1",
            "mean_diff": 0.1,
            "p": 0.001,
            "p_holm": 0.002,
        },
        {
            "run": "mtl",
            "task": "b",
            "split": "test",
            "metric": "mae",
            "mean_diff": 0.2,
            "p": 0.01,
            "p_holm": 0.02,
        },
        {
            "run": "mtl",
            "task": "c",
            "split": "test",
            "metric": "top1",
            "mean_diff": 0.3,
            "p": 0.2,
            "p_holm": 0.4,
        },
    ]
    results = {
        "study": "s",
        "summary": [],
        "groups": {"stl_a": ["stl_a_s0"], "mtl": ["mtl_s0"]},
        "tasks": [{"name": n, "main_metric": "mae" if n == "b" else "top1"} for n in "abc"],
        "tests": tests,
        "settings": {"test_splits": ["test"]},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    (v,) = tables.verdicts(StudyData(tmp_path))
    assert [i["task"] for i in v["better"]] == ["a"]
    assert [i["task"] for i in v["worse"]] == ["b"]  # higher MAE is worse
    assert [i["task"] for i in v["same"]] == ["c"] and v["tone"] == "mixed"


def test_missing_results_and_moved_manifest_are_explained(tmp_path, study):
    with pytest.raises(DataError, match="no results.json"):
        build_report(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("report", "tb", "last.pt"))
    results = json.loads((copy / "results.json").read_text())
    results["dataset"]["manifest"] = str(tmp_path / "gone" / "manifest.csv")
    results.pop("affinity_by_run", None)
    results["affinity"] = None
    (copy / "results.json").write_text(json.dumps(results))
    html = build_report(copy, gallery_clips=2).read_text(encoding="utf-8")
    assert "not found" in html and "not measured for this study" in html
    assert "Does MTL help here?" in html


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_page_renders_in_headless_chromium_without_errors(report, tmp_path):
    url = report.resolve().as_uri()
    res = _chromium(
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", url, tmp_path=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Check()
    dom.feed(res.stdout)
    check = dom.check
    assert check is not None, "the page's load script did not run"
    n, ok = int(check["data-images"]), int(check["data-images-ok"])
    assert n > 10 and ok == n, f"{n - ok} of {n} images did not render"
    assert check["data-errors"] == "", check["data-errors"]
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console


class _Check(HTMLParser):
    def __init__(self):
        super().__init__()
        self.check: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "render-check" and "data-images" in a:
            self.check = {k: v or "" for k, v in a.items()}


def test_transfer_section_shows_every_source_with_its_interval(tmp_path, study):
    """A study with a `transfer` list (the granularity study) gets a transfer table and chart; one without
    gets neither (the report of `report` fixture has no transfer section)."""
    copy = tmp_path / "copy"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("report", "tb", "last.pt"))
    results = json.loads((copy / "results.json").read_text())
    entry = {"target": "held_out", "split": "test", "std": 0.01, "n_seeds": 3, "ci_method": "bootstrap"}
    results["transfer"] = [
        {
            **entry,
            "source": "coarse_src",
            "probe": "linear",
            "metric": "top1",
            "mean": 0.417,
            "ci_lo": 0.39,
            "ci_hi": 0.44,
        },
        {
            **entry,
            "source": "fine_src",
            "probe": "linear",
            "metric": "top1",
            "mean": 0.5044,
            "ci_lo": 0.48,
            "ci_hi": 0.53,
        },
        {**entry, "source": "fine_src", "probe": "linear", "metric": "macro_f1", "mean": 0.321},
    ]
    results["transfer_answer"] = {"claim": "finer source tasks give better transfer features", "by_probe": {}}
    (copy / "results.json").write_text(json.dumps(results))
    html = build_report(copy, gallery_clips=1).read_text(encoding="utf-8")
    assert 'id="transfer"' in html and "held_out" in html and "finer source tasks" in html
    assert "[0.390, 0.440]" in html and "0.504" in html and "0.321" in html
    assert (copy / "report" / "transfer.png").is_file()
    assert 'id="transfer"' not in build_report(study, tmp_path / "plain", gallery_clips=1).read_text()


def test_many_multi_task_runs_get_a_headline_table(tmp_path, study):
    """More than 3 (run, split) verdicts: one table, a row each, instead of one box each."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("report"))
    res = json.loads((copy / "results.json").read_text())
    res["groups"]["mtl_copy"] = list(res["groups"]["mtl_equal"])
    res["tests"] += [dict(t, run="mtl_copy") for t in res["tests"] if t["run"] == "mtl_equal"]
    res["delta_m_summary"] += [
        dict(d, run="mtl_copy") for d in res["delta_m_summary"] if d["run"] == "mtl_equal"
    ]
    (copy / "results.json").write_text(json.dumps(res))
    html = build_report(copy).read_text()
    headline = html.split('id="headline"')[1].split("delta_m of each multi-task run")[0]
    assert "does MTL help here?" in headline and 'class="answer ' not in headline
    rows = [r for r in headline.split("<tr>")[2:] if "answer-cell" in r]
    assert len(rows) == 4 and sum("mtl_copy" in r for r in rows) == 2


def test_variants_are_tested_against_the_reference_variant(tmp_path):
    """`reference`: every other multi-task variant gets paired tests against it per primary task and split
    (its own Holm family), and the report lists them; an unknown reference names the key."""
    squares = make_square_dataset(tmp_path / "squares", n=36)
    cfg = square_config(squares, steps=4, eval_every=2, checkpoint_every=2)
    tasks = cfg.pop("tasks")
    variants = [
        {"name": "equal", "balancer": {"name": "equal"}},
        {"name": "uw", "balancer": {"name": "uncertainty"}},
        {"name": "pcgrad", "balancer": {"name": "pcgrad"}},
    ]
    kw = dict(name="ref", base=cfg, tasks=tasks, seeds=2, test_splits=["test", "val"], stl=False)
    with pytest.raises(ConfigError, match=r"study reference: 'equl' is not a variant.*'uw'"):
        run_study(StudySpec(**kw, variants=variants, reference="equl"), tmp_path / "bad", log=lambda *_: None)
    out = tmp_path / "study"
    res = run_study(StudySpec(**kw, variants=variants, reference="equal"), out, log=lambda *_: None)
    primary = [t["name"] for t in tasks if t.get("role", "primary") == "primary"]
    rows = res["reference_tests"]
    assert {(r["run"], r["task"], r["split"]) for r in rows} == {
        (g, t, s) for g in ("uw", "pcgrad") for t in primary for s in ("test", "val")
    }
    assert res["tests"] == []  # no single-task baselines in this study
    assert all(r["reference"] == "equal" and 0 <= r["p"] <= r["p_holm"] <= 1 for r in rows)
    for r in rows:  # every test clip labelled: the mean per-clip difference is the difference of the means
        assert r["mean_diff"] == pytest.approx(r["run_mean"] - r["reference_mean"], abs=1e-9)
    html = build_report(out).read_text()
    section = html.split('id="reference"')[1].split("<h2")[0]
    assert "vs equal" in section and section.count("<tr>") == len(rows) + 1
