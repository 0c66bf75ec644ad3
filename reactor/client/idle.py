"""When the server will log the user out for inactivity, as far as the client can tell, and the one warning before.

The server counts every frame a logged-in client sends but ``ping`` as the
user's activity (``reactor/PROTOCOL.md``, section 3), and says its timeout in
its ``hello``. So the client keeps the same clock: ``sent`` at each such frame,
and once the user has been quiet until ``lead`` seconds before the deadline, it
warns once (typing without sending is no activity: that is the spec). The
warning comes ``WARN_BEFORE`` seconds ahead, or half the timeout if that is
shorter, in whole seconds; a timeout under 2 s gets no warning. A server that
does not say its timeout gets none either.

One timer, key ``("idle",)``: armed at the first activity, and when it fires
early (there was activity since) armed again for the new moment, so activity
costs no timer of its own.
"""
from __future__ import annotations

import math

from ..timer_effects import SetTimer
from .effects import ClientEffect, Print
from .words import SAY

__all__ = ["WARN_BEFORE", "IdleWatch"]

WARN_BEFORE = 10   # seconds before the inactivity logout that the user is warned (SPEC: "in 10 s")
KEY = ("idle",)


class IdleWatch:
    """The client's copy of the server's inactivity deadline, and its warning."""

    def __init__(self) -> None:
        self.lead: int | None = None        # seconds of warning; None: no warning
        self._timeout = 0.0
        self._active_at: float | None = None
        self._armed = False
        self._warned = False                # since the last activity

    def told(self, timeout: object) -> None:
        """The server's ``hello`` said its inactivity timeout (seconds), or nothing usable."""
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and math.isfinite(timeout) \
                and timeout > 0:
            self._timeout = float(timeout)
            lead = min(WARN_BEFORE, math.floor(self._timeout / 2))
            self.lead = lead if lead >= 1 else None

    def sent(self, now: float) -> list[ClientEffect]:
        """A frame that counts as activity went to the server (or the login began the count)."""
        self._active_at, self._warned = now, False
        if self._armed or self.lead is None:
            return []
        self._armed = True
        return [SetTimer(KEY, self._warn_at())]

    def due(self, now: float) -> list[ClientEffect]:
        """The timer fired: warn, unless there was activity since it was armed (then it is armed again)."""
        self._armed = False
        if self.lead is None or self._active_at is None or self._warned:
            return []
        warn_at = self._warn_at()
        if now < warn_at:
            self._armed = True
            return [SetTimer(KEY, warn_at)]
        self._warned = True
        return [Print(SAY("idle_warning", {"seconds": self.lead}))]

    def _warn_at(self) -> float:
        assert self._active_at is not None and self.lead is not None
        return self._active_at + self._timeout - self.lead
