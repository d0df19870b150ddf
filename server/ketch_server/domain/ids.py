"""Identifiers and resource names.

Ids are 32 lowercase hex digits whose first 12 encode the creation time in
milliseconds, so sorting by id sorts by creation (like UUIDv7) and keyset
pagination over ids is stable.
"""

from __future__ import annotations

import os
import re
import time

from ketch_server.domain.errors import InvalidArgument

__all__ = ["EXPERIMENT", "RUN", "new_id", "parse_name"]

EXPERIMENT = "experiments"
RUN = "runs"

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A new time-ordered, random 128-bit id as 32 hex digits."""
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{os.urandom(10).hex()}"


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
