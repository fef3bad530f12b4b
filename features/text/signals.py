"""Text signals: what the applicant wrote, as named numeric features joined into the feature frame.

Every signal is a cosine similarity between normalised sentence embeddings (or counts of them):

- ``nlp_risk_<theme>``: the highest similarity of any of the application's texts to the phrases of a
  fraud theme (urgency, third-party scripts, vague business talk, cash-out), English and Chinese;
- ``nlp_purpose_fit`` / ``_margin``: the loan-purpose text against the declared purpose;
  ``nlp_business_industry_fit`` / ``_margin``: the business description against the declared
  industry code; ``nlp_employment_status_fit`` / ``_margin``: the employment text against the
  declared status. The fit is the similarity to the declared category's prototypes; the margin is
  the fit minus the best similarity to any unrelated category (negative: the text reads like
  something else than what was declared);
- ``nlp_<field>_near_dup_max_<w>d`` / ``nlp_<field>_near_copies_<w>d``: template reuse across other
  identities' recent applications (:mod:`features.text.near_dup`);
- ``nlp_<field>_pc<k>``: the first principal components of the field's embeddings, fitted on the
  training slice.

A missing or blank text gives null signals, never zero similarity.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from features.text.near_dup import NearDuplicateIndex, NearDupResult, offline_near_duplicates

PREFIX: Final = "nlp_"
TEXT_FIELDS: Final = {
    "purpose": "text_loan_purpose",
    "business": "text_business_description",
    "employment": "text_employment_description",
}
NEAR_DUP_FIELDS: Final = ("purpose", "business")
PCA_COMPONENTS: Final = {"purpose": 4, "business": 4, "employment": 2}
DEFAULT_PHRASES: Final = Path(__file__).with_name("phrases.toml")
DAY_US: Final = 86_400_000_000
PCA_SAMPLE = 20_000
EMBED_CHUNK = 20_000

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True, slots=True)
class TextSpec:
    """What the text signals of one model are computed from; stored in the bundle (text.json)."""

    encoder: str  # the encoder identity the model was trained with
    themes: Mapping[str, tuple[str, ...]]
    industries: Mapping[str, tuple[str, ...]]
    employment: Mapping[str, tuple[str, ...]]
    purposes: Mapping[str, tuple[str, ...]]
    window_days: float = 7.0
    near_copy_threshold: float = 0.95
    index_cap: int = 50_000
    pca: Mapping[str, tuple[list[float], list[list[float]]]] = field(default_factory=dict)
    # sha256 of the encoder's files at training (its graphs and tokenizer): a served encoder must
    # load these bytes, not only carry the same identity. Empty in bundles made before it was kept.
    encoder_files: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_phrases(cls, path: Path, encoder: str, **options: Any) -> TextSpec:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"text phrases {path}: {exc}") from None

        def table(name: str) -> dict[str, tuple[str, ...]]:
            out = {str(k): tuple(str(p) for p in v if str(p).strip()) for k, v in data.get(name, {}).items()}
            return {k: v for k, v in out.items() if v}

        themes = {k: tuple(v.get("phrases", ())) for k, v in data.get("themes", {}).items()}
        themes = {k: v for k, v in themes.items() if v}
        if not themes:
            raise ValueError(f"text phrases {path}: no [themes.NAME] with phrases")
        bad = [k for k in themes if not k.isidentifier() or not k.islower()]
        if bad:
            raise ValueError(f"text phrases {path}: theme names must be lower_snake_case (got {bad})")
        return cls(
            encoder=encoder,
            themes=themes,
            industries=table("industries"),
            employment=table("employment"),
            purposes=table("purposes"),
            **options,
        )

    @property
    def window_label(self) -> str:
        return f"{self.window_days:g}d"

    @property
    def names(self) -> list[str]:
        # Sorted: the order must survive the bundle's JSON, which sorts keys.
        names = [f"{PREFIX}risk_{t}" for t in sorted(self.themes)]
        names += [
            f"{PREFIX}purpose_fit",
            f"{PREFIX}purpose_fit_margin",
            f"{PREFIX}business_industry_fit",
            f"{PREFIX}business_industry_margin",
            f"{PREFIX}employment_status_fit",
            f"{PREFIX}employment_status_margin",
        ]
        for f in NEAR_DUP_FIELDS:
            names += [
                f"{PREFIX}{f}_near_dup_max_{self.window_label}",
                f"{PREFIX}{f}_near_copies_{self.window_label}",
            ]
        for f in sorted(self.pca):  # empty until fitted on a training slice
            names += [f"{PREFIX}{f}_pc{i + 1}" for i in range(len(self.pca[f][1]))]
        return names

    def to_json(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "themes": {k: list(v) for k, v in self.themes.items()},
            "industries": {k: list(v) for k, v in self.industries.items()},
            "employment": {k: list(v) for k, v in self.employment.items()},
            "purposes": {k: list(v) for k, v in self.purposes.items()},
            "window_days": self.window_days,
            "near_copy_threshold": self.near_copy_threshold,
            "index_cap": self.index_cap,
            "pca": {k: {"mean": m, "components": c} for k, (m, c) in self.pca.items()},
            "encoder_files": dict(self.encoder_files),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TextSpec:
        def table(name: str) -> dict[str, tuple[str, ...]]:
            return {str(k): tuple(v) for k, v in data[name].items()}

        return cls(
            encoder=str(data["encoder"]),
            themes=table("themes"),
            industries=table("industries"),
            employment=table("employment"),
            purposes=table("purposes"),
            window_days=float(data["window_days"]),
            near_copy_threshold=float(data["near_copy_threshold"]),
            index_cap=int(data["index_cap"]),
            pca={k: (list(v["mean"]), [list(r) for r in v["components"]]) for k, v in data["pca"].items()},
            encoder_files={str(k): str(v) for k, v in data.get("encoder_files", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class FieldVectors:
    present: npt.NDArray[np.bool_]  # the application wrote something in this field
    vectors: Vectors  # unit rows; zeros where absent


Embedded = dict[str, FieldVectors]


class _Prototypes:
    """The embeddings of one table of phrases, grouped by key."""

    def __init__(self, encoder: Encoder, table: Mapping[str, tuple[str, ...]]) -> None:
        self.keys = list(table)
        texts = [p for k in self.keys for p in table[k]]
        self.owner = np.array([i for i, k in enumerate(self.keys) for _ in table[k]], dtype=np.int64)
        self.vectors = encoder.encode(texts) if texts else np.zeros((0, 1), np.float32)
        self._masks: dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]] = {}

    def masks(
        self, key: str, related: Callable[[str, str], bool]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Which prototypes are the key's own, and which belong to unrelated keys (cached)."""
        if key not in self._masks:
            k = self.keys.index(key)
            unrelated = np.array([not related(key, other) for other in self.keys], dtype=bool)
            self._masks[key] = (self.owner == k, unrelated[self.owner])
        return self._masks[key]


class TextFeaturizer:
    """Computes the text signals of a spec with an encoder (the same one in training and serving)."""

    def __init__(self, spec: TextSpec, encoder: Encoder) -> None:
        self.spec = spec
        self.encoder = encoder
        self._themes = {t: encoder.encode(list(p)) for t, p in spec.themes.items()}
        self._industries = _Prototypes(encoder, spec.industries)
        self._employment = _Prototypes(encoder, spec.employment)
        self._purposes = _Prototypes(encoder, spec.purposes)

    @property
    def theme_vectors(self) -> Mapping[str, Vectors]:
        """Each risk theme's phrase embeddings (read-only use: `features.text.spans`)."""
        return self._themes

    @property
    def window_us(self) -> int:
        return round(self.spec.window_days * DAY_US)

    def new_index(self, path: Path | None) -> NearDuplicateIndex:
        dim = next(iter(self._themes.values())).shape[1]
        return NearDuplicateIndex(
            path,
            NEAR_DUP_FIELDS,
            dim=dim,
            window_us=self.window_us,
            cap=self.spec.index_cap,
            threshold=self.spec.near_copy_threshold,
        )

    # -- embeddings ------------------------------------------------------------------------
    def embed(self, canonical: pl.DataFrame, progress: Callable[[int, int], None] | None = None) -> Embedded:
        """Each text field's embeddings; `progress(done, total)` hears of every chunk of texts."""
        texts = {name: canonical.get_column(column).to_list() for name, column in TEXT_FIELDS.items()}
        present = {
            name: np.array([t is not None and bool(t.strip()) for t in values], dtype=bool)
            for name, values in texts.items()
        }
        # Each distinct text of a field is encoded once, in chunks (so progress can be told).
        distinct = {
            name: list(dict.fromkeys(v for v, p in zip(values, present[name], strict=True) if p))
            for name, values in texts.items()
        }
        total, done = sum(len(d) for d in distinct.values()), 0
        dim = next(iter(self._themes.values())).shape[1]
        out: Embedded = {}
        for name, values in texts.items():
            unique = distinct[name]
            table = np.zeros((len(unique), dim), dtype=np.float32)
            for start in range(0, len(unique), EMBED_CHUNK):
                table[start : start + EMBED_CHUNK] = self.encoder.encode(unique[start : start + EMBED_CHUNK])
                done += min(EMBED_CHUNK, len(unique) - start)
                if progress is not None:
                    progress(done, total)
            position = {text: i for i, text in enumerate(unique)}
            vectors = np.zeros((len(values), dim), dtype=np.float32)
            rows = np.flatnonzero(present[name])
            if rows.size:
                vectors[rows] = table[[position[values[i]] for i in rows]]
            out[name] = FieldVectors(present[name], vectors)
        return out

    def with_pca(self, embedded: Embedded, rows: slice, seed: int = 0) -> TextFeaturizer:
        """A featurizer whose spec carries principal components fitted on `rows` (the training slice)."""
        rng = np.random.default_rng(seed)
        pca: dict[str, tuple[list[float], list[list[float]]]] = {}
        for name, k in PCA_COMPONENTS.items():
            fv = embedded[name]
            idx = np.arange(len(fv.present))[rows]
            idx = idx[fv.present[idx]]
            dim = fv.vectors.shape[1]
            if idx.size < k + 1:
                pca[name] = ([0.0] * dim, [[0.0] * dim for _ in range(k)])
                continue
            if idx.size > PCA_SAMPLE:
                idx = np.sort(rng.choice(idx, PCA_SAMPLE, replace=False))
            x = fv.vectors[idx].astype(np.float64)
            mean = x.mean(axis=0)
            _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
            # Sign convention: the largest loading of each component is positive (stable across runs).
            signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
            pca[name] = (mean.tolist(), (vt[:k] * signs[:, None]).tolist())
        featurizer = TextFeaturizer.__new__(TextFeaturizer)
        featurizer.spec = replace(self.spec, pca=pca)
        featurizer.encoder = self.encoder
        featurizer._themes = self._themes
        featurizer._industries = self._industries
        featurizer._employment = self._employment
        featurizer._purposes = self._purposes
        return featurizer

    # -- signals ---------------------------------------------------------------------------
    def frame(
        self, canonical: pl.DataFrame, embedded: Embedded, near: Mapping[str, NearDupResult]
    ) -> pl.DataFrame:
        n = canonical.height
        cols: dict[str, npt.NDArray[np.float64]] = {}
        for theme, protos in self._themes.items():
            best = np.full(n, -np.inf)
            for fv in embedded.values():
                sims = (fv.vectors @ protos.T).max(axis=1)
                best = np.where(fv.present, np.maximum(best, sims), best)
            cols[f"{PREFIX}risk_{theme}"] = np.where(np.isfinite(best), best, np.nan)
        declared_purpose = canonical.get_column("loan_purpose").to_list()
        cols[f"{PREFIX}purpose_fit"], cols[f"{PREFIX}purpose_fit_margin"] = _fit(
            embedded["purpose"], self._purposes, declared_purpose, _same_key
        )
        industry = canonical.get_column("business_industry_code").to_list()
        cols[f"{PREFIX}business_industry_fit"], cols[f"{PREFIX}business_industry_margin"] = _fit(
            embedded["business"],
            self._industries,
            [_longest_prefix(c, self._industries.keys) for c in industry],
            _related_code,
        )
        status = canonical.get_column("employment_status").to_list()
        cols[f"{PREFIX}employment_status_fit"], cols[f"{PREFIX}employment_status_margin"] = _fit(
            embedded["employment"], self._employment, status, _same_key
        )
        w = self.spec.window_label
        for name in NEAR_DUP_FIELDS:
            cols[f"{PREFIX}{name}_near_dup_max_{w}"] = near[name].max_similarity
            cols[f"{PREFIX}{name}_near_copies_{w}"] = near[name].copies
        for name, (mean, components) in self.spec.pca.items():
            fv = embedded[name]
            proj = (fv.vectors - np.asarray(mean, np.float32)) @ np.asarray(components, np.float32).T
            for i in range(proj.shape[1]):
                cols[f"{PREFIX}{name}_pc{i + 1}"] = np.where(fv.present, proj[:, i], np.nan)
        # NaN (no text, no candidate) becomes null; Series by Series is 5x cheaper than fill_nan.
        names = self.spec.names
        return pl.DataFrame([pl.Series(k, cols[k], dtype=pl.Float64, nan_to_null=True) for k in names])

    def offline(
        self, canonical: pl.DataFrame, identity: Sequence[str | None], embedded: Embedded | None = None
    ) -> pl.DataFrame:
        """Signals of a whole history, near duplicates as of each application (rows in time order)."""
        embedded = embedded if embedded is not None else self.embed(canonical)
        ts = canonical.get_column("submitted_at").dt.epoch("us").to_numpy()
        near = {
            f: offline_near_duplicates(
                ts,
                identity,
                embedded[f].vectors,
                embedded[f].present,
                window_us=self.window_us,
                cap=self.spec.index_cap,
                threshold=self.spec.near_copy_threshold,
            )
            for f in NEAR_DUP_FIELDS
        }
        return self.frame(canonical, embedded, near)

    def online(
        self,
        canonical: pl.DataFrame,
        identity: Sequence[str | None],
        index: NearDuplicateIndex,
        *,
        record: bool = True,
    ) -> pl.DataFrame:
        """Signals of a serving batch against the index of earlier applications, which they join."""
        embedded = self.embed(canonical)
        ts = canonical.get_column("submitted_at").dt.epoch("us").to_list()
        near = {
            f: index.lookup_and_add(f, ts, identity, embedded[f].vectors, embedded[f].present, record=record)
            for f in NEAR_DUP_FIELDS
        }
        return self.frame(canonical, embedded, near)


def _same_key(a: str, b: str) -> bool:
    return a == b


def _related_code(a: str, b: str) -> bool:
    """Industry codes of one branch of NAICS (a sector and its industries) are not 'other'."""
    return a.startswith(b) or b.startswith(a)


def _longest_prefix(code: str | None, keys: Sequence[str]) -> str | None:
    if code is None:
        return None
    matches = [k for k in keys if code.startswith(k)]
    return max(matches, key=len) if matches else None


def _fit(
    fv: FieldVectors, protos: _Prototypes, declared: Sequence[str | None], related: Callable[[str, str], bool]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = len(declared)
    fit, margin = np.full(n, np.nan), np.full(n, np.nan)
    if not protos.keys:
        return fit, margin
    declared_array = np.array(declared, dtype=object)
    wanted = {d for d, p in zip(declared, fv.present, strict=True) if p and d is not None}
    for key in wanted.intersection(protos.keys):
        rows = np.flatnonzero(fv.present & (declared_array == key))
        own, others = protos.masks(key, related)
        sims = fv.vectors[rows] @ protos.vectors.T  # rows x prototypes
        fit[rows] = sims[:, own].max(axis=1)
        if others.any():
            margin[rows] = fit[rows] - sims[:, others].max(axis=1)
    return fit, margin
