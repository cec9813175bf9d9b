"""``redact``: a filter for logs. Every token becomes its redacted form; every other
byte passes through untouched, a line at a time, so it works behind ``tail -f``.

The full detector runs here (every rule, base64, escapes, UTF-16). Not to be confused
with :mod:`scanner.scrub`, the cheap guard every string of the tool's own output goes
through."""

from __future__ import annotations

from dataclasses import replace
from typing import BinaryIO

from scanner.engine.detect import LOOKAHEAD, MAX_RUN, Detector, Hit
from scanner.rules import Rule

#: A line longer than this is processed in pieces (memory stays bounded).
LINE_LIMIT = 1 << 20
#: Bytes that can continue a token or its base64 (held back at a cut).
_TOKENISH = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=-\0"


def _utf16_hits(detector: Detector, line: bytes, base: int) -> list[Hit]:
    """Tokens written in UTF-16 (a PowerShell transcript piped through): the prefix with
    NULs between its characters. Which byte of a pair is the character comes from the
    stream offset (UTF-16 code units start at even offsets), so the redacted form is
    written back in the same byte order and the output stays valid UTF-16."""
    hits: list[Hit] = []
    for rule in detector.rules:
        needle = b"\0".join(bytes([c]) for c in rule.prefix)
        p = line.find(needle)
        while p != -1:
            big_endian = (base + p) % 2 == 1
            lo = p - 1 if big_endian else p
            pairs = line[lo : lo + 2 * (len(rule.prefix) + MAX_RUN)]
            highs, chars = (pairs[0::2], pairs[1::2]) if big_endian else (pairs[1::2],
                                                                          pairs[0::2])
            n = min(len(chars), len(highs))
            cut = next((i for i in range(n) if highs[i] != 0 or chars[i] > 0x7F), n)
            for hit in detector.scan_text(chars[:cut]):
                if hit.offset == 0 and hit.encoding == "plain":
                    codec = "utf-16-be" if big_endian else "utf-16-le"
                    hits.append(replace(hit, offset=lo, end=lo + 2 * hit.end,
                                        redacted=hit.redacted.encode(codec).decode("latin-1")))
                    break
            p = line.find(needle, p + 1)
    return hits


def redact_line(detector: Detector, line: bytes, base: int = 0) -> tuple[bytes, int]:
    """``line`` with every token replaced; ``base`` is its offset in the stream (for
    the byte order of UTF-16 text)."""
    hits = detector.scan_text(line)
    if b"\0" in line:
        hits += _utf16_hits(detector, line, base)
    if not hits:
        return line, 0
    out, pos = [], 0
    for hit in sorted(hits, key=lambda h: h.offset):
        if hit.offset < pos:
            # Inside the span just replaced (tokens run together, two tokens in one
            # base64 run): widen the span, or the rest of this token would pass through.
            out.append(_form(hit))
            pos = max(pos, hit.end)
            continue
        out += [line[pos : hit.offset], _form(hit)]
        pos = hit.end
    out.append(line[pos:])
    return b"".join(out), len(hits)


def _form(hit: Hit) -> bytes:
    """The redacted form as bytes. A UTF-16 hit carries its form already encoded (as
    latin-1 text, one character per byte; it always holds a NUL, no UTF-8 form does)."""
    return hit.redacted.encode("latin-1" if "\0" in hit.redacted else "utf-8")


def redact_stream(src: BinaryIO, dst: BinaryIO, rules: list[Rule]) -> int:
    detector = Detector(rules)
    total = 0
    held = b""
    offset = 0  # stream offset of ``line``
    while True:
        piece = src.readline(LINE_LIMIT)
        line, held = held + piece, b""
        if len(piece) == LINE_LIMIT and not piece.endswith(b"\n"):
            # A long line cut short: hold back what may be the start of a token (or of
            # its base64), so that it is redacted whole with the next piece.
            tail = line[-LOOKAHEAD:]
            keep = len(tail) - len(tail.rstrip(_TOKENISH))
            line, held = line[: len(line) - keep], line[len(line) - keep :]
        if line:
            clean, count = redact_line(detector, line, offset)
            offset += len(line)
            total += count
            dst.write(clean)
            dst.flush()
        if not piece:
            return total
