"""Help is documentation: the top level and every command it lists have help with an
example (a command without help fails here)."""

from __future__ import annotations

import re
from pathlib import Path
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
    assert "exit status" in cli([command, "--help"]).out.lower()


# ------------------------------------------------------------- one style, every command


def _subcommands(command: str) -> list[str]:
    """The sub-commands a group's help lists (incidents, dev, rules), else none."""
    out = run([command, "--help"]).out
    if "\nCommands:\n" not in out:
        return []
    section = out.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (\S+)\s", section, flags=re.MULTILINE)


def _every_command() -> list[list[str]]:
    found = []
    for command in _commands():
        found.append([command])
        found += [[command, sub] for sub in _subcommands(command)]
    return found


EVERY = _every_command()


def test_the_groups_and_their_commands_are_found() -> None:
    assert {("rules", "list"), ("rules", "check"), ("incidents", "list"),
            ("incidents", "show"), ("dev", "cendis-api")} <= {tuple(c) for c in EVERY}


@pytest.mark.parametrize("command", EVERY, ids=" ".join)
def test_every_help_has_the_one_style(command: list[str], cli: Any) -> None:
    """argparse's commands and typer's read alike: ``Usage:`` naming the command itself
    (``rules list --help`` is the help of ``rules list``, not of ``rules``), the
    description, ``Options:``, UPPERCASE metavars: no ``usage:``, no ``{a,b}`` choices
    or ``{ARG}`` braces, no ``<str>`` types."""
    proc = cli([*command, "--help"])
    assert proc.returncode == 0 and proc.err == "", proc.err
    usage = proc.out.splitlines()[0]
    assert usage.startswith(f"Usage: cendis-scan {' '.join(command)} [OPTIONS]"), usage
    assert "{" not in usage and "<" not in usage
    assert "\nOptions:\n" in proc.out and "usage:" not in proc.out
    assert "  -h, --help" in proc.out and "Show this message and exit." in proc.out
    assert "positional arguments" not in proc.out and "\noptions:" not in proc.out
    for line in proc.out.splitlines():
        if line.startswith("  -"):  # an option's row: its metavar
            assert not re.search(r"<[a-z][a-z ]*>|\{[a-z]", line), line
        if re.match(r"  [A-Z][A-Z|0-9_-]+ ", line):  # an argument's row
            assert "<" not in line, line


@pytest.mark.parametrize(("group", "sub"), [("rules", "list"), ("rules", "check"),
                                            ("incidents", "list"), ("dev", "cendis-api")])
def test_a_sub_command_help_is_its_own(group: str, sub: str, cli: Any) -> None:
    mine, parents = cli([group, sub, "--help"]).out, cli([group, "--help"]).out
    assert mine != parents
    assert mine.startswith(f"Usage: cendis-scan {group} {sub} ")
    assert "Commands:" not in mine


TYPOS = [
    (["scna"], "unknown command 'scna'; did you mean 'scan'?"),
    (["incidnets", "list"], "unknown command 'incidnets'; did you mean 'incidents'?"),
    (["sweeep"], "unknown command 'sweeep'; did you mean 'sweep'?"),
    (["revok"], "unknown command 'revok'; did you mean 'revoke'?"),
    (["check-tokne"], "unknown command 'check-tokne'; did you mean 'check-token'?"),
    (["--verison"], "unknown option '--verison'; did you mean '--version'?"),
    (["incidents", "lst"], "unknown command 'lst'; did you mean 'list'?"),
    (["dev", "cendis-ap"], "unknown command 'cendis-ap'; did you mean 'cendis-api'?"),
    (["rules", "lsit"], "unknown command 'lsit'; did you mean 'list'?"),
    (["scan", "--format", "jsno", "."], "unknown --format 'jsno'; did you mean 'json'?"),
    (["incidents", "list", "--format", "jsno"], "unknown --format 'jsno'; did you mean 'json'?"),
    (["incidents", "list", "--status", "pendin"],
     "unknown --status 'pendin'; did you mean 'pending'?"),
    (["incidents", "list", "--severity", "hihg"],
     "unknown --severity 'hihg'; did you mean 'high'?"),
    (["incidents", "show", "3", "--format", "jsn"], "unknown --format 'jsn'; did you mean 'json'?"),
    (["sweep", "sweep.toml", "--format", "txt"], "unknown --format 'txt'; did you mean 'text'?"),
    (["git", "--min-confidence", "confirmd"],
     "unknown --min-confidence 'confirmd'; did you mean 'confirmed'?"),
    (["xyzzy"], "unknown command 'xyzzy' (see"),
    (["incidents", "xyzzy"], "unknown command 'xyzzy' (see"),
]


@pytest.mark.parametrize(("args", "message"), TYPOS, ids=[" ".join(a) for a, _ in TYPOS])
def test_a_mistyped_name_says_the_closest_one(args: list[str], message: str, cli: Any,
                                              tmp_path: Path) -> None:
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.out == ""
    [line] = proc.err.splitlines()
    assert message in line, line


# ------------------------------------------------ shared options: one definition, one text


def _rows(help_text: str) -> dict[str, str]:
    """Each option's row of a help text, wrapped lines joined: ``{"--db": "PATH ..."}``."""
    rows: dict[str, str] = {}
    flag = None
    for line in help_text.split("\nOptions:\n", 1)[-1].splitlines():
        found = re.match(r"  (?:-\w, )?(--[\w-]+)(?:/--[\w-]+)?(.*)", line)
        if found:
            flag = found.group(1)
            rows[flag] = found.group(2).strip()
        elif flag and line.startswith("   "):
            rows[flag] += " " + line.strip()
        elif not line.strip():
            flag = None
    return {k: re.sub(r"\s+", " ", v.replace("- ", "-")) for k, v in rows.items()}


SHARED = {"--db": ("scan", "git", "incidents list", "incidents show", "revoke", "serve",
                   "sweep", "db migrate"),
          "--token": ("scan", "git", "revoke", "whoami", "serve", "sweep"),
          "--cendis-api-url": ("scan", "git", "revoke", "whoami", "serve", "sweep")}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_option_reads_the_same_in_every_command(flag: str) -> None:
    """``--db``, ``--token`` and ``--cendis-api-url`` are defined once
    (scanner/cli/options.py) for the argparse and the typer commands: the same metavar
    and help text everywhere (``scan`` and ``git`` prefix "with --revoke:")."""
    from scanner.cli import options

    spec = {o.flag: o for o in (options.DB, options.TOKEN, options.API_URL)}[flag]
    expected = re.sub(r"\s+", " ", f"{spec.metavar} {spec.help}".replace("- ", "-"))
    for command in SHARED[flag]:
        row = _rows(run([*command.split(), "--help"]).out)[flag]
        assert row.replace("with --revoke: ", "") == expected, (command, row)


@pytest.mark.parametrize("command", EVERY, ids=" ".join)
def test_a_default_is_said_once(command: list[str], cli: Any) -> None:
    """A default is said in the option's help text, as the argparse side says it, never
    a second time in typer's ``[default: ...]``."""
    out = cli([*command, "--help"]).out
    assert "[default:" not in out
    for flag, row in _rows(out).items():
        assert row.lower().count("default") <= 1, (flag, row)
