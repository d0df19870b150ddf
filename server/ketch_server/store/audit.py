"""The audit trail: events appended inside the writer's own transaction, numbered in
commit order without gaps.

Every change appends its events in the same transaction, as its last statements,
numbered from the single counter row ``registry_counters['audit']`` (``INSERT ... ON
CONFLICT DO UPDATE SET value = value + n RETURNING value``). The counter's row lock is
held until commit, so sequence numbers are handed out in commit order and without
gaps: once a reader sees event N, every event below N is visible too. That is what
lets the watch stream resume from a cursor with no gaps and no duplicates across
replicas. (A serial/identity column would not do: on PostgreSQL a transaction holding
id 7 can commit after one holding id 8 was read, and a watcher past 8 would never see
7.) The lock is taken last, so it is held for little more than the commit.

The registry writes most events; identity changes (tokens created and revoked,
principals' roles) are in the same trail with an empty ``model``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BigInteger, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from ketch_server.domain.registry import Action
from ketch_server.store.registry_sql import dump
from ketch_server.store.schema import audit_events, registry_counters

__all__ = ["AUDIT_COUNTER", "AuditTrail", "Change"]

AUDIT_COUNTER = "audit"  # the registry_counters row the sequence numbers come from


@dataclasses.dataclass(frozen=True)
class Change:
    """An audit event waiting for its sequence number."""

    action: Action
    resource: str
    model: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str = ""  # when it differs from the transaction's


class AuditTrail:
    """Appends events to the trail (see the module docstring).

    Args:
        insert: The dialect's ``insert`` (for the counter's ON CONFLICT clause).
    """

    def __init__(self, insert: Callable[[Any], Any]) -> None:
        n = bindparam("n", type_=BigInteger)
        self._count = (
            insert(registry_counters)
            .values(name=AUDIT_COUNTER, value=n)
            .on_conflict_do_update(
                index_elements=[registry_counters.c.name],
                set_={"value": registry_counters.c.value + n},
            )
            .returning(registry_counters.c.value)
        )

    async def append(
        self,
        conn: AsyncConnection,
        actor: str,
        changes: Sequence[Change],
        *,
        now: int,
        request_id: str = "",
    ) -> None:
        """Append ``changes`` (the last statements of the transaction)."""
        if not changes:
            return
        n = len(changes)
        last = (await conn.execute(self._count, {"n": n})).scalar_one()
        await conn.execute(
            audit_events.insert(),
            [
                {
                    "seq": last - n + 1 + i,
                    "event_time": now,
                    "actor": c.actor or actor,
                    "action": c.action.value,
                    "resource": c.resource,
                    "model": c.model,
                    "before_json": dump(c.before),
                    "after_json": dump(c.after),
                    "request_id": request_id,
                }
                for i, c in enumerate(changes)
            ],
        )
