"""Looking for tokens in what the suite wrote: whole, base64-encoded (either alphabet,
any alignment), and behind percent-encoding.

Also the pytest plugin that runs the privacy check (tests/conftest.py loads it): every
process of the run (each pytest-xdist worker) records each token it generates in its own
file beside the workers' temporary folders, and once every worker has finished, the
process that started the run looks for all of them, whole and base64- and
percent-encoded, in every output of every worker:

- every SQLite file (found by its header, with its -wal, -shm and -journal files);
- every sweep state file: a log sweep's JSON state (found by its shape) and, in each
  sweep mirror of the cache (``<name>-<hash>.git``), its git ``config`` (the remote URL)
  and its file of reported hashes;
- everything kept in each worker's ``captured/`` folder: each CLI subprocess's stdout
  and stderr, pytest's captured stdout/stderr/logs of every test, the servers' and
  drivers' logs, and the journal of every Cendis stand-in (every request it received,
  headers and body: conftest's ``aiohttp_server``/``aiohttp_client`` keep it).

A leak fails the run (exit status 1) with one line naming the count, then one line per
output (the phrase says which form and where, never the token). The hostile-input tests
also use :class:`Needles` directly, right after sending a token.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import sys
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote_to_bytes

import pytest

WHOLE = re.compile(rb"cendis_pat_[A-Za-z0-9]{36}")
CORE = 52  # base64 characters compared: 39 bytes, the prefix and 28 of the 36 characters


#: ``_`` as quoted-printable (``=5F``) or a CSS escape (``\\5f `` or ``\\00005F``).
_HIDDEN_UNDERSCORE = re.compile(r"=5[fF]|\\0{0,4}5[fF] ?")


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
        self.hexes: set[bytes] = set()
        self.encoded: dict[bytes, set[bytes]] = {}
        for token in tokens:
            raw = token.encode("ascii")
            self.whole.add(raw)
            self.hexes.add(raw.hex().encode())
            for literal, cores in _base64_forms(raw).items():
                self.encoded.setdefault(literal, set()).update(cores)

    def _find(self, data: bytes) -> str | None:
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

    def find(self, data: bytes | str) -> str | None:
        """The first token form in ``data``, as a phrase (never the token), or None.
        Percent-encoded text is also searched decoded (twice: ``%255F`` too)."""
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        for layer in range(3):
            problem = self._find(raw)
            if problem is not None:
                return problem if layer == 0 else f"{problem} (percent-encoded)"
            if b"%" not in raw:
                break
            raw = unquote_to_bytes(raw)
        return self._find_hidden(data)

    def _find_hidden(self, data: bytes | str) -> str | None:
        """A token hidden by invisible format characters (zero-width space, soft hyphen),
        NFKC look-alikes, quoted-printable or CSS escapes of ``_``, or hex (either case).
        Only texts that show a sign of one are normalised (cheap on large outputs)."""
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        lowered = raw.lower()
        if any(h in lowered for h in self.hexes):
            return "a hex-encoded token"
        if raw.isascii() and b"=5" not in raw and b"\\5" not in raw:
            return None
        text = unicodedata.normalize("NFKC", raw.decode("utf-8", "replace"))
        for hidden in {c for c in set(text) if c > "\x7f" and unicodedata.category(c) == "Cf"}:
            text = text.replace(hidden, "")
        text = _HIDDEN_UNDERSCORE.sub("_", text)
        problem = self._find(text.encode("utf-8"))
        return None if problem is None else f"{problem} (hidden: normalised or escaped)"


# -- what is searched ------------------------------------------------------------------

#: Outputs sit near the top of each test's folder; some tests build trees 1,000 levels
#: deep (longer than PATH_MAX) as scan inputs, which are not walked to the bottom.
MAX_DEPTH = 12
#: A sweep mirror's folder in the cache (scanner.sweep.mirrors.cache_dir_name).
MIRROR = re.compile(r".+-[0-9a-f]{10}\.git")
#: What a sweep keeps in a mirror besides the fetched objects and refs.
MIRROR_STATE = ("config", "cendis-scan-reported")
STATE_LIMIT = 16 << 20


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\0"
    except OSError:
        return False


def _is_log_state(path: str) -> bool:
    """A log sweep's JSON state: an object with ``files`` and ``reported``."""
    try:
        if os.path.getsize(path) > STATE_LIMIT:
            return False
        with open(path, "rb") as handle:
            text = handle.read()
        if not text.lstrip().startswith(b"{"):
            return False
        data = json.loads(text)
    except (OSError, ValueError, RecursionError):  # inputs: [[[[... nested deep
        return False
    return isinstance(data, dict) and "files" in data and "reported" in data


def outputs(base: Path) -> list[str]:
    """Under one process's temporary folder: every SQLite file (with its -wal, -shm or
    -journal file), every sweep state file and every file in the captured/ folder,
    walked without recursion and without following links.

    Inputs the tests wrote on purpose (files to scan, seed files, the repositories a
    mirror fetches) are not outputs and are not searched."""
    found: list[str] = []
    stack = [(str(base), 0, False)]
    while stack:
        folder, depth, captured = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and MIRROR.fullmatch(entry.name):
                found += [p for p in (os.path.join(entry.path, n) for n in MIRROR_STATE)
                          if os.path.isfile(p)]
            elif entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH:
                    stack.append((entry.path, depth + 1,
                                  captured or (depth == 0 and entry.name == CAPTURED)))
            elif entry.is_file(follow_symlinks=False) and not captured and \
                    entry.name.endswith(".json") and _is_log_state(entry.path):
                found.append(entry.path)
            elif entry.is_file(follow_symlinks=False) and (captured or _is_sqlite(entry.path)):
                found.append(entry.path)
                for suffix in ("-wal", "-shm", "-journal"):
                    if not captured and os.path.exists(entry.path + suffix):
                        found.append(entry.path + suffix)
    return found


# -- every token, from every process ---------------------------------------------------

CAPTURE_ENV = "CENDIS_SCAN_TEST_CAPTURE"
CAPTURED = "captured"
#: Beside the workers' folders: one file per process, a token per line.
TOKENS = "privacy-tokens"
#: pytest-xdist gives worker ``gwN`` the folder ``<root>/popen-gwN``.
WORKER_FOLDER = re.compile(r"popen-gw\d+")


def shared_root(config: pytest.Config) -> Path:
    """The folder every process of this run shares: the controller's temporary folder
    (xdist's workers have theirs inside it; xdist itself reads it the same way)."""
    base: Path = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if hasattr(config, "workerinput") else base


class TokenRegistry(set[str]):
    """Every token this process generated; each new one is also appended (and flushed)
    to this process's file under the shared root, so the check at the end of the run,
    in another process, reads them all, even a crashed worker's."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: TextIO | None = open(  # noqa: SIM115 (closed at unconfigure)
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a",
            encoding="ascii")

    def add(self, token: str) -> None:
        if token in self:
            return
        super().add(token)
        if self._handle is not None:
            self._handle.write(token + "\n")
            self._handle.flush()

    def update(self, *others: Iterable[str]) -> None:
        for other in others:
            for token in other:
                self.add(token)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_tokens(root: Path) -> set[str]:
    """Every token any process of the run recorded."""
    tokens: set[str] = set()
    for path in sorted((root / TOKENS).glob("*.txt")):
        tokens.update(path.read_text(encoding="ascii").split())
    return tokens


def check(root: Path) -> tuple[int, int, list[str]]:
    """The search at the end of a run: every token recorded under ``root`` in every
    output of every process (the workers' folders, or ``root`` itself without xdist).
    Returns (tokens, files searched, leaks as ``path: phrase``)."""
    tokens = read_tokens(root)
    bases = sorted(p for p in root.iterdir() if p.is_dir() and WORKER_FOLDER.fullmatch(p.name))
    files = [f for base in (bases or [root]) for f in outputs(base)]
    if not tokens:
        return 0, len(files), []
    needles = Needles(tokens)
    leaks = []
    for path in files:
        try:
            with open(path, "rb") as handle:
                problem = needles.find(handle.read())
        except OSError:
            continue
        if problem:
            leaks.append(f"{path}: {problem}")
    return len(tokens), len(files), leaks


# -- the plugin: tests/conftest.py loads it (pytest_plugins) ---------------------------

REGISTRY = pytest.StashKey[TokenRegistry]()
VERDICT = pytest.StashKey[tuple[int, int, list[str], float]]()
PATCHED = pytest.StashKey[list[tuple[Any, Callable[..., str]]]]()


def _recording(original: Callable[..., str], registry: TokenRegistry) -> Callable[..., str]:
    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        registry.add(token)
        return token

    return generate


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin has set up its factory
def pytest_configure(config: pytest.Config) -> None:
    """Every call of ``scanner.token.generate`` in this process, from a test, a helper
    or the code under test, records its token: the module's function is wrapped, and so
    is every copy imported by name (``from scanner.token import generate``) before now;
    modules imported later get the wrapper."""
    import scanner.token

    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    registry = TokenRegistry(shared_root(config) / TOKENS / f"{worker}-{os.getpid()}.txt")
    config.stash[REGISTRY] = registry
    original = scanner.token.generate
    wrapper = _recording(original, registry)
    patched = []
    for module in list(sys.modules.values()):
        if getattr(module, "generate", None) is original:
            patched.append((module, original))
            setattr(module, "generate", wrapper)  # noqa: B010 (any module)
    config.stash[PATCHED] = patched


def pytest_unconfigure(config: pytest.Config) -> None:
    for module, original in config.stash.get(PATCHED, []):
        setattr(module, "generate", original)  # noqa: B010 (any module)
    if REGISTRY in config.stash:
        config.stash[REGISTRY].close()


@pytest.fixture(scope="session")
def token_registry(pytestconfig: pytest.Config) -> TokenRegistry:
    """Every token this process generated. ``generate`` adds to it by itself; a test
    adds the tokens something else made (a CLI subprocess, a stand-in) that it learns."""
    return pytestconfig.stash[REGISTRY]


@pytest.fixture(scope="session", autouse=True)
def captured_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where outputs are kept for the privacy check (also given to subprocesses)."""
    path = tmp_path_factory.getbasetemp() / CAPTURED
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CAPTURE_ENV, str(path))
        yield path


def keep_output(data: bytes, kind: str) -> None:
    """Keep a copy of an output for the privacy check (no-op outside a test session)."""
    where = os.environ.get(CAPTURE_ENV)
    if where and data.strip():
        (Path(where) / f"{kind}-{uuid.uuid4().hex}.out").write_bytes(data)


def keep_standin_journal(journal: Any, kind: str = "standin") -> None:
    """Keep what a Cendis stand-in received (every request: headers, body) for the
    privacy check: a token in a revoke call's url or source is a token forwarded."""
    keep_output(json.dumps(journal, indent=1).encode(), kind)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    text = "\n".join(f"{title}\n{content}" for title, content in report.sections)
    keep_output(text.encode("utf-8", "replace"), "pytest")


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter's summary
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Once, in the process that started the run, after every worker has finished: a
    leak fails the run (exit status 1), whichever test made the token and wherever it
    ended up."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    start = time.perf_counter()
    tokens, files, leaks = check(shared_root(config))
    config.stash[VERDICT] = tokens, files, leaks, time.perf_counter() - start
    if leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if VERDICT not in config.stash:
        return
    tokens, files, leaks, seconds = config.stash[VERDICT]
    if not leaks:
        terminalreporter.write_line(f"privacy: no leak of {tokens} generated tokens in "
                                    f"{files} outputs ({seconds:.1f} s)")
        return
    terminalreporter.write_line(f"privacy: FAILED: {len(leaks)} outputs hold a generated "
                                f"token ({tokens} tokens, {files} outputs searched)", red=True)
    for leak in leaks:
        terminalreporter.write_line(f"  {leak}", red=True)
