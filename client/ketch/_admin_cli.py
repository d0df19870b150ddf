"""``ketch admin``: API tokens and the caller's identity.

Two ways to reach the tokens:

* through a server (``--uri``, with an admin token in KETCH_API_TOKEN), or
* straight on the server's database with ``--data-dir DIR`` or ``--db URL`` — how
  the first admin token is made, since a server with ``--auth token`` accepts no
  call without one. The schema is migrated first when needed.

``token create`` prints the secret once, as the last word of its output, so a
script can take it with ``| awk 'END {print $NF}'``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import getpass
import json
import pathlib
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

from ketch import _admin, errors
from ketch._client import Client

__all__ = ["add_admin_command"]

_SERVER_MISSING = "direct database access needs the server: pip install 'ketch[server]'"
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str) -> int:
    found = _DURATION.match(text.strip().lower())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def add_admin_command(
    commands, common: argparse.ArgumentParser, client: Callable[[argparse.Namespace], Client]
) -> None:
    admin = commands.add_parser("admin", help="API tokens and identity (admin role)")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")

    who = actions.add_parser("whoami", parents=[common], help="who the server thinks you are")
    who.set_defaults(handler=lambda a: _whoami(a, client))

    token = actions.add_parser("token", help="create, list and revoke API tokens")
    verbs = token.add_subparsers(dest="verb", required=True, metavar="VERB")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--data-dir", type=pathlib.Path, help="work on the database of this server data directory"
    )
    database.add_argument("--db", help="work on this database URL instead of through a server")

    create = verbs.add_parser(
        "create", parents=[common, database], help="create a token; prints the secret once"
    )
    create.add_argument("--name", required=True, help="principal, e.g. alice or ci-bot")
    create.add_argument("--role", required=True, choices=_admin.ROLES)
    create.add_argument("--kind", default="user", choices=_admin.KINDS)
    create.add_argument("--description", default="", help="what the token is for")
    create.add_argument(
        "--ttl", type=_duration, default=0, help="lifetime: 3600, 90m, 12h, 30d (default: none)"
    )
    create.set_defaults(handler=lambda a: _create(a, client))

    ls = verbs.add_parser("list", parents=[common, database], help="list tokens")
    ls.add_argument("--principal", default="", help="only this principal's tokens")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.set_defaults(handler=lambda a: _list(a, client))

    revoke = verbs.add_parser("revoke", parents=[common, database], help="revoke a token")
    revoke.add_argument("token_id", help="the token id (16 hex digits, from `token list`)")
    revoke.set_defaults(handler=lambda a: _revoke(a, client))


# ------------------------------------------------------------------ verbs


def _whoami(args: argparse.Namespace, client: Callable[[argparse.Namespace], Client]) -> int:
    with client(args) as c:
        who = _admin.whoami(c._transport)
    if args.json:
        print(json.dumps(dataclasses.asdict(who), sort_keys=True))
    else:
        print(f"{who.principal} ({who.kind}), role {who.role}, by {who.authenticated_by}")
    return 0


def _create(args: argparse.Namespace, client: Callable[[argparse.Namespace], Client]) -> int:
    if _direct(args):
        record, secret = _on_database(args, "create")
    else:
        with client(args) as c:
            record, secret = _admin.create_token(
                c._transport,
                args.name,
                args.role,
                kind=args.kind,
                description=args.description,
                ttl_seconds=args.ttl,
            )
    if args.json:
        print(json.dumps({"token": _token_json(record), "secret": secret}, sort_keys=True))
        return 0
    expiry = record.expire_time.isoformat() if record.expire_time else "never"
    print(
        f"created token {record.id} for {record.principal} (role {record.role}, expires {expiry})"
    )
    print("it is shown only now; store it as KETCH_API_TOKEN:")
    print(secret)
    return 0


def _list(args: argparse.Namespace, client: Callable[[argparse.Namespace], Client]) -> int:
    if _direct(args):
        records = _on_database(args, "list")
    else:
        with client(args) as c:
            records = list(
                _admin.list_tokens(c._transport, args.principal, include_revoked=args.all)
            )
    if args.json:
        print(json.dumps({"tokens": [_token_json(r) for r in records]}, sort_keys=True))
        return 0
    if not records:
        print("no tokens")
        return 0
    header = ("id", "principal", "role", "created", "expires", "revoked", "last used")
    rows = [
        (
            r.id,
            r.principal,
            r.role,
            _when(r.create_time),
            _when(r.expire_time) or "never",
            _when(r.revoke_time),
            _when(r.last_used_time),
        )
        for r in records
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace, client: Callable[[argparse.Namespace], Client]) -> int:
    if _direct(args):
        record = _on_database(args, "revoke")
    else:
        with client(args) as c:
            record = _admin.revoke_token(c._transport, args.token_id)
    if args.json:
        print(json.dumps({"token": _token_json(record)}, sort_keys=True))
    else:
        print(f"revoked token {record.id} of {record.principal} at {_when(record.revoke_time)}")
    return 0


# --------------------------------------------------------------- database


def _direct(args: argparse.Namespace) -> bool:
    return bool(args.data_dir or args.db)


def _on_database(args: argparse.Namespace, verb: str) -> Any:
    """Run a token verb straight on the server's database (migrating it first)."""
    try:
        from ketch_server.domain.errors import KetchError
        from ketch_server.domain.identity import Principal, PrincipalKind, Role
        from ketch_server.services.identity import IdentityService
        from ketch_server.settings import from_args
        from ketch_server.store.engine import create_engine, redact_url, upgrade_schema
        from ketch_server.store.identity import IdentityStore
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        print(f"ketch: {_SERVER_MISSING}", file=sys.stderr)
        sys.exit(2)
    settings = from_args(argparse.Namespace(db_url=args.db, data_dir=args.data_dir))
    if settings.db_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    actor = Principal(
        f"database:{getpass.getuser()}@{socket.gethostname()}"[:128],
        PrincipalKind.USER,
        Role.ADMIN,
        "database",
    )

    async def work() -> Any:
        engine = create_engine(settings.database_url)
        try:
            await upgrade_schema(engine)
            service = IdentityService(IdentityStore(engine))
            if verb == "create":
                token, secret = await service.create_token(
                    actor,
                    args.name,
                    PrincipalKind(args.kind),
                    Role.parse(args.role),
                    args.description,
                    args.ttl,
                )
                return _record(token), secret
            if verb == "list":
                out: list[_admin.TokenRecord] = []
                page_token = ""
                while True:
                    page = await service.list_tokens(args.principal, args.all, 1000, page_token)
                    out.extend(_record(t) for t in page.items)
                    page_token = page.next_page_token
                    if not page_token:
                        return out
            return _record(await service.revoke_token(actor, args.token_id))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(work())
    except KetchError as exc:
        raise errors.KetchError(exc.message) from None
    except (SQLAlchemyError, OSError) as exc:
        print(f"ketch: database {redact_url(settings.database_url)}: {exc}", file=sys.stderr)
        sys.exit(1)


def _record(token: Any) -> _admin.TokenRecord:
    return _admin.TokenRecord(
        id=token.id,
        principal=token.principal,
        role=token.role.name.lower(),
        description=token.description,
        created_by=token.created_by,
        create_time=token.created_at,
        expire_time=token.expires_at,
        revoke_time=token.revoked_at,
        last_used_time=token.last_used_at,
    )


# ----------------------------------------------------------------- output


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _token_json(r: _admin.TokenRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "principal": r.principal,
        "role": r.role,
        "description": r.description,
        "created_by": r.created_by,
        "create_time": _when(r.create_time) or None,
        "expire_time": _when(r.expire_time) or None,
        "revoke_time": _when(r.revoke_time) or None,
        "last_used_time": _when(r.last_used_time) or None,
    }
