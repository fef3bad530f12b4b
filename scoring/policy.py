"""Decisions from calibrated probabilities: per-product thresholds for REVIEW and DECLINE, and the
0-999 score shown to people."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DECLINE = "DECLINE"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Probability at or above which an application goes to REVIEW, and to DECLINE."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.decline <= 1.0:
            raise ValueError(f"thresholds need 0 <= review <= decline <= 1 (got {self})")


@dataclass(frozen=True, slots=True)
class Policy:
    by_product: Mapping[str, Thresholds]

    def decide(self, probability: float, product: str) -> Decision:
        t = self.by_product[product]
        if probability >= t.decline:
            return Decision.DECLINE
        if probability >= t.review:
            return Decision.REVIEW
        return Decision.APPROVE

    def to_json(self) -> dict[str, Any]:
        return {p: {"review": t.review, "decline": t.decline} for p, t in self.by_product.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        return cls({p: Thresholds(float(v["review"]), float(v["decline"])) for p, v in data.items()})

    @classmethod
    def from_rates(
        cls,
        probability: NDArray[np.float64],
        product: NDArray[np.str_],
        products: tuple[str, ...],
        *,
        review_rate: float,
        decline_rate: float,
    ) -> Policy:
        """Thresholds that send the target shares of each product's applications to DECLINE and to
        REVIEW-or-worse, set on a held-out slice. A product absent from the slice gets the thresholds
        of all products together: never-review would be the wrong default for an unseen product."""
        out = {}
        for name in products:
            p = probability[product == name]
            if p.size == 0:
                p = probability
            decline = float(np.quantile(p, 1.0 - decline_rate))
            review = float(np.quantile(p, 1.0 - decline_rate - review_rate))
            out[name] = Thresholds(min(review, decline), decline)
        return cls(out)


def to_score(probability: NDArray[np.float64]) -> NDArray[np.int32]:
    """0-999, monotone in the probability: the probability in thousandths, capped."""
    return np.minimum(np.floor(probability * 1000.0), 999).astype(np.int32)
