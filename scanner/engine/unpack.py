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


def _reader(kind: str, raw: _Chunks) -> Any:
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(raw)  # type: ignore[call-overload]
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw)  # type: ignore[arg-type]
    try:
        import zstandard
    except ImportError:
        raise SourceError("zstd-compressed: not scanned (install the optional zstandard "
                          "module: pip install 'cendis-scan[zstd]')") from None
    return zstandard.ZstdDecompressor().stream_reader(
        raw, read_across_frames=True)  # type: ignore[arg-type]


def decompress(kind: str, chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The decompressed stream (several concatenated streams too, as ``bzip2 -c a b``
    and ``xz`` write them) in pieces of at most STEP; past ``limit`` bytes out it is a
    bomb: one SourceError, and nothing more is read."""
    reader = _reader(kind, _Chunks(chunks))
    total = 0
    while True:
        try:
            out = reader.read(STEP)
        except SourceError:
            raise
        except Exception as exc:  # OSError, EOFError, lzma.LZMAError, ZstdError
            raise SourceError(f"not valid {kind}: {exc}") from None
        if not out:
            return
        total += len(out)
        if total > limit:
            raise SourceError(f"{kind} expands beyond {limit >> 20} MiB; not scanned further")
        yield out
