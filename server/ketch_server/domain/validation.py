"""Input rules and the explicit limits behind them.

Every check raises :class:`InvalidArgument` naming the offending field, or
:class:`ResourceExhausted` naming the limit, before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ketch_server.domain.errors import InvalidArgument, ResourceExhausted
from ketch_server.domain.models import MetricColumns

__all__ = [
    "LIMITS",
    "Limits",
    "check_display_name",
    "check_key",
    "check_mapping",
    "check_metric_columns",
    "check_page_size",
    "check_text",
]


class Limits:
    """The explicit limits of the tracking API (documented in the README)."""

    display_name_chars = 256
    description_chars = 10_000
    key_chars = 250
    param_value_chars = 6_000
    tag_value_chars = 8_000
    user_chars = 256
    request_id_chars = 128
    params_per_call = 1_000
    tags_per_call = 1_000
    points_per_batch = 100_000
    keys_per_batch = 1_000
    runs_per_read = 100
    max_points = 1_000_000
    default_page_size = 100
    max_page_size = 1_000
    max_step = 2**63 - 1
    max_timestamp_ms = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


LIMITS = Limits()

# Printable, no control characters; keys additionally restrict their alphabet.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEY = re.compile(r"^[A-Za-z0-9_\-. /:@=+]+$")


def check_text(field: str, value: str, max_chars: int, *, required: bool = False) -> str:
    """Check a free-text field: length bound, no NUL or other control characters
    (tabs and newlines allowed)."""
    if required and not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidArgument(field, f"is {len(value)} characters long; the limit is {max_chars}")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def check_display_name(field: str, value: str, *, required: bool = True) -> str:
    """A one-line human name: 1..256 characters, no control characters, not padded."""
    check_text(field, value, LIMITS.display_name_chars, required=required)
    if _CONTROL.search(value):
        raise InvalidArgument(field, "must not contain control characters or newlines")
    if value != value.strip():
        raise InvalidArgument(field, "must not start or end with whitespace")
    return value


def check_key(field: str, key: str) -> str:
    """A param, tag or metric key: 1..250 of letters, digits and ``_-. /:@=+``."""
    if not key:
        raise InvalidArgument(field, "key must not be empty")
    if len(key) > LIMITS.key_chars:
        raise InvalidArgument(
            field, f"key is {len(key)} characters; the limit is {LIMITS.key_chars}"
        )
    if not _KEY.match(key) or key != key.strip():
        raise InvalidArgument(
            field,
            f"key {key[:80]!r} may only hold letters, digits, spaces and _-./:@=+ "
            "and must not start or end with a space",
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgument(field, f"key {key!r} must not start with / or hold a '..' segment")
    return key


def check_mapping(field: str, items: Mapping[str, str], max_items: int, max_value: int) -> None:
    """Check the keys and values of a params or tags map."""
    if len(items) > max_items:
        raise ResourceExhausted(
            f"{field}_per_call",
            f"{field}: {len(items)} entries in one call; the limit is {max_items}",
        )
    for key, value in items.items():
        check_key(f"{field}[{key[:80]}]", key)
        check_text(f"{field}[{key}]", value, max_value)


def check_page_size(page_size: int) -> int:
    """Return the effective page size: default when 0, error when negative or too big."""
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if page_size > LIMITS.max_page_size:
        raise InvalidArgument(
            "page_size", f"{page_size} exceeds the limit of {LIMITS.max_page_size}"
        )
    return page_size or LIMITS.default_page_size


def check_metric_columns(batch: MetricColumns) -> None:
    """Check a columnar batch: equal lengths, known key indexes, valid keys, sane bounds.

    Values may be NaN or ±inf (stored faithfully); steps and timestamps are integers.
    """
    n = len(batch.values)
    if n > LIMITS.points_per_batch:
        raise ResourceExhausted(
            "points_per_batch",
            f"batch: {n} points in one batch; the limit is {LIMITS.points_per_batch}. "
            "Split the batch (the SDK does this for you).",
        )
    if len(batch.keys) > LIMITS.keys_per_batch:
        raise ResourceExhausted(
            "keys_per_batch",
            f"batch.keys: {len(batch.keys)} keys; the limit is {LIMITS.keys_per_batch}",
        )
    for name, column in (("key_index", batch.key_index), ("steps", batch.steps)):
        if len(column) != n:
            raise InvalidArgument(f"batch.{name}", f"has {len(column)} entries but values has {n}")
    if len(batch.timestamps) not in (0, n):
        raise InvalidArgument(
            "batch.timestamps_ms", f"has {len(batch.timestamps)} entries; expected 0 or {n}"
        )
    if len(set(batch.keys)) != len(batch.keys):
        raise InvalidArgument("batch.keys", "holds the same key twice")
    for i, key in enumerate(batch.keys):
        check_key(f"batch.keys[{i}]", key)
    if not n:
        return
    highest = int(np.max(batch.key_index))
    if highest >= len(batch.keys):
        raise InvalidArgument("batch.key_index", f"index {highest} has no key")
    if len(batch.timestamps):
        if int(np.min(batch.timestamps)) < 0:
            raise InvalidArgument("batch.timestamps_ms", "timestamps must not be negative")
        if int(np.max(batch.timestamps)) > LIMITS.max_timestamp_ms:
            raise InvalidArgument(
                "batch.timestamps_ms", "timestamp is after year 9999; use milliseconds"
            )


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
