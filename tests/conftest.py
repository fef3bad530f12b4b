"""Shared fixtures: the default text encoder built once per session, a small bundle trained once per
session through a lender-style mapping file (with text signals and the fallback model), and a real
gRPC server on a free port with an async stub."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
from google.protobuf import json_format

from features.text.export import build_encoder, default_source
from scoring.dataset import load_dataset
from scoring.grpc_server import Server
from scoring.model import ScoringModel
from scoring.serving import open_service
from scoring.settings import Settings
from scoring.synth import generate
from scoring.text import TextRuntime
from scoring.train import TrainConfig, train
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
TEST_ROWS = 30_000
TEST_SEED = 11

# The session bundle is trained from a file in a lender's own column names, so the mapping path and
# lender attributes are exercised by every test that scores.
MAPPING = """
[fields]
"loan.amount" = "requested_amount"
"applicant.annual_income" = "stated_income"
submitted_at = "received_at"
[label]
column = "confirmed_fraud"
fraud_values = ["Y"]
typology = "fraud_type"
[ignore]
columns = ["internal_ref"]
"""


def lender_table(rows: int, seed: int) -> pl.DataFrame:
    frame = generate(rows, seed=seed)
    return (
        frame.rename(
            {
                "loan_amount": "requested_amount",
                "annual_income": "stated_income",
                "submitted_at": "received_at",
            }
        )
        .with_columns(
            confirmed_fraud=pl.when(pl.col("is_fraud") == 1).then(pl.lit("Y")).otherwise(pl.lit("N")),
            internal_ref=pl.int_range(pl.len()).cast(pl.String),
            bureau_score=(700 - 40 * pl.col("is_fraud") + (pl.int_range(pl.len()) * 7919 % 200) - 100).cast(
                pl.Float64
            ),
            branch_region=pl.col("address_region"),
        )
        .drop("is_fraud")
    )


@pytest.fixture(scope="session")
def training_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    data, mapping = root / "lender.parquet", root / "mapping.toml"
    lender_table(TEST_ROWS, TEST_SEED).write_parquet(data)
    mapping.write_text(MAPPING)
    return data, mapping


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoders") / "minilm"
    build_encoder(default_source(), out, name="all-MiniLM-L6-v2")
    return out


@pytest.fixture(scope="session")
def bundle_dir(
    training_files: tuple[Path, Path], encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    data, mapping = training_files
    out = tmp_path_factory.mktemp("bundles") / "test-bundle"
    train(
        load_dataset(data, mapping),
        out,
        TrainConfig(seed=TEST_SEED, max_rounds=300, synthetic=True, encoder_dir=encoder_dir),
        source=data,
    )
    return out


@pytest.fixture(scope="session")
def settings(bundle_dir: Path, encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        bundle=bundle_dir,
        encoder_dir=encoder_dir,
        grace_seconds=1.0,
        data_dir=tmp_path_factory.mktemp("var"),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
async def server(settings: Settings) -> AsyncIterator[Server]:
    model = ScoringModel.load(settings.resolved_bundle(), threads=settings.model_threads)
    with ExitStack() as stack:  # the stores and encoder as `fraudscore serve` opens them
        text = TextRuntime(model, settings)
        stack.callback(text.close)
        srv = Server(open_service(settings, model, stack, text=text), settings)
        await srv.start()
        yield srv
        await srv.stop(grace=1.0)


@pytest.fixture(scope="session")
async def channel(server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> pb_grpc.FraudScoringStub:
    return pb_grpc.FraudScoringStub(channel)


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def application(name: str = "consumer-application.json", **changes: Any) -> pb.LoanApplication:
    """An example application with dotted-path changes applied, e.g. **{"loan.amount": -5}.

    Each call gets a fresh application_id unless one is given: the service is idempotent on it, so
    two different applications under one id would be refused (ALREADY_EXISTS)."""
    data = example(name)
    data["application_id"] = f"T-{uuid.uuid4().hex[:16]}"
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return json_format.ParseDict(data, pb.LoanApplication())


RISKY_CHANGES: dict[str, Any] = {
    "applicant.email": "xk7r92mq1@mail.com",
    "applicant.national_id": "666-12-3456",
    "applicant.phone": "+8613800000000",
    "bank_account.account_age_days": 3,
    "channel.session_duration_seconds": 40,
    "channel.user_agent": "Mozilla/5.0 HeadlessChrome/120.0",
    "applicant.years_at_address": 0.1,
    "loan.amount": 60_000,
}


def with_attributes(app: pb.LoanApplication) -> pb.LoanApplication:
    """The lender attributes the test model was trained with, at unremarkable values."""
    app.attributes["bureau_score"].number = 700
    app.attributes["branch_region"].text = "OR"
    return app
