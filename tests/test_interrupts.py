"""No traceback ever, and the right exit status: signals during a parallel scan,
closed or full standard streams, directories a thousand deep, absurdly nested
baseline and rules files, and a bad baseline said before the scan starts."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, assert_no_leak

from scanner.sources.files import walk


def _children(pid: int) -> list[int]:
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if ppid == str(pid):
                kids.append(int(name))
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("signum", "group", "status", "word"), [
    (signal.SIGINT, True, 130, "interrupted"),  # Ctrl-C: the whole foreground group
    (signal.SIGTERM, False, 143, "terminated"),  # kill PID, a CI timeout
    (signal.SIGTERM, True, 143, "terminated"),  # kill -TERM -PGID: workers too
], ids=["ctrl-c", "sigterm", "sigterm-to-group"])
def test_a_signal_ends_a_parallel_scan_cleanly(tmp_path: Path, signum: int, group: bool,
                                               status: int, word: str) -> None:
    """Workers are running (a file big enough for the pool) while the parent waits on
    a FIFO that nobody writes to: a signal then ends it all with one line, no report
    file, no temporary file, no worker left."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.txt").write_bytes(base64.encodebytes(os.urandom(7 << 20)))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    report = tmp_path / "report.json"
    proc = subprocess.Popen([CLI, "scan", str(tree), str(fifo), "--jobs", "2", "-o",
                             str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60  # a safety net: the test waits on events
    while True:  # a non-blocking open for writing succeeds once the scanner reads it
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)  # polled: a real process opening the FIFO
    workers = _children(proc.pid)
    assert len(workers) == 2
    (os.killpg if group else os.kill)(proc.pid, signum)
    out, err = proc.communicate(timeout=30)
    os.close(writer)
    assert (proc.returncode, err, out) == (status, f"cendis-scan: {word}\n".encode(), b"")
    assert not [w for w in workers if _alive(w)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "tree"]


def _run(args: list[str], *, stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.PIPE,
         close: int | None = None, cwd: Path | None = None) -> tuple[int, str]:
    proc = subprocess.run([CLI, *args], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          cwd=cwd, timeout=60, env={**os.environ, "NO_COLOR": "1"},
                          preexec_fn=None if close is None else lambda: os.close(close))
    assert_no_leak(proc.stderr)
    return proc.returncode, proc.stderr.decode()


def _one_error_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("cendis-scan: error: "), err
    assert "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.parametrize(("args", "says"), [
    (["scan", "-"], "stdin is closed"),
    (["check-token"], "stdin is closed"),
    (["redact", "--rules", "nothing.toml"], "stdin is closed"),  # said before the rules
])
def test_closed_stdin_is_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    status, err = _run(args, stdin=None, close=0, cwd=tmp_path)
    assert status == 2
    _one_error_line(err)
    assert says in err


def test_scan_without_a_path_and_stdin_closed_scans_the_current_directory(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """As documented: no PATH means stdin only when stdin is a pipe."""
    (tmp_path / ".env").write_text(f"T={make_token()}\n")
    status, err = _run(["scan"], stdin=None, close=0, cwd=tmp_path)
    assert status == 1, err
    assert "1 finding" in err


@pytest.mark.parametrize(("args", "closed"), [
    (["scan", "leak.env"], True), (["check-token"], True), (["version"], True),
    (["scan", "leak.env", "--format", "sarif"], False), (["redact"], False)],
    ids=lambda v: " ".join(v) if isinstance(v, list) else ("closed" if v else "dev-full"))
def test_closed_or_full_stdout_is_one_line(tmp_path: Path, args: list[str], closed: bool,
                                           make_token: Callable[[], str]) -> None:
    """`>&-` and `> /dev/full` (a redirection: the device is never replaced)."""
    token = make_token()
    (tmp_path / "leak.env").write_text(f"T={token}\n")
    with open(tmp_path / "leak.env", "rb") as stdin, open("/dev/full", "wb") as full:
        status, err = _run(args, stdin=stdin, stdout=None if closed else full,
                           close=1 if closed else None, cwd=tmp_path)
    assert status == 2
    lines = err.splitlines()
    assert lines and all(not line.startswith("cendis-scan: error: ") or line == lines[0]
                         for line in lines), err
    _one_error_line(lines[0] + "\n")
    assert ("closed" if closed else "No space left on device") in lines[0]
    assert "Traceback" not in err and "Exception ignored" not in err


def _deep_tree(root: Path, depth: int, name: str) -> list[str]:
    """``depth`` nested directories, with files before and after each one in name
    order; made through directory descriptors, so a path may pass PATH_MAX."""
    made = []
    fd = os.open(root, os.O_RDONLY)
    rel = ""
    try:
        for level in range(depth):
            for file in ("a.txt", "z.txt") if level % 100 == 0 else ():
                w = os.open(file, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.close(w)
                made.append(rel + file)
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
            rel += name + "/"
        w = os.open("bottom.env", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.close(w)
    finally:
        os.close(fd)
    return made


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """A folder for trees deeper than ``shutil.rmtree`` can recurse (pytest's own
    clean-up would fail at the end of the session): removed with ``rm -rf``, which walks
    without recursion."""
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path)], check=False)


def test_a_thousand_directories_deep(deep_tmp: Path, make_token: Callable[[], str]) -> None:
    tree = deep_tmp / "deep"
    tree.mkdir()
    made = _deep_tree(tree, 1000, "d")
    bottom = tree.joinpath(*["d"] * 1000, "bottom.env")
    bottom.write_text(f"T={make_token()}\n")
    (tree / "a.txt").write_text(f"T={make_token()}\n")
    # In-process: the walk's order is the recursive walk's (a.txt, d/..., z.txt).
    errors: list[Any] = []
    order = [o.fingerprint_path for o in walk([str(tree)], (), False, errors)]
    expected = []
    for level in range(0, 1000, 100):
        prefix = "d/" * level
        expected.append(prefix + "a.txt")
    tail = ["d/" * 1000 + "bottom.env"]
    zs = [("d/" * level) + "z.txt" for level in range(900, -1, -100)]
    assert sorted(made) == sorted(expected + zs)
    assert order == [*expected, *tail, *zs] and not errors
    status, err = _run(["scan", str(tree)])
    assert status == 1, err
    assert "2 findings" in err


def test_deeper_than_path_max_is_an_error_for_that_directory(
        deep_tmp: Path, make_token: Callable[[], str]) -> None:
    tree = deep_tmp / "deeper"
    tree.mkdir()
    _deep_tree(tree, 1500, "dd")  # 4,500 characters: more than PATH_MAX
    (tree / "dd" / "k.env").write_text(f"T={make_token()}\n")
    status, err = _run(["scan", str(tree)])
    assert status == 2
    assert err.count("File name too long") == 1 and "Traceback" not in err
    assert "…" in err  # the middle of the path left out, not the reason
    assert "1 finding" in err


NESTED = 100_000


@pytest.mark.parametrize(("name", "text"), [
    ("arrays.json", "[" * NESTED + "]" * NESTED),
    ("objects.json", '{"findings": ' + '{"a": ' * NESTED + "1" + "}" * NESTED + "}"),
])
def test_a_deeply_nested_baseline_is_one_line(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    (tmp_path / "a.txt").write_text("nothing\n")
    status, err = _run(["scan", str(tmp_path / "a.txt"), "--baseline", str(tmp_path / name)])
    assert status == 2
    _one_error_line(err)
    assert "nested too deeply" in err


@pytest.mark.parametrize(("command", "text"), [
    (["scan", "--rules"], "x = " + "[" * NESTED + "]" * NESTED),
    (["rules", "check"], "x = " + "{a = " * NESTED + "1" + "}" * NESTED),
], ids=["scan-rules-arrays", "check-inline-tables"])
def test_a_deeply_nested_rules_file_is_one_line(tmp_path: Path, command: list[str],
                                                text: str) -> None:
    (tmp_path / "deep.toml").write_text(text)
    status, err = _run([*command, str(tmp_path / "deep.toml")], cwd=tmp_path)
    assert status == 2
    _one_error_line(err)
    assert "nested too deeply" in err


@pytest.mark.parametrize("command", [["scan"], ["git"]])
def test_a_garbage_baseline_is_said_before_the_scan(tmp_path: Path,
                                                    command: list[str]) -> None:
    """The input is a FIFO nobody writes to (scan) or not a repository (git): a check
    of the baseline after the scan would hang, or say something else first."""
    (tmp_path / "garbage.json").write_text("this is not json")
    target = tmp_path / ("fifo" if command == ["scan"] else "not-a-repo")
    if command == ["scan"]:
        os.mkfifo(target)
    else:
        target.mkdir()
    status, err = _run([*command, str(target), "--baseline", str(tmp_path / "garbage.json")])
    assert status == 2
    _one_error_line(err)
    assert "garbage.json: not a cendis-scan JSON report" in err
