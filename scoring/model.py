"""A loaded, verified model bundle that scores frames of canonical applications: features, LightGBM
log-odds, calibrated probability, score and decision. Loaded once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from numpy.typing import NDArray

from features.pipeline import FeaturePipeline, FeatureSpec
from features.schema import PRODUCTS
from scoring.bundle import VerifiedBundle, read_bundle
from scoring.calibration import Calibrator
from scoring.errors import BundleError
from scoring.policy import Decision, Policy, to_score


@dataclass(frozen=True, slots=True)
class BatchScores:
    raw: NDArray[np.float64]
    probability: NDArray[np.float64]
    score: NDArray[np.int32]
    decisions: list[Decision]


class ScoringModel:
    """Everything scoring needs from a bundle, read and checked once."""

    def __init__(self, bundle: VerifiedBundle, *, threads: int = 1) -> None:
        self.bundle = bundle
        self.version = bundle.version
        try:
            self.spec = FeatureSpec.from_json(bundle.json("feature_spec.json"))
            self.calibrator = Calibrator.from_json(bundle.json("calibration.json"))
            self.policy = Policy.from_json(
                bundle.json("thresholds.json")
            )  # checks 0 <= review <= decline <= 1
            self.metrics: dict[str, Any] = bundle.json("metrics.json")
            self.info: dict[str, Any] = bundle.json("bundle.json")
            self.booster = lgb.Booster(model_str=bundle.files["model.txt"].decode())
        except (KeyError, ValueError, TypeError, lgb.basic.LightGBMError) as exc:
            raise BundleError(f"bundle {bundle.directory} is unreadable: {exc}") from exc
        try:
            self.calibrator.check()
        except ValueError as exc:
            raise BundleError(f"bundle {bundle.directory}: calibration.json: {exc}") from exc
        missing = [p for p in PRODUCTS if p not in self.policy.by_product]
        if missing:
            raise BundleError(
                f"bundle {bundle.directory}: thresholds.json has no thresholds for {', '.join(missing)}"
            )
        if self.booster.feature_name() != self.spec.names:
            raise BundleError(f"bundle {bundle.directory}: model.txt features differ from feature_spec.json")
        self.pipeline = FeaturePipeline(self.spec)
        self.threads = threads

    @classmethod
    def load(cls, directory: Path, *, threads: int = 1, expected_version: str | None = None) -> ScoringModel:
        return cls(read_bundle(directory, expected_version=expected_version), threads=threads)

    @property
    def uses_history(self) -> bool:
        return self.spec.history

    def raw_scores(self, canonical: pl.DataFrame, history: pl.DataFrame | None = None) -> NDArray[np.float64]:
        matrix = self.pipeline.matrix(self.pipeline.features(canonical, history))
        raw = self.booster.predict(matrix, raw_score=True, num_threads=self.threads)
        return np.asarray(raw, dtype=np.float64)

    def score_frame(self, canonical: pl.DataFrame, history: pl.DataFrame | None = None) -> BatchScores:
        raw = self.raw_scores(canonical, history)
        prob = self.calibrator(raw)
        products = canonical.get_column("product").to_list()
        decisions = [self.policy.decide(float(p), str(k)) for p, k in zip(prob, products, strict=True)]
        return BatchScores(raw=raw, probability=prob, score=to_score(prob), decisions=decisions)
