"""`mtlhar.stats`: intervals and paired tests of a study, including set metrics (mAP) recomputed per
resample."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from conftest import make_square_dataset, square_config
from mtlhar import stats
from mtlhar.study import StudySpec, run_study


def test_average_precisions_match_sklearn_and_skip_classes_without_positives():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(150, 6))
    y = (rng.random((150, 6)) < 0.3).astype(int)
    y[:, 5] = 0
    v = rng.random((150, 6)) < 0.85
    ap = stats.average_precisions(z, y, v)
    for c in range(5):
        assert ap[c] == pytest.approx(average_precision_score(y[v[:, c], c], z[v[:, c], c]), abs=1e-12)
    assert np.isnan(ap[5])
    assert stats.mean_ap(z, y, v) == pytest.approx(np.nanmean(ap))


def test_set_metric_bootstrap_draws_the_same_resamples_as_the_per_clip_bootstrap():
    """With a 'set metric' that is a plain mean of per-clip scores, the two bootstraps must agree draw for
    draw: that is what lets delta_m mix top-1 and mAP resamples pairwise."""
    rng = np.random.default_rng(1)
    scores = rng.random((3, 40))
    valid = np.ones((3, 40), dtype=bool)
    per_clip = stats.bootstrap_seeds_clips(scores, valid, n_resamples=200)
    outputs = [s[:, None] for s in scores]
    as_set = stats.bootstrap_set_metric(
        lambda o, t, v: float(o.mean()), outputs, np.zeros((40, 1)), np.ones((40, 1), bool), n_resamples=200
    )
    assert np.allclose(per_clip, as_set)


def test_randomisation_test_p_values():
    rng = np.random.default_rng(2)
    y = (rng.random((120, 4)) < 0.4).astype(int)
    v = np.ones_like(y, dtype=bool)
    noise = [rng.normal(size=y.shape) for _ in range(2)]
    same = stats.randomisation_test(stats.mean_ap, noise, noise, y, v, n_permutations=200)
    assert same == (0.0, 1.0)
    good = [y * 3.0 + n for n in noise]  # clearly better rankings than pure noise
    diff, p = stats.randomisation_test(stats.mean_ap, good, noise, y, v, n_permutations=200)
    assert diff > 0.3 and p == pytest.approx(1 / 201)
    _, p_null = stats.randomisation_test(
        stats.mean_ap, noise, [rng.normal(size=y.shape) for _ in range(2)], y, v, n_permutations=200
    )
    assert p_null > 0.05


def test_study_with_a_multilabel_primary_gets_clip_intervals_delta_m_and_a_test(tmp_path):
    squares = make_square_dataset(tmp_path / "sq", n=36)
    cfg = square_config(squares, steps=3, eval_every=3, checkpoint_every=3)
    cfg.pop("tasks")
    spec = StudySpec(
        name="ml",
        base=cfg,
        tasks=[{"name": "tags", "kind": "multilabel"}, {"name": "colour", "role": "auxiliary"}],
        seeds=2,
        variants=[{"name": "mtl"}],
    )
    res = run_study(spec, tmp_path / "study", log=lambda *_: None)
    m = next(e for e in res["summary"] if (e["run"], e["task"], e["metric"]) == ("mtl", "tags", "mAP"))
    assert "mAP recomputed per resample" in m["ci_method"]
    assert m["ci_lo"] <= m["ci_hi"]
    dm = next(d for d in res["delta_m_summary"] if d["run"] == "mtl")
    assert dm["tasks"] == ["tags"] and dm["ci_lo"] <= dm["ci_hi"]
    (t,) = [t for t in res["tests"] if t["run"] == "mtl"]
    assert t["metric"] == "mAP" and "randomisation" in t["method"] and 0 < t["p"] <= 1
