"""What the ``incidents`` commands share: opening the incident store (read-only for a
command that only reads, created or migrated for one that writes) and parsing the
arguments that name incidents (an id or a hash prefix, ``--since``, ``--limit``), so
``list``/``show``, the triage commands and ``export`` open and parse alike, one line
and exit 2 for anything they refuse.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scanner.errors import ConfigError, short

if TYPE_CHECKING:
    from scanner.incidents.store import Store


def open_store(option: str | None, *, must_exist: bool) -> Store:
    """The store for a command that writes (``revoke``): created if missing."""
    from scanner.incidents.pipeline import db_path
    from scanner.incidents.store import is_postgres, mask_url
    from scanner.incidents.trail import open_store

    path = db_path(option)
    if must_exist and not is_postgres(path) and not os.path.exists(path):
        raise ConfigError(f"no incident database at {short(mask_url(path), 80)} (record "
                          "some with 'cendis-scan scan --record', or pass --db)")
    return open_store(path)


def open_reader(option: str | None) -> Store:
    """The store for a command that only reads (``incidents list``/``show``): opened
    read-only, so it works on a read-only mount and never creates a file, not even a
    missing database or a ``-journal`` beside ``--db /dev/null``."""
    import stat

    from scanner.incidents.pipeline import db_path
    from scanner.incidents.store import is_postgres, mask_url, open_reader

    path = db_path(option)
    shown = short(mask_url(path), 80)
    if is_postgres(path):
        return open_reader(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"no incident database at {shown} (record some with "
                          "'cendis-scan scan --record', or pass --db)") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):  # a FIFO would block the open forever
        raise ConfigError(f"{shown} is not an incident database (not a "
                          "regular file)")
    return open_reader(path)


#: The largest --limit: more rows than that is a mistake, not a listing.
MAX_LIMIT = 1_000_000


def _parse_limit(text: str | None) -> int | None:
    """ASCII digits from 1 to MAX_LIMIT (``-1`` is not "everything", ``0`` not "none")."""
    if text is None:
        return None
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_LIMIT):
        raise ConfigError(f"--limit wants a whole number from 1 to {MAX_LIMIT}, not "
                          f"{short(text, 30)!r}")
    return int(digits)


def _parse_since(text: str | None) -> datetime | None:
    """An ISO date or time; naive means UTC. Out-of-range moments (year 1 with a +14:00
    offset is before year 1 in UTC) are usage errors, not overflows later."""
    if text is None:
        return None
    wanted = f"--since wants a date like 2026-01-31 or an ISO time, not {short(text, 40)!r}"
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(wanted) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"--since {short(text, 40)!r} is out of range in UTC") from None


def _parse_ident(text: str) -> str:
    """An incident id (ASCII digits) or 4 to 64 hex digits of the token's
    SHA-256. Anything else (``²``, Arabic-Indic digits, 0, a number with more digits
    than any hash) is a usage error: the store never sees it."""
    ident = text.strip()
    hexdigits = "0123456789abcdefABCDEF"
    if ident.isascii() and ident.isdigit() and len(ident) < 4:
        if int(ident) >= 1:
            return ident
    elif 4 <= len(ident) <= 64 and all(c in hexdigits for c in ident):
        return ident  # all digits: the store tries the hash prefix, then the id
    raise ConfigError(f"{short(ident, 70)!r} is not an incident id (a number from 1) or "
                      "4 to 64 hex digits of the token's SHA-256")
