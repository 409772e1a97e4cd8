"""Values given for a credential (`--field`, a file, stdin, a prompt): parsed and checked.

Nothing here prints or prompts, and no message ever holds a value: errors name the type, the
field, a line number or a file path, never what was typed.
"""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path
from typing import TextIO

from action_llama import oserrors
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.types import BUILTIN, CredentialType
from action_llama.errors import CredentialInvalid


def parse_ref(text: str, *, known_type: bool = True) -> CredentialRef:
    """`type[:instance]` (of a builtin type, unless `known_type` is False); CredentialInvalid
    naming the known types otherwise."""
    try:
        ref = CredentialRef.parse(text)
    except ValueError as exc:
        raise CredentialInvalid(str(exc), hint="See the types with: al creds types") from exc
    if known_type:
        credential_type(ref.type)
    return ref


def _quoted(names: list[str]) -> list[str]:
    return [f'"{name}"' for name in names]


def similar_types(name: str) -> list[str]:
    """Builtin type names close to `name` (misspelt, or the start of one: "github")."""
    starts = [
        t
        for t in BUILTIN
        if t.startswith(name) or (len(t.split("_")[0]) >= 4 and name.startswith(t.split("_")[0]))
    ]
    close = difflib.get_close_matches(name, list(BUILTIN), n=1, cutoff=0.7)
    return list(dict.fromkeys([*close, *starts]))[:3]


def credential_type(name: str) -> CredentialType:
    """The builtin type `name`, or CredentialInvalid with a did-you-mean and the known types."""
    kind = BUILTIN.get(name)
    if kind is not None:
        return kind
    similar = similar_types(name)
    known = textwrap.fill(", ".join(sorted(BUILTIN)), width=88, break_on_hyphens=False)
    guess = f"Did you mean {' or '.join(_quoted(similar))}?\n" if similar else ""
    raise CredentialInvalid(
        f'Unknown credential type "{name}".',
        hint=f"{guess}Known types (al creds types describes them):\n{known}",
    )


def _field_names(kind: CredentialType) -> str:
    return ", ".join(f.name for f in kind.fields)


def _check_field(kind: CredentialType, name: str, where: str) -> None:
    if kind.field(name) is not None:
        return
    close = difflib.get_close_matches(name, [f.name for f in kind.fields], n=1)
    guess = f'Did you mean "{close[0]}"? ' if close else ""
    raise CredentialInvalid(
        f'{where}: {kind.name} has no field "{name}".',
        hint=f"{guess}Its fields: {_field_names(kind)}",
    )


#: A value file is a key or a JSON key file: larger ones are not what was meant.
MAX_VALUE_FILE = 1024 * 1024


def read_value_file(kind: CredentialType, name: str, path_text: str) -> str:
    """The text of the file `name=@path` (or a prompt) names: an SSH key, a JSON key file."""
    shown = path_text if len(path_text) <= 200 else f"{path_text[:200]}..."
    hint = f"Give the path of the file holding the {name} (--field {name}=@PATH)."
    try:
        path = Path(path_text).expanduser()
        with path.open("rb") as fh:
            data = fh.read(MAX_VALUE_FILE + 1)
    except (OSError, RuntimeError) as exc:  # RuntimeError: ~user of no such user
        problem = oserrors.reason(exc) if isinstance(exc, OSError) else "cannot be found"
        raise CredentialInvalid(
            f'{kind.name} {name}: the file "{shown}": {problem}.', hint=hint
        ) from exc
    if len(data) > MAX_VALUE_FILE:
        problem = f"is larger than {MAX_VALUE_FILE // 1024} KiB"
    else:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            problem = "is not UTF-8 text"
    raise CredentialInvalid(f'{kind.name} {name}: the file "{shown}" {problem}.', hint=hint)


def read_stdin(stream: TextIO) -> str:
    """All of stdin, which must be UTF-8 text (read as bytes: the locale's decoding would
    let bytes through that cannot be stored)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return stream.read()
    try:
        return bytes(buffer.read()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialInvalid(
            "The value on stdin is not UTF-8 text.",
            hint="Pipe the value as text; a key file can be given with --field NAME=@FILE.",
        ) from exc


def parse_fields(kind: CredentialType, items: list[str]) -> dict[str, str]:
    """`--field name=value` options (`name=@path` reads the file) as {field: value}."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            # The item may be a value typed without its name: never repeat it.
            raise CredentialInvalid(
                "--field takes name=value (or name=@file); one was given without a name.",
                hint=f"Fields of {kind.name}: {_field_names(kind)}",
            )
        _check_field(kind, name, "--field")
        if name in values:
            raise CredentialInvalid(f'--field "{name}" is given more than once.')
        values[name] = read_value_file(kind, name, value[1:]) if value.startswith("@") else value
    return values


def parse_stdin(kind: CredentialType, text: str) -> dict[str, str]:
    """Values piped in: a one-field type takes all of stdin, others take `name=value` lines."""
    if len(kind.fields) == 1:
        return {kind.fields[0].name: text}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CredentialInvalid(
                f"stdin line {number} is not name=value ({kind.name} has several fields).",
                hint=f"Write one line per field ({_field_names(kind)}), or use "
                "--field name=value, --field name=@file for multi-line values.",
            )
        _check_field(kind, name, f"stdin line {number}")
        if name in values:
            raise CredentialInvalid(f'stdin line {number}: field "{name}" is given twice.')
        values[name] = value
    return values


def merge(given: dict[str, str], more: dict[str, str], source: str) -> dict[str, str]:
    """`given` plus `more`; a field in both is an error (which one was meant is unclear)."""
    both = sorted(set(given) & set(more))
    if both:
        raise CredentialInvalid(
            f"Field {', '.join(_quoted(both))} is given both by --field and {source}.",
            hint="Give each field once.",
        )
    return {**given, **more}


def complete(kind: CredentialType, values: dict[str, str], *, how: str) -> dict[str, str]:
    """Every field of `kind`, each non-empty and trimmed, in the type's order.

    `how` says how the missing fields could have been given, for the hint.
    """
    missing = [f.name for f in kind.fields if f.name not in values]
    if missing:
        raise CredentialInvalid(
            f"{kind.name} needs field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, which {'were' if len(missing) > 1 else 'was'} not given.",
            hint=how,
        )
    result: dict[str, str] = {}
    for spec in kind.fields:
        value = values[spec.name].strip()
        if not value:
            raise CredentialInvalid(f'Field "{spec.name}" of {kind.name} is empty.', hint=how)
        if value.startswith("-----BEGIN") and "-----END" not in value:
            raise CredentialInvalid(
                f'Field "{spec.name}" of {kind.name} holds the first line of a key only '
                "(a prompt reads one line).",
                hint=f"Read the key from its file: --field {spec.name}=@~/.ssh/id_ed25519",
            )
        result[spec.name] = value
    return result
