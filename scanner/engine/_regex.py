"""RE2 behind one small module.

pyre2 quietly falls back to Python's backtracking ``re`` for patterns RE2 cannot run
(back-references, look-arounds). A scanner that promises linear time must not do that,
so :func:`compile_rule` refuses any pattern that did not compile to an RE2 program, and
every pattern in the package is compiled through it. It checks the compiled object
rather than calling ``re2.set_fallback_notification``: that setting belongs to the
whole process, and importing a library must not change how the application's own
``re2`` calls behave.
"""

from __future__ import annotations

import re
from typing import Any

import re2

#: Back-references (``\\1``, ``(?P=name)``) and look-arounds, to say why a pattern that
#: Python's ``re`` accepts is refused.
_BACKREFERENCE = re.compile(rb"(?<!\\)(?:\\\\)*\\[1-9]|\(\?P=")
_LOOKAROUND = re.compile(rb"\(\?<?[=!]")


class PatternError(ValueError):
    """A pattern RE2 cannot run (or that does not parse at all)."""


def compile_rule(pattern: bytes, max_mem: int = 8 << 20) -> Any:
    """``pattern`` as an RE2 program (``max_mem``: RE2's memory budget for it; a large
    alternation of literals needs more than the default to keep its DFA)."""
    try:
        compiled = re2.compile(pattern, max_mem=max_mem)
    except Exception as exc:  # pyre2 raises several unrelated types here
        raise PatternError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not isinstance(compiled, re2.Pattern):  # re2.FallbackPattern: Python's re inside
        raise PatternError(_why(pattern))
    return compiled


def _why(pattern: bytes) -> str:
    """Why RE2 refused a pattern that Python's ``re`` runs (it needs backtracking)."""
    if _BACKREFERENCE.search(pattern):
        return "Backreferences not supported"
    m = _LOOKAROUND.search(pattern)
    if m is not None:
        return f"look-arounds not supported: {m.group(0).decode()}"
    return "needs backtracking, which RE2 does not do"
