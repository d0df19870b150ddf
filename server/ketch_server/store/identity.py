"""Principals and API tokens on SQLite and PostgreSQL.

Secrets are never stored: a token row holds the SHA-256 of its secret. Every
method is one transaction. ``last_used_time`` is written at most once a minute
per token, so authenticating is a read, not a write, on the hot path.

Creating and revoking tokens and setting a principal's role append an audit event
(``TOKEN_CREATED``, ``TOKEN_REVOKED``, ``PRINCIPAL_ROLE_SET``, with an empty model)
in the same transaction, to the trail the registry writes (store/audit.py): who can
approve a promotion is part of whether an approval means anything.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ketch_server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from ketch_server.domain.identity import (
    MAX_TOKEN_TTL_SECONDS,
    PrincipalKind,
    Role,
    Token,
    hash_secret,
    new_token_secret,
)
from ketch_server.domain.models import Page
from ketch_server.domain.pagination import decode_token, encode_token, fingerprint
from ketch_server.domain.registry import Action
from ketch_server.store.audit import AuditTrail, Change
from ketch_server.store.base import SqlStore, now_ms
from ketch_server.store.schema import api_tokens, principals

__all__ = ["IdentityStore", "StoredToken"]

_LAST_USED_RESOLUTION_MS = 60_000


def _time(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def _token(row, kind: str | None = None) -> Token:
    return Token(
        id=row["id"],
        principal=row["principal"],
        role=Role[row["role"]],
        description=row["description"],
        created_at=_time(row["create_time"]),  # type: ignore[arg-type]
        created_by=row["created_by"],
        expires_at=_time(row["expire_time"]),
        revoked_at=_time(row["revoke_time"]),
        last_used_at=_time(row["last_used_time"]),
        kind=PrincipalKind(kind) if kind else PrincipalKind.USER,
    )


class StoredToken:
    """A token row with its secret hash, for the authenticator only."""

    __slots__ = ("secret_sha256", "token")

    def __init__(self, token: Token, secret_sha256: str) -> None:
        self.token = token
        self.secret_sha256 = secret_sha256


class IdentityStore(SqlStore):
    """Principals (name, kind, certificate role) and their API tokens."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self._audit = AuditTrail(self._insert)

    async def create_token(
        self,
        principal: str,
        kind: PrincipalKind,
        role: Role,
        description: str,
        ttl_seconds: int,
        created_by: str,
    ) -> tuple[Token, str]:
        """Create a token (and the principal when missing); return it and its bearer secret.

        A principal keeps its kind once created; asking for another kind is
        FAILED_PRECONDITION, so a service account cannot quietly become a person.

        Raises:
            InvalidArgument(ttl_seconds): negative, or more than ten years.
            FailedPrecondition: the principal exists with another kind.
        """
        if ttl_seconds < 0 or ttl_seconds > MAX_TOKEN_TTL_SECONDS:
            raise InvalidArgument(
                "ttl_seconds", f"must be between 0 (never expires) and {MAX_TOKEN_TTL_SECONDS}"
            )
        token_id, secret, bearer = new_token_secret()
        now = now_ms()
        row = {
            "id": token_id,
            "principal": principal,
            "role": role.name,
            "secret_sha256": hash_secret(secret),
            "description": description,
            "create_time": now,
            "created_by": created_by,
            "expire_time": now + ttl_seconds * 1000 if ttl_seconds else None,
            "revoke_time": None,
            "last_used_time": None,
        }
        async with self._tx() as conn:
            existing = await self._principal_kind(conn, principal)
            if existing is None:
                await self._insert_principal(conn, principal, kind, Role.READER, created_by)
            elif existing != kind.value:
                raise FailedPrecondition(
                    f"principal {principal!r} is a {existing}, not a {kind.value}; use another "
                    "name or ask for a token of the existing kind",
                    field="kind",
                )
            await conn.execute(api_tokens.insert().values(row))
            after = {
                "principal": principal,
                "kind": kind.value,
                "role": role.name.lower(),
                "description": description,
                "expire_time": row["expire_time"],
                # A new principal starts with the reader certificate role.
                "principal_created": existing is None,
            }
            created = Change(Action.TOKEN_CREATED, f"tokens/{token_id}", "", None, after)
            await self._audit.append(conn, created_by, [created], now=now)
        return _token(row, kind.value), bearer

    async def token_for_auth(self, token_id: str) -> StoredToken | None:
        """The token ``token_id`` with its secret hash, or None when unknown."""
        stmt = (
            select(api_tokens, principals.c.kind)
            .join(principals, principals.c.name == api_tokens.c.principal)
            .where(api_tokens.c.id == token_id)
        )
        async with self._tx() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        return StoredToken(_token(row, row["kind"]), row["secret_sha256"])

    async def touch_token(self, token_id: str) -> None:
        """Record that the token was used now (at most once a minute per token)."""
        now = now_ms()
        stmt = (
            update(api_tokens)
            .where(api_tokens.c.id == token_id)
            .where(
                (api_tokens.c.last_used_time.is_(None))
                | (api_tokens.c.last_used_time < now - _LAST_USED_RESOLUTION_MS)
            )
            .values(last_used_time=now)
        )
        async with self._tx() as conn:
            await conn.execute(stmt)

    async def list_tokens(
        self, principal: str, include_revoked: bool, page_size: int, page_token: str
    ) -> Page:
        """Tokens in id order (ids are random: the order is stable, not chronological)."""
        query = fingerprint("tokens", principal, include_revoked)
        stmt = select(api_tokens, principals.c.kind).join(
            principals, principals.c.name == api_tokens.c.principal
        )
        if principal:
            stmt = stmt.where(api_tokens.c.principal == principal)
        if not include_revoked:
            stmt = stmt.where(api_tokens.c.revoke_time.is_(None))
        if page_token:
            (last,) = decode_token(page_token, query, 1)
            stmt = stmt.where(api_tokens.c.id > str(last))
        stmt = stmt.order_by(api_tokens.c.id).limit(page_size + 1)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        items = [_token(r, r["kind"]) for r in rows[:page_size]]
        token = encode_token(query, [items[-1].id]) if len(rows) > page_size else ""
        return Page(items, token)

    async def revoke_token(self, token_id: str, actor: str) -> Token:
        """Revoke a token (idempotent: revoking twice keeps the first time, and only
        the first is audited).

        Raises:
            NotFound: no such token.
        """
        now = now_ms()
        async with self._tx() as conn:
            revoked = await conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoke_time.is_(None))
                .values(revoke_time=now)
            )
            row = (
                (
                    await conn.execute(
                        select(api_tokens, principals.c.kind)
                        .join(principals, principals.c.name == api_tokens.c.principal)
                        .where(api_tokens.c.id == token_id)
                    )
                )
                .mappings()
                .first()
            )
            if row is not None and revoked.rowcount == 1:
                after = {"principal": row["principal"], "revoke_time": now}
                change = Change(Action.TOKEN_REVOKED, f"tokens/{token_id}", "", None, after)
                await self._audit.append(conn, actor, [change], now=now)
        if row is None:
            raise NotFound(f"tokens/{token_id}")
        return _token(row, row["kind"])

    async def set_principal_role(
        self, name: str, kind: PrincipalKind, role: Role, created_by: str
    ) -> None:
        """Create or update the certificate role of a principal (audited when it
        changes, with ``created_by`` as the actor)."""
        async with self._tx() as conn:
            # A no-op write first: it takes the row's lock (and SQLite's write lock)
            # before the role is read, so concurrent calls audit what each changed.
            await conn.execute(
                update(principals).where(principals.c.name == name).values(role=principals.c.role)
            )
            stmt = select(principals.c.role, principals.c.kind).where(principals.c.name == name)
            found = (await conn.execute(stmt)).first()
            if found is None:
                await self._insert_principal(conn, name, kind, role, created_by)
            elif found.role != role.name:
                await conn.execute(
                    update(principals).where(principals.c.name == name).values(role=role.name)
                )
            if found is None or found.role != role.name:
                before = None if found is None else {"role": found.role.lower()}
                after = {"role": role.name.lower(), "kind": found.kind if found else kind.value}
                change = Change(Action.PRINCIPAL_ROLE_SET, f"principals/{name}", "", before, after)
                await self._audit.append(conn, created_by, [change], now=now_ms())

    async def principal(self, name: str) -> tuple[PrincipalKind, Role] | None:
        """Kind and certificate role of a principal, or None when unknown."""
        async with self._tx() as conn:
            row = (
                (await conn.execute(select(principals).where(principals.c.name == name)))
                .mappings()
                .first()
            )
        return None if row is None else (PrincipalKind(row["kind"]), Role[row["role"]])

    # ------------------------------------------------------------ helpers

    async def _principal_kind(self, conn, name: str) -> str | None:
        return (
            await conn.execute(select(principals.c.kind).where(principals.c.name == name))
        ).scalar_one_or_none()

    async def _insert_principal(
        self, conn, name: str, kind: PrincipalKind, role: Role, created_by: str
    ) -> None:
        try:
            await conn.execute(
                principals.insert().values(
                    name=name,
                    kind=kind.value,
                    role=role.name,
                    create_time=now_ms(),
                    created_by=created_by,
                )
            )
        except IntegrityError as exc:
            raise FailedPrecondition(
                f"principal {name!r} was created concurrently; retry the call"
            ) from exc
