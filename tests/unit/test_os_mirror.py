"""The Debian mirror used to debootstrap the OS layer comes from the host's apt config."""

from __future__ import annotations

from pathlib import Path

import pytest

from action_llama.images.osimage import DEFAULT_MIRROR, apt_mirror


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AL_DEBIAN_MIRROR", raising=False)


def test_deb822_sources_give_the_debian_archive_not_security(tmp_path: Path) -> None:
    """In deb822 files, the first URI ending in /debian wins over -security archives."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_one_line_sources_list_is_read_too(tmp_path: Path) -> None:
    """Classic `deb [opts] URI suite` lines work, options included."""
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert apt_mirror(tmp_path) == "http://old.example/debian"


def test_no_sources_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    """Without any apt config the public Debian mirror is used."""
    assert apt_mirror(tmp_path) == DEFAULT_MIRROR


def test_environment_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AL_DEBIAN_MIRROR picks another mirror."""
    monkeypatch.setenv("AL_DEBIAN_MIRROR", "http://local.example/debian")
    assert apt_mirror(tmp_path) == "http://local.example/debian"
