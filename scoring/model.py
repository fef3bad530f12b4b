"""A loaded, verified model bundle that scores frames of canonical applications: features, LightGBM
log-odds, calibrated probability, score and decision. Loaded once at start-up.

A bundle whose model uses text signals also carries a fallback model trained without them (its own
calibration and thresholds): when the text encoder fails or the deadline leaves no time for it, the
fallback scores and the answer says it was degraded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import polars as pl
from numpy.typing import NDArray

from features.history import history_frame
from features.pipeline import TEXT_PREFIX, FeaturePipeline, FeatureSpec
from features.rowwise import Batch
from features.schema import PRODUCTS
from features.text.signals import TextSpec
from scoring.bundle import VerifiedBundle, read_bundle
from scoring.calibration import Calibrator
from scoring.errors import BundleError
from scoring.explain import Explainer, Explanation
from scoring.policy import Decision, Policy, Thresholds, to_score

if TYPE_CHECKING:
    from features.text.encoder import EncoderInfo


@dataclass(frozen=True, slots=True)
class Head:
    """One LightGBM model with its features, calibration and thresholds."""

    spec: FeatureSpec
    booster: lgb.Booster
    calibrator: Calibrator
    policy: Policy
    pipeline: FeaturePipeline
    explainer: Explainer


def _head(bundle: VerifiedBundle, suffix: str, spec: FeatureSpec) -> Head:
    model, calibration, thresholds = (f"{stem}{suffix}" for stem in ("model", "calibration", "thresholds"))
    try:
        head = Head(
            spec=spec,
            booster=lgb.Booster(model_str=bundle.files[f"{model}.txt"].decode()),
            calibrator=Calibrator.from_json(bundle.json(f"{calibration}.json")),
            policy=Policy.from_json(bundle.json(f"{thresholds}.json")),  # checks 0 <= review <= decline <= 1
            pipeline=FeaturePipeline(spec),
            explainer=Explainer(spec.names),
        )
    except (KeyError, ValueError, TypeError, lgb.basic.LightGBMError) as exc:
        raise BundleError(f"bundle {bundle.directory} is unreadable: {exc}") from exc
    try:
        head.calibrator.check()
    except ValueError as exc:
        raise BundleError(f"bundle {bundle.directory}: {calibration}.json: {exc}") from exc
    missing = [p for p in PRODUCTS if p not in head.policy.by_product]
    if missing:
        raise BundleError(
            f"bundle {bundle.directory}: {thresholds}.json has no thresholds for {', '.join(missing)}"
        )
    if head.booster.feature_name() != spec.names:
        raise BundleError(f"bundle {bundle.directory}: {model}.txt features differ from its feature spec")
    return head


@dataclass(frozen=True, slots=True)
class BatchScores:
    raw: NDArray[np.float64]
    probability: NDArray[np.float64]
    score: NDArray[np.int32]
    decisions: list[Decision]
    head: Head  # the model that scored (primary, or the fallback without text)
    features: pl.DataFrame | None  # named features as scored (polars path) ...
    matrix: NDArray[np.float64]  # the model's input
    rows: list[dict[str, Any]] | None = None  # ... or as rows (the row-wise path of small batches)

    def feature_rows(self) -> list[dict[str, Any]]:
        """Named features of each application, as the audit record keeps them."""
        if self.rows is not None:
            return self.rows
        assert self.features is not None
        return self.features.to_dicts()

    def explain(self, rows: Sequence[int], *, threads: int = 1) -> list[Explanation]:
        """TreeSHAP reasons for some rows (about 1.4 ms a row for a 250-tree model on one core)."""
        if not rows:
            return []
        index = list(rows)
        contrib = self.head.booster.predict(self.matrix[index], pred_contrib=True, num_threads=threads)
        names = self.head.spec.names
        if self.rows is not None:
            values = [{n: self.rows[i][n] for n in names} for i in index]
        else:
            assert self.features is not None
            values = self.features.select(names)[index].to_dicts()
        return self.head.explainer.explain(np.asarray(contrib, dtype=np.float64), values)


class ScoringModel:
    """Everything scoring needs from a bundle, read and checked once."""

    def __init__(self, bundle: VerifiedBundle, *, threads: int = 1) -> None:
        self.bundle = bundle
        self.version = bundle.version
        try:
            spec = FeatureSpec.from_json(bundle.json("feature_spec.json"))
            self.metrics: dict[str, Any] = bundle.json("metrics.json")
            self.info: dict[str, Any] = bundle.json("bundle.json")
            self.text_spec = TextSpec.from_json(bundle.json("text.json")) if spec.text else None
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"bundle {bundle.directory} is unreadable: {exc}") from exc
        self.primary = _head(bundle, "", spec)
        self.fallback = _head(bundle, "_fallback", spec.without_text()) if spec.text else None
        if self.text_spec is not None and self.text_spec.names != [
            n for n in spec.names if n.startswith(TEXT_PREFIX)
        ]:
            raise BundleError(
                f"bundle {bundle.directory}: text.json and feature_spec.json list different signals"
            )
        self.spec, self.calibrator, self.policy = spec, self.primary.calibrator, self.primary.policy
        self.booster, self.pipeline = self.primary.booster, self.primary.pipeline
        self.threads = threads

    @classmethod
    def load(cls, directory: Path, *, threads: int = 1, expected_version: str | None = None) -> ScoringModel:
        return cls(read_bundle(directory, expected_version=expected_version), threads=threads)

    @property
    def uses_history(self) -> bool:
        return self.spec.history

    def override_thresholds(self, overrides: Mapping[str, Mapping[str, float]]) -> None:
        """Replaces products' thresholds (settings) in both models; refuses unknown products."""
        unknown = sorted(set(overrides) - set(PRODUCTS))
        if unknown:
            raise BundleError(f"thresholds name unknown products {unknown}; products are {list(PRODUCTS)}")
        try:
            new = {p: Thresholds(float(t["review"]), float(t["decline"])) for p, t in overrides.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"thresholds: {exc} (each product needs review <= decline, in 0..1)") from None
        for name in ("primary", "fallback"):
            head = getattr(self, name)
            if head is not None:
                setattr(self, name, replace(head, policy=Policy({**head.policy.by_product, **new})))
        self.policy = self.primary.policy

    def explain_stored(self, features: Mapping[str, Any], *, degraded: bool) -> tuple[Explanation, float]:
        """The full explanation of a decision from the features it was scored with (the audit
        record), by the model that made it; with the probability they give, to check against."""
        head = self.fallback if degraded and self.fallback is not None else self.primary
        schema = {f.name: pl.String if f.kind == "categorical" else pl.Float64 for f in head.spec.features}
        frame = pl.DataFrame([{name: features.get(name) for name in schema}], schema=schema)
        matrix = head.pipeline.matrix(frame)
        contrib = np.asarray(head.booster.predict(matrix, pred_contrib=True, num_threads=self.threads))
        explanation = head.explainer.explain(contrib.astype(np.float64), frame.to_dicts())[0]
        return explanation, float(head.calibrator(np.array([explanation.raw_score]))[0])

    @property
    def uses_text(self) -> bool:
        return self.spec.text

    def head_for(self, text: pl.DataFrame | None) -> Head:
        """The primary model, or the fallback when a text model's signals are missing."""
        if self.fallback is not None and text is None:
            return self.fallback
        return self.primary

    def raw_scores(
        self, canonical: pl.DataFrame, history: pl.DataFrame | None = None, text: pl.DataFrame | None = None
    ) -> NDArray[np.float64]:
        return self.score_frame(canonical, history, text).raw

    def score_frame(
        self, canonical: pl.DataFrame, history: pl.DataFrame | None = None, text: pl.DataFrame | None = None
    ) -> BatchScores:
        """Scores with the primary model; with the fallback when this model uses text and `text` is None."""
        head = self.head_for(text)
        features = head.pipeline.features(canonical, history, text)
        matrix = head.pipeline.matrix(features)
        return self._scores(head, matrix, canonical.get_column("product").to_list(), features)

    def score_batch(
        self,
        canonical: pl.DataFrame | Batch,
        history: Sequence[Mapping[str, float | None]] | None = None,
        text: pl.DataFrame | None = None,
    ) -> BatchScores:
        """`score_frame` for a serving micro-batch, with `history` as the store's rows: a batch of
        up to ROW_PATH_MAX applications takes the row-wise path (the same features, values and
        types without polars' fixed cost per call), a larger one or one it refuses takes polars."""
        head = self.head_for(text)
        batch = canonical if isinstance(canonical, Batch) else Batch.of_frame(canonical)
        if batch.rows is not None:
            rows = head.pipeline.feature_rows(batch.rows, history, None if text is None else text.to_dicts())
            if rows is not None:
                matrix = head.pipeline.matrix_from_rows(rows)
                return self._scores(head, matrix, [r["product"] for r in batch.rows], None, rows)
        return self.score_frame(batch.frame, None if history is None else history_frame(history), text)

    def _scores(
        self,
        head: Head,
        matrix: NDArray[np.float64],
        products: list[Any],
        features: pl.DataFrame | None,
        rows: list[dict[str, Any]] | None = None,
    ) -> BatchScores:
        raw = np.asarray(
            head.booster.predict(matrix, raw_score=True, num_threads=self.threads), dtype=np.float64
        )
        prob = head.calibrator(raw)
        decisions = [head.policy.decide(float(p), str(k)) for p, k in zip(prob, products, strict=True)]
        return BatchScores(raw, prob, to_score(prob), decisions, head, features, matrix, rows)


def check_encoder(model: ScoringModel, info: EncoderInfo) -> None:
    """Refuses an encoder other than the one the model was trained with: its signals would be
    numbers the model never saw. The identity names the weights, tokenizer, length and pooling; the
    bundle also pins the bytes of each graph and of the tokenizer, so a graph rebuilt or altered
    under the same identity (its manifest rewritten to match) is refused too. An encoder may ship a
    subset of the graphs (a GPU host: fp16 only); the one it loads must be pinned."""
    spec = model.text_spec
    if spec is None:
        return
    if spec.encoder != info.identity:
        raise BundleError(
            f"bundle {model.bundle.directory} was trained with text encoder {spec.encoder}; "
            f"the encoder given is {info.identity}"
        )
    if not spec.encoder_files:
        return  # a bundle made before the files were pinned: the identity alone is checked
    for name, digest in info.loaded.items():
        if spec.encoder_files.get(name) != digest:
            raise BundleError(
                f"bundle {model.bundle.directory} pins text encoder file {name} "
                + (
                    "to another sha256 than the encoder's"
                    if name in spec.encoder_files
                    else "not at all (it was not part of the encoder it was trained with)"
                )
                + "; the encoder directory was rebuilt (another exporter or library version writes other "
                "bytes) or altered: serve the encoder directory the bundle was trained with, or train again"
            )
