"""Counting newlines, the one pass a clean stream cannot skip: a finding's line number
needs every newline before it, counted while those bytes are still in memory (stdin's
are gone afterwards). ``bytes.count`` is a byte-at-a-time loop (~2 GB/s here) and was
the largest single cost of a clean stdin (0.36 s of 0.87 s CPU a GB). StringZilla's
SIMD count gives the same answer at ~7 GB/s and imports in ~10 ms (numpy, the other
candidate, costs ~160 ms to import, more than it saves on a 0.5 GB input), so it is
used where installed; without it ``bytes.count`` does the same job slower.
"""

from __future__ import annotations

from typing import Any

try:
    from stringzilla import count as _simd
except ImportError:  # a platform without its wheel: the same count, slower
    _simd = None

#: Below this many bytes the call's own cost outweighs SIMD's gain.
SMALL = 4096


def plain(buf: Any, start: int, end: int) -> int:
    """``bytes.count`` over ``buf[start:end]`` for any buffer (an mmap has no count
    with bounds, so it is sliced: callers pass cache-sized ranges)."""
    if isinstance(buf, bytes | bytearray):
        return buf.count(b"\n", start, end)
    return bytes(buf[start:end]).count(b"\n")


def count(buf: Any, start: int = 0, end: int | None = None) -> int:
    """Newlines in ``buf[start:end]`` (bytes, bytearray, memoryview or mmap), bounds
    clipped like a slice's."""
    size = len(buf)
    end = size if end is None else min(max(end, 0), size)
    start = min(max(start, 0), size)
    if end - start < SMALL or _simd is None:
        return plain(buf, start, end) if end > start else 0
    if isinstance(buf, bytes | bytearray):
        return int(_simd(buf, b"\n", start, end))
    with memoryview(buf) as view, view[start:end] as part:
        return int(_simd(part, b"\n"))
