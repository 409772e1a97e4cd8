"""Keeping a project's egress tidy: what exists, what is stray, and removing it.

The proxy and the networks are long-lived on purpose (a run must not pay for making them),
so they outlive `al run`. What removes them: `al stop` (the scheduler tears down its project's
egress once no run of the project uses it), `al doctor --fix` (the project's, when nothing of
it runs; and everywhere: networks of agents that are gone, proxies of deleted projects,
firewall rules whose bridge is gone) and the tests' teardown.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from action_llama.egress import cgroups, firewall
from action_llama.egress.deploy import (
    LABEL_AGENT,
    LABEL_EGRESS,
    LABEL_PROJECT,
    Deployment,
    disconnect_all,
    project_id,
)
from action_llama.egress.registry import RUNS, registrations, unregister
from action_llama.egress.service import state_of

if TYPE_CHECKING:
    import docker


def teardown(client: docker.DockerClient | None, project: Path) -> list[str]:
    """Remove the project's proxy and egress networks (with a client of the engine), its
    firewall rules and registrations; what was removed (nothing when there was nothing)."""
    removed = []
    if client is not None:
        removed += Deployment(client, project, state_of(project)).teardown()
    with contextlib.suppress(firewall.FirewallError):
        count = firewall.remove(project_id(project))
        if count:
            removed.append(f"{count} firewall rule{'s' * (count > 1)}")
    shutil.rmtree(state_of(project) / RUNS, ignore_errors=True)
    cgroups.remove(cgroups.PARENT)  # when no run of any project is in it any more
    return removed


def sweep_registrations(project: Path, live: set[str]) -> list[str]:
    """Forget registrations of runs no runtime has any more (an al killed mid-run leaves
    them, holding an address); the run ids forgotten."""
    state = state_of(project)
    gone = [r for r in registrations(state) if r.run not in live]
    for registration in gone:
        unregister(state, registration.key)
    return [r.run for r in gone]


@dataclass
class EgressState:
    """What of a project's egress exists in the engine, and what of it is stray."""

    proxy: str | None = None
    networks: list[str] = field(default_factory=list)
    #: Networks of agents the project no longer has (or that no longer use them).
    stray_networks: list[str] = field(default_factory=list)
    #: Proxies and networks of projects whose folder is gone (any project).
    orphans: list[str] = field(default_factory=list)
    registered: int = 0


def inspect_state(client: docker.DockerClient, project: Path, agents: set[str]) -> EgressState:
    """The project's egress, given the agents that may use an egress network."""
    state = EgressState(registered=len(registrations(state_of(project))))
    for attrs in client.api.containers(all=True, filters={"label": f"{LABEL_EGRESS}=proxy"}):
        owner = attrs["Labels"].get(LABEL_PROJECT, "")
        name = attrs["Names"][0].lstrip("/")
        if owner == str(project):
            state.proxy = name
        elif not Path(owner).is_dir():
            state.orphans.append(f"container {name}")
    for attrs in client.api.networks(filters={"label": LABEL_EGRESS}):
        labels = attrs.get("Labels") or {}
        owner, name = labels.get(LABEL_PROJECT, ""), attrs["Name"]
        if owner == str(project):
            state.networks.append(name)
            agent = labels.get(LABEL_AGENT)
            if labels.get(LABEL_EGRESS) == "agent" and agent not in agents:
                state.stray_networks.append(name)
        elif not Path(owner).is_dir():
            state.orphans.append(f"network {name}")
    return state


def remove_strays(client: docker.DockerClient, found: EgressState) -> list[str]:
    """Remove stray networks, orphaned proxies and networks, and rules whose bridge is gone."""
    from docker.errors import APIError, NotFound

    removed = []
    for item in found.orphans + [f"network {n}" for n in found.stray_networks]:
        kind, name = item.split(" ", 1)
        with contextlib.suppress(NotFound, APIError):
            if kind == "container":
                owner = client.api.inspect_container(name)["Config"]["Labels"][LABEL_PROJECT]
                client.api.remove_container(name, force=True)
                with contextlib.suppress(firewall.FirewallError):
                    firewall.remove(project_id(Path(owner)))
            else:
                disconnect_all(client, name)
                client.api.remove_network(name)
            removed.append(item)
    with contextlib.suppress(firewall.FirewallError):
        count = firewall.remove_stray()
        if count:
            removed.append(f"{count} firewall rule{'s' * (count > 1)} of removed networks or runs")
    count = cgroups.remove_idle()
    if count:
        removed.append(f"{count} cgroup{'s' * (count > 1)} of ended host-user runs")
    return removed
