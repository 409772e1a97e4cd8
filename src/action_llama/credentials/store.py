"""The credential store: `<root>/<type>/<instance>/<field>`, outside every project.

Directories are 0700 and files 0600, so only the operator (and root) can read them. The root
is `$AL_CREDENTIALS_DIR`, else `$AL_HOME/credentials`, else `~/.action-llama/credentials`.
Values are stored with a trailing newline and trimmed when read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

from action_llama.credentials.refs import CredentialRef
from action_llama.errors import CredentialMissing


def default_root() -> Path:
    explicit = os.environ.get("AL_CREDENTIALS_DIR")
    if explicit:
        return Path(explicit)
    home = os.environ.get("AL_HOME")
    return (Path(home) if home else Path.home() / ".action-llama") / "credentials"


class StoredCredential(NamedTuple):
    ref: CredentialRef
    fields: tuple[str, ...]


class CredentialStore:
    """Reads and writes credential instances. Values are never logged or put in messages."""

    def __init__(self, root: Path | None = None):
        self.root = root or default_root()

    def _dir(self, ref: CredentialRef) -> Path:
        return self.root / ref.type / ref.instance

    def _unreadable(self) -> CredentialMissing:
        return CredentialMissing(
            f"Cannot read the credential store at {self.root}: permission denied.",
            hint="Run al as the user who owns it, or point AL_CREDENTIALS_DIR at your own store.",
        )

    def has(self, ref: CredentialRef) -> bool:
        path = self._dir(ref)
        try:
            return path.is_dir() and any(p.is_file() for p in path.iterdir())
        except PermissionError as exc:
            raise self._unreadable() from exc

    def read(self, ref: CredentialRef) -> dict[str, str]:
        """Every field of `ref`; CredentialMissing (with the command that adds it) if absent."""
        if not self.has(ref):
            raise CredentialMissing(
                f'Credential "{ref}" is not in the credential store ({self.root}).',
                hint=f"Add it with: al creds add {ref}",
            )
        try:
            return {
                p.name: p.read_text(encoding="utf-8").strip()
                for p in sorted(self._dir(ref).iterdir())
                if p.is_file()
            }
        except PermissionError as exc:
            raise self._unreadable() from exc

    def write(self, ref: CredentialRef, values: dict[str, str]) -> None:
        """Store `values` as the fields of `ref`, replacing the instance as a whole."""
        for part in (self.root, self.root / ref.type):
            part.mkdir(mode=0o700, parents=True, exist_ok=True)
            part.chmod(0o700)
        target = self._dir(ref)
        staging = target.with_name(f".{ref.instance}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        for name, value in values.items():
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(value.strip() + "\n")
        # Replace in one step, so a crash never leaves half an instance.
        old = target.with_name(f".{ref.instance}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def remove(self, ref: CredentialRef) -> None:
        if not self._dir(ref).is_dir():
            raise CredentialMissing(
                f'Credential "{ref}" is not in the credential store.',
                hint="See what is there with: al creds ls",
            )
        shutil.rmtree(self._dir(ref))
        type_dir = self.root / ref.type
        if type_dir.is_dir() and not any(type_dir.iterdir()):
            type_dir.rmdir()

    def list(self) -> list[StoredCredential]:
        found: list[StoredCredential] = []
        if not self.root.is_dir():
            return found
        for type_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for inst in sorted(p for p in type_dir.iterdir() if p.is_dir()):
                if inst.name.startswith("."):
                    continue
                fields = tuple(sorted(p.name for p in inst.iterdir() if p.is_file()))
                found.append(StoredCredential(CredentialRef(type_dir.name, inst.name), fields))
        return found
