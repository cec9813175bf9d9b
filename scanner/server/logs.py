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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={record.__dict__[k]}" for k in FIELDS
                          if record.__dict__.get(k) is not None)
        line = f"{record.levelname.lower():7} {record.getMessage()}"
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
