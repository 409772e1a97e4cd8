"""`[network]`: where a run may connect to (project default; an agent's table replaces it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from action_llama.config._base import After, Strict, setting
from action_llama.egress.rules import check_entry

NetworkMode = Literal["allowlist", "open", "none"]


@dataclass(frozen=True, kw_only=True)
class NetworkConfig(Strict):
    """`[network]`: `allowlist` (the default) lets a run reach only the hosts it is allowed;
    `none` only the scheduler's gateway; `open` anything (no egress control)."""

    mode: NetworkMode = "allowlist"
    allow: list[Annotated[str, After(check_entry)]] = setting(factory=list)


@dataclass(frozen=True, kw_only=True)
class LimitsConfig(Strict):
    """`[limits]`: caps on what one run may spend (project default; an agent's key wins)."""

    #: Model tokens (input + output, as the model broker counts them) one run may use; a run
    #: that reaches it is stopped with status `token_limit` (exit 14). None: no cap.
    tokens_per_run: int | None = setting(None, gt=0, le=10**12)
