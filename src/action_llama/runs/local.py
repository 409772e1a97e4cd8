"""One run of an agent in this process: `al run` when no scheduler runs (or with `--local`).

What the scheduler does for a run, minus the gateway. `LocalRun.prepare` checks that the agent
can run (a failure is recorded as a run), has its image and says what of the project does not
apply to its runtime, all before any event loop exists (so Ctrl-C during a long image build
stops at once); `run` then runs it to its end with its log streamed to `on_line`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from action_llama.images.build import build_images
from action_llama.project import Agent, Project, get_agent
from action_llama.runs.service import LineCallback, RunOutcome, RunService
from action_llama.runs.store import RunRecord, RunStore
from action_llama.runs.trigger import Trigger
from action_llama.runtimes.registry import runtime_for

if TYPE_CHECKING:
    from action_llama.images.events import BuildEvents


@dataclass
class LocalRun:
    """A run of `agent`, checked and with its image: ready to `run` once."""

    service: RunService
    agent: Agent
    prompt: str | None
    image: str | None

    @classmethod
    def prepare(
        cls,
        project: Project,
        agent_name: str,
        *,
        prompt: str | None = None,
        events: BuildEvents | None = None,
        warn: Callable[[str], None] = lambda text: None,
    ) -> LocalRun:
        """Raises AgentNotFound, the preflight's errors (recorded as a failed run first) and
        ImageBuildError, before anything starts."""
        agent = get_agent(project, agent_name)
        runtime = runtime_for(agent)
        store = RunStore(project.state_dir)
        try:
            service = RunService(project, runtime, store)
            service.preflight(agent, Trigger(prompt=prompt))
            images = build_images(project, [agent.name], events) if runtime.needs_image else {}
        except BaseException:
            store.close()
            raise
        for warning in runtime.warnings(project, agent):
            warn(warning)
        return cls(service, agent, prompt, images.get(agent.name))

    async def run(self, on_line: LineCallback | None = None) -> tuple[RunOutcome, RunRecord]:
        """Run it to its end (cancelling stops it, recorded as killed): its outcome and its
        stored record."""
        store = self.service.store
        try:
            outcome = await self.service.run(
                self.agent, Trigger(prompt=self.prompt), image=self.image, on_line=on_line
            )
            return outcome, store.get(outcome.run_id)
        finally:
            store.close()
