"""The one function every string passes through before it leaves the tool.

Paths, git identities, ref names, commit messages, arguments quoted back in error
messages: any of them can hold a token, so none is printed, logged or written as is.
:func:`scrub` replaces every token-shaped run by its redacted form and escapes control
characters (a newline or a terminal escape sequence in a file name must not forge a
line of output). Cheap and dependency-free: it runs on the hook path.

A token is found whole, base64-encoded (either alphabet, any alignment), and behind the
escapes a URL or a string literal puts on it (``%5F``, ``%2B`` inside base64, ``\\x5f``,
``&#95;``, nested up to :data:`DECODE_ROUNDS` times): a partner's record URL or a client's
``?access_token=`` query is text from outside, and the store, the API and the revoke call
must never carry a token in any of those forms.

Not to be confused with :mod:`scanner.redact_filter`, the ``redact`` command's stream
filter, which runs the full detector over a log: this module is the tool's own output
guard, a fixed and cheap pass for one token format.
"""

from __future__ import annotations

import binascii
import html
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

from scanner.engine.literals import TO_URLSAFE, b64_needle
from scanner.token import PREFIX, redact

_BODY = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")
#: Shorter runs after the prefix are placeholders and shown as they are.
SHOWN = 8


def redact_tokens(text: str, prefixes: tuple[str, ...] = (PREFIX,)) -> str:
    """Every run of body characters after a prefix that is at least SHOWN long becomes
    its redacted form (``cendis_pat_WEKi…Xv``)."""
    for prefix in prefixes:
        if prefix not in text:
            continue
        out: list[str] = []
        pos = 0
        at = text.find(prefix)
        while at != -1:
            end = at + len(prefix)
            while end < len(text) and text[end] in _BODY:
                end += 1
            if end - at - len(prefix) >= SHOWN:
                out += [text[pos:at], redact(text[at:end], prefix)]
                pos = end
            at = text.find(prefix, max(end, at + 1))
        out.append(text[pos:])
        text = "".join(out)
    return text


def _b64_needles(prefix: str) -> tuple[str, ...]:
    """The characters of base64(``k`` pad bytes + prefix) that depend only on the prefix,
    at the three alignments, standard and URL-safe."""
    out = []
    for k in (0, 1, 2):
        needle = b64_needle(prefix.encode(), k)
        out += [needle.decode(), needle.translate(TO_URLSAFE).decode()]
    return tuple(dict.fromkeys(out))


_NEEDLES = _b64_needles(PREFIX)


def redact_base64(text: str, needles: tuple[str, ...] = _NEEDLES) -> str:
    """A base64 run that encodes a token (a file named after ``base64(token)``, an
    e-mail address made of one) becomes ``[base64 of cendis_pat_WEKi…Xv]``: the whole run
    goes, since any part of it may carry token bits."""
    if not any(n in text for n in needles):
        return text
    spans: list[tuple[int, int]] = []
    for needle in needles:
        at = text.find(needle)
        while at != -1:
            lo, hi = at, at + len(needle)
            while lo > 0 and text[lo - 1] in _B64 and text[lo - 1] != "=":
                lo -= 1  # "=" only pads a run's end: "?blob=" is not part of the run
            while hi < len(text) and text[hi] in _B64:
                hi += 1
            spans.append((lo, hi))
            at = text.find(needle, hi)
    out, pos = [], 0
    for lo, hi in sorted(spans):
        if lo < pos:
            continue
        out += [text[pos:lo], _decoded_label(text[lo:hi])]
        pos = hi
    out.append(text[pos:])
    return "".join(out)


def _decoded_label(run: str) -> str:
    """What replaces a base64 run: the redacted token it decodes to, when it does."""
    chars = run.rstrip("=").replace("-", "+").replace("_", "/")
    for skip in range(4):
        body = chars[skip:]
        body = body[:-1] if len(body) % 4 == 1 else body + "=" * (-len(body) % 4)
        try:
            decoded = binascii.a2b_base64(body).decode("latin-1")
        except (binascii.Error, ValueError):
            continue
        shown = redact_tokens(decoded)
        if PREFIX in decoded and shown != decoded:
            at = shown.find(PREFIX)
            end = at + len(PREFIX)
            while end < len(shown) and (shown[end] in _BODY or shown[end] == "…"):
                end += 1
            return f"[base64 of {shown[at:end]}]"
    return "[base64 redacted]"


#: How many layers of escaping are undone when looking for a token behind them.
DECODE_ROUNDS = 5
_BACKSLASH = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))")
#: A CSS escape (``\5f `` with its optional closing white space) or a backslash before a
#: character that needs none (``\_`` in Markdown).
_CSS = re.compile(r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[ \t\r\n\f])?|([^0-9a-fA-F\r\n\f]))")
#: Quoted-printable: ``=5F`` (a printable character: ``?id=12`` is left alone) and soft
#: line breaks.
_QP = re.compile(r"=(?:([2-7][0-9A-Fa-f])|\r?\n)")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
#: Decoded bytes worth reading on: a run of printable ASCII (an escaped token's start).
_TEXT = re.compile(rb"[ -~]{10,}")


def _hints() -> tuple[str, ...]:
    """What may hide a token from the plain search, besides non-ASCII text (a format
    character or a look-alike): an escape (``%``, ``\\``, ``&``, ``=``), or the start of
    ``cendis``, hex-encoded or percent-encoded, in base64 at any alignment, or in hex
    (five digits, the same in either case where they are digits)."""
    seeds = [b"cendis", b"%63%65", b"63656e"]
    out = ["%", "\\", "&", "="]
    for seed in seeds:
        for k in (0, 1, 2):
            needle = b64_needle(seed, k)
            out += [needle.decode(), needle.translate(TO_URLSAFE).decode()]
            out += [needle[:3].hex(), needle[:3].hex().upper()]
    out += [b"cen".hex()[:5]]
    return tuple(dict.fromkeys(out))


_HINTS = _hints()
_HINTED = re.compile("|".join(re.escape(hint) for hint in _HINTS))  # one C-speed pass
#: Dropped from the copy that is searched: format characters (zero-width space and
#: joiners, soft hyphen, BOM, bidi controls) and combining marks, invisible or nearly.
_HIDDEN = frozenset({"Cf", "Mn", "Me"})


def _unbackslash(text: str) -> str:
    return _BACKSLASH.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


def _char(code: int) -> str:
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code < 0xE000 else "\ufffd"


def _normalised(text: str) -> str:
    """NFKC (fullwidth ``ｃｅｎｄｉｓ＿`` is ``cendis_``) without format characters and
    combining marks (an accent is dropped: ``é`` is ``e``); ``…`` (a redacted form's) is
    kept. Texts with none of these are returned as they are, cheaply."""
    if text.isascii():
        return text
    if unicodedata.is_normalized("NFKD", text) and not any(
            unicodedata.category(c) in _HIDDEN for c in set(text) if c > "\x7f"):
        return text
    if "…" in text:
        return "…".join(_normalised(part) for part in text.split("…"))
    folded = unicodedata.normalize("NFKD", text)
    for hidden in {c for c in set(folded) if c > "\x7f" and unicodedata.category(c) in _HIDDEN}:
        folded = folded.replace(hidden, "")
    return unicodedata.normalize("NFKC", folded)


def _css(m: re.Match[str]) -> str:
    """One CSS escape; ``\\5F92vW`` (no closing space) read as ``_92vW``, as a person
    reads it, when its first two digits are a printable ASCII character."""
    digits = m.group(1)
    if digits is None:
        return m.group(2)
    if len(digits) > 2 and 0x20 <= int(digits[:2], 16) < 0x7F:
        return chr(int(digits[:2], 16)) + m.group(0)[3:]
    return _char(int(digits, 16))


def _unpercent(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _unescape(text: str) -> str:
    """Backslash escapes (C, JSON, CSS) and HTML entities."""
    if "\\" in text:
        text = _CSS.sub(_css, _unbackslash(text))
    return html.unescape(text) if "&#" in text or "&" in text and ";" in text else text


def _unqp(text: str) -> str:
    """Quoted-printable: ``=5F`` and soft line breaks."""
    if "=" not in text:
        return text
    return _QP.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else "", text)


def _unhex(text: str) -> str:
    """A hex dump (16+ digits, at either alignment) that holds printable ASCII text
    decoded."""
    if not _HEX_RUN.search(text):
        return text

    def decode(m: re.Match[str]) -> str:
        run = m.group()
        for skip in (0, 1):
            raw = bytes.fromhex(run[skip:len(run) - (len(run) - skip) % 2])
            if _TEXT.search(raw):
                return run[:skip] + raw.decode("latin-1") + run[len(run) - (len(run) - skip) % 2:]
        return run

    return _HEX_RUN.sub(decode, text)


def _unbase64(text: str) -> str:
    """A base64 run (16+ characters, either alphabet, any alignment) that holds
    printable ASCII text decoded (the bytes around that text as Latin-1)."""
    if not _B64_RUN.search(text):
        return text
    return _B64_RUN.sub(lambda m: _b64_text(m.group()) or m.group(), text)


def _b64_text(run: str) -> str | None:
    chars = run.rstrip("=").replace("-", "+").replace("_", "/")
    for skip in range(4):
        body = chars[skip:]
        body = body[:-1] if len(body) % 4 == 1 else body + "=" * (-len(body) % 4)
        try:
            raw = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            continue
        if _TEXT.search(raw):
            return run[:skip] + raw.decode("latin-1")
    return None


#: Each round undoes one layer of each, in this order; the text is searched after each.
_STEPS = (_normalised, _unpercent, _unescape, _unhex, _unqp, _unbase64)
_FORMS = re.compile("|".join(re.escape(n) for n in (PREFIX, *_NEEDLES)))


def _has_token_form(text: str) -> bool:
    """Cheap (one C-speed search): the prefix or a base64 needle is there (maybe only a
    placeholder or a redacted form)."""
    return _FORMS.search(text) is not None


def _decoded(text: str) -> str | None:
    """``text`` with its escapes, encodings and look-alikes undone (layer by layer, up to
    :data:`DECODE_ROUNDS` rounds) and its tokens redacted, when a layer holds a token;
    else None. A token found is redacted at once and the decoding goes on, so a second
    token, hidden deeper, is found too."""
    layer, found = text, False
    if _has_token_form(text):  # what is there as it is first: ``[base64 of …]`` stays
        layer = redact_base64(redact_tokens(text))
        found = layer != text
    for _ in range(DECODE_ROUNDS):
        if not _suspect(layer):
            break  # nothing left that any step would change
        before = layer
        for step in _STEPS:
            nxt = step(layer)
            if nxt == layer:
                continue
            layer = nxt
            if _has_token_form(layer):
                shown = redact_base64(redact_tokens(layer))
                found = found or shown != layer
                layer = shown
        if layer == before:
            break
    return layer if found else None


def _suspect(text: str) -> bool:
    """Might ``text`` hide a token from the plain search? (Non-ASCII, or an escape.)"""
    return not text.isascii() or _HINTED.search(text) is not None


def redact_secrets(text: str) -> str:
    """Every token form in ``text`` redacted; the rest kept. Plain and base64 tokens
    are found as they are; a token behind escapes (percent, backslash, CSS, HTML,
    quoted-printable), a hex dump, base64 of an escaped token, invisible format
    characters or NFKC look-alikes is found in a decoded copy, and then the whole text
    is shown decoded (``%41`` elsewhere becomes ``A``): the token must go, and the
    escapes around it are no longer needed to read it."""
    if _suspect(text):
        decoded = _decoded(text)
        if decoded is not None:
            return decoded
    if not _has_token_form(text):
        return text
    return redact_base64(redact_tokens(text))


#: Format characters that reorder or break a line on a terminal (bidirectional
#: overrides and isolates, line and paragraph separators): escaped like controls.
_LINE_FORGERS = frozenset([0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def escape_controls(text: str) -> str:
    """Control characters (C0, DEL, C1), bidirectional overrides, line separators and lone
    surrogates (from undecodable bytes) as ``\\xNN`` / ``\\uNNNN``: what terminal output
    shows of any stored or remote text, so none of it can forge a line or recolour one."""
    if text.isprintable():  # everything escaped below is non-printable (Cc, Cs, Cf, Zl, Zp)
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif (code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0xD800 <= code < 0xE000
              or code in _LINE_FORGERS):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def is_clean(text: str) -> bool:
    """True when :func:`scrub` would leave ``text`` as it is, apart from newlines (so
    many names joined by newlines are checked in one pass, at C speed)."""
    if not text.isascii() or _has_token_form(text):
        return False
    if _suspect(text) and _decoded(text) is not None:
        return False
    return text.replace("\n", "").isprintable()


def scrub(text: str, limit: int | None = None) -> str:
    """Redact tokens (plain and base64), escape control characters and undecodable
    bytes, and cut to ``limit`` characters: the form of any untrusted text in output.

    Idempotent (scrubbing scrubbed text changes nothing), so a message built from
    scrubbed parts may be scrubbed again on its way out."""
    text = escape_controls(redact_secrets(text))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


_ESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})")


def unescape_bytes(text: str) -> bytes:
    """The bytes a scrubbed path stands for: ``\\xNN`` back to byte NN (an undecodable
    byte or a control character), the rest as UTF-8. For SARIF URIs, which
    percent-encode the real bytes of a name."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos : m.start()].encode("utf-8", "surrogateescape")
        if m.group(1) is not None:
            out.append(int(m.group(1), 16))
        else:
            out += chr(int(m.group(2), 16)).encode("utf-8", "surrogatepass")
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def scrub_json(value: Any) -> Any:
    """``value`` (decoded JSON: dicts, lists, scalars) with every string scrubbed, keys
    included: what a JSON answer or ``--format json`` serves of stored rows, so a database
    written before the store scrubbed (or by hand) cannot serve a whole token."""
    if isinstance(value, str):
        return value if is_clean(value) else scrub(value)
    if isinstance(value, dict):
        return {scrub_json(k): scrub_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v) for v in value]
    return value


#: What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text: scrubbed, and a leading ``'`` when
    it would start a formula (``=HYPERLINK(...)`` in a token's name or a partner's
    source must never run in the analyst's Excel)."""
    text = "" if value is None else scrub(str(value))
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
