"""Structured logs with the standard ``logging`` module: one JSON object per line when
stderr is not a terminal (for a log pipeline), readable lines on a terminal.

Fields passed with ``extra=`` (incident_id, redacted, partner, reason, ...) become JSON
keys. Nothing here ever sees a raw token: callers pass the redacted form.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

FIELDS = ("partner", "reason", "incident_id", "redacted", "status", "records", "accepted",
          "malformed", "false_positives", "username", "org", "days_left", "host", "port",
          "url", "error")


#: Our loggers: the receiver's (``scanner.*``) and the revoker's.
LOGGERS = ("scanner", "cendis_scan")


def _scrubbed(record: logging.LogRecord) -> tuple[str, dict[str, Any], str | None]:
    """Message, fields and exception of a record, each through the one redaction
    function: a library's message (aiohttp quotes the bytes of a malformed request) can
    hold whatever an attacker sent, a token included."""
    from scanner.scrub import scrub

    fields = {}
    for key in FIELDS:
        value = record.__dict__.get(key)
        if value is not None:
            fields[key] = scrub(value, 500) if isinstance(value, str) else value
    exc = None
    if record.exc_info and record.exc_info[0] is not None:
        exc = scrub(f"{record.exc_info[0].__name__}: {record.exc_info[1]}", 300)
    return scrub(record.getMessage(), 1000), fields, exc


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, fields, exc = _scrubbed(record)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": message,
            **fields}
        if exc is not None:
            entry["exception"] = exc
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, fields, exc = _scrubbed(record)
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {message}"
        if exc is not None:
            line += f" ({exc})"
        return f"{line}  {extras}" if extras else line


def setup_logging(stream: IO[str] | None = None, *, json_lines: bool | None = None,
                  level: int = logging.INFO) -> None:
    """Configure our loggers (not the root: libraries keep their own)."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
