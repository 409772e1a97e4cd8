"""Turn pydantic validation errors into one line per problem, naming the file and key."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from typing import TYPE_CHECKING, Any

from action_llama.config._base import is_table, keys

if TYPE_CHECKING:
    from pydantic import ValidationError


def _table_in(annotation: Any) -> type | None:
    """The config table class inside `annotation` (through Optional, list and dict), if any."""
    if is_table(annotation):
        return typing.cast(type, annotation)
    for arg in typing.get_args(annotation):
        found = _table_in(arg)
        if found is not None:
            return found
    return None


def _table_at(table: type, loc: tuple[int | str, ...]) -> type | None:
    """The table class that owns the last element of `loc`."""
    current: type | None = table
    pending_container = False
    for part in loc:
        if current is None:
            return None
        if pending_container:
            # A dict key or list index: stays on the same element table.
            pending_container = False
            continue
        annotation = keys(current).get(str(part))
        if annotation is None:
            return current
        origin = typing.get_origin(annotation)
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            origin = typing.get_origin(args[0]) if args else None
        pending_container = origin in (list, dict)
        current = _table_in(annotation)
    return current


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted(loc: tuple[int | str, ...]) -> str:
    """`("webhooks", 0, "source")` → `webhooks[0].source`; keys TOML must quote are quoted
    (`local."mem[ory"`)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = str(part) if _BARE_KEY.match(str(part)) else json.dumps(str(part))
        out += f".{key}" if out else key
    return out


def _quote(key: str) -> str:
    """`"timeout"`, or `'local."mem[ory"'` for a key that holds quotes itself."""
    return f"'{key}'" if '"' in key else f'"{key}"'


def user_loc(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """`loc` without the steps pydantic adds for its own types (`function-after[...]`,
    `list[str]`): a step is kept when it is a key or index of the data the user wrote (or
    the missing key a "missing" error names, last)."""
    kept: list[int | str] = []
    current = data
    for index, part in enumerate(loc):
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_list or (isinstance(current, dict) and part in current):
            current = current[part]
        elif index == len(loc) - 1 and isinstance(current, dict):
            current = None  # a missing key of this table
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _plain(message: str) -> str:
    """Pydantic's wording without our class names."""
    message = message.removeprefix("Value error, ")
    message = re.sub(r" or (an )?instance of \w+", "", message)
    return re.sub(r"a (valid )?dictionary", "a table ([name] or {...})", message)


def describe(
    exc: ValidationError,
    model: type,
    file_label: str,
    elsewhere: dict[str, str] | None = None,
    data: Any = None,
) -> tuple[list[str], list[str]]:
    """(problems, hints) for every error in `exc`, each naming `file_label` and the key.

    `elsewhere` maps top-level keys that belong in another file to a hint saying which;
    `data` is what was validated (it tells the user's keys from pydantic's type steps).
    """
    problems: list[str] = []
    hints: list[str] = []
    elsewhere = elsewhere or {}
    for error in exc.errors(include_url=False):
        loc = user_loc(tuple(error["loc"]), data)
        key = dotted(loc)
        kind = error["type"]
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            owner = _table_at(model, loc[:-1]) if loc else model
            known = list(keys(owner)) if owner else []
            problems.append(f"{file_label}: unknown key {_quote(key)}")
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.7)
            if len(loc) == 1 and key in elsewhere:
                hints.append(elsewhere[key])
            elif close:
                parent = dotted(loc[:-1])
                suggestion = f"{parent}.{close[0]}" if parent else close[0]
                hints.append(f'did you mean "{suggestion}"? (in {file_label})')
            elif known:
                hints.append(f"keys allowed there: {', '.join(known)}")
        elif kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
            problems.append(f"{file_label}: missing required key {_quote(key)}")
        else:
            message = _plain(error["msg"])
            got = error.get("input")
            shown = (
                f" (got {got!r})"
                if not isinstance(got, dict | list) and f'"{got}"' not in message
                else ""
            )
            problems.append(
                f"{file_label}: key {_quote(key)}: {message}{shown}"
                if key
                else f"{file_label}: {message}"
            )
    return problems, hints
