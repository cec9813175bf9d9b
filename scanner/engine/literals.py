"""The fixed strings the detector looks for, from rule prefixes alone.

:meth:`scanner.engine.detect.Detector.literals` is the authority; this module computes
the same set from the prefixes with nothing but ``binascii``, so the pre-commit hook can
ask "is any of them in the staged change?" without importing the detector, RE2 or the
rules' regexes (tests/test_prefilter.py checks both give the same set).
"""

from __future__ import annotations

import binascii

#: Leading base64 characters that mix padding bits with a needle, per byte alignment.
DROP = {0: 0, 1: 2, 2: 3}
#: base64 of the gzip magic and method (1f 8b 08): how a gzipped blob in base64 begins.
GZIP_B64 = b"H4sI"
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64_needle(text: bytes, k: int) -> bytes:
    """The characters of base64(``k`` pad bytes + text) that depend only on ``text``."""
    enc = binascii.b2a_base64(b"\0" * k + text, newline=False)
    return enc[DROP[k] : (k + len(text)) * 8 // 6]


def escapes(prefix: bytes) -> list[bytes]:
    """The prefix with its first character (or first two) written as ``\\uXXXX``, or
    the first as ``\\xXX``."""
    forms = {b"\\x" + prefix[:1].hex().encode() + prefix[1:]}
    for upper in (False, True):
        u = [f"\\u{c:04X}" if upper else f"\\u{c:04x}" for c in prefix[:2]]
        forms.add(u[0].encode() + prefix[1:])
        forms.add((u[0] + u[1]).encode())
    return sorted(forms)


def texts(prefixes: list[bytes], *, blobs: bool = True) -> list[bytes]:
    """Every literal of :meth:`Detector.literals` for rules with these prefixes."""
    out: set[bytes] = set()
    for prefix in prefixes:
        out.add(prefix)
        out.update(escapes(prefix))
        for k in (0, 1, 2):
            one = b64_needle(prefix, k)
            for text in (one, one.translate(_URLSAFE)):
                out.add(text)
                out.update((text[: len(text) // 2], text[len(text) // 2 :]))
            for k2 in (0, 1, 2):
                two = b64_needle(one, k2)
                out.update((two, two.translate(_URLSAFE)))
    if blobs and prefixes:
        out.add(GZIP_B64)
    return sorted(out)
