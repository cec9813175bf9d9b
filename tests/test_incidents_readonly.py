"""``incidents list`` and ``show`` only read: bad arguments are one-line usage errors
(exit 2, never an internal error), and the database is opened read-only, so a read-only
file or folder works and nothing is ever created beside it (issue 14, section 5)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.incidents.models import Sighting, TokenRef, utcnow
from scanner.incidents.store import Store


def _fill(path: Path, tokens: list[str]) -> Store:
    store = Store.open(path)
    for token in tokens:
        store.record([(TokenRef.from_token(token), Sighting(source="manual",
                                                             received_at=utcnow()))],
                     revoke=False)
    return store


@pytest.fixture
def db(tmp_path: Path, make_token: Callable[[], str]) -> Iterator[Path]:
    """Three incidents in a closed database, in a folder of its own."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "incidents.db"
    _fill(path, [make_token() for _ in range(3)]).close()
    yield path
    folder.chmod(0o755)


def _one_usage_error(proc: Any) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.out, proc.err)
    assert proc.out == ""
    assert proc.err.count("\n") == 1 and proc.err.startswith("cendis-scan"), proc.err
    assert "internal error" not in proc.err and "Traceback" not in proc.err


@pytest.mark.parametrize("limit", ["-1", "0", "99999999999999999999", "1000001", "1e3",
                                   "١٢", "²", " ", "abc", "9" * 400])
def test_a_bad_limit_is_a_usage_error(cli: Any, db: Path, limit: str) -> None:
    _one_usage_error(cli(["incidents", "list", "--db", str(db), "--limit", limit]))


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                   "0001-01-01T00:00:00+23:59", "2026-13-01", "yesterday",
                                   "2026-01-01T00:00:00+99:00", "", "١٩٧٠-01-01"])
def test_an_absurd_since_is_a_usage_error(cli: Any, db: Path, since: str) -> None:
    _one_usage_error(cli(["incidents", "list", "--db", str(db), "--since", since]))


@pytest.mark.parametrize("ident", ["²", "٣", "１", "0", "000", "-1", "1.0", "x",
                                   "f" * 65, "9" * 65, "1" * 400, "12\u200b"])
def test_a_bad_id_is_a_usage_error(cli: Any, db: Path, ident: str) -> None:
    _one_usage_error(cli(["incidents", "show", "--db", str(db), "--", ident]))


def test_limits_and_ids_that_are_good_work(cli: Any, db: Path) -> None:
    for limit, count in (("1", 1), ("2", 2), ("1000000", 3)):
        proc = cli(["incidents", "list", "--db", str(db), "--limit", limit,
                    "--format", "json"])
        assert proc.returncode == 0, proc.err
        assert len(json.loads(proc.out)) == count
    rows = json.loads(cli(["incidents", "list", "--db", str(db), "--format", "json",
                           "--since", "0001-01-02T00:00:00+14:00"]).out)
    assert len(rows) == 3
    for ident in ("1", str(rows[0]["id"]), rows[1]["sha256"][:6], rows[2]["sha256"].upper()):
        proc = cli(["incidents", "show", "--db", str(db), ident, "--format", "json"])
        assert proc.returncode == 0, proc.err
    # Well-formed but nobody: exit 1, one line (a 20-digit number is a hash prefix too).
    for ident in ("999", "99999999999999999999", "abcdef0123"):
        proc = cli(["incidents", "show", "--db", str(db), ident])
        assert (proc.returncode, proc.err.count("\n")) == (1, 1), proc.err


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("args", [["list"], ["list", "--format", "json"],
                                  ["show", "1"], ["show", "2", "--format", "json"]])
def test_reading_works_on_a_read_only_file_and_folder_and_creates_nothing(
        cli: Any, db: Path, args: list[str]) -> None:
    before = _listing(db.parent)
    data = db.read_bytes()
    db.chmod(0o444)
    db.parent.chmod(0o555)
    proc = cli(["incidents", *args[:1], "--db", str(db), *args[1:]])
    assert proc.returncode == 0, proc.err
    assert "cendis_pat_" in proc.out
    # As root the permissions do not stop SQLite: the read-only open must.
    assert _listing(db.parent) == before == ["incidents.db"]
    assert db.read_bytes() == data


def test_reading_beside_a_running_writer_sees_its_commits(
        cli: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A receiver holds the database open (its -wal file is there): the reader sees what
    it committed last, and leaves the writer's files as they were."""
    path = tmp_path / "live.db"
    writer = _fill(path, [make_token()])
    try:
        _fill(path, [make_token()]).close()  # a second process's commit, in the WAL
        assert (tmp_path / "live.db-wal").exists()
        before = _listing(tmp_path)
        proc = cli(["incidents", "list", "--db", str(path), "--format", "json"])
        assert proc.returncode == 0, proc.err
        assert len(json.loads(proc.out)) == 2
        assert _listing(tmp_path) == before
    finally:
        writer.close()


@pytest.mark.parametrize("what", ["missing", "devnull", "directory", "fifo", "empty", "text",
                                  "other-sqlite"])
@pytest.mark.parametrize("command", [["list"], ["show", "1"]])
def test_a_database_that_is_not_one_is_one_line_and_nothing_is_created(
        cli: Any, tmp_path: Path, what: str, command: list[str]) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    path = folder / "incidents.db"
    if what == "devnull":
        path = Path(os.devnull)
    elif what == "directory":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "text":
        path.write_text("not a database\n" * 100)
    elif what == "other-sqlite":
        import sqlite3

        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t(x)")
        conn.commit()
        conn.close()
    before = _listing(folder)
    dev_before = _listing(Path("/dev"))
    proc = cli(["incidents", command[0], "--db", str(path), *command[1:]], timeout=30)
    _one_usage_error(proc)
    assert _listing(folder) == before
    assert _listing(Path("/dev")) == dev_before
    if what == "missing":
        assert "no incident database" in proc.err and not path.exists()
    if what in ("fifo", "devnull"):
        assert stat.S_ISREG(os.stat(path).st_mode) is False
