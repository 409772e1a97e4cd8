"""What of a run's credentials the egress proxy holds for it, and what is staged instead.

Decided once per run, before anything is staged: the model broker takes the keys of the
agent's brokered models (those files are not staged), and the tokens of types brokered as
placeholders are staged as placeholders (`egress.placeholders`); the proxy gets the real
values for the run's life (`egress.brokering.write_keys`). `git_ssh` keys stay in the `al`
process, in an ssh-agent of the run (`ssh_agent.py`; a scheduler adopting the run serves it
again, `served_ssh_keys`). Nothing is brokered for `raw_credentials`, nor on runtimes whose
runs cannot reach this host's proxy (`Runtime.brokers`: a swarm's nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.staging import model_key_ref
from action_llama.credentials.store import CredentialStore
from action_llama.credentials.types import SSH_AGENT, brokering
from action_llama.egress.brokering import BrokerPlan, plan_for, write_keys
from action_llama.egress.placeholders import TokenPlan, plan_tokens
from action_llama.project import Agent
from action_llama.runs.ssh_agent import SOCKET

#: The field of `git_ssh` holding its private key.
SSH_KEY_FIELD = "id_rsa"


@dataclass
class Brokered:
    """The run's brokering: its plan (None: nothing brokered) and what it changes."""

    plan: BrokerPlan | None = None
    #: Model keys the broker holds: never staged.
    held: set[CredentialRef] = field(default_factory=set)
    #: Names of the models whose requests go through the broker.
    models: set[str] = field(default_factory=set)
    tokens: TokenPlan = field(default_factory=TokenPlan)
    #: `git_ssh` refs whose key an ssh-agent of the run holds, with the key (never staged).
    ssh_keys: dict[CredentialRef, str] = field(default_factory=dict, repr=False)

    @property
    def substitutes(self) -> dict[CredentialRef, dict[str, str | None]]:
        """What `stage` writes instead of the values: placeholders, and no key files."""
        found: dict[CredentialRef, dict[str, str | None]] = {
            ref: dict(fields) for ref, fields in self.tokens.substitutes.items()
        }
        for ref in self.ssh_keys:
            found.setdefault(ref, {})[SSH_KEY_FIELD] = None
        return found

    def unstaged(self, refs: list[CredentialRef]) -> list[CredentialRef]:
        return [r for r in refs if r not in self.held]

    def listed(self, credentials: list[str]) -> list[str]:
        """The agent's listed refs its run still gets files of."""
        return [r for r in credentials if CredentialRef.parse(r) not in self.held]


def broker_run(
    agent: Agent,
    store: CredentialStore,
    project_id: str,
    run_id: str,
    refs: list[CredentialRef],
) -> Brokered:
    """Hand the proxy what it brokers for the run (`refs`: every ref the run would get)."""
    plan = plan_for(agent)
    brokered = {name for name, _ in plan.models}
    key_of = {name: model_key_ref(m.provider, agent.config.credentials) for name, m in agent.models}
    # A key another (unbrokered, loopback) model also uses stays staged for that one.
    held = {key_of[n] for n in brokered} - {r for n, r in key_of.items() if n not in brokered}
    keys = {}
    for name in brokered:
        ref = key_of[name]
        if store.has(ref) and (value := store.read(ref).get("token", "").strip()):
            keys[name] = value
    raw = {CredentialRef.parse(r) for r in agent.config.raw_credentials}
    present = [r for r in refs if r not in held and r not in raw and store.has(r)]
    tokens = plan_tokens(store, present)
    write_keys(project_id, run_id, keys, tokens.table, tokens.server_pem)
    plan = replace(plan, intercept=tokens.hosts, ca_pem=tokens.ca_pem)
    ssh_keys = {ref: key for ref in present if (key := ssh_key(store, ref))}
    return Brokered(plan, held, brokered, tokens, ssh_keys)


def ssh_key(store: CredentialStore, ref: CredentialRef) -> str | None:
    """The private key an ssh-agent of the run holds for `ref`, if its type is kept in one."""
    if brokering(ref.type) != SSH_AGENT or not store.has(ref):
        return None
    return store.read(ref).get(SSH_KEY_FIELD) or None


def served_ssh_keys(store: CredentialStore, credentials: Path) -> dict[CredentialRef, str]:
    """The keys of the ssh-agents a run was started with, found by their sockets in its staged
    `credentials`: a run adopted from an `al` process that died is served them again there."""
    found = {}
    for socket in sorted(credentials.glob(f"*/*/{SOCKET}")):
        ref = CredentialRef(socket.parent.parent.name, socket.parent.name)
        if key := ssh_key(store, ref):
            found[ref] = key
    return found
