"""ductor.transports.telegram.formatting: Markdown in, HTML Telegram accepts out."""

from __future__ import annotations

import re

import pytest

from ductor.transports.telegram.formatting import (
    display_width,
    html_to_plain,
    markdown_to_html,
    split_html,
    utf16_len,
)

TELEGRAM_TAGS = {"b", "i", "u", "s", "code", "pre", "a", "blockquote", "tg-spoiler"}
TAG = re.compile(r"<(/?)([a-z-]+)([^<>]*)>")
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x?[0-9a-fA-F]+);")


def assert_balanced(html: str) -> None:
    """Every tag is one Telegram knows, closed in order; every ``&`` starts an entity;
    no ``<`` or ``>`` outside a tag."""
    stack: list[str] = []
    for match in TAG.finditer(html):
        closing, name = match.group(1), match.group(2)
        assert name in TELEGRAM_TAGS, f"unknown tag {match.group(0)!r} in {html!r}"
        if closing:
            assert stack, f"{match.group(0)!r} closes nothing in {html!r}"
            assert stack.pop() == name, f"{match.group(0)!r} closes the wrong tag in {html!r}"
        else:
            stack.append(name)
    assert not stack, f"unclosed {stack} in {html!r}"
    text = TAG.sub("", html)
    assert "<" not in text and ">" not in text, html
    assert ENTITY.sub("", text).count("&") == 0, f"bare & in {html!r}"


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


NASTY = [
    "**unclosed bold",
    "closing only**",
    "*one star",
    "_one underscore",
    "~~strike never ends",
    "`stray backtick",
    "``double `stray",
    "**bold *italic** overlap*",
    "*italic **bold* overlap**",
    "__a **b__ c**",
    "***",
    "****",
    "**_**_**_x_**_**_**",
    "_*~~||`x`||~~*_",
    "[link](https://example.org",
    "[link(https://example.org)",
    "[**bold link**](https://example.org/a_b_c)",
    "[x](javascript:alert(1))",
    '[x](https://e.org/"><script>)',
    "<b>not a tag</b>",
    "</i>",
    "a < b > c && d",
    "&amp; &lt; &#x41; & ;",
    "```",
    "```python\nunterminated fence **x**",
    "~~~\n<i>in code</i>\n~~~",
    "> quote **unclosed\n> more `code",
    "> ```\n> code in quote",
    "# heading **bold\n## __nested **bold** here__",
    "| a | b |\n|---|---|\n| **x | y` |",
    "| lonely | pipe",
    "- item *one\n* item **two\n  - nested _three",
    "1. one **\n2. two **",
    "---\n***\n___",
    "||spoiler",
    "snake_case_name and __dunder__ and a_b_c_",
    "emoji 😀 **bold 😀** and 中文 *斜体*",
    "\\*not italic\\* and \\`not code\\`",
    "*" * 200 + "x" + "_" * 200,
    ("**a *b " * 30) + "`" + ("~~c " * 30),
    "&" * 120 + "<" * 120,
    "\n\n\n" + "word " * 80 + "\n\n\n",
]


def test_plain_text_is_escaped() -> None:
    assert markdown_to_html("<script>alert(1)</script> & co") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    )


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
        ("***both***", "<b><i>both</i></b>"),
        ("~~gone~~", "<s>gone</s>"),
        ("||secret||", "<tg-spoiler>secret</tg-spoiler>"),
        ("run `a < b && c`", "run <code>a &lt; b &amp;&amp; c</code>"),
        ("``has ` tick``", "<code>has ` tick</code>"),
        ("`**not bold**`", "<code>**not bold**</code>"),
        ("**`code` in bold**", "<b><code>code</code> in bold</b>"),
        ("\\*literal\\*", "*literal*"),
    ],
)
def test_inline_markdown_becomes_telegram_tags(markdown: str, html: str) -> None:
    assert markdown_to_html(markdown) == html


def test_snake_case_names_are_not_italicised() -> None:
    text = "call my_func_name or a_b_c_ with some_var"
    assert markdown_to_html(text) == text


def test_stars_inside_words_are_not_italicised() -> None:
    assert markdown_to_html("2*3*4") == "2*3*4"


def test_links_with_safe_schemes_become_anchors() -> None:
    assert markdown_to_html("[docs](https://example.org/a?x=1&y=2)") == (
        '<a href="https://example.org/a?x=1&amp;y=2">docs</a>'
    )
    assert markdown_to_html("[me](mailto:me@example.org)") == (
        '<a href="mailto:me@example.org">me</a>'
    )
    assert markdown_to_html("[u](tg://user?id=1)") == '<a href="tg://user?id=1">u</a>'
    assert markdown_to_html("[**b**](http://e.org/x_(y))") == (
        '<a href="http://e.org/x_(y)"><b>b</b></a>'
    )


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "relative/page"])
def test_links_with_other_schemes_stay_text(url: str) -> None:
    assert markdown_to_html(f"[click]({url})") == f"[click]({url})"


def test_fenced_code_keeps_its_language_and_is_not_formatted() -> None:
    markdown = "before\n```python\nif a < b and **x**:\n    pass\n```\nafter"
    assert markdown_to_html(markdown) == (
        'before\n<pre><code class="language-python">if a &lt; b and **x**:\n'
        "    pass</code></pre>\nafter"
    )


def test_fenced_code_without_language_is_a_plain_pre_block() -> None:
    assert markdown_to_html("~~~\n# not a heading\n~~~") == "<pre># not a heading</pre>"


def test_unterminated_fence_runs_to_the_end() -> None:
    assert markdown_to_html("```sh\necho <hi>") == (
        '<pre><code class="language-sh">echo &lt;hi&gt;</code></pre>'
    )


def test_headings_become_a_bold_line() -> None:
    assert markdown_to_html("# Title\n###### Small **one**") == "<b>Title</b>\n<b>Small one</b>"
    assert markdown_to_html("#hashtag") == "#hashtag"


def test_quote_lines_become_one_blockquote() -> None:
    assert markdown_to_html("> first *line*\n> second\nafter") == (
        "<blockquote>first <i>line</i>\nsecond</blockquote>\nafter"
    )


def test_rule_becomes_a_line_of_dashes() -> None:
    assert markdown_to_html("above\n---\nbelow") == "above\n———\nbelow"


def test_bullets_become_dots_and_numbered_lists_stay() -> None:
    markdown = "- one\n* two\n  - nested **b**\n1. first\n2. second"
    assert markdown_to_html(markdown) == ("• one\n• two\n  • nested <b>b</b>\n1. first\n2. second")


def test_table_becomes_an_aligned_pre_block() -> None:
    markdown = "| Name | Qty |\n|------|----:|\n| apple | 3 |\n| **banana** | 12 |\n| 中文 | 7 |"
    html = markdown_to_html(markdown)
    assert html.startswith("<pre>") and html.endswith("</pre>")
    lines = html_to_plain(html).split("\n")
    assert lines[0].split() == ["Name", "Qty"]
    assert set(lines[1]) == {"─"}
    assert lines[3].split() == ["banana", "12"]
    # Right-aligned numbers end in the same column, wide characters counting twice.
    assert {display_width(line) for line in [lines[0], *lines[2:]]} == {display_width(lines[1])}
    assert "**" not in html


def test_button_markers_are_left_alone() -> None:
    assert markdown_to_html("[button:Yes] [button:No]") == "[button:Yes] [button:No]"


@pytest.mark.parametrize("markdown", NASTY)
def test_any_input_gives_balanced_html(markdown: str) -> None:
    assert_balanced(markdown_to_html(markdown))


@pytest.mark.parametrize("limit", [50, 100])
@pytest.mark.parametrize("markdown", NASTY)
def test_every_chunk_of_any_input_is_balanced_and_fits(markdown: str, limit: int) -> None:
    html = markdown_to_html(markdown * 3)
    chunks = split_html(html, limit)
    for chunk in chunks:
        assert_balanced(chunk)
        assert utf16_len(chunk) <= limit
    assert squeeze("".join(html_to_plain(c) for c in chunks)) == squeeze(html_to_plain(html))


def test_utf16_len_counts_astral_characters_twice() -> None:
    assert utf16_len("a中😀") == 4


def test_short_text_is_one_chunk_and_empty_text_none() -> None:
    assert split_html("<b>hi</b>") == ["<b>hi</b>"]
    assert split_html("") == []


def test_chunks_fit_in_utf16_units_with_emoji_and_cjk() -> None:
    html = "😀中文 " * 500
    chunks = split_html(html, 100)
    assert all(utf16_len(chunk) <= 100 for chunk in chunks)
    assert max(utf16_len(chunk) for chunk in chunks) > 80
    assert len(html) < 100 * len(chunks) < utf16_len(html) + 200  # counted in units, not chars
    assert squeeze("".join(chunks)) == squeeze(html)


def test_split_prefers_blank_lines_then_newlines_then_spaces() -> None:
    paragraphs = "\n\n".join(["alpha beta gamma\nline two"] * 6)
    for chunk in split_html(paragraphs, 60):
        assert chunk.startswith("alpha") and chunk.endswith("line two")
    lines = "\n".join(["one two three four"] * 10)
    for chunk in split_html(lines, 50):
        assert chunk.startswith("one") and chunk.endswith("four")
    words = " ".join(["word"] * 40)
    for chunk in split_html(words, 50):
        assert chunk.strip() == chunk and "wor " not in chunk


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    chunks = split_html("x" * 130, 50)
    assert [len(chunk) for chunk in chunks] == [50, 50, 30]


def test_no_cut_inside_an_entity_or_a_tag() -> None:
    html = ("a&amp;b <i>c</i> " * 40) + '<a href="https://example.org/?q=1&amp;r=2">link</a>'
    for limit in range(40, 70):
        for chunk in split_html(html, limit):
            assert_balanced(chunk)
            assert not re.search(r"&[a-z]*$", chunk)
            assert not re.search(r"^[a-z]*;", chunk)


def test_tags_open_at_a_cut_are_reopened_with_their_attributes() -> None:
    html = '<a href="https://e.org/x">' + "click here " * 20 + "</a>"
    chunks = split_html(html, 80)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.startswith('<a href="https://e.org/x">') and chunk.endswith("</a>")


def test_long_pre_block_is_split_into_pre_blocks() -> None:
    code = "\n".join(f"print({n})  # {'x' * 20}" for n in range(300))
    html = markdown_to_html(f"```python\n{code}\n```")
    chunks = split_html(html)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.startswith('<pre><code class="language-python">print(')
        assert chunk.endswith("</code></pre>")
        assert utf16_len(chunk) <= 4096
    assert "\n".join(html_to_plain(chunk) for chunk in chunks) == code


def test_tag_too_long_for_the_limit_is_dropped_but_its_text_kept() -> None:
    html = f'<a href="https://example.org/{"p" * 80}">text</a> after'
    chunks = split_html(html, 40)
    assert "".join(chunks) == "text after"


def test_limit_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_html("text", 10)


def test_html_to_plain_removes_tags_and_decodes_entities() -> None:
    html = '<b>a &lt; b</b> &amp; <a href="https://e.org/?a=1&amp;b=2">c</a> &quot;d&quot;'
    assert html_to_plain(html) == 'a < b & c "d"'


# -- nothing the model wrote disappears ----------------------------------------------------


def test_a_closing_fence_with_words_after_it_ends_the_block_and_keeps_the_words() -> None:
    markdown = "Run this:\n```sh\nmake test\n``` after that, check the log.\nDone."
    assert markdown_to_html(markdown) == (
        'Run this:\n<pre><code class="language-sh">make test</code></pre>\n'
        "after that, check the log.\nDone."
    )


def test_a_stray_fence_followed_by_prose_opens_no_empty_code_block() -> None:
    html = markdown_to_html("```sh\nls\n```\n``` after X, the rest of the answer")
    assert html == (
        '<pre><code class="language-sh">ls</code></pre>\nafter X, the rest of the answer'
    )


TRICKY_FENCES = [
    "``` after X",
    "text\n``` after X\nmore text",
    "```\nunbalanced fence that never closes",
    "```python\ncode here\n``` after X\nand then prose",
    "```\n```\n``` trailing words here",
    "inline ``` fence mid line and more words",
    "before ```python inline``` after",
    "````\nouter block\n``` inner words\n````\nafter outer",
    "~~~ tilde words\nbody ~~~ end",
    "use ``a `nested` tick`` and ```` `` ```` then words",
    "`one ``two ```three words",
    "```\ncode\n```after glued words",
    "> ```quote fence words\n> inside quote",
    "- item ``` fenced words\n- second item",
    "``` \n```  \nspaces after fences words",
    "~~~\n``` mixed fence words\n~~~ closing words",
]


@pytest.mark.parametrize("markdown", TRICKY_FENCES)
def test_every_word_of_tricky_fences_reaches_the_chat(markdown: str) -> None:
    html = markdown_to_html(markdown)
    assert_balanced(html)
    shown = html_to_plain(html) + " " + " ".join(re.findall(r'class="language-([^"]*)"', html))
    for word in re.findall(r"\w+", markdown):
        assert word in shown, f"{word!r} of {markdown!r} vanished: {html!r}"
