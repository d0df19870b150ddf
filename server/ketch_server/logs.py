"""Structured logging: one line per event, key=value text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        extra = " ".join(f"{k}={v}" for k, v in list(fields.items())[4:] if k != "traceback")
        line = f"{fields['time']} {fields['level']:<7} {fields['logger']}: {fields['msg']}"
        line = f"{line} {extra}" if extra else line
        return f"{line}\n{fields['traceback']}" if "traceback" in fields else line


def configure_logging(level: str = "INFO", *, as_json: bool = False) -> None:
    """Send ketch's logs to stderr, one event per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger("ketch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
