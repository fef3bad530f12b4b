"""Near-duplicate text index: lookup-and-add cost per application and field as the index fills.

Random unit vectors (384 dimensions) arrive in time order over 40 days; the window is 7 days and
the index holds the last 50,000 texts (the defaults), persisted to SQLite as in serving.

    uv run python bench/text_index.py [--texts 60000]

Writes bench/results/text_index.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.score_latency import RESULTS, machine, percentiles
from features.text.near_dup import NearDuplicateIndex

DAY_US = 86_400_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=60_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.texts, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ts = np.sort(rng.integers(0, 40 * DAY_US, args.texts))
    with tempfile.TemporaryDirectory() as tmp:
        index = NearDuplicateIndex(
            Path(tmp) / "index.sqlite", ["purpose"], dim=384, window_us=7 * DAY_US, cap=50_000, threshold=0.95
        )
        lat = []
        for i in range(args.texts):
            started = time.perf_counter()
            index.lookup_and_add(
                "purpose", [int(ts[i])], [f"id{i % 5000}"], vectors[i : i + 1], np.ones(1, bool)
            )
            lat.append((time.perf_counter() - started) * 1000)
        index.close()
    stages = {}
    for at in (1_000, 20_000, args.texts - 1_000):
        stages[f"after {at:,} texts"] = percentiles(lat[at : at + 1_000])
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "stages": stages,
    }
    m = result["machine"]
    md = [
        f"# Near-duplicate text index ({result['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. 384-d vectors over 40 days, 7-day window, cap 50,000, "
        "SQLite-persisted. Per lookup-and-add of one text (one field), over the next 1,000 texts:",
        "",
        "| index state | p50 ms | p99 ms | p99.9 ms |",
        "|---|---|---|---|",
    ]
    md += [f"| {k} | {v['p50']} | {v['p99']} | {v['p99.9']} |" for k, v in stages.items()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_index.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "text_index.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
