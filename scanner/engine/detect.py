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

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scanner import token as tk
from scanner.engine import b64, layers
from scanner.engine import literals as lits
from scanner.engine._regex import compile_rule
from scanner.engine.layers import Budget, Seed
from scanner.engine.limits import (  # noqa: F401  (re-exported: callers read them here)
    CONTEXT,
    DECODE_SPAN,
    DEEP_LIMIT,
    LAYER_SPAN,
    LOOKAHEAD,
    LOOKBEHIND,
    MAX_LAYERS,
    MAX_RUN,
)
from scanner.engine.prefilter import Literals, compile_literals
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
#: Seeds of layers searched everywhere, also past the decode window: a gzipped blob,
#: in base64 (``H4sI``) or base64 of base64 (a Helm release), cheap to find (few,
#: and rare in text).
_ALWAYS_SEEDS = (layers.GZIP_MAGIC, *layers.SHORT)


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
    rule: RuleLike | None  # None: a layer's seed (any rule's token may be under it)
    chain: tuple[int, ...]  # byte alignment at each base64 level, outermost first
    role: str = "full"  # full, plain, head/tail (a half of a base64 needle), layer
    whole: bytes = b""  # head/tail: the whole base64 needle
    seed: Seed | None = None  # layer: what to take off where it is found


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


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a Detector's literals are for a set of rule prefixes: the same for every
    Detector of those prefixes (a worker makes one per unit of work), so it is built
    once per process, not ~1,400 needles each time."""

    texts: tuple[bytes, ...]  # every literal (Detector.literals)
    deep: tuple[bytes, ...]  # the deep plan's alternation (without Hyperscan)
    by_head: dict[bytes, list[tuple[bytes, list[Needle]]]]  # the layers' seeds
    always: tuple[Needle, ...]  # the seeds searched past a decode window too
    longest: int


@functools.lru_cache(maxsize=16)
def _plan(prefixes: tuple[bytes, ...], blobs: bool) -> _Plan:
    """The seeds of every layer (:mod:`scanner.engine.layers`) as needles, but for the
    base64 chains that :meth:`Detector._resolve` reads directly; one per seed text and
    layer, whatever the number of rules sharing it."""
    seeds: dict[bytes, dict[str, Needle]] = {}
    deep: set[bytes] = set()
    for prefix in prefixes:
        always, chains = lits.needles(prefix)
        deep.add(prefix)
        deep.update(half for text, chain in always if chain for half in lits.halves(text))
        deep.update(text for text, _ in chains)
        if not blobs:
            continue
        taken = {text for text, _ in always + chains}
        for seed in layers.seeds(prefix):
            if not (seed.layer == layers.BASE64 and seed.text in taken):
                seeds.setdefault(seed.text, {}).setdefault(
                    seed.layer, Needle(seed.text, None, (), "layer", seed=seed))
    by_head: dict[bytes, list[tuple[bytes, list[Needle]]]] = {}
    for text, by_layer in seeds.items():
        by_head.setdefault(text[:2], []).append((text, list(by_layer.values())))
    texts = tuple(lits.texts(list(prefixes), blobs=blobs))
    deep_texts = tuple(sorted(deep | set(seeds)))
    shallow = tuple(n for text in _ALWAYS_SEEDS for n in seeds.get(text, {}).values())
    return _Plan(texts, deep_texts, by_head, shallow, max(map(len, texts), default=1))


class Detector:
    """Finds every rule's tokens in a buffer. Stateless between calls, so it can be
    shared by threads and rebuilt cheaply in worker processes.

    Two search plans. The *deep* plan (everywhere by default; only in the first
    ``decode_window`` bytes of an input when one is set) looks for every literal: the
    prefix, its base64 forms at the three alignments and base64 of those (the two
    halves of each too: a line break inside the needle of a wrapped run leaves one half
    whole), and the seeds of every other layer (:mod:`scanner.engine.layers`: escapes,
    hex, percent, HTML, quoted-printable, gzip and zlib, and these under each other).
    A seed's layer is taken off around it and the result scanned by this same detector,
    one layer deeper, up to MAX_LAYERS, within a per-input :class:`Budget` of decoded
    bytes. The *shallow* plan (past a decode window) looks for the prefix, its base64
    forms and the seeds of a gzipped blob only.

    With Hyperscan (:mod:`scanner.engine.prefilter`) each plan is one pass; without it,
    one RE2 pass over an alternation (deep) or a ``bytes.find`` per literal (shallow).
    The candidates are taken in the same order either way, so the hits are the same;
    RE2 confirms every one.
    """

    def __init__(self, rules: Sequence[RuleLike], *, max_decompressed: int = GZIP_LIMIT,
                 blobs: bool = True, decode_window: int = DEEP_LIMIT):
        self.rules = rules
        self.max_decompressed = max_decompressed
        #: The deep plan runs in ``[0, decode_window)`` of an input (see limits.DEEP_LIMIT):
        #: ``ScanOptions.decode_window``, given by whoever makes the Detector (a worker
        #: too: the options travel with its task).
        self.decode_window = decode_window
        self.always: list[Needle] = []
        self.deep: list[Needle] = []
        literal: dict[bytes, list[Needle]] = {}
        self._blobs = blobs and bool(rules)
        for rule in rules:
            always, deep = _needles(rule)
            self.always += always
            self.deep += deep
            halves = [h for n in always[1:] for h in _halves(n)]
            for lit in always[:1] + halves + deep:
                literal.setdefault(lit.text, []).append(lit)
        self._plan = plan = _plan(tuple(dict.fromkeys(r.prefix for r in rules)), self._blobs)
        self.always += plan.always
        #: The rules' literals by their first two bytes (the seeds' are in the plan).
        self._by_head: dict[bytes, list[tuple[bytes, list[Needle]]]] = {}
        for text, needles in literal.items():
            self._by_head.setdefault(text[:2], []).append((text, needles))
        self._deep_texts = plan.deep
        self._deep_re_: Any = None  # compiled on first use: a hit-free scan needs no RE2
        self._longest = plan.longest
        #: One Hyperscan pass for every literal (the deep plan, git object regions), or
        #: None: the plain search. Past a decode window a second database holds only
        #: the ``always`` literals: fewer, so three times as fast as all of them.
        self.prefilter = compile_literals(self.literals())
        # Built on first use (a Detector is made per unit of work in every worker, and
        # most units never pass a decode window).
        self._shallow_: Literals | None = None
        self._always_at: dict[int, list[int]] = {}
        self._inflate_only: dict[int, int] | None = None

    @property
    def _shallow(self) -> Literals | None:
        """The ``always`` literals' database, past a decode window (with the prefilter)."""
        if self._shallow_ is None and self.prefilter is not None:
            db = Literals(sorted({n.text for n in self.always}))
            by_text = {t: i for i, t in enumerate(db.texts)}
            at: dict[int, list[int]] = {}
            for n, needle in enumerate(self.always):
                at.setdefault(by_text[needle.text], []).append(n)
            # Threads may race here: each builds its own pair, and either pair is right.
            self._always_at, self._shallow_ = at, db
        return self._shallow_

    def literals(self) -> list[bytes]:
        """Every literal either search plan looks for: a prefilter (git blobs) that
        keeps only inputs holding one of these misses nothing the detector finds."""
        return list(self._plan.texts)

    def inflate_only(self) -> dict[int, int]:
        """The prefilter's literals that are nothing but a gzip or zlib magic number
        (index -> zlib ``wbits``). Two or three bytes long, they turn up every few tens
        of KB of binary data; what they start holds something only where it inflates,
        which a region search (an image's members) can test before it pays for a full
        scan of the member (see :func:`scanner.engine.marks.marked`)."""
        if self._inflate_only is None:
            out: dict[int, int] = {}
            for i, text in enumerate(self.literals() if self.prefilter is not None else ()):
                own = [n for t, ns in self._by_head.get(text[:2], ()) if t == text for n in ns]
                seeds = {n.seed.layer for t, ns in self._plan.by_head.get(text[:2], ())
                         if t == text for n in ns if n.seed is not None}
                if not own and len(seeds) == 1 and seeds <= {layers.GZIP, layers.ZLIB}:
                    out[i] = 31 if layers.GZIP in seeds else 15
            self._inflate_only = out
        return self._inflate_only

    def budget(self) -> Budget:
        """The decoded bytes one input may produce (give one to every :meth:`scan` of
        the same input)."""
        return Budget(self.max_decompressed)

    def scan_text(self, buf: bytes, *, depth: int = 0, budget: Budget | None = None
                  ) -> list[Hit]:
        """A whole buffer at once (samples, small files, decoded text)."""
        return list(self.scan(buf, 0, len(buf), deep=True, depth=depth, budget=budget))

    @property
    def _deep_re(self) -> Any:
        if self._deep_re_ is None:
            self._deep_re_ = compile_rule(b"|".join(re.escape(t) for t in self._deep_texts),
                                          max_mem=256 << 20)
        return self._deep_re_

    def candidates(self, buf: Buffer, start: int, stop: int) -> list[int]:
        """Sorted offsets in ``buf[start:stop]`` where a literal of :meth:`literals`
        starts (a region prefilter, as for git objects): one Hyperscan pass, or without
        it one RE2 pass over the alternation of the deep plan (every literal of
        :meth:`literals` starts with one of its texts: a base64 needle with its head
        half), never a ``bytes.find`` per literal (~1,400 of them: 2 MB/s)."""
        if self.prefilter is not None:
            return [p for p, _ in self.prefilter.find(buf, start, stop)]
        return [start + p for p in self._deep_starts(buf, start, stop, stop)]

    def _deep_starts(self, buf: Buffer, start: int, stop: int, end: int) -> Iterator[int]:
        """Offsets (from ``start``) in ``buf[start:stop]`` where a deep literal starts,
        before ``end``: RE2 over a view of that span (positions are C ints in RE2, and a
        file's offsets pass 2 GiB)."""
        with memoryview(buf) as whole, whole[start:stop] as view:  # type: ignore[arg-type]
            search = self._deep_re.search
            m = search(view)
            while m is not None and start + m.start() < end:
                yield m.start()
                m = search(view, m.start() + 1)

    def scan(self, buf: Buffer, start: int, end: int, *, deep: bool, depth: int = 0,
             budget: Budget | None = None) -> Iterator[Hit]:
        """Hits whose needle starts in ``[start, end)``; ``buf`` must hold LOOKAHEAD
        bytes after ``end`` unless the input ends there. ``depth`` layers are already
        taken off ``buf``; ``budget`` is the input's (a new one when not given)."""
        if budget is None:
            budget = self.budget()
        if self.prefilter is not None:
            return self._scan_prefiltered(buf, start, end, deep, depth, budget)
        hits: list[list[Hit]] = []  # one list per literal taken
        if deep:
            stop = min(len(buf), end + self._longest - 1)
            for p in [start + q for q in self._deep_starts(buf, start, stop, end)]:
                for n in self._at(buf, p):
                    hits.append(self._take(buf, p, n, depth, budget))
        else:
            for needle in self.always:
                text = needle.text
                stop = min(len(buf), end + len(text) - 1)
                p = buf.find(text, start, stop)
                while p != -1:
                    hits.append(self._take(buf, p, needle, depth, budget))
                    p = buf.find(text, p + 1, stop)
        return iter(_unique(hits))

    def _scan_prefiltered(self, buf: Buffer, start: int, end: int, deep: bool, depth: int,
                          budget: Budget) -> Iterator[Hit]:
        """:meth:`scan` from one Hyperscan pass: the same candidates, taken in the same
        order as the plain plans take them, so the hits are the same."""
        db = self.prefilter if deep else self._shallow
        assert db is not None
        stop = min(len(buf), end + db.longest - 1)
        found = [(p, i) for p, i in db.find(buf, start, stop) if p < end]
        hits: list[list[Hit]] = []  # one list per literal taken
        if deep:
            for p in sorted({p for p, _ in found}):
                for needle in self._at(buf, p):
                    hits.append(self._take(buf, p, needle, depth, budget))
        else:
            always_at = self._always_at
            todo = sorted((n, p) for p, i in found for n in always_at.get(i, ()))
            for index, at in todo:
                hits.append(self._take(buf, at, self.always[index], depth, budget))
        return iter(_unique(hits))

    def _take(self, buf: Buffer, p: int, needle: Needle, depth: int, budget: Budget
              ) -> list[Hit]:
        if needle.role == "layer":
            return self._layer(buf, p, needle, depth, budget)
        if needle.role == "plain" and _soft_break_after(buf, p, needle):
            soft = Needle(needle.text, None, (), "layer", seed=Seed(needle.text, layers.QP))
            hits = self._layer(buf, p, soft, depth, budget)
            if hits:
                return hits
        hit = self._resolve(buf, p, needle)
        return [] if hit is None else [hit]

    def _at(self, buf: Buffer, p: int) -> Iterator[Needle]:
        """Every deep literal that starts at ``p`` (literals may share a start)."""
        window = bytes(buf[p : p + self._longest])
        for text, needles in self._by_head.get(window[:2], ()):
            if window.startswith(text):
                yield from needles
        for text, needles in self._plan.by_head.get(window[:2], ()):
            if window.startswith(text):
                yield from needles

    def _layer(self, buf: Buffer, p: int, needle: Needle, depth: int, budget: Budget
               ) -> list[Hit]:
        """Take the seed's layer off around ``p`` and scan what it held, one layer
        deeper; the hits are placed where the layer's encoded text starts."""
        assert needle.seed is not None
        if needle.seed.layer in (layers.GZIP, layers.ZLIB):
            return self._inflated(buf, p, needle, depth, budget)
        layer = layers.peel(buf, p, needle.seed, budget)
        if layer is None:
            return []
        if depth >= MAX_LAYERS:
            budget.too_deep()
            return []
        inner = self.scan_text(layer.data, depth=depth + 1, budget=budget)
        return self._wrap(buf, p, needle, layer, inner)

    def _inflated(self, buf: Buffer, p: int, needle: Needle, depth: int, budget: Budget
                  ) -> list[Hit]:
        """A gzip or zlib stream inside the input, inflated and scanned as a stream
        (LOOKBEHIND bytes kept before each piece, LOOKAHEAD after, as for stdin): a
        token anywhere in it is found, up to the input's budget, in constant memory.
        But a zlib stream in the input's own bytes (``x\x9c``: PNG pixels, PDF pages,
        git pack objects, none of them written to hide text) is read to LAYER_SPAN only,
        as before: inflating each to the budget made the clean git/git tree 2.5 s
        slower and its test pack (t5004/big-pack.zip) an error."""
        assert needle.seed is not None
        raw_zlib = needle.seed.layer == layers.ZLIB and depth == 0
        stream = layers.Inflated(buf, p, needle.seed.layer, budget,
                                 cap=LAYER_SPAN if raw_zlib else None)
        inner: list[Hit] = []
        window, scanned = b"", 0  # scanned: offset in window up to which seeds were sought
        pieces = iter(stream)
        piece = next(pieces, None)
        if piece is not None and depth >= MAX_LAYERS:
            budget.too_deep()
            return []
        while piece is not None:
            window += piece
            piece = next(pieces, None)
            limit = len(window) if piece is None else len(window) - LOOKAHEAD
            if limit > scanned:
                inner += self.scan(window, scanned, limit, deep=True, depth=depth + 1,
                                   budget=budget)
                scanned = limit
            drop = max(0, scanned - LOOKBEHIND)
            window, scanned = window[drop:], scanned - drop
        layer = layers.Layer(needle.seed.layer, b"", p, stream.end)
        return self._wrap(buf, p, needle, layer, inner)

    def _wrap(self, buf: Buffer, p: int, needle: Needle, layer: layers.Layer,
              inner: list[Hit]) -> list[Hit]:
        inner = [h for h in inner if h.end > layer.skip]
        if not inner:
            return []
        line = _line_around(buf, layer.start, max(p + len(needle.text), layer.start + 1))
        marked = any(marker in line for marker in MARKERS)
        at = _block_start(buf, layer.start) if layer.name == layers.BASE64 else layer.start
        var = _variable(buf, at)
        return [Hit(h.rule_id, h.confidence, layer.start, layer.end,
                    layer.name if h.encoding == "plain" else f"{layer.name}+{h.encoding}",
                    h.redacted, h.secret_sha256, h.suppressed or marked,
                    h.variable or var) for h in inner]

    def _resolve(self, buf: Buffer, p: int, needle: Needle) -> Hit | None:
        rule = needle.rule
        assert rule is not None  # a layer's seed is taken by _layer
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


def _unique(groups: list[list[Hit]]) -> list[Hit]:
    """Hits sorted by offset, each token once per place (two seeds may reach the same
    token through the same layer), and once per occurrence: a layer that keeps an inner
    one verbatim (a stored deflate block holds an inner gzip, or the token itself) gives
    the token from inside its own span too, which only the outermost path names.
    ``groups``: the hits of each literal taken; those of one layer are distinct
    occurrences inside it (a Helm release holds the token twice, under different
    layers), already made unique where they were found."""
    if sum(map(len, groups)) > 1:
        seen: set[tuple[str, int, str, str]] = set()
        out: list[tuple[Hit, int]] = []
        tagged = [(h, g) for g, group in enumerate(groups) for h in group]
        for h, g in sorted(tagged, key=lambda t: (t[0].offset, -t[0].end)):
            here = ("at", h.offset, h.secret_sha256, h.encoding)
            there = ("end", h.end, h.secret_sha256, h.encoding)
            if here in seen or there in seen:
                continue
            seen.update((here, there))
            near = range(max(0, len(out) - 8), len(out))
            if any(out[i][1] != g and _covers(out[i][0], h) for i in near):
                continue
            covered = [i for i in near if out[i][1] != g and _covers(h, out[i][0])]
            if covered:  # the same span read through more of its layers
                out[covered[0]] = (h, g)
                continue
            out.append((h, g))
        return [h for h, _ in out]
    return [h for group in groups for h in group]


def _covers(outer: Hit, inner: Hit) -> bool:
    """``inner`` is ``outer``'s token found again within ``outer``'s encoded text through
    only some of its layers (a stored deflate block keeps an inner gzip, its base64 or
    the token itself as it is): the same occurrence, which ``outer`` names in full."""
    if (inner.secret_sha256 != outer.secret_sha256 or inner.encoding == outer.encoding
            or not outer.offset <= inner.offset <= inner.end <= outer.end):
        return False
    want = iter(outer.encoding.split("+"))
    return inner.encoding == "plain" or all(n in want for n in inner.encoding.split("+"))


def _soft_break_after(buf: Buffer, p: int, needle: Needle) -> bool:
    """A quoted-printable soft line break (``=`` ending the line) right after the body
    run of a plain prefix at ``p``: the encoder cut the token there (76 columns), so the
    token is read with quoted-printable taken off, from the prefix on."""
    assert needle.rule is not None
    body_at = p + len(needle.text)
    m = needle.rule.run.match(bytes(buf[body_at : body_at + MAX_RUN]))
    after = body_at + (len(m.group(0)) if m else 0)
    tail = bytes(buf[after : after + 3])
    return tail[:2] == b"=\n" or tail == b"=\r\n"


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
