"""`fraudscore officers` (who may sign in to the review page), `fraudscore clients` (who may call the
gRPC service), `fraudscore audit verify` (checks the officer log's hash chain), and the client side
of TLS and API keys for `score` and `info`."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scoring.settings import Settings

if TYPE_CHECKING:
    import grpc


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("officers", help="officers who may sign in to the review page")
    officers = p.add_subparsers(dest="action", required=True)
    a = officers.add_parser("add", help="add an officer, or set an existing one's password and role")
    a.add_argument("name")
    a.add_argument("--role", choices=("officer", "admin"), default="officer")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin, not a prompt")
    officers.add_parser("list", help="print the officers and their roles")
    p = sub.add_parser("clients", help="API keys of the systems that may call the gRPC service")
    clients = p.add_subparsers(dest="action", required=True)
    c = clients.add_parser("add", help="make a client's API key (printed once; stored hashed)")
    c.add_argument("name")
    c.add_argument("--methods", nargs="+", help="RPCs it may call (default: all)")
    c.add_argument("--rate", type=float, default=0.0, help="calls per second allowed (0: no limit)")
    c.add_argument("--burst", type=float, default=0.0, help="calls allowed at once (default: 2 x rate)")
    clients.add_parser("list", help="print the clients, their methods and rate limits")
    p = sub.add_parser("audit", help="check the officer log")
    audit = p.add_subparsers(dest="action", required=True)
    v = audit.add_parser(
        "verify", help="verify the officer log's hash chain; exit 1 naming the first broken record"
    )
    v.add_argument("--log", help="the officer log file (default: from settings)")


def cmd_officers(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.web.auth import Officers

    officers = Officers(settings.resolved_officers_path())
    if args.action == "list":
        for officer in officers.names():
            print(f"{officer.name}\t{officer.role}")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("fraudscore: the passwords differ", file=sys.stderr)
            return 2
    officers.add(args.name, args.role, password)
    print(f"fraudscore: {args.name} ({args.role}) can sign in", file=sys.stderr)
    return 0


def cmd_clients(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.access import METHODS, add_client, read_clients

    if settings.api_keys is None:
        print("fraudscore: set FRAUDSCORE_API_KEYS to the clients file first", file=sys.stderr)
        return 2
    if args.action == "list":
        clients = read_clients(settings.api_keys) if settings.api_keys.exists() else {}
        for c in sorted(clients.values(), key=lambda c: c.name):
            print(f"{c.name}\t{','.join(c.methods)}\t{c.rate_per_second:g}/s burst {c.burst:g}")
        return 0
    key = add_client(
        settings.api_keys,
        args.name,
        methods=args.methods or METHODS,
        rate_per_second=args.rate,
        burst=args.burst,
    )
    print(key)
    print(
        f"fraudscore: {args.name} added to {settings.api_keys}; the key above is not stored", file=sys.stderr
    )
    return 0


def client_arguments(p: argparse.ArgumentParser) -> None:
    """How `score` and `info` reach a server with TLS and API keys."""
    p.add_argument(
        "--api-key",
        default=os.environ.get("FRAUDSCORE_CLIENT_API_KEY"),
        help="sent as x-api-key (default: $FRAUDSCORE_CLIENT_API_KEY)",
    )
    p.add_argument("--tls-ca", type=Path, help="PEM CA that signed the server's certificate: use TLS")
    p.add_argument("--tls-cert", type=Path, help="this client's PEM certificate (mutual TLS)")
    p.add_argument("--tls-key", type=Path, help="this client's PEM private key (mutual TLS)")


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    import grpc

    if args.tls_ca is None:
        return grpc.insecure_channel(args.target)
    cert = args.tls_cert.read_bytes() if args.tls_cert else None
    key = args.tls_key.read_bytes() if args.tls_key else None
    credentials = grpc.ssl_channel_credentials(args.tls_ca.read_bytes(), key, cert)
    return grpc.secure_channel(args.target, credentials)


def call_metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    from scoring.access import KEY_HEADER

    return [(KEY_HEADER, args.api_key)] if args.api_key else []


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from scoring.officer_log import OfficerLog

    path = Path(args.log) if args.log else settings.resolved_officer_log_path()
    if not path.exists():
        print(f"fraudscore: no officer log at {path}", file=sys.stderr)
        return 2
    with OfficerLog(path, secret=settings.audit_secret()) as log:
        result = log.verify()
    print(
        json.dumps(
            {
                "log": str(path),
                "records": result.rows,
                "head": result.head,
                "ok": result.ok,
                "broken_at": result.broken_at,
                "problem": result.problem,
            }
        )
    )
    if not result.ok:
        print(
            f"fraudscore: officer log broken at record {result.broken_at}: {result.problem}", file=sys.stderr
        )
        return 1
    return 0
