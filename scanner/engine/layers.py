"""One bounded, recursive decoder for every layer a token can hide under.

A token may be written under layers in any order: base64 (either alphabet, any byte
alignment, wrapped), gzip and zlib, hex, percent-encoding, HTML character references,
backslash escapes (``\\xNN``, ``\\uNNNN``, ``\\NNN``) and quoted-printable (also the
``?q?`` MIME encoded-word; a ``?b?`` one is base64). This module owns that set: the
*seeds* that say a layer may hold a token (fixed strings computed from the rule's
prefix and the layers' encodings, plus the magic numbers of gzip and zlib), and how one
layer is taken off a region around a seed. The detector finds seeds with its literal
search (so a clean input pays for no decoding at all), calls :func:`peel` for each, and
scans what comes out with itself again, one layer deeper, until :data:`MAX_LAYERS` or
the per-input :class:`Budget` of decoded bytes is spent (a bomb: one error, no hang).

Seeds: for a text ``s`` that is certainly in a layer's input (the prefix, a gzip
magic), the characters of the layer's output that depend only on ``s``; the closure of
that up to :data:`SEED_DEPTH` layers, each cut to :data:`SEED_CHARS` characters (a
literal that long is already rare; longer ones add nothing but cost).
"""

from __future__ import annotations

import binascii
import functools
import html
import html.entities
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scanner.engine import b64
from scanner.engine.limits import LAYER_SPAN, MAX_LAYERS, SEED_DEPTH
from scanner.engine.literals import GZIP_B64, TO_URLSAFE, b64_needle, halves, needles
from scanner.errors import SourceError

#: Seeds are cut to this many characters.
SEED_CHARS = 16
#: Shortest seed kept: shorter ones (``789c``, zlib in hex) are in every few megabytes
#: of hex ids. Two exceptions: gzip's magic in base64 (``H4sI``), and in base64 again.
SEED_MIN = 6
SHORT = (GZIP_B64, b64_needle(GZIP_B64, 0))
GZIP_MAGIC = b"\x1f\x8b\x08"
#: zlib headers of the levels encoders use (1, 6 = the default, 9). ``78 5e`` (2-5) is
#: left out: ``x^`` is common in text.
ZLIB_MAGICS = (b"x\x01", b"x\x9c", b"x\xda")
#: base64 of a zlib stream has only 3 stable characters (``eJw``...): too short to be a
#: seed (thousands of hits per GB of JWTs), so zlib is found as bytes, hex and escapes,
#: not under base64.

#: Layer names, as ``encoding`` shows them.
BASE64, GZIP, ZLIB, HEX = "base64", "gzip", "zlib", "hex"
PERCENT, HTML, ESCAPED, QP = "percent", "html", "escaped", "qp"


@dataclass(frozen=True, slots=True)
class Seed:
    """A literal that may start (or lie inside) a layer holding a token."""

    text: bytes
    layer: str  # the outermost layer: the one to take off where the seed is found
    align: int = -1  # base64: byte alignment of the seed's text (-1: a run's start)


class Budget:
    """Decoded bytes one input may still produce across all of its layers."""

    def __init__(self, limit: int):
        self.limit, self.left = limit, limit

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise SourceError(f"decoded layers expand beyond {self.limit >> 20} MiB; "
                              "not scanned further")


@functools.cache
def _table(fmt: str) -> tuple[bytes, ...]:
    return tuple((fmt % c).encode() for c in range(256))


def _full(fmt: str, text: bytes) -> bytes:
    """``text`` with every byte escaped, cut to a seed's length (every escape is at
    least 2 characters, so half as many bytes suffice)."""
    table = _table(fmt)
    return b"".join([table[c] for c in text[: SEED_CHARS // 2]])[:SEED_CHARS]


#: Every byte escaped, per layer (a layer's seeds are these of the inner seed).
_FULL = {
    HEX: ("%02x", "%02X"),
    PERCENT: ("%%%02X", "%%%02x"),
    HTML: ("&#%d;", "&#x%x;"),
    ESCAPED: ("\\x%02x", "\\u%04x", "\\%03o"),
    QP: ("=%02X",),
}


def _forms(text: bytes, magic: bool, every: bool) -> Iterator[tuple[bytes, str, int]]:
    """(seed text, layer, alignment) of ``text`` under one more layer: every variant
    (``every``), or one per layer (what the next layer's seeds are computed from)."""
    for k in (0,) if magic else (0, 1, 2):
        needle = b64_needle(text, k)
        yield needle, BASE64, (-1 if magic else k)
        if every:
            yield needle.translate(TO_URLSAFE), BASE64, (-1 if magic else k)
    for layer, fmts in _FULL.items():
        for fmt in fmts if every else fmts[:1]:
            yield _full(fmt, text), layer, -1


def _partial(prefix: bytes) -> Iterator[tuple[bytes, str]]:
    """What escapers that escape only some characters make of a prefix: the first one or
    two characters, or only the punctuation."""
    under = prefix.find(b"_")
    head = prefix[:under] if under > 0 else prefix[:1]
    for layer, fmts in _FULL.items():
        if layer == HEX:
            continue
        for fmt in fmts:
            yield (fmt % prefix[0]).encode() + prefix[1:], layer
            yield _full(fmt, prefix[:2]), layer
            if under > 0:
                yield head + (fmt % prefix[under]).encode(), layer
    if under > 0:
        for ref in (b"&lowbar;", b"&UnderBar;"):
            yield head + ref, HTML


@functools.cache
def seeds(prefix: bytes, depth: int = SEED_DEPTH) -> tuple[Seed, ...]:
    """Every seed for one rule prefix; the plain prefix itself is not one (the detector
    reads it directly). Each layer's every variant (both base64 alphabets, upper and
    lower case hex digits...) is a seed; the layers outside it are computed from one
    variant per layer (the count stays in the hundreds, not thousands)."""
    out: dict[tuple[bytes, str], Seed] = {}

    def add(text: bytes, layer: str, align: int) -> bytes | None:
        text = text[:SEED_CHARS]
        if len(text) < SEED_MIN and text not in SHORT:
            return None
        out.setdefault((text, layer), Seed(text, layer, align))
        return text

    level: list[tuple[bytes, bool]] = [(prefix, False)]  # (text, a magic number?)
    level += [(header, True) for header in (GZIP_MAGIC, *ZLIB_MAGICS)]
    for text, layer in _partial(prefix):
        if add(text, layer, -1) is not None:
            for k in (0, 1, 2):  # base64 of a string literal with an escaped prefix
                needle = b64_needle(text[:SEED_CHARS], k)
                add(needle, BASE64, k)
                add(needle.translate(TO_URLSAFE), BASE64, k)
    out.setdefault((GZIP_MAGIC, GZIP), Seed(GZIP_MAGIC, GZIP))
    for header in ZLIB_MAGICS:
        out.setdefault((header, ZLIB), Seed(header, ZLIB))
    for _ in range(depth):
        nxt: list[tuple[bytes, bool]] = []
        for text, magic in level:
            for form, layer, align in _forms(text, magic, every=True):
                add(form, layer, align)
            for form, _layer, _align in _forms(text, magic, every=False):
                if len(form) >= SEED_MIN or form in SHORT:  # a magic: still its start
                    nxt.append((form[:SEED_CHARS], magic))
        level = list(dict.fromkeys(nxt))
    return tuple(out.values())


@dataclass(slots=True)
class Layer:
    """One layer taken off: what it held, and where its encoded text lies."""

    name: str
    data: bytes
    start: int  # buffer offset where the encoded text starts (a finding's place)
    end: int  # buffer offset where it ends
    skip: int = 0  # decoded bytes before the seed (read for context, not for hits)


def peel(buf: Any, p: int, seed: Seed, budget: Budget) -> Layer | None:
    """Take ``seed.layer`` off the region around a seed found at ``p``; None when the
    region does not decode."""
    lo, hi = max(0, p - LAYER_SPAN), min(len(buf), p + LAYER_SPAN)
    if seed.layer == BASE64:
        layer = _base64(buf, p, seed, lo, hi)
    elif seed.layer in (GZIP, ZLIB):
        layer = _inflate(buf, p, seed.layer, hi, budget)
    elif seed.layer == HEX:
        layer = _hex(buf, p, lo, hi)
    else:
        layer = _unescape(buf, p, seed.layer, hi)
    if layer is not None:
        budget.take(len(layer.data))
    return layer


def _base64(buf: Any, p: int, seed: Seed, lo: int, hi: int) -> Layer | None:
    if seed.align < 0 and p > 0 and buf[p - 1] in b64.B64:
        return None  # a magic's base64 starts a run
    run = b64.joined(buf, p, lo, hi)
    jp = run.index(p)
    if jp is None:
        return None
    first = (jp - b64.DROP[seed.align]) % 4 if seed.align >= 0 else jp
    chars = run.chars[first:]
    body = chars.translate(b64.URLSAFE)
    tail = len(body) % 4
    body = body[: len(body) - 1] if tail == 1 else body + b"=" * ((4 - tail) % 4)
    try:
        data = binascii.a2b_base64(body)
    except binascii.Error:
        return None
    return Layer(BASE64, data, run.to_buf(first), run.ends[-1])


def _inflate(buf: Any, p: int, name: str, hi: int, budget: Budget) -> Layer | None:
    """gzip or zlib from a magic number found inside an input (a whole gzip file is
    streamed by :mod:`scanner.engine.scan_input` instead): at most LAYER_SPAN bytes of
    it are read, so a pack file's or an image's streams cost little; more than the
    input's budget is a bomb."""
    d = zlib.decompressobj(wbits=31 if name == GZIP else 15)
    cap = min(LAYER_SPAN, max(0, budget.left))
    out: list[bytes] = []
    size, pos, step = 0, p, 4096
    try:
        while pos < hi and not d.eof and size <= cap:
            piece = d.decompress(bytes(buf[pos : min(hi, pos + step)]), cap - size + 1)
            out.append(piece)
            size += len(piece)
            if d.unconsumed_tail:
                break  # past the cap
            pos += step
            step = min(step * 4, 1 << 20)
    except zlib.error:
        if not out:
            return None
    data = b"".join(out)
    if size > cap:
        if cap == budget.left:
            budget.take(size)  # raises: a bomb
        data = data[:cap]
    if len(data) < 8:
        return None
    end = min(hi, pos) - len(d.unused_data)
    return Layer(name, data, p, end)


_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _hex(buf: Any, p: int, lo: int, hi: int) -> Layer | None:
    before = bytes(buf[max(lo, p - 4096) : p])
    start = p - (len(before) - len(before.rstrip(_HEX_DIGITS)))
    end, step = p, 4096
    while end < hi:
        after = bytes(buf[end : min(hi, end + step)])
        rest = len(after.lstrip(_HEX_DIGITS))
        end += len(after) - rest
        if rest:
            break
        step = min(step * 4, 1 << 20)
    start += (p - start) % 2
    end -= (end - start) % 2
    try:
        return Layer(HEX, bytes.fromhex(bytes(buf[start:end]).decode()), start, end)
    except ValueError:
        return None


_ESCAPES = {
    PERCENT: re.compile(rb"%([0-9a-fA-F]{2})"),
    ESCAPED: re.compile(rb"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|([0-7]{3})|(.))", re.S),
    QP: re.compile(rb"=(?:([0-9A-F]{2})|\r?\n)"),
}


def _unescape(buf: Any, p: int, name: str, hi: int) -> Layer | None:
    """Character escapes from ``p`` to the end of the line (within the span)."""
    line = max(0, p - 1024, buf.rfind(b"\n", max(0, p - 1024), p) + 1)
    before = bytes(buf[line:p])  # what a needle inside needs before it (base64 groups)
    if name != QP:
        nl = buf.find(b"\n", p, hi)
        window = bytes(buf[p : hi if nl == -1 else nl])
    else:  # soft line breaks join lines; a hard break ends the text
        window = bytes(buf[p : min(hi, p + (64 << 10))])
        m = re.search(rb"[^=\r]\r?\n", window)
        window = window if m is None else window[: m.start() + 1]
    data = _unescaped(name, window)
    if data == window:
        return None
    skip = len(_unescaped(name, before))
    m = _RUN_END[name].search(before)  # the escapes just before the seed: where they start
    start = p - (len(before) - m.start()) if m is not None else p
    return Layer(name, _unescaped(name, before) + data, start, p + len(window), skip)


#: A run of escapes ending where a seed was found (the seed may lie inside the run).
_RUN_END = {
    PERCENT: re.compile(rb"(?:%[0-9A-Fa-f]{2})+\Z"),
    HTML: re.compile(rb"(?:&#[0-9]{1,7};|&#[xX][0-9a-fA-F]{1,6};)+\Z"),
    ESCAPED: re.compile(rb"(?:\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\[0-7]{3})+\Z"),
    QP: re.compile(rb"(?:=[0-9A-F]{2}|=\r?\n)+\Z"),
}


_REFERENCE = re.compile(
    rb"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z][A-Za-z0-9]{1,31}));")


def _reference(m: re.Match[bytes]) -> bytes:
    """One HTML character reference; a named one in a single pass, so ``&amp;#99;`` is
    one layer, not two."""
    if m.group(3):
        named = m.group(3).decode() + ";"
        return html.entities.html5.get(named, m.group(0).decode()).encode()
    code = int(m.group(1)) if m.group(1) else int(m.group(2), 16)
    if code < 0x100:  # a byte (of a gzip blob, say) or a Latin-1 character
        return bytes([code])
    return chr(min(code, 0x10FFFF)).encode("utf-8", "surrogatepass")


def _backslash(m: re.Match[bytes]) -> bytes:
    if m.group(3):
        return bytes([int(m.group(3), 8) & 0xFF])
    if m.group(4):
        return m.group(4)
    if m.group(1):
        return bytes([int(m.group(1), 16)])
    return chr(int(m.group(2), 16)).encode("utf-8", "surrogatepass")


def _byte(m: re.Match[bytes]) -> bytes:
    return b"" if m.group(1) is None else bytes([int(m.group(1), 16)])  # "": a soft break


_SUBS = {HTML: (_REFERENCE, _reference), ESCAPED: (_ESCAPES[ESCAPED], _backslash),
         PERCENT: (_ESCAPES[PERCENT], _byte), QP: (_ESCAPES[QP], _byte)}


def _unescaped(name: str, window: bytes) -> bytes:
    pattern, one = _SUBS[name]
    return pattern.sub(one, window)


def texts(prefixes: list[bytes], *, blobs: bool = True) -> list[bytes]:
    """Every literal of :meth:`Detector.literals` for rules with these prefixes, without
    the detector, RE2 or the rules' regexes (the pre-commit hook's fast path asks "is
    any of them in the staged change?"; tests/test_fast_staged.py checks it)."""
    out: set[bytes] = set()
    for prefix in prefixes:
        always, deep = needles(prefix)
        out.update(text for text, _ in always + deep)
        out.update(half for text, chain in always if chain for half in halves(text))
        if blobs:
            out.update(seed.text for seed in seeds(prefix))
    return sorted(out)


__all__ = ["Budget", "Layer", "MAX_LAYERS", "Seed", "peel", "seeds"]
