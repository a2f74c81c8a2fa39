"""Release habits: one version, and a changelog entry for it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import neuroio_nb

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SECTION = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$", re.MULTILINE)


def sections() -> list[tuple[str, str | None]]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [(m["version"], m["date"]) for m in SECTION.finditer(text)]


def as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_version_has_one_source() -> None:
    """The wheel's metadata reads the version from neuroio_nb/_version.py; nothing else states it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "neuroio_nb/_version.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", neuroio_nb.__version__)


def test_the_changelog_has_an_unreleased_section_then_every_release_newest_first() -> None:
    """Keep a Changelog: `[Unreleased]` on top, then one dated section per release, the
    current version's among them, newest first."""
    found = sections()
    assert found[0] == ("Unreleased", None)
    releases = found[1:]
    assert all(date is not None for _, date in releases), releases
    versions = [as_tuple(version) for version, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert releases[0][0] == neuroio_nb.__version__
    dates = [date for _, date in releases]
    assert dates == sorted(dates, reverse=True)
