"""``redact``: a filter for logs. Every token becomes its redacted form; every other
byte passes through untouched, a line at a time, so it works behind ``tail -f``."""

from __future__ import annotations

from typing import BinaryIO

from scanner.engine.detect import LOOKAHEAD, Detector
from scanner.rules import Rule

#: A line longer than this is processed in pieces (memory stays bounded).
LINE_LIMIT = 1 << 20
#: Bytes that can continue a token or its base64 (held back at a cut).
_TOKENISH = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=-"


def redact_line(detector: Detector, line: bytes) -> tuple[bytes, int]:
    hits = detector.scan_text(line)
    if not hits:
        return line, 0
    out, pos = [], 0
    for hit in sorted(hits, key=lambda h: h.offset):
        if hit.offset < pos:
            # Inside the span just replaced (tokens run together, two tokens in one
            # base64 run): widen the span, or the rest of this token would pass through.
            out.append(hit.redacted.encode())
            pos = max(pos, hit.end)
            continue
        out += [line[pos : hit.offset], hit.redacted.encode()]
        pos = hit.end
    out.append(line[pos:])
    return b"".join(out), len(hits)


def redact_stream(src: BinaryIO, dst: BinaryIO, rules: list[Rule]) -> int:
    detector = Detector(rules)
    total = 0
    held = b""
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
            clean, count = redact_line(detector, line)
            total += count
            dst.write(clean)
            dst.flush()
        if not piece:
            return total
