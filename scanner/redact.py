"""``redact``: a filter for logs. Every token becomes its redacted form; every other
byte passes through untouched, a line at a time, so it works behind ``tail -f``."""

from __future__ import annotations

from typing import BinaryIO

from scanner.engine.detect import Detector
from scanner.rules import Rule

#: A line longer than this is processed in pieces (memory stays bounded).
LINE_LIMIT = 1 << 20


def redact_line(detector: Detector, line: bytes) -> tuple[bytes, int]:
    hits = detector.scan_text(line)
    if not hits:
        return line, 0
    out, pos, count = [], 0, 0
    for hit in sorted(hits, key=lambda h: h.offset):
        if hit.offset < pos:
            continue  # already inside a replaced span
        out += [line[pos : hit.offset], hit.redacted.encode()]
        pos = hit.end
        count += 1
    out.append(line[pos:])
    return b"".join(out), count


def redact_stream(src: BinaryIO, dst: BinaryIO, rules: list[Rule]) -> int:
    detector = Detector(rules)
    total = 0
    while line := src.readline(LINE_LIMIT):
        clean, count = redact_line(detector, line)
        total += count
        dst.write(clean)
        dst.flush()
    return total
