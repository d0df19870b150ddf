"""Prebuilt statements compiled once for a driver's own API (the direct readers)."""

from __future__ import annotations

from typing import Any

__all__ = ["CompiledStatements"]


class CompiledStatements:
    """SQL text in the dialect's parameter style, with the name of each positional
    parameter and the statement's own values (literals such as ``LIMIT 1``), compiled
    once per statement object: the entry keeps the statement alive, so its ``id``
    cannot be reused by another."""

    def __init__(self, dialect: Any) -> None:
        self._dialect = dialect
        self._cache: dict[int, tuple[Any, str, tuple[str, ...], dict[str, Any]]] = {}

    def sql_and_args(self, statement: Any, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and its positional arguments for ``params``."""
        found = self._cache.get(id(statement))
        if found is None or found[0] is not statement:
            compiled = statement.compile(dialect=self._dialect)
            names = tuple(compiled.positiontup or ())
            found = (statement, str(compiled), names, dict(compiled.params))
            self._cache[id(statement)] = found
        _, sql, names, defaults = found
        values = {**defaults, **params}
        return sql, [values[name] for name in names]
