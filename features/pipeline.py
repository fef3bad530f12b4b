"""The feature pipeline shared by training and serving: canonical rows in, a model matrix out.

`FeatureSpec` is learned once from the training frame (which features are categorical and their
vocabularies, which lender attributes exist and their kinds) and stored in the model bundle as JSON.
`FeaturePipeline` applies it to any frame of canonical applications, one row or a million, with the
same polars expressions, so training and serving compute the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from features import rowwise
from features.history import HISTORY_FEATURES
from features.schema import ATTRIBUTE_PREFIX, CANONICAL_SCHEMA, FieldError, ValidationError
from features.tabular import tabular_expressions

Kind = Literal["numeric", "categorical"]
TEXT_PREFIX = "nlp_"  # the names of text signals (features.text.signals.PREFIX)

# Categories seen fewer times than this in training are folded into "unknown" (null): a rare value
# learned from a handful of rows is noise, and an unseen value must not crash serving.
MIN_CATEGORY_COUNT = 20
MAX_CATEGORIES = 200


@dataclass(frozen=True, slots=True)
class FeatureDef:
    name: str
    kind: Kind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttributeDef:
    """A lender attribute: a column of the lender's training file, read from the request's map."""

    key: str
    kind: Kind

    @property
    def column(self) -> str:
        return ATTRIBUTE_PREFIX + self.key


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    features: tuple[FeatureDef, ...]
    attributes: tuple[AttributeDef, ...] = ()
    version: int = 1
    history: bool = False  # the model uses history features (features.history)
    text: bool = False  # the model uses text signals (features.text; named nlp_*)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind == "categorical"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            features=tuple(
                FeatureDef(f["name"], f["kind"], tuple(f.get("categories", ()))) for f in data["features"]
            ),
            attributes=tuple(AttributeDef(a["key"], a["kind"]) for a in data.get("attributes", ())),
            version=int(data.get("version", 1)),
            history=bool(data.get("history", False)),
            text=bool(data.get("text", False)),
        )

    def without_text(self) -> FeatureSpec:
        """The spec of the fallback model: the same features less the text signals."""
        kept = tuple(f for f in self.features if not f.name.startswith(TEXT_PREFIX))
        return FeatureSpec(kept, self.attributes, self.version, self.history, text=False)


def _kind_of(dtype: pl.DataType) -> Kind:
    textual = dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    return "categorical" if textual else "numeric"


def attribute_defs(frame: pl.DataFrame) -> tuple[AttributeDef, ...]:
    """The lender attributes present in a canonical training frame (`attr_*` columns)."""
    return tuple(
        AttributeDef(name.removeprefix(ATTRIBUTE_PREFIX), _kind_of(dtype))
        for name, dtype in frame.schema.items()
        if name.startswith(ATTRIBUTE_PREFIX)
    )


@dataclass(slots=True)
class FeaturePipeline:
    """Turns canonical applications into features and the model's input matrix."""

    spec: FeatureSpec | None = None
    _expressions: list[pl.Expr] = field(default_factory=tabular_expressions)
    # Built once per spec: the expressions (and their category mappings) are shared by every batch.
    _matrix_for: FeatureSpec | None = field(default=None, repr=False)
    _matrix_exprs: list[pl.Expr] = field(default_factory=list, repr=False)
    _codes_for: FeatureSpec | None = field(default=None, repr=False)
    _codes: list[tuple[str, dict[str, float] | None]] = field(default_factory=list, repr=False)
    # The canonical schema is built once per spec too (about 40 us, every micro-batch's frame).
    _schema_for: FeatureSpec | None = field(default=None, repr=False)
    _schema: pl.Schema | None = field(default=None, repr=False)
    _kinds: list[tuple[str, rowwise.Kind]] = field(default_factory=list, repr=False)

    # -- frames ----------------------------------------------------------------------------
    def canonical_schema(self) -> pl.Schema:
        """The canonical columns and this spec's attribute columns (not to be changed: shared)."""
        if self._schema is None or self._schema_for is not self.spec:
            schema = dict(CANONICAL_SCHEMA)
            for a in self.spec.attributes if self.spec else ():
                schema[a.column] = pl.Float64() if a.kind == "numeric" else pl.String()
            self._schema, self._schema_for = pl.Schema(schema), self.spec
            self._kinds = rowwise.kinds(self._schema)
        return self._schema

    def frame_from_rows(self, rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
        """A canonical frame from validated rows (as `validate_row` returns them)."""
        schema = self.canonical_schema()
        cols = list(schema)
        records = [[row.get(c) for c in cols] for row in rows]
        return pl.DataFrame(records, schema=schema, orient="row")

    def batch(self, rows: Sequence[Mapping[str, Any]]) -> rowwise.Batch:
        """A serving micro-batch of validated rows: a small one as the rows its frame would give
        (`rowwise.canonical_rows`), the frame itself built only if asked for."""
        self.canonical_schema()  # the column kinds, for this spec
        small = len(rows) <= rowwise.ROW_PATH_MAX
        canonical = rowwise.canonical_rows(rows, self._kinds) if small else None
        return rowwise.Batch(len(rows), canonical, lambda: self.frame_from_rows(rows))

    def features(
        self,
        canonical: pl.DataFrame,
        history: pl.DataFrame | None = None,
        text: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Named features of every application in the frame, in the frame's row order.

        `history` holds the history features of the same applications (`features.history`: offline
        for training, from the store in serving); a spec that uses history requires it. `text` holds
        their text signals (`features.text.signals`); a spec that uses them requires it."""
        if self.spec is not None and self.spec.history and history is None:
            raise ValueError("this model uses history features: pass the history frame")
        if self.spec is not None and self.spec.text and text is None:
            raise ValueError("this model uses text signals: pass the text frame")
        for name, part in (("history", history), ("text", text)):
            if part is not None and part.height != canonical.height:
                raise ValueError(f"{name} has {part.height} rows for {canonical.height} applications")
        exprs = list(self._expressions)
        attrs = self.spec.attributes if self.spec else attribute_defs(canonical)
        for a in attrs:
            dtype = pl.Float64 if a.kind == "numeric" else pl.String
            col = pl.col(a.column) if a.column in canonical.columns else pl.lit(None)
            exprs.append(col.cast(dtype).alias(a.column))
        parts = [canonical.select(exprs)]
        if history is not None and (self.spec is None or self.spec.history):
            parts.append(history)
        if text is not None and (self.spec is None or self.spec.text):
            parts.append(text)
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="horizontal")

    def feature_rows(
        self,
        canonical: Sequence[Mapping[str, Any]],
        history: Sequence[Mapping[str, float | None]] | None = None,
        text: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]] | None:
        """`features(...).to_dicts()` for a few applications without polars (`features.rowwise`):
        the same names, order, values and types. `canonical` are rows of a canonical frame (its
        `to_dicts()`), `history` the store's rows (`features.history.online_history`), `text` the
        text frame's rows. None when a row is one the row-wise path does not take: use `features`."""
        spec = self.spec
        if spec is None:
            raise RuntimeError("FeaturePipeline.feature_rows needs a spec (fit_spec or a bundle)")
        if spec.history and history is None:
            raise ValueError("this model uses history features: pass the history rows")
        if spec.text and text is None:
            raise ValueError("this model uses text signals: pass the text rows")
        if not all(rowwise.accepts(row) for row in canonical):
            return None
        out = []
        for i, row in enumerate(canonical):
            features = rowwise.tabular_row(row)
            for a in spec.attributes:
                value = row.get(a.column)
                features[a.column] = None if value is None else float(value) if a.kind == "numeric" else value
            if history is not None and spec.history:
                past = history[i]
                features.update({n: None if (v := past[n]) is None else float(v) for n in HISTORY_FEATURES})
            if text is not None and spec.text:
                features.update(text[i])
            out.append(features)
        return out

    # -- the model matrix ------------------------------------------------------------------
    def fit_spec(
        self,
        features: pl.DataFrame,
        attributes: Iterable[AttributeDef] = (),
        *,
        history: bool = False,
        text: bool = False,
    ) -> FeatureSpec:
        """Learns the spec from training features: kinds, and vocabularies of categoricals."""
        defs = []
        for name, dtype in features.schema.items():
            kind = _kind_of(dtype)
            cats: tuple[str, ...] = ()
            if kind == "categorical":
                counts = (
                    features.get_column(name)
                    .drop_nulls()
                    .value_counts(sort=True)
                    .filter(pl.col("count") >= MIN_CATEGORY_COUNT)
                    .head(MAX_CATEGORIES)
                )
                # Sorted so the code of a category does not depend on row order.
                cats = tuple(sorted(counts.get_column(name).to_list()))
            defs.append(FeatureDef(name, kind, cats))
        self.spec = FeatureSpec(
            features=tuple(defs), attributes=tuple(attributes), history=history, text=text
        )
        return self.spec

    def matrix(self, features: pl.DataFrame) -> np.ndarray:
        """float64 matrix in spec order; categoricals as their vocabulary index, unknown as NaN."""
        if self.spec is None:
            raise RuntimeError("FeaturePipeline.matrix needs a spec (fit_spec or a bundle)")
        if self._matrix_for is not self.spec:
            self._matrix_exprs = [_matrix_expr(f) for f in self.spec.features]
            self._matrix_for = self.spec
        return features.select(self._matrix_exprs).to_numpy(order="c").astype(np.float64, copy=False)

    def matrix_from_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`matrix` of feature rows (`feature_rows`): the same float64 matrix, built in Python."""
        if self.spec is None:
            raise RuntimeError("FeaturePipeline.matrix_from_rows needs a spec (fit_spec or a bundle)")
        if self._codes_for is not self.spec:
            self._codes = [
                (f.name, _codes(f) if f.kind == "categorical" else None) for f in self.spec.features
            ]
            self._codes_for = self.spec
        codes = self._codes
        out = np.empty((len(rows), len(codes)), dtype=np.float64)
        nan = math.nan
        for i, row in enumerate(rows):
            out[i] = [
                nan if (v := row[name]) is None else float(v) if code is None else code.get(v, nan)
                for name, code in codes
            ]
        return out

    # -- lender attributes from the wire ---------------------------------------------------
    def coerce_attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Checks a request's attributes against the spec: known keys, right kinds.

        Unknown keys are ignored (a lender may send more than the model uses); a known key with the
        wrong kind is an error, since scoring it as missing would hide a broken integration.
        """
        known = {a.key: a for a in self.spec.attributes} if self.spec else {}
        out: dict[str, Any] = {}
        errors: list[FieldError] = []
        for key, value in attributes.items():
            spec = known.get(key)
            if spec is None:
                continue
            path = f"attributes[{key!r}]"
            if spec.kind == "numeric":
                number = float(value) if isinstance(value, bool | int | float) else math.nan
                if not math.isfinite(number):
                    errors.append(FieldError(path, "must be a finite number for this model"))
                    continue
                out[key] = number
            else:
                if not isinstance(value, str):
                    errors.append(FieldError(path, "must be text for this model"))
                    continue
                out[key] = value
        if errors:
            raise ValidationError(errors)
        return out


def _codes(f: FeatureDef) -> dict[str, float]:
    """A categorical feature's values to their matrix codes (the vocabulary index)."""
    return {c: float(i) for i, c in enumerate(f.categories)}


def _matrix_expr(f: FeatureDef) -> pl.Expr:
    col = pl.col(f.name)
    if f.kind == "categorical":
        col = col.cast(pl.String).replace_strict(_codes(f), default=None, return_dtype=pl.Float64)
    return col.cast(pl.Float64).fill_null(float("nan")).alias(f.name)
