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
from features.pipeline import FeaturePipeline, FeatureSpec, attribute_defs
from features.schema import ATTRIBUTE_PREFIX, PRODUCTS
from features.text.encoder import TextEncoder, read_manifest
from features.text.signals import DEFAULT_PHRASES, TextFeaturizer, TextSpec
from scoring.bundle import sha256_file, write_bundle
from scoring.calibration import Calibrator, Method
from scoring.dataset import Dataset
from scoring.metrics import evaluate, roc_auc
from scoring.model import ScoringModel, check_encoder
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
    text: bool = True
    """Use text signals from the sentence encoder (and train the fallback model without them)."""
    encoder_dir: Path | None = None
    """The encoder directory (`fraudscore encoder build`); required when `text` is on."""
    text_phrases: Path | None = None
    """Risk phrases and category prototypes (TOML); default: features/text/phrases.toml."""
    text_variant: str = "auto"
    """Encoder variant for training features: auto is int8 on the CPU (as serving on a CPU runs)."""


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
    text_frame, text_spec = None, None
    timed = data.canonical.get_column("submitted_at").null_count() == 0
    if config.text and not timed:
        progress("warning: text signals need a timestamp on every application; training without them")
    if config.text and timed:
        text_frame, text_spec = dataset_text(data, config, cut["train"], progress)
    feats = pipeline.features(data.canonical, history, text_frame)
    leaks = suspicious_attributes(feats[cut["train"]], y_train=data.label[cut["train"]])
    for warning in leaks:
        progress(f"warning: {warning}")
    spec = pipeline.fit_spec(
        feats[cut["train"]], attribute_defs(data.canonical), history=use_history, text=text_spec is not None
    )
    x = pipeline.matrix(feats)
    y = data.label.astype(np.float64)
    product = data.canonical.get_column("product").to_numpy()
    heads = {"": _fit_head(x, y, spec, product=product, cut=cut, config=config, progress=progress)}
    if text_spec is not None:
        progress("training the fallback model without text signals (degraded mode)")
        fallback = spec.without_text()
        keep = [spec.names.index(name) for name in fallback.names]
        heads["_fallback"] = _fit_head(
            x[:, keep], y, fallback, product=product, cut=cut, config=config, progress=progress
        )
    _, booster, _, _, prob = heads[""]
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
    if "_fallback" in heads:
        fallback_prob = heads["_fallback"][4]
        report["without_text"] = metrics_report(
            data.label[test], fallback_prob[test], product[test], typology
        )
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
        "feature_spec.json": _json(spec.to_json()),
        "metrics.json": _json(report),
        "bundle.json": _json(info),
    }
    for suffix, (head_txt, _, head_calibrator, head_policy, _) in heads.items():
        files[f"model{suffix}.txt"] = head_txt
        files[f"calibration{suffix}.json"] = _json(head_calibrator.to_json())
        files[f"thresholds{suffix}.json"] = _json(head_policy.to_json())
    if text_spec is not None:
        files["text.json"] = _json(text_spec.to_json())
    version = write_bundle(out, files)
    progress(f"wrote bundle {version} to {out} in {report['train_seconds']} s")
    return version, report


HeadFit = tuple[bytes, lgb.Booster, Calibrator, Policy, NDArray[np.float64]]


def _fit_head(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    spec: FeatureSpec,
    *,
    product: NDArray[Any],
    cut: dict[str, slice],
    config: TrainConfig,
    progress: Progress,
) -> HeadFit:
    """One LightGBM model with early stopping, its calibration and per-product thresholds;
    returns (model text, booster, calibrator, policy, calibrated probability of every row)."""
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
    policy = Policy.from_rates(
        prob[calib],
        product[calib],
        PRODUCTS,
        review_rate=config.review_rate,
        decline_rate=config.decline_rate,
    )
    return model_txt, booster, calibrator, policy, prob


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


def encoder_files(directory: Path) -> dict[str, str]:
    """The sha256 of every file of an encoder directory (checked against it): what a bundle pins."""
    return {str(k): str(v) for k, v in read_manifest(directory)["files"].items()}


def dataset_text(
    data: Dataset, config: TrainConfig, train_rows: slice, progress: Progress
) -> tuple[pl.DataFrame, TextSpec]:
    """Text signals of every application of a labelled file (near duplicates as of each one), with
    principal components fitted on the training slice."""
    if config.encoder_dir is None:
        raise ValueError(
            "text signals need an encoder directory (fraudscore encoder build), or train --no-text"
        )
    if data.canonical.get_column("submitted_at").null_count():
        raise ValueError(
            "text signals need submitted_at on every application (near duplicates are as of time)"
        )
    encoder = TextEncoder(config.encoder_dir, providers=("cpu",), variant=config.text_variant, cache_size=0)
    spec = TextSpec.from_phrases(
        config.text_phrases or DEFAULT_PHRASES,
        encoder.info.identity,
        encoder_files=encoder_files(config.encoder_dir),
    )
    featurizer = TextFeaturizer(spec, encoder)
    started = time.perf_counter()
    progress(
        f"encoding free text with {encoder.info.identity} ({encoder.info.variant}, {encoder.info.provider})"
    )
    embedded = featurizer.embed(
        data.canonical, lambda done, total: progress(f"  encoded {done:,} / {total:,} distinct texts")
    )
    progress(f"  {encoder.encoded:,} distinct texts encoded in {time.perf_counter() - started:.0f} s")
    featurizer = featurizer.with_pca(embedded, train_rows, seed=config.seed)
    identity = entity_keys(data.canonical, os.urandom(32)).get_column("identity").to_list()
    return featurizer.offline(data.canonical, identity, embedded), featurizer.spec


def evaluate_bundle(
    model: ScoringModel, data: Dataset, *, encoder_dir: Path | None = None, batch_rows: int = 100_000
) -> dict[str, Any]:
    """Scores a labelled dataset with a bundle and reports the same metrics as training."""
    # History is computed over the whole file first: each application sees the file's earlier ones.
    history = None
    if model.uses_history:
        delay = float(model.info.get("config", {}).get("outcome_delay_days", OUTCOME_DELAY_DAYS))
        history = dataset_history(data, delay)
    text = None
    if model.text_spec is not None:
        if encoder_dir is None:
            raise ValueError("this model uses text signals: give the encoder directory")
        encoder = TextEncoder(encoder_dir, providers=("cpu",), cache_size=0)
        check_encoder(model, encoder.info)
        identity = entity_keys(data.canonical, os.urandom(32)).get_column("identity").to_list()
        text = TextFeaturizer(model.text_spec, encoder).offline(data.canonical, identity)
    probs = []
    for start in range(0, data.canonical.height, batch_rows):
        chunk = data.canonical.slice(start, batch_rows)
        part = None if history is None else history.slice(start, batch_rows)
        text_part = None if text is None else text.slice(start, batch_rows)
        probs.append(model.score_frame(chunk, part, text_part).probability)
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
    if "without_text" in report:
        lines += ["", format_ablation(report)]
    return "\n".join(lines)


def format_ablation(report: dict[str, Any]) -> str:
    """The model with text signals against the fallback model without them, on the same test rows."""
    other = report["without_text"]
    lines = [
        "| slice (test set) | ROC-AUC with text | without | recall at 5% FPR with text | without |",
        "|---|---|---|---|---|",
    ]
    for name in [*report["products"], "overall"]:
        a = report["overall"] if name == "overall" else report["products"][name]
        b = other["overall"] if name == "overall" else other["products"][name]
        lines.append(
            f"| {name} | {a['roc_auc']:.3f} | {b['roc_auc']:.3f} | "
            f"{a['recall_at_5pct_fpr']:.3f} | {b['recall_at_5pct_fpr']:.3f} |"
        )
    if "typologies" in report:
        lines += ["", "| true typology | recall at 5% FPR with text | without |", "|---|---|---|"]
        for name, t in report["typologies"].items():
            b = other["typologies"].get(name, {}).get("recall_at_5pct_fpr", float("nan"))
            lines.append(f"| {name} | {t['recall_at_5pct_fpr']:.3f} | {b:.3f} |")
    return "\n".join(lines)
