"""The one parser of ``git cat-file --batch`` output: ``<id> <type> <size>\\n<content>\\n``
per object asked, or ``<name> missing\\n`` (or ``ambiguous``) for one git cannot give.

Two ways to read it, one format: :func:`entries` splits output already in memory (a
hook's few blobs, a handful of tags); :func:`items` reads a stream of any length in
constant memory, handing over regions of many small objects at once (one search covers
them all) and large objects as streams. Standard library only: the hook's fast path
(:mod:`scanner.cli.fast_staged`) uses :func:`entries`.
"""

from __future__ import annotations

from scanner.errors import GitError

TYPE_CHECKING = False  # not typing's: the hook's fast path does not import typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO

    from scanner.sources.origin import GitItem

#: Objects up to this size are held whole; larger ones are streamed.
HOLD = 16 << 20
#: Objects are handed over in regions of about this many bytes.
OBJECT_REGION = 4 << 20
#: The reader's buffer for a few objects (a hook's): zeroing two regions up front cost it
#: 6 ms. It grows as an object needs.
READ_FEW = 256 << 10

def entries(out: bytes) -> Iterator[tuple[bytes, bytes | None, bytes]]:
    """Every object of a whole ``--batch`` answer, in the order asked: (id, type,
    content), or (name, None, b"") for one git cannot give. Stops at a truncated one."""
    pos = 0
    while pos < len(out):
        nl = out.find(b"\n", pos)
        if nl == -1:
            return
        parts = out[pos:nl].split(b" ")
        if len(parts) != 3 or not parts[2].isdigit():
            yield parts[0], None, b""
            pos = nl + 1
            continue
        size = int(parts[2])
        if nl + 1 + size > len(out):
            return
        yield parts[0], parts[1], out[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1


def checked(out: bytes, count: int) -> list[tuple[str, str] | None]:
    """The lines of a ``--batch-check=%(objectname) %(objecttype)`` answer: (id, type)
    per name asked, None where git has none."""
    answers = iter(out.decode("utf-8", "replace").splitlines())
    found: list[tuple[str, str] | None] = []
    for _ in range(count):
        parts = next(answers, "").split(" ")
        found.append((parts[0], parts[1]) if len(parts) == 2 and parts[1] != "missing"
                     else None)
    return found


class Reader:
    """Reads a ``--batch`` stream into one buffer that is reused (``readinto`` on the
    raw pipe, no copy per read); the caller says from where on it still needs the bytes,
    and only that tail is moved to the front. A read never asks for more than the pipe
    holds, so the same cat-file process can be asked again afterwards.
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


class Piece:
    """A file-like view of one large object as it comes out of the pipe.

    If git stops early, the reader of the piece sees the object end there and
    :func:`items` raises the error once the piece is handed back, so the code that
    runs git can add git's own message."""

    def __init__(self, reader: Reader, pos: int, size: int):
        self.reader = reader
        self.pos = pos
        self.left = size
        self.failed: GitError | None = None

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or what is left of the object (all of it if n < 0)."""
        want = self.left if n < 0 else min(n, self.left)
        self.left -= want
        parts = []
        while want:
            r = self.reader
            if self.pos == r.end:
                try:
                    self.pos -= r.fill(self.pos)
                except GitError as exc:
                    self.failed, self.left = exc, 0
                    break
            got = min(want, r.end - self.pos)
            parts.append(bytes(r.buf[self.pos : self.pos + got]))
            self.pos += got
            want -= got
        return b"".join(parts)

    def skip(self) -> None:
        while self.left:
            self.read(min(self.left, OBJECT_REGION))


def items(stream: IO[bytes], count: int) -> Iterator[GitItem]:
    """``count`` objects from a ``--batch`` stream, in the order they were asked.

    Whole objects are collected into a :class:`Region` of about OBJECT_REGION bytes and
    handed over together; the buffer is reused once the caller asks for more. An object
    larger than HOLD is handed over as a stream (:class:`Large`), and what the caller
    leaves of it is skipped here.
    """
    from scanner.sources.origin import Large, Missing, Region  # not for the fast path

    reader = Reader(stream, READ_FEW if count <= 16 else 2 * OBJECT_REGION)
    pos = 0  # next header
    spans: list[tuple[str, str, int, int]] = []
    while count:
        buf, end = reader.buf, reader.end
        nl = buf.find(b"\n", pos, end)
        if nl != -1:
            parts = bytes(buf[pos:nl]).split(b" ")
            if len(parts) != 3:
                yield Missing(parts[0].decode("utf-8", "backslashreplace"))
                pos, count = nl + 1, count - 1
                continue
            oid, kind, size = parts[0].decode(), parts[1].decode(), int(parts[2])
            if size <= HOLD and nl + size + 2 <= end:
                spans.append((oid, kind, nl + 1, nl + 1 + size))
                pos, count = nl + size + 2, count - 1
                if pos - spans[0][2] < OBJECT_REGION and count:
                    continue
        if spans:  # a full region, the end, or an object that is not all here yet
            yield Region(buf, spans)
            spans = []
        if nl != -1 and size > HOLD and count:
            piece = Piece(reader, nl + 1, size)
            yield Large(oid, kind, size, piece)
            piece.skip()  # whatever the caller left unread
            if piece.failed is not None:
                raise piece.failed
            if piece.pos == reader.end:
                piece.pos -= reader.fill(piece.pos)
            pos = piece.pos + 1  # the newline after the content
            count -= 1
        elif count:
            pos -= reader.fill(pos)
