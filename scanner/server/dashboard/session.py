"""Dashboard sessions and the sign-in rate limit: in memory, on the app, bounded, expiring.

A reader or triager token is exchanged once for a random session id (the cookie); the
token itself is never kept, never put in a cookie, never logged. Sessions live in this
process only: a restart signs everyone out, which is the safe failure.

Two pools: sessions not signed in yet (created when the sign-in form is shown, so its
CSRF token has a home) are many and cheap, capped apart, so a flood of anonymous visits
can evict only other anonymous ones, never a signed-in team member. Time is a monotonic
clock and randomness a ``randbytes`` function, both parameters (tests step the clock).
"""

from __future__ import annotations

import base64
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

#: Roles a session may hold; None is "not signed in" (only the sign-in form works).
ROLES = ("reader", "triager")


def random_text(randbytes: Callable[[int], bytes], size: int = 32) -> str:
    """``size`` random bytes as URL-safe text (a session id, a CSRF token)."""
    return base64.urlsafe_b64encode(randbytes(size)).rstrip(b"=").decode("ascii")


@dataclass(slots=True)
class Session:
    """One browser's session. ``actor`` is the name the person signed in with: what the
    trail records beside each triage action they take."""

    id: str = field(repr=False)
    csrf: str = field(repr=False)
    expires: float  # monotonic seconds
    idle_until: float
    role: str | None = None
    actor: str | None = None

    def csrf_matches(self, given: str | None) -> bool:
        """The form's token is this session's (constant time; missing never matches)."""
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.csrf.encode("ascii"))


class Sessions:
    """The sessions of one app. Not thread-safe: used from the event loop only."""

    def __init__(self, *, randbytes: Callable[[int], bytes], monotonic: Callable[[], float],
                 ttl: float = 8 * 3600.0, idle: float = 3600.0, anonymous_ttl: float = 900.0,
                 max_signed_in: int = 1000, max_anonymous: int = 10_000) -> None:
        self._randbytes = randbytes
        self._monotonic = monotonic
        self.ttl = ttl
        self.idle = idle
        self.anonymous_ttl = anonymous_ttl
        self._max = {True: max_signed_in, False: max_anonymous}
        self._pools: dict[bool, OrderedDict[str, Session]] = {True: OrderedDict(),
                                                              False: OrderedDict()}

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id or len(session_id) > 100:
            return None
        now = self._monotonic()
        for signed_in, pool in self._pools.items():
            found = pool.get(session_id)
            if found is None:
                continue
            if now >= found.expires or now >= found.idle_until:
                del pool[session_id]
                return None
            if signed_in:
                found.idle_until = min(found.expires, now + self.idle)
            pool.move_to_end(session_id)
            return found
        return None

    def anonymous(self) -> Session:
        """A new not-signed-in session: the home of the sign-in form's CSRF token."""
        now = self._monotonic()
        end = now + self.anonymous_ttl
        return self._add(False, Session(self._new_id(), random_text(self._randbytes),
                                        end, end))

    def sign_in(self, old: Session | None, role: str, actor: str) -> Session:
        """A new signed-in session (new id and CSRF token: a session id seen before
        sign-in is never the one that carries the role); ``old`` is dropped."""
        if role not in ROLES:
            raise ValueError(role)
        self.drop(old)
        now = self._monotonic()
        session = Session(self._new_id(), random_text(self._randbytes), now + self.ttl,
                          min(now + self.ttl, now + self.idle), role, actor)
        return self._add(True, session)

    def drop(self, session: Session | None) -> None:
        if session is not None:
            for pool in self._pools.values():
                pool.pop(session.id, None)

    def __len__(self) -> int:
        return sum(len(pool) for pool in self._pools.values())

    def _new_id(self) -> str:
        return random_text(self._randbytes)

    def _add(self, signed_in: bool, session: Session) -> Session:
        pool = self._pools[signed_in]
        now = self._monotonic()
        while pool:  # the oldest first: drop the expired ones, then the least recent
            oldest = next(iter(pool.values()))
            if now < oldest.expires and now < oldest.idle_until and \
                    len(pool) < self._max[signed_in]:
                break
            pool.popitem(last=False)
        pool[session.id] = session
        return session


class SignInLimiter:
    """Failed sign-ins per client address: more than ``limit`` within ``window`` seconds
    and that address is refused (429) until the oldest failure leaves the window.
    Bounded: the least recently failing addresses are forgotten first."""

    def __init__(self, *, monotonic: Callable[[], float], limit: int = 5,
                 window: float = 300.0, max_addresses: int = 10_000) -> None:
        self._monotonic = monotonic
        self.limit = limit
        self.window = window
        self._max = max_addresses
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        now = self._monotonic()
        times = self._recent(address, now)
        if len(times) < self.limit:
            return None
        return max(1.0, times[0] + self.window - now)

    def failed(self, address: str) -> None:
        now = self._monotonic()
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times[-self.limit:]
        self._failures.move_to_end(address)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, ()) if now - t < self.window]
        if not times:
            self._failures.pop(address, None)
        return times
