"""The Cendis v1 token format: checksum, classification, redaction and identity.

Everything that touches a raw token lives here, so the rest of the package can be
written against redacted strings and hashes only. The format is specified in
``shared/spec/token-format.md``: ``cendis_pat_`` + 30 base62 body characters + a
6-character base62 CRC-32 of the body.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections import Counter
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

PREFIX = "cendis_pat_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 30
CHECK_LENGTH = 6
#: A run shorter than this after the prefix is a placeholder, never a finding.
MIN_RUN = 20
#: Runs with less information than this (bits per character) are placeholders.
ENTROPY_FLOOR = 3.0
#: The longest body run read after a prefix; a longer run is read as its first MAX_RUN
#: characters (and reported as possible).
MAX_RUN = 256
#: The v1 checksum: CRC-32 of the body in CHECK_LENGTH base62 digits.
CHECKSUM_SCHEME = "crc32-base62"


class Confidence(StrEnum):
    """How sure a finding is: ``confirmed`` (a valid v1 token, checksum and all) or
    ``possible`` (token-shaped, 20+ characters, not a placeholder)."""

    CONFIRMED = "confirmed"
    POSSIBLE = "possible"


def base62(value: int, width: int) -> str:
    """Most significant digit first, left-padded with ``0`` (the spec's padding rule)."""
    digits = []
    while value:
        value, rem = divmod(value, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(body: str | bytes) -> str:
    """CRC-32 of the body (not the prefix) in 6 base62 characters."""
    raw = body.encode("ascii") if isinstance(body, str) else body
    return base62(zlib.crc32(raw), CHECK_LENGTH)


def shannon_entropy(run: bytes | str) -> float:
    """Bits per character; cheap enough to run on every candidate."""
    if not run:
        return 0.0
    n = len(run)
    return -sum(c / n * math.log2(c / n) for c in Counter(run).values())


def run_is_checksummed(run: bytes, body_length: int = BODY_LENGTH) -> bool:
    """True when ``run`` is exactly body + check and the check matches."""
    if len(run) != body_length + CHECK_LENGTH:
        return False
    return checksum(run[:body_length]).encode("ascii") == run[body_length:]


def secret_sha256(token: bytes) -> str:
    """A token's identity everywhere: lowercase hex SHA-256 of its ASCII bytes."""
    return hashlib.sha256(token).hexdigest()


def redact(token: bytes | str, prefix: str = PREFIX) -> str:
    """Prefix plus at most the first 4 and last 2 body characters.

    Short bodies show less, so that the visible part never exceeds a third of
    the body: a truncated copy must not be reconstructable from its redaction.
    """
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    body = text[len(prefix):] if text.startswith(prefix) else text
    if len(body) >= 18:
        return f"{prefix}{body[:4]}…{body[-2:]}"
    if len(body) >= 6:
        return f"{prefix}{body[:2]}…"
    return f"{prefix}…"


def generate(rng: random.Random | None = None) -> str:
    """A fresh, well-formed v1 token. Tests and benchmarks use this so that no whole
    token ever needs to be committed."""
    if rng is None:
        import random

        rng = random.SystemRandom()
    body = "".join(rng.choice(BASE62) for _ in range(BODY_LENGTH))
    return PREFIX + body + checksum(body)


class TokenCheck(StrEnum):
    """What ``check-token`` can say about one pasted string."""

    VALID = "valid"
    PLACEHOLDER = "placeholder"
    NO_PREFIX = "no-prefix"
    BAD_CHARACTER = "bad-character"
    TRUNCATED = "truncated"
    TOO_LONG = "too-long"
    CHECKSUM = "checksum-mismatch"


def check(text: str) -> TokenCheck:
    """Diagnose one token as a person pasted it (surrounding whitespace ignored)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        return TokenCheck.NO_PREFIX
    run = text[len(PREFIX):]
    if len(run) < MIN_RUN or shannon_entropy(run) < ENTROPY_FLOOR:
        return TokenCheck.PLACEHOLDER
    if any(ch not in BASE62 for ch in run):
        return TokenCheck.BAD_CHARACTER
    want = BODY_LENGTH + CHECK_LENGTH
    if len(run) < want:
        return TokenCheck.TRUNCATED
    if len(run) > want:
        return TokenCheck.TOO_LONG
    if not run_is_checksummed(run.encode("ascii")):
        return TokenCheck.CHECKSUM
    return TokenCheck.VALID


_EXPLAIN = {
    TokenCheck.VALID: "well-formed v1 token",
    TokenCheck.PLACEHOLDER: "a placeholder, not a token (too short or too repetitive)",
    TokenCheck.NO_PREFIX: f"not a Cendis token: it does not start with {PREFIX}",
    TokenCheck.BAD_CHARACTER: "a character that is not 0-9, A-Z or a-z is in the body "
                              "(a quote, space or line break copied along?)",
    TokenCheck.TRUNCATED: "truncated",
    TokenCheck.TOO_LONG: "too long",
    TokenCheck.CHECKSUM: "checksum mismatch: a character was mistyped or changed",
}


def explain(verdict: TokenCheck, text: str) -> str:
    """One line for a person; shows only the redacted form and the length."""
    text = text.strip()
    run = len(text) - len(PREFIX)
    want = BODY_LENGTH + CHECK_LENGTH
    message = _EXPLAIN[verdict]
    if verdict is TokenCheck.TRUNCATED:
        message += f": {run} of {want} characters after {PREFIX}; copy the whole token again"
    elif verdict is TokenCheck.TOO_LONG:
        message += f": {run} characters after {PREFIX}, a v1 token has {want}"
    if verdict in (TokenCheck.NO_PREFIX, TokenCheck.PLACEHOLDER):
        return message
    return f"{redact(text)}: {message}"
