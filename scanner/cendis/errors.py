"""Errors of the Cendis API, each with a short machine-readable ``reason``.

The reason decides what the revoker does (see cendis-api.md's table) and is the metric
label; the message is for people and never holds a credential or a token.
"""

from __future__ import annotations

from scanner.errors import ScanError

#: Every reason a :class:`CendisError` can carry.
REASONS = ("unauthorized", "forbidden", "rate_limited", "bad_request", "server_error",
           "timeout", "connection", "bad_response", "contract", "redirect")


class CendisError(ScanError):
    """A failed call to the Cendis API."""

    def __init__(self, reason: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None, missing_scope: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.missing_scope = missing_scope

    @property
    def credential_problem(self) -> bool:
        """401/403: only an operator can fix it; nothing is retried quickly."""
        return self.reason in ("unauthorized", "forbidden")

    @property
    def transient(self) -> bool:
        """Cendis is down or busy: retry later, never drop the token."""
        return self.reason in ("rate_limited", "server_error", "timeout", "connection")
