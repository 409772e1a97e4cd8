"""How a build reports progress; the CLI renders it, tests collect it."""

from __future__ import annotations

from typing import Protocol


class BuildEvents(Protocol):
    """Receives progress of the image chain, layer by layer."""

    def layer(self, title: str, status: str) -> None:
        """A layer changed state: "checking", "building", "up to date", "built in 3.1s"..."""

    def line(self, title: str, text: str) -> None:
        """One line of build output for the layer `title`."""


class SilentEvents:
    """Reports nothing (`--quiet`, library use)."""

    def layer(self, title: str, status: str) -> None:
        pass

    def line(self, title: str, text: str) -> None:
        pass
