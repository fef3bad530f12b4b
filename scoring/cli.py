"""The `fraudscore` command line: synth, train, evaluate, history, encoder, lists, serve, score, info,
officers, clients, audit.

The commands and flags listed in the README are a stable interface for scripts; new flags may be
added, none removed. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scoring.settings import Settings

if TYPE_CHECKING:
    import polars as pl
    from numpy.typing import ArrayLike


def _progress(message: str) -> None:
    print(f"[fraudscore] {message}", file=sys.stderr, flush=True)


def write_table(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.write_parquet(path)
    elif path.suffix.lower() == ".csv":
        frame.write_csv(path)
    else:
        raise SystemExit(f"fraudscore: {path}: expected a .parquet or .csv file name")


def cmd_synth(args: argparse.Namespace) -> int:
    from scoring.synth import generate

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        _progress(f"generated {done:,} / {total:,} applications")

    frame = generate(args.rows, seed=args.seed, months=args.months, progress=progress)
    write_table(frame, args.out)
    fraud = int(frame.get_column("is_fraud").sum())
    _progress(
        f"wrote {frame.height:,} synthetic applications ({fraud:,} labelled fraud) to {args.out} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from scoring.dataset import load_dataset
    from scoring.train import TrainConfig, format_report, train

    _progress(f"reading {args.data}")
    data = load_dataset(args.data, args.mapping)
    if args.audit_labels is not None:
        from scoring.audit import AuditStore
        from scoring.dataset import with_outcome_labels

        with AuditStore(args.audit_labels, secret=Settings().audit_secret()) as audit:
            labelled = audit.labelled().select("application_id", "is_fraud")
        data, taken = with_outcome_labels(data, dict(labelled.iter_rows()))
        _progress(
            f"{taken:,} of {data.canonical.height:,} labels from outcomes recorded in {args.audit_labels}"
        )
    config = TrainConfig(
        seed=args.seed,
        calibration=args.calibration,
        review_rate=args.review_rate,
        decline_rate=args.decline_rate,
        synthetic=args.synthetic,
        history=not args.no_history,
        outcome_delay_days=args.outcome_delay_days,
        text=not args.no_text,
        encoder_dir=None if args.no_text else (args.encoder or ensure_encoder(Settings())),
        text_phrases=args.text_phrases,
    )
    version, report = train(data, args.out, config, source=args.data, progress=_progress)
    print(format_report(report))
    print(f"\nbundle {version} written to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from scoring.dataset import load_dataset
    from scoring.model import ScoringModel
    from scoring.train import evaluate_bundle, format_report

    model = ScoringModel.load(args.bundle, threads=2)
    data = load_dataset(args.data, args.mapping)
    encoder = (args.encoder or Settings().resolved_encoder_dir()) if model.uses_text else None
    report = evaluate_bundle(model, data, encoder_dir=encoder)
    report["model_version"] = model.version
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def ensure_encoder(settings: Settings) -> Path:
    """The text encoder directory: the configured one, or the default encoder built on first use."""
    path = settings.resolved_encoder_dir()
    if settings.encoder_dir is not None or (path / "encoder.json").exists():
        return path
    from features.text.export import build_encoder, default_source

    _progress(f"building the default text encoder (all-MiniLM-L6-v2, ONNX) into {path}")
    build_encoder(default_source(), path, name="all-MiniLM-L6-v2")
    return path


def cmd_encoder(args: argparse.Namespace) -> int:
    if args.encoder_command == "build":
        from features.text.export import build_encoder, default_source

        started = time.perf_counter()
        source = args.source or default_source()
        name = args.name or ("all-MiniLM-L6-v2" if args.source is None else None)
        result = build_encoder(source, args.out, name=name, max_seq_length=args.max_seq_length)
        _progress(f"built {result.identity} into {result.out} in {time.perf_counter() - started:.1f} s")
        print(json.dumps({"identity": result.identity, "files": result.files}, indent=2))
        return 0
    import numpy as np

    from features.text.encoder import TextEncoder

    encoder = TextEncoder(args.encoder, providers=args.providers.split(","), variant=args.variant)
    lines = args.input.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line does not start another
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    started = time.perf_counter()
    vectors = encoder.encode(lines) if lines else np.zeros((0, encoder.info.hidden), np.float32)
    np.save(args.out, vectors)
    info = encoder.info
    _progress(
        f"{len(lines):,} lines -> {args.out} ({info.identity}, {info.variant} on {info.provider}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def cmd_lists(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the keyed hash of an identifier for an allow/deny list entry (normalised as the
    history normalises it); the clear value is read from the command line, never written."""
    from features.history import entity_key_rows
    from features.pipeline import FeaturePipeline

    column = {"bank_account": "bank_account_number", "business_reg": "business_registration_number"}
    row: dict[str, object] = {column.get(args.kind, args.kind): args.value}
    if args.kind == "address":
        raise ValueError(
            "address entries combine line, postal code and country: not supported by this command"
        )
    keys = entity_key_rows(FeaturePipeline().frame_from_rows([row]), settings.resolved_history_secret())[0]
    if keys.get(args.kind) is None:
        raise ValueError(f"{args.kind}: the value normalises to nothing")
    print(json.dumps({"kind": args.kind, "hash": keys[args.kind]}))
    return 0


def ensure_bundle(settings: Settings) -> Path:
    """The bundle to serve: the configured one, or the demo bundle, trained on first use."""
    if settings.bundle is not None:
        return settings.bundle
    path = settings.resolved_bundle()
    if (path / "MANIFEST.json").exists():
        return path
    from scoring.dataset import ColumnMapping, canonicalise
    from scoring.synth import generate
    from scoring.train import TrainConfig, format_report, train

    _progress(f"no bundle given: training a demo bundle on {settings.demo_rows:,} SYNTHETIC applications")
    frame = generate(
        settings.demo_rows,
        seed=settings.demo_seed,
        progress=lambda d, t: _progress(f"generated {d:,} / {t:,} applications"),
    )
    data_file = settings.data_dir / "demo-applications.parquet"
    write_table(frame, data_file)
    data = canonicalise(frame, ColumnMapping())
    _, report = train(
        data,
        path,
        TrainConfig(seed=settings.demo_seed, synthetic=True, encoder_dir=ensure_encoder(settings)),
        source=data_file,
        progress=_progress,
    )
    _progress("demo model metrics on its time-split test set (synthetic data):\n" + format_report(report))
    load_history(settings, data.canonical, data.label, TrainConfig().outcome_delay_days)
    return path


def load_history(settings: Settings, canonical: pl.DataFrame, label: ArrayLike, delay_days: float) -> int:
    """Appends applications to the serving history store (hashed keys only), with their outcomes
    taken as known `delay_days` after submission."""
    from features.history import entity_keys, with_outcomes
    from features.history_store import SQLiteHistoryStore

    keys = with_outcomes(
        entity_keys(canonical, settings.resolved_history_secret()), label, delay_days
    ).with_columns(application_id=canonical.get_column("application_id"))
    store = SQLiteHistoryStore(settings.resolved_history_path())
    try:
        added = 0
        for start in range(0, keys.height, 50_000):
            chunk = keys.slice(start, 50_000)
            added += store.record_many(chunk.iter_rows(named=True))
            store.record_outcomes(chunk.select("application_id", "fraud", "known_at").iter_rows())
            _progress(
                f"history: recorded {min(start + 50_000, keys.height):,} / {keys.height:,} applications"
            )
        return added
    finally:
        store.close()


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.dataset import load_dataset

    data = load_dataset(args.data, args.mapping)
    if data.canonical.get_column("submitted_at").null_count():
        raise ValueError("every application needs submitted_at to go into the history")
    load_history(settings, data.canonical, data.label, args.outcome_delay_days)
    _progress(f"history store {settings.resolved_history_path()} updated")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.serving import serve

    return serve(settings, ensure_bundle=ensure_bundle, ensure_encoder=ensure_encoder, worker=args.worker)


def cmd_score(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from scoring.cli_admin import call_metadata, open_channel
    from scoring.v1 import scoring_pb2 as pb
    from scoring.v1 import scoring_pb2_grpc as pb_grpc

    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8")
    try:
        application = json_format.Parse(text, pb.LoanApplication())
    except json_format.ParseError as exc:
        print(
            f"fraudscore: {args.file} is not a LoanApplication in protobuf JSON form: {exc}",
            file=sys.stderr,
        )
        return 2
    with open_channel(args) as channel:
        stub = pb_grpc.FraudScoringStub(channel)
        try:
            response = stub.Score(
                pb.ScoreRequest(application=application), timeout=args.deadline, metadata=call_metadata(args)
            )
        except grpc.RpcError as exc:
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 1
    print(
        json_format.MessageToJson(
            response,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            ensure_ascii=False,
        )
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from scoring.cli_admin import call_metadata, open_channel
    from scoring.v1 import scoring_pb2 as pb
    from scoring.v1 import scoring_pb2_grpc as pb_grpc

    with open_channel(args) as channel:
        info = pb_grpc.FraudScoringStub(channel).GetModelInfo(
            pb.GetModelInfoRequest(), timeout=args.deadline, metadata=call_metadata(args)
        )
    print(json_format.MessageToJson(info, preserving_proto_field_name=True))
    return 0


def _outcome_delay_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--outcome-delay-days",
        type=float,
        default=30.0,
        help="days after submission at which a label became known (files rarely say when)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudscore", description="Credit fraud-risk scoring service.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate SYNTHETIC labelled applications (demos, tests, benchmarks)")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--months", type=int, default=6)
    p.add_argument("--out", type=Path, required=True, help="a .parquet or .csv file")

    p = sub.add_parser("train", help="train a model bundle from a labelled parquet/CSV file")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--mapping", type=Path, help="TOML mapping of your columns to canonical fields")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--calibration", choices=("isotonic", "platt"), default="isotonic")
    p.add_argument("--review-rate", type=float, default=0.04)
    p.add_argument("--decline-rate", type=float, default=0.01)
    p.add_argument("--synthetic", action="store_true", help="mark the bundle as trained on synthetic data")
    p.add_argument(
        "--no-history", action="store_true", help="train without history (velocity, link) features"
    )
    _outcome_delay_argument(p)
    p.add_argument("--no-text", action="store_true", help="train without text signals (no encoder)")
    p.add_argument("--encoder", type=Path, help="encoder directory (default: the built-in encoder)")
    p.add_argument("--text-phrases", type=Path, help="TOML of risk phrases and category prototypes")
    p.add_argument(
        "--audit-labels",
        type=Path,
        help="audit store (var/audit.sqlite): recorded outcomes replace the file's labels, by application_id",
    )

    p = sub.add_parser("evaluate", help="score a labelled file with a bundle and print its metrics")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--mapping", type=Path)
    p.add_argument("--encoder", type=Path, help="encoder directory, for a model with text signals")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("encoder", help="build or run the ONNX text encoder")
    enc = p.add_subparsers(dest="encoder_command", required=True)
    b = enc.add_parser("build", help="turn a BERT-family checkpoint into ONNX graphs (fp32, fp16, int8)")
    b.add_argument("--source", type=Path, help="checkpoint directory (default: packaged all-MiniLM-L6-v2)")
    b.add_argument("--out", type=Path, required=True, help="encoder directory to write")
    b.add_argument("--name", help="encoder name (default: the source directory's name)")
    b.add_argument("--max-seq-length", type=int, help="truncation length (default: the model's own)")
    e = enc.add_parser("embed", help="normalised embeddings of each line of a UTF-8 file, as .npy")
    e.add_argument("--encoder", type=Path, required=True)
    e.add_argument("--in", dest="input", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--variant", choices=("auto", "fp32", "fp16", "int8"), default="fp32")
    e.add_argument("--providers", default="cpu", help="comma-separated: tensorrt,cuda,cpu")

    p = sub.add_parser("history", help="load labelled past applications into the history store")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--mapping", type=Path)
    _outcome_delay_argument(p)

    p = sub.add_parser("lists", help="allow/deny list entries (keyed hashes)")
    lst = p.add_subparsers(dest="lists_command", required=True)
    h = lst.add_parser("hash", help="print the list entry of one identifier")
    h.add_argument(
        "--kind", required=True, choices=("phone", "email", "national_id", "device_id", "bank_account")
    )
    h.add_argument("--value", required=True)

    p = sub.add_parser("serve", help="serve gRPC (trains a demo bundle first if none is given)")
    p.add_argument("--bundle", type=Path)
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.add_argument(
        "--worker-port-base",
        type=int,
        help="with --workers N: worker i also listens alone on this port + i (callers balance calls)",
    )
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the parent of --workers N

    from scoring.cli_admin import add_parsers, client_arguments

    add_parsers(sub)
    for name, help_text in (
        ("score", "send one application (protobuf JSON) and print the response"),
        ("info", "print the served model's description"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target", default="127.0.0.1:50051")
        p.add_argument("--deadline", type=float, default=5.0, help="seconds")
        client_arguments(p)
        if name == "score":
            p.add_argument("file", type=Path, help="application JSON file, or - for stdin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        # Before numpy loads: OpenBLAS's worker threads spin between the small products of a
        # request and took the second core (measured: server CPU per sequential request 38 ms at
        # a 20 ms p50; 21 ms with one thread). Training keeps them: its products are large.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    overrides = {
        k: getattr(args, k)
        for k in ("bundle", "port", "host", "workers", "worker_port_base")
        if getattr(args, k, None) is not None
    }
    settings = Settings(**overrides)
    from features.history_store import HistoryStoreError
    from features.text.encoder import EncoderError
    from features.text.export import EncoderBuildError
    from scoring.dataset import DatasetError
    from scoring.errors import FraudscoreError

    try:
        if args.command == "serve":
            return cmd_serve(args, settings)
        if args.command == "history":
            return cmd_history(args, settings)
        if args.command == "lists":
            return cmd_lists(args, settings)
        if args.command in ("officers", "clients", "audit"):
            from scoring.cli_admin import cmd_audit, cmd_clients, cmd_officers

            admin = {"officers": cmd_officers, "clients": cmd_clients, "audit": cmd_audit}
            return admin[args.command](args, settings)
        handler = {
            "synth": cmd_synth,
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "score": cmd_score,
            "info": cmd_info,
            "encoder": cmd_encoder,
        }
        return handler[args.command](args)
    except (
        DatasetError,
        FraudscoreError,
        HistoryStoreError,
        EncoderError,
        EncoderBuildError,
        ValueError,
    ) as exc:
        print(f"fraudscore: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
