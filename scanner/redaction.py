"""The one function every string passes through before it leaves the tool.

Paths, git identities, ref names, commit messages, arguments quoted back in error
messages: any of them can hold a token, so none is printed, logged or written as is.
:func:`scrub` replaces every token-shaped run by its redacted form and escapes control
characters (a newline or a terminal escape sequence in a file name must not forge a
line of output). Cheap and dependency-free: it runs on the hook path.
"""

from __future__ import annotations

from scanner.token import PREFIX, redact

_BODY = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
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


def escape_controls(text: str) -> str:
    """Control characters (and lone surrogates from undecodable bytes) as ``\\xNN``."""
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0xD800 <= code < 0xE000:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def scrub(text: str, limit: int | None = None) -> str:
    """Redact tokens, escape control characters, and cut to ``limit`` characters: the
    form of any untrusted text in output."""
    text = escape_controls(redact_tokens(text))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
