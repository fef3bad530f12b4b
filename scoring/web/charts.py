"""Chart geometry for the review page: plain numbers that the templates draw as inline SVG (no script,
no outside library). Pure functions, tested directly."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

WIDTH: Final = 760
LABEL_W: Final = 300
ROW_H: Final = 24
PAD: Final = 8


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    css: str  # raises / lowers / total / approve / review / decline / neutral
    label: str
    value: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    axis: tuple[tuple[float, str], ...]  # (x, label) ticks
    zero_x: float | None = None


def _scale(lo: float, hi: float, left: float, right: float) -> tuple[float, float]:
    span = (hi - lo) or 1.0
    k = (right - left) / span
    return k, left - lo * k


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / max(count, 1) or 1.0
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def waterfall(
    base_value: float,
    steps: Sequence[tuple[str, float]],
    *,
    top: int = 10,
    probability: float | None = None,
) -> Chart:
    """From the base value (log-odds) through each reason's contribution to the raw score: the `top`
    largest by size, in order of size, and the rest summed as one step."""
    ordered = sorted(steps, key=lambda s: -abs(s[1]))
    shown = list(ordered[:top])
    rest = ordered[top:]
    if rest:
        shown.append((f"{len(rest)} other factors", sum(c for _, c in rest)))
    levels = [base_value]
    for _, c in shown:
        levels.append(levels[-1] + c)
    lo, hi = min(levels), max(levels)
    pad = (hi - lo) * 0.05 or 0.5
    k, b = _scale(lo - pad, hi + pad, LABEL_W, WIDTH - 150)
    bars = [
        Bar(
            LABEL_W,
            PAD,
            max((base_value - (lo - pad)) * k, 1.0),
            ROW_H - 6,
            "neutral",
            "Base rate (all applications)",
            f"{base_value:+.2f}",
        )
    ]
    for i, (label, c) in enumerate(shown):
        before, after = levels[i], levels[i + 1]
        x0, x1 = sorted((before * k + b, after * k + b))
        css = "raises" if c > 0 else "lowers"
        bars.append(
            Bar(
                x0,
                PAD + (i + 1) * ROW_H,
                max(x1 - x0, 1.0),
                ROW_H - 6,
                css,
                label,
                f"{c:+.2f}",
                title=f"{label}: {c:+.3f} log-odds",
            )
        )
    total = levels[-1]
    y = PAD + (len(shown) + 1) * ROW_H
    p = "" if probability is None else f" (p = {probability:.3f})"
    bars.append(
        Bar(
            LABEL_W,
            y,
            max(total * k + b - LABEL_W, 1.0),
            ROW_H - 6,
            "total",
            "Model score (log-odds)",
            f"{total:+.2f}{p}",
        )
    )
    axis = tuple((t * k + b, f"{t:g}") for t in _ticks(lo - pad, hi + pad))
    return Chart(WIDTH, int(y + ROW_H + 28), tuple(bars), axis)


def histogram(counts: Mapping[tuple[int, str], int], *, bucket: int = 50, top_score: int = 999) -> Chart:
    """Stacked bars of decisions by score bucket: `counts[(bucket_start, decision)]`."""
    starts = list(range(0, top_score + 1, bucket))
    totals = {s: sum(counts.get((s, d), 0) for d in ("APPROVE", "REVIEW", "DECLINE")) for s in starts}
    peak = max(totals.values(), default=0) or 1
    height, left, bottom = 220, 50, 190
    bar_w = (WIDTH - left - 10) / len(starts)
    bars = []
    for i, s in enumerate(starts):
        y = float(bottom)
        for decision in ("APPROVE", "REVIEW", "DECLINE"):
            n = counts.get((s, decision), 0)
            if not n:
                continue
            h = n / peak * (bottom - 10)
            y -= h
            bars.append(
                Bar(
                    left + i * bar_w + 1,
                    y,
                    bar_w - 2,
                    h,
                    decision.lower(),
                    f"{s}–{s + bucket - 1}",
                    str(n),
                    title=f"scores {s}–{s + bucket - 1}: {n} {decision.lower()}",
                )
            )
    axis = tuple((left + i * bar_w, str(s)) for i, s in enumerate(starts) if i % 4 == 0)
    return Chart(WIDTH, height, tuple(bars), axis)


def ranking(values: Sequence[tuple[str, float]], *, top: int = 20) -> Chart:
    """Horizontal bars of the largest values (feature importance), largest first."""
    shown = sorted(values, key=lambda v: -v[1])[:top]
    peak = max((v for _, v in shown), default=0.0) or 1.0
    bars = tuple(
        Bar(
            LABEL_W,
            PAD + i * ROW_H,
            max(v / peak * (WIDTH - LABEL_W - 80), 1.0),
            ROW_H - 6,
            "neutral",
            name,
            f"{v / peak:.0%}",
            title=f"{name}: {v:,.0f} total gain",
        )
        for i, (name, v) in enumerate(shown)
    )
    return Chart(WIDTH, PAD * 2 + len(shown) * ROW_H, bars, ())
