"""Reading git objects with ``git cat-file --batch`` and scanning each one once.

Scanning a history means scanning its unique blobs, not its patches: a blob that stays
the same for 1,000 commits is read once. Objects are read in pack order, several
cat-file processes side by side for a large set (one per worker process), and searched
a region of many objects at a time with the detector's fixed strings, so the per-object
cost is a header parse. Only objects where a string matched (and gzip or UTF-16 ones,
whose text the raw bytes hide) get the full, located scan of :func:`scan_file`, the
same as a file on disk. Objects too large to hold are streamed in constant memory.
"""

from __future__ import annotations

import contextlib
import io
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from typing import IO, Any

from scanner.engine import pool as pools
from scanner.engine.detect import Detector
from scanner.engine.inputs import SNIFF, kind_of
from scanner.engine.names import scan_names
from scanner.engine.scan_input import READ_WHOLE, Origin, Outcome, Readable, issue, scan_input
from scanner.errors import GitError
from scanner.finding import Finding, SourceKind
from scanner.result import GZIP_LIMIT, PARALLEL_BYTES, ScanIssue
from scanner.rules import Rule
from scanner.sources import git

#: Objects up to this size are held whole; larger ones are streamed.
HOLD = 16 << 20
#: Objects are searched in regions of about this many bytes.
OBJECT_REGION = 4 << 20
#: The reader's buffer for a few objects (a hook's): zeroing two regions up front cost it
#: 6 ms. It grows as an object needs.
READ_FEW = 256 << 10
#: Ids up to this many bytes are written to cat-file without a thread (a pipe holds 64 KiB).
SMALL_WRITE = 32 << 10
_MAGIC = (0x1F, 0xFE, 0xFF, 0x50)  # first bytes of gzip, UTF-16 byte-order marks, zip


@dataclass(slots=True)
class Scanned:
    """What one object holds: findings without a path yet, and suppressed hits."""

    findings: list[Finding]
    suppressed: int = 0

    @property
    def secrets(self) -> set[str]:
        return {f.secret_sha256 for f in self.findings}


@dataclass(slots=True)
class Batch:
    """Results for a set of objects: only objects with hits are listed."""

    hits: dict[str, Scanned] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    errors: list[ScanIssue] = field(default_factory=list)

    def merge(self, other: Batch) -> None:
        self.hits.update(other.hits)
        self.objects += other.objects
        self.bytes += other.bytes
        self.errors += other.errors


def unreadable(oid: str) -> str:
    """The one message for an object git cannot give us, whatever the mode."""
    return f"object {oid}: missing or corrupt (git cannot read it); the scan is incomplete"


def scan_content(detector: Detector, content: bytes | Readable, size: int,
                 kind: str, gzip_limit: int = GZIP_LIMIT) -> Scanned:
    """The full scan of one object, by the engine, as a file is scanned. For a commit
    only the message is scanned, its lines counted from the subject line. Findings have
    no path yet: where the object was written is only known once the history is
    walked (:mod:`scanner.gitscan`). An annotated tag is read like a commit: its
    message, after the header. The identities in the header (author, committer,
    tagger) are content too."""
    identities: list[Finding] = []
    if kind in ("commit", "tag"):
        raw = content if isinstance(content, bytes) else content.read(-1)
        cut = raw.find(b"\n\n")
        content = raw[cut + 2:] if cut != -1 else b""
        size = len(content)
        identities = identity_findings(detector, raw[:cut] if cut != -1 else raw)
    f = io.BytesIO(content) if isinstance(content, bytes) else content
    outcome = Outcome()
    origin = Origin(None, None, SourceKind.GIT, size)
    scan_input(detector, f, origin, outcome, gzip_limit=gzip_limit,
               seekable=isinstance(content, bytes) and size <= READ_WHOLE)
    return Scanned(identities + outcome.findings, outcome.suppressed)


def identity_findings(detector: Detector, header: bytes) -> list[Finding]:
    """Tokens in a commit's author and committer (name and e-mail): published with
    the commit as surely as its message, so they are content too (``location`` says
    which)."""
    lines = [ln for ln in header.split(b"\n")
             if ln.startswith((b"author ", b"committer ", b"tagger "))]
    if not lines:
        return []
    whos = [ln.split(b" ", 1)[0].decode() for ln in lines]
    idents = [ln.split(b" ", 1)[1].rsplit(b">", 1)[0] + b">" for ln in lines]
    out = []
    found = scan_names(detector, idents)
    for i, hits in sorted(found.items()):
        who = whos[i]
        out += [Finding(rule_id=h.rule_id, confidence=h.confidence, path=None, line=None,
                        column=None, offset=h.offset, encoding=h.encoding,
                        redacted=h.redacted, secret_sha256=h.secret_sha256,
                        source=SourceKind.GIT, location=who)
                for h in hits if not h.suppressed]
    return out


class _Reader:
    """Parses ``cat-file --batch`` output: ``<oid> <type> <size>\n<content>\n``.

    Reads go straight into one buffer that is reused (``readinto`` on the raw pipe, no
    copy per read); the caller says from where on it still needs the bytes, and only
    that tail is moved to the front. A read never asks for more than the pipe holds, so
    the same cat-file process can be asked again afterwards.
    """

    def __init__(self, stream: IO[bytes], size: int = 2 * OBJECT_REGION):
        self.stream = stream
        self.buf = bytearray(size)
        self.end = 0  # bytes of buf that hold data

    def fill(self, keep: int) -> int:
        """Read more; bytes before ``keep`` may go. Returns how far offsets moved."""
        shift = 0
        if keep and (keep > len(self.buf) // 2 or self.end == len(self.buf)):
            self.buf[: self.end - keep] = self.buf[keep : self.end]
            self.end -= keep
            shift = keep
        if self.end == len(self.buf):
            self.buf.extend(bytes(len(self.buf)))
        with memoryview(self.buf)[self.end :] as free:
            got = self.stream.readinto(free)  # type: ignore[attr-defined]
        if not got:
            raise GitError("git cat-file stopped early")
        self.end += got
        return shift


class _Piece:
    """A file-like view of one large object as it comes out of the pipe."""

    def __init__(self, reader: _Reader, pos: int, size: int):
        self.reader = reader
        self.pos = pos
        self.left = size

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or what is left of the object (all of it if n < 0)."""
        want = self.left if n < 0 else min(n, self.left)
        self.left -= want
        parts = []
        while want:
            r = self.reader
            if self.pos == r.end:
                self.pos -= r.fill(self.pos)
            got = min(want, r.end - self.pos)
            parts.append(bytes(r.buf[self.pos : self.pos + got]))
            self.pos += got
            want -= got
        return b"".join(parts)

    def skip(self) -> None:
        while self.left:
            self.read(min(self.left, OBJECT_REGION))


def read_scan(detector: Detector, stream: IO[bytes], count: int) -> Batch:
    """Scan ``count`` objects from a cat-file stream (in the order they were asked).

    Whole objects are collected into a region of about OBJECT_REGION bytes, searched at once,
    and the buffer is then reused; an object larger than HOLD is streamed through.
    """
    batch = Batch()
    reader = _Reader(stream, READ_FEW if count <= 16 else 2 * OBJECT_REGION)
    needles = detector.literals()
    pos = 0  # next header
    spans: list[tuple[str, str, int, int]] = []
    while count:
        buf, end = reader.buf, reader.end
        nl = buf.find(b"\n", pos, end)
        if nl != -1:
            parts = bytes(buf[pos:nl]).split(b" ")
            if len(parts) != 3:
                name = git.display(parts[0])
                batch.errors.append(ScanIssue("git", unreadable(name), name))
                pos, count = nl + 1, count - 1
                continue
            oid, kind, size = parts[0].decode(), parts[1].decode(), int(parts[2])
            if size <= HOLD and nl + size + 2 <= end:
                spans.append((oid, kind, nl + 1, nl + 1 + size))
                pos, count = nl + size + 2, count - 1
                if pos - spans[0][2] < OBJECT_REGION and count:
                    continue
        if spans:  # a full region, the end, or an object that is not all here yet
            _scan_region(detector, needles, buf, spans, batch)
            spans = []
        if nl != -1 and size > HOLD and count:
            pos = _stream_object(detector, reader, oid, kind, nl + 1, size, batch)
            count -= 1
        elif count:
            pos -= reader.fill(pos)
    return batch


def _stream_object(detector: Detector, reader: _Reader, oid: str, kind: str, at: int,
                   size: int, batch: Batch) -> int:
    """Scan an object too large to hold, in constant memory; returns where the next
    header starts."""
    piece = _Piece(reader, at, size)
    batch.objects += 1
    batch.bytes += size
    _record(detector, piece, size, kind, oid, batch)
    piece.skip()  # whatever the scan left unread
    if piece.pos == reader.end:
        piece.pos -= reader.fill(piece.pos)
    return piece.pos + 1  # the newline after the content


def _record(detector: Detector, content: bytes | Readable, size: int, kind: str, oid: str,
            batch: Batch) -> None:
    """Scan one object into the batch; a blob that cannot be decoded (a broken gzip) is
    an error for that blob alone, and the scan goes on."""
    try:
        found = scan_content(detector, content, size, kind)
    except GitError:
        raise
    except Exception as exc:  # one bad object must not end the scan (reported, exit 2)
        batch.errors.append(issue(f"{kind} {oid}", exc))
        return
    if found.findings or found.suppressed:
        batch.hits[oid] = found


def _scan_region(detector: Detector, needles: list[bytes], buf: bytearray,
                 spans: list[tuple[str, str, int, int]], batch: Batch) -> None:
    """Find which objects of a region hold a needle; fully scan only those."""
    starts = [s for _, _, s, _ in spans]
    marked: set[int] = set()
    for i, (_, kind, s, e) in enumerate(spans):
        batch.objects += 1
        batch.bytes += e - s
        if kind in ("commit", "tag"):
            continue  # the needle search below covers messages too
        if e > s and (buf[s] in _MAGIC or buf.find(b"\0", s, min(e, s + SNIFF)) != -1):
            head = bytes(buf[s : min(e, s + SNIFF)])
            if kind_of(head) not in ("text", "binary"):
                marked.add(i)
    lo, hi = spans[0][2], spans[-1][3]
    if detector.prefilter is not None:  # one pass for all of them
        marked.update(bisect_right(starts, p) - 1 for p in detector.candidates(buf, lo, hi))
    else:
        for needle in needles:
            p = buf.find(needle, lo, hi)
            while p != -1:
                i = bisect_right(starts, p) - 1
                marked.add(i)
                p = buf.find(needle, spans[i][3], hi)
    for i in sorted(marked):
        oid, kind, s, e = spans[i]
        _record(detector, bytes(buf[s:e]), e - s, kind, oid, batch)


class CatFile:
    """One ``git cat-file --batch`` kept open, so that a scan can ask twice (the new
    blobs of a change, then the old ones where the new held a token) without starting
    git again."""

    def __init__(self, repo: str):
        import subprocess

        self.repo = repo
        self.proc = git.spawn(repo, [*git.PACK_LIMITS, "cat-file", "--batch"],
                              stdin=subprocess.PIPE)

    def scan(self, detector: Detector, oids: Sequence[str]) -> Batch:
        if not oids:
            return Batch()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = "".join(f"{oid}\n" for oid in oids).encode()
        writer = _writer(self.proc.stdin, data, close=False)
        try:
            return read_scan(detector, self.proc.stdout.raw, len(oids))  # type: ignore[attr-defined]
        except GitError:
            self.close()
            git.finish(self.proc, "cat-file")
            raise
        finally:
            if writer is not None:
                writer.join()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self.proc.wait()


def _writer(stdin: IO[bytes], data: bytes, *, close: bool) -> Any:
    """Feed cat-file its ids. What fits in the pipe is written at once (a hook asks for
    a few ids: no thread to start); more is written by a thread while the caller reads,
    or cat-file and this process would each wait for the other."""
    if len(data) <= SMALL_WRITE:
        _write(stdin, data, close)
        return None
    import threading

    writer = threading.Thread(target=_write, args=(stdin, data, close))
    writer.start()
    return writer


def _write(stdin: IO[bytes], data: bytes, close: bool) -> None:
    try:
        stdin.write(data)
        stdin.flush()
        if close:
            stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # git stopped: its message is read by the other side


def _scan_share(repo: str, rules: list[Rule], oids: bytes) -> Batch:
    """A worker's share: its own cat-file over a contiguous run of the pack order.
    Self-contained (the rules travel with it), so it runs in any process pool."""
    import subprocess

    detector = Detector(rules)
    proc = git.spawn(repo, [*git.PACK_LIMITS, "cat-file", "--batch"], stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    writer = _writer(proc.stdin, oids, close=True)
    try:
        batch = read_scan(detector, proc.stdout.raw, oids.count(b"\n"))  # type: ignore[attr-defined]
    except GitError as exc:
        batch = Batch(errors=[issue("git cat-file", exc)])
    if writer is not None:
        writer.join()
    proc.stdout.close()
    try:
        git.finish(proc, "cat-file")
    except GitError as exc:
        batch.errors = [issue("git cat-file", exc)]  # git's own words say more
    return batch


def _shares(objs: git.Objects, parts: int) -> Iterator[bytes]:
    """Contiguous runs of about equal bytes: pack order keeps delta chains together."""
    step = sum(objs.sizes) / parts + 1
    lo, size = 0, 0
    for i, n in enumerate(objs.sizes):
        size += n
        if size >= step:
            yield objs.lines(lo, i + 1)
            lo, size = i + 1, 0
    if lo < len(objs):
        yield objs.lines(lo, len(objs))


def scan_objects(repo: str, rules: list[Rule], objs: git.Objects, jobs: int = 0,
                 executor: Executor | None = None, threshold: int = PARALLEL_BYTES) -> Batch:
    """Scan every object in ``objs`` once, in worker processes when there is enough."""
    if executor is None and not pools.worth_it(jobs, sum(objs.sizes), threshold):
        reader = CatFile(repo)
        try:
            return reader.scan(Detector(rules), objs.ids.decode().split())
        finally:
            reader.close()
    batch = Batch()
    workers = pools.worker_count(jobs)
    # Four shares per worker balance the load; but no share smaller than a region, so a
    # small set does not start a cat-file per handful of objects.
    parts = max(workers, min(workers * 4, sum(objs.sizes) // OBJECT_REGION))
    with pools.executor(jobs, executor) as pool:
        futures = [pool.submit(_scan_share, repo, rules, share)
                   for share in _shares(objs, parts)]
        for future in as_completed(futures):
            batch.merge(future.result())
    return batch
