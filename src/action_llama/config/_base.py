"""What every config table shares: how it is declared, validated and introspected.

Tables are frozen standard-library dataclasses, so a run that reuses a project it validated
before (`project.snapshot`) never imports pydantic. Pydantic validates them where files are
read (`validate`): it takes a dataclass's `__pydantic_config__`, a field's constraints and
TOML alias from its `metadata` (`setting`), and checks written as `Annotated[T, After(fn)]`.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

#: Ceilings of the numbers config files hold: far above any real setting, and below what the
#: OS, SQLite, asyncio and Docker can take (a timeout of 2**70 seconds overflows them).
MAX_SECONDS = 366 * 24 * 3600
MAX_COUNT = 1_000_000
MAX_DAYS = 36_500

T = TypeVar("T")


class Strict:
    """A config table: unknown keys are errors (a typo must not become a silent default), and
    `inf` / `nan` are not numbers a setting can take. Subclasses are frozen, keyword-only
    dataclasses."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid", "allow_inf_nan": False}


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    alias: str | None = None,
    **bounds: Any,
) -> Any:
    """A field of a table: its default (or `factory`), the key it is written as in TOML when
    that differs from the attribute (`alias`), and pydantic's bounds (ge, gt, le, min_length)."""
    metadata = {**bounds, **({"alias": alias} if alias else {})}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class After:
    """`Annotated[T, After(check)]`: `check(value)` runs once the value is a T; it returns the
    value to keep or raises ValueError saying what is wrong."""

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))


@functools.cache
def _adapter(table: type) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(table)


def validate(table: type[T], data: Any) -> T:
    """`data` (a parsed TOML table) as a `table`; pydantic.ValidationError when it is not one."""
    result: T = _adapter(typing.cast(Hashable, table)).validate_python(data)
    return result


def is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Strict)


@functools.cache
def keys(table: type) -> dict[str, Any]:
    """The keys `table` is written with (aliases where it has them), in declaration order, and
    the type each holds."""
    hints = typing.get_type_hints(table)
    return {
        field.metadata.get("alias", field.name): hints[field.name]
        for field in dataclasses.fields(table)
    }


def changed(table: Any) -> list[str]:
    """The attributes of `table` holding something other than their default: what its file
    sets (writing a default value down changes nothing, so it does not count)."""
    default = type(table)()
    return [
        field.name
        for field in dataclasses.fields(table)
        if getattr(table, field.name) != getattr(default, field.name)
    ]


def dump(table: Any, *, by_alias: bool = False) -> dict[str, Any]:
    """`table` as plain data (nested tables too), keyed by attribute or by TOML key."""
    if not by_alias:
        return dataclasses.asdict(table)
    out: dict[str, Any] = {}
    for field in dataclasses.fields(table):
        value = getattr(table, field.name)
        out[field.metadata.get("alias", field.name)] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dump(value, by_alias=True)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
