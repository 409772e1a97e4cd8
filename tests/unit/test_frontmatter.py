"""Splitting SKILL.md into YAML frontmatter and the instructions body."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from action_llama import frontmatter
from action_llama.config import skill

Splitter = Callable[[str], tuple[str | None, str]]
SPLITTERS: list[Splitter] = [frontmatter.split_frontmatter, skill.split_frontmatter]


@pytest.fixture(params=SPLITTERS, ids=["frontmatter", "config.skill"])
def split(request: pytest.FixtureRequest) -> Splitter:
    """Each import path of split_frontmatter."""
    splitter: Splitter = request.param
    return splitter


def test_config_skill_reexports_the_same_function() -> None:
    """config.skill.split_frontmatter is the dependency-free frontmatter.split_frontmatter."""
    assert skill.split_frontmatter is frontmatter.split_frontmatter


def test_text_without_frontmatter_is_all_body(split: Splitter) -> None:
    """A file not starting with --- has no frontmatter and keeps every character as body."""
    text = "# Title\n\nDo things.\n---\nmore\n"
    assert split(text) == (None, text)


def test_frontmatter_and_body_are_split(split: Splitter) -> None:
    """The block between the --- lines is the frontmatter; what follows the closing line is body."""
    assert split("---\ndescription: hi\n---\n# Body\ntext\n") == (
        "\ndescription: hi",
        "# Body\ntext\n",
    )


def test_leading_whitespace_before_frontmatter_is_allowed(split: Splitter) -> None:
    """Blank lines and spaces before the opening --- still start a frontmatter block."""
    block, body = split("\n\n  ---\nname: x\n---\nBody.\n")
    assert block == "\nname: x"
    assert body == "Body.\n"


def test_rest_of_closing_line_is_dropped(split: Splitter) -> None:
    """Text after the closing --- on the same line is not part of the body."""
    assert split("---\na: 1\n--- trailing\nBody.\n") == ("\na: 1", "Body.\n")


def test_later_dashes_stay_in_the_body(split: Splitter) -> None:
    """Only the first closing --- ends the block; a later --- (a rule) stays in the body."""
    assert split("---\na: 1\n---\nOne\n---\nTwo\n") == ("\na: 1", "One\n---\nTwo\n")


def test_closing_line_at_end_of_file_gives_empty_body(split: Splitter) -> None:
    """A file ending right at the closing --- has an empty body."""
    assert split("---\na: 1\n---") == ("\na: 1", "")


def test_empty_frontmatter_block(split: Splitter) -> None:
    """--- immediately followed by --- is an empty frontmatter block."""
    assert split("---\n---\nBody.\n") == ("", "Body.\n")


def test_unterminated_block_is_not_frontmatter(split: Splitter) -> None:
    """An opening --- with no closing line means no frontmatter: the whole text is body."""
    text = "---\ndescription: hi\nBody.\n"
    assert split(text) == (None, text)


def test_crlf_line_endings_split(split: Splitter) -> None:
    """A SKILL.md saved with Windows line endings still splits at the closing ---."""
    block, body = split("---\r\na: 1\r\n---\r\nBody.\r\n")
    assert block is not None
    assert "a: 1" in block
    assert body == "Body.\r\n"
