"""The parts of a free text behind its risk-theme signals, for the officers' page.

A theme signal (`nlp_risk_<theme>`) is the similarity of the whole text's embedding to the theme's
phrases; the page shows which clauses carry it: the text is cut into clauses (at sentence and
clause punctuation, English and Chinese), each clause is embedded by the same encoder, and a clause
whose similarity to a theme reaches `min_similarity` is a span of that theme (its best theme only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from features.text.signals import Encoder

_CLAUSE: Final = re.compile(r"[^.!?;:,\n。！？；：，、]+[.!?;:,。！？；：，、]*")
MIN_SIMILARITY: Final = 0.45


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    theme: str
    similarity: float


def clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause, surrounding whitespace excluded, empty clauses skipped."""
    out = []
    for m in _CLAUSE.finditer(text):
        start, end = m.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if any(c.isalnum() for c in text[start:end]):
            out.append((start, end))
    return out


def theme_spans(
    text: str,
    encoder: Encoder,
    themes: Mapping[str, npt.NDArray[np.float32]],
    *,
    min_similarity: float = MIN_SIMILARITY,
) -> list[Span]:
    """The clauses of `text` that read like a theme's phrases, in text order."""
    parts = clauses(text)
    if not parts or not themes:
        return []
    vectors = encoder.encode([text[s:e] for s, e in parts])
    names = sorted(themes)
    best = np.stack([(vectors @ themes[name].T).max(axis=1) for name in names], axis=1)
    out = []
    for (start, end), sims in zip(parts, best, strict=True):
        k = int(np.argmax(sims))
        if sims[k] >= min_similarity:
            out.append(Span(start, end, names[k], float(sims[k])))
    return out
