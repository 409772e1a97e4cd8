"""`al new`: a project with every default written out, and one agent that runs with no API key."""

from __future__ import annotations

import os
from pathlib import Path

from action_llama import oserrors
from action_llama.errors import ConfigError

PROJECT_CONFIG = """\
# action-llama project configuration.
# Every key is optional; the commented values are the defaults.

# Scheduler settings.
# maxReruns = 10              # reruns when an agent exits 42
# maxCallDepth = 3            # depth of agent-to-agent call chains
# workQueueSize = 20          # queued triggers per agent
# resourceLockTimeout = 1800  # seconds a lock lives without a heartbeat
# defaultAgentScale = 1       # parallel runs per agent
# historyRetentionDays = 14

# The container every run gets.
[local]
# image = "al-agent:latest"   # base image, built from the action-llama package when missing
# memory = "4g"               # memory limit per container (raise it if runs are OOM-killed)
# cpus = 2                    # CPU limit per container
# timeout = 900               # seconds before a run is stopped (exit code 124)

# Named models that agents list with models = ["sonnet"]; the first is primary.
# [models.sonnet]
# provider = "anthropic"      # anthropic, openai, openai-compatible, groq, google, ...
# model = "claude-sonnet-4-5"
# authType = "api_key"
# thinkingLevel = "medium"
# base_url = "http://host.docker.internal:11434/v1"   # openai-compatible servers only

# Where runs may connect to (an agent's own [network] table replaces this one).
[network]
# mode = "allowlist"          # "allowlist": only the hosts below and those the agent needs
#                             #   (its models' APIs, its credentials' hosts, the gateway);
#                             # "none": the gateway only; "open": anywhere (nothing checked)
# allow = []                  # e.g. ["api.example.com", "*.githubusercontent.com",
#                             #       "github.com:22", "pypi", "npm", "github", "debian"]

# What one run may spend (an agent's own [limits] keys win).
# [limits]
# tokens_per_run = 2000000    # model tokens the broker counts; a run reaching it is stopped
#                             #   (status token_limit, exit code 14)

# The scheduler's HTTP gateway (al start).
# [gateway]
# port = 8080

# Where webhooks come from.
# [webhooks.github]
# type = "github"
# credential = "default"
"""

PROJECT_DOCKERFILE = """\
# Shared tools for every agent of this project. Anything beyond this FROM line makes al build
# an al-project-base:latest layer; prefer agent Dockerfiles, which keep agents portable.
FROM al-agent:latest
"""

GITIGNORE = """\
# action-llama state: run history, logs, workspaces
.al/
"""

HELLO_SKILL = """\
---
description: Says hello and shows the sandbox it runs in.
---
# Hello

You are a friendly example agent. Greet the user, then describe the environment you run in:
the read-only root file system, the writable /tmp, and the persistent /workspace.
"""

HELLO_CONFIG = """\
# Settings of the hello agent. Every key is optional.
# models = ["sonnet"]          # named models from the project config.toml
# credentials = []             # e.g. ["github_token"]
# schedule = "*/30 * * * *"    # cron, for al start
# timeout = 900                # seconds; defaults to [local].timeout

# [network]                    # replaces the project's [network] for this agent
# mode = "allowlist"
# allow = ["pypi"]

# [limits]
# tokens_per_run = 500000      # replaces the project's cap for this agent

# [hooks]
# pre = ["echo preparing"]
# post = []

[params]
greeting = "Hello"
"""

HELLO_SCRIPT = """\
#!/bin/sh
# Script mode: when this file exists, al runs it instead of a model session. No API key needed.
set -e
echo "Hello from agent $AL_AGENT (run $AL_RUN_ID), running as $(id -un) in $(pwd)"
# Why this run happens: $PROMPT has it as text (what a model session is told last), and the
# file $AL_TRIGGER_FILE as JSON (a webhook's event, a caller's context, al run --prompt's task).
task=$(jq -r '.prompt // empty' "$AL_TRIGGER_FILE")
if [ -n "$task" ]; then echo "You asked: $task"; fi
if [ -f /workspace/last-run ]; then
  echo "My previous run was $(cat /workspace/last-run); /workspace keeps files between runs."
else
  echo "This is my first run; /workspace will remember it."
fi
date -u +%Y-%m-%dT%H:%M:%SZ > /workspace/last-run
if touch /etc/probe 2>/dev/null; then echo "The root file system is writable?!"; exit 1; fi
echo "The root file system is read-only; /tmp and /workspace are mine."
"""


def create_project(target: Path) -> list[Path]:
    """Write a new project at `target`; refuse to touch a folder that already has files."""
    try:
        taken = os.path.lexists(target) and (not target.is_dir() or any(target.iterdir()))
    except OSError as exc:
        raise _cannot(target, exc) from exc
    if taken:
        raise ConfigError(
            f'"{target}" already exists and is not empty; al new never overwrites files.',
            hint="Choose a new folder name, for example: al new my-agents",
        )
    files = {
        target / "config.toml": PROJECT_CONFIG,
        target / "Dockerfile": PROJECT_DOCKERFILE,
        target / ".gitignore": GITIGNORE,
        target / "agents" / "hello" / "SKILL.md": HELLO_SKILL,
        target / "agents" / "hello" / "config.toml": HELLO_CONFIG,
        target / "agents" / "hello" / "test-script.sh": HELLO_SCRIPT,
    }
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (target / "agents" / "hello" / "test-script.sh").chmod(0o755)
    except OSError as exc:
        raise _cannot(target, exc) from exc
    return list(files)


def _cannot(target: Path, exc: OSError) -> ConfigError:
    where = exc.filename or target
    return ConfigError(
        f'Cannot create the project "{target}": {where}: {oserrors.reason(exc)}.',
        hint=oserrors.fix(exc, where),
    )
