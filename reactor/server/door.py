"""A connection's way in and out: its login deadline, its budget of bad frames, its welcome, its inactivity
deadline, and its end (the user logged out, its requests ended, the others told).

Before login every refusal (a bad frame, an unknown name, a wrong password, a
command answered ``not_logged_in``) counts toward the connection's budget of
bad frames: at ``max_bad_frames`` it is closed. Once the logic has said
``Close`` for a connection it forgets it at once (``forget``): the user is
logged out then, and later frames or a ``disconnected`` for it are ignored.

Timer keys: ``("login", conn)`` the login deadline, ``("idle", conn)`` the
inactivity deadline of a logged-in connection. A timer that fires for
something that is gone does nothing, so a stale one is harmless.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..ops.catalog import ChatCounts
from ..protocol import ErrorCode, Frame, FrameType
from .effects import CancelTimer, Close, LoggedIn, LoginFailed, Send, SetTimer, Step, error
from .mail import Mail
from .presence import Presence
from .privates import PrivateChats
from .sessions import Conn, Session, Sessions

__all__ = ["MAX_LOGIN_TIME", "MAX_BAD_FRAMES", "Door"]

log = logging.getLogger(__name__)

MAX_LOGIN_TIME = 60.0    # seconds: a connection must log in within timeout, but never more than this
MAX_BAD_FRAMES = 10      # refused frames that close a connection

Release = Callable[[Session], list[Step]]   # the hook told of a session that ended (see ChatServer.release_login)
Noted = Callable[[str, bool, float], list[Step]]   # a session began (True) or ended here: what else follows


class Door:
    """How connections come in, log in and leave; the parts it tells of a login or logout do the rest."""

    def __init__(self, sessions: Sessions, presence: Presence, privates: PrivateChats, mail: Mail, *,
                 timeout: float, max_bad_frames: int = MAX_BAD_FRAMES, release: Release,
                 counts: ChatCounts | None = None, noted: Noted | None = None) -> None:
        """``noted(user, online, now)``: what else a session's start or end here means (history, away)."""
        self._sessions = sessions
        self._presence = presence
        self._privates = privates
        self._mail = mail
        self.timeout = float(timeout)
        self._login_time = min(self.timeout, MAX_LOGIN_TIME)
        self._max_bad = max_bad_frames
        self._release = release
        self._counts = counts if counts is not None else ChatCounts()   # logins, strangers closed for errors
        self._noted = noted

    def connect(self, conn: int, now: float, address: str) -> SetTimer:
        """A new connection: its login deadline (``timeout``, at most ``MAX_LOGIN_TIME``)."""
        deadline = now + self._login_time
        self._sessions.connect(conn, address, deadline)
        return SetTimer(("login", conn), deadline)

    def welcome(self, c: Conn, user: str, now: float) -> list[Step]:
        """``c`` logs in as ``user``: welcomed (in version 3, then told who else is online), its inactivity
        deadline armed, the others told, its stored messages on their way."""
        s = self._sessions.begin(c, user, now, self._presence.logged)   # changes logged before are not its news
        self._counts.logins_succeeded += 1
        log.info("%s logged in, conn %d", user, c.id, extra={"user": user, "conn": c.id, "address": c.address})
        effects: list[Step] = [CancelTimer(("login", c.id)), SetTimer(("idle", c.id), now + self.timeout),
                               LoggedIn(c.id), Send((c.id,), {"type": FrameType.WELCOME.value, "user": user})]
        if c.version >= 3:
            effects += self._presence.online(s)
        effects.append(self._presence.note(user, True, s))
        if self._noted is not None:
            effects += self._noted(user, True, now)
        effects += self._mail.start(s)
        return effects

    def bad(self, c: Conn, detail: str, now: float) -> list[Step]:
        """Answer a bad frame; close the connection at the max_bad_frames-th."""
        return self.refuse(c, error(ErrorCode.BAD_FRAME, detail=detail), now)

    def refuse(self, c: Conn, answer: Frame, now: float) -> list[Step]:
        """Send ``answer`` to a frame that counts toward the bad-frame budget; close at the max_bad_frames-th
        (a stranger's closing is only counted, in the host's aggregate, a user's is logged)."""
        c.bad += 1
        effects: list[Step] = [Send((c.id,), answer)]
        if c.bad < self._max_bad:
            log.debug("conn %d: refused: %s", c.id, answer.get("detail", answer["code"]))
            return effects
        if c.session is not None:
            log.warning("conn %d: %d bad frames, closing (last: %s)", c.id, c.bad, answer.get("detail", answer["code"]),
                        extra={"conn": c.id, "user": c.session.user, "reason": "bad frames"})
        else:
            self._counts.logins_failed.too_many_errors += 1
            effects.append(LoginFailed(c.id, "closed after too many errors"))
        effects.append(Close(c.id))
        return effects + self.forget(c, now, "too many bad frames")

    def close(self, c: Conn, frame: Frame, now: float, why: str) -> list[Step]:
        """Send ``frame``, close, and forget the connection."""
        return [Send((c.id,), frame), Close(c.id), *self.forget(c, now, why)]

    def forget(self, c: Conn, now: float, why: str, fired: bool = False, announce: bool = True,
               release: bool = True) -> list[Step]:
        """Drop ``c``: cancel its timer (unless it is the one that ``fired``) and end its session, telling the
        others (unless the caller will, ``announce=False``) and the ``release`` hook."""
        self._sessions.drop(c)
        s = c.session
        if s is None:
            return [] if fired else [CancelTimer(("login", c.id))]
        effects: list[Step] = [] if fired else [CancelTimer(("idle", c.id))]
        user = s.user
        effects += self._privates.leave(s)
        self._sessions.end(s, now)
        self._presence.left(s)
        if announce:
            effects.append(self._presence.note(user, False))
        log.info("%s logged out (%s), conn %d", user, why, c.id, extra={"user": user, "conn": c.id, "reason": why})
        if self._noted is not None:
            effects += self._noted(user, False, now)
        if release:
            effects += self._release(s)
        return effects

    def idle_due(self, key: tuple[Any, ...], now: float, timed_out: list[Session]) -> list[Step]:
        """Re-arm a deadline that activity moved, or log the user out (the caller says bye to all at once)."""
        c = self._sessions.conns.get(key[1])
        s = c.session if c is not None else None
        if s is None:
            return []
        deadline = s.last_active + self.timeout
        if deadline > now:
            return [SetTimer(key, deadline)]
        timed_out.append(s)
        return [Close(s.id), *self.forget(s.conn, now, "inactivity", fired=True, announce=False)]

    def login_due(self, key: tuple[Any, ...], now: float) -> list[Step]:
        """Re-arm a login deadline, or close the connection that did not log in in time."""
        c = self._sessions.conns.get(key[1])
        if c is None or c.session is not None:
            return []
        if c.deadline > now:
            return [SetTimer(key, c.deadline)]
        log.info("conn %d: login timed out", c.id, extra={"conn": c.id, "reason": "login timeout"})
        return [Send((c.id,), error(ErrorCode.LOGIN_TIMEOUT)), Close(c.id),
                *self.forget(c, now, "login timeout", fired=True)]
