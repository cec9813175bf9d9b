"""How stored values are shown: links only for http(s) URLs, times in UTC, durations in
words, percentiles. Used by the templates as filters; everything else they print is
autoescaped text.

Why a link check of our own: autoescaping makes ``javascript:alert(1)`` harmless *text*
but not a harmless *href*; a partner's ``url`` field is attacker-controlled, so only an
absolute http(s) URL with a host and no control characters or spaces ever becomes one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from scanner.scrub import is_clean, scrub


def link_url(url: object) -> str | None:
    """``url`` when it may be an ``href`` (http or https, a host, nothing hidden), else
    None: ``javascript:``, ``data:``, ``//host``, relative paths and anything with a
    space, a control character or a backslash stay text."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        return None
    if any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in url) or not url.isprintable():
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if not url.lower().startswith(("http://", "https://")):
        return None
    return url


def shown(value: object) -> object:
    """Every value a template prints passes here (Jinja's ``finalize``): None is blank,
    and text is scrubbed once more, so a whole token can never reach a page even if one
    slipped into the store some other way. Autoescaping happens after this."""
    if value is None:
        return ""
    if isinstance(value, str) and not is_clean(value):
        return scrub(value, 10_000)
    return value


def when(text: object) -> str:
    """A stored ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC ("" when absent or odd)."""
    if not isinstance(text, str | datetime):
        return ""
    try:
        moment = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    except ValueError:
        return str(text)[:40]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """Seconds in the largest unit that keeps it short: ``42 s``, ``3.5 min``, ``2 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            value = seconds / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def seconds_between(start: object, end: object) -> float | None:
    """Seconds from one stored ISO timestamp to another (None when either is missing)."""
    try:
        a = datetime.fromisoformat(str(start))
        b = datetime.fromisoformat(str(end))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())
