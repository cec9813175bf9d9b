"""Base64 runs as they appear in files: on one line, or wrapped across lines.

Tools wrap base64 at a fixed width (``base64``: 76, PEM: 64, MIME: 76 with CRLF, YAML
block scalars: indented, JSON: an escaped ``\\n``). A token's base64 can then straddle a
line break, so a run is *joined* here: line segments are glued together when the break
between them looks like wrapping, and decoding happens on the joined characters.

What counts as wrapping (so that unrelated lines are never glued together): the segment
before a break is at least :data:`MIN_WRAP` characters and a whole number of 4-character
groups, and the segment after it fills its line (it ends at a line end, at ``=`` padding,
at a closing quote, or where the buffer ends). A break is ``\\r?\\n`` followed by
indentation, or a JSON-escaped ``\\n`` (``\\r\\n``).

All of this runs only where a needle was found, never over clean input.
"""

from __future__ import annotations

import binascii
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from scanner.engine.literals import DROP
from scanner.engine.literals import FROM_URLSAFE as URLSAFE

B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
#: The shortest segment a wrapped run may break after (wrappers use 64 or 76).
MIN_WRAP = 16
_INDENT = b" \t"
_ENDS = b"\r\n=\"'"
_CR, _LF, _BACKSLASH = 0x0D, 0x0A, 0x5C
_N, _R = ord("n"), ord("r")


@dataclass(slots=True)
class Run:
    """Joined base64 characters and where each segment of them sits in the buffer."""

    chars: bytes
    starts: list[int]  # index in ``chars`` where each segment begins
    offsets: list[int]  # buffer offset of each segment's first character
    ends: list[int]  # buffer offset just after each segment

    def segment(self, i: int) -> int:
        return max(0, bisect_right(self.starts, i) - 1)

    def to_buf(self, i: int) -> int:
        """Buffer offset of joined index ``i`` (``len(chars)``: the end of the run)."""
        if i >= len(self.chars):
            return self.ends[-1]
        s = self.segment(i)
        return self.offsets[s] + i - self.starts[s]

    def index(self, pos: int) -> int | None:
        """Joined index of buffer offset ``pos``, if it lies in a segment."""
        for s, (lo, hi) in enumerate(zip(self.offsets, self.ends, strict=True)):
            if lo <= pos < hi or pos == hi == self.ends[-1]:
                return self.starts[s] + pos - lo
        return None


def _run_back(buf: Any, pos: int, floor: int) -> int:
    chunk = bytes(buf[floor:pos])
    return floor + len(chunk.rstrip(B64))


def _run_fwd(buf: Any, pos: int, ceil: int) -> int:
    """Where the run from ``pos`` ends (a step at a time: ``ceil`` may be megabytes on,
    and most runs are short)."""
    step = 4096
    while pos < ceil:
        chunk = bytes(buf[pos : min(ceil, pos + step)])
        rest = len(chunk.lstrip(B64))
        pos += len(chunk) - rest
        if rest:
            return pos
        step = min(step * 4, 1 << 20)
    return ceil


def _segment_start(buf: Any, s: int, e: int) -> int:
    """A segment that begins with the ``n`` of an escaped ``\\n`` really begins after it."""
    if s > 0 and s < e and buf[s] == _N and buf[s - 1] == _BACKSLASH:
        return s + 1
    return s


def _break_before(buf: Any, s: int, floor: int) -> int | None:
    """Where the previous line's content ends, if ``s`` starts a line (after indentation)."""
    i = s
    if i - 2 >= floor and buf[i - 1] == _N and buf[i - 2] == _BACKSLASH:
        i -= 2
        if i - 2 >= floor and buf[i - 1] == _R and buf[i - 2] == _BACKSLASH:
            i -= 2
        return i
    while i > floor and buf[i - 1] in _INDENT:
        i -= 1
    if i <= floor or buf[i - 1] != _LF:
        return None
    i -= 1
    if i > floor and buf[i - 1] == _CR:
        i -= 1
    return i


def _break_after(buf: Any, e: int, ceil: int) -> int | None:
    """Where the next line's content starts, if a line break begins at ``e``."""
    i = e
    if i + 1 < ceil and buf[i] == _BACKSLASH:
        if buf[i + 1] == _R and i + 3 < ceil and buf[i + 2] == _BACKSLASH:
            i += 2
        return i + 2 if buf[i + 1] == _N else None
    if i < ceil and buf[i] == _CR:
        i += 1
    if i >= ceil or buf[i] != _LF:
        return None
    i += 1
    while i < ceil and buf[i] in _INDENT:
        i += 1
    return i


def _fills_line(buf: Any, e: int, ceil: int) -> bool:
    return e >= ceil or buf[e] in _ENDS or (buf[e] == _BACKSLASH and e + 1 < ceil
                                             and buf[e + 1] in (_N, _R))


def _wraps(length: int) -> bool:
    return length >= MIN_WRAP and length % 4 == 0


def joined(buf: Any, pos: int, floor: int, ceil: int) -> Run:
    """The base64 run holding ``pos``, across wrapping line breaks, within
    ``buf[floor:ceil]``."""
    s0 = _run_back(buf, pos, floor)
    e0 = _run_fwd(buf, pos, ceil)
    s0 = min(_segment_start(buf, s0, e0), pos)
    segs = [(s0, e0)]
    if _fills_line(buf, e0, ceil):  # only a whole line can be a wrapped continuation
        s = s0
        while (pe := _break_before(buf, s, floor)) is not None:
            ps = _segment_start(buf, _run_back(buf, pe, floor), pe)
            if not _wraps(pe - ps):
                break
            segs.insert(0, (ps, pe))
            s = ps
    s, e = segs[-1]
    while _wraps(e - s) and (ns := _break_after(buf, e, ceil)) is not None:
        ne = _run_fwd(buf, ns, ceil)
        if ne == ns or not _fills_line(buf, ne, ceil):
            break
        segs.append((ns, ne))
        s, e = ns, ne
    starts, pieces, n = [], [], 0
    for lo, hi in segs:
        starts.append(n)
        pieces.append(bytes(buf[lo:hi]))
        n += hi - lo
    return Run(b"".join(pieces), starts, [lo for lo, _ in segs], [hi for _, hi in segs])


def _padded(chars: bytes) -> bytes:
    """Unpadded base64: 2 or 3 spare characters still carry bytes; 1 carries none."""
    tail = len(chars) % 4
    return chars[: len(chars) - 1] if tail == 1 else chars + b"=" * ((4 - tail) % 4)


def decode(run: Run, jp: int, k: int, span: int) -> tuple[bytes, int, int, int] | None:
    """Decode the run around a needle at joined index ``jp`` with byte alignment ``k``.

    Returns (decoded, where the needle's text starts in it, the buffer offset where the
    run starts, the buffer offset where decoding stopped).
    The 4-character grouping comes from the needle itself, so the run's start never
    has to be found first.
    """
    g = jp - DROP[k]
    if g < 0:
        return None
    lo = g - 4 * min(g // 4, 3)
    hi = min(len(run.chars), lo + span)
    chars = _padded(run.chars[lo:hi].translate(URLSAFE))
    try:
        decoded = binascii.a2b_base64(chars)
    except binascii.Error:
        return None
    # Where the run starts (its first line when wrapped): the place the spec reports,
    # as a layer of base64 does (token-format.md, "for a token inside base64").
    origin = run.offsets[0]
    return decoded, (g - lo) // 4 * 3 + k, origin, run.to_buf(hi)


def whole_run(buf: Any, pos: int, ceil: int) -> tuple[bytes, int]:
    """Decode a whole (possibly wrapped) run that starts at ``pos``: the blob of a
    base64-encoded file. Returns (decoded bytes, buffer offset where the run ends)."""
    run = joined(buf, pos, pos, ceil)
    chars = _padded(run.chars.translate(URLSAFE))
    try:
        return binascii.a2b_base64(chars), run.ends[-1]
    except binascii.Error:
        return b"", run.ends[-1]
