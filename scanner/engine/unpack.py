"""Compression layers besides gzip: bzip2, xz and zstd, found by their magic numbers;
and what a tar's first block looks like (sniffing, which needs no tar reader).

``.tar.bz2``, ``.tar.xz`` and image layers compressed with zstd are streams like a
``.gz``: each is decompressed here in bounded pieces and the result is sniffed again
(usually a tar). The bound is the same as gzip's (``--max-decompressed``), counted on
what comes out, so a bomb is one error line, never a full disk or memory. zstd needs
the optional ``zstandard`` module; without it such a stream is one error line saying
so, and the rest of the scan goes on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from scanner.errors import SourceError

#: A tar's header (and data) block.
BLOCK = 512
#: Bytes asked of a decompressor at a time (its output, so memory stays bounded).
STEP = 1 << 20
#: Magic numbers: (kind, prefix).
MAGIC = (
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)


def compression_of(head: bytes) -> str | None:
    """``bzip2``, ``xz`` or ``zstd`` when ``head`` starts such a stream."""
    for kind, magic in MAGIC:
        if head.startswith(magic):
            # bzip2's magic is three letters: a block-size digit and the block magic
            # (the digits of pi) must follow, so a text file starting "BZh" stays text.
            if kind == "bzip2" and not (head[3:4].isdigit() and head[4:10] in (
                    b"1AY&SY", b"\x17rE8P\x90")):
                continue
            return kind
    return None


def number(field: bytes) -> int | None:
    """An octal header field, or GNU base-256 (first byte 0x80) for large values."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def header_ok(block: bytes) -> bool:
    """A tar header block: its checksum (the byte sum with the checksum field as
    spaces) matches. What sniffing calls a tar; a zero block is not one."""
    if len(block) < BLOCK or (block[0] == 0 and block.count(0) == len(block)):
        return False
    stored = number(block[148:156])
    if stored is None:
        return False
    # The byte sum of each half from adler32 (its low 16 bits are 1 + the sum, exact for
    # 256 bytes: at most 65,280 < 65,521): 5x faster than sum(), once per member.
    total = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:BLOCK]) & 0xFFFF) - 2
    return stored == total - sum(block[148:156]) + 256


class _Chunks:
    """A read()-able view of an iterable of chunks (what the decompressors read)."""

    def __init__(self, chunks: Iterable[bytes]):
        self.it, self.buf, self.at = iter(chunks), b"", 0

    def read(self, n: int = -1, /) -> bytes:
        while self.at >= len(self.buf):
            chunk = next(self.it, None)
            if chunk is None:
                return b""
            self.buf, self.at = chunk, 0
        if n < 0:
            n = len(self.buf) - self.at
        out = self.buf[self.at : self.at + n]  # a short read: the readers ask again
        self.at += len(out)
        return out

    def readable(self) -> bool:
        return True


def _zstd_reader(raw: _Chunks) -> Any:
    try:
        import zstandard
    except ImportError:
        raise SourceError("zstd-compressed: not scanned (install the optional zstandard "
                          "module: pip install 'cendis-scan[zstd]')") from None
    return zstandard.ZstdDecompressor().stream_reader(
        raw, read_across_frames=True)  # type: ignore[arg-type]


def decompress(kind: str, chunks: Iterable[bytes], limit: Any) -> Iterator[bytes]:
    """The decompressed stream (several concatenated streams too, as ``bzip2 -c a b``
    and ``xz`` write them) in pieces of at most STEP; past ``limit`` (the input's
    :class:`~scanner.engine.layers.Budget`, or a byte count) it is a bomb: one
    SourceError, and nothing more is read. A stream cut short: what came out first,
    then one SourceError saying so (zstd's reader ends quietly there: its frames are
    walked alongside, :class:`_Frames`)."""
    from scanner.engine.layers import Budget

    budget = Budget(limit) if isinstance(limit, int) else limit
    if kind != "zstd":
        yield from _incremental(kind, chunks, budget)
        return
    frames = _Frames(chunks)
    reader = _zstd_reader(_Chunks(frames))
    while True:
        try:
            out = reader.read(STEP)
        except SourceError:
            raise
        except Exception as exc:  # ZstdError
            raise SourceError(f"not valid {kind}: {exc}") from None
        if not out:
            if frames.cut():
                raise SourceError(f"{kind} stream is truncated")
            return
        budget.spend(len(out), kind)
        yield out


def _incremental(kind: str, chunks: Iterable[bytes], budget: Any) -> Iterator[bytes]:
    """bzip2 or xz through the decompressor objects, not the file readers: those lose
    the last piece they decompressed when the stream turns out to be cut short."""
    import bz2
    import lzma

    def make() -> Any:
        return bz2.BZ2Decompressor() if kind == "bzip2" else lzma.LZMADecompressor()

    d, fed = make(), False
    for chunk in chunks:
        data = chunk
        while data or not d.needs_input:
            try:
                out = d.decompress(data, STEP)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise SourceError(f"not valid {kind}: {exc}") from None
            data, fed = b"", True
            if out:
                budget.spend(len(out), kind)
                yield out
            if d.eof:  # the next stream (xz pads between them with zeros)
                data = d.unused_data.lstrip(b"\0") if kind == "xz" else d.unused_data
                d, fed = make(), False
    if fed and not d.eof:
        raise SourceError(f"{kind} stream is truncated")


class _Frames:
    """The chunks of a zstd stream, passed on unchanged while its frames are walked
    (magic, header, block headers: a few bytes per 128 KiB block), so that a stream
    cut inside a frame is known at its end."""

    def __init__(self, chunks: Iterable[bytes]):
        self.it = iter(chunks)
        self.pending = b""  # bytes not walked yet
        self.need = 0  # bytes to pass over before the next header
        self.state = "magic"  # what the next header is: magic, block (other: not zstd)
        self.checksum = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.it:
            self._walk(chunk)
            yield chunk

    def _walk(self, chunk: bytes) -> None:
        if self.state == "other":
            return
        skip = min(self.need, len(chunk))
        self.need -= skip
        self.pending += chunk[skip:]
        while not self.need and self.pending and self._step():
            pass

    def _step(self) -> bool:
        """Read one header from :attr:`pending`; False when more bytes are needed."""
        p = self.pending
        if self.state == "magic":
            if len(p) < 5:
                return False
            if 0x184D2A50 <= int.from_bytes(p[:4], "little") <= 0x184D2A5F:  # skippable
                return self._take(8, int.from_bytes(p[4:8], "little"), "magic")
            if p[:4] != b"\x28\xb5\x2f\xfd":
                self.state, self.pending = "other", b""  # the decompressor says what
                return False
            fhd = p[4]
            size = (1 + (not fhd & 0x20) + (0, 1, 2, 4)[fhd & 3]
                    + (1 if fhd & 0x20 and not fhd >> 6 else (0, 2, 4, 8)[fhd >> 6]))
            self.checksum = 4 if fhd & 4 else 0
            return self._take(4 + size, 0, "block")
        if len(p) < 3:
            return False
        head = int.from_bytes(p[:3], "little")
        body = 1 if (head >> 1) & 3 == 1 else head >> 3
        if head & 1:  # the last block, then the checksum
            return self._take(3, body + self.checksum, "magic")
        return self._take(3, body, "block")

    def _take(self, header: int, body: int, then: str) -> bool:
        if len(self.pending) < header:
            return False
        rest = self.pending[header:]
        skip = min(body, len(rest))
        self.pending, self.need, self.state = rest[skip:], body - skip, then
        return True

    def cut(self) -> bool:
        """The input ended inside a frame."""
        return self.state != "other" and bool(self.need or self.pending
                                                or self.state != "magic")


class Cut:
    """A stream of chunks that ends where its source fails (a truncated gzip, a bomb,
    garbage after a valid member): what came before the failure is read and scanned
    like any stream, and :meth:`check` raises the failure afterwards (one error line,
    the readable part's findings kept)."""

    def __init__(self, chunks: Iterable[bytes]):
        self.it = iter(chunks)
        self.error: SourceError | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.it
        except SourceError as exc:  # Spent too: said already, raised again by check()
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error
