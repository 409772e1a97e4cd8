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


class LimitsConfig(Strict):
    """`[limits]`: caps on what one run may spend (project default; an agent's key wins)."""

    #: Model tokens (input + output, as the model broker counts them) one run may use; a run
    #: that reaches it is stopped with status `token_limit` (exit 14). None: no cap.
    tokens_per_run: int | None = Field(default=None, gt=0, le=10**12)
