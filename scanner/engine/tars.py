"""Tar archives: ``.tar``, and inside gzip, bzip2, xz or zstd (``.tgz``, ``.tar.xz``…),
npm packages, sdists, Helm charts, backups and the layers of container images.

Each member is scanned as an input of its own and reported as ``ARCHIVE!member/path``.
The headers are parsed here (ustar, GNU long names, pax ``path``/``size``) rather than
by :mod:`tarfile`, whose stream mode reads a 1 GB image at ~170 MB/s; this reader goes
through a tar once, member by member, in constant memory, and never writes anything:
a name (``../../etc/passwd``) is only a name. Links are not followed: a symlink points
at a name (scanned where it is), a hard link's bytes are its target's, already scanned
under the target's name; devices and FIFOs have no bytes. Whiteouts (``.wh.NAME``,
``.wh..wh..opq``: a layer deleting a file of a layer below) are recorded in
:attr:`Outcome.whiteouts` for the image reader (:mod:`scanner.engine.images`).

Small plain members are searched together (one literal pass per REGION of them), and
only a member where a literal is gets the full scan: an image is tens of thousands of
files that hold no token. Bounds: members per tar (:data:`MAX_MEMBERS`; a tar of a
million empty members is one error line after a fraction of a second), header metadata
(:data:`META_MAX`), and the decompressed size of whatever stream the tar came out of
(the gzip/bzip2/xz/zstd bound); a tar read straight from a file expands nothing.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from scanner.engine.marks import marked
from scanner.engine.unpack import BLOCK, header_ok, number
from scanner.errors import SourceError
from scanner.result import issue

if TYPE_CHECKING:
    from scanner.engine.detect import Detector
    from scanner.sources.origin import Origin

_ZERO = bytes(BLOCK)
#: Entries read per tar before it is an error (the rest unscanned). Higher than a zip's
#: bound: a tar's members are streamed (nothing is held per member) and an image layer
#: of /usr holds 50,000 files; a million empty members still end in under a second.
MAX_MEMBERS = 200_000
#: A GNU long name or a pax header larger than this is not a tar we can trust.
META_MAX = 1 << 20
#: Members up to this size are read whole (the rest streamed).
WHOLE = 4 << 20
#: Small plain members are searched together, this many bytes at a time.
REGION = 8 << 20
#: Read in pieces of this size when a member is streamed.
CHUNK = 1 << 20
#: A mapped tar's pages are given back this often, so a 1 GB image is not 1 GB of RSS.
RELEASE = 64 << 20
#: A mapped tar at least this large is split across worker processes (when the caller
#: has them: :mod:`scanner.engine.tar_parts`).
SPLIT_MIN = 64 << 20
#: Small JSON members kept for the image reader (manifests, configs, indexes).
KEEP_ONE, KEEP_ALL = 1 << 20, 16 << 20

_FILE, _HARDLINK, _SYMLINK, _DIR = b"07\0S", b"1", b"2", b"5"


class Source(Protocol):
    """Where a tar's bytes come from: a mapped file or a stream of chunks. ``pos`` is
    the offset of the next byte, from the start of the tar."""

    pos: int

    def read(self, n: int) -> bytes: ...
    def skip(self, n: int) -> None: ...
    def chunks(self, n: int) -> Iterator[bytes]: ...


class Broken(SourceError):
    """The stream a tar comes out of failed (a gzip bomb, a truncated file): that ends
    the whole tar, with one error for it rather than one per member."""


class Mapped:
    """A byte range of a mapped file (an uncompressed tar, or a layer inside one)."""

    def __init__(self, mm: mmap.mmap | bytes, start: int, end: int):
        self.mm, self.base, self.pos, self.end = mm, start, 0, end - start
        self.released = start  # pages before this are given back (constant memory)

    def read(self, n: int) -> bytes:
        at = self.base + self.pos
        out = self.mm[at : at + min(n, self.end - self.pos)]
        self.pos += len(out)
        if at - self.released >= RELEASE and isinstance(self.mm, mmap.mmap):
            self.released = at & ~(mmap.PAGESIZE - 1)
            self.mm.madvise(mmap.MADV_DONTNEED, 0, self.released)
        return bytes(out)

    def skip(self, n: int) -> None:
        self.pos += min(n, self.end - self.pos)

    def at(self) -> int:
        """The offset of the next byte in :attr:`mm` (a member's data is searched in
        place there, not copied)."""
        return self.base + self.pos

    def chunks(self, n: int) -> Iterator[bytes]:
        stop = min(self.end, self.pos + n)
        while self.pos < stop:
            yield self.read(min(CHUNK, stop - self.pos))


class Streamed:
    """A stream of chunks (a decompressor's output, a pipe), read once."""

    def __init__(self, chunks: Iterable[bytes]):
        self.it = iter(chunks)
        self.buf, self.at, self.pos = b"", 0, 0

    def _next(self) -> bytes | None:
        try:
            return next(self.it, None)
        except SourceError as exc:
            raise Broken(str(exc)) from None

    def read(self, n: int) -> bytes:
        have = len(self.buf) - self.at
        if have >= n:
            out = self.buf[self.at : self.at + n]
            self.at += n
        else:
            parts = [self.buf[self.at :]]
            while have < n:
                chunk = self._next()
                if chunk is None:
                    break
                parts.append(chunk)
                have += len(chunk)
            data = b"".join(parts)
            out, self.buf, self.at = data[:n], data, min(n, len(data))
        self.pos += len(out)
        return out

    def skip(self, n: int) -> None:
        for _ in self.chunks(n):
            pass

    def chunks(self, n: int) -> Iterator[bytes]:
        while n > 0:
            if self.at >= len(self.buf):
                chunk = self._next()
                if chunk is None:
                    return
                self.buf, self.at = chunk, 0
            out = self.buf[self.at : self.at + n]
            self.at += len(out)
            self.pos += len(out)
            n -= len(out)
            yield out


@dataclass(slots=True)
class Entry:
    name: str
    type: bytes
    size: int
    pos: int  # offset of its data in the source
    link: str = ""  # a symlink's or hard link's target (a name: content, like the name)


def _pax(data: bytes) -> dict[str, bytes]:
    """``LEN key=value\\n`` records; only ``path``, ``linkpath`` and ``size`` matter
    here."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space == -1:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("ascii", "replace")] = value
        pos += length
    return out


def _name(raw: bytes) -> str:
    name = raw.decode("utf-8", "surrogateescape")
    while name.startswith("./"):
        name = name[2:]
    return name


def entries(src: Source) -> Iterator[Entry]:
    """Each entry of a tar in order. The caller reads as much of an entry's data as it
    wants before asking for the next; the rest is skipped here."""
    long_name: bytes | None = None
    long_link: bytes | None = None
    pax: dict[str, bytes] = {}
    while True:
        block = src.read(BLOCK)
        if len(block) < BLOCK:
            if block.strip(b"\0"):
                raise SourceError("tar is truncated (a header is cut short)")
            return
        if block == _ZERO:
            return
        if not header_ok(block):
            raise SourceError(f"not a valid tar header at byte {src.pos - BLOCK}; not "
                              "read further")
        size = number(block[124:136]) or 0
        kind = block[156:157]
        padded = -size % BLOCK
        if kind in (b"L", b"K", b"x", b"g"):
            if size > META_MAX:
                raise SourceError(f"tar metadata of {size} bytes at byte {src.pos - BLOCK}; "
                                  "not read further")
            data = src.read(size)
            src.skip(padded)
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0]
            elif kind == b"K":
                long_link = data.split(b"\0", 1)[0]
            elif kind == b"x":
                pax = _pax(data)
            continue
        raw = block[:100].split(b"\0", 1)[0]
        if block[257:263] == b"ustar\x00":  # POSIX: a prefix for long names
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                raw = prefix + b"/" + raw
        raw = pax.get("path", long_name or raw)
        link = pax.get("linkpath", long_link or block[157:257].split(b"\0", 1)[0])
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise SourceError("tar has a bad pax size; not read further") from None
            padded = -size % BLOCK
        start = src.pos
        yield Entry(_name(raw), kind, size, start,
                    link.decode("utf-8", "surrogateescape") if kind in b"12" and kind else "")
        src.skip(size - (src.pos - start) + padded)
        if src.pos < start + size:  # a header claiming more bytes than there are
            raise SourceError(f"tar is truncated (a member claims {size} bytes; the "
                              f"tar ends {size - (src.pos - start)} bytes short of it)")
        long_name, long_link, pax = None, None, {}


def whiteout(name: str) -> str | None:
    """What a whiteout entry deletes: ``dir/.wh.x`` -> ``dir/x``; an opaque
    ``dir/.wh..wh..opq`` -> ``dir/`` (everything below it from lower layers)."""
    folder, _, base = name.rstrip("/").rpartition("/")
    if not base.startswith(".wh."):
        return None
    lead = folder + "/" if folder else ""
    if base == ".wh..wh..opq":
        return lead or "/"
    return lead + base[4:]


def member_path(path: str | None, name: str) -> str:
    return f"{path or '-'}!{name}"


@dataclass(slots=True)
class Members:
    """What the caller (``scan_input``) lends the tar reader: full scans of one member,
    held whole or streamed, each an input of its own one layer deeper."""

    detector: Detector
    held: Callable[[bytes, Origin], None]
    streamed: Callable[[Iterator[bytes], Origin], None]
    kind_of: Callable[[bytes], str]
    #: A small gzip member's whole content, or None (too large, damaged: then it goes
    #: through :attr:`held`, which says what is wrong).
    gunzip: Callable[[bytes], bytes | None] | None = None
    #: A tar member that is itself a plain tar (an image's layer), scanned in place
    #: from the mapping (else it is streamed: copied a piece at a time).
    nested: Callable[[Mapped, Origin], None] | None = None
    #: The splitter of a large mapped tar (:class:`scanner.engine.tar_parts.Parts`):
    #: its file members go to worker processes.
    split: Callable[[Mapped, Origin, Any, Members], Splitter] | None = None


class Splitter(Protocol):
    """Takes a split tar's file members in order; :meth:`finish` merges what the
    workers made and returns the kept JSON members. ``failure``: the tar's own error,
    said after its members'."""

    failure: Any

    def add(self, entry: Entry) -> None: ...
    def finish(self) -> list[tuple[str, bytes]]: ...


def scan_tar(src: Source, origin: Origin, outcome: Any, members: Members
             ) -> dict[str, bytes]:
    """Scan every member of the tar in ``src``; return the small JSON members kept for
    the image reader (``manifest.json``, ``index.json``, configs). A failure of the tar
    itself (a bad header, the stream it comes out of) is one error for the tar, and
    what was read before it stays scanned.

    A large mapped tar with :attr:`Members.split` is read here only for its headers
    (names, whiteouts, the bounds); its members go to worker processes in parts of
    about PART bytes, and their outcomes are merged back in order (a member that is
    itself a large tar, an image's layer, is read here and split in turn)."""
    from scanner.engine.names import member_names

    names: list[tuple[str, str]] = []
    links: list[tuple[str, str, str]] = []  # (display, fingerprint path, target)
    folders: set[str] = set()
    gone: list[str] = []
    count = 0
    split = members.split if (isinstance(src, Mapped) and src.end >= SPLIT_MIN
                              and members.detector.prefilter is not None) else None
    walk = Walk(src, origin, outcome, members)
    parts = split(src, origin, outcome, members) if (split is not None
                                                     and isinstance(src, Mapped)) else None
    try:
        for entry in entries(src):
            count += 1
            if count > MAX_MEMBERS:
                raise SourceError(f"tar holds more than {MAX_MEMBERS} members; only the "
                                  f"first {MAX_MEMBERS} scanned")
            names += member_names(origin.path or "-",
                                  origin.fingerprint_path or origin.path or "-", entry.name,
                                  folders)
            if entry.link:
                links.append((member_path(origin.path, entry.name),
                              member_path(origin.fingerprint_path or origin.path,
                                          entry.name), entry.link))
            deleted = whiteout(entry.name)
            if deleted is not None:
                gone.append(deleted)
                continue
            if entry.type not in _FILE or not entry.type:
                continue  # links, directories, devices: no bytes of their own
            if parts is not None:
                parts.add(entry)
            else:
                walk.add(entry)
    except SourceError as exc:
        if parts is None:
            outcome.errors.append(issue(origin.path or "-", exc))
        else:
            parts.failure = issue(origin.path or "-", exc)
    kept = parts.finish() if parts is not None else walk.finish()
    _name_findings(members.detector, names, outcome)
    _link_findings(members.detector, links, origin, outcome)
    if gone:
        outcome.whiteouts[origin.path or "-"] = gone
    return dict(kept)


class Walk:
    """The members of one tar with bytes of their own, as :func:`scan_tar` reads them:
    small plain ones searched together (in place when mapped), the rest scanned one by
    one."""

    def __init__(self, src: Source, origin: Origin, outcome: Any, members: Members):
        self.src, self.origin, self.outcome, self.members = src, origin, outcome, members
        self.detector = members.detector
        self.held: list[tuple[bytes, bytes, Entry]] = []  # (bytes to search, member, entry)
        self.size = 0
        self.kept: list[tuple[str, bytes]] = []
        self.kept_size = 0
        self.prefilter = self.detector.prefilter is not None
        self.span = Span(src) if self.prefilter and isinstance(src, Mapped) else None
        self.inflated = False  # a gzip member's inflated text is held

    def add(self, entry: Entry) -> None:
        src, origin, outcome, members = self.src, self.origin, self.outcome, self.members
        detector, span = self.detector, self.span
        if entry.size > WHOLE:
            if (span is not None and members.nested is not None
                    and members.kind_of(span.head(entry.size)) == "tar"):
                span.flush(detector, members, origin, outcome)
                guard(members.nested, span.member(entry.size),
                       sub_origin(origin, entry), outcome)
                return
            self._paid()
            guard(members.streamed, src.chunks(entry.size),
                   sub_origin(origin, entry), outcome)
            return
        if span is not None:  # a mapped tar: plain members are searched in place
            head = span.head(entry.size)
            if members.kind_of(head) in ("text", "binary"):
                if (head[:1] in (b"{", b"[") and entry.size <= KEEP_ONE
                        and self.kept_size < KEEP_ALL and _maybe_image_json(entry.name)):
                    self.kept.append((entry.name, span.data(entry.size)))
                    self.kept_size += entry.size
                span.add(entry, detector, members, origin, outcome)
                return
        data = src.read(entry.size)
        if len(data) < entry.size:  # what there is is scanned, then the tar ends
            guard(members.held, data, sub_origin(origin, entry), outcome)
            raise SourceError("tar is truncated (a member is cut short)")
        if (len(data) <= KEEP_ONE and data[:1] in (b"{", b"[") and self.kept_size < KEEP_ALL
                and _maybe_image_json(entry.name)):
            self.kept.append((entry.name, data))
            self.kept_size += len(data)
        kind = members.kind_of(data[:8192]) if self.prefilter else ""
        searched: bytes | None = data if kind in ("text", "binary") else None
        if kind == "gzip" and members.gunzip is not None:
            plain = members.gunzip(data)  # its text searched with the others
            if plain is not None and members.kind_of(plain[:8192]) in ("text", "binary"):
                searched, self.inflated = plain, True
        if searched is not None:
            self.held.append((searched, data, entry))
            self.size += len(searched) + 1
            if self.size >= REGION:
                _search_held(detector, self.held, origin, members, outcome)
                self.held, self.size, self.inflated = [], 0, False
        else:
            self._paid()
            guard(members.held, data, sub_origin(origin, entry), outcome)

    def _paid(self) -> None:
        """Held gzip members (inflated once to be searched, and again if marked) are
        scanned before a member that may spend the rest of the input's decompressed
        budget: a bomb after them does not cost them their findings."""
        if self.inflated:
            _search_held(self.detector, self.held, self.origin, self.members, self.outcome)
            self.held, self.size, self.inflated = [], 0, False

    def finish(self) -> list[tuple[str, bytes]]:
        """Search what is still held; the kept JSON members, in order."""
        if self.span is not None:
            self.span.flush(self.detector, self.members, self.origin, self.outcome)
        if self.held:
            _search_held(self.detector, self.held, self.origin, self.members, self.outcome)
            self.held, self.size = [], 0
        return self.kept


class Span:
    """Consecutive plain members of a mapped tar, searched in place with one literal
    pass (headers and padding between them included: a literal there marks nothing);
    only a member where a literal lies gets the full scan, read then."""

    #: A gap (a compressed or large member) longer than this ends the span first.
    GAP = 256 << 10

    def __init__(self, src: Mapped):
        self.src = src
        self.starts: list[int] = []
        self.members: list[tuple[int, Entry]] = []  # (end of its data, entry)
        self.lo = self.hi = 0

    def head(self, size: int) -> bytes:
        at = self.src.at()
        return self.src.mm[at : at + min(size, 8192)]

    def member(self, size: int) -> Mapped:
        """The next member's bytes as a tar source of their own, in the same mapping."""
        at = self.src.at()
        if at + size > self.src.base + self.src.end:
            raise SourceError("tar is truncated (a member is cut short)")
        return Mapped(self.src.mm, at, at + size)

    def data(self, size: int) -> bytes:
        at = self.src.at()
        return bytes(self.src.mm[at : at + size])

    def add(self, entry: Entry, detector: Detector, members: Members, origin: Origin,
            outcome: Any) -> None:
        at = self.src.at()
        if at + entry.size > self.src.base + self.src.end:  # what there is is scanned
            self.flush(detector, members, origin, outcome)
            data = bytes(self.src.mm[at : self.src.base + self.src.end])
            guard(members.held, data, sub_origin(origin, entry), outcome)
            raise SourceError("tar is truncated (a member is cut short)")
        if self.members and (at - self.hi > self.GAP or self.hi - self.lo >= REGION):
            self.flush(detector, members, origin, outcome)
        if not self.members:
            self.lo = at
        self.starts.append(at)
        self.members.append((at + entry.size, entry))
        self.hi = at + entry.size

    def flush(self, detector: Detector, members: Members, origin: Origin, outcome: Any
              ) -> None:
        if not self.members:
            return
        ends = [end for end, _ in self.members]
        for i in sorted(marked(detector, self.src.mm, self.lo, self.hi, self.starts, ends)):
            end, entry = self.members[i]
            data = bytes(self.src.mm[self.starts[i] : end])
            guard(members.held, data, sub_origin(origin, entry), outcome)
        self.starts, self.members = [], []


def _sub_paths(origin: Origin, entry: Entry) -> tuple[str, str | None]:
    """A member's display path and fingerprint path."""
    fp = origin.fingerprint_path
    return (member_path(origin.path, entry.name),
            None if fp is None else member_path(fp, entry.name))


def sub_origin(origin: Origin, entry: Entry) -> Origin:
    """A member's origin, made only for a member that is scanned in full (most of an
    image's are searched and never need one)."""
    path, fp = _sub_paths(origin, entry)
    return replace(origin, path=path, fingerprint_path=fp, size=entry.size, start=0,
                   end=None)


def _maybe_image_json(name: str) -> bool:
    return (name in ("manifest.json", "index.json", "repositories")
            or name.endswith(".json") or name.startswith("blobs/"))


def guard(scan: Callable[[Any, Origin], None], data: Any, sub: Origin, outcome: Any
           ) -> None:
    """One member's failure (a corrupt gzip inside, a bomb) is an error for that member;
    the tar goes on. A failure of the tar's own stream ends the tar."""
    try:
        scan(data, sub)
    except Broken:
        raise
    except (SourceError, OSError, EOFError, ValueError, RuntimeError) as exc:
        if not getattr(exc, "quiet", False):  # (quiet: the input's budget, said already)
            outcome.errors.append(issue(sub.path or "-", exc))


def _search_held(detector: Detector, held: list[tuple[bytes, bytes, Entry]], origin: Origin,
                 members: Members, outcome: Any) -> None:
    """One literal pass over many small members (a gzipped one as its content); a full
    scan only where a literal is."""
    starts, ends, pos = [], [], 0
    for searched, _, _ in held:
        starts.append(pos)
        ends.append(pos + len(searched))
        pos += len(searched) + 1
    region = b"\n".join(searched for searched, _, _ in held)
    for i in sorted(marked(detector, region, 0, len(region), starts, ends)):
        _, data, entry = held[i]
        guard(members.held, data, sub_origin(origin, entry), outcome)


def _name_findings(detector: Detector, names: list[tuple[str, str]], outcome: Any) -> None:
    """Member names are content too (``notes-cendis_pat_….txt`` in a tar)."""
    if not names:
        return
    from scanner.engine.names import path_findings

    found, suppressed, _ = path_findings(detector, names)
    outcome.findings += found
    outcome.suppressed += suppressed


def _link_findings(detector: Detector, links: list[tuple[str, str, str]], origin: Origin,
                   outcome: Any) -> None:
    """A link's target is a name written into the tar (``ln -s cendis_pat_… x``): as
    leaked as a member's name. Reported at the link member, ``location`` ``link``."""
    if not links:
        return
    from scanner.engine.names import scan_names
    from scanner.finding import Finding

    found = scan_names(detector, [target for _, _, target in links])
    for i, hits in sorted(found.items()):
        display, fp, _ = links[i]
        for hit in hits:
            if hit.suppressed:
                outcome.suppressed += 1
                continue
            outcome.findings.append(Finding(
                rule_id=hit.rule_id, confidence=hit.confidence, path=display,
                line=None, column=None, offset=hit.offset, encoding=hit.encoding,
                redacted=hit.redacted, secret_sha256=hit.secret_sha256,
                source=origin.source, location="link", fingerprint_path=fp))
