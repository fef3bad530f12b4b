"""Synthetic loan applications with labelled fraud, for demos, tests and benchmarks (never real
people). `generate(rows, seed=...)` returns a polars frame in the canonical schema plus `is_fraud` and
`fraud_type`; docs/synthetic-data.md describes the typologies, the look-alikes and the label noise.
"""

from scoring.synth.generator import generate
from scoring.synth.typologies import FRAUD_TYPES

__all__ = ["FRAUD_TYPES", "generate"]
