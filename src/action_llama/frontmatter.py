"""Split SKILL.md into frontmatter and body (no dependencies: the in-container entry uses it)."""

from __future__ import annotations


def split_frontmatter(text: str) -> tuple[str | None, str]:
    """(frontmatter YAML or None, body), following the original's rules.

    The file must start with `---` (after leading whitespace); the block ends at the first
    line that starts with `---`; the rest of that line is dropped and what follows is the body.
    """
    stripped = text.lstrip()
    if not stripped.startswith("---"):
        return None, text
    rest = stripped[3:]
    end = rest.find("\n---")
    if end == -1:
        return None, text
    block = rest[:end]
    after = rest[end + 4 :]
    newline = after.find("\n")
    body = "" if newline == -1 else after[newline + 1 :]
    return block, body
