"""Changing one's own password: the current one checked and counted as at a login, the new one hashed off the loop
and written into the accounts file, then in force at once.

A ``change_password`` frame goes through these steps, each an effect the host
carries out and answers:

1. the new password must pass the rule for a chosen password
   (``new_password_problem``: ``password_refused`` and why), and the account
   must not be in a lockout (``password_not_changed``, with how long); nothing
   counts then;
2. the current password is checked against the account's password field as
   at a login: a plain one at once, a hash by the host's helpers
   (``CheckPassword``, answered to ``checked``). Each is counted as a login's
   password by the ``count`` hook (``ChatServer.count_password``: this
   process's ``Logins``, or a cluster's engine for every node): a wrong one
   counts toward the lockout, and the third in a row locks the account and
   ends the session as a login's third does (``account_blocked``, then
   closed); a right one ends the count;
3. the new password is hashed by the helpers too (``HashPassword``, answered
   to ``hashed``): scrypt takes tens of milliseconds, never on the loop;
4. the host writes the hash into the user's line of the accounts file
   (``SetPassword``, answered to ``written``) if the line still holds the
   password the current one was checked against; then the account has the new
   password (``Logins.set_password``: the next login needs it), the ``changed``
   hook tells the other nodes of a cluster, and the user hears
   ``password_changed``. A file that is not the server's to write gets
   ``password_unchangeable`` (as does every change with ``--no-password-change``).

At each step the account's field is looked at again: if a reload of the file
changed it meanwhile, the change stops (``account_changed``): the operator's
edit rules. A connection changes one password at a time. One that goes away
mid-change ends it (a wrong current password still counts; a file already
written stays written, and in force).
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..protocol import ErrorCode, Frame, FrameType
from .commands import command, string
from .door import Door
from .effects import CheckPassword, HashPassword, SetPassword, Step, error, reply
from .logins import LoginOutcome, Logins
from .passwords import is_hashed, new_password_problem
from .sessions import Session, Sessions

__all__ = ["MAX_CURRENT", "PasswordChanges", "Count", "Changed"]

log = logging.getLogger(__name__)

# Characters of a current password worth checking: a password reaches the server in at most 1 KiB at login, so a
# longer one cannot be right (it is counted as wrong without troubling a helper).
MAX_CURRENT = 1024
Count = Callable[[int, str, bool, float], list[Step]]   # the hook that counts a current password: count_password
Changed = Callable[[str, str], list[Step]]              # the hook told of a new password: password_changed
_CHANGED = {"type": FrameType.PASSWORD_CHANGED.value}
_NOT_CHANGED = error(ErrorCode.PASSWORD_NOT_CHANGED)
_ACCOUNT_CHANGED = error(ErrorCode.ACCOUNT_CHANGED)


class _Step(Enum):
    CHECKING = "its current password is being checked"
    COUNTING = "its wrong current password is being counted"
    HASHING = "its new password is being hashed"
    WRITING = "its new password is being written"


@dataclass(slots=True)
class _Change:
    """A change under way: whose, the password field the current password is checked against, the new one
    (until it is hashed), and the step it is at."""
    user: str
    before: str
    new: str
    step: _Step


class PasswordChanges:
    """The password changes under way, one per connection at most; ``enabled``: False answers every change
    ``password_unchangeable`` (``--no-password-change``)."""

    def __init__(self, sessions: Sessions, logins: Logins, door: Door, *, count: Count, changed: Changed,
                 enabled: bool = True) -> None:
        self._sessions = sessions
        self._logins = logins
        self._door = door
        self._count = count
        self._changed = changed
        self.enabled = enabled
        self._changes: dict[int, _Change] = {}   # conn -> the change under way on it

    def checking(self, conn: int) -> bool:
        """Whether the password being checked for ``conn`` is the current one of a change (not a login's)."""
        change = self._changes.get(conn)
        return change is not None and change.step is _Step.CHECKING

    @command(FrameType.CHANGE_PASSWORD, string("current"), string("new"))
    def change(self, s: Session, now: float, current: str, new: str) -> list[Step]:
        user = s.user
        if not self.enabled:
            log.info("%s asked to change their password: password changes are turned off here", user,
                     extra={"user": user, "reason": "password changes off"})
            return reply(s.id, error(ErrorCode.PASSWORD_UNCHANGEABLE))
        if s.id in self._changes:
            return reply(s.id, _NOT_CHANGED)
        problem = new_password_problem(new, user)
        if problem is None and new == current:
            problem = "it is the current password"
        if problem is not None:
            return reply(s.id, error(ErrorCode.PASSWORD_REFUSED, detail=problem))
        logins = self._logins
        if logins.is_locked(user, now):
            return reply(s.id, error(ErrorCode.PASSWORD_NOT_CHANGED, **logins.lock_left(user, now)))
        before = logins.accounts.get(user)
        if before is None:   # (a removed account's session ends at the reload: never here)
            return reply(s.id, _ACCOUNT_CHANGED)
        self._changes[s.id] = _Change(user, before, new, _Step.CHECKING)
        if not is_hashed(before):
            right = secrets.compare_digest(current.encode("utf-8", "surrogatepass"),
                                           before.encode("utf-8", "surrogatepass"))
            return self.checked(s.id, right, now)
        if len(current) > MAX_CURRENT:
            return self.checked(s.id, False, now)
        return [CheckPassword(s.id, before, current)]

    def checked(self, conn: int, ok: bool | None, now: float) -> list[Step]:
        """The current password given on ``conn`` was right (``ok``) or wrong (None: it could not be checked)."""
        change = self._changes.get(conn)
        if change is None or change.step is not _Step.CHECKING:
            return []
        user = change.user
        if ok is None:
            del self._changes[conn]
            return self._answer(conn, _NOT_CHANGED)
        if self._logins.accounts.get(user) != change.before:   # a reload changed it meanwhile: as it is now
            del self._changes[conn]
            return self._answer(conn, _ACCOUNT_CHANGED)
        if self._logins.is_locked(user, now):   # (it began meanwhile) nothing counts during a lockout
            del self._changes[conn]
            return self._answer(conn, error(ErrorCode.PASSWORD_NOT_CHANGED, **self._logins.lock_left(user, now)))
        if not ok:
            change.step = _Step.COUNTING
            return self._count(conn, user, False, now)   # answered with ``counted``, now or later
        change.step = _Step.HASHING
        return [*self._count(conn, user, True, now), HashPassword(conn, change.new)]

    def counted(self, conn: int, user: str, outcome: LoginOutcome, now: float) -> list[Step]:
        """The wrong current password given on ``conn`` was counted: ``WRONG``, ``BLOCKED`` (the account is locked
        from now: the session ends as a login's would), ``LOCKED`` (it was in a lockout: not counted) or
        ``UNAVAILABLE`` (a cluster's engine could not count it)."""
        change = self._changes.get(conn)
        if change is None or change.step is not _Step.COUNTING or change.user != user:
            return []
        del self._changes[conn]
        c = self._sessions.conns.get(conn)
        if c is None or c.session is None:
            return []
        if outcome is LoginOutcome.WRONG:
            return reply(conn, error(ErrorCode.WRONG_PASSWORD))
        if outcome is LoginOutcome.BLOCKED:
            log.warning("conn %d: %s gave a wrong current password, the last of too many in a row: the account is "
                        "locked and the session ends", conn, user, extra={"conn": conn, "user": user,
                                                                          "reason": "locked"})
            frame = error(ErrorCode.ACCOUNT_BLOCKED, **self._logins.lock_left(user, now))
            return self._door.close(c, frame, now, "account blocked")
        if outcome is LoginOutcome.LOCKED:
            return reply(conn, error(ErrorCode.PASSWORD_NOT_CHANGED, **self._logins.lock_left(user, now)))
        return reply(conn, _NOT_CHANGED)

    def hashed(self, conn: int, field: str | None, now: float) -> list[Step]:
        """The new password of the change on ``conn`` was hashed to ``field`` (None: it could not be)."""
        change = self._changes.get(conn)
        if change is None or change.step is not _Step.HASHING:
            return []
        c = self._sessions.conns.get(conn)
        if field is None or c is None or c.session is None:
            del self._changes[conn]
            return self._answer(conn, _NOT_CHANGED)
        if self._logins.accounts.get(change.user) != change.before:
            del self._changes[conn]
            return self._answer(conn, _ACCOUNT_CHANGED)
        change.step, change.new = _Step.WRITING, ""   # (the password itself is no longer needed)
        return [SetPassword(conn, change.user, field, change.before)]

    def written(self, conn: int, user: str, field: str, refusal: ErrorCode | None, now: float) -> list[Step]:
        """The accounts file holds ``field`` as ``user``'s password now (``refusal`` None), or it was not written
        (``refusal``: the code to answer with): either way the change on ``conn`` is over."""
        change = self._changes.get(conn)
        if change is not None and change.step is _Step.WRITING:
            del self._changes[conn]
        if refusal is not None:
            return self._answer(conn, error(refusal))
        self._logins.set_password(user, field)   # in force from now, whoever is still connected
        log.info("%s changed their password", user, extra={"user": user, "conn": conn})
        return [*self._changed(user, field), *self._answer(conn, _CHANGED)]

    def _answer(self, conn: int, frame: Frame) -> list[Step]:
        """``frame`` to ``conn``, if it is still logged in."""
        c = self._sessions.conns.get(conn)
        return [] if c is None or c.session is None else reply(conn, frame)
