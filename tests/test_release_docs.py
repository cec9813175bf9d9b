"""The release as the docs name it: one version everywhere (pyproject, the CHANGELOG,
every pinned reference in the docs and templates), and the LICENSE pyproject names."""

from __future__ import annotations

import re
import tomllib

import pytest
from conftest import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCS = ["README.md", "action.yml", ".pre-commit-hooks.yaml", "ci/gitlab-cendis-scan.yml",
        "CHANGELOG.md"]


@pytest.mark.parametrize("name", DOCS)
def test_every_pinned_reference_to_cendis_scan_is_the_release(name: str) -> None:
    text = (ROOT / name).read_text()
    pins = re.findall(r"cendis-scan(?:\.git)?@(v[\w.]+)", text)
    pins += re.findall(r"^#?\s*rev: (v[\w.]+)", text, flags=re.MULTILINE)
    for pin in pins:
        assert pin == f"v{VERSION}", f"{name}: @{pin}, but the release is v{VERSION}"


def test_the_changelog_has_the_release_and_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text,
                     flags=re.MULTILINE)
    assert f"[{VERSION}]: " in text


def test_the_license_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "the cendis-scan authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
