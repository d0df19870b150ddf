"""Compile the run-search AST (``domain.filters``) into SQL, and keyset ordering.

Params, tags and metrics are matched with correlated EXISTS subqueries on their
own tables, so the runs query never multiplies rows. A metric filter compares
the latest value (``metric_summaries.last_value``); a NaN latest value matches
no comparison, as in IEEE arithmetic. NULL sort values (a run without that
metric, param or tag) sort last in either direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.filters import And, Comparison, Field, Node, Not, Or, OrderKey
from ketch_server.store.schema import metric_summaries, params, runs, tags

__all__ = ["after", "compile_filter", "order_clauses", "order_columns"]

_ATTRIBUTES = {
    "run_id": runs.c.id,
    "display_name": runs.c.display_name,
    "state": runs.c.state,
    "user": runs.c.user,
    "created_by": runs.c.created_by,
    "experiment_id": runs.c.experiment_id,
    "parent_run_id": runs.c.parent_run_id,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
}

_ENTITY = {
    "params": (params, params.c.value),
    "tags": (tags, tags.c.value),
    "metrics": (metric_summaries, metric_summaries.c.last_value),
}


def compile_filter(node: Node) -> ColumnElement[bool]:
    """Translate a parsed filter into a boolean SQL expression over ``runs``."""
    if isinstance(node, And):
        return and_(*[compile_filter(i) for i in node.items])
    if isinstance(node, Or):
        return or_(*[compile_filter(i) for i in node.items])
    if isinstance(node, Not):
        return not_(compile_filter(node.item))
    return _comparison(node)


def _comparison(c: Comparison) -> ColumnElement[bool]:
    if c.field.entity == "attributes":
        return _apply(_ATTRIBUTES[c.field.key], c.op, c.value)
    table, column = _ENTITY[c.field.entity]
    present = exists().where(table.c.run_id == runs.c.id, table.c.key == c.field.key)
    if c.op == "IS NULL":
        return ~present
    if c.op == "IS NOT NULL":
        return present
    return present.where(_apply(column, c.op, c.value))


def _apply(column, op: str, value: Any) -> ColumnElement[bool]:
    ops = {
        "=": lambda: column == value,
        "!=": lambda: column != value,
        "<": lambda: column < value,
        "<=": lambda: column <= value,
        ">": lambda: column > value,
        ">=": lambda: column >= value,
        "LIKE": lambda: column.like(value, escape="\\"),
        "NOT LIKE": lambda: column.not_like(value, escape="\\"),
        "ILIKE": lambda: column.ilike(value, escape="\\"),
        "NOT ILIKE": lambda: column.not_ilike(value, escape="\\"),
        "IN": lambda: column.in_(list(value)),
        "NOT IN": lambda: column.not_in(list(value)),
        "IS NULL": lambda: column.is_(None),
        "IS NOT NULL": lambda: column.is_not(None),
    }
    return ops[op]()


def _value_of(field: Field):
    if field.entity == "attributes":
        return _ATTRIBUTES[field.key]
    table, column = _ENTITY[field.entity]
    return (
        select(column)
        .where(table.c.run_id == runs.c.id, table.c.key == field.key)
        .scalar_subquery()
    )


def order_columns(order: Sequence[OrderKey]) -> list[tuple[Any, bool]]:
    """(expression, descending) per sort key, with the run id as final tie-break.

    Without any key, runs sort newest first (start_time DESC).
    """
    keys = list(order) or [OrderKey(Field("attributes", "start_time"), True)]
    return [(_value_of(k.field), k.descending) for k in keys] + [(runs.c.id, False)]


def order_clauses(sort: Sequence[tuple[Any, bool]]) -> list[Any]:
    return [(expr.desc() if desc else expr.asc()).nulls_last() for expr, desc in sort]


def check_last(sort: Sequence[tuple[Any, bool]], last: Sequence[Any]) -> None:
    """Refuse page-token sort values that do not fit their sort expressions (a token is
    opaque, not signed): text where a number sorts, or a number where text does.

    Raises:
        InvalidArgument(page_token).
    """
    for i, ((expr, _desc), value) in enumerate(zip(sort, last, strict=True)):
        if value is None and i < len(sort) - 1:
            continue  # NULLs sort last; the final key (the run id) is never NULL
        python_type = _python_type(expr)
        numeric = python_type in (int, float)
        if (
            value is None
            or (numeric and isinstance(value, str))
            or (python_type is str and not isinstance(value, str))
        ):
            raise InvalidArgument(
                "page_token", "is not a token this server issued; pass next_page_token unchanged"
            )


def _python_type(expr: Any) -> type | None:
    try:
        return expr.type.python_type
    except (AttributeError, NotImplementedError):
        return None


def after(sort: Sequence[tuple[Any, bool]], last: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the row whose sort values are ``last`` (nulls last)."""
    (expr, desc), value = sort[0], last[0]
    if len(sort) == 1:
        return expr < value if desc else expr > value
    rest = after(sort[1:], last[1:])
    if value is None:
        return and_(expr.is_(None), rest)
    beyond = expr < value if desc else expr > value
    return or_(beyond, expr.is_(None), and_(expr == value, rest))
