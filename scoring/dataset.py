"""Labelled application files (parquet or CSV) read into the canonical frame, through a mapping
file for a lender's own column names.

A mapping is TOML:

    [fields]                      # canonical column or wire path = the lender's column
    "loan.amount" = "amt_requested"
    submitted_at = "created"
    [label]
    column = "fraud_flag"         # required in the lender's file
    fraud_values = ["1", "Y"]     # values meaning fraud (compared as text); default 1/true/yes
    typology = "fraud_kind"       # optional: reported per value, never used as a feature
    [ignore]
    columns = ["internal_ref"]    # kept out of the model

Every other column becomes a lender attribute `attr_<column>` (numeric or categorical by dtype) and
the server reads it from the request's `attributes` map under the same name. Without a mapping the
file must use the canonical column names with the label in `is_fraud` (as `fraudscore synth` writes).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from features.schema import (
    ATTRIBUTE_KEY,
    ATTRIBUTE_PREFIX,
    CANONICAL_SCHEMA,
    FIELD_BY_COLUMN,
    FIELD_BY_PATH,
    PRODUCTS,
)

DEFAULT_FRAUD_VALUES = ("1", "1.0", "true", "True", "TRUE", "yes", "Yes", "Y", "y", "fraud")


class DatasetError(ValueError):
    """A training or evaluation file that cannot be read as labelled applications."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    fields: dict[str, str] = field(default_factory=dict)  # canonical column -> source column
    label: str = "is_fraud"
    fraud_values: tuple[str, ...] = DEFAULT_FRAUD_VALUES
    typology: str | None = "fraud_type"
    ignore: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> ColumnMapping:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DatasetError(f"mapping {path}: {exc}") from exc
        fields: dict[str, str] = {}
        for key, source in data.get("fields", {}).items():
            target = FIELD_BY_PATH.get(key) or FIELD_BY_COLUMN.get(key)
            if target is None:
                raise DatasetError(f"mapping {path}: [fields] names unknown canonical field {key!r}")
            fields[target.column] = str(source)
        label = data.get("label", {})
        if "column" not in label:
            raise DatasetError(f'mapping {path}: [label] needs column = "..."')
        return cls(
            fields=fields,
            label=str(label["column"]),
            fraud_values=tuple(str(v) for v in label.get("fraud_values", DEFAULT_FRAUD_VALUES)),
            typology=label.get("typology"),
            ignore=tuple(data.get("ignore", {}).get("columns", ())),
        )


@dataclass(frozen=True, slots=True)
class Dataset:
    canonical: pl.DataFrame  # canonical columns + attr_* columns, sorted by time when known
    label: NDArray[np.int8]
    typology: NDArray[np.str_] | None
    time_ordered: bool  # False: no timestamp, the file's row order stands in for time
    warnings: tuple[str, ...] = ()  # values that could not be read as their canonical type


def read_table(path: Path) -> pl.DataFrame:
    """A parquet file as typed, or a CSV file with every column as text.

    CSV is read untyped on purpose: type inference would turn postal codes, account and registration
    numbers into integers and drop their leading zeros. Canonical columns are cast to their schema
    types afterwards, and lender columns whose values all read as numbers become numeric."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".txt"):
            text = pl.read_csv(path, infer_schema=False)
            return text.with_columns(pl.col(pl.String).replace("", None))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    raise DatasetError(f"{path}: expected a .parquet or .csv file")


# Prefixes of the proto enum names, so that a file may say CONSUMER, consumer or PRODUCT_CONSUMER.
ENUM_PREFIXES = {
    "product": "PRODUCT_",
    "employment_status": "EMPLOYMENT_STATUS_",
    "housing": "HOUSING_",
    "loan_purpose": "LOAN_PURPOSE_",
    "channel": "CHANNEL_",
}


def _enum(col: pl.Expr, column: str) -> pl.Expr:
    """A lender's spelling of an enum value in canonical form; values outside the choices become
    null (and are counted as unreadable)."""
    choices = list(FIELD_BY_COLUMN[column].choices or ())
    text = col.cast(pl.String).str.strip_chars().str.to_uppercase().str.replace_all(r"[\s-]+", "_")
    text = text.str.strip_prefix(ENUM_PREFIXES[column])
    return pl.when(text.is_in(choices)).then(text).otherwise(None)


def _coerce(col: pl.Expr, dtype: pl.DataType, source: pl.DataType) -> pl.Expr:
    if source == dtype:
        return col
    if isinstance(dtype, pl.Datetime):
        if source == pl.String:
            return col.str.to_datetime(time_zone="UTC", strict=False).cast(dtype)
        if isinstance(source, pl.Datetime):
            tz = source.time_zone
            return (col.dt.replace_time_zone("UTC") if tz is None else col.dt.convert_time_zone("UTC")).cast(
                dtype
            )
        return col.cast(dtype, strict=False)
    if dtype == pl.Date and source == pl.String:
        return col.str.to_date(strict=False)
    if dtype == pl.String:
        return col.cast(pl.String)
    if dtype.is_integer() and source == pl.String:
        return col.str.strip_chars().cast(pl.Float64, strict=False).cast(dtype, strict=False)
    if source == pl.String:
        col = col.str.strip_chars()
    return col.cast(dtype, strict=False)


def _attribute(column: pl.Series) -> pl.Series:
    """A lender column as a numeric (Float64) or categorical (String) feature."""
    if column.dtype.is_numeric() or column.dtype == pl.Boolean:
        return column.cast(pl.Float64)
    text = column.cast(pl.String)
    as_number = text.str.strip_chars().cast(pl.Float64, strict=False)
    if text.null_count() < text.len() and as_number.null_count() == text.null_count():
        return as_number
    return text


def canonicalise(table: pl.DataFrame, mapping: ColumnMapping) -> Dataset:
    """The canonical frame, label and typology of a lender's table."""
    if mapping.label not in table.columns:
        raise DatasetError(f"label column {mapping.label!r} is not in the file")
    source_of = {c: mapping.fields.get(c, c) for c in CANONICAL_SCHEMA}
    for canon, source in mapping.fields.items():
        if source not in table.columns:
            raise DatasetError(
                f"mapping names column {source!r} for {canon}, but the file has no such column"
            )
    exprs = []
    for canon, dtype in CANONICAL_SCHEMA.items():
        source = source_of[canon]
        if source in table.columns and canon in ENUM_PREFIXES:
            exprs.append(_enum(pl.col(source), canon).alias(canon))
        elif source in table.columns:
            exprs.append(_coerce(pl.col(source), dtype, table.schema[source]).alias(canon))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(canon))
    used = {s for c, s in source_of.items() if s in table.columns}
    used |= {mapping.label, *mapping.ignore}
    if mapping.typology:
        used.add(mapping.typology)
    for name in table.columns:
        if name in used:
            continue
        if not ATTRIBUTE_KEY.fullmatch(name):
            raise DatasetError(
                f"column {name!r} cannot be a lender attribute: rename it to [A-Za-z0-9_] or ignore it"
            )
        exprs.append(pl.lit(_attribute(table.get_column(name))).alias(ATTRIBUTE_PREFIX + name))
    label_text = table.get_column(mapping.label).cast(pl.String)
    label = label_text.is_in(list(mapping.fraud_values)).fill_null(False).cast(pl.Int8)
    frame = table.select(exprs).with_columns(_label=label)
    warnings = []
    for canon, dtype in CANONICAL_SCHEMA.items():
        source = source_of[canon]
        if source in table.columns:
            lost = frame.get_column(canon).null_count() - table.get_column(source).null_count()
            if lost > 0:
                expected = (
                    "one of " + ", ".join(FIELD_BY_COLUMN[canon].choices or ())
                    if canon in ENUM_PREFIXES
                    else dtype
                )
                warnings.append(f"{lost:,} values of column {source!r} could not be read as {expected}")
    no_product = frame.get_column("product").null_count()
    if no_product == frame.height:
        raise DatasetError(f"no row has a readable product ({', '.join(PRODUCTS)})")
    if no_product:
        frame = frame.filter(pl.col("product").is_not_null())
        warnings.append(f"{no_product:,} rows without a readable product were left out")
    if mapping.typology and mapping.typology in table.columns:
        frame = frame.with_columns(
            _typology=table.get_column(mapping.typology).cast(pl.String).fill_null("none")
        )
    time_ordered = frame.get_column("submitted_at").null_count() < frame.height
    if time_ordered:
        frame = frame.sort("submitted_at", maintain_order=True, nulls_last=True)
    typology = frame.get_column("_typology").to_numpy() if "_typology" in frame.columns else None
    return Dataset(
        canonical=frame.drop("_label", "_typology", strict=False),
        label=frame.get_column("_label").to_numpy(),
        typology=typology,
        time_ordered=time_ordered,
        warnings=tuple(warnings),
    )


def with_outcome_labels(data: Dataset, labels: Mapping[str, int]) -> tuple[Dataset, int]:
    """The dataset with the labels risk officers recorded (application id -> 1 fraud / 0 legitimate,
    from the audit store) in place of the file's, where there is one; returns how many rows took
    one. The file keeps the application data in clear; the audit store only the verdict."""
    ids = data.canonical.get_column("application_id").to_list()
    label = data.label.copy()
    taken = 0
    for row, app in enumerate(ids):
        verdict = labels.get(app)
        if verdict is not None:
            label[row] = 1 if verdict else 0
            taken += 1
    note = f"{taken:,} labels from recorded outcomes replaced the file's"
    return replace(data, label=label, warnings=(*data.warnings, note)), taken


def load_dataset(path: Path, mapping_path: Path | None = None) -> Dataset:
    mapping = ColumnMapping.load(mapping_path) if mapping_path else ColumnMapping()
    return canonicalise(read_table(path), mapping)
