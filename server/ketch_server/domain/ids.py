"""Identifiers and resource names.

Ids are 32 lowercase hex digits whose first 12 encode the creation time in
milliseconds, so sorting by id sorts by creation (like UUIDv7) and keyset
pagination over ids is stable.
"""

from __future__ import annotations

import os
import re
import threading
import time

from ketch_server.domain.errors import InvalidArgument

__all__ = ["EXPERIMENT", "RUN", "new_id", "parse_name"]

EXPERIMENT = "experiments"
RUN = "runs"

_ID = re.compile(r"^[0-9a-f]{32}$")


_lock = threading.Lock()
_last = [0, 0]  # last millisecond used, sequence within it


def new_id() -> str:
    """A new time-ordered 128-bit id as 32 hex digits: 48 bits of milliseconds, a
    16-bit sequence (ids made by one process sort in creation order, even within a
    millisecond), then 64 random bits."""
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis <= _last[0]:
            millis, seq = _last[0], _last[1] + 1
            if seq > 0xFFFF:
                millis, seq = millis + 1, 0
        else:
            seq = 0
        _last[:] = [millis, seq]
    return f"{millis:012x}{seq:04x}{os.urandom(8).hex()}"


def parse_name(value: str, collection: str, *, field: str) -> str:
    """Return the id from a resource name ``{collection}/{id}``.

    A bare id is accepted too, as SDK users often hold ids rather than names.

    Raises:
        InvalidArgument: when ``value`` is empty or not of that shape.
    """
    if not value:
        raise InvalidArgument(field, f"required: give a resource name like {collection}/<id>")
    prefix, sep, ident = value.rpartition("/")
    if sep and prefix != collection:
        raise InvalidArgument(field, f"{value!r} is not a {collection}/<id> resource name")
    if not _ID.match(ident):
        raise InvalidArgument(field, f"{value!r} is not a valid id (expected 32 hex digits)")
    return ident
