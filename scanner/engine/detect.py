"""The detector: bytes in, redacted hits out.

The hot loop is a handful of ``bytes.find`` calls for fixed strings (the rule's prefix
and its base64 forms at the three byte alignments), which run at memory speed; RE2 only
runs where a literal was found. A base64 hit is decoded locally (a window around the
hit, aligned from the needle itself, so the run's start never has to be found first)
and the decoded bytes are checked at exactly the place the needle promised.
See PERF-NOTES.md: an alternation or a character-class scan over every byte would cost
5-10x.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from scanner import token as tk
from scanner.engine._regex import compile_rule

if TYPE_CHECKING:  # rules import the engine (to run their samples), never the reverse
    from scanner.rules import Rule

MARKERS = (b"cendis-scan:allow", b"pragma: allowlist secret")
#: The longest body run read after a prefix; longer runs are reported as possible.
MAX_RUN = tk.MAX_RUN
#: Bytes of line context looked at for markers and variable names.
CONTEXT = 4096
#: How far base64 is decoded after a hit (characters).
DECODE_SPAN = 1024
#: Nested base64 (base64 of base64) is looked for in the first DEEP_LIMIT bytes of an input.
DEEP_LIMIT = 8 << 20
#: A streaming caller must keep this many bytes after a region it asks to scan.
LOOKAHEAD = MAX_RUN + DECODE_SPAN + 256
LOOKBEHIND = CONTEXT

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_NOT_B64 = bytes(b for b in range(256) if b not in _B64)
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_DROP = {0: 0, 1: 2, 2: 3}  # leading base64 chars that mix pad bits with the needle
_VARIABLE = compile_rule(
    rb"""(?:^|[\n\r])[ \t]*(?:export[ \t]+|-[ \t]+|[{,][ \t]*)?["']?([A-Za-z_][A-Za-z0-9_.-]*)"""
    rb"""["']?[ \t]*[:=][ \t]*["']?$"""
)


class Buffer(Protocol):
    """What the detector searches: bytes, a bytearray or a read-only mmap, never
    copied."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def rfind(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def __getitem__(self, key: Any) -> Any: ...
    def __len__(self) -> int: ...


@dataclass(slots=True)
class Hit:
    """One occurrence of a token, already redacted; offsets are in the scanned buffer."""

    rule_id: str
    confidence: tk.Confidence
    offset: int  # where a person must edit: token start, or the start of the base64 run
    end: int  # end of the token, or of the decoded base64 window (what `redact` replaces)
    encoding: str
    redacted: str
    secret_sha256: str
    suppressed: bool
    variable: str | None


@dataclass(frozen=True, slots=True)
class Needle:
    text: bytes
    rule: Rule
    chain: tuple[int, ...]  # byte alignment at each base64 level, outermost first


def _b64_needle(text: bytes, k: int) -> bytes:
    """The characters of base64(``k`` pad bytes + text) that depend only on ``text``."""
    enc = binascii.b2a_base64(b"\0" * k + text, newline=False)
    return enc[_DROP[k] : (k + len(text)) * 8 // 6]


def _needles(rule: Rule) -> tuple[list[Needle], list[Needle]]:
    """(always, deep): plain + single base64; nested base64 is the deep set."""
    always = [Needle(rule.prefix, rule, ())]
    deep = []
    for k in (0, 1, 2):
        one = _b64_needle(rule.prefix, k)
        always.append(Needle(one, rule, (k,)))
        for k2 in (0, 1, 2):
            deep.append(Needle(_b64_needle(one, k2), rule, (k2, k)))
    for group in (always, deep):
        group.extend(
            Needle(n.text.translate(bytes.maketrans(b"+/", b"-_")), n.rule, n.chain)
            for n in list(group)
            if n.chain and (b"+" in n.text or b"/" in n.text)
        )
    return always, deep


def _decode_at(buf: Buffer, p: int, k: int) -> tuple[bytes, int, int, int] | None:
    """Decode the base64 around a needle found at ``p`` with alignment ``k``.

    Returns (decoded, where the needle's text starts in it, run start and window end in
    ``buf``).
    """
    g = p - _DROP[k]
    if g < 0 or buf[g:p].translate(None, _NOT_B64) != buf[g:p]:
        return None
    back = g
    floor = max(0, g - LOOKBEHIND)
    while back > floor and buf[back - 1] in _B64:
        back -= 1
    lo = g - 4 * min((g - back) // 4, 3)
    hi = p
    top = min(len(buf), lo + DECODE_SPAN)
    while hi < top and buf[hi] in _B64:
        hi += 1
    chars = buf[lo:hi].translate(_URLSAFE)
    tail = len(chars) % 4  # unpadded base64: 2 or 3 spare characters still carry bytes
    chars = chars[: len(chars) - 1] if tail == 1 else chars + b"=" * ((4 - tail) % 4)
    try:
        decoded = binascii.a2b_base64(chars)
    except binascii.Error:
        return None
    return decoded, (g - lo) // 4 * 3 + k, back, hi


class Detector:
    """Finds every rule's tokens in a buffer. Stateless between calls, so it can be
    shared by threads and rebuilt cheaply in worker processes."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.always: list[Needle] = []
        self.deep: list[Needle] = []
        for rule in rules:
            always, deep = _needles(rule)
            self.always += always
            self.deep += deep

    def scan_text(self, buf: bytes) -> list[Hit]:
        """A whole buffer at once (samples, small files, decoded text)."""
        return list(self.scan(buf, 0, len(buf), deep=True))

    def scan(self, buf: Buffer, start: int, end: int, *, deep: bool) -> Iterator[Hit]:
        """Hits whose needle starts in ``[start, end)``; ``buf`` must hold LOOKAHEAD
        bytes after ``end`` unless the input ends there."""
        needles = self.always + self.deep if deep else self.always
        hits: list[Hit] = []
        for needle in needles:
            text = needle.text
            stop = min(len(buf), end + len(text) - 1)
            p = buf.find(text, start, stop)
            while p != -1:
                hit = self._resolve(buf, p, needle)
                if hit is not None:
                    hits.append(hit)
                p = buf.find(text, p + 1, stop)
        if len(hits) > 1:
            hits.sort(key=lambda h: h.offset)
        return iter(hits)

    def _resolve(self, buf: Buffer, p: int, needle: Needle) -> Hit | None:
        rule = needle.rule
        inner, at, origin, end = buf, p, p, -1
        for level, k in enumerate(needle.chain):
            decoded = _decode_at(inner, at, k)
            if decoded is None:
                return None
            inner, at, run_start, run_end = decoded
            if level == 0:
                origin, end = run_start, run_end
            if level + 1 < len(needle.chain):
                # The decoded text holds the next level's needle: find where it begins.
                want = _b64_needle(rule.prefix, needle.chain[level + 1])
                if inner[at : at + len(want)].translate(_URLSAFE) != want:
                    return None
        if inner[at : at + len(rule.prefix)] != rule.prefix:
            return None
        body_at = at + len(rule.prefix)
        # A slice, not pos/endpos: RE2 takes C ints, and a file's offsets pass 2 GiB.
        m = rule.run.match(inner[body_at : body_at + MAX_RUN])
        run = m.group(0) if m else b""
        confidence = rule.classify(run)
        if confidence is None:
            return None
        secret = rule.prefix + run
        if end < 0:
            end = p + len(secret)
        line = _line_around(buf, origin, p + len(needle.text))
        encoding = "plain" if not needle.chain else "+".join(["base64"] * len(needle.chain))
        return Hit(
            rule_id=rule.id,
            confidence=confidence,
            offset=origin,
            end=end,
            encoding=encoding,
            redacted=tk.redact(secret, rule.prefix.decode()),
            secret_sha256=tk.secret_sha256(secret),
            suppressed=any(marker in line for marker in MARKERS),
            variable=_variable(buf, origin),
        )


def _line_around(buf: Buffer, lo: int, hi: int) -> bytes:
    start = max(buf.rfind(b"\n", max(0, lo - CONTEXT), lo) + 1, lo - CONTEXT, 0)
    end = buf.find(b"\n", hi, hi + CONTEXT)
    return buf[start : end if end != -1 else min(len(buf), hi + CONTEXT)]


def _variable(buf: Buffer, at: int) -> str | None:
    """The name a token is assigned to on its line (``.env``, YAML, JSON, TOML, INI)."""
    before = buf[max(0, at - 200) : at]
    m = _VARIABLE.search(before)
    if m is None and b"\n" not in before and at <= 200:
        m = _VARIABLE.search(b"\n" + before)
    return m.group(1).decode("ascii", "replace") if m else None
