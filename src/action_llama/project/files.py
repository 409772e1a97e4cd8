"""Reading and parsing the files a user writes: `config.toml`, `SKILL.md`, Dockerfiles.

Every way a read can fail becomes one `ConfigError` naming the file and the fix: a folder, a
device or a symbolic link loop where a file should be, no permission, too large, not UTF-8.
Parsing is bounded the same way: numbers too long for Python, nesting too deep, NUL characters
and invalid dates are errors in the file, never tracebacks.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from action_llama import oserrors
from action_llama.errors import ConfigError

if TYPE_CHECKING:
    import yaml

#: Larger files are refused: these are hand-written settings and instructions.
MAX_FILE_BYTES = 1024 * 1024
#: Tables, arrays and YAML blocks nested deeper than this are refused (the parsers recurse).
MAX_DEPTH = 32


def unreadable(label: str, path: Path, exc: OSError) -> ConfigError:
    """`exc`, met looking at `path`, as the error naming `label` (and the fix)."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError) and os.path.islink(path):
        return ConfigError(
            f"{label}: is a symbolic link to something that does not exist.",
            hint=f"Point it at a real file or folder, or remove it (ls -l {path}).",
        )
    return ConfigError(
        f"{label}: cannot be read: {oserrors.reason(exc)}.", hint=oserrors.fix(exc, path)
    )


def read_text(path: Path, label: str) -> str | None:
    """The UTF-8 text of `path` (a leading BOM dropped), or None when nothing is there.

    `label` names the file in errors (relative to the project). Never blocks: a FIFO or a
    device is refused without being read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        if not os.path.islink(path):
            return None
        raise unreadable(label, path, exc) from exc
    except OSError as exc:
        raise unreadable(label, path, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(
                f"{label}: is a folder, not a file.",
                hint=f"Remove or rename the folder {path}; {label} must be a text file.",
            )
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"{label}: is not a regular file (a device, FIFO or socket).",
                hint=f"Replace {path} with a text file.",
            )
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise unreadable(label, path, exc) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{label}: is larger than {MAX_FILE_BYTES // 1024} KiB.",
            hint="Keep settings and instructions short; put large data in files the agent reads.",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{label}: is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}).",
            hint="Save the file as UTF-8 (iconv -f latin1 -t utf-8, or your editor's encoding).",
        ) from exc


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check_nesting(data: Any, label: str) -> None:
    """Refuse values nested deeper than MAX_DEPTH, and strings or keys holding NUL (no file
    name, command or header can hold one). Shared values (YAML aliases) are checked once."""
    seen: set[int] = set()
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise _nul(label, where)
            continue
        if not isinstance(value, dict | list) or id(value) in seen:
            continue
        seen.add(id(value))
        if depth >= MAX_DEPTH:
            raise ConfigError(
                f"{label}: {where or 'the data'} is nested more than {MAX_DEPTH} levels deep.",
                hint="Flatten it: settings never need that many levels of tables or lists.",
            )
        if isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
            continue
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                raise _nul(label, where or "a key")
            stack.append((item, depth + 1, f"{where}.{key}" if where else str(key)))


def _nul(label: str, where: str) -> ConfigError:
    return ConfigError(
        f"{label}: {where or 'a value'} holds a NUL character (\\u0000).",
        hint="Remove it: no name, command or text here can hold one.",
    )


def parse_toml(text: str, label: str) -> dict[str, Any]:
    """The TOML document `text` as a dict, checked by `check_nesting`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{label}: invalid TOML: {exc}",
            hint="Fix the syntax at that line (strings need quotes, tables need [brackets]).",
        ) from exc
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits (int_max_str_digits).
        raise ConfigError(
            f"{label}: invalid TOML: a number is too long to be read.",
            hint="Write numbers with at most a few digits (a timeout in seconds, a count).",
        ) from exc
    except RecursionError as exc:
        raise _too_deep(label) from exc
    check_nesting(data, label)
    return data


def _too_deep(label: str) -> ConfigError:
    return ConfigError(
        f"{label}: is nested more than {MAX_DEPTH} levels deep.",
        hint="Flatten it: settings never need that many levels of tables or lists.",
    )


@functools.cache
def _frontmatter_loader() -> type[yaml.SafeLoader]:
    """YAML's safe loader, but dates stay text: `description: 2001-12-14` is a description,
    and an impossible date (2001-13-45) is not an error of YAML's own making."""
    import yaml

    class FrontmatterLoader(yaml.SafeLoader):
        pass

    FrontmatterLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return FrontmatterLoader


#: A frontmatter line that YAML reads as a key and a plain string: no quotes, colons, comments,
#: tabs or indentation, and text starting with a letter (so no number, date, alias or tag).
_PLAIN_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*): +([A-Za-z][A-Za-z0-9 .,;()/_'+-]*)")
#: Plain words YAML reads as booleans or null, not as text.
_NOT_TEXT = frozenset(
    form
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for form in (word, word.capitalize(), word.upper())
)


def _plain_lines(block: str) -> dict[str, Any] | None:
    """The frontmatter as YAML reads it when every line is `key: plain text` (what nearly
    every SKILL.md has), without loading YAML (a few hundredths of a second at each `al run`);
    None for anything else, which YAML then reads."""
    data: dict[str, Any] = {}
    for line in block.split("\n"):
        if not line.strip(" "):
            continue
        match = _PLAIN_LINE.fullmatch(line)
        if match is None:
            return None
        key, value = match.group(1), match.group(2).rstrip(" ")
        if key in _NOT_TEXT or value in _NOT_TEXT:
            return None
        data[key] = value
    return data


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    # The mark counts from the frontmatter block; +1 for the opening --- line.
    return f"{problem} (line {mark.line + 2})" if mark is not None else problem


def parse_frontmatter(block: str, label: str) -> dict[str, Any]:
    """The YAML between SKILL.md's `---` lines, which must be `key: value` lines."""
    plain = _plain_lines(block)
    if plain is not None:
        return plain
    import yaml

    try:
        data = yaml.load(block, Loader=_frontmatter_loader()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{label}: the frontmatter is not valid YAML: {_yaml_reason(exc)}",
            hint="The frontmatter is the block between the first two '---' lines.",
        ) from exc
    except RecursionError as exc:
        raise _too_deep(f"{label} frontmatter") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        # An explicit tag YAML cannot construct (`!!timestamp 2001-13-45`, `!!float 1e999x`).
        raise ConfigError(
            f"{label}: the frontmatter is not valid YAML: {exc}",
            hint="Write plain key: value lines, without !!tags.",
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: the frontmatter must be key: value lines (got a {type(data).__name__})",
            hint="Write it like:\n---\ndescription: What this agent does\n---",
        )
    check_nesting(data, f"{label} frontmatter")
    return data
