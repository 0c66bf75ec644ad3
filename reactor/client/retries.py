"""What the client tries again by itself, and when: a password the server could not check, a connection the
server was too busy to take, and a script's command over the rate limit.

Nobody retypes a password because the server was busy: a password answered
``try_again`` is kept until its answer and sent again after ``CHECK_WAITS``
(the first time saying ``Checking password...``), for as long as the server's
login deadline allows. A ``busy`` server (too many connections not logged in
yet) is connected to again after ``BUSY_WAITS``, each said (``Server busy;
trying again in 2 s``); after the last the client gives up with the server's
words. A command refused with ``rate_limited`` is sent again after the
``retry`` seconds the server gave, at most ``RESENDS`` times, when the input is
a script (``scripted``: not a terminal, where the user decides); one that is
still refused then has finally failed, and the script's exit status says so.

``Retries`` returns effects, as ``ChatClient`` does, which owns the moments
these are called at. Timer keys: ``("password",)``, ``("reconnect",)``,
``("resend",)``.
"""
from __future__ import annotations

from ..protocol import Frame, FrameType
from ..timer_effects import SetTimer
from .effects import ClientEffect, Print, ToServer
from .words import SAY

__all__ = ["CHECK_WAITS", "BUSY_WAITS", "RESENDS", "Retries"]

CHECK_WAITS = (0.25, 0.5, 1.0, 2.0)   # seconds before a password goes again; the last repeats
BUSY_WAITS = (1, 2, 4, 8, 15)         # seconds before connecting again (30 s in all); then the client gives up
RESENDS = 5                           # times a script's command refused for the rate limit is sent again


class Retries:
    """The password held until its answer, the busy server's count, and the command a script may send again."""

    def __init__(self, scripted: bool = False) -> None:
        self._scripted = scripted
        self._password: str | None = None
        self._checks = 0                    # try_again answers to the password held
        self._busy = 0                      # busy answers so far
        self.reconnecting = False           # a new connection is due: the old one's end is no loss
        self._command: Frame | None = None  # the last command sent
        self._resends = 0                   # ... and how often it went again
        self._refused_pong = False          # the pong after a command that goes again is not its answer
        self.failed = False                 # a script's command was refused for good

    # -- the password -------------------------------------------------------------

    def password_sent(self, password: str) -> None:
        self._password = password

    def password_answered(self) -> None:
        """The server answered the password (or the login is over): it is forgotten."""
        self._password, self._checks = None, 0

    def cannot_check(self, now: float) -> list[ClientEffect] | None:
        """``try_again``: the password goes again soon (None: no password is held, the user is asked)."""
        if self._password is None:
            return None
        wait = CHECK_WAITS[min(self._checks, len(CHECK_WAITS) - 1)]
        effects: list[ClientEffect] = [] if self._checks else [Print(SAY("checking"))]
        self._checks += 1
        return [*effects, SetTimer(("password",), now + wait)]

    def password_due(self) -> list[ClientEffect]:
        if self._password is None:
            return []
        return [ToServer({"type": FrameType.PASSWORD, "password": self._password})]

    # -- a busy server ----------------------------------------------------------------

    def busy(self, now: float) -> list[ClientEffect] | None:
        """``busy`` before the hello: connect again later (None: the waits are spent, the client gives up)."""
        if self._busy >= len(BUSY_WAITS):
            return None
        wait = BUSY_WAITS[self._busy]
        self._busy += 1
        self.reconnecting = True
        return [Print(SAY("busy_retry", {"seconds": wait})), SetTimer(("reconnect",), now + wait)]

    # -- a script's commands over the rate limit ------------------------------------------

    def command_sent(self, frame: Frame) -> None:
        self._command, self._resends = frame, 0

    def rate_limited(self, frame: Frame, now: float) -> list[ClientEffect] | None:
        """``rate_limited`` for the last command: a script sends it again after ``retry`` seconds (None: the
        refusal is shown, to a terminal's user, or for good once the resends are spent)."""
        retry = frame.get("retry")
        if not self._scripted or self._command is None or type(retry) is not int or retry < 0:
            return None
        if self._resends >= RESENDS:
            self.failed = True
            return None
        self._resends += 1
        self._refused_pong = True
        return [Print(SAY("resending", {"seconds": retry})), SetTimer(("resend",), now + retry)]

    def resend_due(self) -> list[ClientEffect]:
        return [] if self._command is None else [ToServer(self._command)]

    def pong_answers(self) -> bool:
        """A pong came: whether it answers the last command (not when it follows a refusal of a command
        that goes again, before or after the command went: the next line waits for the command's own)."""
        if self._refused_pong:
            self._refused_pong = False
            return False
        return True
