"""Strategies of the fuzz suite: hostile values, TOML and YAML documents shaped like the
project's files (keys taken from the config models, so validation is reached, not just the
parser), raw bytes, and file-system shapes (a folder, a link loop, a FIFO where a file goes).

The budget: each test's `max_examples` is multiplied by AL_FUZZ_SCALE (default 1, the CI
budget of a minute or two for the whole suite); the examples are derandomized, so CI sees the
same inputs every time. `AL_FUZZ_SCALE=20 AL_FUZZ_RANDOM=1 pytest tests/fuzz` explores more.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from action_llama.config._base import is_table, keys
from action_llama.project.errors import _table_in as model_in

SCALE = float(os.environ.get("AL_FUZZ_SCALE", "1"))


def budget(examples: int) -> settings:
    """Settings of one fuzz test: `examples` (times AL_FUZZ_SCALE), no deadline (a loaded
    CI machine is slow, not wrong), derandomized unless AL_FUZZ_RANDOM is set."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=not os.environ.get("AL_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- values -------------------------------------------------------------------------------------

#: Strings that broke something once, or look like they might: paths, NULs, huge numbers in
#: text, dates, cron lines that never fire, names of the wrong shape.
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        ".",
        "..",
        "../../etc",
        ".x",
        "-x",
        "a/b",
        "a\x00b",
        "\x00",
        "a b",
        "ünïcödé",
        "🦙",
        "\u202e",
        "x" * 300,
        "9" * 400 + "g",
        "1e999",
        "-1",
        "0",
        "inf",
        "nan",
        "2001-13-45",
        "0 0 31 2 *",
        "* * * * * 99999999999999999999",
        "*/0 * * * *",
        "@reboot",
        "github_token:..",
        "github_token:",
        ":x",
        "default",
        "al-agent:latest",
        "al-agent:",
        "UPPER",
        "a" * 65,
        "4g",
        "0.5g",
        "6m",
        "1024t",
        "1025t",
        "-1g",
        "\ud7ff",
        "${HOME}",
        "$(id)",
        "`id`",
        "%s%n",
        "\r\n",
        "\t",
    ]
)
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=20))
INTS = st.one_of(
    st.integers(min_value=-3, max_value=100),
    st.sampled_from([2**31, 2**53 + 1, 2**63, 2**64, 2**70, -(2**63) - 1, 10**30]),
    st.integers(),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.001, 0.5, 1e308])
)
SCALARS = st.one_of(TEXT, INTS, FLOATS, st.booleans())
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=8,
)


def deep(leaf: Any, depth: int, kind: str = "list") -> Any:
    """`leaf` nested `depth` levels deep in lists (or tables)."""
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"a": leaf}
    return leaf


DEEP = st.builds(
    deep, SCALARS, st.sampled_from([31, 32, 33, 150]), st.sampled_from(["list", "table"])
)


# --- documents shaped like the models --------------------------------------------------------


def _container(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return typing.get_origin(args[0]) if args else None
    return origin


def shaped(model: type, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Tables with `model`'s keys (aliases), each holding a value of the right shape or any
    value at all, sometimes a key it does not have: most documents reach the validators."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for key, annotation in keys(model).items():
        nested = model_in(annotation) if depth < 3 else None
        if nested is None:
            optional[key] = st.one_of(VALUES, DEEP)
            continue
        table = shaped(nested, depth + 1)
        container = _container(annotation)
        if container is dict:
            table = st.dictionaries(TEXT, table, max_size=3)
        elif container is list:
            table = st.lists(table, max_size=3)
        optional[key] = st.one_of(table, VALUES)
    known = st.fixed_dictionaries({}, optional=optional)
    extra = st.dictionaries(TEXT, VALUES, max_size=1)
    return st.tuples(extra, known).map(lambda pair: {**pair[0], **pair[1]})


def typed(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of `annotation`'s type (hostile ones included: a huge int is still an int)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (types.UnionType, typing.Union) and args:
        return st.one_of(*(typed(a, depth) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list and args:
        return st.lists(typed(args[0], depth + 1), max_size=3)
    if origin is dict and len(args) == 2:
        return st.dictionaries(TEXT, typed(args[1], depth + 1), max_size=3)
    if is_table(annotation):
        return plausible(annotation, depth + 1) if depth < 3 else st.just({})
    simple: dict[Any, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: INTS,
        float: st.one_of(FLOATS, INTS),
        str: TEXT,
    }
    return simple.get(annotation, VALUES)


def plausible(model: type, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Tables of `model` with up to three of its keys, each holding a value of the right type:
    many load, and reach what uses them (a run, the schedule, the image plan)."""
    values = {key: typed(annotation, depth) for key, annotation in keys(model).items()}
    return st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: values[key] for key in keys})
    )


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**4000 else "9" * 5000
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: dict[str, Any]) -> str:
    """A TOML document of `data` (inline tables all the way down)."""
    return "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in data.items())


@functools.cache
def toml_documents(model: type) -> st.SearchStrategy[bytes]:
    """config.toml files: shaped like `model`, or broken on purpose."""
    return st.one_of(
        shaped(model).map(lambda d: to_toml(d).encode()),
        shaped(model).map(lambda d: to_toml(d).encode()),
        st.sampled_from(
            [
                b"a = " + b"[" * 5000 + b"]" * 5000,
                b"[local]\ntimeout = " + b"9" * 5000,
                b'"a[b" = 1\n[local]\n"mem[ory" = 1\n',
                b"\xef\xbb\xbf[local]\n",
                b"[local\n",
                b"\xff\xfe",
            ]
        ),
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
    )


@functools.cache
def skill_documents() -> st.SearchStrategy[bytes]:
    """SKILL.md files: frontmatter of the right keys or anything, closed or not, or bytes."""
    import yaml

    from action_llama.config import SkillFrontmatter

    def with_frontmatter(data: dict[str, Any], closed: bool, body: str) -> bytes:
        try:
            block = yaml.safe_dump(data, allow_unicode=True)
        except (yaml.YAMLError, RecursionError):
            block = "x: y\n"
        end = "---\n" if closed else ""
        return f"---\n{block}{end}{body}".encode("utf-8", errors="surrogatepass")

    raw_yaml = st.one_of(
        st.text(max_size=100),
        st.sampled_from(
            [
                "description: 2001-13-45",
                "description: !!timestamp 2001-13-45",
                "description: !!binary ===",
                "description: !!python/object:os.system id",
                "description: " + "[" * 10000 + "]" * 10000,
                "description: &a [*a]",
                "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c, *c]",
                "- a\n- b",
                "description: 1e999",
                "? [a]\n: b",
            ]
        ),
    )
    return st.one_of(
        st.builds(with_frontmatter, shaped(SkillFrontmatter), st.booleans(), st.text(max_size=50)),
        st.builds(lambda y, b: f"---\n{y}\n---\n{b}".encode(), raw_yaml, st.text(max_size=20)),
        st.binary(max_size=200),
    )


@functools.cache
def dockerfiles() -> st.SearchStrategy[bytes]:
    lines = st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "FROM al-agent:latest",
                    "FROM --platform=linux/amd64 al-agent:latest AS build",
                    "from scratch",
                    "RUN apt-get install -y jq",
                    "# comment",
                    "",
                    "FROM",
                ]
            ),
            st.text(max_size=30),
        ),
        max_size=5,
    )
    return st.one_of(lines.map(lambda ls: "\n".join(ls).encode()), st.binary(max_size=100))


# --- file-system shapes -----------------------------------------------------------------------

#: What can be found where a file is expected.
SHAPES = ("file", "file", "file", "missing", "dir", "loop", "dangling", "fifo")


def place(path: Path, shape: str, content: bytes) -> None:
    """Put `shape` at `path`: the file with `content`, nothing, a folder, a symbolic link loop,
    a link to nothing, or a FIFO."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if shape == "file":
        path.write_bytes(content)
    elif shape == "dir":
        path.mkdir()
    elif shape == "loop":
        os.symlink(path, path)
    elif shape == "dangling":
        os.symlink(path.parent / "nowhere", path)
    elif shape == "fifo":
        os.mkfifo(path)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
