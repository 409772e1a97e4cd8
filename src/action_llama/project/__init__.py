"""Finding and loading a project directory; scaffolding new ones."""

from action_llama.project.load import get_agent, load_project
from action_llama.project.model import Agent, Project

__all__ = ["Agent", "Project", "get_agent", "load_project"]
