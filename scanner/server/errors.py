"""Receiver errors: each carries a short machine-readable ``reason`` (a metric label) and
the HTTP status it turns into. Messages never hold untrusted input uncut, nor a token."""

from __future__ import annotations

from scanner.errors import ConfigError, short


class ReportError(Exception):
    """A delivery we will not accept. ``status`` 4xx: the sender's fault (nothing is
    recorded); 503: ours (the sender should retry)."""

    status = 400
    reason = "bad_request"

    def __init__(self, reason: str | None = None, message: str = "",
                 *, status: int | None = None, retry_after: float | None = None) -> None:
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        self.message = short(message or self.reason.replace("_", " "), 200)
        self.retry_after = retry_after
        super().__init__(self.message)

    def to_json(self) -> dict[str, str]:
        return {"error": self.reason, "message": self.message}


class Rejected(ReportError):
    """The delivery is bad: a signature, a header, the body."""

    status = 400


class SignatureError(Rejected):
    """Bad, missing or unverifiable signature (401: like PyPI, the sender is not proven)."""

    status = 401
    reason = "bad_signature"


class Unavailable(ReportError):
    """Our own outage: the database, or keys we cannot fetch. The sender retries."""

    status = 503
    reason = "unavailable"


class ServerConfigError(ConfigError):
    """A bad configuration file or option (exit 2, one line)."""

    reason = "server_config"


__all__ = ["ReportError", "Rejected", "SignatureError", "Unavailable", "ServerConfigError"]
