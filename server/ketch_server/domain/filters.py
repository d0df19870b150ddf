r"""The run-search filter language and the ``order_by`` parser.

``SearchRuns`` takes a filter such as::

    params.lr = "0.01" and metrics.val_loss < 0.3 and tags.team = "search"

and a list of order keys such as ``["metrics.val_loss ASC", "start_time DESC"]``.
This module turns both into a small tree of frozen dataclasses (``Comparison``,
``And``, ``Or``, ``Not``, ``OrderKey``) that the storage layer compiles into SQL
with bound parameters. Nothing here builds SQL text, so the language is safe from
injection by construction; input that is not in the grammar fails with
``InvalidArgument`` naming the offending token and its position.

Grammar (keywords, entity names and attribute names are case-insensitive; keys
are case-sensitive)::

    filter     := or_expr | ""                 empty or blank: match every run
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := unary ("AND" unary)*         AND binds tighter than OR
    unary      := "NOT" unary | "(" or_expr ")" | comparison
    comparison := ident op literal
                | ident ["NOT"] "IN" "(" literal ("," literal)* ")"
                | ident "IS" ["NOT"] "NULL"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
                | ["NOT"] "LIKE" | ["NOT"] "ILIKE"
    ident      := entity "." key | attribute | `entity.key with spaces` | `attribute`
    entity     := params | param | tags | tag | metrics | metric
                | attributes | attribute | attr | run
    key        := [A-Za-z0-9_\-/:.]+ | `any text` | "any text"   (at most 250 characters)
    literal    := 'string' | "string" | number | TRUE | FALSE

Strings accept the escapes \' \" \` and \\ (backslash before a quote or a
backslash); any other backslash is kept as written, so ``'50\%'`` reaches LIKE
unchanged. Numbers are decimal integers or floats with an optional sign and
exponent; NaN and infinity are not allowed. Integers must fit in 64 bits.

Attributes (aliases in brackets)::

    run_id, display_name [name, run_name], state [status], user, experiment_id,
    parent_run_id, start_time, end_time      (times are integers, unix milliseconds)

Type rules:

* ``params.*`` and ``tags.*`` hold strings: ``params.lr = 0.01`` is an error that
  suggests ``params.lr = "0.01"``. They allow every operator; ``<``, ``>`` etc.
  compare lexicographically.
* ``metrics.*`` hold numbers and allow ``= != < <= > >=``, ``[NOT] IN`` and
  ``IS [NOT] NULL``; ``TRUE``/``FALSE`` stand for 1.0/0.0. Values become floats.
* String attributes allow ``= !=``, ``[NOT] LIKE``, ``[NOT] ILIKE`` and ``[NOT] IN``;
  ``parent_run_id`` also ``IS [NOT] NULL``.
* ``state`` allows ``= !=`` and ``[NOT] IN``; values are matched case-insensitively
  against RUNNING, FINISHED, FAILED and KILLED and normalised to upper case.
* ``start_time`` and ``end_time`` take integers with ``= != < <= > >=`` and
  ``[NOT] IN``; ``end_time`` also ``IS [NOT] NULL``.

Examples::

    metrics.val_loss < 0.3 AND (tags.team = "search" OR tags.team = "ads")
    NOT params.optimizer IN ("sgd", "adam") AND state = "finished"
    metrics.`val loss` <= 1e-3 AND name ILIKE 'bert-%' AND end_time IS NOT NULL

An ``order_by`` item is ``ident ["ASC" | "DESC"]`` (default ASC), for example
``"metrics.val_loss"``, ``"start_time DESC"`` or ``"`metrics.my key` desc"``.

Limits: a filter (or order_by item) of at most ``MAX_FILTER_LENGTH`` characters,
at most ``MAX_CLAUSES`` comparisons, at most ``MAX_DEPTH`` levels of parentheses
and NOT, and at most ``MAX_ORDER_BY_KEYS`` order keys. Positions in error
messages are 0-based character offsets into the filter or order_by item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from ketch_server.domain.errors import InvalidArgument

__all__ = [
    "MAX_CLAUSES",
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_KEY_LENGTH",
    "MAX_ORDER_BY_KEYS",
    "RUN_STATES",
    "And",
    "Comparison",
    "Field",
    "Node",
    "Not",
    "Or",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
]

MAX_FILTER_LENGTH = 4096
MAX_CLAUSES = 64
MAX_DEPTH = 16
MAX_KEY_LENGTH = 250
MAX_ORDER_BY_KEYS = 8

RUN_STATES = ("RUNNING", "FINISHED", "FAILED", "KILLED")

Entity = Literal["params", "tags", "metrics", "attributes"]


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Field:
    """What a comparison or order key looks at.

    Attributes:
        entity: ``"params"``, ``"tags"``, ``"metrics"`` or ``"attributes"``.
        key: The param/tag/metric key, or the canonical attribute name
            (``"display_name"``, never the alias ``"name"``).
    """

    entity: Entity
    key: str


@dataclass(frozen=True)
class Comparison:
    """One test of a field against a value.

    Attributes:
        field: The field tested.
        op: One of ``= != < <= > >= LIKE ILIKE``, ``NOT LIKE``, ``NOT ILIKE``, ``IN``,
            ``NOT IN``, ``IS NULL``, ``IS NOT NULL``.
        value: A ``str`` (params, tags, string attributes), ``float`` (metrics) or
            ``int`` (times); a tuple of those for ``IN``/``NOT IN``; ``None`` for
            ``IS [NOT] NULL``.
    """

    field: Field
    op: str
    value: str | float | int | tuple | None


@dataclass(frozen=True)
class And:
    """True when every item is true."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """True when any item is true."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """True when the item is false."""

    item: Node


Node = Comparison | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    """One ``order_by`` key.

    Attributes:
        field: The field to sort on.
        descending: True for DESC, False for ASC (the default).
    """

    field: Field
    descending: bool = False


# -------------------------------------------------------------------- vocabulary

_ENTITIES: dict[str, Entity] = {
    "params": "params",
    "param": "params",
    "tags": "tags",
    "tag": "tags",
    "metrics": "metrics",
    "metric": "metrics",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}


@dataclass(frozen=True)
class _Attribute:
    kind: Literal["string", "state", "time"]
    nullable: bool = False
    orderable: bool = True


_ATTRIBUTES = {
    "run_id": _Attribute("string"),
    "display_name": _Attribute("string"),
    "state": _Attribute("state"),
    "user": _Attribute("string"),
    "created_by": _Attribute("string", nullable=True),
    "experiment_id": _Attribute("string"),
    "parent_run_id": _Attribute("string", nullable=True, orderable=False),
    "start_time": _Attribute("time"),
    "end_time": _Attribute("time", nullable=True),
}
_ATTRIBUTE_ALIASES = {"name": "display_name", "run_name": "display_name", "status": "state"}

_EQUALITY = ("=", "!=")
_ORDERING = ("=", "!=", "<", "<=", ">", ">=")
_PATTERN = ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")
_MEMBERSHIP = ("IN", "NOT IN")
_NULLNESS = ("IS NULL", "IS NOT NULL")

_SYMBOL_OPS = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "TRUE", "FALSE"})
_NON_FINITE = frozenset({"nan", "inf", "infinity"})

_FILTER_EXAMPLE = 'a comparison such as params.lr = "0.01"'
_ORDER_EXAMPLE = "a field such as metrics.val_loss or start_time"


@dataclass(frozen=True)
class _Rule:
    """What a field accepts: its operators and the type of its values."""

    ops: tuple[str, ...]
    value: Literal["string", "number", "state", "time"]


def _rule_for(field: Field) -> _Rule:
    """Returns the operators and value type ``field`` accepts."""
    if field.entity in ("params", "tags"):
        return _Rule(_ORDERING + _PATTERN + _MEMBERSHIP + _NULLNESS, "string")
    if field.entity == "metrics":
        return _Rule(_ORDERING + _MEMBERSHIP + _NULLNESS, "number")
    attribute = _ATTRIBUTES[field.key]
    nulls = _NULLNESS if attribute.nullable else ()
    if attribute.kind == "state":
        return _Rule(_EQUALITY + _MEMBERSHIP, "state")
    if attribute.kind == "time":
        return _Rule(_ORDERING + _MEMBERSHIP + nulls, "time")
    return _Rule(_EQUALITY + _PATTERN + _MEMBERSHIP + nulls, "string")


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-/:.]+")


def _show(field: Field) -> str:
    """Renders ``field`` as a user would write it, for messages."""
    if field.entity == "attributes":
        return field.key
    if _BARE_KEY.fullmatch(field.key):
        return f"{field.entity}.{field.key}"
    return f"{field.entity}.`{field.key}`"


def _quote(text: str, limit: int = 40) -> str:
    """Quotes source text for a message, shortening long text."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'"


# ---------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    """A token: its kind, source text, start offset and decoded value.

    Kinds: ``WORD`` (bare word or keyword), ``QUOTED_IDENT`` (backquoted; value is
    the content), ``ENTITY_KEY`` (``params."key"``; value is ``(prefix, key)``),
    ``STRING``, ``NUMBER``, ``OP``, ``(``, ``)``, ``,`` and ``END``.
    """

    kind: str
    text: str
    pos: int
    value: object = None


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-/:.]*")
_WORD_TAIL = re.compile(r"[A-Za-z0-9_\-/:.]*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPERATOR = re.compile(r"==|!=|<>|<=|>=|=|<|>")
_ESCAPABLE = "'\"`\\"
_INT64 = 2**63


class _Tokenizer:
    """Splits source text into tokens; errors name ``field`` and ``label``."""

    def __init__(self, text: str, field: str, label: str) -> None:
        self._text = text
        self._field = field
        self._label = label

    def error(self, message: str) -> InvalidArgument:
        """Builds the error to raise, prefixed with the item label if any."""
        prefix = f"{self._label}: " if self._label else ""
        return InvalidArgument(self._field, prefix + message)

    def tokens(self) -> Iterator[_Token]:
        """Yields the tokens of the text lazily, ending with an ``END`` token.

        Lazy, so that a syntax error is reported before a bad character further on.
        """
        pos, text = 0, self._text
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                yield _Token("END", "", pos)
                return
            token = self._token_at(pos)
            yield token
            pos += len(token.text)

    def _token_at(self, pos: int) -> _Token:
        """Reads the token that starts at ``pos``."""
        char = self._text[pos]
        if char in "(),":
            return _Token(char, char, pos)
        if char in "'\"":
            value, end = self._quoted(pos)
            return _Token("STRING", self._text[pos:end], pos, value)
        if char == "`":
            value, end = self._quoted(pos)
            return _Token("QUOTED_IDENT", self._text[pos:end], pos, value)
        match = _OPERATOR.match(self._text, pos)
        if match:
            return _Token("OP", match.group(), pos)
        if _NUMBER.match(self._text, pos):
            return self._number(pos)
        if _WORD.match(self._text, pos):
            return self._word(pos)
        raise self.error(f"unexpected character {_quote(char)} at position {pos}")

    def _quoted(self, start: int) -> tuple[str, int]:
        """Reads a quoted string or key at ``start``; returns its content and end."""
        text, quote = self._text, self._text[start]
        chars, pos = [], start + 1
        while pos < len(text):
            char = text[pos]
            if char == quote:
                return "".join(chars), pos + 1
            if char == "\\" and pos + 1 < len(text) and text[pos + 1] in _ESCAPABLE:
                char, pos = text[pos + 1], pos + 1
            elif char == "\0":
                raise self.error(f"NUL character at position {pos} is not allowed")
            chars.append(char)
            pos += 1
        kind = "key" if quote == "`" else "string"
        raise self.error(
            f"unterminated {kind} starting at position {start}: missing closing {quote}"
        )

    def _number(self, pos: int) -> _Token:
        """Reads a number at ``pos``; rejects ``1.2.3``, ``3abc`` and overflow."""
        end = _NUMBER.match(self._text, pos).end()
        tail = _WORD_TAIL.match(self._text, end).end()
        if tail > end:
            raise self.error(f"malformed number {_quote(self._text[pos:tail])} at position {pos}")
        source = self._text[pos:end]
        if re.search(r"[.eE]", source):
            value: int | float = float(source)
            in_range = math.isfinite(value)
        else:
            value = int(source)
            in_range = -_INT64 <= value < _INT64
        if not in_range:
            raise self.error(f"number {_quote(source)} at position {pos} is out of range")
        return _Token("NUMBER", source, pos, value)

    def _word(self, pos: int) -> _Token:
        """Reads a bare word, or ``entity.`key``` / ``entity."key"`` at ``pos``."""
        end = _WORD.match(self._text, pos).end()
        word = self._text[pos:end]
        if word.endswith(".") and end < len(self._text) and self._text[end] in '`"':
            key, key_end = self._quoted(end)
            return _Token("ENTITY_KEY", self._text[pos:key_end], pos, (word[:-1], key))
        return _Token("WORD", word, pos, word)


# ------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class _Literal:
    kind: Literal["string", "number", "bool"]
    value: str | int | float | bool
    token: _Token


class _Parser:
    """Recursive-descent parser over the tokens of one filter or order_by item."""

    def __init__(self, text: str, field: str, label: str = "") -> None:
        self._tokenizer = _Tokenizer(text, field, label)
        self._noun = "filter" if field == "filter" else "order key"
        if len(text) > MAX_FILTER_LENGTH:
            raise self.error(
                f"{self._noun} is {len(text)} characters long; the limit is "
                f"{MAX_FILTER_LENGTH} characters"
            )
        self._stream = self._tokenizer.tokens()
        self._next = next(self._stream)
        self._depth = 0
        self._clauses = 0

    # -- helpers

    def error(self, message: str) -> InvalidArgument:
        """Builds an ``InvalidArgument`` for this filter or order_by item."""
        return self._tokenizer.error(message)

    def unexpected(self, token: _Token, expected: str) -> InvalidArgument:
        """Builds the error for ``token`` where ``expected`` should have been."""
        if token.kind == "END":
            where = f"unexpected end of {self._noun} at position {token.pos}"
        else:
            where = f"unexpected token {_quote(token.text)} at position {token.pos}"
        return self.error(f"{where}: expected {expected}")

    def peek(self) -> _Token:
        """Returns the next token without consuming it."""
        return self._next

    def advance(self) -> _Token:
        """Consumes and returns the next token (``END`` is never consumed)."""
        token = self._next
        if token.kind != "END":
            self._next = next(self._stream)
        return token

    def take_keyword(self, *words: str) -> str | None:
        """Consumes the next token if it is one of ``words``; returns it upper-cased."""
        word = _keyword(self.peek())
        if word in words:
            self.advance()
            return word
        return None

    def expect(self, kind: str, expected: str) -> _Token:
        """Consumes a token of ``kind`` or fails saying what was ``expected``."""
        token = self.advance()
        if token.kind != kind:
            raise self.unexpected(token, expected)
        return token

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """Tracks one level of parentheses or NOT opened by ``token``."""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self.error(
                f"{_quote(token.text)} at position {token.pos} nests deeper than the "
                f"limit of {MAX_DEPTH} levels of parentheses and NOT"
            )
        try:
            yield
        finally:
            self._depth -= 1

    # -- filter

    def parse_filter(self) -> Node:
        """Parses the whole filter; the text must not be blank."""
        node = self.or_expr()
        self.expect("END", "AND, OR or the end of the filter")
        return node

    def or_expr(self) -> Node:
        """``or_expr := and_expr ("OR" and_expr)*``."""
        items = [self.and_expr()]
        while self.take_keyword("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        """``and_expr := unary ("AND" unary)*``."""
        items = [self.unary()]
        while self.take_keyword("AND"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        """``unary := "NOT" unary | "(" or_expr ")" | comparison``."""
        token = self.peek()
        if _keyword(token) == "NOT":
            self.advance()
            with self.nested(token):
                return Not(self.unary())
        if token.kind == "(":
            self.advance()
            with self.nested(token):
                node = self.or_expr()
            self.expect(")", "AND, OR or ')'")
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        """``comparison := ident op literal | ident [NOT] IN (...) | ident IS [NOT] NULL``."""
        start = self.peek()
        field = self.field(_FILTER_EXAMPLE)
        op_token = self.peek()
        op = self.operator(field)
        if op in _NULLNESS:
            literals: tuple[_Literal, ...] = ()
        elif op in _MEMBERSHIP:
            literals = self.literal_list()
        else:
            literals = (self.literal(),)
        self._clauses += 1
        if self._clauses > MAX_CLAUSES:
            raise self.error(
                f"comparison at position {start.pos} exceeds the limit of {MAX_CLAUSES} "
                "comparisons in a filter"
            )
        return self.typed(field, op, op_token, literals)

    def operator(self, field: Field) -> str:
        """Reads an operator and returns its canonical spelling."""
        token = self.advance()
        if token.kind == "OP":
            return _SYMBOL_OPS[token.text]
        word = _keyword(token)
        if word in ("LIKE", "ILIKE", "IN"):
            return word
        if word == "NOT":
            following = self.advance()
            if _keyword(following) not in ("LIKE", "ILIKE", "IN"):
                raise self.unexpected(following, "LIKE, ILIKE or IN after NOT")
            return f"NOT {_keyword(following)}"
        if word == "IS":
            negated = self.take_keyword("NOT")
            null = self.advance()
            if _keyword(null) != "NULL":
                raise self.unexpected(null, "NULL or NOT NULL after IS")
            return "IS NOT NULL" if negated else "IS NULL"
        raise self.unexpected(
            token,
            f"an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL) after {_show(field)}",
        )

    def literal(self) -> _Literal:
        """Reads a string, number, TRUE or FALSE."""
        token = self.advance()
        if token.kind == "STRING":
            return _Literal("string", token.value, token)
        if token.kind == "NUMBER":
            return _Literal("number", token.value, token)
        word = _keyword(token)
        if word in ("TRUE", "FALSE"):
            return _Literal("bool", word == "TRUE", token)
        if token.kind == "WORD" and token.text.lower() in _NON_FINITE:
            raise self.error(
                f"{_quote(token.text)} at position {token.pos} is not allowed: "
                "NaN and infinity cannot be used in filters"
            )
        if token.kind == "WORD" and word is None:
            raise self.error(
                f"unquoted value {_quote(token.text)} at position {token.pos}: quote strings, "
                f'e.g. "{token.text}"'
            )
        raise self.unexpected(token, 'a value: a quoted string such as "adam" or a number')

    def literal_list(self) -> tuple[_Literal, ...]:
        """Reads ``"(" literal ("," literal)* ")"``."""
        self.expect("(", "'(' to start the IN list")
        items = [self.literal()]
        while self.peek().kind == ",":
            self.advance()
            items.append(self.literal())
        self.expect(")", "',' or ')' to close the IN list")
        return tuple(items)

    # -- fields

    def field(self, expected: str) -> Field:
        """Reads an identifier and resolves it to a ``Field``."""
        token = self.advance()
        if token.kind == "WORD" and _keyword(token) is None:
            prefix, dot, key = token.text.partition(".")
            return self.resolve(token, prefix if dot else None, key if dot else prefix)
        if token.kind == "QUOTED_IDENT":
            prefix, dot, key = token.value.partition(".")
            if dot and prefix.lower() in _ENTITIES:
                return self.resolve(token, prefix, key)
            return self.resolve(token, None, token.value)
        if token.kind == "ENTITY_KEY":
            prefix, key = token.value
            return self.resolve(token, prefix, key)
        raise self.unexpected(token, expected)

    def resolve(self, token: _Token, prefix: str | None, key: str) -> Field:
        """Resolves ``prefix.key`` (or a bare attribute when ``prefix`` is None)."""
        if prefix is None:
            return self.attribute(token, key, bare=True)
        entity = _ENTITIES.get(prefix.lower())
        if entity is None:
            raise self.error(
                f"unknown entity {_quote(prefix)} in {_quote(token.text)} at position "
                f"{token.pos}: expected params, tags, metrics or attributes"
            )
        if entity == "attributes":
            return self.attribute(token, key, bare=False)
        if not key:
            raise self.error(f"missing key after {_quote(prefix + '.')} at position {token.pos}")
        if len(key) > MAX_KEY_LENGTH:
            raise self.error(
                f"key {_quote(key)} at position {token.pos} is {len(key)} characters long; "
                f"the limit is {MAX_KEY_LENGTH}"
            )
        return Field(entity, key)

    def attribute(self, token: _Token, name: str, *, bare: bool) -> Field:
        """Resolves an attribute name or alias to its canonical ``Field``."""
        canonical = _ATTRIBUTE_ALIASES.get(name.lower(), name.lower())
        if canonical in _ATTRIBUTES:
            return Field("attributes", canonical)
        hint = ""
        if bare and _BARE_KEY.fullmatch(name):
            hint = (
                f"; for a param, metric or tag write params.{name}, metrics.{name} or tags.{name}"
            )
        raise self.error(
            f"unknown attribute {_quote(name)} at position {token.pos}: valid attributes are "
            f"{', '.join(_ATTRIBUTES)}{hint}"
        )

    # -- types

    def typed(
        self, field: Field, op: str, op_token: _Token, literals: tuple[_Literal, ...]
    ) -> Comparison:
        """Checks ``op`` and ``literals`` against ``field`` and builds the comparison."""
        rule = _rule_for(field)
        if op not in rule.ops:
            raise self.error(
                f"operator {op} at position {op_token.pos} cannot be used with {_show(field)}, "
                f"which supports {', '.join(rule.ops)}"
            )
        values = tuple(self.convert(field, rule, op, literal) for literal in literals)
        if op in _NULLNESS:
            return Comparison(field, op, None)
        if op in _MEMBERSHIP:
            return Comparison(field, op, values)
        return Comparison(field, op, values[0])

    def convert(self, field: Field, rule: _Rule, op: str, literal: _Literal) -> str | int | float:
        """Returns ``literal``'s value as the type ``field`` holds."""
        if rule.value == "string":
            return self.as_string(field, op, literal)
        if rule.value == "state":
            return self.as_state(field, literal)
        if rule.value == "time":
            return self.as_time(field, literal)
        return self.as_number(field, op, literal)

    def as_string(self, field: Field, op: str, literal: _Literal) -> str:
        """Returns a string value; numbers and booleans must be quoted."""
        if literal.kind == "string":
            return literal.value
        text = literal.token.text
        example = f'"{text}"' if op in _MEMBERSHIP else f'{_show(field)} {op} "{text}"'
        raise self.error(
            f"{_show(field)} holds strings, but {_quote(text)} at position "
            f"{literal.token.pos} is a {'number' if literal.kind == 'number' else 'boolean'}; "
            f"quote it: {example}"
        )

    def as_number(self, field: Field, op: str, literal: _Literal) -> float:
        """Returns a metric value as a float; TRUE/FALSE mean 1.0/0.0."""
        if literal.kind != "string":
            return float(literal.value)
        hint = ""
        if _NUMBER.fullmatch(literal.value.strip()):
            hint = f"; write it unquoted: {_show(field)} {op} {literal.value.strip()}"
        raise self.error(
            f"{_show(field)} holds numbers, but {_quote(literal.token.text)} at position "
            f"{literal.token.pos} is a string{hint}"
        )

    def as_time(self, field: Field, literal: _Literal) -> int:
        """Returns a time value as integer unix milliseconds."""
        value = literal.value
        if literal.kind == "number" and float(value).is_integer() and abs(value) < _INT64:
            return int(value)
        raise self.error(
            f"{field.key} holds integer unix milliseconds, but {_quote(literal.token.text)} "
            f"at position {literal.token.pos} is not an integer"
        )

    def as_state(self, field: Field, literal: _Literal) -> str:
        """Returns a run state upper-cased; it must be one of ``RUN_STATES``."""
        value = literal.value.upper() if literal.kind == "string" else None
        if value in RUN_STATES:
            return value
        raise self.error(
            f"invalid {field.key} {_quote(literal.token.text)} at position {literal.token.pos}: "
            f"expected one of {', '.join(repr(s) for s in RUN_STATES)}"
        )

    # -- order_by

    def parse_order_key(self) -> OrderKey:
        """Parses ``ident ["ASC" | "DESC"]``."""
        if self.peek().kind == "END":
            raise self.error(f"empty order key; write e.g. {_quote('metrics.val_loss ASC')}")
        token = self.peek()
        field = self.field(_ORDER_EXAMPLE)
        if field.entity == "attributes" and not _ATTRIBUTES[field.key].orderable:
            orderable = [name for name, attribute in _ATTRIBUTES.items() if attribute.orderable]
            raise self.error(
                f"cannot order by {field.key} (at position {token.pos}); orderable attributes "
                f"are {', '.join(orderable)}"
            )
        direction = self.peek()
        descending = _keyword(direction) == "DESC"
        if _keyword(direction) in ("ASC", "DESC"):
            self.advance()
        self.expect("END", "ASC, DESC or the end of the order key")
        return OrderKey(field, descending)


def _keyword(token: _Token) -> str | None:
    """Returns the upper-cased word if ``token`` is a bare keyword-like word."""
    if token.kind != "WORD":
        return None
    word = token.text.upper()
    return word if word in _KEYWORDS or word in ("ASC", "DESC") else None


# ---------------------------------------------------------------------- public API


def parse_filter(text: str) -> Node | None:
    """Parses a run-search filter.

    Args:
        text: The filter, e.g. ``'params.lr = "0.01" and metrics.val_loss < 0.3'``.

    Returns:
        The filter's tree, or None when ``text`` is empty or blank (match every run).

    Raises:
        InvalidArgument: With field ``"filter"`` when the text is not in the grammar,
            breaks a type rule or exceeds a limit; the message quotes the offending
            token and its position.
    """
    if len(text) <= MAX_FILTER_LENGTH and not text.strip():
        return None
    return _Parser(text, "filter").parse_filter()


def parse_order_by(items: Sequence[str]) -> tuple[OrderKey, ...]:
    """Parses ``order_by`` items such as ``["metrics.val_loss ASC", "start_time DESC"]``.

    Args:
        items: At most ``MAX_ORDER_BY_KEYS`` items, each ``ident [ASC|DESC]``.

    Returns:
        The order keys, in order; empty when ``items`` is empty.

    Raises:
        InvalidArgument: With field ``"order_by"`` for a malformed item, an attribute
            that cannot be sorted on, a repeated field or too many items.
        TypeError: When ``items`` is a single string rather than a sequence of them.
    """
    if isinstance(items, str):
        raise TypeError("parse_order_by takes a sequence of strings, not a string")
    if len(items) > MAX_ORDER_BY_KEYS:
        raise InvalidArgument(
            "order_by", f"order_by has {len(items)} keys; the limit is {MAX_ORDER_BY_KEYS}"
        )
    keys: list[OrderKey] = []
    seen: dict[Field, int] = {}
    for index, item in enumerate(items):
        label = f"order_by[{index}] {_quote(item)}"
        key = _Parser(item, "order_by", label).parse_order_key()
        if key.field in seen:
            raise InvalidArgument(
                "order_by",
                f"{label}: {_show(key.field)} is already ordered by order_by[{seen[key.field]}]; "
                "each field may appear once",
            )
        seen[key.field] = index
        keys.append(key)
    return tuple(keys)
