"""Looking for tokens in what the suite wrote: whole, base64-encoded (either alphabet,
any alignment), and behind percent-encoding. Shared by the privacy test, which runs last,
and the tests of hostile input, which check the store, the API and the stand-in's
received calls right after sending it."""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

WHOLE = re.compile(rb"cendis_pat_[A-Za-z0-9]{36}")
CORE = 52  # base64 characters compared: 39 bytes, the prefix and 28 of the 36 characters


#: ``_`` as quoted-printable (``=5F``) or a CSS escape (``\\5f `` or ``\\00005F``).
_HIDDEN_UNDERSCORE = re.compile(r"=5[fF]|\\0{0,4}5[fF] ?")


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
        self.hexes: set[bytes] = set()
        self.encoded: dict[bytes, set[bytes]] = {}
        for token in tokens:
            raw = token.encode("ascii")
            self.whole.add(raw)
            self.hexes.add(raw.hex().encode())
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
        return self._find_hidden(data)

    def _find_hidden(self, data: bytes | str) -> str | None:
        """A token hidden by invisible format characters (zero-width space, soft hyphen),
        NFKC look-alikes, quoted-printable or CSS escapes of ``_``, or hex (either case).
        Only texts that show a sign of one are normalised (cheap on large outputs)."""
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        lowered = raw.lower()
        if any(h in lowered for h in self.hexes):
            return "a hex-encoded token"
        if raw.isascii() and b"=5" not in raw and b"\\5" not in raw:
            return None
        text = unicodedata.normalize("NFKC", raw.decode("utf-8", "replace"))
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
        text = _HIDDEN_UNDERSCORE.sub("_", text)
        problem = self._find(text.encode("utf-8"))
        return None if problem is None else f"{problem} (hidden: normalised or escaped)"
