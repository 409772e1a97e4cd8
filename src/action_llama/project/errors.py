"""Turn pydantic validation errors into one line per problem, naming the file and key."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside `annotation` (through Optional, list and dict), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc`."""
    current: type[BaseModel] | None = model
    pending_container = False
    for part in loc:
        if current is None:
            return None
        if pending_container:
            # A dict key or list index: stays on the same element model.
            pending_container = False
            continue
        by_key = {field.alias or name: field for name, field in current.model_fields.items()}
        field = by_key.get(str(part))
        if field is None:
            return current
        origin = typing.get_origin(field.annotation)
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
            origin = typing.get_origin(args[0]) if args else None
        pending_container = origin in (list, dict)
        current = _model_in(field.annotation)
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
    message = re.sub(r" or instance of \w+", "", message)
    return message.replace("a valid dictionary", "a table ([name] or {...})")


def describe(
    exc: ValidationError,
    model: type[BaseModel],
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
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1]) if loc else model
            known = _keys_of(owner) if owner else []
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
        elif kind == "missing":
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
