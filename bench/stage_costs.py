"""Where a Score request's server time goes: each stage of the scoring path timed on its own, in one
process, for micro-batches of 1, 16 and 64 new applications (wall and CPU time, medians).

The stages are those of `ScoringService` (scoring/service.py) and the gRPC servicer, called the way
they call them, on copies of the demo history store and a fresh audit store; nothing goes over gRPC.

    uv run --frozen python bench/stage_costs.py [--bundle DIR] [--rev REV]

`--rev` imports the service's code as of a git revision (as `bench/suite.py --rev`). Prints a
markdown table and writes bench/results/suite.stages.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `fraudscore serve` sets it
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fraudscore_side as fs  # noqa: E402

T = TypeVar("T")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=None, help="default: the tabular+history bundle")
    parser.add_argument("--rev", default=None)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fraudscore-stages-"))
    commit = fs.import_revision(args.rev, work / "source") if args.rev else "working tree"
    from features.history import entity_key_rows, history_frame
    from features.history_store import SQLiteHistoryStore
    from features.schema import CANONICAL_SCHEMA, validate_row
    from scoring.audit import AuditRecord, AuditStore
    from scoring.model import ScoringModel
    from scoring.policy import Decision
    from scoring.results import ScoreResult
    from scoring.settings import Settings
    from scoring.synth import generate
    from scoring.v1 import scoring_pb2 as pb
    from scoring.wire import application_from_pb, application_to_pb, result_to_pb

    try:
        from scoring.personal import payload_digest  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from scoring.audit import payload_digest  # type: ignore[attr-defined,no-redef,unused-ignore]

    bundle = args.bundle or fs.bundle("history")
    shutil.copyfile(fs.DATA / "history.sqlite", work / "history.sqlite")
    settings = Settings(data_dir=fs.DATA)
    secret = settings.resolved_history_secret()
    model = ScoringModel.load(bundle)
    store = SQLiteHistoryStore(work / "history.sqlite")
    mode = getattr(settings, "audit_personal_data", None)
    extra: dict[str, Any] = {"personal_data": mode} if mode else {}
    audit = AuditStore(work / "audit.sqlite", secret=settings.audit_secret(), **extra)
    sizes = (1, 4, 16, 64)
    n = sum(sizes) * (args.reps + 3)
    apps = []
    for i, row in enumerate(generate(n, seed=4321).select(list(CANONICAL_SCHEMA)).iter_rows(named=True)):
        row["application_id"] = f"STAGES-{i}"
        apps.append(application_to_pb(row).SerializeToString())

    row_path = hasattr(model, "score_batch")
    as_stored = "as_stored" in inspect.signature(audit.record_many).parameters

    def timed(name: str, f: Callable[[], T], samples: dict[str, list[tuple[float, float]]]) -> T:
        cpu, wall = time.process_time(), time.perf_counter()
        out = f()
        samples.setdefault(name, []).append(
            ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
        )
        return out

    def parse(batch: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for data in batch:
            raw, attributes, _ = application_from_pb(pb.LoanApplication.FromString(data))
            out.append(validate_row(raw, attributes=attributes))
        return out

    def one_batch(batch: list[bytes], s: dict[str, list[tuple[float, float]]]) -> None:
        """The stages of one micro-batch, in the service's order."""
        rows = timed("parse + validate (event loop)", lambda: parse(batch), s)
        timed(
            "retry check: the audit store's record of each id",
            # Since deb4e3d one query for the batch on the batch thread; before, one per request
            # through a thread from the event loop (the hop itself is not in this figure).
            lambda: (
                audit.get_many([r["application_id"] for r in rows])
                if hasattr(audit, "get_many")
                else [audit.get(r["application_id"]) for r in rows]
            ),
            s,
        )
        digests = timed("payload digest", lambda: [payload_digest(r) for r in rows], s)
        # Since b5f7117 a small batch's rows are read as its frame would give them and the polars
        # frame is built only where a step needs it (`FeaturePipeline.batch`); before, the frame.
        pipeline = model.pipeline
        canonical = pipeline.batch if hasattr(pipeline, "batch") else pipeline.frame_from_rows
        frame = timed("canonical rows (the polars frame before b5f7117)", lambda: canonical(rows), s)
        keys = timed("hashed keys", lambda: entity_key_rows(frame, secret), s)
        history = timed("history lookup + append", lambda: store.lookup_and_record(keys), s)
        used = history if model.uses_history else None
        if row_path:  # small batches without polars (ScoringModel.score_batch)
            scores = timed("features + matrix + LightGBM", lambda: model.score_batch(frame, used, None), s)
        else:  # a revision before the row-wise path
            frames = None if used is None else history_frame(used)
            scores = timed("features + matrix + LightGBM", lambda: model.score_frame(frame, frames, None), s)
        flagged = [j for j, d in enumerate(scores.decisions) if d is not Decision.APPROVE]
        explained = timed("TreeSHAP reasons (REVIEW/DECLINE only)", lambda: scores.explain(flagged), s)

        def feature_rows() -> list[dict[str, Any]]:
            if row_path:
                return scores.feature_rows()
            assert scores.features is not None  # a revision before the row-wise path kept a frame
            return scores.features.to_dicts()

        features = timed("feature rows for the record", feature_rows, s)
        now = dt.datetime.now(dt.UTC)
        reasons = dict(zip(flagged, explained, strict=True))
        results = [
            ScoreResult(
                application_id=r["application_id"],
                product=r["product"],
                probability=float(scores.probability[j]),
                score=int(scores.score[j]),
                decision=scores.decisions[j],
                model_version=model.version,
                latency_ms=1.0,
                degraded=False,
                degraded_reason="",
                text_encoder="",
                text_provider="",
                reasons=reasons[j].risk_raising() if j in reasons else (),
            )
            for j, r in enumerate(rows)
        ]
        records = [
            AuditRecord.from_result(res, payload_sha256=d, received_at=now, application=r, features=f)
            for res, d, r, f in zip(results, digests, rows, features, strict=True)
        ]
        timed(
            "audit commit (one transaction, synchronous=FULL)",
            # The service does not read new records back (deb4e3d); older revisions always did.
            lambda: audit.record_many(records, as_stored=False) if as_stored else audit.record_many(records),
            s,
        )
        timed("responses to protobuf", lambda: [result_to_pb(r).SerializeToString() for r in results], s)

    at = 0
    table: dict[int, dict[str, tuple[float, float]]] = {}
    for size in sizes:
        samples: dict[str, list[tuple[float, float]]] = {}
        for rep in range(args.reps + 3):
            one_batch(apps[at : at + size], samples if rep >= 3 else {})  # 3 warm-up rounds
            at += size
        table[size] = {
            name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for name, v in samples.items()
        }
    store.close()
    audit.close()
    shutil.rmtree(work, ignore_errors=True)
    names = list(table[sizes[0]])
    command = "uv run --frozen python bench/stage_costs.py" + (f" --rev {args.rev}" if args.rev else "")
    lines = [
        f"Stage costs, `{command}` ({commit}; bundle {bundle.name}; medians of {args.reps} micro-batches; "
        "CPU is the process's, polars' threads included):",
        "",
        "| stage | "
        + " | ".join(f"batch of {k}: wall ms / CPU ms / CPU ms per application" for k in sizes)
        + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for name in [*names, "total"]:
        cells = []
        for k in sizes:
            w, c = (
                (sum(v[0] for v in table[k].values()), sum(v[1] for v in table[k].values()))
                if name == "total"
                else table[k][name]
            )
            cells.append(f"{w:.2f} / {c:.2f} / {c / k:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    print(md)
    out = {"commit": commit, "bundle": str(bundle), "reps": args.reps, "stages": table, "markdown": md}
    (BENCH / "results" / "suite.stages.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
