"""Keep what other people typed from steering the terminal that shows it.

Names, descriptions, tags, comments and server messages reach the CLI's output. Any
of them may hold control characters: an ESC sequence can clear the screen, rewrite
earlier lines or set the window title, a carriage return can hide the start of a line,
and Unicode bidirectional overrides can show text in another order than it is stored.
The CLI's human-readable output and its error messages go through :func:`escape`,
which shows each such character as a visible escape (``\\x1b``, ``\\u202e``) and leaves
text, newlines and tabs alone. ``--json`` output is already escaped by the encoder.
"""

from __future__ import annotations

import io
import re
from typing import TextIO

__all__ = ["EscapingWriter", "escape"]

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings,
# overrides and isolates; the second also spares carriage returns (progress bars).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_CR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, keep_cr: bool = False) -> str:
    """``text`` with every terminal control character shown as an escape
    (``keep_cr``: but carriage returns)."""
    return (_UNSAFE_BUT_CR if keep_cr else _UNSAFE).sub(_visible, text)


class EscapingWriter(io.TextIOBase):
    """A text stream that escapes what it writes to ``stream`` (see module docstring).

    Args:
        stream: Where the escaped text goes.
        keep_cr: Let carriage returns through (stderr, where progress bars redraw).
    """

    def __init__(self, stream: TextIO, *, keep_cr: bool = False) -> None:
        self._stream = stream
        self._keep_cr = keep_cr

    def write(self, text: str) -> int:
        self._stream.write(escape(text, keep_cr=self._keep_cr))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"
