"""ductor.transports.matrix.richtext: Matrix HTML whose line breaks are markup, a body
that reads as Markdown, and pieces that always fit in one event."""

from __future__ import annotations

import json
import re

import pytest

from ductor.transports.matrix.richtext import (
    EVENT_BUDGET,
    html_to_text,
    markdown_to_html,
    render,
)

LIMIT = 65_536  # bytes Synapse accepts for a whole event


def test_lines_lists_headings_and_code_become_markup_not_newlines() -> None:
    html = markdown_to_html(
        "# Title\none\ntwo\n\n- a\n- b\n  - c\n3. x\n4. y\n\n```sh\nls\npwd\n```\n---"
    )
    outside_pre = re.sub(r"<pre>.*?</pre>", "", html, flags=re.DOTALL)
    for match in re.finditer("\n", outside_pre):  # Element shows a newline as a space
        before, after = outside_pre[: match.start()], outside_pre[match.end() :]
        assert before.endswith(">") or after.startswith("<"), html
    assert "<h1>Title</h1>" in html
    assert "<p>one<br>\ntwo</p>" in html
    assert "<ul>\n<li>a</li>\n<li>b\n<ul>\n<li>c</li></ul></li></ul>" in html
    assert '<ol start="3">' in html
    assert '<pre><code class="language-sh">ls\npwd</code></pre>' in html
    assert "<hr>" in html


def test_a_table_is_an_html_table_with_formatted_cells() -> None:
    html = markdown_to_html("| a | b |\n|---|---|\n| **1** | `2` |")
    assert html == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
        "<tbody><tr><td><b>1</b></td><td><code>2</code></td></tr></tbody></table>"
    )


def test_a_spoiler_and_a_link_use_matrix_markup_and_unsafe_links_stay_text() -> None:
    html = markdown_to_html("||hidden|| [docs](https://example.org) [x](javascript:alert(1))")
    assert "<span data-mx-spoiler>hidden</span>" in html
    assert '<a href="https://example.org">docs</a>' in html
    assert "javascript" in html and '<a href="javascript' not in html


def test_the_body_of_a_cut_piece_reads_as_markdown() -> None:
    text = html_to_text(markdown_to_html("## Head\nline **one**\nline two\n\n- a\n- b"))
    assert text == "## Head\n\nline **one**\nline two\n\n- a\n- b"


@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize(
    "text",
    ["слово " * 4000, "漢字かな" * 3400, "😀" * 20_000, "x" * 200_000, "<&>" * 30_000],
    ids=["cyrillic", "cjk", "emoji", "ascii", "entities"],
)
def test_every_piece_fits_in_one_event_and_nothing_is_lost(text: str, encrypted: bool) -> None:
    pieces = render(text, encrypted=encrypted)
    for body, html in pieces:
        content = {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html"}
        content["formatted_body"] = html
        plain = json.dumps(content, ensure_ascii=False).encode()
        assert len(plain) <= EVENT_BUDGET + 200 < LIMIT - 8000
        if encrypted:  # Megolm: matrix-nio's ASCII-escaped JSON, then base64
            ciphertext = len(json.dumps(content).encode()) * 4 // 3
            assert ciphertext < EVENT_BUDGET
    assert "".join(re.sub(r"\s", "", b) for b, _ in pieces) == re.sub(r"\s", "", text)


def test_a_short_answer_is_one_piece_whose_body_is_the_markdown_itself() -> None:
    assert render("Hello **you**\nsecond line") == [
        ("Hello **you**\nsecond line", "<p>Hello <b>you</b><br>\nsecond line</p>")
    ]
