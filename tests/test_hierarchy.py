"""Hierarchical labels: mapping validation, the consistency term, masked coarse training, hierarchy metrics."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from mtlhar.config import TaskConfig
from mtlhar.data.manifest import Manifest
from mtlhar.errors import ConfigError, DataError
from mtlhar.metrics import hierarchy_metrics
from mtlhar.objectives import HeadOutput, HierarchyConsistency, masked_cross_entropy
from mtlhar.tasks import build_task, hierarchy_index, link_hierarchies, read_hierarchy_csv

FINE = ["a1", "a2", "b1", "b2", "b3"]
GROUP = [0, 0, 1, 1, 1]  # a* -> A, b* -> B


def _tasks(parent_on="fine"):
    fine = build_task(TaskConfig(name="fine", parent="coarse" if parent_on == "fine" else None), FINE)
    coarse = build_task(
        TaskConfig(name="coarse", parent="fine" if parent_on == "coarse" else None), ["A", "B"]
    )
    return fine, coarse


def _manifest(tmp_path, rows, name="manifest.csv"):
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "path", "split", "fine", "coarse"])
        w.writeheader()
        for i, (fi, co) in enumerate(rows):
            w.writerow({"id": str(i), "path": f"{i}.mp4", "split": "train", "fine": fi, "coarse": co})
    return Manifest.read(path)


def test_mapping_must_cover_every_fine_class_with_a_known_coarse_class():
    fine, coarse = _tasks()
    assert hierarchy_index(fine, coarse, dict(zip(FINE, "AABBB"))) == GROUP
    with pytest.raises(ConfigError, match=r"fine class 'b3' of task 'fine' has no coarse class"):
        hierarchy_index(fine, coarse, dict(zip(FINE[:4], "AABB")))
    with pytest.raises(ConfigError, match=r"'b3' maps to 'C', which is not a class of task 'coarse'"):
        hierarchy_index(fine, coarse, dict(zip(FINE, "AABBC")))


def test_hierarchy_csv_and_manifest_conflicts_name_the_class(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("fine,coarse\na1,A\na2,A\na1,B\n")
    with pytest.raises(DataError, match=r"line 4: fine class 'a1' maps to 'B' here but to 'A'"):
        read_hierarchy_csv(p, "fine", "coarse")
    m = _manifest(tmp_path, [("a1", "A"), ("a1", "B")])
    fine, coarse = _tasks()
    with pytest.raises(DataError, match=r"fine class 'a1' is labelled with coarse 'B'"):
        link_hierarchies([fine, coarse], m)


def test_link_orients_by_class_count_and_stores_the_map(tmp_path):
    rows = [(f, "AABBB"[i]) for i, f in enumerate(FINE)] + [("", "A"), ("b1", "")]
    m = _manifest(tmp_path, rows)
    for side in ("fine", "coarse"):  # `parent` may be declared on either level
        fine, coarse = _tasks(parent_on=side)
        link_hierarchies([fine, coarse], m)
        assert fine.hierarchy == {"parent": "coarse", "map": dict(zip(FINE, "AABBB"))}
        assert coarse.hierarchy is None
    m = _manifest(tmp_path, rows[:4], name="partial.csv")  # b3 never labelled with its group
    fine, coarse = _tasks()
    with pytest.raises(ConfigError, match="'b3'"):
        link_hierarchies([fine, coarse], m)
    (tmp_path / "map.csv").write_text("fine,coarse\n" + "".join(f"{f},{c}\n" for f, c in zip(FINE, "AABBB")))
    fine = build_task(TaskConfig(name="fine", parent="coarse", args={"hierarchy": "map.csv"}), FINE)
    link_hierarchies([fine, coarse], m)  # the CSV completes what the rows do not show
    assert fine.hierarchy["map"]["b3"] == "B"


def _outputs(fine_logits, coarse_logits):
    return {
        "fine": HeadOutput(torch.tensor(fine_logits, requires_grad=True), None),
        "coarse": HeadOutput(torch.tensor(coarse_logits, requires_grad=True), None),
    }


def test_consistency_term_on_hand_made_inputs():
    # fine probabilities [0.5, 0.25, 0.25] in groups [0, 1, 1] -> grouped q = [0.5, 0.5]
    fine = [[math.log(0.5), math.log(0.25), math.log(0.25)]]
    term = HierarchyConsistency("fine", "coarse", [0, 1, 1], weight=1.0)
    same = term(_outputs(fine, [[0.0, 0.0]]), {}, {})
    assert float(same.detach()) == pytest.approx(0.0, abs=1e-6)
    coarse = [[math.log(0.8), math.log(0.2)]]
    kl = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    outs = _outputs(fine, coarse)
    value = term(outs, {}, {})
    assert float(value.detach()) == pytest.approx(kl, rel=1e-5)
    value.backward()  # both heads receive a gradient
    assert outs["fine"].output.grad.abs().sum() > 0 and outs["coarse"].output.grad.abs().sum() > 0
    ce = HierarchyConsistency("fine", "coarse", [0, 1, 1], divergence="ce")
    assert float(ce(_outputs(fine, coarse), {}, {}).detach()) == pytest.approx(
        -(0.5 * math.log(0.8) + 0.5 * math.log(0.2))
    )
    with pytest.raises(ValueError):
        HierarchyConsistency("fine", "coarse", [0], divergence="l2")


def test_coarse_head_trains_when_fine_labels_are_missing():
    fine_logits = torch.randn(4, 5, requires_grad=True)
    coarse_logits = torch.randn(4, 2, requires_grad=True)
    f_total, f_count = masked_cross_entropy(
        fine_logits, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool)
    )
    c_total, c_count = masked_cross_entropy(
        coarse_logits, torch.tensor([0, 1, 1, 0]), torch.ones(4, dtype=torch.bool)
    )
    assert float(f_count) == 0 and float(f_total) == 0 and float(c_count) == 4
    (f_total / f_count.clamp_min(1) + c_total / c_count).backward()
    assert torch.all(fine_logits.grad == 0) and coarse_logits.grad.abs().sum() > 0


def test_hierarchy_metrics_hand_made():
    g = np.array(GROUP)
    # rows: correct; wrong inside the group; wrong across groups; unlabelled (masked)
    fine = np.array(
        [
            [9, 1, 0, 0, 0],  # top1 a1 (label a1)          top2 a2 (same group, d=1)
            [1, 9, 0, 0, 0],  # top1 a2 (label a1): d=1      top2 a1 (d=0)
            [0, 0, 9, 1, 0],  # top1 b1 (label a2): d=2      top2 b2 (d=2)
            [0, 0, 0, 0, 9],
        ],
        dtype=float,
    )
    coarse = np.array([[5, 0], [0, 5], [0, 5], [0, 5]], dtype=float)  # row 1 inconsistent with its fine top1
    target = np.array([0, 0, 1, 0])
    mask = np.array([True, True, True, False])
    res = hierarchy_metrics(fine, coarse, target, mask, g, ks=(1, 2))
    assert res["hier_consistency"] == pytest.approx(3 / 4)
    assert res["mistake_severity"] == pytest.approx((1 + 2) / 2)
    assert res["hdist@1"] == pytest.approx((0 + 1 + 2) / 3)
    assert res["hdist@2"] == pytest.approx(((0 + 1) / 2 + (1 + 0) / 2 + (2 + 2) / 2) / 3)
    assert "mistake_severity" not in hierarchy_metrics(fine[:1], coarse[:1], target[:1], None, g)
    assert hierarchy_metrics(fine[:0], coarse[:0], target[:0], None, g) == {}


def test_run_with_parent_reports_hierarchy_metrics(squares, tmp_path):
    from conftest import square_config
    from mtlhar.config import load_config
    from mtlhar.evaluate import evaluate_run
    from mtlhar.train import Trainer

    rows = list(csv.DictReader(open(squares)))
    for r in rows:
        r["path"] = str(squares.parent / r["path"])
        r["fine"] = f"{r['tags'].split('|')[0]}_{r['colour']}"  # direction x colour
        r["coarse"] = r["tags"].split("|")[0] if int(r["id"][-3:]) % 4 else ""  # some clips: fine label only
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = square_config(path, steps=3, eval_every=3, checkpoint_every=3)
    cfg["tasks"] = [{"name": "fine", "parent": "coarse"}, {"name": "coarse"}]
    cfg["cross_terms"] = [
        {"kind": "hierarchy_consistency", "fine": "fine", "coarse": "coarse", "divergence": "ce"}
    ]
    trainer = Trainer(load_config(base=cfg), tmp_path / "run")
    assert trainer.tasks[0].hierarchy["map"]["left_red"] == "left"
    assert trainer.cross_terms[0].index.tolist() == [
        trainer.tasks[1].index[c.split("_")[0]] for c in trainer.tasks[0].classes
    ]
    trainer.fit(log=None)
    m = evaluate_run(tmp_path / "run", split="test")["metrics"]["fine"]
    assert {"hier_consistency", "hdist@1", "hdist@5"} <= set(m) and 0 <= m["hier_consistency"] <= 1
    cfg["cross_terms"][0]["divergence"] = "js"
    with pytest.raises(ConfigError, match="divergence"):
        Trainer(load_config(base=cfg), tmp_path / "run2")
