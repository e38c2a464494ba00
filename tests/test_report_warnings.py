"""The report's warnings about weak evidence, on small study folders written by hand.

Each warning (one seed, undertrained, memorised auxiliary task, ceiling, chance) must appear exactly when
its condition holds: every test checks it present and, with the condition broken, absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtlhar.report import build_report, evidence, tables
from mtlhar.report.study import StudyData

CLASSES = {"main": ["a", "b", "c", "d"], "aux": ["x", "y"]}  # chance 1/4 and 1/2
VAL_STEPS = [5, 10, 15, 20]


def _entry(group, task, split, mean, lo, hi, n_seeds):
    return {
        "run": group,
        "task": task,
        "role": "primary" if task == "main" else "auxiliary",
        "metric": "top1",
        "split": split,
        "mean": mean,
        "std": 0.0 if n_seeds == 1 else 0.02,
        "n_seeds": n_seeds,
        "ci_lo": lo,
        "ci_hi": hi,
        "ci_method": "bootstrap over test clips x seeds",
    }


def make_study(
    root: Path,
    *,
    seeds: int = 2,
    mtl_groups: tuple[str, ...] = ("mtl",),
    splits: tuple[str, ...] = ("test",),
    scores: list[float] = (0.5, 0.7, 0.65, 0.6),
    aux_loss_end: float = 0.5,
    aux_val: list[float] = (0.6, 0.65, 0.7, 0.75),
    means: dict | None = None,
    stream: str = "rgb",
    best_step: int | None = None,
) -> Path:
    """A study folder: stl_main (main only) and multi-task groups (main + aux), `seeds` runs each.

    Every run logs 20 train steps (main loss 1 -> 0.5, aux loss 1 -> aux_loss_end, linear) and validation
    at VAL_STEPS with score `scores` and aux top1 `aux_val`. `means`: {(group, task): (mean, ci_lo, ci_hi)}
    for every split; default 0.7 [0.6, 0.8] for main and 0.8 [0.7, 0.9] for aux.
    """
    means = means or {}
    groups = {"stl_main": [f"stl_main_s{s}" for s in range(seeds)]}
    groups.update({g: [f"{g}_s{s}" for s in range(seeds)] for g in mtl_groups})
    summary, tests, compute = [], [], {}
    for g in groups:
        for task in ["main"] if g == "stl_main" else ["main", "aux"]:
            default = (0.7, 0.6, 0.8) if task == "main" else (0.8, 0.7, 0.9)
            for split in splits:
                summary.append(_entry(g, task, split, *means.get((g, task), default), seeds))
        if g != "stl_main":
            tests += [
                {
                    "run": g,
                    "task": "main",
                    "split": s,
                    "metric": "top1",
                    "mean_diff": 0.0,
                    "p": 1.0,
                    "p_holm": 1.0,
                }
                for s in splits
            ]
    for g, runs in groups.items():
        tasks = ["main"] if g == "stl_main" else ["main", "aux"]
        for run in runs:
            d = root / "runs" / run
            d.mkdir(parents=True)
            defs = [
                {
                    "name": t,
                    "kind": "classification",
                    "column": t,
                    "classes": CLASSES[t],
                    "main_metric": "top1",
                }
                | {"role": "primary" if t == "main" else "auxiliary"}
                for t in tasks
            ]
            (d / "tasks.json").write_text(json.dumps(defs))
            (d / "config.yaml").write_text(f"data:\n  stream: {stream}\n")
            lines = []
            for step in range(1, 21):
                f = (step - 1) / 19
                loss = {"main": 1 - 0.5 * f, "aux": 1 - (1 - aux_loss_end) * f}
                lines.append({"split": "train", "step": step, "loss": {t: loss[t] for t in tasks}})
                if step in VAL_STEPS:
                    i = VAL_STEPS.index(step)
                    metrics = {"main": {"top1": scores[i]}, "aux": {"top1": aux_val[i]}}
                    lines.append(
                        {"split": "val", "step": step, "metrics": {t: metrics[t] for t in tasks}}
                        | {"score": scores[i]}
                    )
            (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            compute[run] = {"steps": 20} | ({"best_step": best_step} if best_step is not None else {})
    results = {
        "study": "synthetic",
        "summary": summary,
        "groups": groups,
        "tasks": [
            {"name": "main", "column": "main", "main_metric": "top1"},
            {"name": "aux", "column": "aux", "role": "auxiliary", "main_metric": "top1"},
        ],
        "tests": tests,
        "compute": compute,
        "settings": {"seeds": seeds, "test_splits": list(splits)},
        "dataset": {"clips": 10},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results))
    return root


def kinds(study: Path) -> list[str]:
    return [w["kind"] for w in evidence.warnings(StudyData(study))]


def page_warnings(html: str) -> list[str]:
    return re.findall(r'data-warning="([a-z-]+)"', html)


# -------------------------------------------------------------------------------------------------
def test_a_sound_study_has_no_warnings_box(tmp_path):
    study = make_study(tmp_path / "s")
    assert kinds(study) == []
    html = build_report(study).read_text(encoding="utf-8")
    assert 'id="warnings"' not in html and "n/a (1 seed)" not in html
    assert "2 paired seeds per run group" in html and "budget-limited" not in html.lower()


def test_one_seed_says_std_na_and_limits_the_verdict(tmp_path):
    study = make_study(tmp_path / "s", seeds=1)
    assert kinds(study) == ["one-seed"]
    (v,) = tables.verdicts(StudyData(study))
    assert v["limits"] == ["1 seed"] and v["answer"] == "No significant difference"
    html = build_report(study).read_text(encoding="utf-8")
    assert page_warnings(html) == ["one-seed"]
    assert "n/a (1 seed)" in html and ">0.000</td>" not in html.split('id="results"')[1].split("<details")[0]
    assert "1 paired seed per run group" in html and "Budget-limited verdict: 1 seed." in html
    assert "Not shown" not in html


def test_undertrained_when_the_best_is_the_last_and_still_rising(tmp_path):
    study = make_study(tmp_path / "rising", scores=[0.3, 0.4, 0.5, 0.6])
    assert kinds(study) == ["undertrained"]
    data = StudyData(study)
    assert set(evidence.undertrained_runs(data)) == {r for runs in data.groups.values() for r in runs}
    (w,) = evidence.warnings(data)
    assert "best at the last step (20)" in w["text"] and "0.400 → 0.500 → 0.600" in w["text"]
    (v,) = tables.verdicts(data)
    assert v["limits"] == ["undertrained: mtl_s0, mtl_s1, stl_main_s0, stl_main_s1"]
    # broken: a plateau (best first reached before the end) and a score that peaked earlier
    assert kinds(make_study(tmp_path / "plateau", scores=[0.3, 0.5, 0.6, 0.6])) == []
    assert kinds(make_study(tmp_path / "peaked", scores=[0.3, 0.7, 0.6, 0.65])) == []
    # the recorded best step counts where it is there
    assert kinds(make_study(tmp_path / "recorded", scores=[0.3, 0.4, 0.5, 0.6], best_step=15)) == []


def test_memorised_auxiliary_when_its_loss_vanishes_and_validation_falls(tmp_path):
    study = make_study(tmp_path / "mem", aux_loss_end=0.02, aux_val=[0.6, 0.8, 0.7, 0.65])
    assert kinds(study) == ["memorised", "memorised"]  # both seeds of the multi-task group
    found = evidence.memorised_auxiliaries(StudyData(study))
    assert {(m["run"], m["task"]) for m in found} == {("mtl_s0", "aux"), ("mtl_s1", "aux")}
    assert all(m["best"] == 0.8 and m["last"] == 0.65 for m in found)
    html = build_report(study).read_text(encoding="utf-8")
    assert page_warnings(html) == ["memorised", "memorised"]
    assert "Auxiliary task aux is memorised in mtl_s0" in html
    # broken: the loss stays above 10% of its start, or the validation metric ends at its best
    assert kinds(make_study(tmp_path / "loss", aux_loss_end=0.2, aux_val=[0.6, 0.8, 0.7, 0.65])) == []
    assert kinds(make_study(tmp_path / "val", aux_loss_end=0.02, aux_val=[0.6, 0.7, 0.75, 0.8])) == []


def test_ceiling_when_every_run_scores_at_least_099(tmp_path):
    top = {k: (0.995, 0.99, 1.0) for k in [("stl_main", "main"), ("mtl", "main"), ("mtl", "aux")]}
    study = make_study(tmp_path / "top", means=top)
    assert kinds(study) == ["ceiling"]
    assert "Every run scores ≥ 0.99 on test" in evidence.warnings(StudyData(study))[0]["text"]
    # broken: one run below the ceiling
    assert kinds(make_study(tmp_path / "one_below", means=top | {("mtl", "aux"): (0.98, 0.96, 1.0)})) == []


def test_chance_when_every_interval_reaches_one_over_the_classes(tmp_path):
    low = {("stl_main", "main"): (0.27, 0.2, 0.34), ("mtl", "main"): (0.3, 0.25, 0.35)}
    study = make_study(tmp_path / "chance", means=low)
    data = StudyData(study)
    assert (
        data.chance("main") == 0.25 and data.chance("aux") == 0.5 and data.chance("main", "macro_f1") is None
    )
    assert kinds(study) == ["chance"]
    (w,) = evidence.warnings(data)
    assert "At chance on test: main (chance 1/4 = 0.250, means 0.270–0.300)" in w["text"]
    html = build_report(study).read_text(encoding="utf-8")
    assert "Dashed line: chance, 1 / number of classes" in html and "main top1 1/4 = 0.250" in html
    # broken: one run's interval lies above chance
    assert kinds(make_study(tmp_path / "above", means=low | {("mtl", "main"): (0.35, 0.3, 0.4)})) == []


def test_headline_counts_groups_and_splits_not_runs_times_seeds(tmp_path):
    study = make_study(tmp_path / "s", mtl_groups=("mtl_a", "mtl_b"), splits=("test", "val"), seeds=3)
    html = build_report(study).read_text(encoding="utf-8")
    assert "2 multi-task run groups × 2 test split(s) = 4 verdicts" in html and "3 seeds per group" in html


@pytest.mark.parametrize("stream", ["rgb", "seq"])
def test_gallery_only_for_video_streams(tmp_path, stream):
    study = make_study(tmp_path / stream, stream=stream)
    html = build_report(study).read_text(encoding="utf-8")
    if stream == "rgb":
        assert 'id="gallery"' in html and "not RGB video" not in html
    else:
        assert (
            'id="gallery"' not in html
            and 'href="#gallery"' not in html
            and "Grad-CAM" not in html.split("Not applicable")[0]
        )
        assert "gallery of video frames and Grad-CAM: mtl_s0 reads sequence, not RGB video" in html
