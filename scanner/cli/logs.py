"""Library log records on the terminal: ``cendis-scan: ...`` lines on stderr, scrubbed.

Every module of the package logs to ``logging.getLogger(__name__)``, so one logger,
``scanner``, is the root of them all; the CLI configures that one (``serve`` replaces
it with structured lines: :mod:`scanner.server.logs`).
"""

from __future__ import annotations

import logging
import sys

from scanner.scrub import scrub

#: The root of every logger of the package.
ROOT = "scanner"


class Handler(logging.Handler):
    """Library warnings as ``cendis-scan: ...`` lines on stderr, scrubbed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = scrub(record.getMessage())
            if record.exc_info and record.levelno <= logging.DEBUG:
                import traceback

                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            sys.stderr.write(f"cendis-scan: {text}\n")
        except Exception:  # logging must never end a scan
            self.handleError(record)


def setup_logging(debug: bool) -> None:
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, Handler) for h in logger.handlers):
        logger.addHandler(Handler())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
