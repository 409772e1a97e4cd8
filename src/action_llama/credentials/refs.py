"""`type` or `type:instance`: how agents and commands name a credential."""

from __future__ import annotations

import re
from typing import NamedTuple

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
DEFAULT_INSTANCE = "default"


# A NamedTuple (immutable, ordered, hashable), not a dataclass: the light client of a running
# scheduler reads the operator key through this module, and dataclasses costs it 10 ms to import.
class CredentialRef(NamedTuple):
    type: str
    instance: str = DEFAULT_INSTANCE

    @classmethod
    def parse(cls, text: str) -> CredentialRef:
        """Parse `type[:instance]`; ValueError with the expected shape otherwise."""
        kind, _, instance = text.strip().partition(":")
        instance = instance or DEFAULT_INSTANCE
        if not _PART.match(kind) or not _PART.match(instance):
            raise ValueError(
                f'"{text}" is not a credential reference; write "type" or "type:instance", '
                'for example "github_token" or "github_token:work"'
            )
        return cls(kind, instance)

    def __str__(self) -> str:
        return self.type if self.instance == DEFAULT_INSTANCE else f"{self.type}:{self.instance}"
