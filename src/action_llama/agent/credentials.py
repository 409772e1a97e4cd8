"""Inside the run: turn staged credential files into the environment the agent's tools expect.

Files are `<AL_CREDENTIALS_PATH>/<type>/<instance>/<field>`. For each ref the agent lists, in
order, the fields of builtin types are exported to their variables (the first listed instance
of a type wins). GitHub tokens also get a git credential helper; git_ssh keys are written to
`$HOME/.ssh` with GIT_SSH_COMMAND pointing at them. Values are never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from action_llama.errors import RunAborted
from action_llama.providers import CA_VAR

#: Where Debian (and the base image) keeps the system's trusted roots.
SYSTEM_ROOTS = Path("/etc/ssl/certs/ca-certificates.crt")
#: Variables clients read their trusted roots from (Node's adds to its own).
BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")


class MissingCredential(RunAborted):
    """A listed credential is not in the staged directory (its message is the ref)."""


def _parse(ref: str) -> tuple[str, str]:
    kind, _, instance = ref.partition(":")
    return kind, instance or "default"


def read_staged(root: Path, ref: str) -> dict[str, str]:
    kind, instance = _parse(ref)
    folder = root / kind / instance
    if not folder.is_dir():
        raise MissingCredential(ref)
    return {p.name: p.read_text(encoding="utf-8").strip() for p in folder.iterdir() if p.is_file()}


def export(root: Path, refs: list[str], env: dict[str, str], home: Path) -> list[str]:
    """Update `env` for `refs`; the names of the variables set (for the log, never values)."""
    if not refs:
        return []
    # Here, not at the top: the types' dataclasses pull in `inspect` and its kin, a good part
    # of the entry's start-up, which a run without credentials need not pay.
    from action_llama.credentials.types import BUILTIN

    exported: list[str] = []
    for ref in refs:
        kind, _ = _parse(ref)
        values = read_staged(root, ref)
        spec = BUILTIN.get(kind)
        if spec is None or spec.host_only:
            continue
        for field in spec.fields:
            value = values.get(field.name)
            for var in field.env:
                if value and var not in exported:
                    env[var] = value
                    exported.append(var)
        agent = root / kind / _parse(ref)[1] / "agent.sock"
        if kind == "git_ssh" and "GIT_SSH_COMMAND" not in exported and agent.is_socket():
            # The key stays with al: ssh asks the run's agent to sign (no key file here).
            env["SSH_AUTH_SOCK"] = str(agent)
            base = env.get("GIT_SSH_COMMAND") or "ssh"
            env["GIT_SSH_COMMAND"] = f"{base} -o StrictHostKeyChecking=accept-new"
            exported += ["SSH_AUTH_SOCK", "GIT_SSH_COMMAND"]
        if kind == "git_ssh" and "GIT_SSH_COMMAND" not in exported and values.get("id_rsa"):
            ssh = home / ".ssh"
            ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = ssh / "id_rsa"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(values["id_rsa"] + "\n")
            # Keeps what the run was given (the egress proxy's ProxyCommand) and adds the key.
            base = env.get("GIT_SSH_COMMAND") or "ssh"
            env["GIT_SSH_COMMAND"] = (
                f'{base} -i "{key}" -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes'
            )
            exported.append("GIT_SSH_COMMAND")
    if "GITHUB_TOKEN" in env and "GITHUB_TOKEN" in exported:
        _git_credential_helper(env)
        exported.append("GIT_CONFIG_COUNT")
    return exported


#: Where git offers $GITHUB_TOKEN: GitHub only. Any host may ask for credentials, and one a
#: run was talked into cloning from must not get a raw token for asking.
GITHUB_GIT = "https://github.com"


def _git_credential_helper(env: dict[str, str]) -> None:
    """git over HTTPS to GitHub authenticates with $GITHUB_TOKEN (read at use, never written
    out)."""
    index = int(env.get("GIT_CONFIG_COUNT", "0"))
    env["GIT_TERMINAL_PROMPT"] = "0"
    env[f"GIT_CONFIG_KEY_{index}"] = f"credential.{GITHUB_GIT}.helper"
    env[f"GIT_CONFIG_VALUE_{index}"] = (
        '!f() { echo username=x-access-token; echo "password=$GITHUB_TOKEN"; }; f'
    )
    env["GIT_CONFIG_COUNT"] = str(index + 1)


def trust_egress_ca(env: dict[str, str], work: Path) -> None:
    """When the run's tokens are placeholders (`AL_EGRESS_CA` holds the run's own CA), make
    its tools trust that CA beside the system's roots: a bundle of both in `work` (the root
    file system stays read-only) named by every usual variable."""
    ca = env.pop(CA_VAR, "")
    if not ca:
        return
    try:
        roots = SYSTEM_ROOTS.read_text(encoding="utf-8")
    except OSError:
        import ssl

        cafile = ssl.get_default_verify_paths().cafile
        roots = Path(cafile).read_text(encoding="utf-8") if cafile else ""
    own = work / ".al-egress-ca.pem"
    bundle = work / ".al-ca-bundle.pem"
    own.write_text(ca, encoding="utf-8")
    bundle.write_text(roots.rstrip("\n") + "\n" + ca, encoding="utf-8")
    for var in BUNDLE_VARS:
        env[var] = str(bundle)
    env["NODE_EXTRA_CA_CERTS"] = str(own)
