"""Probability calibration fitted on a held-out slice: isotonic regression (pool-adjacent-violators,
interpolated linearly between blocks so the mapping stays strictly increasing where the data allow)
or Platt scaling (a logistic fit on the model's log-odds). Stored as plain JSON in the bundle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Method = Literal["isotonic", "platt"]
PROBABILITY_FLOOR = 1e-4


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-z))


def _pav(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[list[float], list[float]]:
    """Isotonic fit; returns the (mean x, mean y) of each block, x increasing.

    Rows with equal x are pooled first: their order is arbitrary and must not shape the fit."""
    ux, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y)
    # Blocks as (sum_x, sum_y, count); merge while the last two violate monotonicity.
    sx: list[float] = []
    sy: list[float] = []
    n: list[float] = []
    for xi, yi, ci in zip(ux.tolist(), sums.tolist(), counts.tolist(), strict=True):
        sx.append(xi * ci)
        sy.append(yi)
        n.append(float(ci))
        while len(n) > 1 and sy[-2] / n[-2] >= sy[-1] / n[-1]:
            c = n.pop()
            b = sy.pop()
            a = sx.pop()
            sx[-1] += a
            sy[-1] += b
            n[-1] += c
    return [a / c for a, c in zip(sx, n, strict=True)], [b / c for b, c in zip(sy, n, strict=True)]


@dataclass(frozen=True, slots=True)
class Calibrator:
    method: Method
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw_score: ArrayLike, label: ArrayLike, method: Method = "isotonic") -> Calibrator:
        """Fits on raw log-odds from the model and 0/1 labels."""
        z = np.asarray(raw_score, np.float64)
        y = np.asarray(label, np.float64)
        if method == "platt":
            a, b = 1.0, 0.0
            for _ in range(50):  # Newton steps on the log-likelihood of sigmoid(a*z + b).
                p = _sigmoid(a * z + b)
                w = np.maximum(p * (1 - p), 1e-12)
                g = np.array([np.sum((p - y) * z), np.sum(p - y)])
                h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
                step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
                a, b = a - step[0], b - step[1]
                if np.abs(step).max() < 1e-10:
                    break
            return cls(method="platt", a=float(a), b=float(b))
        xs, ys = _pav(z, y)
        return cls(method="isotonic", x=tuple(xs), y=tuple(ys))

    def __call__(self, raw_score: ArrayLike) -> NDArray[np.float64]:
        z = np.asarray(raw_score, np.float64)
        p = _sigmoid(self.a * z + self.b) if self.method == "platt" else np.interp(z, self.x, self.y)
        # An end block of the isotonic fit can be all fraud or all legitimate; no applicant is
        # certain either way, so the probability stays inside [PROBABILITY_FLOOR, 1 - FLOOR].
        return np.clip(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)

    def check(self) -> None:
        """Raises ValueError unless the calibration can be applied (a bundle is checked at load)."""
        if self.method not in ("isotonic", "platt"):
            raise ValueError(f"unknown calibration method {self.method!r}")
        if self.method == "isotonic":
            x, y = np.asarray(self.x), np.asarray(self.y)
            if x.size == 0 or x.size != y.size or np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic calibration needs increasing x and non-decreasing y of one length")
            if not np.all(np.isfinite(x)) or np.any((y < 0) | (y > 1)):
                raise ValueError("isotonic calibration values out of range")
        elif not (np.isfinite(self.a) and np.isfinite(self.b) and self.a > 0):
            raise ValueError("Platt calibration needs a finite, positive slope")

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            method=data["method"],
            x=tuple(float(v) for v in data["x"]),
            y=tuple(float(v) for v in data["y"]),
            a=float(data["a"]),
            b=float(data["b"]),
        )
