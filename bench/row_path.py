"""The row-wise path against polars for a micro-batch's features, by batch size: where the crossover
lies (`features.rowwise.ROW_PATH_MAX`).

    uv run --frozen python bench/row_path.py [--bundle DIR] [--repeats 40]

For each batch size, the median wall and CPU time (one process, polars' threads included) of
hashing the history keys, building the features with the history and text columns, and the model
matrix, on each path; the same rows, the tabular+history bundle of the suite (no text) by default.
Writes bench/results/row_path.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `fraudscore serve` sets it
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import fraudscore_side as fs  # noqa: E402
import polars as pl  # noqa: E402
from score_latency import RESULTS, machine  # noqa: E402

from features import rowwise  # noqa: E402
from features.history import entity_key_rows, history_frame, key_values  # noqa: E402
from features.history_store import SQLiteHistoryStore  # noqa: E402
from features.pipeline import FeaturePipeline  # noqa: E402
from scoring.model import ScoringModel  # noqa: E402
from scoring.synth import generate  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 24, 32, 64)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def polars_path(pipeline: FeaturePipeline, frame: pl.DataFrame, history: list[Any] | None) -> None:
    key_values(frame).to_dicts()  # what entity_key_rows hashes, built by polars
    features = pipeline.features(frame, None if history is None else history_frame(history))
    pipeline.matrix(features)
    features.to_dicts()  # the rows the audit record keeps


def row_path(pipeline: FeaturePipeline, frame: pl.DataFrame, history: list[Any] | None) -> None:
    canonical = frame.to_dicts()
    assert all(rowwise.accepts(r) for r in canonical)
    for r in canonical:
        rowwise.key_values_row(r)
    features = pipeline.feature_rows(canonical, history)
    assert features is not None
    pipeline.matrix_from_rows(features)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="default: the suite's tabular+history bundle"
    )
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    bundle = args.bundle or fs.bundle("history")
    model = ScoringModel.load(bundle)
    pipeline, secret = model.pipeline, b"bench-secret"
    rows = generate(max(SIZES), seed=77).to_dicts()
    store = SQLiteHistoryStore(":memory:")
    rowwise.warm()
    results = []
    for size in SIZES:
        frame = pipeline.frame_from_rows(rows[:size])
        history = store.lookup_and_record(entity_key_rows(frame, secret), record=False)

        history_used = history if model.uses_history else None
        p_wall, p_cpu = timed(partial(polars_path, pipeline, frame, history_used), args.repeats)
        r_wall, r_cpu = timed(partial(row_path, pipeline, frame, history_used), args.repeats)
        results.append(
            {
                "batch": size,
                "polars_wall_ms": round(p_wall, 3),
                "polars_cpu_ms": round(p_cpu, 3),
                "rows_wall_ms": round(r_wall, 3),
                "rows_cpu_ms": round(r_cpu, 3),
                "ratio_cpu": round(p_cpu / r_cpu, 2) if r_cpu else None,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    command = "uv run --frozen python bench/row_path.py" + "".join(f" {a}" for a in sys.argv[1:])
    out = {"command": command, "machine": machine(), "bundle": str(bundle), "results": results}
    RESULTS.mkdir(exist_ok=True)
    m = out["machine"]
    (RESULTS / "row_path.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"Row-wise path against polars (keys, features, matrix, feature rows), `{command}`; "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, polars {m['polars']}; "
        f"medians of {args.repeats}:",
        "",
        "| batch | polars wall / CPU ms | row-wise wall / CPU ms | polars CPU / row-wise CPU |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['batch']} | {r['polars_wall_ms']:.2f} / {r['polars_cpu_ms']:.2f} | "
            f"{r['rows_wall_ms']:.2f} / {r['rows_cpu_ms']:.2f} | {r['ratio_cpu']}x |"
        )
    (RESULTS / "row_path.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
