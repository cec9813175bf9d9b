"""Exit statuses: 0 clean, 1 findings, 2 usage, configuration or I/O error (one line on
stderr, never a traceback); an input that cannot be read makes a scan exit 2 even when
it printed findings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def test_clean_scan_exits_0(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("nothing to see\n")
    proc = cli(["scan", str(tmp_path)])
    assert (proc.returncode, proc.out) == (0, "")
    assert proc.err.startswith("cendis-scan: 0 findings")


def test_findings_exit_1(cli: Any, no_leak: Any, tmp_path: Path,
                         make_token: Callable[[], str]) -> None:
    (tmp_path / "a.txt").write_text(make_token())
    proc = cli(["scan", str(tmp_path)])
    assert proc.returncode == 1
    assert proc.err.startswith("cendis-scan: 1 finding (1 confirmed, 0 possible)")
    no_leak(proc.stdout, proc.stderr)


USAGE = [
    (["scan", "--bogus", "."], "cendis-scan: error: unrecognized arguments: --bogus"),
    (["scan", "--format", "xml", "."], "cendis-scan scan: error: unknown --format 'xml'"),
    (["scan", "--min-confidence", "high", "."], "cendis-scan scan: error: unknown "
                                                "--min-confidence 'high'"),
    (["scan", "--jobs", "-1", "."], "cendis-scan: error: --jobs must be 0 or more"),
    (["scan", "--jobs", "two", "."], "cendis-scan scan: error: argument --jobs/-j: "
                                     "invalid int value: 'two'"),
    (["rules", "frob"], "cendis-scan rules: error: unknown command 'frob'"),
    (["rules", "check"], "cendis-scan rules check: error: the following arguments are "
                         "required: FILE"),
    (["check-token", "cendis_pat_x"], "cendis-scan: error: unrecognized arguments: "
                                      "cendis_pat_x"),
    (["redact", "--bogus"], "cendis-scan: error: unrecognized arguments: --bogus"),
    (["nosuch"], "cendis-scan: error: unknown command 'nosuch' (see"),
    (["--bogus"], "cendis-scan: error: unknown option '--bogus' (see"),
]


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_bad_usage_exits_2_with_one_line(args: list[str], message: str, cli: Any,
                                         tmp_path: Path) -> None:
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.err.splitlines()
    assert line.startswith(message)
    assert proc.out == ""


def test_missing_path_exits_2(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    (tmp_path / "a.txt").write_text(make_token())
    status, report, proc = scan([str(tmp_path / "a.txt"), str(tmp_path / "gone")])
    assert status == 2
    assert len(report["findings"]) == 1
    assert proc.err.splitlines() == [
        f"cendis-scan: error: {tmp_path / 'gone'}: No such file or directory"]


def _unreadable(path: Path) -> str:
    """A file that cannot be read: mode 000, or (as root, whom modes do not stop) a link
    to /proc/self/mem, which opens but fails on the first read. Returns the reason the
    scanner must give."""
    path.write_text("secret?\n")
    path.chmod(0)
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return "Permission denied"
    path.unlink()
    os.symlink("/proc/self/mem", path)
    return "Input/output error"


@pytest.mark.parametrize("kind", ["unreadable", "broken-symlink"])
def test_unreadable_input_is_reported_and_the_scan_goes_on(
        kind: str, scan: Any, cli: Any, no_leak: Any, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    (tmp_path / "a.txt").write_text(make_token())
    bad = tmp_path / "b.txt"
    if kind == "unreadable":
        reason = _unreadable(bad)
    else:
        os.symlink(tmp_path / "nowhere", bad)
        reason = "broken symlink"
    (tmp_path / "c.txt").write_text(make_token())
    status, report, proc = scan([str(tmp_path)])
    assert status == 2
    assert [Path(f["path"]).name for f in report["findings"]] == ["a.txt", "c.txt"]
    assert proc.err.splitlines() == [f"cendis-scan: error: {bad}: {reason}"]
    assert report["errors"] == [f"{bad}: {reason}"]
    proc = cli(["scan", str(tmp_path)])  # the text report too: findings printed, status 2
    assert proc.returncode == 2
    assert proc.out.count(": confirmed cendis-pat ") == 2
    no_leak(proc.stdout, proc.stderr)


def test_min_confidence(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    truncated = make_token()[:-3]
    (tmp_path / "a.txt").write_text(f"{truncated}\n")
    status, report, _ = scan([str(tmp_path), "--min-confidence", "confirmed"])
    assert (status, report["findings"]) == (0, [])
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    assert [f["confidence"] for f in report["findings"]] == ["possible"]
    (tmp_path / "b.txt").write_text(make_token())
    status, report, _ = scan([str(tmp_path), "--min-confidence", "confirmed"])
    assert status == 1
    assert [(Path(f["path"]).name, f["confidence"]) for f in report["findings"]] == [
        ("b.txt", "confirmed")]
