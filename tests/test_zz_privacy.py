"""Runs last (by its name): no token the suite generated is in any SQLite database, state
file, cache, log, captured output or request to a stand-in, neither whole nor
base64-encoded nor percent-encoded (tests/privacy.py).

What is searched, under pytest's temporary folders:
- every SQLite file (found by its header, with its -wal, -shm and -journal files);
- every sweep state file: a log sweep's JSON state (found by its shape) and, in each
  sweep mirror of the cache (``<name>-<hash>.git``), its git ``config`` (the remote URL)
  and its file of reported hashes;
- everything kept in the ``captured/`` folder: each CLI subprocess's stdout and stderr,
  pytest's captured stdout/stderr/logs of every test, the servers' and drivers' logs, and
  the journal of every Cendis stand-in (every request it received, headers and body:
  conftest's ``aiohttp_server``/``aiohttp_client`` keep it at teardown).
Inputs the tests wrote on purpose (files to scan, seed files, the repositories a mirror
fetches) are not outputs and are not searched.

With pytest-xdist each worker has its own temporary folder and its own registry of
tokens: this test checks the worker it runs on.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
from privacy import Needles

from scanner.token import generate

#: Outputs sit near the top of each test's folder; some tests build trees 1,000 levels
#: deep (longer than PATH_MAX) as scan inputs, which are not walked to the bottom.
MAX_DEPTH = 12


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\0"
    except OSError:
        return False


#: A sweep mirror's folder in the cache (scanner.sweep.mirrors.cache_dir_name).
MIRROR = re.compile(r".+-[0-9a-f]{10}\.git")
#: What a sweep keeps in a mirror besides the fetched objects and refs.
MIRROR_STATE = ("config", "cendis-scan-reported")
STATE_LIMIT = 16 << 20


def _is_log_state(path: str) -> bool:
    """A log sweep's JSON state: an object with ``files`` and ``reported``."""
    try:
        if os.path.getsize(path) > STATE_LIMIT:
            return False
        with open(path, "rb") as handle:
            text = handle.read()
        if not text.lstrip().startswith(b"{"):
            return False
        data = json.loads(text)
    except (OSError, ValueError, RecursionError):  # inputs: [[[[... nested deep
        return False
    return isinstance(data, dict) and "files" in data and "reported" in data


def _outputs(base: Path) -> list[str]:
    """Every SQLite file (with its -wal, -shm or -journal file), every sweep state file
    and every file in the captured/ folder, walked without recursion and without
    following links."""
    found: list[str] = []
    stack = [(str(base), 0, False)]
    while stack:
        folder, depth, captured = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and MIRROR.fullmatch(entry.name):
                found += [p for p in (os.path.join(entry.path, n) for n in MIRROR_STATE)
                          if os.path.isfile(p)]
            elif entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH:
                    stack.append((entry.path, depth + 1,
                                  captured or (depth == 0 and entry.name == "captured")))
            elif entry.is_file(follow_symlinks=False) and not captured and \
                    entry.name.endswith(".json") and _is_log_state(entry.path):
                found.append(entry.path)
            elif entry.is_file(follow_symlinks=False) and (captured or _is_sqlite(entry.path)):
                found.append(entry.path)
                for suffix in ("-wal", "-shm", "-journal"):
                    if not captured and os.path.exists(entry.path + suffix):
                        found.append(entry.path + suffix)
    return found


def test_the_detector_finds_what_it_must(tmp_path: Path) -> None:
    """A canary, so the check below cannot pass by searching for nothing."""
    token = generate()
    needles = Needles([token])
    db = tmp_path / "canary.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", [token])
    assert needles.find(db.read_bytes()) is not None
    assert str(db) in _outputs(tmp_path)  # the walk finds databases by their header
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
    found = _outputs(tmp_path)
    assert {str(state), str(mirror / "config")} <= set(found)
    assert str(tmp_path / "input.json") not in found
    db.unlink()


def test_no_generated_token_in_any_database_log_or_output(
        tmp_path_factory: pytest.TempPathFactory, token_registry: set[str],
        captured_dir: Path) -> None:
    needles = Needles(token_registry)
    files = _outputs(tmp_path_factory.getbasetemp())
    assert str(captured_dir) in {os.path.dirname(p) for p in files} or not token_registry
    leaks = []
    for path in files:
        with open(path, "rb") as handle:
            problem = needles.find(handle.read())
        if problem:
            leaks.append(f"{path}: {problem}")
    assert leaks == [], f"{len(token_registry)} tokens, {len(files)} files searched"
