"""Who may send a request: signature checks over the raw request bytes (never
re-serialised JSON), and the bearer-token check of our own routes.

Two schemes (partners.md §1-3): GitHub/GitLab's ECDSA P-256 / SHA-256 with a base64 DER
signature, and Standard Webhooks' HMAC-SHA256 over ``id.timestamp.body``. Each failure
raises :class:`SignatureError` with a distinct ``reason`` so the metric tells a broken
sender (``signature_not_base64``) from a forger (``bad_signature``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from scanner import whsec
from scanner.server.errors import SignatureError

#: Standard Webhooks: reject timestamps further than this from now (seconds).
TOLERANCE = 5 * 60
_ECDSA = ec.ECDSA(hashes.SHA256())


def decode_signature(text: str) -> bytes:
    """Base64 text → DER bytes, checked to be a DER ``SEQUENCE{r, s}``."""
    try:
        der = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature_not_base64") from None
    try:
        decode_dss_signature(der)
    except ValueError:
        raise SignatureError("signature_not_der") from None
    return der


def verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: str, body: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs exactly ``body``."""
    der = decode_signature(signature)
    try:
        key.verify(der, body, _ECDSA)
    except InvalidSignature:
        raise SignatureError("bad_signature") from None


def load_p256_key(pem: str) -> ec.EllipticCurvePublicKey:
    """A PEM public key, which must be on P-256 (ValueError otherwise)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise ValueError("not a P-256 public key")
    return key


def standard_webhooks_sign(secret: bytes, msg_id: str, timestamp: int | str,
                           body: bytes) -> str:
    """``v1,<base64 HMAC>``: used by tests and the dev partner, and by :func:`verify_hmac`."""
    return whsec.sign(secret, msg_id, timestamp, body)


def check_webhook_headers(msg_id: str | None, timestamp: str | None,
                          signature: str | None, *, now: float,
                          tolerance: float = TOLERANCE) -> None:
    """The Standard Webhooks headers alone, before the body is read: present, a
    timestamp in ASCII digits within ``tolerance`` of now, and at least one ``v1,``."""
    if not msg_id or not timestamp or not signature:
        raise SignatureError("missing_signature_headers", status=400)
    text = timestamp.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 20:
        # not a number, or absurdly long (int() of 400 digits is costly)
        raise SignatureError("bad_timestamp", status=400)
    if abs(now - int(text)) > tolerance:
        raise SignatureError("timestamp_out_of_window")
    if not any(part.startswith("v1,") and len(part) > 3 for part in signature.split()):
        raise SignatureError("bad_signature")


def verify_hmac(secrets: Iterable[bytes], msg_id: str | None, timestamp: str | None,
                signature: str | None, body: bytes, *, now: float,
                tolerance: float = TOLERANCE) -> None:
    """Standard Webhooks: any of the space-separated ``v1,`` signatures made with any of
    our secrets (rotation on either side), and a timestamp within ``tolerance`` of now."""
    check_webhook_headers(msg_id, timestamp, signature, now=now, tolerance=tolerance)
    assert msg_id is not None and timestamp is not None and signature is not None
    given: list[bytes] = []
    for part in signature.split():
        version, _, text = part.partition(",")
        if version == "v1" and text:
            given.append(text.encode("ascii", "replace"))
    ok = False
    for secret in secrets:
        expected = standard_webhooks_sign(secret, msg_id, timestamp, body)[3:].encode()
        for candidate in given:  # no early exit: the time taken tells nothing
            ok |= hmac.compare_digest(expected, candidate)
    if not ok:
        raise SignatureError("bad_signature")


def bearer_matches(authorization: str, expected: str | None) -> bool:
    """An ``Authorization: Bearer <token>`` header names ``expected``, compared in
    constant time; no configured token (None or empty) matches nothing, so a route
    without one refuses everyone."""
    scheme, _, given = authorization.partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), (expected or "").encode())
