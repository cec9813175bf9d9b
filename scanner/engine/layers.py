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
from scanner.engine.limits import LAYER_SPAN, MAX_LAYERS
from scanner.engine.literals import (  # noqa: F401  (re-exported: the layers' names)
    BASE64,
    ESCAPED,
    GZIP,
    GZIP_MAGIC,
    HEX,
    HTML,
    PERCENT,
    QP,
    SEED_CHARS,
    SEED_DEPTH,
    SHORT,
    ZLIB,
    ZLIB_B64,
    ZLIB_HEX,
    ZLIB_MAGICS,
    ZLIB_SHORT,
    seed_specs,
    texts,
)
from scanner.errors import SourceError


@dataclass(frozen=True, slots=True)
class Seed:
    """A literal that may start (or lie inside) a layer holding a token."""

    text: bytes
    layer: str  # the outermost layer: the one to take off where the seed is found
    align: int = -1  # base64: byte alignment of the seed's text (-1: a run's start)


class Spent(SourceError):
    """The input's budget was already spent and said so (:meth:`Budget.spend`): what
    is still compressed in it is skipped quietly (one error line per input, not one per
    member)."""

    quiet = True


#: An input may expand to this many times its own size when that is more than the
#: limit: a registry image of gzip layers (about 3:1) is read whole however large it is,
#: while a small bomb (42.zip: 17 KB to 4.5 PB) is still cut at the limit.
RATIO = 32


class Budget:
    """Decoded bytes one input may still produce across all of its layers."""

    @classmethod
    def for_input(cls, limit: int, size: int | None) -> Budget:
        """The budget of an input of ``size`` bytes (None or 0: a stream, whose size is
        not known: ``limit``)."""
        return cls(max(limit, RATIO * (size or 0)))

    def __init__(self, limit: int, *, deep_said: bool = False, left: int | None = None):
        self.limit, self.left = limit, limit if left is None else left
        #: The input's containers expanded past the limit and one error said so.
        self.spent = False
        #: The input was already reported as nested too deep (by the stream unpacker,
        #: :mod:`scanner.engine.scan_input`): a layer past MAX_LAYERS is then skipped
        #: quietly, so the input gets one error line, not two.
        self.deep_said = deep_said

    def too_deep(self) -> None:
        """A layer past MAX_LAYERS: one error for the input (raised once)."""
        if not self.deep_said:
            self.deep_said = True
            raise SourceError(f"more than {MAX_LAYERS} layers of encoding inside each "
                              "other: not decoded further")

    def spend(self, n: int, what: str) -> None:
        """``n`` bytes came out of a container layer (gzip, bzip2, xz, zstd, a zip
        member) anywhere in the input, however deeply nested: one budget for all of
        them, so a zip of zips or a tar of gzips is bounded like one gzip. Past the
        limit: one SourceError (the input's one error line), then :class:`Spent`."""
        if self.spent:
            raise Spent("decompressed size limit already reported")
        self.left -= n
        if self.left < 0:
            self.spent = True
            raise SourceError(f"{what} expands beyond {self.limit >> 20} MiB; "
                              "not scanned further")

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise SourceError(f"decoded layers expand beyond {self.limit >> 20} MiB; "
                              "not scanned further")


@functools.cache
def seeds(prefix: bytes, depth: int = SEED_DEPTH) -> tuple[Seed, ...]:
    """Every seed for one rule prefix (:func:`scanner.engine.literals.seed_specs`: the
    built-in prefix's are precomputed data); the plain prefix itself is not one (the
    detector reads it directly)."""
    return tuple(Seed(text, layer, align) for text, layer, align in seed_specs(prefix, depth))


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
    region does not decode. gzip and zlib are not taken here but streamed
    (:class:`Inflated`)."""
    lo, hi = max(0, p - LAYER_SPAN), min(len(buf), p + LAYER_SPAN)
    if seed.text in ZLIB_SHORT and not zlib_start(buf, p, seed.text in ZLIB_B64):
        return None
    if seed.layer == BASE64:
        layer = _base64(buf, p, seed, lo, hi)
    elif seed.layer == HEX:
        layer = _hex(buf, p, p if seed.text in ZLIB_HEX else lo, hi)  # zlib: a run's start
    else:
        layer = _unescape(buf, p, seed.layer, hi)
    if layer is not None:
        budget.take(len(layer.data))
    return layer


#: The shortest base64 (hex) a zlib-wrapped token is: 2 header bytes, a deflate block
#: of at least ~40 bytes for a 47-character token, the checksum.
ZLIB_RUN = {True: 56, False: 84}
_B64_SET = frozenset(b64.B64)
_HEX_SET = frozenset(b"0123456789abcdefABCDEF")


def zlib_start(buf: Any, p: int, base64: bool) -> bool:
    """The cheap test of a zlib header seen in base64 (``eJw``) or hex (``789c``): the
    run starts at ``p``, is long enough to hold a token, and its first bytes inflate.
    Anything else (the middle of a JWT or a hash) costs these few comparisons."""
    alphabet = _B64_SET if base64 else _HEX_SET
    if p > 0 and buf[p - 1] in alphabet:
        return False
    need = ZLIB_RUN[base64]
    head = bytes(buf[p : p + need])
    if len(head) < need or not all(c in alphabet for c in head):
        return False
    try:
        raw = (binascii.a2b_base64(head.translate(b64.URLSAFE)) if base64
               else bytes.fromhex(head.decode()))
        zlib.decompressobj().decompress(raw)
    except (binascii.Error, ValueError, zlib.error):
        return False
    return True


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


class Inflated:
    """gzip or zlib from a magic number found inside an input (a whole gzip file is
    streamed by :mod:`scanner.engine.scan_input` instead), inflated a piece at a time:
    iterating gives the pieces (at most ``piece`` bytes each, every one taken from the
    input's budget, so a bomb is one error and memory stays one piece), and afterwards
    :attr:`end` is where the compressed stream ended in the buffer. The caller scans
    the pieces as a stream (:meth:`scanner.engine.detect.Detector._layer`): a token
    anywhere in what the input's budget allows is found, not only in its first
    LAYER_SPAN bytes."""

    def __init__(self, buf: Any, p: int, name: str, budget: Budget, piece: int = 1 << 20,
                 cap: int | None = None):
        self.buf, self.p, self.name, self.budget, self.piece = buf, p, name, budget, piece
        #: Inflated bytes past which the stream is left unread (None: the budget's).
        self.cap = cap
        self.end = p
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        buf, budget = self.buf, self.budget
        d = zlib.decompressobj(wbits=31 if self.name == GZIP else 15)
        pos, step, hi = self.p, 4096, len(buf)
        pending = b""
        try:
            while not d.eof and (self.cap is None or self.size < self.cap):
                if d.unconsumed_tail:
                    piece = d.decompress(d.unconsumed_tail, self.piece)
                elif pos < hi:
                    chunk = bytes(buf[pos : min(hi, pos + step)])
                    pos += len(chunk)
                    step = min(step * 4, 1 << 20)
                    piece = d.decompress(chunk, self.piece)
                else:
                    break
                if not piece:
                    continue
                if self.size == 0 and len(pending) + len(piece) < 8:
                    pending += piece  # too short to tell a stream from chance yet
                    continue
                piece, pending = pending + piece, b""
                self.size += len(piece)
                budget.take(len(piece))  # raises past the input's budget: a bomb
                self.end = pos - len(d.unused_data) - len(d.unconsumed_tail)
                yield piece
        except zlib.error:
            pass  # what inflated before the damage has been given
        self.end = pos - len(d.unused_data) - len(d.unconsumed_tail)


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
    code = int(m.group(2), 16)
    if code < 0x100:  # a byte (binary written as a JSON string), as for HTML references
        return bytes([code])
    return chr(code).encode("utf-8", "surrogatepass")


def _byte(m: re.Match[bytes]) -> bytes:
    return b"" if m.group(1) is None else bytes([int(m.group(1), 16)])  # "": a soft break


_SUBS = {HTML: (_REFERENCE, _reference), ESCAPED: (_ESCAPES[ESCAPED], _backslash),
         PERCENT: (_ESCAPES[PERCENT], _byte), QP: (_ESCAPES[QP], _byte)}


def _unescaped(name: str, window: bytes) -> bytes:
    pattern, one = _SUBS[name]
    return pattern.sub(one, window)


__all__ = ["Budget", "Inflated", "Layer", "MAX_LAYERS", "RATIO", "Seed", "Spent", "peel",
           "seeds", "texts"]
