"""`type` or `type:instance`: how agents and commands name a credential.

The one check of credential names, used wherever one is read (an agent's `credentials`, a
webhook source's `credential`, `al creds`, the store's folder names): each part names a
folder of the store, so it must be a plain name, never a path (`..`, `a/b`) or hidden file.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_NAME = 64
_TYPE = re.compile(r"^[a-z0-9_]{1,64}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
DEFAULT_INSTANCE = "default"


def check_instance(name: str) -> None:
    """ValueError unless `name` can be a credential instance (a folder of the store)."""
    if not _INSTANCE.match(name):
        raise ValueError(
            f'"{name}" is not a credential instance name; use 1-{MAX_NAME} letters, digits, '
            '"_", "." or "-", starting with a letter, digit or "_" (for example "work")'
        )


def is_type_name(name: str) -> bool:
    return bool(_TYPE.match(name))


def is_instance_name(name: str) -> bool:
    return bool(_INSTANCE.match(name))


# A NamedTuple (immutable, ordered, hashable), not a dataclass: the light client of a running
# scheduler reads the operator key through this module, and dataclasses costs it 10 ms to import.
class CredentialRef(NamedTuple):
    type: str
    instance: str = DEFAULT_INSTANCE

    @classmethod
    def parse(cls, text: str) -> CredentialRef:
        """Parse `type[:instance]`; ValueError with the expected shape otherwise."""
        kind, colon, instance = text.strip().partition(":")
        instance = instance if colon else DEFAULT_INSTANCE
        if not is_type_name(kind) or not is_instance_name(instance):
            raise ValueError(
                f'"{text}" is not a credential reference; write "type" or "type:instance", '
                'for example "github_token" or "github_token:work" (lower-case type; instance: '
                f'1-{MAX_NAME} letters, digits, "_", "." or "-", not starting with "." or "-")'
            )
        return cls(kind, instance)

    def __str__(self) -> str:
        return self.type if self.instance == DEFAULT_INSTANCE else f"{self.type}:{self.instance}"
