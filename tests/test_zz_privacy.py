"""Runs last (by its name): no token the suite generated is in any SQLite database, log or
captured output the suite wrote, neither whole nor base64-encoded.

What is searched: every SQLite file under pytest's temporary folders (found by its header,
with its -wal and -shm files) and everything kept in the ``captured/`` folder (each CLI
subprocess's stdout and stderr, pytest's captured stdout/stderr/logs of every test, the
servers' and drivers' logs). Inputs the tests wrote on purpose (files to scan, seed
files) are not outputs and are not searched.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pytest

from scanner.token import generate

PREFIX = b"cendis_pat_"
WHOLE = re.compile(rb"cendis_pat_[A-Za-z0-9]{36}")
CORE = 52  # base64 characters compared: 39 bytes, the prefix and 28 of the 36 characters


def _base64_forms(token: bytes) -> dict[bytes, set[bytes]]:
    """For each alignment in a larger base64 text (0, 1, 2 bytes before the token) and
    both alphabets: the fixed-prefix literal to look for, and the token's cores."""
    forms: dict[bytes, set[bytes]] = {}
    for shift, skip in ((0, 0), (1, 2), (2, 3)):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * shift + token)[skip:skip + CORE]
            forms.setdefault(core[:12], set()).add(core)
    return forms


class Needles:
    """Every generated token, whole and base64-encoded, searchable in one pass per form."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.whole: set[bytes] = set()
        self.encoded: dict[bytes, set[bytes]] = {}
        for token in tokens:
            raw = token.encode("ascii")
            self.whole.add(raw)
            for literal, cores in _base64_forms(raw).items():
                self.encoded.setdefault(literal, set()).update(cores)

    def find(self, data: bytes) -> str | None:
        for match in WHOLE.finditer(data):
            if match.group() in self.whole:
                return f"a whole token at byte {match.start()}"
        for literal, cores in self.encoded.items():
            start = data.find(literal)
            while start != -1:
                if data[start:start + CORE] in cores:
                    return f"a base64-encoded token at byte {start}"
                start = data.find(literal, start + 1)
        return None


#: Outputs sit near the top of each test's folder; some tests build trees 1,000 levels
#: deep (longer than PATH_MAX) as scan inputs, which are not walked to the bottom.
MAX_DEPTH = 12


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\0"
    except OSError:
        return False


def _outputs(base: Path) -> list[str]:
    """Every SQLite file (with its -wal, -shm or -journal file) and every file in the
    captured/ folder, walked without recursion and without following links."""
    found: list[str] = []
    stack = [(str(base), 0, False)]
    while stack:
        folder, depth, captured = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH:
                    stack.append((entry.path, depth + 1,
                                  captured or (depth == 0 and entry.name == "captured")))
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
