"""A thin CLI, kept thin: commands are module-level functions (not closures inside
``register``), no CLI module grows past about 500 lines, every logger is named after its
module under the one root ``scanner``, any exception becomes one line and one exit
status in one place, and ``dev send-report`` finds tokens with the engine."""

from __future__ import annotations

import ast
import importlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.cli import errors
from scanner.errors import ConfigError, GitError, UsageError

PACKAGE = Path(__file__).resolve().parent.parent / "scanner"
CLI = sorted((PACKAGE / "cli").glob("*.py"))


@pytest.mark.parametrize("path", CLI, ids=lambda p: p.name)
def test_commands_are_module_level_functions(path: Path) -> None:
    """``register`` only adds commands: a command defined inside it cannot be imported,
    tested or read on its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "register":
            inner = [n.name for n in ast.walk(node)
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n is not node]
            assert inner == [], f"{path.name}: register defines {inner}"


@pytest.mark.parametrize("path", CLI, ids=lambda p: p.name)
def test_cli_modules_stay_short(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 500


def _logger_calls() -> list[tuple[str, str]]:
    """(module file, the argument's source) of every ``getLogger(...)`` call."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"
                    and node.args):
                calls.append((str(path.relative_to(PACKAGE)), ast.unparse(node.args[0])))
    return calls


def test_every_logger_is_named_after_its_module() -> None:
    """No hand-written logger name: ``getLogger(__name__)`` (or a name held in one place,
    such as the server's ``HTTP_LOGGERS``), so all of them sit under ``scanner``."""
    literal = [(where, arg) for where, arg in _logger_calls() if arg.startswith(("'", '"'))]
    assert literal == []


@pytest.mark.parametrize("module", ["scanner.scan", "scanner.git.scan", "scanner.git.history",
                                    "scanner.engine.prefilter", "scanner.incidents.revoker",
                                    "scanner.sweep.run", "scanner.sweep.sinks",
                                    "scanner.sweep.logs", "scanner.server.app",
                                    "scanner.server.views", "scanner.server.keys",
                                    "scanner.server.findings", "scanner.cli.serve"])
def test_a_module_logs_under_the_one_root(module: str) -> None:
    log = importlib.import_module(module).log
    assert log.name == module
    root = logging.getLogger("scanner")
    parent = log.parent
    while parent is not None and parent is not root:
        parent = parent.parent
    assert parent is root


ERRORS: list[tuple[Callable[[], BaseException], int, str]] = [
    (lambda: UsageError("--jobs must be 0 or more"), 2,
     "cendis-scan: error: --jobs must be 0 or more\n"),
    (lambda: ConfigError("bad rule"), 2, "cendis-scan: error: bad rule\n"),
    (lambda: GitError("not a repository"), 2, "cendis-scan: error: not a repository\n"),
    (lambda: errors.NotFound("no incident '9'"), 1, "cendis-scan: error: no incident '9'\n"),
    (lambda: sqlite3.DatabaseError("file is not a database"), 2,
     "cendis-scan: error: incident database: file is not a database\n"),
    (lambda: sqlite3.OperationalError("database is locked"), 2,
     "cendis-scan: error: incident database: database is locked\n"),
    (KeyboardInterrupt, 130, "cendis-scan: interrupted\n"),
    (errors.Terminated, 143, "cendis-scan: terminated\n"),
    (lambda: ValueError("a bug"), 2, "cendis-scan: internal error: ValueError: a bug "
                                     "(run with --debug for the traceback)\n"),
]


@pytest.mark.parametrize(("make", "status", "line"), ERRORS,
                         ids=[type(m()).__name__ for m, _, _ in ERRORS])
def test_one_error_wrapper(make: Callable[[], BaseException], status: int, line: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """The one place (scanner/cli/errors.py) both command paths turn an exception into
    one line on stderr and an exit status."""
    assert errors.exit_status(make(), debug=False) == status
    out, err = capsys.readouterr()
    assert (out, err) == ("", line)


def test_a_token_in_an_error_is_redacted(make_token: Callable[[], str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    token = make_token()
    for exc in (sqlite3.OperationalError(f"near {token}"), ValueError(token)):
        errors.exit_status(exc, debug=False)
    err = capsys.readouterr().err
    assert token not in err and err.count("cendis_pat_") == 2


@pytest.mark.parametrize("layout", [
    "A={a}\nB={b}\n", "A='{a}'\n# again: {a}\nB=\"{b}\"\n", '{{"k": "{a}", "l": ["{b}"]}}',
    "log line token={a}, then {b}; then {a} again\n", "export A={a} B={b}\r\n",
])
def test_send_report_finds_tokens_as_the_scanner_does(layout: str,
                                                      make_token: Callable[[], str]) -> None:
    """``dev send-report --token-file`` reads tokens with the detector: every distinct
    token, once, in the order found, whatever the file around them."""
    from scanner.cli.dev import tokens_in

    a, b = make_token(), make_token()
    assert tokens_in(layout.format(a=a, b=b).encode()) == [a, b]


def test_send_report_without_tokens_sends_the_lines() -> None:
    from scanner.cli.dev import tokens_in

    text = b"# a comment\nnot-a-token-1\n\n  spaced  \n"
    assert tokens_in(text) == ["not-a-token-1", "spaced"]
