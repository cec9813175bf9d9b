"""Turning inputs into located hits: whole buffers, streams, gzip and UTF-16.

Two shapes of input reach the detector. A *buffer* (bytes or an mmap) is scanned in one
call, and lines are counted afterwards and only up to the last hit, so a clean 1 GB log
costs nothing beyond the literal search. A *stream* (stdin, gzip, UTF-16 decoded on the
fly) is scanned chunk by chunk with an overlap, counting lines as it goes, in constant
memory; a plain stream read straight from its file (stdin) is read in place into one
reused buffer (:func:`scan_reader`).
"""

from __future__ import annotations

import codecs
import errno
import functools
import mmap
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scanner.engine import newlines
from scanner.engine.limits import LOOKAHEAD, LOOKBEHIND
from scanner.engine.unpack import compression_of, header_ok
from scanner.errors import SourceError
from scanner.result import GZIP_LIMIT

if TYPE_CHECKING:  # the detector imports this module (a gzipped blob is a stream)
    from scanner.engine.detect import Buffer, Detector, Hit
    from scanner.engine.layers import Budget
    from scanner.sources.origin import Readable

CHUNK = 1 << 20
#: A stream read straight from its file (stdin) is read into one reused buffer and
#: searched this much at a time (measured on a 1 GB log: 2 MiB, about twice the L2
#: cache, was cheapest; 0.5 and 8 MiB cost ~10 % more CPU).
STEP = 2 << 20
#: Mapped files are searched (and their newlines counted) this much at a time.
REGION = 32 << 20
PAGE = mmap.PAGESIZE
#: Newlines of a mapping are counted this much at a time (a slice that stays in cache).
COUNT_STEP = 256 << 10
SNIFF = 8192
_CONTINUATION = bytes(range(0x80, 0xC0))
#: Holes shorter than this are read through: one search call beats many tiny ones.
HOLE_MIN = 1 << 20

Extents = list[tuple[int, int]]  # [start, end) byte ranges of a file that hold data


@dataclass(slots=True)
class Located:
    hit: Hit
    offset: int  # absolute byte offset in the (decoded) input
    line: int | None
    column: int | None


def code_points(data: bytes | bytearray) -> int:
    """Characters in UTF-8 text: every byte that is not a continuation byte."""
    return len(data.translate(None, _CONTINUATION))


def kind_of(head: bytes) -> str:
    """``gzip``, ``zip``, ``bzip2``, ``xz``, ``zstd``, ``tar``, ``utf-16-le``,
    ``utf-16-be``, ``binary`` or ``text`` from the first bytes."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    packed = compression_of(head) or ("tar" if header_ok(head[:512]) else None)
    if packed is not None:
        return packed
    if head[:2] == b"\xff\xfe":
        return "utf-16-le"
    if head[:2] == b"\xfe\xff":
        return "utf-16-be"
    if b"\0" not in head:
        return "text"
    if head.count(0) <= 0.4 * max(1, (len(head) & ~1) // 2):
        return "binary"  # too few NULs for either UTF-16 test below (no slices made)
    sample = head[: len(head) & ~1]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    half = max(1, len(sample) // 2)
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return "binary"


def scan_buffer(detector: Detector, buf: Buffer, start: int = 0, end: int | None = None,
                *, lines: bool = True) -> list[Located]:
    """Scan ``buf[start:end]``: hits whose needle starts there (context may lie outside).

    Line numbers count from ``start`` (the line holding ``start`` is line 1).
    """
    return locate(buf, search(detector, buf, start, end), start, lines=lines, columns=lines)


def data_extents(fd: int, start: int, end: int) -> Extents:
    """The parts of ``[start, end)`` of a file that hold data.

    A hole in a sparse file (a disk image, a preallocated database) reads as zeros,
    which hold neither a token nor a newline: skipping holes makes a 5 GB file that is
    mostly hole cost only its data. Where the file system cannot say, it is all data.
    Moves the file position (callers map the file or seek before reading).
    """
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None or start >= end:
        return [(start, end)] if start < end else []
    out: Extents = []
    pos = start
    try:
        while pos < end:
            try:
                lo = os.lseek(fd, pos, seek_data)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but hole after pos
                    break
                raise
            if lo >= end:
                break
            hi = min(os.lseek(fd, lo, seek_hole), end)
            if out and lo - out[-1][1] < HOLE_MIN:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
            pos = hi
    except OSError:  # no SEEK_DATA on this file system: read it all
        return [(start, end)]
    return out


def _clip(extents: Extents | None, start: int, end: int) -> Extents:
    if extents is None:
        return [(start, end)]
    return [(max(a, start), min(b, end)) for a, b in extents if a < end and b > start]


def search(detector: Detector, buf: Buffer, start: int = 0, end: int | None = None,
           extents: Extents | None = None) -> list[Hit]:
    """Find the hits in ``buf[start:end]`` a REGION at a time, straight from the buffer;
    with ``extents`` (a file's data), only there.

    Lines are not counted here: most large inputs hold no token, and for them counting
    would be a second full pass. A mapped file's pages are given back behind the search,
    so a 1 GB log never becomes 1 GB of resident memory.
    """
    end = len(buf) if end is None else end
    release = getattr(buf, "madvise", None)
    hits: list[Hit] = []
    budget = detector.budget()
    for a, b in _clip(extents, start, end):
        for lo in range(a, b, REGION):
            hits += windowed(detector, buf, lo, min(b, lo + REGION), 0, budget)
            if release is not None and lo - LOOKBEHIND > PAGE:
                release(mmap.MADV_DONTNEED, 0, (lo - LOOKBEHIND) & ~(PAGE - 1))
    hits.sort(key=lambda h: h.offset)
    return hits


def windowed(detector: Detector, buf: Buffer, lo: int, hi: int, base: int, budget: Budget
             ) -> Iterator[Hit]:
    """:meth:`Detector.scan` of ``buf[lo:hi]`` (``base``: the input's offset of
    ``buf[0]``) with the deep plan up to exactly the decode window and the shallow one
    past it, whatever the region's size: a file, a stream and any chunking of either
    agree on what is found (a region that merely started inside the window used to be
    searched deep to its end, 32 MiB for a file)."""
    cut = min(max(lo, detector.decode_window - base), hi)
    if cut > lo:
        yield from detector.scan(buf, lo, cut, deep=True, budget=budget)
    if hi > cut:
        yield from detector.scan(buf, cut, hi, deep=False, budget=budget)


def locate(buf: Buffer, hits: list[Hit], start: int = 0, *, lines: bool = True,
           columns: bool = True, extents: Extents | None = None) -> list[Located]:
    """Line (counted from ``start``) and column of each hit, counting only up to the
    last one. ``lines=False`` leaves the line to the caller (a split file, counted in
    parallel later) or to nobody (binary files)."""
    out: list[Located] = []
    line, counted = 1, start
    for hit in hits:
        at = hit.offset
        number = column = None
        if lines:
            line += count_newlines(buf, counted, at, extents)
            counted = at
            number = line
        if columns:
            column = column_of(buf, at, extents)
        out.append(Located(hit, at, number, column))
    return out


def column_of(buf: Buffer, at: int, extents: Extents | None = None) -> int:
    """The column (in code points, from 1) of ``at``, copying at most a REGION at a
    time: a line may be gigabytes long. A hole (see :func:`data_extents`) has no
    newline, and its zero bytes count one each without being read."""
    line_start = 0
    for a, b in reversed(_clip(extents, 0, at)):
        nl = buf.rfind(b"\n", a, b)
        if nl != -1:
            line_start = nl + 1
            break
    if at - line_start <= REGION:
        return code_points(buf[line_start:at]) + 1
    total, pos = 0, line_start
    for a, b in _clip(extents, line_start, at):
        total += a - pos
        for lo in range(a, b, REGION):
            total += code_points(buf[lo : min(b, lo + REGION)])
        pos = b
    return total + at - pos + 1


def count_newlines(buf: Buffer, start: int, end: int, extents: Extents | None = None
                   ) -> int:
    """``bytes.count`` for any buffer: mapped files lack it, so a REGION at a time (and
    only in ``extents``, a file's data, when given)."""
    if isinstance(buf, bytes | bytearray):
        return newlines.count(buf, start, end)
    release = getattr(buf, "madvise", None)
    total = 0
    for a, b in _clip(extents, start, end):
        for lo in range(a, b, COUNT_STEP):
            total += newlines.count(buf, lo, min(b, lo + COUNT_STEP))
            if release is not None and lo % REGION == 0 and lo > PAGE:
                release(mmap.MADV_DONTNEED, 0, lo & ~(PAGE - 1))
    return total


def scan_stream(detector: Detector, chunks: Iterable[bytes],
                chunk_size: int = CHUNK, budget: Budget | None = None) -> Iterator[Located]:
    """Constant-memory scan: each region is scanned with LOOKBEHIND bytes kept before it
    and LOOKAHEAD after, so a token across any chunk boundary is seen exactly once.
    ``budget``: the input's decoded-bytes budget (a new one when not given)."""
    window = b""  # bytes from absolute offset `base`
    base = 0
    scanned = 0  # absolute offset up to which needles have been searched
    line = 1  # line number at absolute offset `counted`
    counted = 0
    carry = 0  # code points between the current line's start and `base`, if before it
    budget = detector.budget() if budget is None else budget
    for chunk in _rechunk(chunks, chunk_size):
        window += chunk
        limit = base + len(window) - LOOKAHEAD if chunk else base + len(window)
        if limit <= scanned:
            continue
        for hit in windowed(detector, window, scanned - base, limit - base, base, budget):
            at = hit.offset  # relative to window; a base64 run may start before the
            if at >= counted - base:  # last hit's place
                line += newlines.count(window, counted - base, at)
            else:
                line -= newlines.count(window, at, counted - base)
            counted = base + at
            nl = window.rfind(b"\n", 0, at)
            column = code_points(window[nl + 1 : at]) + 1 + (carry if nl == -1 else 0)
            yield Located(hit, base + at, line, column)
        scanned = limit
        # Drop what no later region needs, keeping LOOKBEHIND bytes of context.
        drop = max(0, scanned - base - LOOKBEHIND)
        if drop:  # counted in place: a copy of what is dropped cost a pass of its own
            line += newlines.count(window, max(0, counted - base), drop)
            counted = max(counted, base + drop)
            nl = window.rfind(b"\n", 0, drop)
            carry = code_points(window[nl + 1 : drop]) + (carry if nl == -1 else 0)
            window = window[drop:]
            base += drop


def scan_reader(detector: Detector, f: Readable, head: bytes, tally: Callable[[int], None],
                *, lines: bool = True, step: int = STEP) -> Iterator[Located]:
    """:func:`scan_stream` for a plain stream read straight from its file (stdin): the
    bytes are read into one buffer that lives as long as the stream, so nothing is
    allocated, joined or sliced per piece; after each step only the LOOKBEHIND +
    LOOKAHEAD bytes a token across the cut needs are moved to its front. Newlines are
    counted once, in place, as a step is left behind (a finding's line needs every
    newline before it, and the bytes are gone afterwards); ``lines=False`` (binary)
    counts nothing. ``tally`` is told how many bytes were read."""
    keep = LOOKBEHIND + LOOKAHEAD
    buf = bytearray(keep + step)
    view = memoryview(buf)
    readinto = getattr(f, "readinto", None)
    filled = len(head)
    buf[:filled] = head
    tally(filled)
    base = scanned = counted = carry = 0  # absolute offsets (see scan_stream), carry
    line = 1
    budget = detector.budget()
    eof = False
    with view:
        while True:
            while filled < len(buf) and not eof:
                got = _read_into(f, readinto, view[filled:])
                eof = not got
                filled += got
                tally(got)
            limit = base + filled if eof else base + filled - LOOKAHEAD
            if limit > scanned:
                for hit in windowed(detector, buf, scanned - base, limit - base, base,
                                    budget):
                    at = hit.offset  # relative to buf
                    column = None
                    if lines:  # a base64 run may start before the last hit's place
                        if at >= counted - base:
                            line += newlines.count(buf, counted - base, at)
                        else:
                            line -= newlines.count(buf, at, counted - base)
                        counted = base + at
                        nl = buf.rfind(b"\n", 0, at)
                        column = code_points(buf[nl + 1 : at]) + 1 + (
                            carry if nl == -1 else 0)
                    yield Located(hit, base + at, line if lines else None, column)
                scanned = limit
            if eof:
                return
            drop = scanned - base - LOOKBEHIND  # what no later step needs
            if lines:
                if counted - base < drop:  # (a hit may have counted past it already)
                    line += newlines.count(buf, counted - base, drop)
                    counted = base + drop
                nl = buf.rfind(b"\n", 0, drop)
                carry = code_points(buf[nl + 1 : drop]) + (carry if nl == -1 else 0)
            view[: filled - drop] = view[drop:filled]  # a memmove of `keep` bytes
            filled -= drop
            base += drop


def _read_into(f: Readable, readinto: Callable[[memoryview], int | None] | None,
               into: memoryview) -> int:
    """Bytes read into ``into`` (0 at the end: also a non-blocking stream with nothing
    to read, as a read loop over ``f.read`` ends there): in place when ``f`` can, else
    copied from a read."""
    if readinto is not None:
        return readinto(into) or 0
    data = f.read(len(into))
    if not data:
        return 0
    into[: len(data)] = data
    return len(data)


def widen_pipe(f: object, size: int = STEP) -> None:
    """Ask for a larger pipe (Linux: up to ``/proc/sys/fs/pipe-max-size``, 1 MiB by
    default, against 64 KiB) when ``f`` reads one: the writer and this reader then
    meet a sixteenth as often, and each read returns up to a MiB. Best effort: any
    refusal (another system, a user's pipe quota) leaves the pipe as it is."""
    try:
        import fcntl

        fd = f.fileno()  # type: ignore[attr-defined]
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        with open("/proc/sys/fs/pipe-max-size", "rb") as limit:
            size = min(size, int(limit.read()))
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (AttributeError, ImportError, OSError, ValueError):
        return


def steady_heap() -> None:
    """Keep the memory of freed ~1 MiB pieces in the heap for the next ones (glibc's
    ``mallopt``), instead of giving each back to the system and faulting fresh pages in
    for the next: a 1 GB stream read in 1 MiB pieces cost 320,000 page faults, a third
    of its time. Memory stays bounded: the same few pieces are reused. A no-op where
    there is no glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _rechunk(chunks: Iterable[bytes], size_wanted: int) -> Iterator[bytes]:
    """Yield the input in pieces of at least ``size_wanted``, then b"" as end-of-input."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= size_wanted:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)
    yield b""


def gunzip(chunks: Iterable[bytes], limit: int | Budget = GZIP_LIMIT) -> Iterator[bytes]:
    """Decompress (multi-member) gzip in bounded pieces; past ``limit`` (the input's
    :class:`~scanner.engine.layers.Budget`, shared by every layer nested in it) it is a
    bomb. A stream cut short or followed by garbage: what came out is yielded first,
    then one SourceError."""
    budget = _budget(limit)
    d = zlib.decompressobj(wbits=47)
    fed = False
    for chunk in chunks:
        data = chunk
        while data:
            fed = True
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise SourceError(f"not valid gzip: {exc}") from None
            budget.spend(len(out), "gzip")
            yield out
            if d.eof:
                data = d.unused_data.lstrip(b"\0")
                d, fed = zlib.decompressobj(wbits=47), False
            else:
                data = d.unconsumed_tail
    if fed and not d.eof:
        yield d.flush()  # what the cut member still holds
        raise SourceError("not valid gzip: the stream is truncated")


def _budget(limit: int | Budget) -> Budget:
    from scanner.engine.layers import Budget

    return Budget(limit) if isinstance(limit, int) else limit


@functools.cache
def _whole_inflater() -> tuple[Any, tuple[type[Exception], ...]]:
    """python-isal's zlib when it is installed: it inflates a whole gzip about twice as
    fast (an image's tens of thousands of small ``.gz`` files: 1.2 s of CPU with zlib,
    0.6 s with it). Only here: a whole member either inflates to its end or is None
    (then zlib reads it again in :func:`gunzip` and says what is wrong), and on that
    both agree byte for byte; their partial output and error texts differ, so the
    streamed and bounded-window inflaters stay on zlib. Imported on first use (the
    hook never needs it)."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib, (zlib.error,)
    isal_error: type[Exception] = isal_zlib.error  # type: ignore[assignment]  # (its stub)
    return isal_zlib, (zlib.error, isal_error)


def gunzip_whole(data: bytes, limit: int) -> bytes | None:
    """A small gzip (several members too, as :func:`gunzip` reads them) decompressed in
    one call per member: an image holds tens of thousands of ``.gz`` files, and a
    stream of pieces costs each one more than its inflating does. None when it is
    damaged, truncated or holds more than ``limit`` bytes: :func:`gunzip` then reads it
    and says so, or streams it."""
    inflater, errors = _whole_inflater()
    out: list[bytes] = []
    total = 0
    while data:
        d = inflater.decompressobj(wbits=47)
        try:
            piece = d.decompress(data, limit + 1 - total)
        except errors:
            return None
        total += len(piece)
        if total > limit or not d.eof:
            return None
        out.append(piece)
        data = d.unused_data.lstrip(b"\0")
    return b"".join(out)


def utf16_to_utf8(chunks: Iterable[bytes], kind: str) -> Iterator[bytes]:
    """Re-encode UTF-16 as UTF-8 so the detector and line counting see plain text."""
    decoder = codecs.getincrementaldecoder(kind)(errors="replace")
    first = True
    for chunk in chunks:
        text = decoder.decode(chunk)
        if first and text.startswith("\ufeff"):
            text = text[1:]
        first = first and not text
        yield text.encode("utf-8", "surrogatepass")
    yield decoder.decode(b"", final=True).encode("utf-8", "surrogatepass")
