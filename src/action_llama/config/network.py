"""`[network]`: where a run may connect to (project default; an agent's table replaces it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from action_llama.config._base import Strict
from action_llama.egress.rules import check_entry

NetworkMode = Literal["allowlist", "open", "none"]


class NetworkConfig(Strict):
    """`[network]`: `allowlist` (the default) lets a run reach only the hosts it is allowed;
    `none` only the scheduler's gateway; `open` anything (no egress control)."""

    mode: NetworkMode = "allowlist"
    allow: list[Annotated[str, AfterValidator(check_entry)]] = Field(default_factory=list)
