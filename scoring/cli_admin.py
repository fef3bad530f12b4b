"""`fraudscore officers` (who may sign in to the review page) and `fraudscore audit verify` (checks
the officer log's hash chain)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from scoring.settings import Settings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("officers", help="officers who may sign in to the review page")
    officers = p.add_subparsers(dest="action", required=True)
    a = officers.add_parser("add", help="add an officer, or set an existing one's password and role")
    a.add_argument("name")
    a.add_argument("--role", choices=("officer", "admin"), default="officer")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin, not a prompt")
    officers.add_parser("list", help="print the officers and their roles")
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
