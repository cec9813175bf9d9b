"""Help is documentation: the top level and every command it lists have help with an
example (a command without help fails here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import run


def _commands() -> list[str]:
    """The commands ``cendis-scan --help`` lists, so a new command is checked too."""
    out = run(["--help"]).out
    section = out.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (\S+)\s", section, flags=re.MULTILINE)


def test_top_level_help(cli: Any) -> None:
    proc = cli(["--help"])
    assert proc.returncode == 0
    assert "Usage: cendis-scan" in proc.out
    assert re.search(r"Examples:\n +cendis-scan scan \.\n", proc.out), proc.out
    assert {"scan", "redact", "check-token", "rules", "version"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command: str, cli: Any) -> None:
    proc = cli([command, "--help"])
    assert proc.returncode == 0, proc.err
    assert re.search(r"examples?:", proc.out, flags=re.IGNORECASE), proc.out
    assert f"cendis-scan {command}" in proc.out
    assert proc.err == ""


@pytest.mark.parametrize("command", ["scan", "redact", "check-token", "rules"])
def test_help_states_exit_status(command: str, cli: Any) -> None:
    assert "exit status" in cli([command, "--help"]).out
