"""Log files swept incrementally (real files): appended to, rotated (renamed and
recreated), truncated, copy-truncated and regrown, gzipped; a line cut mid-write."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sweeptools import hashes, sweep, write_config

from scanner.incidents.store import Store
from scanner.token import secret_sha256


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def sha(token: str) -> str:
    return secret_sha256(token.encode())


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_append_rotate_truncate_gzip(tmp_path: Path, make_token: Callable[[], str]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    t = [make_token() for _ in range(7)]
    app.write_text("start\n" + "".join(f"GET /x {i}\n" for i in range(50)) + f"auth {t[0]}\n")
    config = write_config(tmp_path, logs=["logs/app.log*"])

    first = sweep(config)
    assert hashes(first) == {sha(t[0])}
    (finding,) = first.sources[0].findings
    assert (finding.path, finding.line) == (str(app), 52)
    assert sweep(config).new_findings == 0  # nothing appended: nothing read, nothing new
    assert sweep(config).sources[0].bytes == 0

    # Appended: only the tail is read; line numbers stay absolute.
    append(app, f"line\nagain {t[0]}\nnew {t[1]}\n")
    report = sweep(config)
    assert hashes(report) == {sha(t[1])}
    assert report.sources[0].findings[0].line == 55
    assert report.sources[0].bytes == len(f"line\nagain {t[0]}\nnew {t[1]}\n")

    # Rotated: app.log -> app.log.1 gets two more lines first; a new app.log starts.
    append(app, f"late {t[2]}\n")
    os.rename(app, logs / "app.log.1")
    app.write_text(f"fresh {t[3]}\n")
    report = sweep(config)
    assert hashes(report) == {sha(t[2]), sha(t[3])}
    lines = {f.secret_sha256: (Path(f.path or "").name, f.line)
             for f in report.sources[0].findings}
    assert lines[sha(t[2])] == ("app.log.1", 56) and lines[sha(t[3])] == ("app.log", 1)

    # Compressed rotation: app.log.1 -> app.log.2.gz (read once, whole; its old tokens
    # are not new), with one line that only the compressed copy has.
    data = (logs / "app.log.1").read_bytes() + f"only-in-gz {t[4]}\n".encode()
    (logs / "app.log.2.gz").write_bytes(gzip.compress(data))
    (logs / "app.log.1").unlink()
    report = sweep(config)
    assert hashes(report) == {sha(t[4])}
    assert sweep(config).sources[0].bytes == 0  # the .gz is not read again

    # Truncated in place (copytruncate), then written again: read from the start.
    with open(app, "r+") as f:
        f.truncate(0)
    app.write_text(f"after truncate {t[5]}\n")
    assert hashes(sweep(config)) == {sha(t[5])}

    # Truncated and regrown past the old offset: the first bytes differ, so from 0 again.
    app.write_text("X" * 10 + "\n" + f"regrown {t[6]}\n" + "pad\n" * 40)
    report = sweep(config)
    assert hashes(report) == {sha(t[6])} and report.sources[0].findings[0].line == 2
    with Store.open(tmp_path / "incidents.db") as store:
        assert len(store.list_incidents()) == 7
        shown = store.get_incident(sha(t[6]))
        assert shown is not None
        assert shown["sightings"][0]["source"] == f"scan:{app}"


def test_a_line_being_written_is_scanned_now_and_not_reported_twice(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    token, later = make_token(), make_token()
    log = tmp_path / "app.log"
    log.write_text(f"complete line\npartial {token}")  # no newline yet
    config = write_config(tmp_path, logs=["app.log"])
    assert hashes(sweep(config)) == {sha(token)}
    append(log, f" more\nnext {later}\n")
    report = sweep(config)
    assert hashes(report) == {sha(later)}
    assert report.sources[0].findings[0].line == 3


def test_only_regular_files_are_read(tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A FIFO matched by the glob would block the sweep forever; a directory or a
    dangling symlink is no file either: all skipped, the real log read."""
    token = make_token()
    (tmp_path / "a.log").write_text(f"x {token}\n")
    os.mkfifo(tmp_path / "b.log")
    (tmp_path / "c.log").mkdir()
    (tmp_path / "d.log").symlink_to(tmp_path / "missing")
    report = sweep(write_config(tmp_path, logs=["*.log"]))
    assert hashes(report) == {sha(token)}
    assert report.sources[0].files == 1 and not report.sources[0].errors
