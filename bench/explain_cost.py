"""What a TreeSHAP explanation costs against the score itself, per row, with the demo bundle.

    uv run python bench/explain_cost.py [--bundle var/demo-bundle] [--repeats 50]

Reasons are computed inline only for REVIEW and DECLINE answers (about 5% of applications at the
demo's thresholds); this prints what that adds per request on average. Writes
bench/results/explain_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.score_latency import RESULTS, machine


def per_row_ms(fn, rows: int, repeats: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) * 1000 / repeats / rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=Path("var/demo-bundle"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    booster = lgb.Booster(model_file=str(args.bundle / "model.txt"))
    rng = np.random.default_rng(0)
    x = rng.random((64, booster.num_feature()))
    rows = []
    for batch in (1, 16, 64):
        score = per_row_ms(
            lambda b=batch: booster.predict(x[:b], raw_score=True, num_threads=1), batch, args.repeats
        )
        shap = per_row_ms(
            lambda b=batch: booster.predict(x[:b], pred_contrib=True, num_threads=1), batch, args.repeats
        )
        rows.append(
            {"batch": batch, "score_ms_per_row": round(score, 4), "treeshap_ms_per_row": round(shap, 3)}
        )
    flagged = 0.05  # the demo's review + decline rates (4% + 1%) on its calibration slice
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "trees": booster.num_trees(),
        "features": booster.num_feature(),
        "rows": rows,
        "inline_share": flagged,
        "inline_average_ms_per_request": round(rows[0]["treeshap_ms_per_row"] * flagged, 3),
    }
    m = result["machine"]
    md = [
        f"# Explanation cost ({result['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, one thread. Demo model: {result['trees']} trees, "
        f"{result['features']} features.",
        "",
        "| rows per call | score ms/row | TreeSHAP ms/row |",
        "|---|---|---|",
        *[f"| {r['batch']} | {r['score_ms_per_row']} | {r['treeshap_ms_per_row']} |" for r in rows],
        "",
        f"Inline for REVIEW and DECLINE only (about {flagged:.0%} of applications): "
        f"{result['inline_average_ms_per_request']} ms per request on average. Approvals are explained "
        "on demand (the Explain RPC, from the features on record).",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explain_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "explain_cost.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
