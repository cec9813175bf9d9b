"""RE2 behind one small module.

pyre2 quietly falls back to Python's backtracking ``re`` for patterns RE2 cannot run
(back-references, look-arounds). A scanner that promises linear time must not do that,
so the fallback is turned into an exception here, once, and every pattern in the
package is compiled through :func:`compile_rule`.
"""

from __future__ import annotations

from typing import Any

import re2

re2.set_fallback_notification(re2.FALLBACK_EXCEPTION)


class PatternError(ValueError):
    """A pattern RE2 cannot run (or that does not parse at all)."""


def compile_rule(pattern: bytes) -> Any:
    try:
        return re2.compile(pattern)
    except Exception as exc:  # pyre2 raises several unrelated types here
        raise PatternError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
