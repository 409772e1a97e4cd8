"""SKILL.md frontmatter of plain `key: text` lines is read without YAML, exactly as YAML
reads it; anything else is left to YAML."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from action_llama.project import files

#: Characters and words that change what YAML makes of a line, mixed with ordinary text.
PIECES = st.sampled_from(
    [
        "a", "Z", "_", "-", "0", "9", " ", "  ", "\t", ":", ": ", "#", " #", "'", '"', ",", ".",
        "(", ")", "/", "+", ";", "&", "*", "!", "|", ">", "%", "@", "`", "[", "{", "?", "~",
        "é", "\r", "yes", "No", "TRUE", "off", "null", "NULL", "inf", ".inf", "1e3", "0x1F",
        "2001-12-14", "12:30", "<<", "=", "---", "...",
    ]
)  # fmt: skip
TEXT = st.lists(PIECES, max_size=8).map("".join)


def _yaml(block: str) -> object:
    try:
        return yaml.load(block, Loader=files._frontmatter_loader()) or {}
    except yaml.YAMLError:
        return "invalid"


@given(st.lists(st.tuples(TEXT, TEXT, st.sampled_from([": ", ":  ", ":", " : "])), max_size=4))
def test_what_the_plain_reader_accepts_yaml_reads_the_same(
    lines: list[tuple[str, str, str]],
) -> None:
    """Whatever block the plain reader takes, YAML reads to the same mapping."""
    block = "\n" + "\n".join(key + colon + value for key, value, colon in lines)
    plain = files._plain_lines(block)
    if plain is not None:
        assert plain == _yaml(block)


def test_ordinary_frontmatter_is_read_without_yaml() -> None:
    """Names, descriptions with punctuation and blank lines take the plain path."""
    block = (
        "\nname: triage\ndescription: Sorts new issues (bugs, features) by area; don't close.\n"
        "\nlicense: MIT\ncompatibility: al/1.0+ on linux-x86_64\n"
    )
    assert files._plain_lines(block) == {
        "name": "triage",
        "description": "Sorts new issues (bugs, features) by area; don't close.",
        "license": "MIT",
        "compatibility": "al/1.0+ on linux-x86_64",
    }
    assert files.parse_frontmatter(block, "SKILL.md") == _yaml(block)


def test_lines_yaml_reads_otherwise_are_left_to_yaml() -> None:
    """Booleans, null, quotes, colons, comments and indentation are YAML's to read."""
    for block in (
        "\nname: yes",
        "\non: text",
        "\ndescription: 'quoted'",
        "\ndescription: a: b",
        "\ndescription: text # comment",
        "\ndescription: first\n  continued",
        "\ndescription: 2001-12-14",
        "\ndescription:",
    ):
        assert files._plain_lines(block) is None, block


NEAR_PLAIN = st.text(alphabet="aZy_-09 .,;()/'+:#\"\t", max_size=12)


@given(st.lists(st.tuples(st.from_regex(r"[a-z_][a-z0-9_-]{0,6}", fullmatch=True), NEAR_PLAIN)))
def test_near_plain_lines_read_as_yaml_reads_them(lines: list[tuple[str, str]]) -> None:
    """Lines close to plain text (stray colons, quotes, spaces, tabs) read as YAML does."""
    block = "\n" + "\n".join(f"{key}: {value}" for key, value in lines)
    plain = files._plain_lines(block)
    if plain is not None:
        assert plain == _yaml(block)
