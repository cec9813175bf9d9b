"""The privacy check itself (tests/privacy.py): it runs once at the end of every pytest
run, in the process that started it, over every worker's outputs and every worker's
tokens; these tests show it can find what it must and that a finding fails the run.

(The name is historical: the check no longer needs to run last, since it is not a test.)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from privacy import TOKENS, Needles, TokenRegistry, check, outputs

import scanner.token
from scanner.token import generate

TESTS = Path(__file__).resolve().parent


def test_the_detector_finds_what_it_must(tmp_path: Path) -> None:
    """A canary, so the check cannot pass by searching for nothing."""
    token = generate()
    needles = Needles([token])
    db = tmp_path / "canary.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [token])
    assert needles.find(db.read_bytes()) is not None
    assert str(db) in outputs(tmp_path)  # the walk finds databases by their header
    for shift in range(3):
        text = base64.b64encode(b"k" * shift + token.encode() + b"\n").decode()
        assert needles.find(f'data: {{token: "{text}"}}'.encode()) is not None
    assert needles.find(f"fine: {token[:15]}…{token[-2:]}".encode()) is None
    assert needles.find(("?t=" + token.replace("_", "%5F")).encode()) is not None
    # State files are found by what they are, wherever a test put its sweep cache.
    state = tmp_path / "cache" / "logs-app.json"
    mirror = tmp_path / "cache" / "app-0123456789.git"
    mirror.mkdir(parents=True)
    state.write_text(json.dumps({"files": {}, "reported": []}))
    (mirror / "config").write_text("[remote]\n")
    (tmp_path / "input.json").write_text("{}")
    found = outputs(tmp_path)
    assert {str(state), str(mirror / "config")} <= set(found)
    assert str(tmp_path / "input.json") not in found
    db.unlink()


def _sqlite(path: Path, text: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [text])


#: Where a token made in one worker can end up in another's outputs: each writes a file
#: under ``<worker folder>`` holding the token in some form.
PLANTS: dict[str, Callable[[Path, str], object]] = {
    "captured output, whole": lambda base, token: (base / "captured" / "cli-1.out")
    .write_text(f"error near {token}\n"),
    "captured output, base64": lambda base, token: (base / "captured" / "standin-1.out")
    .write_bytes(base64.b64encode(b"x" + token.encode())),
    "captured output, percent-encoded": lambda base, token: (base / "captured" / "p.out")
    .write_text("GET /?t=" + token.replace("_", "%5F")),
    "database": lambda base, token: _sqlite(base / "test_x0" / "store.db", f"url={token}"),
    "log sweep state": lambda base, token: (base / "test_x0" / "logs.json").write_text(
        json.dumps({"files": {f"/var/log/{token}.log": 1}, "reported": []})),
}


@pytest.mark.parametrize("layout", ["xdist", "single process"])
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_the_check_reads_every_worker(tmp_path: Path, plant: str, layout: str) -> None:
    """A token generated on one worker and written by another is found: the check
    reads every worker's token file and every worker's outputs (or, without xdist, the
    one temporary folder)."""
    token = scanner.token.generate()
    root = tmp_path / "basetemp"
    bases = [root / "popen-gw0", root / "popen-gw1"] if layout == "xdist" else [root]
    for base in bases:
        (base / "captured").mkdir(parents=True)
        (base / "test_x0").mkdir()
        (base / "captured" / "pytest-0.out").write_text("nothing to see\n")
    made_by = TokenRegistry(root / TOKENS / "gw0-1.txt")
    made_by.update([generate(), token])
    made_by.close()
    TokenRegistry(root / TOKENS / "gw1-2.txt").close()  # a worker that made none
    assert check(root)[2] == []
    PLANTS[plant](bases[-1], token)
    try:
        tokens, files, leaks = check(root)
        assert tokens == 2 and files >= len(bases) + 1
        assert len(leaks) == 1 and str(bases[-1]) in leaks[0]
        assert token not in leaks[0] and token[11:] not in leaks[0]
    finally:
        shutil.rmtree(root)  # this run's own check must not find the planted token


def test_every_generate_is_recorded(token_registry: set[str]) -> None:
    """Tokens made with ``scanner.token.generate`` directly, through a name imported
    before the session began, or by code under test, all reach the registry (and its
    file, which the check at the end reads)."""
    import scanner.dev.seed

    made = [scanner.token.generate(), generate(), scanner.dev.seed.generate()]
    assert set(made) <= token_registry
    path = token_registry.path  # type: ignore[attr-defined]
    assert set(made) <= set(path.read_text().split())
    assert path.parent.name == TOKENS and path.stat().st_mode & 0o077 == 0


def _run_pytest(folder: Path, basetemp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "CENDIS_SCAN_TEST_CAPTURE")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # starts faster; xdist is all it needs
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist.plugin",
         f"--basetemp={basetemp}", *args],
        cwd=folder, capture_output=True, text=True, timeout=120, env=env)


SUB_CONFTEST = """
import pytest
from scanner.token import generate

pytest_plugins = ["privacy"]

@pytest.fixture
def make_token():
    return lambda: generate()
"""

SUB_SUITE = """
import base64, sqlite3
import scanner.token

LEAK = {leak}

def test_prints_it():
    token = scanner.token.generate()
    print(token if LEAK else token[:15])

def test_stores_it(tmp_path, make_token):
    token = make_token()
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [token if LEAK else "-"])

def test_encodes_it():
    token = scanner.token.generate()
    print(base64.b64encode(token.encode() if LEAK else b"-").decode())
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_leak_fails_the_run(tmp_path: Path, workers: str) -> None:
    """A real pytest run (with and without xdist) of a tiny suite using this plugin: a
    token printed, stored or base64-encoded by any test, on any worker, makes the run
    fail with one clear line, though every test passed; the same suite without the leak
    passes, and says what it searched."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(SUB_CONFTEST)
    if workers != "0":  # the whole suite is the clean run without xdist
        (tmp_path / "test_clean.py").write_text(SUB_SUITE.format(leak=False))
        clean = _run_pytest(tmp_path, tmp_path / "clean", "-n", workers)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "privacy: no leak of 3 generated tokens in" in clean.stdout
        (tmp_path / "test_clean.py").unlink()

    (tmp_path / "test_leaky.py").write_text(SUB_SUITE.format(leak=True))
    try:
        leaky = _run_pytest(tmp_path, tmp_path / "leaky", "-n", workers)
        assert "3 passed" in leaky.stdout, leaky.stdout + leaky.stderr
        assert leaky.returncode == 1, leaky.stdout + leaky.stderr
        [headline] = [line for line in leaky.stdout.splitlines() if "privacy:" in line]
        assert headline.startswith("privacy: FAILED: ") and "(3 tokens" in headline
        assert "/x.db: a whole token" in leaky.stdout  # the database
        assert "a base64-encoded token" in leaky.stdout and "a whole token" in leaky.stdout
        assert "cendis_pat_" not in leaky.stdout + leaky.stderr
    finally:
        shutil.rmtree(tmp_path / "leaky", ignore_errors=True)  # it holds the planted tokens
