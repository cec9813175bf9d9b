"""Deprecated name of :mod:`scanner.redact_filter` (the ``redact`` command's stream
filter), kept so that code that imports it keeps working; it will be removed in a later
release."""

from __future__ import annotations

import warnings

from scanner.redact_filter import LINE_LIMIT, redact_line, redact_stream

__all__ = ["LINE_LIMIT", "redact_line", "redact_stream"]

warnings.warn("scanner.redact is renamed scanner.redact_filter", DeprecationWarning,
              stacklevel=2)
