"""Standard Webhooks' two primitives: a ``whsec_`` secret's key bytes and the ``v1``
signature over ``id.timestamp.body``.

Both sides of the scheme use them: the receiver verifies partners' deliveries
(:mod:`scanner.server.verify`) and the notifier signs its own (:mod:`scanner.notify.webhook`),
so one definition serves both and neither layer imports the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from scanner.errors import ConfigError


def decode_whsec(secret: str, where: str, error: type[ConfigError] = ConfigError) -> bytes:
    """``whsec_<base64>`` → the HMAC key bytes; a malformed secret raises ``error`` (each
    configuration file has its own class) naming ``where``, never quoting the secret."""
    text = secret.strip()
    if not text.startswith("whsec_"):
        raise error(f"{where}: a Standard Webhooks secret starts with whsec_")
    try:
        raw = base64.b64decode(text[6:], validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{where}: the secret after whsec_ is not base64") from None
    if len(raw) < 16:
        raise error(f"{where}: the secret is shorter than 16 bytes")
    return raw


def sign(secret: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``msg_id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
