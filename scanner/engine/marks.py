"""Which members of a region searched together get the full scan: those where a literal
of the prefilter lies. Shared by the tar reader's in-place spans and held members
(:mod:`scanner.engine.tars`); a gzip/zlib magic number alone marks a member only where
the bytes after it start to inflate (binary data holds ``x\\x9c`` every few tens of KB).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.engine.detect import Detector

#: Input bytes of a gzip or zlib magic tried by :func:`marked`: no more than the first
#: piece :class:`scanner.engine.layers.Inflated` reads (4096 bytes), so an error here is
#: an error there too, before any output.
PROBE_IN = 1024
#: Output allowed to the probe: an error before this much came out is one for peel too
#: (it allows at least this much: a fresh input's budget).
PROBE_OUT = 64 << 10


def marked(detector: Detector, buf: Any, lo: int, hi: int, starts: list[int],
           ends: list[int]) -> set[int]:
    """The members (data at ``[starts[i], ends[i])`` of ``buf``) where a literal of the
    prefilter lies in ``buf[lo:hi]``: those get the full scan. A place where only a gzip
    or zlib magic number is (``x\\x9c``: every few tens of KB of binary data) marks its
    member only when the bytes after it start to inflate: where they do not, the full
    scan's decoder would find nothing there either (same first bytes, same error), so
    a binary member costs no second scan for a magic that opens nothing."""
    from bisect import bisect_right

    assert detector.prefilter is not None
    magic = detector.inflate_only()
    out: set[int] = set()
    found = detector.prefilter.find(buf, lo, hi)
    n = 0
    while n < len(found):
        p = found[n][0]
        kinds = set()
        while n < len(found) and found[n][0] == p:
            kinds.add(magic.get(found[n][1], 0))
            n += 1
        i = bisect_right(starts, p) - 1
        if i < 0 or i in out or p >= ends[i]:
            continue  # (a literal across a member's end is not in the member)
        if 0 not in kinds and len(kinds) == 1 and detector.max_decompressed >= PROBE_OUT \
                and not _inflates(buf, p, ends[i], kinds.pop()):
            continue
        out.add(i)
    return out


def _inflates(buf: Any, p: int, end: int, wbits: int) -> bool:
    try:
        zlib.decompressobj(wbits=wbits).decompress(bytes(buf[p : min(end, p + PROBE_IN)]),
                                                  PROBE_OUT)
    except zlib.error:
        return False
    return True
