"""The fixed strings the detector looks for, from rule prefixes alone: the one owner.

A token is searched for as its prefix, the prefix's base64 at the three byte alignments
(standard and URL-safe, and base64 of that base64), halves of each base64 form (a line
break may fall inside a wrapped one), ``\\uXXXX``/``\\xXX`` escapes of its first
characters, and the base64 start of a gzipped blob. Everything that needs one of these
takes it from here: the detector (:mod:`scanner.engine.detect`, which wraps them with
what each one means), the base64 decoder (:data:`DROP`), the output scrub
(:mod:`scanner.scrub`) and the pre-commit hook's fast path, which asks "is any of them
in the staged change?" through :func:`texts` without importing the detector, RE2 or the
rules' regexes. So this module stays standard-library-only and cheap to import
(tests/test_fast_staged.py checks :func:`texts` against ``Detector.literals``).
"""

from __future__ import annotations

import binascii

#: Leading base64 characters that mix padding bits with a needle, per byte alignment.
DROP = {0: 0, 1: 2, 2: 3}
#: base64 of the gzip magic and method (1f 8b 08): how a gzipped blob in base64 begins.
GZIP_B64 = b"H4sI"
#: Standard base64 alphabet to URL-safe (``+/`` to ``-_``), and back.
TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")

#: A needle before the detector gives it a meaning: its text and the byte alignment at
#: each base64 level, outermost first (``()`` for the plain prefix).
Spec = tuple[bytes, tuple[int, ...]]


def b64_needle(text: bytes, k: int) -> bytes:
    """The characters of base64(``k`` pad bytes + text) that depend only on ``text``."""
    enc = binascii.b2a_base64(b"\0" * k + text, newline=False)
    return enc[DROP[k] : (k + len(text)) * 8 // 6]


def needles(prefix: bytes) -> tuple[list[Spec], list[Spec]]:
    """(always, deep) for one prefix: the prefix and its single base64 forms (searched
    everywhere), then base64 of base64 (searched in the first bytes of an input only).
    URL-safe forms follow the standard ones, where they differ."""
    always: list[Spec] = [(prefix, ())]
    deep: list[Spec] = []
    for k in (0, 1, 2):
        one = b64_needle(prefix, k)
        always.append((one, (k,)))
        for k2 in (0, 1, 2):
            deep.append((b64_needle(one, k2), (k2, k)))
    for group in (always, deep):
        group.extend((text.translate(TO_URLSAFE), chain) for text, chain in list(group)
                     if chain and (b"+" in text or b"/" in text))
    return always, deep


def halves(text: bytes) -> tuple[bytes, bytes]:
    """A base64 needle cut in two: a line break inside it leaves one half whole."""
    cut = len(text) // 2
    return text[:cut], text[cut:]


def escapes(prefix: bytes) -> list[bytes]:
    """The prefix with its first character (or first two) written as ``\\uXXXX``, or
    the first as ``\\xXX``."""
    forms = {b"\\x" + prefix[:1].hex().encode() + prefix[1:]}
    for upper in (False, True):
        u = [f"\\u{c:04X}" if upper else f"\\u{c:04x}" for c in prefix[:2]]
        forms.add(u[0].encode() + prefix[1:])
        forms.add((u[0] + u[1]).encode())
    return sorted(forms)
