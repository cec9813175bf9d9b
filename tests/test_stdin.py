"""stdin: ``-``, no PATH with a pipe, no PATH without one, and chunk boundaries."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

from scanner.engine.inputs import CHUNK, STEP
from scanner.engine.limits import LOOKBEHIND


def test_dash_scans_stdin(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    (tmp_path / "on-disk.txt").write_text(make_token())
    status, report, _ = scan(["-"], cwd=tmp_path, input=f"a\nb\nTOKEN={make_token()}\n")
    assert status == 1
    [finding] = report["findings"]
    assert (finding["path"], finding["line"], finding["column"]) == ("<stdin>", 3, 7)
    assert finding["variable"] == "TOKEN"


def test_no_path_with_piped_stdin_scans_stdin(scan: Any, tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    (tmp_path / "on-disk.txt").write_text(make_token())
    status, report, _ = scan([], cwd=tmp_path, input=f"log line {make_token()}\n")
    assert status == 1
    assert [f["path"] for f in report["findings"]] == ["<stdin>"]
    status, report, _ = scan([], cwd=tmp_path, input="nothing to see\n")
    assert (status, report["findings"], report["summary"]["files"]) == (0, [], 1)


def test_no_path_on_a_terminal_scans_cwd(tmp_path: Path, no_leak: Any,
                                         make_token: Callable[[], str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "on-disk.txt").write_text(make_token())
    main, terminal = os.openpty()  # stdin a terminal, as when a person types the command
    try:
        proc = subprocess.run([CLI, "scan", "--format", "json"], cwd=tmp_path,
                              stdin=terminal, capture_output=True, timeout=60)
    finally:
        os.close(main)
        os.close(terminal)
    no_leak(proc.stdout, proc.stderr)
    assert proc.returncode == 1, proc.stderr
    assert [f["path"] for f in json.loads(proc.stdout)["findings"]] == ["sub/on-disk.txt"]


def test_no_path_with_stdin_from_a_file_scans_cwd(tmp_path: Path, no_leak: Any,
                                                  make_token: Callable[[], str]) -> None:
    """Only a pipe means "scan stdin": a redirected file (or a /dev/null that is a regular
    file, as on some CI runners) leaves the default, the current directory."""
    (tmp_path / "on-disk.txt").write_text(make_token())
    redirected = tmp_path / "stdin.txt"
    redirected.write_text(f"from stdin {make_token()}\n")
    with open(redirected, "rb") as stdin:
        proc = subprocess.run([CLI, "scan", "--format", "json"], cwd=tmp_path, stdin=stdin,
                              capture_output=True, timeout=60)
    no_leak(proc.stdout, proc.stderr)
    assert proc.returncode == 1, proc.stderr
    paths = [f["path"] for f in json.loads(proc.stdout)["findings"]]
    assert paths == ["on-disk.txt", "stdin.txt"]


def test_dash_with_other_paths_is_a_usage_error(cli: Any, tmp_path: Path) -> None:
    proc = cli(["scan", "-", str(tmp_path)], input="x")
    assert proc.returncode == 2
    assert proc.err.splitlines() == [
        "cendis-scan: error: '-' (stdin) cannot be combined with other paths"]


@pytest.mark.parametrize("where", [-47, -46, -30, -12, -11, -1, 0, 1, CHUNK - 20])
def test_token_across_chunk_boundary_found_once(where: int, scan: Any,
                                                make_token: Callable[[], str]) -> None:
    at = CHUNK + where
    lines = b"\n" * 1000
    data = lines + b"." * (at - len(lines)) + make_token().encode() + b"." * CHUNK
    status, report, _ = scan(["-"], input=data)
    assert status == 1
    [finding] = report["findings"]
    assert (finding["line"], finding["column"], finding["offset"]) == (
        1001, at - len(lines) + 1, at)


def test_base64_across_chunk_boundary_found_once(scan: Any,
                                                 make_token: Callable[[], str]) -> None:
    blob = base64.b64encode(b"user:" + make_token().encode())
    data = b"." * (CHUNK - 30) + b" " + blob + b" " + b"." * 100
    status, report, _ = scan(["-"], input=data)
    assert status == 1
    [finding] = report["findings"]
    assert (finding["encoding"], finding["column"]) == ("base64", CHUNK - 28)


def test_gzip_and_utf16_through_stdin(scan: Any, make_token: Callable[[], str]) -> None:
    text = f"one\ntwo {make_token()}\n"
    for data, encoding in ((gzip.compress(text.encode()), "gzip"),
                           (text.encode("utf-16"), "utf-16")):
        status, report, _ = scan(["-"], input=data)
        assert status == 1
        [finding] = report["findings"]
        assert (finding["encoding"], finding["line"], finding["column"]) == (encoding, 2, 5)


def test_binary_stdin_has_offset_and_no_line(scan: Any, make_token: Callable[[], str]) -> None:
    data = bytes(range(256)) * 4 + make_token().encode() + b"\0" * 10
    status, report, _ = scan(["-"], input=data)
    assert status == 1
    [finding] = report["findings"]
    assert (finding["line"], finding["column"], finding["offset"]) == (None, None, 1024)


@pytest.mark.parametrize("tail", ["clean", "token"])
def test_a_long_stream_reuses_its_memory(tmp_path: Path, tail: str,
                                         make_token: Callable[[], str]) -> None:
    """A stream read in 1 MiB pieces reuses their memory (no fresh pages faulted in for
    every piece: 320,000 page faults per GB cost a third of the time), stays small, and
    still finds what its end holds."""
    import resource
    import sys

    size = 192 << 20
    token = make_token()
    last = f"CENDIS_TOKEN={token}\n".encode() if tail == "token" else b"done\n"
    feeder = ("import sys\n"
              "b = b''.join(b'2026-01-01T00:00:%02d INFO request %d served in 3 ms\\n'"
              " % (i % 60, i) for i in range(20000))\n"
              f"n = 0\nw = sys.stdout.buffer\nwhile n < {size}:\n"
              f"    w.write(b)\n    n += len(b)\nw.write({last!r})\n")
    probe = ("import resource, subprocess, sys\n"
             "feed = subprocess.Popen([sys.executable, '-c', sys.argv[1]],"
             " stdout=subprocess.PIPE)\n"
             "scan = subprocess.run([sys.argv[2], 'scan', '-', '--format', 'json'],"
             " stdin=feed.stdout, capture_output=True)\n"
             "feed.wait()\n"
             "print(scan.returncode, len(scan.stdout), resource.getrusage("
             "resource.RUSAGE_CHILDREN).ru_minflt, resource.getrusage("
             "resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", probe, feeder, CLI], capture_output=True,
                         text=True, timeout=600, check=True).stdout.split()
    status, faults, peak_kb = int(out[0]), int(out[2]), int(out[3])
    assert status == (1 if tail == "token" else 0)
    pages = size // resource.getpagesize()
    assert faults < pages // 3, (faults, pages)  # was about one fault per page read
    assert peak_kb < 100 << 10


#: Where the plain-stream reader's first two steps end (it keeps LOOKBEHIND bytes).
STEP_ENDS = (LOOKBEHIND + STEP, LOOKBEHIND + 2 * STEP)


def _placed(pieces: list[tuple[int, bytes]], size: int, *, newlines: bool) -> bytes:
    """``size`` bytes of filler (log lines with multi-byte characters, or one line
    without a newline) with each piece written at its offset."""
    line = "2026-01-01 INFO café served in 3 ms · ok\n".encode()
    if not newlines:
        line = line.replace(b"\n", b" ")
    data = bytearray((line * (size // len(line) + 1))[:size])
    for at, piece in pieces:
        data[at : at + len(piece)] = piece
    return bytes(data)


@pytest.mark.parametrize("form", ["plain", "base64", "one long line"])
@pytest.mark.parametrize("delta", [-60, -47, -1, 0, 1, 30])
def test_stdin_finds_what_the_file_holds_across_read_steps(
        form: str, delta: int, scan: Any, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    """Tokens across the places where the stream reader moves its buffer: the same
    findings (lines, columns, offsets, encodings) as the same bytes read as a file."""
    pieces = []
    for end in STEP_ENDS:
        token = make_token().encode()
        text = base64.b64encode(b"user:" + token) if form == "base64" else token
        pieces.append((end + delta, b" " + text + b" "))
    data = _placed(pieces, STEP_ENDS[-1] + (1 << 20), newlines=form != "one long line")
    (tmp_path / "same.log").write_bytes(data)
    status, streamed, _ = scan(["-"], input=data)
    _, stored, _ = scan([str(tmp_path / "same.log")])
    assert status == 1

    def where(report: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(f["line"], f["column"], f["offset"], f["encoding"], f["secret_sha256"])
                for f in report["findings"]]

    assert len(where(streamed)) == 2
    assert where(streamed) == where(stored)


def test_stdin_without_readinto_reads_the_same(make_token: Callable[[], str]) -> None:
    """A caller's stream that only has ``read`` (a socket wrapper, a custom reader), and
    one that returns short reads, give what a file object gives."""
    import io

    import scanner

    rules = scanner.load_rules()
    token = make_token().encode()
    data = _placed([(STEP_ENDS[0] - 5, b" " + token + b" ")], STEP_ENDS[0] + 4096,
                   newlines=True)

    class ReadOnly:
        def __init__(self, data: bytes, most: int) -> None:
            self.f, self.most = io.BytesIO(data), most

        def read(self, n: int = -1) -> bytes:
            return self.f.read(min(n, self.most) if n >= 0 else self.most)

    expected = scanner.scan_stream(io.BytesIO(data), rules).findings
    assert [(f.line, f.column) for f in expected] == [
        (data.count(b"\n", 0, STEP_ENDS[0]) + 1,
         len(data[data.rfind(b"\n", 0, STEP_ENDS[0] - 4) + 1 : STEP_ENDS[0] - 4]
             .decode()) + 1)]
    for most in (1 << 30, 65536, 4097):
        got = scanner.scan_stream(ReadOnly(data, most), rules).findings  # type: ignore[arg-type]
        assert got == expected


def test_a_stdin_pipe_is_widened() -> None:
    """Where the system allows it (Linux), the pipe stdin reads grows to hold a step
    (at most ``/proc/sys/fs/pipe-max-size``), so reads and writes meet less often;
    anything else (a file, a closed descriptor) is left alone without an error."""
    import fcntl
    import io

    from scanner.engine.inputs import widen_pipe

    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("no pipe sizes on this system")
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader, os.fdopen(w, "wb"):
        before = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        widen_pipe(reader)
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == max(before, min(STEP, limit))
    widen_pipe(io.BytesIO(b"x"))
    widen_pipe(reader)  # closed
