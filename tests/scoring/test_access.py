"""Who gets in, over real gRPC on real ports: API keys (unknown, missing, wrong method, over the rate),
TLS and mutual TLS with certificates made here; and the audit store failing closed: no OK without a
record, health NOT_SERVING until the store commits again."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scoring.access import add_client
from scoring.audit import AuditStore
from scoring.cli import main
from scoring.grpc_server import Server
from scoring.service import ScoringService
from scoring.settings import Settings
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from tests.conftest import EXAMPLES, application

FRAUDSCORE = str(Path(sys.executable).parent / "fraudscore")


@asynccontextmanager
async def another_server(
    server: Server, settings: Settings, *, audit: AuditStore | None = None, **changes: Any
) -> AsyncIterator[Server]:
    """A second server on a free port around the session's model, stores and encoder."""
    s = server.service
    service = ScoringService(
        s.model,
        settings,
        history=s.history,
        history_secret=settings.resolved_history_secret(),
        text=s.text,
        audit=audit or s.audit,
    )
    srv = Server(service, settings.model_copy(update=changes))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=1.0)


async def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_api_keys_methods_and_rate_limits(server, settings, tmp_path):
    keys = tmp_path / "clients.json"
    los = add_client(keys, "los-prod", methods=["Score", "GetModelInfo"])
    slow = add_client(keys, "batch-job", methods=["GetModelInfo"], rate_per_second=0.5, burst=2)
    assert los not in keys.read_text() and slow not in keys.read_text()  # stored hashed
    async with (
        another_server(server, settings, api_keys=keys) as srv,
        grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
    ):
        stub = pb_grpc.FraudScoringStub(channel)
        request = pb.ScoreRequest(application=application())

        def score(key: str | None) -> Callable[[], Any]:
            return lambda: stub.Score(request, timeout=10, metadata=[("x-api-key", key)] if key else None)

        assert await code_of(score(None)) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await score("fsk_not-a-key")()
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "fsk_not-a-key" not in (wrong.value.details() or "")
        assert await code_of(score(los)) == grpc.StatusCode.OK
        explain = stub.Explain(
            pb.ExplainRequest(application_id="X-1"), timeout=10, metadata=[("x-api-key", los)]
        )
        assert await code_of(lambda: explain) == grpc.StatusCode.PERMISSION_DENIED
        # A stream is refused before any item is read.
        batch = stub.ScoreBatch(iter([request]), timeout=10)
        assert await code_of(lambda: _drain(batch)) == grpc.StatusCode.UNAUTHENTICATED
        # Burst of 2, then over the rate.
        codes = [
            await code_of(
                lambda: stub.GetModelInfo(
                    pb.GetModelInfoRequest(), timeout=10, metadata=[("x-api-key", slow)]
                )
            )
            for _ in range(3)
        ]
        assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED]
        # Load balancers probe health without a key.
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        metrics = srv.service.metrics.exposition().decode()
        assert 'fraudscore_rpc_seconds_count{code="UNAUTHENTICATED",method="Score"} 2.0' in metrics
        assert los not in metrics and slow not in metrics
        # The command line sends its key too.
        # The sample under a fresh id: the audit store is the session's, shared with other tests.
        data = json.loads((EXAMPLES / "consumer-application.json").read_text())
        data["application_id"] = f"CLI-{uuid.uuid4().hex[:12]}"
        sample = str(tmp_path / "sample.json")
        Path(sample).write_text(json.dumps(data))
        for key, status, says in ((los, 0, '"decision"'), ("", 1, "UNAUTHENTICATED")):
            proc = await asyncio.create_subprocess_exec(
                FRAUDSCORE,
                "score",
                "--target",
                f"127.0.0.1:{srv.port}",
                "--api-key",
                key,
                sample,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == status and says in (out + err).decode()


def test_clients_are_added_and_listed_by_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRAUDSCORE_API_KEYS", str(tmp_path / "clients.json"))
    assert main(["clients", "add", "los-prod", "--methods", "Score", "--rate", "100"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("fsk_") and key not in (tmp_path / "clients.json").read_text()
    assert main(["clients", "list"]) == 0
    assert capsys.readouterr().out == "los-prod\tScore\t100/s burst 200\n"
    assert main(["clients", "add", "x", "--methods", "Everything"]) == 2


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


def _certificates(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = dt.datetime.now(dt.UTC)

    def issue(
        name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, *, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if name == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fraudscore test CA")])
    out = {}
    ca = issue("fraudscore test CA", ca_key, ca_name, ca_key, ca=True)
    out["ca"] = root / "ca.pem"
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, ca_name, ca_key, ca=False)
        out[name] = root / f"{name}.pem"
        out[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}-key"] = root / f"{name}-key.pem"
        out[f"{name}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return out


async def _info(channel: grpc.aio.Channel) -> grpc.StatusCode:
    stub = pb_grpc.FraudScoringStub(channel)
    return await code_of(lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5))


@pytest.mark.parametrize("mutual", [False, True])
async def test_tls_and_mutual_tls(server, settings, tmp_path, mutual):
    pem = _certificates(tmp_path)
    tls = {"tls_cert": pem["server"], "tls_key": pem["server-key"]}
    if mutual:
        tls["tls_client_ca"] = pem["ca"]
    async with another_server(server, settings, **tls) as srv:
        target = f"127.0.0.1:{srv.port}"
        async with grpc.aio.insecure_channel(target) as plain:
            assert await _info(plain) == grpc.StatusCode.UNAVAILABLE  # no plaintext on a TLS port
        server_only = grpc.ssl_channel_credentials(pem["ca"].read_bytes())
        async with grpc.aio.secure_channel(target, server_only) as secure:
            assert await _info(secure) == (grpc.StatusCode.UNAVAILABLE if mutual else grpc.StatusCode.OK)
        with_cert = grpc.ssl_channel_credentials(
            pem["ca"].read_bytes(), pem["client-key"].read_bytes(), pem["client"].read_bytes()
        )
        async with grpc.aio.secure_channel(target, with_cert) as secure:
            assert await _info(secure) == grpc.StatusCode.OK


def test_tls_settings_come_in_pairs(tmp_path):
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        Settings(tls_cert=tmp_path / "c.pem", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"tls_client_ca .* needs tls_cert"):
        Settings(tls_client_ca=tmp_path / "ca.pem", _env_file=None)  # type: ignore[call-arg]


def test_worker_ports_must_not_overlap_the_others():
    ok = Settings(workers=2, port=50051, worker_port_base=50061, _env_file=None)  # type: ignore[call-arg]
    assert [ok.worker_port(i) for i in (0, 1)] == [50061, 50062] and ok.worker_port(None) is None
    for clash, name in ((50050, "port"), (9094, "metrics_port"), (8079, "review_port")):
        with pytest.raises(ValueError, match=f"overlap {name}"):
            Settings(workers=2, port=50051, worker_port_base=clash, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="leaves no port for worker 1"):
        Settings(workers=2, worker_port_base=65535, _env_file=None)  # type: ignore[call-arg]
    # One process never listens on it; a review page on another interface does not clash.
    Settings(workers=1, port=50051, worker_port_base=50051, _env_file=None)  # type: ignore[call-arg]
    Settings(workers=2, review_host="10.0.0.1", worker_port_base=8079, _env_file=None)  # type: ignore[call-arg]


def _value(exposition: str, name: str) -> float:
    line = next(line for line in exposition.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def _status(channel: grpc.aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    return int(answer.status)


async def _wait_for(channel: grpc.aio.Channel, status: int, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 10)):
        if await _status(channel) == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {status}")


async def test_a_failing_audit_store_fails_closed_and_recovers(server, settings, tmp_path):
    """The fault is real SQLite: the store's connection may not grow the file (SQLITE_FULL, as on a
    full disk), set on the store's own connection since SQLite's page limit is per connection."""
    audit = AuditStore(tmp_path / "audit.sqlite", secret=settings.audit_secret(), personal_data="encrypt")
    async with (
        another_server(server, settings, audit=audit) as srv,
        grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
    ):
        stub = pb_grpc.FraudScoringStub(channel)
        first = application()
        await stub.Score(pb.ScoreRequest(application=first), timeout=10)
        pages = audit._db.execute("PRAGMA page_count").fetchone()[0]
        audit._db.execute(f"PRAGMA max_page_count = {pages}")
        refused = [application() for _ in range(3)]
        codes = await asyncio.gather(
            *(code_of(lambda a=a: stub.Score(pb.ScoreRequest(application=a), timeout=10)) for a in refused)
        )
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}  # never OK without its record
        assert all(audit.get(a.application_id) is None for a in refused)
        await _wait_for(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
        metrics = srv.service.metrics.exposition().decode()
        assert "fraudscore_healthy 0.0" in metrics
        assert _value(metrics, "fraudscore_audit_failures_total") >= 1
        audit._db.execute("PRAGMA max_page_count = 1073741823")  # the disk has room again
        await _wait_for(channel, health_pb2.HealthCheckResponse.SERVING)
        again = await stub.Score(pb.ScoreRequest(application=refused[0]), timeout=10)
        assert (
            audit.get(refused[0].application_id) is not None
            and again.application_id == refused[0].application_id
        )
        assert "fraudscore_healthy 1.0" in srv.service.metrics.exposition().decode()
    audit.close()
