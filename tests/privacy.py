"""Looking for tokens in what the suite wrote: whole, base64-encoded (either alphabet,
any alignment), and behind percent-encoding. Shared by the privacy test, which runs last,
and the tests of hostile input, which check the store, the API and the stand-in's
received calls right after sending it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

WHOLE = re.compile(rb"cendis_pat_[A-Za-z0-9]{36}")
CORE = 52  # base64 characters compared: 39 bytes, the prefix and 28 of the 36 characters


def _base64_forms(token: bytes) -> dict[bytes, set[bytes]]:
    """For each alignment in a larger base64 text (0, 1, 2 bytes before the token) and
    both alphabets: the fixed-prefix literal to look for, and the token's cores."""
    forms: dict[bytes, set[bytes]] = {}
    for shift, skip in ((0, 0), (1, 2), (2, 3)):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * shift + token)[skip:skip + CORE]
            forms.setdefault(core[:12], set()).add(core)
    return forms


class Needles:
    """Every generated token, whole and base64-encoded, searchable in one pass per form."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.whole: set[bytes] = set()
        self.encoded: dict[bytes, set[bytes]] = {}
        for token in tokens:
            raw = token.encode("ascii")
            self.whole.add(raw)
            for literal, cores in _base64_forms(raw).items():
                self.encoded.setdefault(literal, set()).update(cores)

    def _find(self, data: bytes) -> str | None:
        for match in WHOLE.finditer(data):
            if match.group() in self.whole:
                return f"a whole token at byte {match.start()}"
        for literal, cores in self.encoded.items():
            start = data.find(literal)
            while start != -1:
                if data[start:start + CORE] in cores:
                    return f"a base64-encoded token at byte {start}"
                start = data.find(literal, start + 1)
        return None

    def find(self, data: bytes | str) -> str | None:
        """The first token form in ``data``, as a phrase (never the token), or None.
        Percent-encoded text is also searched decoded (twice: ``%255F`` too)."""
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        for layer in range(3):
            problem = self._find(raw)
            if problem is not None:
                return problem if layer == 0 else f"{problem} (percent-encoded)"
            if b"%" not in raw:
                break
            raw = unquote_to_bytes(raw)
        return None
