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


def _unbackslash(text: str) -> str:
    return _BACKSLASH.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


_FORMS = re.compile("|".join(re.escape(n) for n in (PREFIX, *_NEEDLES)))


def _has_token_form(text: str) -> bool:
    """Cheap (one C-speed search): the prefix or a base64 needle is there (maybe only a
    placeholder or a redacted form)."""
    return _FORMS.search(text) is not None


def _decoded(text: str) -> str | None:
    """``text`` with its percent, backslash and HTML escapes undone (repeatedly) and its
    tokens redacted, when the decoded text holds a token; else None."""
    layer = text
    for _ in range(DECODE_ROUNDS):
        if "%" not in layer and "\\" not in layer and "&" not in layer:
            break
        nxt = unquote(layer, errors="surrogateescape")
        nxt = html.unescape(_unbackslash(nxt)) if "\\" in nxt or "&" in nxt else nxt
        if nxt == layer:
            break
        layer = nxt
    if layer is text or not _has_token_form(layer):
        return None
    shown = redact_base64(redact_tokens(layer))
    return shown if shown != layer else None


def redact_secrets(text: str) -> str:
    """Every token form (plain, base64, or behind URL, backslash or HTML escapes) in
    ``text`` redacted; the rest kept. When a token hides behind escapes, the whole text
    is shown decoded (``%41`` elsewhere becomes ``A``): the token must go, and the escapes
    around it are no longer needed to read it."""
    if "%" in text or "\\" in text or "&" in text:
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
    if _has_token_form(text):
        return False
    if ("%" in text or "\\" in text or "&" in text) and _decoded(text) is not None:
        return False
    return text.isascii() and text.replace("\n", "").isprintable()


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
