"""Structured logs with the standard ``logging`` module: one JSON object per line when
stderr is not a terminal (for a log pipeline), readable lines on a terminal.

Fields passed with ``extra=`` (incident_id, redacted, partner, reason, ...) become JSON
keys. Nothing here ever sees a raw token: callers pass the redacted form.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

FIELDS = ("partner", "reason", "incident_id", "redacted", "status", "records", "accepted",
          "malformed", "false_positives", "username", "org", "days_left", "host", "port",
          "url", "error", "db")


#: Our loggers: every module logs to ``logging.getLogger(__name__)``, so ``scanner`` is
#: the root of them all (the receiver's, the revoker's, the library's).
LOGGERS = ("scanner",)
#: psycopg's and its pool's loggers (``psycopg.pool`` says why a connection failed,
#: quoting libpq): through the same handler, scrubbed, the database password masked.
LIBRARY_LOGGERS = ("psycopg",)


def _scrubbed(record: logging.LogRecord, db: str | None = None
              ) -> tuple[str, dict[str, Any], str | None]:
    """Message, fields and exception of a record, each through the one redaction
    function: a library's message (aiohttp quotes the bytes of a malformed request,
    libpq a URL) can hold whatever an attacker sent, a token included, or the
    database's password (masked as in every database error: ``mask_error``)."""
    from scanner.incidents.store.common import mask_error
    from scanner.scrub import scrub

    def clean(text: str, limit: int) -> str:
        return scrub(mask_error(text, db) if db else text, limit)

    fields = {}
    for key in FIELDS:
        value = record.__dict__.get(key)
        if value is not None:
            fields[key] = clean(value, 500) if isinstance(value, str) else value
    exc = None
    if record.exc_info and record.exc_info[0] is not None:
        exc = clean(f"{record.exc_info[0].__name__}: {record.exc_info[1]}", 300)
    return clean(record.getMessage(), 1000), fields, exc


class _Formatter(logging.Formatter):
    def __init__(self, db: str | None = None) -> None:
        super().__init__()
        self.db = db  # the database URL whose password never appears in a line


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, fields, exc = _scrubbed(record, self.db)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": message,
            **fields}
        if exc is not None:
            entry["exception"] = exc
        return json.dumps(entry, default=str)


class TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, fields, exc = _scrubbed(record, self.db)
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {message}"
        if exc is not None:
            line += f" ({exc})"
        return f"{line}  {extras}" if extras else line


def setup_logging(stream: IO[str] | None = None, *, json_lines: bool | None = None,
                  level: int = logging.INFO, db: str | None = None) -> None:
    """Configure our loggers and psycopg's (not the root: other libraries keep their
    own). ``db``: the database URL, whose password is masked in every line."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(db) if json_lines else TextFormatter(db))
    for name in LOGGERS + LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level if name in LOGGERS else max(level, logging.WARNING))
        logger.propagate = False


#: The loggers aiohttp reports a malformed request on: ours in ``serve``, its default.
HTTP_LOGGERS = ("scanner.server.http", "aiohttp.server")


class MalformedRequestFilter(logging.Filter):
    """A malformed request is the sender's problem, and anyone can send thousands: aiohttp
    logs each at ERROR with a traceback. This filter turns them into one WARNING line at
    most every ``interval`` seconds (saying how many were dropped since), without the
    traceback, and counts every one through ``count(reason)``. Real errors (an exception
    in a handler) pass unchanged."""

    def __init__(self, count: Callable[[str], None], *, interval: float = 10.0,
                 monotonic: Callable[[], float] | None = None) -> None:
        super().__init__()
        import time

        self._count = count
        self.interval = interval
        self._now = monotonic or time.monotonic
        self._last: float | None = None
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        reason = type(exc).__name__
        self._count(reason)
        now = self._now()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed HTTP request refused (%d more since the last such line)"
        record.args = (self.suppressed,)
        record.__dict__["reason"] = reason
        record.exc_info = record.exc_text = None
        self._last, self.suppressed = now, 0
        return True


def watch_malformed_requests(flt: MalformedRequestFilter) -> Callable[[], None]:
    """Attach ``flt`` to aiohttp's request loggers; returns the function that detaches it
    (the app does both in its cleanup context: no filter outlives its app)."""
    loggers = [logging.getLogger(name) for name in HTTP_LOGGERS]
    for logger in loggers:
        logger.addFilter(flt)

    def detach() -> None:
        for logger in loggers:
            logger.removeFilter(flt)

    return detach
