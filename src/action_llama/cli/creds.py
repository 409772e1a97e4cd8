"""`al creds add|ls|rm|types`: the credential store, without ever showing a value.

Values come from prompts (hidden for secrets), `--field name=value|@file` or stdin, so no
secret has to appear on a command line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from action_llama.credentials.types import MODEL_BROKER, PLACEHOLDERS, SSH_AGENT

if TYPE_CHECKING:
    from action_llama.credentials.refs import CredentialRef
    from action_llama.credentials.types import CredentialType

app = typer.Typer(
    help="Manage credentials (API keys, tokens, SSH keys) agents use.", no_args_is_help=True
)

#: Fields holding several lines (a key, a JSON key file): a one-line prompt cannot take them, so
#: the prompt asks for the file instead.
FILE_FIELDS = frozenset({"id_rsa", "private_key", "key_json"})

#: How fields can be given when they were not: the hint of a "missing field" error.
HOW_TO_GIVE = (
    "Pipe the value on stdin (a one-field type), name=value lines on stdin, or pass "
    "--field name=value (--field name=@FILE reads a file). On a terminal, al creds add prompts."
)


@app.command("add")
def add(
    ref_text: str = typer.Argument(
        ..., metavar="TYPE[:INSTANCE]", help="Credential to add, e.g. github_token or git_ssh:work."
    ),
    fields: list[str] | None = typer.Option(
        None,
        "--field",
        "-f",
        metavar="NAME=VALUE",
        help="A field's value; NAME=@FILE reads it from a file. Repeatable.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing instance."),
) -> None:
    """Add a credential: prompts for each field, or reads --field options or stdin."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.credentials.values import credential_type, parse_fields, parse_ref

    ref = parse_ref(ref_text)
    kind = credential_type(ref.type)
    values = parse_fields(kind, fields or [])
    store = CredentialStore()
    interactive = sys.stdin.isatty()
    if store.has(ref) and not force and not _may_replace(ref, interactive):
        typer.echo(f'Kept the existing credential "{ref}".', err=True)
        return
    store.write(ref, _collect(kind, values, interactive))
    typer.echo(f'Credential "{ref}" saved.')


def _may_replace(ref: CredentialRef, interactive: bool) -> bool:
    from action_llama.errors import CredentialInvalid

    if not interactive:
        raise CredentialInvalid(
            f'Credential "{ref}" already exists; it was left unchanged.',
            hint=f"Pass --force to replace it: al creds add {ref} --force",
        )
    return typer.confirm(f'Credential "{ref}" already exists. Replace it?', default=False, err=True)


def _collect(kind: CredentialType, values: dict[str, str], interactive: bool) -> dict[str, str]:
    """The given values plus the missing fields, prompted for or read from stdin."""
    from action_llama.credentials.values import (
        complete,
        merge,
        parse_stdin,
        read_stdin,
        read_value_file,
    )

    missing = [f for f in kind.fields if f.name not in values]
    if missing and interactive:
        typer.echo(f"{kind.label} ({kind.name}): {kind.description}", err=True)
        for spec in missing:
            if spec.name in FILE_FIELDS:
                path = typer.prompt(f"{spec.name}: path of the file holding it", err=True)
                values[spec.name] = read_value_file(kind, spec.name, path.strip())
                continue
            label = f"{spec.name} ({spec.help})" if spec.help else spec.name
            values[spec.name] = typer.prompt(label, hide_input=spec.secret, err=True)
    elif missing:
        values = merge(values, parse_stdin(kind, read_stdin(sys.stdin)), "stdin")
    return complete(kind, values, how=HOW_TO_GIVE)


@app.command("ls")
def ls() -> None:
    """List stored credentials: names and field names, never values."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.credentials.types import BUILTIN

    store = CredentialStore()
    stored = store.list()
    if not stored:
        typer.echo(f"No credentials in {store.root} yet.")
        typer.echo("Add one with: al creds add <type>   (al creds types lists the types)")
        return
    typer.echo(f"Credentials in {store.root}:")
    width = max(len(str(item.ref)) for item in stored)
    current = None
    for item in stored:
        if item.ref.type != current:
            current = item.ref.type
            kind = BUILTIN.get(current)
            typer.echo(f"\n  {kind.label if kind else current} ({current})")
        typer.echo(f"    {item.ref!s:<{width}}  {', '.join(item.fields)}")


@app.command("rm")
def rm(
    ref_text: str = typer.Argument(..., metavar="TYPE[:INSTANCE]", help="Credential to remove."),
) -> None:
    """Remove a stored credential instance."""
    from action_llama.credentials.store import CredentialStore
    from action_llama.credentials.values import parse_ref

    ref = parse_ref(ref_text, known_type=False)
    CredentialStore().remove(ref)
    typer.echo(f'Credential "{ref}" removed.')


@app.command("types")
def types(
    search: str | None = typer.Argument(
        None, metavar="[WORD]", help="Show only types whose name or label contains WORD."
    ),
) -> None:
    """Describe the builtin credential types: fields, variables agents get, and purpose."""
    from action_llama.credentials.types import BUILTIN

    word = (search or "").lower()
    shown = [
        kind for kind in BUILTIN.values() if word in kind.name.lower() or word in kind.label.lower()
    ]
    if not shown:
        typer.echo(f'No credential type matches "{search}". Run al creds types to see them all.')
        raise typer.Exit(1)
    for index, kind in enumerate(shown):
        if index:
            typer.echo("")
        typer.echo(_describe(kind))


def _describe(kind: CredentialType) -> str:
    import re

    fields = ", ".join(f"{f.name}{'' if f.secret else ' (not secret)'}" for f in kind.fields)
    # The context line is "`VARS` ...: purpose"; its VARS include ones several fields make
    # together (GIT_SSH_COMMAND).
    named, _, purpose = kind.agent_context.partition(": ")
    env = [name for f in kind.fields for name in f.env]
    env += [v for v in re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", named) if v not in env]
    if kind.host_only:
        where = "nothing: used by al itself (gateway or CLI), never given to agents"
    elif not env and kind.name.endswith("_key"):
        where = "nothing: the key goes to the model client, never into the environment"
    else:
        where = ", ".join(env) or "nothing"
    lines = [
        f"{kind.name}  ({kind.label})",
        f"    {kind.description}",
        f"    fields:     {fields}",
        f"    agents get: {where}",
    ]
    if purpose:
        lines.append(f"    for:        {purpose}")
    if kind.hosts:
        lines.append(f"    reaches:    {', '.join(kind.hosts)} (allowed to runs that list it)")
    if not kind.host_only:
        lines.append(f"    brokered:   {BROKERED_TEXT[kind.brokered]}")
    return "\n".join(lines)


#: What `brokered:` says for each way a type reaches runs whose [network] is checked.
BROKERED_TEXT = {
    MODEL_BROKER: "yes: the model broker adds the key; runs never hold it",
    PLACEHOLDERS: "yes: runs hold placeholders, swapped for the values in HTTPS to its hosts",
    SSH_AGENT: "yes: an ssh-agent of the run holds the key (SSH_AUTH_SOCK); no key file",
    None: "no: runs get its files and variables as they are",
}
