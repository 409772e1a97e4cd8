"""action-llama: run agents written as SKILL.md folders in isolated containers.

Kept import-free on purpose: the in-container entry point imports this package on
every run, so nothing heavy (docker, pydantic, typer) may load from here.
"""

__version__ = "0.1.0"
