"""What the integrations share: optional imports, metric and param cleaning, stable ids.

Frameworks hand over keys and values ketch would refuse (``eval/loss (avg)``,
tensors, ``None``); these helpers turn them into what the tracking API takes,
so an integration never fails a training loop over a name.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import numbers
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["clean_key", "metric_values", "param_values", "require", "stable_id"]

log = logging.getLogger("ketch")

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:@=+]")
_KEY_CHARS = 250
_PARAM_CHARS = 6_000


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module``, or raise ImportError saying which ketch extra installs it.

    Args:
        module: the framework module, e.g. ``"optuna"`` or ``"ray.tune"``.
        extra: the ketch extra that installs it, e.g. ``"optuna"``.

    Raises:
        ImportError: the framework is not installed (or its import is blocked).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        raise ImportError(
            f"ketch.integrations.{extra} needs {top}, which is not installed; "
            f'install it with: pip install "ketch[{extra}]"'
        ) from exc


def clean_key(key: Any) -> str:
    """A metric, param or tag key the server accepts: other characters become ``_``."""
    text = _BAD_KEY_CHARS.sub("_", str(key)).strip().lstrip("/")
    text = "/".join("_" if part == ".." else part for part in text.split("/"))
    return text[:_KEY_CHARS].strip() or "_"


def _number(value: Any) -> float | None:
    """``value`` as a float when it is one number (Python, numpy or torch scalar)."""
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if not callable(item):
        return None
    try:
        scalar = item()
    except (TypeError, ValueError, RuntimeError):  # arrays and tensors of several values
        return None
    return float(scalar) if isinstance(scalar, numbers.Real) else None


def metric_values(values: Mapping[str, Any], *, prefix: str = "") -> dict[str, float]:
    """The numeric entries of ``values`` with clean keys; other entries are skipped.

    Args:
        values: name → value (numbers, numpy or torch scalars, anything else).
        prefix: put before every key, e.g. ``"train/"``.
    """
    out: dict[str, float] = {}
    for key, value in values.items():
        number = _number(value)
        if number is not None:
            out[clean_key(f"{prefix}{key}")] = number
    return out


def _flat(values: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            _flat(value, f"{name}.", out)
        else:
            out[name] = value


def param_values(values: Mapping[str, Any]) -> dict[str, str]:
    """Params with clean, dotted keys and string values the server accepts.

    Nested mappings become dotted keys, floats keep their ``repr``, values longer
    than the server's limit are cut (with a warning) and control characters other
    than tab and newline become spaces.
    """
    flat: dict[str, Any] = {}
    _flat(values, "", flat)
    out: dict[str, str] = {}
    for key, value in flat.items():
        text = repr(value) if isinstance(value, float) else str(value)
        text = "".join(c if c in "\t\n" or c.isprintable() else " " for c in text)
        if len(text) > _PARAM_CHARS:
            log.warning(
                "ketch: param %r is %d characters; keeping the first %d",
                key,
                len(text),
                _PARAM_CHARS,
            )
            text = text[:_PARAM_CHARS]
        out[clean_key(key)] = text
    return out


def stable_id(*parts: Any) -> str:
    """A 32-character request id derived from ``parts``: the same parts in any
    process give the same id, so their ``ketch.init(request_id=...)`` share a run."""
    raw = "\0".join(str(p) for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def finite(value: float | None) -> bool:
    """Whether ``value`` is a finite number."""
    return value is not None and math.isfinite(value)
