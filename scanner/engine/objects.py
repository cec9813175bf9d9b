"""Scanning git objects: what a batch of objects from cat-file holds, each object
scanned once.

Scanning a history means scanning its unique blobs, not its patches: a blob that stays
the same for 1,000 commits is read once. The git source (:mod:`scanner.git.batch`)
hands objects over in regions of many objects, which are searched at once with the
detector's fixed strings, so the per-object cost is a header parse. Only objects where
a string matched (and gzip or UTF-16 ones, whose text the raw bytes hide) get the full,
located scan of :func:`~scanner.engine.scan_input.scan_input`, the same as a file on
disk. Objects too large to hold come as streams and are scanned in constant memory.
Findings have no path yet: where an object was written is only known once the history
is walked (:mod:`scanner.git.history`).
"""

from __future__ import annotations

import io
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

from scanner.engine.detect import Detector, Hit
from scanner.engine.inputs import SNIFF, kind_of
from scanner.engine.names import scan_names
from scanner.engine.scan_input import READ_WHOLE, Outcome, scan_input
from scanner.errors import GitError
from scanner.finding import Finding, SourceKind
from scanner.result import GZIP_LIMIT, ScanIssue, issue
from scanner.sources.origin import GitItem, Large, Missing, Origin, Readable

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
    walked (:mod:`scanner.git.history`). An annotated tag is read like a commit: its
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
    for i, hits in sorted(scan_names(detector, idents).items()):
        out += hit_findings(hits, whos[i])
    return out


def hit_findings(hits: Iterable[Hit], location: str) -> list[Finding]:
    """Findings in a git name (an identity, a path a commit wrote), placed later: the
    hits that are not suppressed inline."""
    return [Finding(rule_id=h.rule_id, confidence=h.confidence, path=None, line=None,
                    column=None, offset=h.offset, encoding=h.encoding, redacted=h.redacted,
                    secret_sha256=h.secret_sha256, source=SourceKind.GIT, location=location)
            for h in hits if not h.suppressed]


def scan_items(detector: Detector, items: Iterable[GitItem], batch: Batch | None = None
               ) -> Batch:
    """Scan what a git source hands over (regions, large objects, missing ones) into
    ``batch``: only objects with hits are kept."""
    batch = Batch() if batch is None else batch
    for item in items:
        if isinstance(item, Missing):
            batch.errors.append(ScanIssue("git", unreadable(item.name), item.name))
        elif isinstance(item, Large):
            batch.objects += 1
            batch.bytes += item.size
            _record(detector, item.content, item.size, item.kind, item.oid, batch)
        else:
            _scan_region(detector, item.buf, item.spans, batch)
    return batch


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


def _scan_region(detector: Detector, buf: bytearray,
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
    marked.update(bisect_right(starts, p) - 1 for p in detector.candidates(buf, lo, hi))
    for i in sorted(marked):
        oid, kind, s, e = spans[i]
        _record(detector, bytes(buf[s:e]), e - s, kind, oid, batch)
