"""One pass over a region for every literal of every rule, with Hyperscan.

Without it the detector runs one ``bytes.find`` pass per literal past the first
DEEP_LIMIT bytes (about 0.6 GB/s for the four of the built-in rule) and one RE2 pass over
an alternation in the first DEEP_LIMIT bytes. Hyperscan's literal matcher finds all of
them in one pass at several GB/s on one core, straight from the buffer (bytes, a
bytearray, a read-only mmap: a ``memoryview`` slice, never a copy), and releases the
GIL while it runs.

Only fixed strings go into Hyperscan (the literal compiler: no regex syntax at all), so
the linear-time guarantee holds and no user pattern ever reaches it; RE2 still confirms
and classifies every candidate, and runs user rules.

If the ``hyperscan`` package cannot be imported (a platform without wheels), or
``CENDIS_SCAN_PREFILTER=plain`` asks for it, the detector keeps its own search: the
same findings, more slowly. A missing package is said once per process, as a warning on
this module's logger (under ``scanner``).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

#: ``plain`` forces the search without Hyperscan (tests run the suite both ways);
#: anything else (or unset) uses Hyperscan when it can be imported.
ENV = "CENDIS_SCAN_PREFILTER"
#: Hyperscan takes a 32-bit length: longer buffers are scanned in blocks this large.
BLOCK = 1 << 30

log = logging.getLogger(__name__)


def wanted() -> bool:
    """Whether the environment allows Hyperscan (read at each Detector's creation)."""
    return os.environ.get(ENV, "").strip().lower() != "plain"


@functools.cache
def _module() -> Any | None:
    """The ``hyperscan`` module, or None (said once per process: the cache)."""
    try:
        import hyperscan
    except ImportError as exc:
        log.warning("hyperscan is not available (%s): searching without the prefilter, "
                    "more slowly", exc)
        return None
    return hyperscan


def available() -> bool:
    """Whether a Detector made now would use Hyperscan."""
    return wanted() and _module() is not None


class Literals:
    """A Hyperscan database of fixed strings, compiled once (per Detector), and the
    scratch spaces to run it.

    A scratch space may serve one scan at a time; a Detector is shared by threads, so
    scratches are kept in a list: a scan pops one (or clones a new one when all are
    busy) and puts it back. ``list.pop``/``append`` are atomic, so no lock is needed.
    """

    def __init__(self, texts: list[bytes]):
        hs = _module()
        if hs is None or not texts:
            raise ValueError("no hyperscan, or nothing to look for")
        self.texts = texts
        self._lengths = [len(t) for t in texts]
        self._hs = hs
        db = _load(hs, texts)
        self._db = db
        self._scratches: list[Any] = [db.scratch or hs.Scratch(db)]
        self.longest = max(self._lengths)

    def find(self, buf: Any, start: int, stop: int) -> list[tuple[int, int]]:
        """(offset, literal index) of every literal that lies wholly in
        ``buf[start:stop]``, all of them (overlapping ones too), sorted by offset.

        Hyperscan reports where a literal ends; its start is that minus its length (no
        start-of-match tracking is needed for fixed strings, and none is paid for)."""
        found: list[tuple[int, int]] = []
        lengths = self._lengths

        def on_match(index: int, _from: int, to: int, _flags: int, base: int) -> None:
            found.append((base + to - lengths[index], index))

        try:
            scratch = self._scratches.pop()
        except IndexError:
            scratch = self._hs.Scratch(self._db)
        try:
            with memoryview(buf) as view:
                lo = start
                while lo < stop:
                    hi = min(stop, lo + BLOCK)
                    with view[lo:hi] as block:
                        self._db.scan(block, match_event_handler=on_match, context=lo,
                                      scratch=scratch)
                    if hi == stop:
                        break
                    lo = hi - self.longest + 1  # a literal across the cut is seen once
        finally:
            self._scratches.append(scratch)
        if stop - start > BLOCK:
            found = sorted(set(found))
        else:
            found.sort()
        return found


#: Where compiled databases are kept between runs (``$XDG_CACHE_HOME/cendis-scan``):
#: every layer's seeds make ~1,400 literals, 20-250 ms to compile, against well under
#: 1 ms to load; a process that scans one small file must not pay that each time.
CACHE_ENV = "CENDIS_SCAN_CACHE"


def _cache_dir() -> str:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cendis-scan")


def _load(hs: Any, texts: list[bytes]) -> Any:
    """The database for ``texts``: from the cache when it is there (keyed by the
    literals and Hyperscan's version), else compiled and, for large sets, cached. Any
    trouble with the cache (read-only home, a damaged file) means compiling."""
    import hashlib

    key = hashlib.sha256(b"\0".join([str(hs.__version__).encode(), *texts])).hexdigest()
    path = os.path.join(_cache_dir(), f"literals-{key[:32]}.hsdb")
    if len(texts) > 64:
        try:
            with open(path, "rb") as f:
                return hs.loadb(f.read(), mode=hs.HS_MODE_BLOCK)
        except Exception:  # noqa: BLE001  (missing, unreadable or not a database)
            pass
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(expressions=texts, ids=list(range(len(texts))), elements=len(texts),
               flags=0, literal=True)
    if len(texts) > 64:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(hs.dumpb(db))
            os.replace(tmp, path)
        except OSError:
            pass
    return db


def compile_literals(texts: list[bytes]) -> Literals | None:
    """A prefilter for ``texts``, or None when Hyperscan is not to be used."""
    if not texts or not available():
        return None
    return _compiled(tuple(texts))


@functools.lru_cache(maxsize=16)
def _compiled(texts: tuple[bytes, ...]) -> Literals:
    """One database per literal set and process: every layer's seeds make ~1,500
    literals, ~20 ms to compile, and a Detector is made per unit of work. A database
    is immutable and :class:`Literals` is safe to share between threads."""
    return Literals(list(texts))
