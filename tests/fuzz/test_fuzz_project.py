"""Fuzzing the project loader (config.toml, agents' config.toml, SKILL.md, Dockerfiles, and
what is found where those files go): it loads, or raises one ConfigError naming a file. What
loads is then used as a run uses it (al doctor's checks, the image plan, the schedule, a run
on the fake runtime), and that raises nothing but the project's own errors either."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from action_llama.config import AgentFileConfig, ProjectConfig
from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.errors import ActionLlamaError, ConfigError
from action_llama.gateway.settings import GatewaySettings
from action_llama.images.plan import parent_of, plan_chain, rewrite_from
from action_llama.project import load_project
from action_llama.runs.service import RunService
from action_llama.runs.store import RunStore
from action_llama.runs.trigger import Trigger
from action_llama.scheduler.cron import next_fire
from action_llama.testing import FakeRuntime
from action_llama.webhooks import secret_ref

from fuzzing import (
    SHAPES,
    budget,
    dockerfiles,
    place,
    plausible,
    skill_documents,
    to_toml,
    toml_documents,
)

pytestmark = [pytest.mark.fuzz]

AGENT_NAMES = st.one_of(
    st.just("hello"), st.sampled_from(["Hello", "-x", "default", "a--b", "x" * 65, "ok-2"])
)


@st.composite
def projects(draw: st.DrawFn) -> dict[str, tuple[str, bytes]]:
    """{relative path: (shape, content)} of a project's files."""
    files = {
        "config.toml": (draw(st.sampled_from(SHAPES)), draw(toml_documents(ProjectConfig))),
        "Dockerfile": (draw(st.sampled_from(SHAPES)), draw(dockerfiles())),
    }
    for name in draw(st.lists(AGENT_NAMES, min_size=1, max_size=2, unique=True)):
        files[f"agents/{name}/SKILL.md"] = (
            draw(st.sampled_from(SHAPES)),
            draw(skill_documents()),
        )
        files[f"agents/{name}/config.toml"] = (
            draw(st.sampled_from(SHAPES)),
            draw(toml_documents(AgentFileConfig)),
        )
        files[f"agents/{name}/Dockerfile"] = (draw(st.sampled_from(SHAPES)), draw(dockerfiles()))
        if draw(st.booleans()):
            files[f"agents/{name}/test-script.sh"] = ("file", b"echo hi\n")
    return files


@st.composite
def plausible_projects(draw: st.DrawFn) -> dict[str, tuple[str, bytes]]:
    """Projects whose files are all there, with values of the right types: most load."""
    from action_llama.config import SkillFrontmatter

    files = {
        "config.toml": ("file", to_toml(draw(plausible(ProjectConfig))).encode()),
        "Dockerfile": ("file", draw(dockerfiles())),
    }
    for name in draw(st.lists(st.sampled_from(["hello", "ok-2"]), min_size=1, unique=True)):
        skill = draw(plausible(SkillFrontmatter))
        files[f"agents/{name}/SKILL.md"] = (
            "file",
            f"---\n{yaml.safe_dump(skill)}---\nGo.\n".encode(),
        )
        files[f"agents/{name}/config.toml"] = (
            "file",
            to_toml(draw(plausible(AgentFileConfig))).encode(),
        )
        files[f"agents/{name}/test-script.sh"] = ("file", b"echo hi\n")
    return files


#: Where a ConfigError's problems may point: the files, or the project folder itself.
LABELS = ("config.toml", "Dockerfile", "agents", '"', "Project directory", "SKILL.md")


def load(files: dict[str, tuple[str, bytes]], root: Path) -> Any:
    for rel, (shape, content) in files.items():
        place(root / rel, shape, content)
    try:
        return load_project(root)
    except ConfigError as exc:
        text = str(exc)
        assert text
        for problem in exc.problems or [exc.message]:
            assert problem.startswith(LABELS), problem
        return None


def use(project: Any, home: Path) -> None:
    """What al doctor, al start and a run do with a loaded project's settings."""
    from action_llama.doctor.checks import project_checks

    store = CredentialStore(home / "credentials")
    store.write(CredentialRef("github_token"), {"token": "t"})
    for check in project_checks(project, store):
        assert check.status in ("ok", "warn", "fail")
    GatewaySettings.from_project(project, store).webhook_agents()
    for source in project.config.webhooks.values():
        ref = secret_ref(source)
        if ref is not None:
            store.has(ref)
    texts = {name: agent.dockerfile_text for name, agent in project.agents.items()}
    layers = plan_chain(project.config.local.image, project.dockerfile_text, texts, "scope")
    for layer in layers:
        parent = parent_of(layer, layers)
        if layer.dockerfile is not None and parent is not None:
            rewrite_from(layer.dockerfile, parent.build_tag)
    assert project.config.local.memory_bytes > 0
    for agent in project.agents.values():
        if agent.config.schedule:
            from datetime import datetime

            assert next_fire(agent.config.schedule, datetime.now().astimezone()) is not None
    run_on_the_fake_runtime(project, store)


def run_on_the_fake_runtime(project: Any, store: CredentialStore) -> None:
    runs = RunStore(project.state_dir)
    service = RunService(project, FakeRuntime(), runs, store)
    try:
        for agent in project.agents.values():
            try:
                outcome = asyncio.run(service.run(agent, Trigger(prompt="fuzz"), image=None))
            except ActionLlamaError:
                continue  # a missing credential, no model: said before anything starts
            assert outcome.result.status == "completed"
    finally:
        runs.close()


@budget(250)
@given(files=projects())
def test_project_files_load_or_name_the_file_and_what_loads_runs(
    files: dict[str, tuple[str, bytes]],
) -> None:
    """Any project files: a Project, or a ConfigError naming a file; a Project's settings are
    usable by doctor, the image plan, the schedule and a run."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        project = load(files, root)
        event("loaded" if project is not None else "config error")
        if project is not None:
            use(project, Path(tmp))


@budget(150)
@given(files=plausible_projects())
def test_plausible_project_settings_load_or_fail_and_what_loads_runs(
    files: dict[str, tuple[str, bytes]],
) -> None:
    """Settings of the right types but any value: what loads is usable by doctor, the image
    plan, the schedule and a run."""
    test_project_files_load_or_name_the_file_and_what_loads_runs.hypothesis.inner_test(files)  # type: ignore[attr-defined]


@budget(100)
@given(text=st.text(max_size=80), where=st.sampled_from(["", "agents", "agents/x", "loop"]))
def test_any_project_path_is_a_project_or_a_config_error(text: str, where: str) -> None:
    """-p given anything (a NUL, a link loop, a file, a path too long) loads or says why."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if where == "loop":
            os.symlink(base / "loop", base / "loop")
        elif where:
            (base / where).mkdir(parents=True)
        try:
            load_project(base / where / text if "\x00" not in text else text)
        except ConfigError as exc:
            problem = str(exc)
        except ValueError as exc:  # a NUL in a path: the OS cannot even be asked
            problem = "null" if "null" in str(exc) else ""
        else:
            return
        assert problem
