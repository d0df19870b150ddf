"""Tests for the run-search filter language and the order_by parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.filters import (
    MAX_CLAUSES,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_KEY_LENGTH,
    MAX_ORDER_BY_KEYS,
    And,
    Comparison,
    Field,
    Not,
    Or,
    OrderKey,
    parse_filter,
    parse_order_by,
)

LR = Comparison(Field("params", "lr"), "=", "0.01")
LOSS = Comparison(Field("metrics", "val_loss"), "<", 0.3)
TEAM = Comparison(Field("tags", "team"), "=", "search")


def filter_error(text: str) -> str:
    """Parses ``text``, expecting failure; returns the error message."""
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    assert info.value.field == "filter"
    return str(info.value)


def order_error(items: list[str]) -> str:
    """Parses ``items``, expecting failure; returns the error message."""
    with pytest.raises(InvalidArgument) as info:
        parse_order_by(items)
    assert info.value.field == "order_by"
    return str(info.value)


# ------------------------------------------------------------------ parse_filter


def test_issue_example_is_an_and_of_three_comparisons():
    text = 'params.lr = "0.01" and metrics.val_loss < 0.3 and tags.team = "search"'
    assert parse_filter(text) == And((LR, LOSS, TEAM))


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_filter_matches_everything(text):
    assert parse_filter(text) is None


def test_single_comparison_is_not_wrapped():
    assert parse_filter('params.lr = "0.01"') == LR


def test_and_binds_tighter_than_or():
    text = 'params.lr = "0.01" OR metrics.val_loss < 0.3 AND tags.team = "search"'
    assert parse_filter(text) == Or((LR, And((LOSS, TEAM))))


def test_parentheses_override_precedence():
    text = '(params.lr = "0.01" OR metrics.val_loss < 0.3) AND tags.team = "search"'
    assert parse_filter(text) == And((Or((LR, LOSS)), TEAM))


def test_not_applies_to_the_next_unary():
    text = 'NOT params.lr = "0.01" AND NOT (metrics.val_loss < 0.3 OR tags.team = "search")'
    assert parse_filter(text) == And((Not(LR), Not(Or((LOSS, TEAM)))))


def test_keywords_entities_and_attributes_are_case_insensitive():
    text = 'PARAM.lr = "0.01" aNd Metric.val_loss < 0.3 AND Tag.team = "search" or START_TIME > 5'
    start = Comparison(Field("attributes", "start_time"), ">", 5)
    assert parse_filter(text) == Or((And((LR, LOSS, TEAM)), start))


def test_keys_are_case_sensitive():
    assert parse_filter('params.LR = "0.01"') == Comparison(Field("params", "LR"), "=", "0.01")


@pytest.mark.parametrize(
    ("op", "canonical"),
    [
        ("=", "="),
        ("==", "="),
        ("!=", "!="),
        ("<>", "!="),
        ("<", "<"),
        ("<=", "<="),
        (">", ">"),
        (">=", ">="),
    ],
)
def test_symbol_operators_are_canonicalised(op, canonical):
    assert parse_filter(f"metrics.acc {op} 1").op == canonical


@pytest.mark.parametrize("op", ["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"])
def test_pattern_operators(op):
    node = parse_filter(f"tags.model {op.lower()} 'bert-%'")
    assert node == Comparison(Field("tags", "model"), op, "bert-%")


def test_no_spaces_needed_around_operators():
    assert parse_filter('params.lr="0.01"AND metrics.val_loss<0.3') == And((LR, LOSS))


def test_in_and_not_in_lists():
    node = parse_filter("params.opt IN (\"sgd\", 'adam') AND metrics.epoch not in (1, 2.5)")
    assert node == And(
        (
            Comparison(Field("params", "opt"), "IN", ("sgd", "adam")),
            Comparison(Field("metrics", "epoch"), "NOT IN", (1.0, 2.5)),
        )
    )


def test_is_null_and_is_not_null():
    node = parse_filter("metrics.acc IS NULL OR end_time is not null OR parent_run_id IS NULL")
    assert node == Or(
        (
            Comparison(Field("metrics", "acc"), "IS NULL", None),
            Comparison(Field("attributes", "end_time"), "IS NOT NULL", None),
            Comparison(Field("attributes", "parent_run_id"), "IS NULL", None),
        )
    )


def test_backquoted_and_double_quoted_keys():
    node = parse_filter('metrics.`val loss` < 0.3 AND `tags.my team` = "x" AND params."a b" = "y"')
    assert node == And(
        (
            Comparison(Field("metrics", "val loss"), "<", 0.3),
            Comparison(Field("tags", "my team"), "=", "x"),
            Comparison(Field("params", "a b"), "=", "y"),
        )
    )


def test_bare_keys_may_contain_dots_slashes_dashes_and_colons():
    node = parse_filter("metrics.val.loss/top-1:avg >= 0.5")
    assert node == Comparison(Field("metrics", "val.loss/top-1:avg"), ">=", 0.5)


def test_string_escapes():
    node = parse_filter(r"""tags.q = 'it\'s \"ok\" \\ 50\%'""")
    assert node.value == 'it\'s "ok" \\ 50\\%'


def test_numbers_signs_and_exponents():
    assert parse_filter("metrics.x > -1.5e-3").value == -0.0015
    assert parse_filter("metrics.x > +.5").value == 0.5
    assert parse_filter("metrics.x = 3").value == 3.0


def test_booleans_are_numbers_for_metrics():
    assert parse_filter("metrics.converged = TRUE").value == 1.0
    assert parse_filter("metrics.converged = false").value == 0.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('name = "a"', "display_name"),
        ('run_name = "a"', "display_name"),
        ('display_name = "a"', "display_name"),
        ('attributes.name = "a"', "display_name"),
        ('attr.user = "a"', "user"),
        ('attribute.run_id = "a"', "run_id"),
        ('run.experiment_id = "a"', "experiment_id"),
        ('`name` = "a"', "display_name"),
    ],
)
def test_attribute_aliases(text, key):
    assert parse_filter(text) == Comparison(Field("attributes", key), "=", "a")


def test_state_is_normalised_to_upper_case():
    assert parse_filter('status = "running"') == Comparison(
        Field("attributes", "state"), "=", "RUNNING"
    )
    node = parse_filter("state IN ('Finished', 'failed', 'KILLED')")
    assert node.value == ("FINISHED", "FAILED", "KILLED")


def test_times_are_integers():
    node = parse_filter("start_time >= 1700000000000 AND end_time < 1.7e12")
    assert node.items[0].value == 1700000000000
    assert node.items[1].value == 1700000000000
    assert isinstance(node.items[1].value, int)


def test_nodes_are_frozen_and_hashable():
    node = parse_filter('params.lr = "0.01" AND metrics.val_loss < 0.3')
    assert hash(node) == hash(And((LR, LOSS)))
    with pytest.raises(AttributeError):
        node.items = ()


def test_limits_are_inclusive():
    at_limit = " AND ".join(["metrics.x > 1"] * MAX_CLAUSES)
    assert len(parse_filter(at_limit).items) == MAX_CLAUSES
    deep = "(" * MAX_DEPTH + "metrics.x > 1" + ")" * MAX_DEPTH
    assert parse_filter(deep) == Comparison(Field("metrics", "x"), ">", 1.0)
    key = "k" * MAX_KEY_LENGTH
    assert parse_filter(f"metrics.{key} > 1").field.key == key


# --------------------------------------------------------------- filter errors


def test_error_quotes_the_unexpected_token_and_its_position():
    message = filter_error('params.lr = "0.01" AND AND metrics.x > 1')
    assert "unexpected token 'AND' at position 23" in message
    assert 'params.lr = "0.01"' in message


def test_empty_parentheses():
    assert "unexpected token ')' at position 1" in filter_error("()")


def test_unclosed_parenthesis():
    assert "unexpected end of filter at position 14" in filter_error("(metrics.x > 1")


@pytest.mark.parametrize("text", ['tags.x = "abc', "tags.x = 'abc\\'", "metrics.`abc > 1"])
def test_unterminated_string_or_key(text):
    message = filter_error(text)
    assert "unterminated" in message and "position" in message


def test_unknown_entity():
    message = filter_error("foo.bar = 1")
    assert "unknown entity 'foo'" in message and "position 0" in message


def test_unknown_attribute_lists_valid_ones():
    message = filter_error('lr = "0.01"')
    assert "unknown attribute 'lr' at position 0" in message
    assert "start_time" in message and "params.lr" in message


def test_missing_key():
    assert "missing key after 'params.'" in filter_error('params. = "a"')


def test_unquoted_param_value_suggests_quoting():
    message = filter_error("params.lr = 0.01")
    assert "'0.01' at position 12" in message
    assert 'params.lr = "0.01"' in message


def test_unquoted_word_value():
    assert "unquoted value 'adam' at position 13" in filter_error("params.opt = adam")


def test_boolean_param_value_must_be_quoted():
    assert 'tags.x = "true"' in filter_error("tags.x = true")


def test_string_compared_to_metric():
    message = filter_error('metrics.val_loss < "0.3"')
    assert "holds numbers" in message and "position 19" in message
    assert "metrics.val_loss < 0.3" in message


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ('metrics.x LIKE "a"', "LIKE"),
        ("run_id IS NULL", "IS NULL"),
        ('state LIKE "RUN%"', "LIKE"),
        ("start_time LIKE 1", "LIKE"),
        ('user < "b"', "<"),
    ],
)
def test_operator_not_allowed_for_field(text, token):
    message = filter_error(text)
    assert f"operator {token} at position" in message and "cannot be used" in message


@pytest.mark.parametrize("text", ['state = "paused"', "state = 1"])
def test_invalid_state(text):
    message = filter_error(text)
    assert "position 8" in message and "RUNNING" in message


@pytest.mark.parametrize(
    ("text", "position"),
    [("start_time > 1.5", 13), ('start_time > "5"', 13), ("end_time = TRUE", 11)],
)
def test_time_must_be_an_integer(text, position):
    message = filter_error(text)
    assert "integer unix milliseconds" in message and f"at position {position}" in message


def test_trailing_garbage():
    assert "unexpected token 'extra' at position 14" in filter_error("metrics.x > 1 extra")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("params.lr = '1'; DROP TABLE runs; --", "unexpected character ';' at position 15"),
        ('tags.x = "a" OR 1=1', "unexpected token '1' at position 16"),
        ("tags.x = 'a' OR 'a'='a'", "unexpected token ''a'' at position 16"),
        ("metrics.x > 1 -- comment", "unexpected character '-' at position 14"),
        ("metrics.x > 1 /* c */", "unexpected character '/' at position 14"),
        ("tags.x = 'a' UNION SELECT * FROM runs", "unexpected token 'UNION' at position 13"),
    ],
)
def test_injection_attempts_fail_cleanly(text, needle):
    assert needle in filter_error(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("metrics.x = nan", "'nan' at position 12"),
        ("metrics.x = Infinity", "'Infinity' at position 12"),
        ("metrics.x = 1e999", "out of range"),
        ("metrics.x = 99999999999999999999", "out of range"),
        ("metrics.x = 1.2.3", "malformed number '1.2.3' at position 12"),
        ("metrics.x = 3abc", "malformed number '3abc' at position 12"),
    ],
)
def test_bad_numbers(text, needle):
    assert needle in filter_error(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("metrics.x IN ()", "unexpected token ')' at position 14"),
        ("metrics.x IN 1", "unexpected token '1' at position 13"),
        ("metrics.x IN (1 2)", "unexpected token '2' at position 16"),
        ("metrics.x IS 1", "unexpected token '1' at position 13"),
        ("metrics.x NOT = 1", "unexpected token '=' at position 14"),
        ("metrics.x 1", "unexpected token '1' at position 10"),
        ("metrics.x >", "unexpected end of filter at position 11"),
    ],
)
def test_malformed_comparisons(text, needle):
    assert needle in filter_error(text)


def test_nul_character_rejected():
    assert "NUL" in filter_error("tags.x = 'a\0b'")


def test_too_long():
    text = "metrics.x > 1 AND " * (MAX_FILTER_LENGTH // 10)
    message = filter_error(text)
    assert str(MAX_FILTER_LENGTH) in message and "characters" in message


def test_too_long_even_when_blank():
    assert str(MAX_FILTER_LENGTH) in filter_error(" " * (MAX_FILTER_LENGTH + 1))


def test_too_many_clauses():
    message = filter_error(" OR ".join(["metrics.x > 1"] * (MAX_CLAUSES + 1)))
    assert f"limit of {MAX_CLAUSES} comparisons" in message and "position" in message


@pytest.mark.parametrize(
    "text",
    [
        "(" * (MAX_DEPTH + 1) + "metrics.x > 1" + ")" * (MAX_DEPTH + 1),
        "NOT " * (MAX_DEPTH + 1) + "metrics.x > 1",
        "NOT (" * 9 + "metrics.x > 1" + ")" * 9,
    ],
)
def test_too_deep(text):
    message = filter_error(text)
    assert f"limit of {MAX_DEPTH} levels" in message and "position" in message


def test_key_too_long():
    message = filter_error(f"metrics.{'k' * (MAX_KEY_LENGTH + 1)} > 1")
    assert str(MAX_KEY_LENGTH) in message


# --------------------------------------------------------------- parse_order_by


def test_order_by_defaults_to_ascending():
    assert parse_order_by(["metrics.val_loss", "params.lr asc"]) == (
        OrderKey(Field("metrics", "val_loss"), descending=False),
        OrderKey(Field("params", "lr"), descending=False),
    )


def test_order_by_descending_attributes_and_quoted_keys():
    assert parse_order_by(["start_time DESC", "`metrics.my key` desc", "name", "tags.`a b`"]) == (
        OrderKey(Field("attributes", "start_time"), descending=True),
        OrderKey(Field("metrics", "my key"), descending=True),
        OrderKey(Field("attributes", "display_name"), descending=False),
        OrderKey(Field("tags", "a b"), descending=False),
    )


def test_order_by_empty_list():
    assert parse_order_by([]) == ()


def test_order_by_duplicates_rejected():
    message = order_error(["metrics.loss", "metric.loss DESC"])
    assert "order_by[1]" in message and "metrics.loss" in message


def test_order_by_alias_duplicates_rejected():
    assert "display_name" in order_error(["name", "display_name DESC"])


def test_order_by_bad_direction():
    message = order_error(["start_time SIDEWAYS"])
    assert "unexpected token 'SIDEWAYS' at position 11" in message and "ASC" in message


def test_order_by_too_many():
    items = [f"metrics.m{i}" for i in range(MAX_ORDER_BY_KEYS + 1)]
    assert str(MAX_ORDER_BY_KEYS) in order_error(items)
    assert len(parse_order_by(items[:MAX_ORDER_BY_KEYS])) == MAX_ORDER_BY_KEYS


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("", "empty order key"),
        ("parent_run_id", "cannot order by parent_run_id"),
        ("foo", "unknown attribute 'foo'"),
        ("metrics.x DESC DESC", "unexpected token 'DESC' at position 15"),
        ("metrics.x; DROP", "unexpected character ';' at position 9"),
        ("DESC", "unexpected token 'DESC' at position 0"),
    ],
)
def test_order_by_bad_items(item, needle):
    assert needle in order_error(["start_time", item])


def test_order_by_rejects_a_bare_string():
    with pytest.raises(TypeError):
        parse_order_by("start_time DESC")


# -------------------------------------------------------------------- property

_TOKENS = [
    "params.lr",
    "metrics.loss",
    "tags.`a b`",
    "state",
    "start_time",
    "name",
    "foo.bar",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "(",
    ")",
    ",",
    "=",
    "<",
    ">=",
    "!=",
    "'x'",
    '"RUNNING"',
    "1",
    "-2.5e3",
    "TRUE",
    "nan",
    ";",
    "`",
    '"',
]


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join),
        st.lists(st.sampled_from(_TOKENS), max_size=25).map("".join),
    )
)
def test_any_text_parses_or_raises_invalid_argument(text):
    try:
        parse_filter(text)
    except InvalidArgument as error:
        assert error.field == "filter"
    try:
        parse_order_by([text])
    except InvalidArgument as error:
        assert error.field == "order_by"
