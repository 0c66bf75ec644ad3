"""Logging in: the accounts, the handshake, wrong passwords in a row and the lockout, and the queue of passwords
waiting to be checked; what a password's outcome means for its connection, written once for both kinds of server.

A hashed account's password is checked by the host; a plain one is compared
here, at once (it is cheap). While a connection's password is being checked it
may send nothing but ``listen`` (a frame is refused as a bad one). The
passwords given for one hashed account are checked one at a time, in the order
they came, so the count of wrong passwords in a row and the lockout come out
exactly as if each were checked at once: a password that arrives while
another for the same account is being checked waits its turn (and is never
checked if its connection goes first). A wrong password counts even if its
connection went away before the answer. A password that could not be checked
gets ``try_again``: it counts neither as wrong nor as a bad frame.

Whether a name is online is told only to whoever gives its right password.
Who decides a right or wrong password's outcome is the ``claim`` hook's
business: this process (``decide``), or a cluster's engine for every node at
once (``reactor/cluster/rules.py``); either way ``conclude`` carries it out.
"""
from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ..ops.catalog import ChatCounts
from ..protocol import PROTOCOL_VERSION, PROTOCOL_VERSIONS, ErrorCode, FrameType
from .commands import LOGGING_IN, State, any_value, command, string
from .door import Door
from .effects import CheckPassword, LoginFailed, Step, error, reply
from .passwords import is_hashed
from .sessions import Conn, Sessions

__all__ = ["MAX_LOGIN_FAILURES", "LoginOutcome", "Logins"]

log = logging.getLogger(__name__)

MAX_LOGIN_FAILURES = 3   # wrong passwords in a row that lock an account
_USERNAME_OK = {"type": FrameType.USERNAME_OK.value}
_TRY_AGAIN = error(ErrorCode.TRY_AGAIN)


class LoginOutcome(StrEnum):
    """What a password given for an account comes to (``Logins.conclude``)."""

    WELCOME = "welcome"          # right, and the user was logged in nowhere: it is ours now
    WRONG = "wrong"              # wrong, counted
    BLOCKED = "blocked"          # wrong, and the count reached the limit: locked from now
    LOCKED = "locked"            # the account is locked
    ALREADY = "already"          # right, but the user is logged in (on a live node)
    UNAVAILABLE = "unavailable"  # it could not be decided: nothing counted


Claim = Callable[[Conn | None, str, bool, float], list[Step]]   # the hook that decides a password's outcome


class Logins:
    """The accounts (name -> password or hash), wrong passwords in a row, lockouts, and the passwords
    waiting to be checked."""

    def __init__(self, accounts: dict[str, str], block_duration: float, sessions: Sessions, door: Door,
                 claim: Claim, counts: ChatCounts | None = None) -> None:
        # ``accounts`` is this part's from now on, changed in place only (``replace``): the other parts that ask
        # who exists hold this very dict.
        self.accounts = accounts
        self.block_duration = float(block_duration)
        self._sessions = sessions
        self._door = door
        self._claim = claim
        self._counts = counts if counts is not None else ChatCounts()   # failed logins by reason, lockouts
        self._failures: dict[str, int] = {}          # wrong passwords in a row
        self._locked_until: dict[str, float] = {}
        # A hashed account's passwords, checked one at a time: an account is a key of _checks while one is
        # being checked, and its value holds the (conn, password) waiting their turn; _checking: the
        # connection whose password is being checked -> (user, hash, password).
        self._checks: dict[str, deque[tuple[int, str]]] = {}
        self._checking: dict[int, tuple[str, str, str]] = {}

    # -- accounts and lockouts -------------------------------------------------

    def replace(self, accounts: dict[str, str]) -> list[str]:
        """The accounts are ``accounts`` now (logged by kind of change, without passwords); the removed ones,
        sorted, whose counts are forgotten."""
        old = dict(self.accounts)
        self.accounts.clear()
        self.accounts.update(accounts)
        added = [u for u in accounts if u not in old]
        removed = sorted(u for u in old if u not in accounts)
        changed = [u for u in accounts if u in old and old[u] != accounts[u]]
        if added:
            log.info("accounts reloaded: %d added", len(added))
        if removed:
            log.info("accounts reloaded: %d removed: %s", len(removed), ", ".join(removed))
        if changed:
            log.info("accounts reloaded: %d with a new password", len(changed))
        if not (added or removed or changed):
            log.info("accounts reloaded: no change")
        for user in removed:
            self._failures.pop(user, None)
            self._locked_until.pop(user, None)
        return removed

    def set_password(self, user: str, field: str) -> bool:
        """``user``'s password is ``field`` from now on (the user changed it, here or on another node of a
        cluster); False if there is no such account here."""
        if user not in self.accounts:
            return False
        self.accounts[user] = field
        return True

    def is_locked(self, user: str, now: float) -> bool:
        """Whether ``user``'s account is in its lockout at ``now``."""
        until = self._locked_until.get(user)
        return until is not None and now < until

    def lock(self, user: str, until: float) -> None:
        """``user``'s account is locked until ``until`` (decided elsewhere: a cluster's engine)."""
        self._locked_until[user] = until

    def unlock(self, user: str, now: float) -> bool:
        """Lift ``user``'s lockout (the operator's or the wrong passwords') and forget its wrong passwords in a
        row; whether it was locked at ``now``."""
        locked = self.is_locked(user, now)
        self._locked_until.pop(user, None)
        self._failures.pop(user, None)
        return locked

    def reset(self, locks: dict[str, float]) -> None:
        """The lockouts are ``locks`` (user -> until) now, and no wrong password counts (decided elsewhere)."""
        self._locked_until = dict(locks)
        self._failures.clear()

    def _locked(self, user: str, now: float) -> bool:
        """Whether ``user`` is locked at ``now``; a lock that has ended is cleared (the count starts anew)."""
        until = self._locked_until.get(user)
        if until is None:
            return False
        if now < until:
            return True
        del self._locked_until[user]
        self._failures.pop(user, None)
        return False

    # -- the handshake and login -------------------------------------------------

    @command(FrameType.HELLO, any_value("version"), states=frozenset({State.HELLO}))
    def hello(self, c: Conn, now: float, version: Any) -> list[Step]:
        if type(version) is int and version in PROTOCOL_VERSIONS:
            c.state, c.version = State.LOGIN, version
            return reply(c.id, {"type": FrameType.HELLO.value, "version": version, "timeout": self._door.timeout})
        log.info("conn %d: protocol version %.40r refused", c.id, version, extra={"conn": c.id})
        return self._door.close(c, error(ErrorCode.VERSION, version=PROTOCOL_VERSION), now, "wrong version")

    @command(FrameType.USERNAME, string("username"), states=LOGGING_IN)
    def username(self, c: Conn, now: float, user: str) -> list[Step]:
        c.state, c.claimed = State.LOGIN, None
        if user not in self.accounts:   # the name is not logged: it may be a mistyped password
            self._counts.logins_failed.unknown_user += 1
            return [LoginFailed(c.id, "unknown user name"),
                    *self._door.refuse(c, error(ErrorCode.INVALID_USERNAME), now)]
        if self._locked(user, now):
            return self.locked_out(c, user, now)
        c.state, c.claimed = State.PASSWORD, user
        return reply(c.id, _USERNAME_OK)

    @command(FrameType.PASSWORD, string("password"), states=frozenset({State.PASSWORD}))
    def password(self, c: Conn, now: float, password: str) -> list[Step]:
        user = c.claimed
        assert user is not None   # (set with the PASSWORD state)
        waiting = self._checks.get(user)
        if waiting is not None:   # another password for this account is being checked: this one comes next
            c.state = State.CHECKING
            waiting.append((c.id, password))
            return []
        return self._try_password(c, user, password, now)

    def _try_password(self, c: Conn, user: str, password: str, now: float) -> list[Step]:
        """Answer ``password`` for ``user`` on ``c``, or have it checked (``CheckPassword``) if it is hashed."""
        if user not in self.accounts:   # removed since the name was given
            c.state, c.claimed = State.LOGIN, None
            log.info("conn %d: %s was removed during its login", c.id, user, extra={"conn": c.id, "user": user})
            return reply(c.id, error(ErrorCode.INVALID_USERNAME))
        if self._locked(user, now):
            return self.locked_out(c, user, now)
        stored = self.accounts[user]
        if is_hashed(stored):
            c.state = State.CHECKING
            self._checks[user] = deque()
            self._checking[c.id] = (user, stored, password)
            return [CheckPassword(c.id, stored, password)]
        ok = secrets.compare_digest(password.encode("utf-8", "surrogatepass"), stored.encode("utf-8", "surrogatepass"))
        return self._claim(c, user, ok, now)

    def password_checked(self, conn: int, ok: bool | None, now: float) -> list[Step]:
        """The answer to ``CheckPassword`` for ``conn``: whether the password matched (None: it could not be
        checked); then the passwords waiting for the same account, in order, until one needs checking."""
        entry = self._checking.pop(conn, None)
        if entry is None or self._sessions.shut:
            return []
        user, hashed, password = entry
        waiting = self._checks.pop(user)
        conns = self._sessions.conns
        c = conns.get(conn)
        effects: list[Step]
        if ok is None:
            effects = [] if c is None else self.cannot_check(c)
        elif self.accounts.get(user) != hashed:   # removed or changed meanwhile: as it is now
            effects = [] if c is None else self._try_password(c, user, password, now)
        else:
            effects = self._claim(c, user, ok, now)
        while waiting and user not in self._checks:
            next_conn, next_password = waiting.popleft()
            c = conns.get(next_conn)
            if c is not None:   # (gone before its turn: never checked)
                effects += self._try_password(c, user, next_password, now)
        if waiting:   # one of them is being checked now: the others wait behind it
            self._checks[user] = waiting
        return effects

    def cannot_check(self, c: Conn) -> list[Step]:
        """The password could not be checked: the client may send it again (nothing counts)."""
        c.state = State.PASSWORD
        log.info("conn %d: its password could not be checked", c.id, extra={"conn": c.id})
        return reply(c.id, _TRY_AGAIN)

    def locked_out(self, c: Conn, user: str, now: float) -> list[Step]:
        log.debug("conn %d: %s is locked", c.id, user, extra={"conn": c.id, "user": user, "reason": "locked"})
        self._counts.logins_failed.locked += 1
        return [LoginFailed(c.id, "locked account"),
                *self._door.close(c, error(ErrorCode.ACCOUNT_LOCKED, **self.lock_left(user, now)), now,
                                  "account locked")]

    def lock_left(self, user: str, now: float) -> dict[str, int]:
        """``retry``: the whole seconds until ``user``'s lock ends (its client says how long it lasts), if known."""
        until = self._locked_until.get(user)
        return {} if until is None or until <= now else {"retry": math.ceil(until - now)}

    # -- a password's outcome ------------------------------------------------------

    def decide(self, c: Conn | None, user: str, ok: bool, now: float) -> list[Step]:
        """This process decides whether the password given for ``user`` on ``c`` (None: gone since) was right
        (a wrong one counts, and locks the account at the ``MAX_LOGIN_FAILURES``-th), then ``conclude``s."""
        if not ok:
            outcome = self.count_wrong(c.id if c else None, user, now)
        elif user in self._sessions.online:   # told only now, to whoever knows the password
            outcome = LoginOutcome.ALREADY
        else:
            outcome = LoginOutcome.WELCOME
        return self.conclude(c, user, outcome, now)

    def count_wrong(self, conn: int | None, user: str, now: float) -> LoginOutcome:
        """A wrong password for ``user`` (at a login, or given as the current one to change it, on ``conn``):
        counted, and the account locked at the ``MAX_LOGIN_FAILURES``-th in a row (BLOCKED), else WRONG."""
        failures = self._failures.get(user, 0) + 1
        where = "(gone)" if conn is None else conn
        if failures >= MAX_LOGIN_FAILURES:
            self._failures.pop(user, None)
            self._locked_until[user] = now + self.block_duration
            self._counts.lockouts.passwords += 1
            log.warning("conn %s: wrong password for %s (%d in a row): locked for %gs", where, user, failures,
                        self.block_duration, extra={"conn": conn, "user": user, "reason": "locked"})
            return LoginOutcome.BLOCKED
        self._failures[user] = failures
        log.debug("conn %s: wrong password for %s (%d in a row)", where, user, failures,
                  extra={"conn": conn, "user": user, "reason": "wrong password"})
        return LoginOutcome.WRONG

    def forget_failures(self, user: str) -> None:
        """The right password for ``user`` was given (its current one, to change it): the count starts anew."""
        self._failures.pop(user, None)

    def conclude(self, c: Conn | None, user: str, outcome: LoginOutcome, now: float) -> list[Step]:
        """What ``outcome`` of the password given for ``user`` means for its connection ``c`` (None: gone)."""
        if c is None:
            return []
        if outcome is LoginOutcome.WELCOME:
            self._failures.pop(user, None)
            return self._door.welcome(c, user, now)
        if outcome is LoginOutcome.WRONG:
            c.state = State.PASSWORD
            self._counts.logins_failed.wrong_password += 1
            return [LoginFailed(c.id, "wrong password"), *self._door.refuse(c, error(ErrorCode.INVALID_PASSWORD), now)]
        if outcome is LoginOutcome.BLOCKED:
            self._counts.logins_failed.wrong_password += 1
            return [LoginFailed(c.id, "wrong password"),
                    *self._door.close(c, error(ErrorCode.ACCOUNT_BLOCKED, **self.lock_left(user, now)), now,
                                      "account blocked")]
        if outcome is LoginOutcome.LOCKED:
            return self.locked_out(c, user, now)
        if outcome is LoginOutcome.ALREADY:
            c.state, c.claimed = State.LOGIN, None
            log.info("conn %d: %s is already logged in", c.id, user, extra={"conn": c.id, "user": user})
            return reply(c.id, error(ErrorCode.ALREADY_LOGGED_IN, user=user))
        return self.cannot_check(c)
