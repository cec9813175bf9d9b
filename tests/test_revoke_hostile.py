"""``cendis-scan revoke`` against a hostile user (issue 14 hostile findings B1, D3-D6): the
installed CLI as a subprocess against the Cendis stand-in on loopback. Stdin is read
bounded, every token on it is revoked, ``--wait`` is a finite number, the wait it prints
is the wait it makes, and SIGTERM is one line like Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, assert_no_leak, keep_output

from scanner.dev.cendis_api import STATE as STANDIN
from scanner.dev.cendis_api import StandInToken
from scanner.dev.cendis_api import create_app as standin_app
from scanner.incidents.models import TokenRef

Stdin = bytes | Path | None


async def _standin(aiohttp_server: Any, tokens: list[str], credential: str) -> Any:
    return await aiohttp_server(standin_app(
        tokens=[StandInToken.from_token(t) for t in tokens],
        service_credentials={credential: ["revoke:tokens"]}))


async def _cli(server: Any, credential: str, db: Path, args: list[str], stdin: Stdin,
               timeout: float = 60) -> tuple[int, str, str]:
    """Run ``revoke`` with ``stdin`` bytes (a pipe) or a path (opened as stdin)."""
    handle = stdin.open("rb") if isinstance(stdin, Path) else None
    try:
        proc = await asyncio.create_subprocess_exec(
            CLI, "revoke", "--db", str(db), "--cendis-api-url", str(server.make_url("")),
            *args, env={**os.environ, "CENDIS_TOKEN": credential},
            stdin=handle or (asyncio.subprocess.PIPE if stdin is not None
                             else asyncio.subprocess.DEVNULL),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            proc.communicate(stdin if isinstance(stdin, bytes) else None), timeout)
    finally:
        if handle is not None:
            handle.close()
    keep_output(out + err, "cli")
    assert_no_leak(out, err)
    assert b"Traceback" not in err
    return proc.returncode or 0, out.decode(), err.decode()


def _incidents(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM incidents").fetchone()[0])
    finally:
        conn.close()


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


# -- B1: stdin is read bounded: a device or a huge stream is one line, exit 2 -----------

STDINS: dict[str, Callable[[Path, str], Stdin]] = {
    "/dev/zero": lambda tmp, t: Path("/dev/zero"),
    "a 20 GB sparse file": lambda tmp, t: _sparse(tmp / "sparse", 20 << 30),
    "100 KiB of token lines": lambda tmp, t: ((t + "\n") * 2200).encode(),
    "70 KiB of blank lines": lambda tmp, t: b"\n" * (70 << 10),
    "a token then NUL bytes": lambda tmp, t: t.encode() + b"\n" + b"\0" * 100,
    "not UTF-8": lambda tmp, t: t.encode() + b"\n\xff\xfe\n",
}


@pytest.mark.parametrize("case", sorted(STDINS))
async def test_stdin_is_read_bounded(aiohttp_server: Any, tmp_path: Path,
                                     make_token: Callable[[], str], case: str) -> None:
    token, credential = make_token(), make_token()
    server = await _standin(aiohttp_server, [token], credential)
    db = tmp_path / "r.db"
    code, out, err = await _cli(server, credential, db, [], STDINS[case](tmp_path, token),
                                timeout=30)
    assert code == 2 and err.count("\n") == 1 and err.startswith("cendis-scan: error: "), err
    assert not server.app[STANDIN].calls and _incidents(db) == 0  # nothing sent or kept


# -- D3: every token on stdin is revoked; stdin with --sha256 is an error ---------------

LAYOUTS: dict[str, Callable[[list[str]], str]] = {
    "two lines": lambda ts: f"{ts[0]}\n{ts[1]}\n",
    "CRLF, blank lines, spaces": lambda ts: f"\r\n  {ts[0]}  \r\n\r\n{ts[1]}\r\n{ts[2]}",
    "a repeat": lambda ts: f"{ts[0]}\n{ts[1]}\n{ts[0]}\n",
    "one, no newline": lambda ts: ts[0],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_every_token_on_stdin_is_revoked(aiohttp_server: Any, tmp_path: Path,
                                               make_token: Callable[[], str],
                                               layout: str) -> None:
    tokens, credential = [make_token() for _ in range(3)], make_token()
    server = await _standin(aiohttp_server, tokens, credential)
    text = LAYOUTS[layout](tokens)
    wanted = {TokenRef.from_token(t) for t in tokens if t in text}
    code, out, err = await _cli(server, credential, tmp_path / "r.db", [], text.encode())
    assert code == 0, err
    assert sorted(line.split(":")[0] for line in out.splitlines()) == sorted(
        f"revoked {r.redacted}" for r in wanted)
    sent = {h for call in server.app[STANDIN].calls for h in call["hashes"]}
    assert sent == {r.sha256 for r in wanted} and _incidents(tmp_path / "r.db") == len(wanted)


async def test_one_unknown_token_among_several_is_exit_1_and_each_is_said(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    known, unknown, credential = make_token(), make_token(), make_token()
    server = await _standin(aiohttp_server, [known], credential)
    code, out, _ = await _cli(server, credential, tmp_path / "r.db", [],
                              f"{known}\n{unknown}\n".encode())
    assert code == 1 and len(out.splitlines()) == 2
    assert out.count("revoked ") == 1 and out.count("not found ") == 1


@pytest.mark.parametrize("bad_line", [1, 2, 3])
async def test_one_bad_line_sends_nothing(aiohttp_server: Any, tmp_path: Path,
                                          make_token: Callable[[], str],
                                          bad_line: int) -> None:
    tokens, credential = [make_token() for _ in range(3)], make_token()
    server = await _standin(aiohttp_server, tokens, credential)
    tokens[bad_line - 1] = tokens[bad_line - 1][:-1] + "x"  # checksum broken
    code, _, err = await _cli(server, credential, tmp_path / "r.db", [],
                              "\n".join(tokens).encode())
    assert code == 2 and f"line {bad_line}: " in err and err.count("\n") == 1, err
    assert not server.app[STANDIN].calls and _incidents(tmp_path / "r.db") == 0


@pytest.mark.parametrize("stdin", ["token", "two tokens", "garbage"])
async def test_stdin_and_sha256_together_is_an_error(aiohttp_server: Any, tmp_path: Path,
                                                     make_token: Callable[[], str],
                                                     stdin: str) -> None:
    token, other, credential = make_token(), make_token(), make_token()
    server = await _standin(aiohttp_server, [token, other], credential)
    text = {"token": token, "two tokens": f"{token}\n{other}", "garbage": "x y z"}[stdin]
    code, _, err = await _cli(server, credential, tmp_path / "r.db",
                              ["--sha256", TokenRef.from_token(other).sha256],
                              text.encode() + b"\n")
    assert code == 2 and "give one or the other" in err and err.count("\n") == 1, err
    assert not server.app[STANDIN].calls


async def test_sha256_alone_still_works_with_empty_stdin(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token, credential = make_token(), make_token()
    server = await _standin(aiohttp_server, [token], credential)
    ref = TokenRef.from_token(token)
    for stdin in (None, b""):
        code, out, err = await _cli(server, credential, tmp_path / "r.db",
                                    ["--sha256", ref.sha256], stdin)
        assert code == 0 and out.startswith(("revoked ", "already revoked ")), err


# -- D4: --wait is a finite number of seconds, 0 or more --------------------------------

@pytest.mark.parametrize("wait", ["-1", "-0.5", "nan", "inf", "-inf", "1e400", "NaN"])
async def test_wait_must_be_finite_and_not_negative(aiohttp_server: Any, tmp_path: Path,
                                                    make_token: Callable[[], str],
                                                    wait: str) -> None:
    token, credential = make_token(), make_token()
    server = await _standin(aiohttp_server, [token], credential)
    code, _, err = await _cli(server, credential, tmp_path / "r.db", [f"--wait={wait}"],
                              token.encode())
    assert code == 2 and "--wait" in err and err.count("\n") == 1, err
    assert not server.app[STANDIN].calls and _incidents(tmp_path / "r.db") == 0


# -- D5: the wait it prints is the wait it makes ----------------------------------------

@pytest.mark.parametrize(("retry_after", "wait"), [("1e12", 1.0), ("100000", 2.0),
                                                   ("inf", 0.0), ("5", 1.5)])
async def test_the_wait_printed_is_the_real_wait(aiohttp_server: Any, tmp_path: Path,
                                                 make_token: Callable[[], str],
                                                 retry_after: str, wait: float) -> None:
    token, credential = make_token(), make_token()
    server = await _standin(aiohttp_server, [token], credential)
    state = server.app[STANDIN]
    state.faults.rate_limit_next, state.faults.retry_after = 10**6, retry_after
    code, _, err = await _cli(server, credential, tmp_path / "r.db", ["--wait", str(wait)],
                              token.encode())
    assert code == 2 and "queued for the next run" in err
    said = [float(s) for s in re.findall(r"waiting ([0-9.]+) s", err)]
    assert said and all(s <= wait for s in said), err


# -- D6: SIGTERM is one line like SIGINT -------------------------------------------------

@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                   (signal.SIGINT, 130, "interrupted")])
async def test_a_signal_is_one_line_and_its_exit_status(
        aiohttp_server: Any, tmp_path: Path, make_token: Callable[[], str],
        sig: signal.Signals, code: int, word: str) -> None:
    token, credential = make_token(), make_token()
    server = await _standin(aiohttp_server, [token], credential)
    state = server.app[STANDIN]
    state.faults.rate_limit_next, state.faults.retry_after = 10**6, "3000"
    proc = await asyncio.create_subprocess_exec(
        CLI, "revoke", "--wait", "600", "--db", str(tmp_path / "r.db"), "--cendis-api-url",
        str(server.make_url("")), env={**os.environ, "CENDIS_TOKEN": credential},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(token.encode() + b"\n")
    proc.stdin.close()
    for _ in range(600):  # until it waits on the rate limit (its first call answered)
        if state.calls:
            break
        await asyncio.sleep(0.05)
    assert state.calls
    await asyncio.sleep(0.3)  # into its wait
    proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    keep_output(out + err, "cli")
    lines = err.decode().splitlines()
    assert proc.returncode == code, err.decode()
    assert lines[-1] == f"cendis-scan: {word}" and b"Traceback" not in err
    assert sum(word in line for line in lines) == 1
    assert _incidents(tmp_path / "r.db") == 1  # recorded; the token stays queued
