"""Our metrics and calibration agree with scikit-learn's on random data, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from scoring.calibration import PROBABILITY_FLOOR, Calibrator
from scoring.metrics import calibration_error, ks_statistic, pr_auc, recall_at_fpr, roc_auc


@pytest.fixture(params=[0, 1, 2])
def sample(request):
    rng = np.random.default_rng(request.param)
    y = (rng.random(5000) < 0.03).astype(int)
    s = rng.normal(size=5000) + 1.2 * y
    s = np.round(s, 1)  # many ties
    return y, s


def test_roc_auc_matches_sklearn(sample):
    y, s = sample
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_pr_auc_matches_sklearn_average_precision(sample):
    y, s = sample
    assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_recall_and_ks_match_the_sklearn_roc_curve(sample):
    y, s = sample
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for limit in (0.01, 0.05):
        assert recall_at_fpr(y, s, limit) == pytest.approx(tpr[fpr <= limit].max())
    assert ks_statistic(y, s) == pytest.approx(np.max(tpr - fpr))


def test_calibration_error_is_zero_for_perfect_bins_and_large_for_bad_ones():
    y = np.array([0, 0, 0, 1] * 250)
    assert calibration_error(y, np.full(1000, 0.25)) == pytest.approx(0.0)
    assert calibration_error(y, np.full(1000, 0.9)) == pytest.approx(0.65)


def test_isotonic_matches_sklearn_at_its_knots(sample):
    y, s = sample
    cal = Calibrator.fit(s, y, "isotonic")
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    knots = np.asarray(cal.x)
    # Equal to scikit-learn's fit, but never exactly 0 or 1 (see PROBABILITY_FLOOR).
    expected = np.clip(ref.predict(knots), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    assert cal(knots) == pytest.approx(expected, abs=1e-9)
    assert cal(np.array([-1e9, 1e9])).tolist() == pytest.approx([expected[0], expected[-1]])
    grid = np.linspace(s.min() - 1, s.max() + 1, 500)
    assert np.all(np.diff(cal(grid)) >= 0)


def test_platt_recovers_a_known_logistic_link():
    rng = np.random.default_rng(5)
    z = rng.normal(size=200_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 3)))).astype(int)
    cal = Calibrator.fit(z, y, "platt")
    assert cal.a == pytest.approx(0.5, abs=0.05)
    assert cal.b == pytest.approx(-3.0, abs=0.05)
    assert Calibrator.from_json(cal.to_json()) == cal
