"""Opaque keyset page tokens (AIP-158).

A token carries the sort values and id of the last item of a page, and a
fingerprint of the query that produced it. A token is only valid for the same
query (filter, order, view, scope); anything else is INVALID_ARGUMENT. Tokens
reveal nothing that the caller could not already read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from ketch_server.domain.errors import InvalidArgument

__all__ = ["decode_token", "encode_token", "fingerprint"]

_VERSION = 1


def fingerprint(*parts: Any) -> str:
    """A short stable digest of the query a token belongs to."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_token(query: str, values: Sequence[Any]) -> str:
    """Encode the last item's sort values (JSON-able scalars) for query ``query``."""
    payload = json.dumps({"v": _VERSION, "q": query, "k": list(values)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _plain(value: Any) -> bool:
    """A sort value this server could have written: text, a BIGINT, a float (±inf
    included: metrics may be infinite; NaN is written as None), None."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and not math.isnan(value)


def decode_token(token: str, query: str, arity: int) -> list[Any]:
    """Return the sort values in ``token``.

    Raises:
        InvalidArgument(page_token): when the token is malformed, forged, or was
            made by a different query.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        ok = (
            isinstance(payload, dict)
            and payload.get("v") == _VERSION
            and isinstance(payload.get("k"), list)
            and len(payload["k"]) == arity
            and all(_plain(v) for v in payload["k"])
        )
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep JSON nesting too
        ok = False
    if not ok:
        raise InvalidArgument(
            "page_token", "is not a token this server issued; pass next_page_token unchanged"
        )
    if payload.get("q") != query:
        raise InvalidArgument(
            "page_token",
            "belongs to a different query; keep filter, order_by and view the same across pages",
        )
    return payload["k"]
