"""The credential store: `<root>/<type>/<instance>/<field>`, outside every project.

Directories are 0700 and files 0600, so only the operator (and root) can read them. The root
is `$AL_CREDENTIALS_DIR`, else `$AL_HOME/credentials`, else `~/.action-llama/credentials`.
Values are stored with a trailing newline and trimmed when read.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from action_llama import oserrors
from action_llama.credentials.refs import CredentialRef, is_instance_name, is_type_name
from action_llama.errors import CredentialInvalid, CredentialMissing


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
    """Reads and writes credential instances. Values are never logged or put in messages.

    Every OS error (no permission, a file where a folder should be, a full disk) and a field
    that is not UTF-8 text becomes CredentialMissing / CredentialInvalid naming the path.
    """

    def __init__(self, root: Path | None = None):
        self.root = root or default_root()

    def _dir(self, ref: CredentialRef) -> Path:
        # The one place a ref becomes a path: a name that is not a plain folder name (a ref
        # made without `CredentialRef.parse`) never reaches the file system.
        if not is_type_name(ref.type) or not is_instance_name(ref.instance):
            raise CredentialInvalid(f'"{ref.type}:{ref.instance}" is not a credential name.')
        return self.root / ref.type / ref.instance

    def _unusable(
        self, exc: OSError, path: Path, *, writing: bool = False
    ) -> CredentialMissing | CredentialInvalid:
        """`exc` in words; CredentialInvalid when writing (nothing was stored)."""
        kind = CredentialInvalid if writing else CredentialMissing
        where = path if exc.filename is None else Path(exc.filename)
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            return kind(
                f"The credential store at {self.root} is damaged: {where} {oserrors.reason(exc)}.",
                hint=f"Move {where} out of the way (the store holds only folders "
                "<type>/<instance>/ of field files), then add the credential again.",
            )
        if exc.errno in (errno.EACCES, errno.EPERM):
            return kind(
                f"Cannot use the credential store at {self.root}: {where}: permission denied.",
                hint="Run al as the user who owns it, or point AL_CREDENTIALS_DIR at your own "
                "store.",
            )
        return kind(
            f"Cannot use the credential store at {self.root}: {where}: {oserrors.reason(exc)}.",
            hint=oserrors.fix(exc, where),
        )

    def has(self, ref: CredentialRef) -> bool:
        path = self._dir(ref)
        try:
            return path.is_dir() and any(p.is_file() for p in path.iterdir())
        except OSError as exc:
            raise self._unusable(exc, path) from exc

    def read(self, ref: CredentialRef) -> dict[str, str]:
        """Every field of `ref`; CredentialMissing (with the command that adds it) if absent."""
        if not self.has(ref):
            raise CredentialMissing(
                f'Credential "{ref}" is not in the credential store ({self.root}).',
                hint=f"Add it with: al creds add {ref}",
            )
        path = self._dir(ref)
        try:
            return {
                p.name: p.read_text(encoding="utf-8").strip()
                for p in sorted(path.iterdir())
                if p.is_file()
            }
        except OSError as exc:
            raise self._unusable(exc, path) from exc
        except UnicodeDecodeError as exc:
            raise CredentialMissing(
                f'Credential "{ref}" has a field that is not UTF-8 text ({path}).',
                hint=f"Add it again: al creds add {ref} --force",
            ) from exc

    def write(self, ref: CredentialRef, values: dict[str, str]) -> None:
        """Store `values` as the fields of `ref`, replacing the instance as a whole.

        Nothing is left behind when it fails (a full disk, a value that cannot be encoded):
        the previous instance, if any, stays as it was.
        """
        target = self._dir(ref)
        staging = target.with_name(f".{ref.instance}.partial")
        try:
            for part in (self.root, self.root / ref.type):
                part.mkdir(mode=0o700, parents=True, exist_ok=True)
                part.chmod(0o700)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=0o700)
            for name, value in values.items():
                data = (value.strip() + "\n").encode("utf-8")
                fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            # Replace in one step, so a crash never leaves half an instance.
            old = target.with_name(f".{ref.instance}.old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise self._unusable(exc, target, writing=True) from exc
        except UnicodeEncodeError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CredentialInvalid(
                f'A value given for "{ref}" is not text (it holds bytes that are not UTF-8).',
                hint="Give the value as UTF-8 text; binary keys go in a file read with "
                "--field NAME=@FILE only when the file is text (PEM, JSON).",
            ) from exc

    def remove(self, ref: CredentialRef) -> None:
        path = self._dir(ref)
        try:
            if not path.is_dir():
                raise CredentialMissing(
                    f'Credential "{ref}" is not in the credential store.',
                    hint="See what is there with: al creds ls",
                )
            shutil.rmtree(path)
            type_dir = self.root / ref.type
            if type_dir.is_dir() and not any(type_dir.iterdir()):
                type_dir.rmdir()
        except OSError as exc:
            raise self._unusable(exc, path, writing=True) from exc

    def list(self) -> list[StoredCredential]:
        """The stored instances (folders that are not credential names are not listed)."""
        found: list[StoredCredential] = []
        try:
            if not self.root.is_dir():
                return found
            for type_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                if not is_type_name(type_dir.name):
                    continue
                for inst in sorted(p for p in type_dir.iterdir() if p.is_dir()):
                    if not is_instance_name(inst.name):
                        continue  # .<instance>.partial of an interrupted write, and strays
                    fields = tuple(sorted(p.name for p in inst.iterdir() if p.is_file()))
                    ref = CredentialRef(type_dir.name, inst.name)
                    found.append(StoredCredential(ref, fields))
        except OSError as exc:
            raise self._unusable(exc, self.root) from exc
        return found
