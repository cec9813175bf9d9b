"""Deprecated name of :mod:`scanner.scrub` (the output scrub), kept so that code that
imports it keeps working; it will be removed in a later release."""

from __future__ import annotations

import warnings

from scanner.scrub import (
    SHOWN,
    escape_controls,
    is_clean,
    redact_base64,
    redact_tokens,
    scrub,
    unescape_bytes,
)

__all__ = ["SHOWN", "escape_controls", "is_clean", "redact_base64", "redact_tokens",
           "scrub", "unescape_bytes"]

warnings.warn("scanner.redaction is renamed scanner.scrub", DeprecationWarning,
              stacklevel=2)
