"""ketch._terminal: control characters from other people's text are shown, not obeyed."""

from __future__ import annotations

import io

from ketch._terminal import EscapingWriter, escape


def test_controls_and_bidi_overrides_become_visible_escapes():
    hostile = "a\x1b[2Jb\x1b]0;title\x07c\rd\x00e\x7ff\x9bg\u202eh\u2066i"
    assert escape(hostile) == (
        "a\\x1b[2Jb\\x1b]0;title\\x07c\\x0dd\\x00e\\x7ff\\x9bg\\u202eh\\u2066i"
    )


def test_text_newlines_tabs_and_other_unicode_pass_unchanged():
    text = "run\tloss 0.25\nÜbersicht — 模型 ✓ └─┘\n"
    assert escape(text) == text


def test_the_stderr_writer_spares_carriage_returns_only():
    assert escape("\rupload [##  ] 50%\x1b[K", keep_cr=True) == "\rupload [##  ] 50%\\x1b[K"


def test_the_writer_escapes_what_passes_through_and_reports_the_length_given():
    sink = io.StringIO()
    writer = EscapingWriter(sink)
    assert writer.write("x\x1by") == 3
    assert sink.getvalue() == "x\\x1by"
    assert writer.encoding == "utf-8"
