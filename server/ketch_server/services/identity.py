"""Authentication and token management.

:class:`IdentityService` turns credentials into a :class:`Principal`:

* a bearer token ``ketch_<id>_<secret>``: the row is found by id, the secret's
  SHA-256 compared in constant time, revocation and expiry checked;
* a client certificate's subject common name (mTLS): the principal's stored role,
  or the server's default certificate role for names not registered.

Verified token rows are cached per replica for ``cache_seconds`` (default 5):
a revocation takes effect at once on the replica that revoked, and within that
time on the others. Unknown token ids are cached too, so a client hammering
with garbage costs one query per id per period, not one per call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from ketch_server.domain.errors import InvalidArgument, Unauthenticated
from ketch_server.domain.identity import (
    Principal,
    PrincipalKind,
    Role,
    Token,
    check_principal_name,
    parse_token,
    secret_matches,
)
from ketch_server.domain.models import Page
from ketch_server.domain.validation import check_page_size
from ketch_server.store.identity import IdentityStore, StoredToken

__all__ = ["IdentityService"]

log = logging.getLogger("ketch.auth")

_TOUCH_EVERY_SECONDS = 60.0
_MAX_DESCRIPTION = 512


class IdentityService:
    """Authenticates callers and manages tokens. Safe for concurrent use in one loop."""

    def __init__(
        self,
        store: IdentityStore,
        *,
        cache_seconds: float = 5.0,
        certificate_role: Role = Role.READER,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.certificate_role = certificate_role
        self._cache: dict[str, tuple[float, StoredToken | None]] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ authenticate

    async def authenticate_bearer(self, bearer: str) -> Principal:
        """The principal of a bearer token.

        Raises:
            Unauthenticated: malformed, unknown, wrong secret, revoked or expired.
        """
        token_id, secret = parse_token(bearer)
        stored = await self._lookup(token_id)
        if stored is None or not secret_matches(secret, stored.secret_sha256):
            raise Unauthenticated(
                "the API token is not valid on this server; check KETCH_API_TOKEN or create "
                "a token with `ketch admin token create`",
                reason="TOKEN_INVALID",
            )
        token = stored.token
        now = dt.datetime.now(dt.timezone.utc)
        if token.revoked_at is not None:
            raise Unauthenticated(
                f"API token {token.id} was revoked; ask an admin for a new one",
                reason="TOKEN_REVOKED",
            )
        if token.expires_at is not None and now >= token.expires_at:
            raise Unauthenticated(
                f"API token {token.id} expired at {token.expires_at.isoformat()}; ask an "
                "admin for a new one",
                reason="TOKEN_EXPIRED",
            )
        self._touch_later(token.id)
        return Principal(token.principal, token.kind, token.role, "token", token.id)

    async def authenticate_certificate(self, common_name: str) -> Principal:
        """The principal of a verified client certificate with subject CN ``common_name``.

        Raises:
            Unauthenticated: the certificate has no usable common name.
        """
        try:
            check_principal_name(common_name)
        except Exception:
            raise Unauthenticated(
                "the client certificate's subject common name is not a valid principal "
                "name; issue certificates with CN=<principal>",
                reason="CERTIFICATE_NAME_INVALID",
            ) from None
        known = await self.store.principal(common_name)
        kind, role = known if known is not None else (PrincipalKind.USER, self.certificate_role)
        return Principal(common_name, kind, role, "mtls")

    async def _lookup(self, token_id: str) -> StoredToken | None:
        now = time.monotonic()
        hit = self._cache.get(token_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        stored = await self.store.token_for_auth(token_id)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[token_id] = (now + self.cache_seconds, stored)
        return stored

    def _touch_later(self, token_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(token_id, -_TOUCH_EVERY_SECONDS) < _TOUCH_EVERY_SECONDS:
            return
        self._touched[token_id] = now
        task = asyncio.get_running_loop().create_task(self._touch(token_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, token_id: str) -> None:
        try:
            await self.store.touch_token(token_id)
        except Exception as exc:  # bookkeeping only: never fail a call for it
            log.debug("could not record the use of token %s: %s", token_id, exc)

    # ------------------------------------------------------------ manage

    async def create_token(
        self,
        actor: Principal,
        principal: str,
        kind: PrincipalKind,
        role: Role,
        description: str,
        ttl_seconds: int,
    ) -> tuple[Token, str]:
        """A new token for ``principal`` (created when missing); returns it and the bearer."""
        check_principal_name(principal)
        if len(description) > _MAX_DESCRIPTION:
            raise InvalidArgument("description", f"is longer than {_MAX_DESCRIPTION} characters")
        token, bearer = await self.store.create_token(
            principal, kind, role, description, ttl_seconds, actor.name
        )
        log.info(
            "token created",
            extra={
                "token": token.id,
                "principal": principal,
                "role": role.name.lower(),
                "actor": actor.name,
            },
        )
        return token, bearer

    async def list_tokens(
        self, principal: str, include_revoked: bool, page_size: int, page_token: str
    ) -> Page:
        if principal:
            check_principal_name(principal)
        return await self.store.list_tokens(
            principal, include_revoked, check_page_size(page_size), page_token
        )

    async def revoke_token(self, actor: Principal, token_id: str) -> Token:
        token = await self.store.revoke_token(token_id, actor.name)
        self._cache.pop(token_id, None)
        log.info("token revoked", extra={"token": token_id, "actor": actor.name})
        return token

    async def set_principal_role(
        self, actor: Principal, name: str, kind: PrincipalKind, role: Role
    ) -> None:
        check_principal_name(name)
        await self.store.set_principal_role(name, kind, role, actor.name)
        log.info(
            "principal role set",
            extra={"principal": name, "role": role.name.lower(), "actor": actor.name},
        )
