"""``cendis-scan redact``: tokens become their redacted form, every other byte passes
through, a line at a time."""

from __future__ import annotations

import base64
import selectors
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from conftest import CLI

from scanner.redact_filter import LINE_LIMIT
from scanner.token import redact


def test_tokens_replaced_and_everything_else_byte_for_byte(
        cli: Any, make_token: Callable[[], str]) -> None:
    confirmed, other = make_token(), make_token()
    possible = other[:-5]
    placeholder = "cendis_pat_" + "x" * 36
    pieces = [
        b"2024-05-01 GET /v1/user?access_token=", confirmed.encode(), b"&page=2 200\r\n",
        b"\xff\xfe\x00 not utf-8 \xc3( ", possible.encode(), b"\tend\n",
        b"\r\n\n",
        b"docs say ", placeholder.encode(), b" and cendis_pat_<your-token>\n",
        b"last line without newline: ", confirmed.encode(),
    ]
    proc = cli(["redact"], input=b"".join(pieces))
    assert proc.returncode == 0
    want = b"".join(redact(p).encode() if p in (confirmed.encode(), possible.encode()) else p
                    for p in pieces)
    assert proc.stdout == want
    assert proc.err == "cendis-scan: 3 tokens redacted\n"


def test_nothing_to_redact(cli: Any) -> None:
    data = bytes(range(256)) * 4 + b"\r\nplain\n"
    proc = cli(["redact"], input=data)
    assert (proc.returncode, proc.stdout, proc.err) == (
        0, data, "cendis-scan: 0 tokens redacted\n")


def test_tokens_run_together_are_all_redacted(cli: Any,
                                              make_token: Callable[[], str]) -> None:
    a, b = make_token(), make_token()
    proc = cli(["redact"], input=f"{a}{b}\n{b}{a}x\n")
    assert proc.returncode == 0
    for token in (a, b):
        assert token[len("cendis_pat_") + 4 : -2] not in proc.out
    assert proc.out.count("…") == 4


def test_base64_token_is_redacted(cli: Any, make_token: Callable[[], str]) -> None:
    token = make_token()
    blob = base64.b64encode(b"ci:" + token.encode()).decode()
    proc = cli(["redact"], input=f"auth: {blob}\n")
    assert proc.returncode == 0
    assert proc.out.startswith(f"auth: {redact(token)}")
    assert blob.rstrip("=") not in proc.out and token not in proc.out
    assert proc.err == "cendis-scan: 1 token redacted\n"


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 30, 46, 47])
def test_token_across_the_cut_of_a_long_line(cut: int, cli: Any,
                                             make_token: Callable[[], str]) -> None:
    token = make_token()
    head = b"." * (LINE_LIMIT - 47 + cut)
    data = head + token.encode() + b" and the rest\n"
    proc = cli(["redact"], input=data)
    assert proc.stdout == head + redact(token).encode() + b" and the rest\n"


def _read_line(proc: subprocess.Popen, timeout: float = 10) -> bytes:
    """One line from the filter's stdout, or fail if it does not come in time."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "redact did not flush the line"
    return proc.stdout.readline()


def test_flushes_line_by_line(make_token: Callable[[], str]) -> None:
    token = make_token()
    proc = subprocess.Popen([CLI, "redact"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"first {token}\n".encode())
        proc.stdin.flush()
        assert _read_line(proc) == f"first {redact(token)}\n".encode()
        proc.stdin.write(b"second, clean\n")
        proc.stdin.flush()
        assert _read_line(proc) == b"second, clean\n"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b"cendis-scan: 1 token redacted\n"
    finally:
        proc.kill()
        proc.wait()
