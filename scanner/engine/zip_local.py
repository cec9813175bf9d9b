"""A zip without its central directory (cut short, a partial download): its members
read in order from their local file headers, which :mod:`zipfile` cannot do.

The central directory is at a zip's end, so a truncated zip has none; but each member's
data follows a local header giving its name, method and (usually) sizes. Stored and
deflated members are read here, deflate to its own end when the sizes are left to a
data descriptor; the member cut short is scanned as far as it goes, and the zip is one
"truncated" error. Bounded like the rest: members per zip, the input's decompressed
budget (each byte spent as it comes out), a name's length (16 bits).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from scanner.engine.unpack import _Chunks
from scanner.errors import SourceError
from scanner.result import issue

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature ... name length, extra length
_SIGNATURE = b"PK\x03\x04"
_PIECE = 64 << 10  # compressed bytes read at a time
_OUT = 1 << 20  # decompressed bytes asked at a time


class _Member:
    """One member's bytes (stored or inflated), read from ``f``; ``cut`` once the
    file ended inside it."""

    def __init__(self, f: IO[bytes], method: int, size: int | None, budget: Any):
        self.f, self.method, self.size, self.budget = f, method, size, budget
        self.cut = False

    def chunks(self) -> Iterator[bytes]:
        left = self.size
        d = zlib.decompressobj(-15) if self.method == 8 else None
        while d is None or not d.eof:
            want = _PIECE if left is None else min(_PIECE, left)
            if want == 0:
                break
            raw = self.f.read(want)
            if not raw:
                self.cut = True
                break
            if left is not None:
                left -= len(raw)
            if d is None:
                self.budget.spend(len(raw), "zip")
                yield raw
                continue
            data = raw
            while data and not d.eof:
                out = d.decompress(data, _OUT)
                data = d.unconsumed_tail
                self.budget.spend(len(out), "zip")
                yield out
            if d.eof and left is None:  # sizes in a data descriptor: give back the rest
                self.f.seek(-len(d.unused_data), 1)
        if d is not None and not d.eof and not self.cut:
            raise SourceError("zip member's deflate stream is damaged")


def scan_local(f: IO[bytes], origin: Any, outcome: Any, budget: Any, max_members: int,
               scan_member: Callable[[Any, Any], None], sub_origin: Callable[[str, int], Any]
               ) -> list[str] | None:
    """Scan the members of the zip ``f`` (seekable, at its start) from their local
    headers; the names read, or None when ``f`` holds no local header at all (not a
    zip). Always ends with an error: a zip read this way is damaged."""
    names: list[str] = []
    f.seek(0)
    while len(names) < max_members:
        head = f.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != _SIGNATURE:
            cut = head[:4] == _SIGNATURE and (len(head) < 6 or head[4] <= 63)
            return names if names or cut else None  # (cut: a header cut short)
        _, version, flags, method, _, _, _, csize, usize, nlen, xlen = _LOCAL.unpack(head)
        raw_name = f.read(nlen)
        extra = f.read(xlen)
        if (version & 0xFF) > 63 or method > 99 or not 0 < nlen == len(raw_name):
            break  # not a local header (a file that only starts like a zip), or cut
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if csize == 0xFFFFFFFF:
            csize = _zip64_size(extra, usize == 0xFFFFFFFF)
        names.append(name)
        described = bool(flags & 8)
        size = None if described and method == 8 else csize
        sub = sub_origin(name, usize)
        if name.endswith("/"):
            continue
        if flags & 1 or method not in (0, 8) or (described and method == 0):
            why = ("is encrypted" if flags & 1 else
                   f"uses compression method {method}" if method not in (0, 8) else
                   "has no size before its data")
            outcome.errors.append(issue(sub.path, SourceError(f"cannot read: {why}")))
            if described and method == 0:
                break
            f.seek(csize, 1)
            continue
        member = _Member(f, method, size, budget)
        scan_member(_Chunks(member.chunks()), sub)
        if member.cut:
            break
        if described:  # a data descriptor (signature or not, zip64 or not): to the
            after = f.read(32)  # next local header
            at = after.find(_SIGNATURE)
            if at < 0:
                break
            f.seek(at - len(after), 1)
    return names or None


def _zip64_size(extra: bytes, has_usize: bool) -> int:
    """The compressed size from a zip64 extra field (0x0001)."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        if tag == 1:
            off = at + 4 + (8 if has_usize else 0)
            if off + 8 <= at + 4 + length:
                return int(struct.unpack_from("<Q", extra, off)[0])
        at += 4 + length
    return 0
