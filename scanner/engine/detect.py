"""The detector: bytes in, redacted hits out.

The hot loop looks for fixed strings only (the rule's prefix and its base64 forms at the
three byte alignments): one Hyperscan pass for all of them, or without Hyperscan a
handful of ``bytes.find`` calls; RE2 only runs where a literal was found. A base64 hit
is decoded locally (a window around the hit, aligned from the needle itself, so the
run's start never has to be found first) and the decoded bytes are checked at exactly
the place the needle promised.
See PERF-NOTES.md: an alternation or a character-class scan over every byte would cost
5-10x.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scanner import token as tk
from scanner.engine import b64
from scanner.engine import literals as lits
from scanner.engine._regex import compile_rule
from scanner.engine.inputs import gunzip, scan_stream
from scanner.engine.limits import (  # noqa: F401  (re-exported: callers read them here)
    CONTEXT,
    DECODE_SPAN,
    DEEP_LIMIT,
    LOOKAHEAD,
    LOOKBEHIND,
    MAX_RUN,
)
from scanner.engine.literals import GZIP_B64
from scanner.engine.prefilter import Literals, compile_literals
from scanner.errors import SourceError
from scanner.result import GZIP_LIMIT

MARKERS = (b"cendis-scan:allow", b"pragma: allowlist secret")

_VARIABLE = compile_rule(
    rb"""(?:^|[\n\r])[ \t]*(?:export[ \t]+|-[ \t]+|[{,][ \t]*)?["']?([A-Za-z_][A-Za-z0-9_.-]*)"""
    rb"""["']?[ \t]*[:=][ \t]*(?:[|>][-+0-9]*[ \t]*\r?\n[ \t]*)?["']?$"""
)
#: The nearest quoted key before a value, anywhere on its line: JSON (``{"a":1,"token":"``),
#: nested objects, Python dicts.
_QUOTED_KEY = compile_rule(
    rb"""(?:"([^"\\\r\n]{1,128})"|'([^'\\\r\n]{1,128})')[ \t]*:[ \t]*["']?$"""
)
#: One character of escaped text: ``\uXXXX``, ``\xXX`` or itself.
_ESCAPED_CHAR = compile_rule(rb"(?s)\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|.")
#: The longest base64 blob (characters) decoded to look for gzip inside.
BLOB_SPAN = 4 << 20


class Buffer(Protocol):
    """What the detector searches: bytes, a bytearray or a read-only mmap, never
    copied."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def rfind(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def __getitem__(self, key: Any) -> Any: ...
    def __len__(self) -> int: ...


class RuleLike(Protocol):
    """What the detector needs of a rule (:class:`scanner.rules.Rule` is one). Rules
    are data the engine consumes; they import the engine to run their samples, so the
    engine names only this shape, never the rules module."""

    @property
    def id(self) -> str: ...
    @property
    def prefix(self) -> bytes: ...
    @property
    def run(self) -> Any: ...
    def classify(self, run: bytes) -> tk.Confidence | None: ...


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
    rule: RuleLike
    chain: tuple[int, ...]  # byte alignment at each base64 level, outermost first
    role: str = "full"  # full, plain, head/tail (a half of a base64 needle), escape
    whole: bytes = b""  # head/tail: the whole base64 needle


def _needles(rule: RuleLike) -> tuple[list[Needle], list[Needle]]:
    """(always, deep): plain + single base64; nested base64 is the deep set."""
    always, deep = lits.needles(rule.prefix)
    return ([Needle(text, rule, chain, "full" if chain else "plain") for text, chain in always],
            [Needle(text, rule, chain) for text, chain in deep])


def _halves(needle: Needle) -> list[Needle]:
    """A base64 needle split in two: a line break inside the needle leaves one half whole
    (the head when it falls in the second half, the tail when it falls in the first)."""
    head, tail = lits.halves(needle.text)
    return [Needle(head, needle.rule, needle.chain, "head", needle.text),
            Needle(tail, needle.rule, needle.chain, "tail", needle.text)]


def _escapes(rule: RuleLike) -> list[Needle]:
    """The prefix with its first character written as a ``\\uXXXX`` escape (JSON,
    JavaScript; the form JSON encoders use to hide a string from naive scanners), as
    ``\\xXX``, or with its first two characters escaped (a fully escaped string). Only
    the first character: each literal costs a little in the RE2 pass."""
    return [Needle(text, rule, (), "escape") for text in lits.escapes(rule.prefix)]


class Detector:
    """Finds every rule's tokens in a buffer. Stateless between calls, so it can be
    shared by threads and rebuilt cheaply in worker processes.

    Two search plans. Past the first DEEP_LIMIT bytes of an input (the hot path of a
    large log) only ``bytes.find`` runs, once per literal: the prefix and its base64
    forms at the three alignments. In the first DEEP_LIMIT bytes one RE2 pass over an
    alternation of literals replaces those finds and adds, at no extra cost (13
    separate finds cost as much as one RE2 pass over 20 literals; past ~25 literals the
    pass gets slower, so the set is kept small): nested base64, the two halves of each
    base64 needle (a line break inside the needle of a wrapped run leaves one half
    whole), ``\\u0063endis_pat_``-style escapes, and the start of a gzipped blob in
    base64 (``H4sI``).

    With Hyperscan (:mod:`scanner.engine.prefilter`) both plans keep their literal
    sets but each is one Hyperscan pass, and the candidates are taken in the same order
    as above, so the hits are the same; RE2 confirms every one.
    """

    def __init__(self, rules: Sequence[RuleLike], *, max_decompressed: int = GZIP_LIMIT,
                 blobs: bool = True):
        self.rules = rules
        self.max_decompressed = max_decompressed
        self.always: list[Needle] = []
        self.deep: list[Needle] = []
        literal: dict[bytes, list[Needle]] = {}
        for rule in rules:
            always, deep = _needles(rule)
            self.always += always
            self.deep += deep
            halves = [h for n in always[1:] for h in _halves(n)]
            for lit in always[:1] + _escapes(rule) + halves + deep:
                literal.setdefault(lit.text, []).append(lit)
        self._by_literal = literal
        self._blobs = blobs and bool(rules)
        texts = sorted(literal) + ([GZIP_B64] if self._blobs else [])
        self._deep_texts = texts
        self._deep_re_: Any = None  # compiled on first use: a hit-free scan needs no RE2
        self._longest = max((len(t) for t in texts), default=1)
        #: One Hyperscan pass for every literal (the deep plan, git object regions), or
        #: None: the plain search. Past DEEP_LIMIT a second database holds only the
        #: ``always`` literals: fewer and longer, so twice as fast as all of them.
        self.prefilter = compile_literals(self.literals())
        # Built on first use (a Detector is made per unit of work in every worker, and
        # most units never pass DEEP_LIMIT nor hold a gzipped blob).
        self._shallow_: Literals | None = None
        self._always_at: dict[int, list[int]] = {}
        self._inner_: Detector | None = None

    @property
    def _shallow(self) -> Literals | None:
        """The ``always`` literals' database, past DEEP_LIMIT (with the prefilter)."""
        if self._shallow_ is None and self.prefilter is not None:
            db = Literals(sorted({n.text for n in self.always}))
            by_text = {t: i for i, t in enumerate(db.texts)}
            at: dict[int, list[int]] = {}
            for n, needle in enumerate(self.always):
                at.setdefault(by_text[needle.text], []).append(n)
            # Threads may race here: each builds its own pair, and either pair is right.
            self._always_at, self._shallow_ = at, db
        return self._shallow_

    @property
    def _inner(self) -> Detector | None:
        """The detector for what a gzipped base64 blob holds (no blobs in blobs)."""
        if self._inner_ is None and self._blobs:
            self._inner_ = Detector(self.rules, max_decompressed=self.max_decompressed,
                                    blobs=False)
        return self._inner_

    def literals(self) -> list[bytes]:
        """Every literal either search plan looks for: a prefilter (git blobs) that
        keeps only inputs holding one of these misses nothing the detector finds."""
        texts = {n.text for n in self.always + self.deep} | set(self._by_literal)
        return sorted(texts | ({GZIP_B64} if self._blobs else set()))

    def scan_text(self, buf: bytes) -> list[Hit]:
        """A whole buffer at once (samples, small files, decoded text)."""
        return list(self.scan(buf, 0, len(buf), deep=True))

    @property
    def _deep_re(self) -> Any:
        if self._deep_re_ is None:
            self._deep_re_ = compile_rule(b"|".join(re.escape(t) for t in self._deep_texts))
        return self._deep_re_

    def candidates(self, buf: Buffer, start: int, stop: int) -> list[int]:
        """Sorted offsets in ``buf[start:stop]`` where any literal of :meth:`literals`
        lies whole (a region prefilter, as for git objects). Needs :attr:`prefilter`."""
        assert self.prefilter is not None
        return [p for p, _ in self.prefilter.find(buf, start, stop)]

    def scan(self, buf: Buffer, start: int, end: int, *, deep: bool) -> Iterator[Hit]:
        """Hits whose needle starts in ``[start, end)``; ``buf`` must hold LOOKAHEAD
        bytes after ``end`` unless the input ends there."""
        if self.prefilter is not None:
            return self._scan_prefiltered(buf, start, end, deep)
        hits: list[Hit] = []
        if deep:
            stop = min(len(buf), end + self._longest - 1)
            m = self._deep_re.search(buf, start, stop)
            while m is not None and m.start() < end:
                p = m.start()
                for n in self._at(buf, p):
                    hit = self._resolve(buf, p, n)
                    if hit is not None:
                        hits.append(hit)
                if self._blobs and buf[p : p + len(GZIP_B64)] == GZIP_B64:
                    hits += self._blob(buf, p)
                m = self._deep_re.search(buf, p + 1, stop)
        else:
            for needle in self.always:
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

    def _scan_prefiltered(self, buf: Buffer, start: int, end: int, deep: bool
                          ) -> Iterator[Hit]:
        """:meth:`scan` from one Hyperscan pass: the same candidates, taken in the same
        order as the plain plans take them, so the hits are the same."""
        db = self.prefilter if deep else self._shallow
        assert db is not None
        stop = min(len(buf), end + db.longest - 1)
        found = [(p, i) for p, i in db.find(buf, start, stop) if p < end]
        hits: list[Hit] = []
        if deep:
            for p in sorted({p for p, _ in found}):
                for needle in self._at(buf, p):
                    hit = self._resolve(buf, p, needle)
                    if hit is not None:
                        hits.append(hit)
                if self._blobs and buf[p : p + len(GZIP_B64)] == GZIP_B64:
                    hits += self._blob(buf, p)
        else:
            always_at = self._always_at
            todo = sorted((n, p) for p, i in found for n in always_at.get(i, ()))
            for index, at in todo:
                hit = self._resolve(buf, at, self.always[index])
                if hit is not None:
                    hits.append(hit)
        if len(hits) > 1:
            hits.sort(key=lambda h: h.offset)
        return iter(hits)

    def _at(self, buf: Buffer, p: int) -> Iterator[Needle]:
        """Every deep literal that starts at ``p`` (literals may share a start)."""
        window = bytes(buf[p : p + self._longest])
        for text, needles in self._by_literal.items():
            if window.startswith(text):
                yield from needles

    def _resolve(self, buf: Buffer, p: int, needle: Needle) -> Hit | None:
        if needle.role == "escape":
            return self._escaped(buf, p, needle)
        rule = needle.rule
        inner: Any = buf
        at, origin, end = p, p, -1
        for level, k in enumerate(needle.chain):
            decoded = self._decode(inner, at, k, needle if level == 0 else None)
            if decoded is None:
                return None
            inner, at, run_start, run_end = decoded
            if level == 0:
                origin, end = run_start, run_end
            if level + 1 < len(needle.chain):
                # The decoded text holds the next level's needle: find where it begins.
                want = lits.b64_needle(rule.prefix, needle.chain[level + 1])
                if inner[at : at + len(want)].translate(b64.URLSAFE) != want:
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
        line = _line_around(buf, origin, max(p + len(needle.text), origin + 1))
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
            variable=_variable(buf, _block_start(buf, origin) if needle.chain else origin),
        )

    @staticmethod
    def _decode(buf: Any, p: int, k: int, needle: Needle | None
                ) -> tuple[bytes, int, int, int] | None:
        """Decode the (possibly wrapped) base64 around a needle found at ``p``.

        For a half needle, the whole needle is looked for in the joined run: the tail
        half only answers when the head half is not there whole (else the head's hit
        already covers it)."""
        run = b64.joined(buf, p, max(0, p - LOOKBEHIND), min(len(buf), p + LOOKAHEAD))
        jp = run.index(p)
        if jp is None:
            return None
        if needle is not None and needle.role == "tail":
            head = needle.whole[: len(needle.whole) - len(needle.text)]
            if buf[p - len(head) : p] == head:
                return None
            jp -= len(head)
        if needle is not None and needle.role in ("head", "tail") and (
                jp < 0 or run.chars[jp : jp + len(needle.whole)] != needle.whole):
            return None
        return b64.decode(run, jp, k, DECODE_SPAN)

    def _escaped(self, buf: Buffer, p: int, needle: Needle) -> Hit | None:
        """A prefix written with ``\\uXXXX``/``\\xXX`` escapes: unescape a window, then
        read the token as plain text."""
        rule = needle.rule
        window = bytes(buf[p : p + 6 * (len(rule.prefix) + MAX_RUN)])
        text = bytearray()
        ends: list[int] = []
        for m in _ESCAPED_CHAR.finditer(window):
            code = m.group(1) or m.group(2)
            c = int(code, 16) if code else window[m.start()]
            if c > 0x7F:
                break
            text.append(c)
            ends.append(p + m.end())
        if not text.startswith(rule.prefix):
            return None
        body = bytes(text[len(rule.prefix) :])
        m = rule.run.match(body, 0, min(len(body), MAX_RUN))
        run = m.group(0) if m else b""
        confidence = rule.classify(run)
        if confidence is None:
            return None
        secret = rule.prefix + run
        line = _line_around(buf, p, ends[len(secret) - 1])
        return Hit(
            rule_id=rule.id, confidence=confidence, offset=p, end=ends[len(secret) - 1],
            encoding="escaped", redacted=tk.redact(secret, rule.prefix.decode()),
            secret_sha256=tk.secret_sha256(secret),
            suppressed=any(marker in line for marker in MARKERS), variable=_variable(buf, p))

    def _blob(self, buf: Buffer, p: int) -> list[Hit]:
        """A base64 blob that starts with gzip's magic: decoded, decompressed (within
        ``max_decompressed``) and scanned. A blob that is not really gzip is skipped."""
        if p > 0 and buf[p - 1] in b64.B64:
            return []  # not the start of a run
        data, end = b64.whole_run(buf, p, min(len(buf), p + BLOB_SPAN))
        assert self._inner is not None
        hits = []
        line = _line_around(buf, p, p + len(GZIP_B64))
        try:
            for loc in scan_stream(self._inner, gunzip([data], self.max_decompressed)):
                h = loc.hit
                more = "" if h.encoding == "plain" else "+" + h.encoding
                hits.append(Hit(h.rule_id, h.confidence, p, end, "base64+gzip" + more,
                                h.redacted, h.secret_sha256,
                                h.suppressed or any(mk in line for mk in MARKERS),
                                h.variable or _variable(buf, _block_start(buf, p))))
        except SourceError as exc:
            if "expands beyond" in str(exc):
                raise
        return hits


def _line_around(buf: Buffer, lo: int, hi: int) -> bytes:
    start = max(buf.rfind(b"\n", max(0, lo - CONTEXT), lo) + 1, lo - CONTEXT, 0)
    end = buf.find(b"\n", hi, hi + CONTEXT)
    return buf[start : end if end != -1 else min(len(buf), hi + CONTEXT)]


def _block_start(buf: Buffer, origin: int) -> int:
    """The first line of a wrapped base64 block holding ``origin``: its name is there."""
    run = b64.joined(buf, origin, max(0, origin - LOOKBEHIND), min(len(buf), origin + 1))
    return run.offsets[0]


def _variable(buf: Buffer, at: int) -> str | None:
    """The name a token is assigned to: the nearest quoted key before it on its line
    (JSON, also when other keys come first), else the line's key (``.env``, YAML, TOML,
    INI, a YAML block scalar's key)."""
    before = buf[max(0, at - 200) : at]
    line = before[before.rfind(b"\n") + 1 :]
    m = _QUOTED_KEY.search(line)
    if m is not None:
        key = m.group(1) if m.group(1) is not None else m.group(2)
        return key.decode("utf-8", "replace")
    m = _VARIABLE.search(before)
    if m is None and b"\n" not in before and at <= 200:
        m = _VARIABLE.search(b"\n" + before)
    return m.group(1).decode("ascii", "replace") if m else None
