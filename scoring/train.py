"""Training and evaluation: a time-split LightGBM with early stopping, calibration and per-product
thresholds on held-out slices, metrics per product and per fraud typology, written as a bundle.

Slices, in time order (row order when the data has no timestamp, and the report says so):
train 60% | validation 10% (early stopping) | calibration 10% (calibration, thresholds) | test 20%.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from numpy.typing import NDArray

from features.history import entity_keys, offline_history, with_outcomes
from features.pipeline import FeaturePipeline, attribute_defs
from features.schema import ATTRIBUTE_PREFIX, PRODUCTS
from scoring.bundle import sha256_file, write_bundle
from scoring.calibration import Calibrator, Method
from scoring.dataset import Dataset
from scoring.metrics import evaluate, roc_auc
from scoring.model import ScoringModel
from scoring.policy import Policy

Progress = Callable[[str], None]
OUTCOME_DELAY_DAYS = 30.0
SPLITS = (("train", 0.6), ("validation", 0.1), ("calibration", 0.1), ("test", 0.2))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    seed: int = 7
    calibration: Method = "isotonic"
    review_rate: float = 0.04
    """Share of each product's applications sent to REVIEW (on the calibration slice)."""
    decline_rate: float = 0.01
    """Share of each product's applications declined (on the calibration slice)."""
    num_leaves: int = 31
    max_depth: int = 8
    learning_rate: float = 0.05
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    threads: int = 2
    synthetic: bool = False
    history: bool = True
    """Use history features (velocity, identity links) computed as of each application."""
    outcome_delay_days: float = 30.0
    """Days after submission at which a training label counts as known (for the earlier-confirmed-
    fraud features): an application sees only the outcomes of earlier ones known before it."""


def _slices(n: int) -> dict[str, slice]:
    out, start = {}, 0
    for i, (name, share) in enumerate(SPLITS):
        end = n if i == len(SPLITS) - 1 else start + round(n * share)
        out[name] = slice(start, end)
        start = end
    return out


def metrics_report(
    label: NDArray[np.int8],
    prob: NDArray[np.float64],
    product: NDArray[np.str_],
    typology: NDArray[np.str_] | None,
) -> dict[str, Any]:
    """Metrics overall and per product; per typology, the recall at the overall 5%-FPR threshold."""
    report: dict[str, Any] = {"overall": evaluate(label, prob).to_json(), "products": {}}
    for name in PRODUCTS:
        mask = product == name
        if mask.any():
            report["products"][name] = evaluate(label[mask], prob[mask]).to_json()
    if typology is not None:
        legit = prob[label == 0]
        cut = float(np.quantile(legit, 0.95)) if legit.size else 1.0
        report["typology_threshold_5pct_fpr"] = cut
        report["typologies"] = {
            str(t): {
                "rows": int((typology == t).sum()),
                "recall_at_5pct_fpr": float((prob[typology == t] > cut).mean()),
            }
            for t in sorted(set(typology.tolist()))
        }
    return report


def train(
    data: Dataset,
    out: Path,
    config: TrainConfig,
    *,
    source: Path | None = None,
    progress: Progress = lambda _: None,
) -> tuple[str, dict[str, Any]]:
    """Trains and writes a bundle; returns (version, metrics report)."""
    started = time.perf_counter()
    n = data.canonical.height
    positives = int(data.label.sum())
    if n < 1000 or positives < 20:
        raise ValueError(
            f"need at least 1,000 rows and 20 fraud labels to train (got {n:,} rows, {positives} fraud)"
        )
    for warning in data.warnings:
        progress(f"warning: {warning} (left missing)")
    cut = _slices(n)
    pipeline = FeaturePipeline()
    progress(f"building features for {n:,} applications")
    history = None
    use_history = config.history and data.canonical.get_column("submitted_at").null_count() == 0
    if config.history and not use_history:
        progress("warning: history features need a timestamp on every application; training without them")
    if use_history:
        progress("computing history features as of each application (velocity, identity links)")
        history = dataset_history(data, config.outcome_delay_days)
    feats = pipeline.features(data.canonical, history)
    leaks = suspicious_attributes(feats[cut["train"]], y_train=data.label[cut["train"]])
    for warning in leaks:
        progress(f"warning: {warning}")
    spec = pipeline.fit_spec(feats[cut["train"]], attribute_defs(data.canonical), history=use_history)
    x = pipeline.matrix(feats)
    y = data.label.astype(np.float64)
    params = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 20,
        "metric": ["auc", "average_precision"],
        "first_metric_only": True,
        "num_threads": config.threads,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }

    def dataset(rows: slice, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            x[rows],
            y[rows],
            reference=reference,
            feature_name=spec.names,
            categorical_feature=spec.categorical_indices,
            free_raw_data=True,
        )

    train_set = dataset(cut["train"])
    valid_set = dataset(cut["validation"], reference=train_set)
    valid_rows = cut["validation"].stop - cut["validation"].start
    progress(f"training LightGBM on {cut['train'].stop:,} rows (early stopping on the next {valid_rows:,})")

    def log_every(env: lgb.callback.CallbackEnv) -> None:
        if env.iteration % 100 == 0 and env.evaluation_result_list:
            first = env.evaluation_result_list[0]
            metric, value = first[1], first[2]
            progress(f"  round {env.iteration}: validation {metric} {value:.4f}")

    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False), log_every],
    )
    progress(
        f"best round {booster.best_iteration}; calibrating ({config.calibration}) and setting thresholds"
    )
    model_txt = booster.model_to_string(num_iteration=booster.best_iteration).encode()
    raw = np.asarray(
        booster.predict(x, raw_score=True, num_iteration=booster.best_iteration, num_threads=config.threads)
    )
    calib = cut["calibration"]
    calibrator = Calibrator.fit(raw[calib], y[calib], config.calibration)
    prob = calibrator(raw)
    product = data.canonical.get_column("product").to_numpy()
    policy = Policy.from_rates(
        prob[calib],
        product[calib],
        PRODUCTS,
        review_rate=config.review_rate,
        decline_rate=config.decline_rate,
    )
    test = cut["test"]
    typology = data.typology[test] if data.typology is not None else None
    report = metrics_report(data.label[test], prob[test], product[test], typology)
    times = data.canonical.get_column("submitted_at")
    report["split"] = {
        "by": "time" if data.time_ordered else "row order (the data has no timestamp)",
        **{
            name: {
                "rows": s.stop - s.start,
                "from": str(times[s.start]) if data.time_ordered else None,
                "to": str(times[s.stop - 1]) if data.time_ordered else None,
            }
            for name, s in cut.items()
        },
    }
    report["data_warnings"] = list(data.warnings) + leaks
    report["lender_attributes"] = [a.key for a in spec.attributes]
    report["best_iteration"] = booster.best_iteration
    report["train_seconds"] = round(time.perf_counter() - started, 1)
    info = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "training_data_fingerprint": fingerprint(data, source),
        "synthetic_training_data": config.synthetic,
        "lightgbm_version": lgb.__version__,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
    files = {
        "model.txt": model_txt,
        "calibration.json": _json(calibrator.to_json()),
        "feature_spec.json": _json(spec.to_json()),
        "thresholds.json": _json(policy.to_json()),
        "metrics.json": _json(report),
        "bundle.json": _json(info),
    }
    version = write_bundle(out, files)
    progress(f"wrote bundle {version} to {out} in {report['train_seconds']} s")
    return version, report


def suspicious_attributes(
    features: pl.DataFrame, y_train: NDArray[np.int8], limit: float = 0.95
) -> list[str]:
    """Lender attributes that alone separate fraud almost perfectly on the training slice: most
    often the label under another name (a case status, a write-off reason) that a mapping forgot
    to ignore. Reported, not dropped: the lender decides."""
    out = []
    for name in features.columns:
        if not name.startswith(ATTRIBUTE_PREFIX) or y_train.sum() == 0:
            continue
        col = features.get_column(name)
        if col.dtype == pl.String:
            rates = pl.DataFrame({"v": col, "y": y_train}).group_by("v").agg(pl.col("y").mean().alias("r"))
            col = col.replace_strict(rates.get_column("v"), rates.get_column("r"), default=None)
        values = col.cast(pl.Float64).fill_null(float("-inf")).to_numpy()
        auc = roc_auc(y_train, values)
        if max(auc, 1 - auc) > limit:
            out.append(
                f"lender attribute {name.removeprefix(ATTRIBUTE_PREFIX)!r} alone has ROC-AUC "
                f"{max(auc, 1 - auc):.3f} on the training slice: is it the label under another name?"
            )
    return out


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


def fingerprint(data: Dataset, source: Path | None) -> str:
    """sha256 over the source file's bytes (when there is one), row count, columns and labels."""
    h = hashlib.sha256()
    if source is not None and source.is_file():
        h.update(sha256_file(source).encode())
    h.update(str(data.canonical.height).encode())
    h.update(",".join(data.canonical.columns).encode())
    h.update(data.label.tobytes())
    return "sha256:" + h.hexdigest()


def dataset_history(data: Dataset, outcome_delay_days: float) -> pl.DataFrame:
    """History features of every application of a labelled file, as of each one (the file's
    earlier applications, and their labels once known). Hashed under a throw-away key: counts do
    not depend on it, and nothing hashed here is kept."""
    if data.canonical.get_column("submitted_at").null_count():
        raise ValueError("history features need submitted_at on every application")
    keys = entity_keys(data.canonical, os.urandom(32))
    return offline_history(with_outcomes(keys, data.label, outcome_delay_days))


def evaluate_bundle(model: ScoringModel, data: Dataset, batch_rows: int = 100_000) -> dict[str, Any]:
    """Scores a labelled dataset with a bundle and reports the same metrics as training."""
    # History is computed over the whole file first: each application sees the file's earlier ones.
    history = None
    if model.uses_history:
        delay = float(model.info.get("config", {}).get("outcome_delay_days", OUTCOME_DELAY_DAYS))
        history = dataset_history(data, delay)
    probs = []
    for start in range(0, data.canonical.height, batch_rows):
        chunk = data.canonical.slice(start, batch_rows)
        part = None if history is None else history.slice(start, batch_rows)
        probs.append(model.calibrator(model.raw_scores(chunk, part)))
    prob = np.concatenate(probs) if probs else np.zeros(0)
    product = data.canonical.get_column("product").to_numpy()
    return metrics_report(data.label, prob, product, data.typology)


def format_report(report: dict[str, Any]) -> str:
    """The metrics as a markdown table, one row per product and overall."""
    cols = (
        "rows",
        "positives",
        "roc_auc",
        "pr_auc",
        "recall_at_1pct_fpr",
        "recall_at_5pct_fpr",
        "ks",
        "calibration_error",
    )
    lines = ["| slice | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def row(name: str, m: dict[str, Any]) -> str:
        cells = [f"{m[c]:,}" if isinstance(m[c], int) else f"{m[c]:.3f}" for c in cols]
        return f"| {name} | " + " | ".join(cells) + " |"

    for name, m in report["products"].items():
        lines.append(row(name, m))
    lines.append(row("overall", report["overall"]))
    if "typologies" in report:
        lines += ["", "| true typology | rows | recall at overall 5% FPR |", "|---|---|---|"]
        for name, t in report["typologies"].items():
            lines.append(f"| {name} | {t['rows']:,} | {t['recall_at_5pct_fpr']:.3f} |")
    return "\n".join(lines)
