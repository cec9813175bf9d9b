"""Scanning one input: from its bytes and their origin to findings.

A source says where bytes come from (an :class:`~scanner.sources.origin.Origin`: a
file, a range of a large file, stdin, a git object) and hands over a readable binary
stream; everything after that is here: sniffing (gzip, UTF-16, binary), choosing how to
read (whole, mapped, streamed), locating hits, building findings, and numbering the
lines of a large file that was searched in parallel pieces.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import mmap
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from scanner.engine import newlines
from scanner.engine.archives import IN_MEMORY, Bounded, scan_zip
from scanner.engine.detect import Detector
from scanner.engine.images import name_images
from scanner.engine.inputs import (
    CHUNK,
    COUNT_STEP,
    SNIFF,
    Located,
    data_extents,
    gunzip,
    gunzip_whole,
    kind_of,
    locate,
    scan_buffer,
    scan_reader,
    scan_stream,
    search,
    steady_heap,
    utf16_to_utf8,
    widen_pipe,
)
from scanner.engine.layers import Budget, Spent
from scanner.engine.tar_parts import Parts, scan_part
from scanner.engine.tars import (
    WHOLE,
    Entry,
    Mapped,
    Members,
    Source,
    Streamed,
    scan_tar,
)
from scanner.engine.unpack import Cut, decompress
from scanner.finding import Finding
from scanner.result import GZIP_LIMIT, ScanIssue, issue
from scanner.sources.origin import Origin, Readable

#: Inputs up to this size are read whole; larger regular files are mapped.
READ_WHOLE = 4 << 20
#: Layers taken off one input (gzip in gzip, a zip in a zip) before the rest is
#: scanned as it is.
MAX_NESTING = 4


@dataclass(slots=True)
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    suppressed: int = 0
    files: int = 0
    bytes: int = 0
    errors: list[ScanIssue] = field(default_factory=list)
    split: dict[str, str] = field(default_factory=dict)  # display path -> fs path
    #: What the whiteouts of each tar delete (a tar's display path -> paths; ``dir/``
    #: for an opaque directory): an image's reader marks what later layers deleted.
    whiteouts: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: Outcome) -> None:
        self.findings += other.findings
        self.suppressed += other.suppressed
        self.files += other.files
        self.bytes += other.bytes
        self.errors += other.errors
        self.split.update(other.split)
        self.whiteouts.update(other.whiteouts)

    def fail(self, origin: Origin, exc: BaseException) -> None:
        """One input failed: an error for it alone, and the scan goes on."""
        self.errors.append(issue(origin.path or "-", exc))


def to_findings(located: Iterable[Located], origin: Origin, encoding: str | None,
                outcome: Outcome, binary: bool = False) -> None:
    for loc in located:
        hit = loc.hit
        if hit.suppressed:
            outcome.suppressed += 1
            continue
        enc = hit.encoding if encoding is None else (
            encoding if hit.encoding == "plain" else f"{encoding}+{hit.encoding}")
        outcome.findings.append(Finding(
            rule_id=hit.rule_id, confidence=hit.confidence, path=origin.path,
            line=None if binary else loc.line, column=None if binary else loc.column,
            offset=loc.offset, encoding=enc, redacted=hit.redacted,
            secret_sha256=hit.secret_sha256, source=origin.source, variable=hit.variable,
            fingerprint_path=origin.fingerprint_path,
        ))


def _chunks(f: Readable, head: bytes) -> Iterator[bytes]:
    yield head
    while chunk := f.read(CHUNK):
        yield chunk


def scan_input(detector: Detector, f: Readable, origin: Origin, outcome: Outcome, *,
               seekable: bool, gzip_limit: int = GZIP_LIMIT, fanout: Fanout | None = None
               ) -> None:
    """Sniff the first bytes, then pick the cheapest way to read what they say it is.

    A stream (stdin, a pipe, a device) is always streamed in constant memory; a regular
    file is read whole when small and mapped when large; gzip and UTF-16 are decoded as
    streams either way (and what a gzip holds is sniffed again: gzip in gzip, a zip);
    a zip's members are scanned one by one; a large tar's members, with ``fanout``,
    by worker processes.
    """
    if origin.end is not None:  # a range of a large plain file, already sniffed
        _scan_mapped(detector, f, origin, outcome, binary=False)
        return
    with contextlib.suppress(Spent):  # the one error line was said where it ran out
        _scan_input(detector, f, origin, outcome, seekable,
                    Budget.for_input(gzip_limit, origin.size if seekable else None), fanout)


def _scan_input(detector: Detector, f: Readable, origin: Origin, outcome: Outcome,
                seekable: bool, budget: Budget, fanout: Fanout | None) -> None:
    head = f.read(SNIFF)
    kind = kind_of(head)
    binary = kind == "binary"
    if kind == "zip" and seekable and isinstance(f, io.IOBase) and f.seekable():
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        if _scan_archive(detector, f, origin, outcome, None, budget, 1):
            outcome.bytes += size
            return
        f.seek(len(head))
        kind, binary = "binary", True
    if kind == "tar" and seekable and _scan_mapped_tar(detector, f, origin, outcome,
                                                       budget, fanout):
        return
    if not seekable and kind in ("text", "binary"):
        # A plain stream (stdin): read in place into one reused buffer.
        widen_pipe(f)
        to_findings(scan_reader(detector, f, head, _tally(outcome), lines=not binary),
                    origin, None, outcome, binary=binary)
    elif kind in _LAYERED or kind.startswith("utf-16") or not seekable:
        if not seekable and sys.platform == "linux":
            steady_heap()  # a stream is read in pieces: reuse their memory
        _scan_chunks(detector, _count(_chunks(f, head), outcome), origin, outcome, None,
                     budget, 0)
    elif origin.size <= READ_WHOLE:
        buf = head + f.read(-1)
        outcome.bytes += len(buf)
        located = scan_buffer(detector, buf, lines=not binary)
        to_findings(located, origin, None, outcome, binary=binary)
    else:
        _scan_mapped(detector, f, origin, outcome, binary=binary)


#: Kinds that are taken off as a layer (or opened as an archive) and sniffed again.
_LAYERED = ("gzip", "zip", "tar", "bzip2", "xz", "zstd")


@dataclass(frozen=True, slots=True)
class Fanout:
    """Worker processes that the members of a large mapped tar (an image's layer) are
    split across (:func:`scanner.engine.tars.scan_tar`); ``rules`` travel with each
    part, so any process pool will do."""

    pool: Any  # a concurrent.futures.Executor
    rules: list[Any]


def _scan_mapped_tar(detector: Detector, f: Readable, origin: Origin, outcome: Outcome,
                     limit: Budget, fanout: Fanout | None = None) -> bool:
    """A tar that is a regular file (a ``docker save`` tarball, a backup): mapped, its
    members read in place. False when ``f`` cannot be mapped (then it is streamed)."""
    try:
        fileno = f.fileno()  # type: ignore[attr-defined]
        size = os.fstat(fileno).st_size
        mm = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    if origin.fs_path is None:
        fanout = None  # a worker opens the tar again by its name
    with mm:
        _scan_tar(detector, Mapped(mm, 0, size), origin, outcome, None, limit, 1, fanout)
    outcome.bytes += size
    return True


def _members(detector: Detector, outcome: Outcome, encoding: str | None, limit: Budget,
             depth: int, fanout: Fanout | None) -> Members:
    """How the members of a tar ``depth`` layers deep are scanned (here or, for a
    part of a split tar, in a worker: the same either way)."""
    layers = _plus(encoding, "tar")

    def held(data: bytes, sub: Origin) -> None:
        _scan_held(detector, data, sub, outcome, layers, limit, depth)

    def streamed(chunks: Iterator[bytes], sub: Origin) -> None:
        _scan_chunks(detector, chunks, sub, outcome, layers, limit, depth)

    def small_gzip(data: bytes) -> bytes | None:
        return _gunzip_whole(data, limit)

    def nested(inner: Mapped, sub: Origin) -> None:
        if depth >= MAX_NESTING:
            streamed(inner.chunks(inner.end), sub)  # says how deep it is
        else:
            _scan_tar(detector, inner, sub, outcome, layers, limit, depth + 1, fanout)

    def send(tar: Mapped, part: list[Entry], where: Origin) -> Any:
        assert fanout is not None
        return fanout.pool.submit(
            scan_tar_part, fanout.rules, (detector.max_decompressed, detector.decode_window),
            where.fs_path, (tar.base, tar.base + tar.end), part, where, encoding,
            (limit.limit, limit.left), depth)

    def split(tar: Mapped, where: Origin, out: Any, members: Members) -> Parts:
        return Parts(tar, where, out, members, send)

    return Members(detector, held, streamed, kind_of, small_gzip, nested,
                   None if fanout is None else split)


def _scan_tar(detector: Detector, src: Source, origin: Origin, outcome: Outcome,
              encoding: str | None, limit: Budget, depth: int, fanout: Fanout | None = None
              ) -> None:
    """Each member of a tar as an input one layer deeper; then, if the tar is a
    container image (``manifest.json``, ``index.json``), its findings renamed after the
    image and layer they are in. With ``fanout``, a large mapped tar's members are
    scanned by worker processes (and ``outcome`` gets their outcomes in order)."""
    since, errors_since = len(outcome.findings), len(outcome.errors)
    kept = scan_tar(src, origin, outcome,
                    _members(detector, outcome, encoding, limit, depth, fanout))
    if kept:
        name_images(outcome, since, origin, kept, errors_since)


def scan_tar_part(rules: list[Any], settings: tuple[int, int], fs_path: str,
                  span: tuple[int, int], part: list[Entry], origin: Origin,
                  encoding: str | None, limit: tuple[int, int], depth: int
                  ) -> tuple[Outcome, list[tuple[str, bytes]]]:
    """A worker's part of a split tar (the tar at ``span`` of the file ``fs_path``):
    what :func:`_scan_tar` would have made of these members; self-contained (rules
    travel with it). ``limit``: the input's decompression limit and what was left of
    it when the part was sent (each part in flight may spend that much)."""
    max_decompressed, window = settings
    detector = Detector(rules, max_decompressed=max_decompressed, decode_window=window)
    outcome = Outcome()
    with open(fs_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            kept = scan_part(Mapped(mm, *span), part, origin, outcome,
                             _members(detector, outcome, encoding,
                                      Budget(limit[0], left=limit[1]), depth, None))
        except Spent:
            kept = []
    return outcome, kept


def _scan_held(detector: Detector, data: bytes, origin: Origin, outcome: Outcome,
               encoding: str | None, limit: Budget, depth: int) -> None:
    """A member held whole (at most tars.WHOLE): text or binary is scanned as the one
    buffer it is (lines counted only up to a hit, no stream windows), a small gzip is
    inflated in one call and looked at again; anything else as a stream."""
    kind = kind_of(data[:SNIFF])
    if kind in ("text", "binary"):
        to_findings(scan_buffer(detector, data, lines=kind == "text"), origin, encoding,
                    outcome, binary=kind == "binary")
        return
    if kind == "gzip" and depth < MAX_NESTING:
        plain = _gunzip_whole(data, limit)
        if plain is not None:
            _scan_held(detector, plain, origin, outcome, _plus(encoding, "gzip"), limit,
                       depth + 1)
            return
    _scan_chunks(detector, [data], origin, outcome, encoding, limit, depth)


def _gunzip_whole(data: bytes, budget: Budget) -> bytes | None:
    """A small gzip member inflated in one call, its bytes spent from the input's
    budget (None: too large or damaged; the streamed reader then says what is wrong)."""
    if budget.spent:
        return None
    plain = gunzip_whole(data, min(budget.left, WHOLE))
    if plain is not None:  # within what is left: spending cannot fail here
        budget.spend(len(plain), "gzip")
    return plain


def _plus(encoding: str | None, layer: str) -> str:
    return layer if encoding is None else f"{encoding}+{layer}"


def _peek(chunks: Iterable[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first ``n`` bytes of a stream of chunks, and the whole stream again."""
    it = iter(chunks)
    pieces: list[bytes] = []
    size = 0
    for piece in it:
        pieces.append(piece)
        size += len(piece)
        if size >= n:
            break
    head = b"".join(pieces)
    return head, itertools.chain([head], it)


def _scan_chunks(detector: Detector, chunks: Iterable[bytes], origin: Origin,
                 outcome: Outcome, encoding: str | None, limit: Budget, depth: int) -> None:
    """A stream, sniffed again after every layer that is taken off (up to MAX_NESTING
    layers, each bounded by ``limit`` decompressed bytes)."""
    cut = Cut(chunks)
    head, stream = _peek(cut, SNIFF)
    said = len(outcome.errors)
    try:
        kind = kind_of(head)
        if kind == "gzip" and depth < MAX_NESTING:
            _scan_chunks(detector, gunzip(stream, limit), origin, outcome,
                         _plus(encoding, "gzip"), limit, depth + 1)
        elif kind in ("bzip2", "xz", "zstd") and depth < MAX_NESTING:
            _scan_chunks(detector, decompress(kind, stream, limit), origin, outcome,
                         _plus(encoding, kind), limit, depth + 1)
        elif kind == "tar" and depth < MAX_NESTING:
            _scan_tar(detector, Streamed(stream), origin, outcome, encoding, limit, depth + 1)
        elif kind.startswith("utf-16"):
            to_findings(scan_stream(detector, utf16_to_utf8(stream, kind)), origin,
                        _plus(encoding, "utf-16"), outcome)
        elif kind == "zip" and depth < MAX_NESTING:
            pieces, size = [], 0
            for piece in stream:
                pieces.append(piece)
                size += len(piece)
                if size > IN_MEMORY:  # too large to hold: its bytes are scanned as they are
                    rest = itertools.chain(pieces, stream)
                    to_findings(scan_stream(detector, rest), origin, encoding, outcome,
                                binary=True)
                    break
            else:
                data = io.BytesIO(b"".join(pieces))
                if not _scan_archive(detector, data, origin, outcome, encoding, limit,
                                     depth + 1):
                    to_findings(scan_stream(detector, [data.getvalue(), b""]), origin,
                                encoding, outcome, binary=True)
        else:
            budget = detector.budget()
            if kind in _LAYERED:  # nested deeper than MAX_NESTING: say so, and still
                outcome.errors.append(ScanIssue(  # look at the bytes as they are
                    "source", f"{origin.path or '-'}: more than {MAX_NESTING} layers of "
                    f"{_plus(encoding, kind)} inside each other: the innermost {kind} is "
                    "not unpacked, only searched as it is (encodings in it included); the "
                    "scan of it may be incomplete", origin.path))
                budget.deep_said = True  # the layer decoder's limit is this same line
            to_findings(scan_stream(detector, stream, budget=budget), origin, encoding,
                        outcome, binary=kind == "binary")
    finally:
        if cut.error is not None:  # the stream failed: its error, not the consequences
            outcome.errors[said:] = [e for e in outcome.errors[said:]  # (a cut tar)
                                     if e.path != origin.path]
    cut.check()


def _scan_archive(detector: Detector, f: io.IOBase, origin: Origin, outcome: Outcome,
                  encoding: str | None, limit: Budget, depth: int) -> bool:
    def member(reader: Bounded, sub: Origin) -> None:
        _scan_chunks(detector, _chunks(reader, b""), sub, outcome, _plus(encoding, "zip"),
                     limit, depth)

    return scan_zip(f, origin, outcome, limit, member,  # type: ignore[arg-type]
                    detector=detector)


def scan_bytes(detector: Detector, data: bytes, origin: Origin, *,
               gzip_limit: int = GZIP_LIMIT) -> Outcome:
    """One input held in memory (a git object, a caller's bytes)."""
    outcome = Outcome()
    scan_input(detector, io.BytesIO(data), origin, outcome, seekable=len(data) <= READ_WHOLE,
               gzip_limit=gzip_limit)
    return outcome


def _tally(outcome: Outcome) -> Callable[[int], None]:
    def add(n: int) -> None:
        outcome.bytes += n

    return add


def _count(stream: Iterable[bytes], outcome: Outcome) -> Iterator[bytes]:
    for piece in stream:
        outcome.bytes += len(piece)
        yield piece


def _scan_mapped(detector: Detector, f: Readable, origin: Origin, outcome: Outcome,
                 binary: bool) -> None:
    assert isinstance(f, io.IOBase), "only regular files are mapped"
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return
    # Offsets are Python ints all the way (a file may pass 2 or 4 GiB); holes of a
    # sparse file are skipped, not read.
    extents = data_extents(f.fileno(), origin.start, min(origin.end or size, size))
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if origin.end is None:
            outcome.bytes += size
            located = locate(mm, search(detector, mm, extents=extents), lines=not binary,
                             columns=not binary, extents=extents)
            to_findings(located, origin, None, outcome, binary=binary)
            return
        # One range of a split file: lines are counted later, in parallel (line_segments).
        end = min(origin.end, size)
        outcome.bytes += end - origin.start
        located = locate(mm, search(detector, mm, origin.start, end, extents), lines=False,
                         extents=extents)
        to_findings(located, origin, None, outcome)
        if origin.path is not None and origin.fs_path is not None:
            outcome.split[origin.path] = origin.fs_path


def split_large(origin: Origin, parts: int, min_size: int) -> list[Origin]:
    """Cut a large plain-text file into byte ranges so every core shares it."""
    if origin.size < min_size or parts < 2 or origin.fs_path is None:
        return [origin]
    try:
        with open(origin.fs_path, "rb") as f:
            if kind_of(f.read(SNIFF)) != "text":
                return [origin]
    except OSError:
        return [origin]
    step = -(-origin.size // parts)
    return [replace(origin, start=lo, end=min(lo + step, origin.size))
            for lo in range(0, origin.size, step)]


Segment = tuple[str, int, int]  # (file to open, start, end)


def count_segment(segment: Segment) -> int:
    """Newlines in one byte range of a file (a unit of parallel line counting)."""
    fs_path, start, end = segment
    buf = bytearray(min(COUNT_STEP, max(0, end - start)))  # read into cache, count there
    view = memoryview(buf)
    total = 0
    with open(fs_path, "rb", buffering=0) as f:  # read(), not a mapping: no page faults
        for lo, hi in data_extents(f.fileno(), start, end):  # holes hold no newline
            f.seek(lo)
            while lo < hi:
                got = f.readinto(view[: min(len(buf), hi - lo)])
                if not got:
                    break
                total += newlines.count(buf, 0, got)
                lo += got
    return total


def line_segments(outcome: Outcome, pieces: int) -> list[Segment]:
    """The byte ranges whose newlines number the findings of split files: from the
    start of the file to its last finding, cut at each finding and into ``pieces``
    roughly equal parts so every core counts."""
    segments = []
    for path, fs_path in outcome.split.items():
        offsets = sorted({f.offset for f in outcome.findings if f.path == path})
        if not offsets:
            continue
        step = max(1, -(-offsets[-1] // pieces))
        cuts = sorted({0, *offsets, *range(0, offsets[-1], step)})
        segments += [(fs_path, a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
    return segments


def number_lines(outcome: Outcome, segments: list[Segment], counts: list[int]) -> None:
    """Give the findings of split files their line numbers (new findings: they are
    frozen)."""
    newlines_before: dict[tuple[str, int], int] = {}
    running: dict[str, int] = {}
    for (fs_path, _, end), count in zip(segments, counts, strict=True):
        running[fs_path] = running.get(fs_path, 0) + count
        newlines_before[(fs_path, end)] = running[fs_path]
    numbered = []
    for f in outcome.findings:
        split = outcome.split.get(f.path or "")
        if split is not None and f.line is None:
            f = replace(f, line=1 + newlines_before.get((split, f.offset), 0))
        numbered.append(f)
    outcome.findings = numbered


def count_lines(segments: list[Segment], pool: Any) -> list[int]:
    """Count each segment's newlines, longest first so every worker finishes together;
    ``pool`` is an executor, or None to count here."""
    if pool is None:
        return [count_segment(s) for s in segments]
    order = sorted(range(len(segments)), key=lambda i: segments[i][1] - segments[i][2])
    counts = [0] * len(segments)
    done = pool.map(count_segment, [segments[i] for i in order])
    for i, count in zip(order, done, strict=True):
        counts[i] = count
    return counts
