"""Model quality metrics for rare-event scoring, in numpy: ROC-AUC, PR-AUC (average precision),
recall at a fixed false-positive rate, KS and expected calibration error.

Ties in scores are handled as one threshold (all tied rows flip together), as in scikit-learn."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _curve(
    y: NDArray[np.float64], s: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Cumulative (fp, tp, threshold) at each distinct score, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = (last_of_run + 1) - tp
    return fp.astype(np.float64), tp.astype(np.float64), s[last_of_run]


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    y, s = np.asarray(y_true, np.float64), np.asarray(score, np.float64)
    fp, tp, _ = _curve(y, s)
    if tp[-1] == 0 or fp[-1] == 0:
        return float("nan")
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    return float(np.trapezoid(tpr, fpr))


def pr_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Average precision: sum over thresholds of (recall step) x precision."""
    y, s = np.asarray(y_true, np.float64), np.asarray(score, np.float64)
    fp, tp, _ = _curve(y, s)
    if tp[-1] == 0:
        return float("nan")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(y_true: ArrayLike, score: ArrayLike, max_fpr: float) -> float:
    """Highest recall reachable by a threshold whose false-positive rate is at most `max_fpr`."""
    y, s = np.asarray(y_true, np.float64), np.asarray(score, np.float64)
    fp, tp, _ = _curve(y, s)
    if tp[-1] == 0 or fp[-1] == 0:
        return float("nan")
    ok = fp / fp[-1] <= max_fpr
    return float((tp[ok] / tp[-1]).max()) if ok.any() else 0.0


def ks_statistic(y_true: ArrayLike, score: ArrayLike) -> float:
    y, s = np.asarray(y_true, np.float64), np.asarray(score, np.float64)
    fp, tp, _ = _curve(y, s)
    if tp[-1] == 0 or fp[-1] == 0:
        return float("nan")
    return float(np.max(tp / tp[-1] - fp / fp[-1]))


def calibration_error(y_true: ArrayLike, prob: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-count bins of the predicted probability.

    Equal-count rather than equal-width bins: with fraud rates of a few percent, equal-width bins
    put nearly every row in the first bin and say nothing."""
    y, p = np.asarray(y_true, np.float64), np.asarray(prob, np.float64)
    if y.size == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    err = 0.0
    for chunk in np.array_split(order, min(bins, y.size)):
        err += chunk.size * abs(p[chunk].mean() - y[chunk].mean())
    return float(err / y.size)


@dataclass(frozen=True, slots=True)
class Metrics:
    rows: int
    positives: int
    roc_auc: float
    pr_auc: float
    recall_at_1pct_fpr: float
    recall_at_5pct_fpr: float
    ks: float
    calibration_error: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(y_true: ArrayLike, prob: ArrayLike) -> Metrics:
    y, p = np.asarray(y_true, np.float64), np.asarray(prob, np.float64)
    return Metrics(
        rows=int(y.size),
        positives=int(y.sum()),
        roc_auc=roc_auc(y, p),
        pr_auc=pr_auc(y, p),
        recall_at_1pct_fpr=recall_at_fpr(y, p, 0.01),
        recall_at_5pct_fpr=recall_at_fpr(y, p, 0.05),
        ks=ks_statistic(y, p),
        calibration_error=calibration_error(y, p),
    )
