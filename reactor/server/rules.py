"""The chat server's rules as a sans-I/O state machine: decoded frames and the time go in, effects come out.

``ChatServer`` never touches a socket, a file or a clock. The host numbers the
connections, calls one method per event with the current monotonic time
``now`` (seconds), and carries out the returned effects in order:

- ``Send``: one frame to one or many connections (encode it once);
  ``SendBatch``: several frames, in order, to each of many connections;
  ``SendStored``: stored messages to one connection, in order, each frame
  without its ``text``: the host reads the texts from its store (the logic
  keeps only what it needs to know of a stored message: sender, sizes, time);
- ``Close``: close a connection once what was sent to it is flushed;
- ``SetTimer`` / ``CancelTimer``: (re)arm or drop a named timer; when it
  comes due the host calls ``timer_fired(key, now)``;
- ``KeepMessage``, ``ForgetMessages``, ``AddBlock``, ``RemoveBlock`` (a
  ``StoreChange``): a durable change; the ``Send``s after it must wait until it
  is stored. Its ``confirm`` (a ``Send``, or None) is the reply that says it is
  kept: sent in its place once stored; if the store cannot keep it (full),
  the host calls ``not_stored(change, now)`` instead, which undoes it and
  answers for it;
- ``WhenWritable``: once this connection has room for more output (what was
  sent to it before has mostly left), call ``writable(conn, now)``;
- ``LoggedIn``: this connection is a user's now, no longer a stranger's (it
  comes before the welcome): the host lifts the limits it keeps on strangers;
- ``LoginFailed``: a login attempt on this connection failed (an unknown
  name, a wrong password, a locked account, too many errors): the host
  counts these per source address and logs the counts, not each attempt;
- ``CheckPassword``: check this password against this hash (an account
  whose password field is a scrypt hash, ``reactor/server/passwords.py``): slow, so
  the host has it checked off the loop and calls ``password_checked(conn, ok,
  now)`` with the answer (``ok`` None: it could not be checked).

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

Before login every refusal (a bad frame, an unknown name, a wrong password,
a command answered ``not_logged_in``) counts toward the connection's budget
of bad frames: at ``max_bad_frames`` it is closed. Whether a name is online
is told only to whoever gives its right password.

Stored messages go out paced by the reader: at login the first chunk of them
(about ``MAILBOX_CHUNK`` bytes, one ``SendStored``), then one more chunk per ``writable``. A
connection keeps a cursor (the ids still to send); while it is not empty, a
message to that user is stored behind them rather than sent at once, so no
live message overtakes a stored one.

Timer keys: ``("login", conn)`` the login deadline, ``("idle", conn)`` the
inactivity deadline of a logged-in connection, ``("private", requester,
target)`` the life of an accepted private-chat token. A timer that fires for
something that is gone does nothing, so a stale one is harmless.

Once the logic has said ``Close`` for a connection it forgets it at once: the
user is logged out then, and later frames or a ``disconnected`` for it are
ignored.

Limits per user (not per connection: logging in again resets nothing): a
token bucket (``rate`` tokens a second, at most ``burst`` saved) pays for
what reaches others or the disk: a message or broadcast costs one token per
started ``RATE_UNIT`` bytes of its text on the wire, a startprivate, block or
unblock one; without the tokens it is refused with ``rate_limited`` (``retry``:
whole seconds until it would pass). A broadcast costs what a message does,
whoever hears it: what protects a reader is the bytes that reach it, the same
for both. And ``sender_quota`` caps the bytes a user has kept for others
(``STORED_OVERHEAD`` plus each text's UTF-8), freed as recipients acknowledge:
beyond it a message is refused with ``quota_exceeded``.
"""
from __future__ import annotations

import bisect
import logging
import math
import secrets
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import Enum
from typing import Any, TypeVar, cast

from ..protocol import (
    LOGIN_FRAMES,
    MAX_CERT,
    MAX_TEXT,
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    ErrorCode,
    Frame,
    FrameType,
)
from ..text import CONTROL
from ..timer_effects import CancelTimer, SetTimer
from .passwords import is_hashed

__all__ = ["Send", "SendBatch", "SendStored", "Close", "SetTimer", "CancelTimer", "KeepMessage", "ForgetMessages",
           "AddBlock", "RemoveBlock", "WhenWritable", "LoggedIn", "LoginFailed", "CheckPassword", "StoreChange",
           "STORE_CHANGES", "ServerEffect", "SERVER_EFFECTS", "ChatServer", "PROTOCOL_VERSION", "PROTOCOL_VERSIONS",
           "MAX_LOGIN_FAILURES", "MAX_LOGIN_TIME", "MAILBOX_CHUNK", "RATE", "BURST", "RATE_UNIT", "SENDER_QUOTA",
           "STORED_OVERHEAD", "ClaimLogin", "ReleaseLogin", "Relay", "Publish", "ClusterEffect",
           "CLUSTER_EFFECTS"]

log = logging.getLogger(__name__)

MAX_LOGIN_FAILURES = 3   # wrong passwords in a row that lock an account
MAX_LOGIN_TIME = 60.0    # seconds: a connection must log in within timeout, but never more than this
MAILBOX_CHUNK = 32 * 1024   # about the bytes of stored messages sent per turn of a mailbox delivery
_FRAME_OVERHEAD = 64        # about the bytes of a stored message's frame besides its sender and text
RATE = 5.0                  # tokens a user earns per second (the sustained rate of messages)
BURST = 20                  # tokens a user can save up (the messages it may send at once)
RATE_UNIT = 4096            # bytes of text on the wire one token pays for: a bigger message costs more
SENDER_QUOTA = 1 << 20      # bytes a user may have kept for others, all recipients together
STORED_OVERHEAD = 64        # bytes a kept message counts besides its text's UTF-8, so tiny ones are not free


# -- effects ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    """One frame to one or many connections: the host encodes it once."""
    conns: tuple[int, ...]
    frame: Frame


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Several frames, in order, to each of these connections: encoded once, one write each."""
    conns: tuple[int, ...]
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class SendStored:
    """Stored messages to this connection, in order: each frame is whole but for its ``text``, which the host
    reads from its store by the frame's ``id`` (the store sees the changes it has not committed yet)."""
    conn: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close this connection once what was sent to it is flushed."""
    conn: int


@dataclass(frozen=True, slots=True)
class KeepMessage:
    """A durable change: keep message ``id`` from ``sender`` for ``to`` (``sent``: wall-clock seconds, or None).
    ``confirm``, as in each store change: the reply sent, in this place, once the change is stored."""
    id: int
    to: str
    sender: str
    text: str
    sent: float | None = None
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class ForgetMessages:
    """A durable change: forget the kept messages ``ids`` (acknowledged by their recipient)."""
    ids: tuple[int, ...]
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class AddBlock:
    """A durable change: ``blocker`` blocks ``blocked``."""
    blocker: str
    blocked: str
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class RemoveBlock:
    """A durable change: ``blocker`` no longer blocks ``blocked``."""
    blocker: str
    blocked: str
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class WhenWritable:
    """Call ``writable(conn, now)`` once this connection has room for more output."""
    conn: int


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """This connection has logged in: it is no stranger any more."""
    conn: int


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """A failed login attempt on this connection; ``reason`` says which kind, in a few words."""
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Check ``password`` against the hash field ``hashed`` off the loop; answer with ``password_checked``."""
    conn: int
    hashed: str
    password: str = dataclass_field(repr=False)   # never in a log line


@dataclass(frozen=True, slots=True)
class ClaimLogin:
    """Cluster mode: the password given for ``user`` on ``conn`` (None: gone since) was right (``ok``) or
    wrong; the engine decides the rest for every node at once (the count of wrong ones, the lockout, the one
    login per user) and the host answers with ``login_decided``."""
    conn: int | None
    user: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ReleaseLogin:
    """Cluster mode: ``user`` logged out of this node: free its login, stamp its logout, tell the other nodes."""
    user: str


@dataclass(frozen=True, slots=True)
class Relay:
    """Cluster mode: ``event`` for the node ``node``, about one of its users (see reactor/cluster/rules.py)."""
    node: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Publish:
    """Cluster mode: ``event`` for every other node (a broadcast)."""
    event: dict[str, Any]


ClusterEffect = ClaimLogin | ReleaseLogin | Relay | Publish   # what only a cluster node's logic returns besides
CLUSTER_EFFECTS: tuple[type[ClusterEffect], ...] = (ClaimLogin, ReleaseLogin, Relay, Publish)
StoreChange = KeepMessage | ForgetMessages | AddBlock | RemoveBlock   # a durable change; the store takes these
STORE_CHANGES: tuple[type[StoreChange], ...] = (KeepMessage, ForgetMessages, AddBlock, RemoveBlock)
ServerEffect = (Send | SendBatch | SendStored | Close | SetTimer | CancelTimer | KeepMessage | ForgetMessages
                | AddBlock | RemoveBlock | WhenWritable | LoggedIn | LoginFailed
                | CheckPassword)   # what ChatServer's methods return
SERVER_EFFECTS: tuple[type[ServerEffect], ...] = (Send, SendBatch, SendStored, Close, SetTimer, CancelTimer,
                                                  *STORE_CHANGES, WhenWritable, LoggedIn, LoginFailed, CheckPassword)


@dataclass(frozen=True, slots=True)
class _Presence:
    """Internal, never returned: ``user`` came (``conn``: its connection) or went here. ``hidden``: the
    users it had blocked then, who are not told. ``_settle`` logs it and tells it in its place."""
    conn: _Session | None
    user: str
    online: bool
    hidden: frozenset[str]


_Effect = ServerEffect | ClusterEffect | _Presence   # what the handlers gather, before _settle tells the presence notes


# -- internal state ---------------------------------------------------------

class _State(Enum):
    """Where a connection is."""
    HELLO = "hello"          # it must say hello first
    LOGIN = "login"          # it may give a user name
    PASSWORD = "password"    # it gave a known name (``claimed``) and may give its password
    CHECKING = "checking"    # its password for ``claimed`` is being checked (or waits its turn): only listen
    ACTIVE = "active"        # logged in: its ``session`` is set

    # Members are singletons, equal only to themselves: hashed by identity in C, not by Enum's Python __hash__
    # (the ``states`` check of every frame: 170 -> 105 ns).
    __hash__ = object.__hash__


_EMPTY: frozenset[str] = frozenset()
_NO_QUEUE: dict[int, tuple[str, int, int, float | None]] = {}   # read-only stand-in for a user with no kept messages
_NOT_LOGGED_IN = {"type": "error", "code": ErrorCode.NOT_LOGGED_IN}
_USERNAME_OK = {"type": "username_ok"}
_PONG = {"type": "pong"}
_CONTROL_CHARACTERS = {"type": "error", "code": ErrorCode.CONTROL_CHARACTERS}
_TRY_AGAIN = {"type": "error", "code": ErrorCode.TRY_AGAIN}
_BE_PATIENT = "wait for the answer to the password"
# One precompiled search (about 0.3 us on a 100-character text), skipped for printable ASCII, the common case
# (two C string checks: tab, the one control character allowed, is not printable, so it goes to the search).
_has_control = CONTROL.search


def _presence_frames(changes: list[tuple[str, bool, frozenset[str]]], version: int) -> list[Frame]:
    """``changes`` as presence frames: one each in version 1; in version 2 one per run of logins or logouts."""
    if version == 1:
        return [{"type": "presence", "user": user, "online": online} for user, online, _ in changes]
    frames: list[Frame] = []
    for user, online, _ in changes:
        if frames and frames[-1]["online"] is online:
            frames[-1]["users"].append(user)
        else:
            frames.append({"type": "presence", "users": [user], "online": online})
    return frames


_Run = tuple[int, bool, list[str]]   # a run of logins or logouts: the index of its first change, online, users


def _runs(changes: list[tuple[str, bool, frozenset[str]]]) -> list[_Run]:
    """``changes`` as runs of logins or logouts, each a version 2 frame's worth."""
    runs: list[_Run] = []
    for index, (user, online, _) in enumerate(changes):
        if runs and runs[-1][1] is online:
            runs[-1][2].append(user)
        else:
            runs.append((index, online, [user]))
    return runs


def _frames_from(runs: list[_Run], start: int) -> list[Frame]:
    """The version 2 frames of the changes from index ``start`` on: the runs from there, the first cut short.

    Those who came in one turn are each owed what came after them (one group each in ``_tell``): a slice of
    the runs made once, not a list built name by name per group. A storm of 10,000 logins spent 2.8 of its
    server's 9.7 s building those lists (under cProfile; now 0.2 s in all of ``_tell``)."""
    at = bisect.bisect_right(runs, start, key=lambda run: run[0]) - 1   # the run holding change ``start``
    first, online, users = runs[at]
    frames: list[Frame] = [{"type": "presence", "users": users[start - first:], "online": online}]
    frames += ({"type": "presence", "users": users, "online": online} for _, online, users in runs[at + 1:])
    return frames


def _send(conns: tuple[int, ...], frames: list[Frame]) -> Send | SendBatch:
    return Send(conns, frames[0]) if len(frames) == 1 else SendBatch(conns, tuple(frames))


def _new_token() -> str:
    return secrets.token_urlsafe(16)


class _Conn:
    """One connection: its login progress and, once logged in, its ``session``."""

    __slots__ = ("id", "address", "state", "claimed", "bad", "deadline", "listen", "cert", "version", "session")

    def __init__(self, conn: int, address: str, deadline: float) -> None:
        self.id = conn
        self.address = address                # the host the connection comes from, as the host saw it
        self.state = _State.HELLO
        self.claimed: str | None = None      # the account named by `username`, awaiting its password
        self.bad = 0                          # bad frames so far
        self.deadline = deadline              # login deadline
        self.listen: tuple[str, int] | None = None   # where the client accepts peers: its address, its port
        self.cert: str | None = None          # its private-chat certificate (TLS mode), relayed to its peers
        self.version = PROTOCOL_VERSION       # the protocol version its hello said
        self.session: _Session | None = None  # set once logged in


class _Session:
    """The logged-in part of a connection: whose it is and what it is owed."""

    __slots__ = ("conn", "id", "user", "last_active", "requests", "mailbox", "pongs", "version", "seen")

    def __init__(self, conn: _Conn, user: str, now: float, seen: int) -> None:
        self.conn = conn
        self.id = conn.id                     # its connection's number
        self.user = user
        self.last_active = now
        # Made when first needed (the mailbox dropped once sent): most sessions never have either, and an
        # empty set and deque cost 216 + 760 bytes. An idle user's Python objects (tracemalloc, 10,000 users):
        # 2.99 -> 1.98 KiB.
        self.requests: set[tuple[str, str]] | None = None   # open private requests it is part of
        self.mailbox: deque[int] | None = None   # ids of the stored messages still to send, oldest first
        self.pongs = 0                        # pings answered once the mailbox is out
        self.version = conn.version           # the protocol version its hello said
        self.seen = seen                      # presence changes logged before this one it has been told of


class _Remote:
    """A user logged in on another node of the cluster: which, and the private requests it is part of here."""

    __slots__ = ("user", "node", "cert", "requests")

    def __init__(self, user: str, node: str) -> None:
        self.user = user
        self.node = node
        self.cert: str | None = None          # its private-chat certificate, as its last startprivate relayed it
        self.requests: set[tuple[str, str]] | None = None


_Party = _Session | _Remote   # a user online anywhere


class _Request:
    """An open private-chat request; ``token`` is set once the target accepted."""

    __slots__ = ("requester", "target", "token", "expires")

    def __init__(self, requester: str, target: str) -> None:
        self.requester = requester
        self.target = target
        self.token: str | None = None
        self.expires = 0.0


def _error(code: ErrorCode, **fields: Any) -> Frame:
    frame = {"type": "error", "code": code}
    frame.update(fields)
    return frame


def _unknown(kind: str) -> str:
    return f"unknown frame type {kind[:40]!r}"


# -- the frames a client sends: each declared once --------------------------

@dataclass(frozen=True, slots=True)
class _Field:
    """A field of a client's frame: ``problem`` says what is wrong with its value (None: it will do), the
    detail of the refusal: a ``bad_frame`` (counted toward the connection's budget), or an answer with ``code``."""
    name: str
    problem: Callable[[Any], str | None]
    code: ErrorCode = ErrorCode.BAD_FRAME


def _typed(name: str, kind: type, what: str) -> _Field:
    """A field whose value must be of JSON type ``kind`` exactly (``True`` is no integer)."""
    detail = f"{name!r} must be {what}"
    return _Field(name, lambda value: None if type(value) is kind else detail)


def _valid(name: str, what: str, valid: Callable[[Any], bool]) -> _Field:
    """A field whose value must pass ``valid``."""
    detail = f"{name!r} must be {what}"
    return _Field(name, lambda value: None if valid(value) else detail)


def _any(name: str) -> _Field:
    """A field the handler takes as it comes (absent: None)."""
    return _Field(name, lambda value: None)


def _seconds_problem(seconds: Any) -> str | None:
    kind = type(seconds)
    if kind is not int and kind is not float:
        return "whoelsesince needs a number of seconds"
    if kind is float and not math.isfinite(seconds):
        return "whoelsesince needs a finite number of seconds"
    if seconds < 0:
        return "whoelsesince needs seconds that are not negative"
    return None


def _string(name: str) -> _Field:
    return _typed(name, str, "a string")


_LOGGED_IN = frozenset({_State.ACTIVE})
_LOGGING_IN = frozenset({_State.LOGIN, _State.PASSWORD})   # said hello, may give a name or a password
_STRANGER = _LOGGING_IN | {_State.CHECKING}                 # said hello, not logged in


@dataclass(frozen=True, slots=True)
class _Command:
    """How the server takes one type of client frame: in which connection ``states``, with which ``fields``
    (checked in order before ``handler`` runs), and whether it counts as the user's ``activity`` (it re-arms
    the inactivity timer). ``handler(server, who, now, *values)``: ``who`` is the ``_Session`` of a command
    taken only after login, else the ``_Conn``; ``values`` are the fields' values, checked."""
    handler: Callable[..., list[_Effect]]
    fields: tuple[_Field, ...]
    states: frozenset[_State]
    activity: bool
    session: bool


_COMMANDS: dict[str, _Command] = {}   # frame type -> how it is taken; filled by @_command below
_Handler = TypeVar("_Handler", bound=Callable[..., list[_Effect]])


def _command(kind: FrameType, *fields: _Field, states: frozenset[_State] = _LOGGED_IN,
             activity: bool = True) -> Callable[[_Handler], _Handler]:
    """Declare the handler of client frames of type ``kind``: their fields, and when they are taken (by
    default after login only; a frame that comes in another state is refused as ``_misplaced`` says)."""
    def declare(handler: _Handler) -> _Handler:
        _COMMANDS[kind] = _Command(handler, fields, states, activity, states == _LOGGED_IN)
        return handler
    return declare


def _wire_size(text: str) -> int:
    """About the bytes of ``text`` in a frame (see ``_wire_bytes``)."""
    if text.isascii():
        return len(text)
    return _wire_bytes(len(text.encode("utf-8", "surrogatepass")), len(text))


def _wire_bytes(size: int, chars: int) -> int:
    """About the bytes in a frame of a text of ``size`` UTF-8 bytes and ``chars`` characters: JSON escapes
    each non-ASCII character as ``\\uXXXX`` (6 bytes), or two of them (12) beyond the BMP; 4 x UTF-8
    bytes - 3 x characters is close to both, and exact for ASCII."""
    return 4 * size - 3 * chars


def _cost(text: str) -> int:
    """The tokens a message of ``text`` costs: one per started ``RATE_UNIT`` bytes on the wire, at least one."""
    return max(1, -(-_wire_size(text) // RATE_UNIT))


def _stored_size(size: int) -> int:
    """What a kept message of ``size`` UTF-8 bytes counts against its sender's quota."""
    return STORED_OVERHEAD + size


# -- the state machine ------------------------------------------------------

class ChatServer:
    """Every server-side rule of the chat; one method per event, each returning effects in order."""

    KEEPS_ALL = True   # every kept message is this server's (a cluster node's are the engine's)

    def __init__(self, accounts: dict[str, str], block_duration: float, timeout: float, *,
                 max_text: int = MAX_TEXT, queue_cap: int = 1000, max_bad_frames: int = 10,
                 token_ttl: float = 30.0, token_factory: Callable[[], str] = _new_token,
                 blocks: Iterable[tuple[str, str]] = (),
                 offline: Iterable[tuple[int, str, str, int, int, float | None]] = (),
                 wall_offset: float | None = None,
                 rate: float | None = RATE, burst: int = BURST,
                 sender_quota: int | None = SENDER_QUOTA) -> None:
        """``blocks``: (blocker, blocked) pairs; ``offline``: the stored messages as (id, to, sender, size,
        chars, sent): their texts' UTF-8 bytes and characters (the texts stay in the host's store), and
        when they were sent (or None).

        ``rate``/``burst``: each user's token bucket (None: no rate limit);
        ``sender_quota``: bytes a user may have kept for others (None: no quota).

        ``wall_offset``: ``now + wall_offset`` is the wall-clock time (seconds
        since the epoch) stamped as ``sent`` on stored messages; None leaves
        ``sent`` out (the logic cannot read a clock itself).
        """
        self._accounts = dict(accounts)
        self._block_duration = float(block_duration)
        self._timeout = float(timeout)
        self._login_time = min(self._timeout, MAX_LOGIN_TIME)
        self._max_text = max_text
        self._queue_cap = queue_cap
        self._max_bad = max_bad_frames
        self._token_ttl = float(token_ttl)
        self._token_factory = token_factory
        self._wall_offset = wall_offset
        self._conns: dict[int, _Conn] = {}
        self._online: dict[str, _Session] = {}       # user -> its session
        self._remote: dict[str, _Remote] = {}        # cluster mode: user -> where it is logged in, on another node
        self._last_logout: dict[str, float] = {}
        self._failures: dict[str, int] = {}          # wrong passwords in a row
        self._locked_until: dict[str, float] = {}
        # A hashed account's passwords, checked one at a time: an account is a key of _checks while one is
        # being checked, and its value holds the (conn, password) waiting their turn; _checking: the
        # connection whose password is being checked -> (user, hash, password).
        self._checks: dict[str, deque[tuple[int, str]]] = {}
        self._checking: dict[int, tuple[str, str, str]] = {}
        self._blocks: dict[str, set[str]] = {}       # blocker -> the users it blocked
        self._blockers: dict[str, set[str]] = {}     # blocked -> the users who blocked it
        # to -> id -> (sender, size, wire, sent): the text's UTF-8 bytes and about its bytes on the wire
        self._offline: dict[str, dict[int, tuple[str, int, int, float | None]]] = {}
        self._requests: dict[tuple[str, str], _Request] = {}  # (requester, target) -> request
        self._next_id = 1
        self._shut = False
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}   # user -> (tokens, when counted)
        self._sender_quota = sender_quota
        self._kept_by: dict[str, int] = {}           # sender -> bytes kept for others (quota count)
        # Presence changes not yet told to everyone (see _settle): (user, online, hidden), the last of
        # _logged logged so far; _hidden: every name some of them hide from; _leaving: users logged out in
        # this event, who may still be owed changes before their bye.
        self._log: list[tuple[str, bool, frozenset[str]]] = []
        self._logged = 0
        self._hidden: set[str] = set()
        self._marked = False          # effects being built hold a _Presence
        self._turns = False           # the host calls end_turn: changes wait for the end of the turn
        self._leaving: dict[int, _Session] = {}
        for blocker, blocked in blocks:
            self._blocks.setdefault(blocker, set()).add(blocked)
            self._blockers.setdefault(blocked, set()).add(blocker)
        for mid, to, sender, size, chars, sent in sorted(offline, key=lambda r: r[0]):
            sender = sys.intern(sender)   # one string per sender, not one per message
            self._offline.setdefault(to, {})[mid] = (sender, size, _wire_bytes(size, chars), sent)
            self._kept_by[sender] = self._kept_by.get(sender, 0) + _stored_size(size)
            self._next_id = max(self._next_id, mid + 1)

    # -- read-only views ---------------------------------------------------

    def user_of(self, conn: int) -> str | None:
        """The user logged in on ``conn``, or None."""
        c = self._conns.get(conn)
        return c.session.user if c is not None and c.session is not None else None

    def online_users(self) -> list[str]:
        """The users logged in now, sorted."""
        return sorted(self._online.keys() | self._remote.keys())

    def here(self, user: str) -> bool:
        """Whether ``user`` is logged in here (on a cluster node: on this node)."""
        return user in self._online

    @property
    def block_duration(self) -> float:
        """Seconds an account stays locked after too many wrong passwords."""
        return self._block_duration

    def is_locked(self, user: str, now: float) -> bool:
        """Whether ``user``'s account is in its lockout at ``now``."""
        until = self._locked_until.get(user)
        return until is not None and now < until

    def kept_by(self, sender: str) -> int:
        """The bytes ``sender`` has kept for others, as its quota counts them."""
        return self._kept_by.get(sender, 0)

    def stored(self, user: str) -> list[tuple[int, str]]:
        """The messages kept for ``user``, oldest first, as (id, sender)."""
        return [(mid, meta[0]) for mid, meta in self._offline.get(user, {}).items()]

    # -- events ------------------------------------------------------------

    def connected(self, conn: int, now: float, address: str) -> list[ServerEffect]:
        """A new connection from ``address`` (the IP address the host saw it come from, as text: where
        this client's peers will connect): arm its login deadline (``timeout``, at most
        ``MAX_LOGIN_TIME``), or after shutdown turn it away."""
        if self._shut:
            return [Send((conn,), {"type": "bye", "reason": "shutdown"}), Close(conn)]
        deadline = now + self._login_time
        self._conns[conn] = _Conn(conn, address, deadline)
        return [SetTimer(("login", conn), deadline)]

    def received(self, conn: int, frame: Any, now: float) -> list[ServerEffect]:
        """One decoded frame (any JSON value) from ``conn``."""
        return self._settle(self._received(conn, frame, now))

    def _received(self, conn: int, frame: Any, now: float) -> list[_Effect]:
        c = self._conns.get(conn)
        if c is None:
            return []
        if type(frame) is not dict:
            return self._bad(c, "a frame must be a JSON object", now)
        kind = frame.get("type")
        if type(kind) is not str:
            return self._bad(c, "a frame needs a string 'type'", now)
        command = _COMMANDS.get(kind)
        session = c.session
        if session is not None and (command is None or command.activity):
            session.last_active = now   # (a ping is the client's barrier, not the user's doing)
        if command is None or c.state not in command.states:
            return self._misplaced(c, kind, command, now)
        values = []
        for field in command.fields:
            value = frame.get(field.name)
            problem = field.problem(value)
            if problem is not None:
                if field.code is ErrorCode.BAD_FRAME:
                    return self._bad(c, problem, now)
                return self._reply(c, _error(field.code, detail=problem))
            values.append(value)
        return command.handler(self, session if command.session else c, now, *values)

    def _misplaced(self, c: _Conn, kind: str, command: _Command | None, now: float) -> list[_Effect]:
        """Refuse a frame of a type unknown, or not taken in the connection's state."""
        state = c.state
        if state is _State.HELLO:
            return self._bad(c, "the first frame must be hello", now)
        if state is _State.ACTIVE:
            return self._bad(c, "already logged in" if kind in LOGIN_FRAMES else _unknown(kind), now)
        if command is not None and command.session:
            return self._refuse(c, _NOT_LOGGED_IN, now)
        if state is _State.CHECKING and kind in (FrameType.USERNAME, FrameType.PASSWORD):
            return self._bad(c, _BE_PATIENT, now)
        if kind == FrameType.PASSWORD:
            return self._bad(c, "send the username first", now)
        return self._bad(c, "hello was already said" if kind == FrameType.HELLO else _unknown(kind), now)

    def bad_frame(self, conn: int, detail: str, now: float) -> list[ServerEffect]:
        """The framing layer could not decode a line from ``conn``."""
        c = self._conns.get(conn)
        return self._settle(self._bad(c, detail, now)) if c is not None else []

    def disconnected(self, conn: int, now: float) -> list[ServerEffect]:
        """``conn`` is gone: log its user out; nothing is sent to it any more."""
        c = self._conns.get(conn)
        if c is None:
            return []
        if c.session is None:
            log.debug("conn %d: gone before logging in", conn)
        return self._settle(self._forget(c, now, "connection lost"))

    def writable(self, conn: int, now: float) -> list[ServerEffect]:
        """``conn`` has room for more output (the answer to ``WhenWritable``): the next stored messages."""
        c = self._conns.get(conn)
        return [] if c is None or c.session is None else self._settle(self._next_stored(c.session))

    def timer_fired(self, key: Any, now: float) -> list[ServerEffect]:
        """The timer ``key`` came due."""
        return self.timers_fired((key,), now)

    def timers_fired(self, keys: Iterable[Any], now: float) -> list[ServerEffect]:
        """Timers that came due together, in order. Users timed out together are not told of
        each other's logout (they are leaving at the same instant); everyone who stays is."""
        return self._settle(self._timers_fired(keys, now))

    def _timers_fired(self, keys: Iterable[Any], now: float) -> list[_Effect]:
        effects: list[_Effect] = []
        timed_out: list[_Session] = []
        for key in keys:
            if type(key) is not tuple or not key:
                continue
            kind = key[0]
            if kind == "idle":
                effects += self._idle_due(key, now, timed_out)
            elif kind == "login":
                effects += self._login_due(key, now)
            elif kind == "private":
                effects += self._token_due(key, now)
        if not timed_out:
            return effects
        effects.insert(0, Send(tuple(s.id for s in timed_out), {"type": "bye", "reason": "timeout"}))
        return effects + [self._presence(s.user, False) for s in timed_out]

    def _idle_due(self, key: tuple[Any, ...], now: float, timed_out: list[_Session]) -> list[_Effect]:
        """Re-arm a deadline that activity moved, or log the user out (the caller says bye to all at once)."""
        c = self._conns.get(key[1])
        s = c.session if c is not None else None
        if s is None:
            return []
        deadline = s.last_active + self._timeout
        if deadline > now:
            return [SetTimer(key, deadline)]
        timed_out.append(s)
        return [Close(s.id), *self._forget(s.conn, now, "inactivity", fired=True, announce=False)]

    def _login_due(self, key: tuple[Any, ...], now: float) -> list[_Effect]:
        c = self._conns.get(key[1])
        if c is None or c.session is not None:
            return []
        if c.deadline > now:
            return [SetTimer(key, c.deadline)]
        log.info("conn %d: login timed out", c.id)
        return [Send((c.id,), _error(ErrorCode.LOGIN_TIMEOUT)), Close(c.id),
                *self._forget(c, now, "login timeout", fired=True)]

    def _token_due(self, key: tuple[Any, ...], now: float) -> list[_Effect]:
        req = self._requests.get(key[1:])
        if req is None or req.token is None:
            return []
        if req.expires > now:
            return [SetTimer(key, req.expires)]
        log.info("private request %r -> %r: token expired", req.requester, req.target)
        return self._cancel(req, (req.requester, req.target), fired=True)

    def password_checked(self, conn: int, ok: bool | None, now: float) -> list[ServerEffect]:
        """The answer to ``CheckPassword`` for ``conn``: whether the password matched (None: it could not be
        checked); then the passwords waiting for the same account, in order, until one needs checking."""
        entry = self._checking.pop(conn, None)
        if entry is None or self._shut:
            return []
        user, hashed, password = entry
        waiting = self._checks.pop(user)
        c = self._conns.get(conn)
        effects: list[_Effect]
        if ok is None:
            effects = [] if c is None else self._cannot_check(c)
        elif self._accounts.get(user) != hashed:   # removed or changed meanwhile: as it is now
            effects = [] if c is None else self._try_password(c, user, password, now)
        else:
            effects = self._password_result(c, user, ok, now)
        while waiting and user not in self._checks:
            next_conn, next_password = waiting.popleft()
            c = self._conns.get(next_conn)
            if c is not None:   # (gone before its turn: never checked)
                effects += self._try_password(c, user, next_password, now)
        if waiting:   # one of them is being checked now: the others wait behind it
            self._checks[user] = waiting
        return self._settle(effects)

    def accounts_changed(self, accounts: dict[str, str], now: float) -> list[ServerEffect]:
        """The accounts file was read again: new accounts can log in, a changed password counts from the
        next login, and the session of a removed account ends (bye ``account_removed``; the others see it
        log out). A login waiting for the password of a removed name fails at the password. Messages kept
        for a removed account stay, for the day it comes back."""
        if self._shut:
            return []
        old, self._accounts = self._accounts, dict(accounts)
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
        gone = [self._online[user] for user in removed if user in self._online]
        if not gone:
            return []
        effects: list[_Effect] = [
            Send(tuple(s.id for s in gone), {"type": "bye", "reason": "account_removed"})]
        for s in gone:
            effects += [Close(s.id), *self._forget(s.conn, now, "account removed", announce=False)]
        return self._settle(effects + [self._presence(s.user, False) for s in gone])

    def not_stored(self, change: StoreChange, now: float) -> list[ServerEffect]:
        """The store could not keep ``change`` (it is full): undo it and answer in place of its ``confirm``.

        A message is forgotten (never delivered later, not counted in the queue) and its sender gets
        ``store_full``; unless its recipient logged in meanwhile and was handed it: then it is confirmed
        after all. A block or unblock is undone and refused with ``store_full``. An acknowledgement that
        was not recorded leaves those messages on disk: they come again after a restart.
        """
        return self._settle(self._not_stored(change))

    def _not_stored(self, change: StoreChange, refusal: Frame | None = None) -> list[_Effect]:
        """Undo ``change``; a message's sender gets ``refusal`` (by default ``store_full``)."""
        conns = change.confirm.conns if change.confirm is not None else ()
        if type(change) is KeepMessage:
            mid, to = change.id, change.to
            queue = self._offline.get(to)
            if queue is not None and mid in queue:
                self._unkeep(queue, mid)
                if not queue:
                    del self._offline[to]
            target = self._online.get(to)
            if target is not None:
                if not target.mailbox or mid not in target.mailbox:   # already handed to its recipient
                    return [change.confirm] if change.confirm is not None else []
                target.mailbox.remove(mid)
            source = self._online.get(change.sender)
            if not conns and source is not None:   # queued behind a mailbox on its way: no confirm was due
                conns = (source.id,)
            log.info("message %d to %s not kept: %s", mid, to, "refused" if refusal else "the store is full")
            refusal = refusal or _error(ErrorCode.STORE_FULL, command="message", user=to)
        elif type(change) is AddBlock or type(change) is RemoveBlock:
            command = "block" if type(change) is AddBlock else "unblock"
            self._set_block(change.blocker, change.blocked, type(change) is RemoveBlock)
            log.warning("%s of %s by %s not kept: the store is full", command, change.blocked, change.blocker)
            refusal = _error(ErrorCode.STORE_FULL, command=command, user=change.blocked)
        else:
            log.warning("%r not kept: the store is full", change)
            return []
        return [Send(conns, refusal)] if conns else []

    def shutdown(self, now: float) -> list[ServerEffect]:
        """Say bye(shutdown) to every connection and close each; afterwards every event is ignored."""
        if self._shut:
            return []
        told = self._tell_all()   # the turn's presence changes before the bye
        self._shut = True
        conns = tuple(self._conns)
        log.info("shutdown: %d connections, %d users online", len(conns), len(self._online))
        for user in self._online:
            self._last_logout[user] = now
        self._conns.clear()
        self._online.clear()
        self._requests.clear()
        if not conns:
            return told
        return [*told, Send(conns, {"type": "bye", "reason": "shutdown"}), *(Close(conn) for conn in conns)]

    # -- plumbing ----------------------------------------------------------

    def _bad(self, c: _Conn, detail: str, now: float) -> list[_Effect]:
        """Answer a bad frame; close the connection at the max_bad_frames-th."""
        return self._refuse(c, _error(ErrorCode.BAD_FRAME, detail=detail), now)

    def _refuse(self, c: _Conn, answer: Frame, now: float) -> list[_Effect]:
        """Send ``answer`` to a frame that counts toward the bad-frame budget; close at the max_bad_frames-th
        (a stranger's closing is only counted, in the host's aggregate, a user's is logged)."""
        c.bad += 1
        effects: list[_Effect] = [Send((c.id,), answer)]
        if c.bad < self._max_bad:
            log.debug("conn %d: refused: %s", c.id, answer.get("detail", answer["code"]))
            return effects
        if c.session is not None:
            log.warning("conn %d: %d bad frames, closing (last: %s)", c.id, c.bad, answer.get("detail", answer["code"]))
        else:
            effects.append(LoginFailed(c.id, "closed after too many errors"))
        effects.append(Close(c.id))
        return effects + self._forget(c, now, "too many bad frames")

    def _close(self, c: _Conn, frame: Frame, now: float, why: str) -> list[_Effect]:
        """Send ``frame``, close, and forget the connection."""
        return [Send((c.id,), frame), Close(c.id), *self._forget(c, now, why)]

    def _forget(self, c: _Conn, now: float, why: str, fired: bool = False, announce: bool = True) -> list[_Effect]:
        """Drop ``c``: cancel its timer (unless it is the one that ``fired``) and end its session,
        telling the others (unless the caller will, ``announce=False``)."""
        del self._conns[c.id]
        s = c.session
        if s is None:
            return [] if fired else [CancelTimer(("login", c.id))]
        effects: list[_Effect] = [] if fired else [CancelTimer(("idle", c.id))]
        user = s.user
        for key in list(s.requests or ()):
            req = self._requests[key]
            other = req.target if req.requester == user else req.requester
            effects += self._cancel(req, (other,))
        del self._online[user]
        self._leaving[c.id] = s
        self._last_logout[user] = now
        if announce:
            effects.append(self._presence(user, False))
        log.info("%s logged out (%s), conn %d", user, why, c.id)
        return effects

    # -- presence ------------------------------------------------------------

    def end_turn(self, now: float) -> list[ServerEffect]:
        """The host's loop turn is over (call it before the loop sleeps): tell everyone online the presence
        changes of the turn they have not been told, one frame per run of logins or logouts (version 2)
        or one frame per change (version 1). Once a host has called it, the changes wait for it (a storm
        of logins costs each user one frame a turn, not one a login), except that a user's pending ones
        always go before any other frame to it; a host that never calls it gets them at once."""
        self._turns = True
        return self._tell_all()

    def _presence(self, user: str, online: bool, conn: _Session | None = None) -> _Presence:
        """``user`` came (on ``conn``) or went: noted in the effects, told by ``_settle``."""
        self._marked = True
        blocked = self._blocks.get(user)
        return _Presence(conn, user, online, frozenset(blocked) if blocked else _EMPTY)

    def _settle(self, effects: list[_Effect]) -> list[ServerEffect]:
        """The effects of one event, its ``_Presence`` notes logged and told: in turns (``end_turn``), a
        user who is owed changes is told them before any other frame to it, so none comes after a later
        frame of the same user; otherwise everyone is told each run of changes before the next effect."""
        if not self._marked and not self._log:
            return cast(list[ServerEffect], effects)   # (no _Presence is made without marking)
        self._marked = False
        out: list[Any] = []   # ServerEffects (and, on a cluster node, ClusterEffects)
        log = self._log
        for effect in effects:
            if isinstance(effect, _Presence):
                log.append((effect.user, effect.online, effect.hidden))
                self._logged += 1
                self._hidden |= effect.hidden
                if effect.conn is not None:   # it is not told of its own login
                    effect.conn.seen = self._logged
                continue
            if log:
                if not self._turns:
                    out += self._tell_all()
                elif isinstance(effect, (Send, SendBatch)):
                    out += self._catch_up(effect.conns)
                elif isinstance(effect, SendStored):
                    out += self._catch_up((effect.conn,))
                elif isinstance(effect, STORE_CHANGES) and effect.confirm is not None:
                    out += self._catch_up(effect.confirm.conns)
            out.append(effect)
        if log and not self._turns:
            out += self._tell_all()
        self._leaving.clear()
        return out

    def _tell_all(self) -> list[ServerEffect]:
        """Tell everyone online what it is owed, and empty the log."""
        if not self._log:
            return []
        effects = self._tell(self._online.values())
        self._log = []
        self._hidden = set()
        return effects

    def _catch_up(self, conns: tuple[int, ...]) -> list[ServerEffect]:
        """Tell those of ``conns`` who are owed changes (users online, or leaving in this event) what they are owed."""
        upto = self._logged
        get, leaving = self._conns.get, self._leaving
        owed = []
        for conn in conns:
            c = get(conn)
            s = c.session if c is not None else leaving.get(conn)
            if s is not None and s.seen < upto:
                owed.append(s)
        return self._tell(owed) if owed else []

    def _tell(self, conns: Iterable[_Session]) -> list[ServerEffect]:
        """Tell each of ``conns`` the logged changes it has not been told, less those hidden from it.

        Those owed the same changes in the same version share one effect (encoded once)."""
        log, hidden, upto = self._log, self._hidden, self._logged
        base = upto - len(log)
        alike: dict[tuple[int, int], list[int]] = {}
        effects: list[ServerEffect] = []
        alone: list[ServerEffect] = []
        for c in conns:
            seen = c.seen
            if seen >= upto:
                continue
            c.seen = upto
            start = seen - base if seen > base else 0
            if c.user in hidden:
                user = c.user
                frames = _presence_frames([change for change in log[start:] if user not in change[2]], c.version)
                if frames:
                    alone.append(_send((c.id,), frames))
            else:
                alike.setdefault((start, c.version), []).append(c.id)
        runs = _runs(log) if alike else []
        for (start, version), ids in alike.items():
            frames = _frames_from(runs, start) if version != 1 else _presence_frames(log[start:], version)
            effects.append(_send(tuple(ids), frames))
        return effects + alone

    def _reply(self, c: _Conn | _Session, frame: Frame) -> list[_Effect]:
        return [Send((c.id,), frame)]

    def _spend(self, s: _Session, cost: int, command: str, now: float) -> list[_Effect]:
        """Take ``cost`` tokens from ``s``'s user's bucket: [] if it had them, else the refusal (nothing taken)."""
        if self._rate is None:
            return []
        user = s.user
        tokens, when = self._buckets.get(user, (self._burst, now))
        tokens = min(self._burst, tokens + (now - when) * self._rate)
        cost = min(cost, self._burst)   # a low burst must not forbid the biggest messages for good
        if tokens < cost:
            self._buckets[user] = (tokens, now)
            retry = max(1, math.ceil((cost - tokens) / self._rate))
            return self._reply(s, _error(ErrorCode.RATE_LIMITED, command=command, retry=retry))
        self._buckets[user] = (tokens - cost, now)
        return []

    def _unkeep(self, queue: dict[int, tuple[str, int, int, float | None]], mid: int) -> None:
        """Forget the kept message ``mid`` of ``queue`` and give its bytes back to its sender's quota."""
        sender, size, _, _ = queue.pop(mid)
        left = self._kept_by.get(sender, 0) - _stored_size(size)
        if left > 0:
            self._kept_by[sender] = left
        else:
            self._kept_by.pop(sender, None)

    # -- handshake and login -------------------------------------------------

    @_command(FrameType.HELLO, _any("version"), states=frozenset({_State.HELLO}))
    def _hello(self, c: _Conn, now: float, version: Any) -> list[_Effect]:
        if type(version) is int and version in PROTOCOL_VERSIONS:
            c.state, c.version = _State.LOGIN, version
            return self._reply(c, {"type": "hello", "version": version})
        log.info("conn %d: protocol version %.40r refused", c.id, version)
        return self._close(c, _error(ErrorCode.VERSION, version=PROTOCOL_VERSION), now, "wrong version")

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

    @_command(FrameType.USERNAME, _string("username"), states=_LOGGING_IN)
    def _username(self, c: _Conn, now: float, user: str) -> list[_Effect]:
        c.state, c.claimed = _State.LOGIN, None
        if user not in self._accounts:   # the name is not logged: it may be a mistyped password
            return [LoginFailed(c.id, "unknown user name"), *self._refuse(c, _error(ErrorCode.INVALID_USERNAME), now)]
        if self._locked(user, now):
            return self._locked_out(c, user, now)
        c.state, c.claimed = _State.PASSWORD, user
        return self._reply(c, _USERNAME_OK)

    @_command(FrameType.PASSWORD, _string("password"), states=frozenset({_State.PASSWORD}))
    def _password(self, c: _Conn, now: float, password: str) -> list[_Effect]:
        user = c.claimed
        assert user is not None   # (set with the PASSWORD state)
        waiting = self._checks.get(user)
        if waiting is not None:   # another password for this account is being checked: this one comes next
            c.state = _State.CHECKING
            waiting.append((c.id, password))
            return []
        return self._try_password(c, user, password, now)

    def _try_password(self, c: _Conn, user: str, password: str, now: float) -> list[_Effect]:
        """Answer ``password`` for ``user`` on ``c``, or have it checked (``CheckPassword``) if it is hashed."""
        if user not in self._accounts:   # removed since the name was given
            c.state, c.claimed = _State.LOGIN, None
            log.info("conn %d: %s was removed during its login", c.id, user)
            return self._reply(c, _error(ErrorCode.INVALID_USERNAME))
        if self._locked(user, now):
            return self._locked_out(c, user, now)
        stored = self._accounts[user]
        if is_hashed(stored):
            c.state = _State.CHECKING
            self._checks[user] = deque()
            self._checking[c.id] = (user, stored, password)
            return [CheckPassword(c.id, stored, password)]
        ok = secrets.compare_digest(password.encode("utf-8", "surrogatepass"), stored.encode("utf-8", "surrogatepass"))
        return self._password_result(c, user, ok, now)

    def _cannot_check(self, c: _Conn) -> list[_Effect]:
        """The password could not be checked: the client may send it again (nothing counts)."""
        c.state = _State.PASSWORD
        log.info("conn %d: its password could not be checked", c.id)
        return self._reply(c, _TRY_AGAIN)

    def _password_result(self, c: _Conn | None, user: str, ok: bool, now: float) -> list[_Effect]:
        """Whether the password given for ``user`` on ``c`` (None: gone since) was right: a wrong one counts."""
        if not ok:
            failures = self._failures.get(user, 0) + 1
            if failures >= MAX_LOGIN_FAILURES:
                self._failures.pop(user, None)
                self._locked_until[user] = now + self._block_duration
                log.warning("conn %s: wrong password for %s (%d in a row): locked for %gs",
                            c.id if c else "(gone)", user, failures, self._block_duration)
                if c is None:
                    return []
                return [LoginFailed(c.id, "wrong password"),
                        *self._close(c, _error(ErrorCode.ACCOUNT_BLOCKED), now, "account blocked")]
            self._failures[user] = failures
            log.debug("conn %s: wrong password for %s (%d in a row)", c.id if c else "(gone)", user, failures)
            if c is None:
                return []
            c.state = _State.PASSWORD
            return [LoginFailed(c.id, "wrong password"), *self._refuse(c, _error(ErrorCode.INVALID_PASSWORD), now)]
        if c is None:
            return []
        if user in self._online:   # told only now, to whoever knows the password
            c.state, c.claimed = _State.LOGIN, None
            log.info("conn %d: %s is already logged in", c.id, user)
            return self._reply(c, _error(ErrorCode.ALREADY_LOGGED_IN, user=user))
        return self._welcome(c, user, now)

    def _locked_out(self, c: _Conn, user: str, now: float) -> list[_Effect]:
        log.debug("conn %d: %s is locked", c.id, user)
        return [LoginFailed(c.id, "locked account"),
                *self._close(c, _error(ErrorCode.ACCOUNT_LOCKED), now, "account locked")]

    def _welcome(self, c: _Conn, user: str, now: float) -> list[_Effect]:
        self._failures.pop(user, None)
        s = _Session(c, user, now, self._logged)   # changes logged before it came are not its news
        c.state, c.claimed, c.session = _State.ACTIVE, None, s
        self._online[user] = s
        log.info("%s logged in, conn %d", user, c.id)
        effects: list[_Effect] = [CancelTimer(("login", c.id)), SetTimer(("idle", c.id), now + self._timeout),
                         LoggedIn(c.id), Send((c.id,), {"type": "welcome", "user": user})]
        effects.append(self._presence(user, True, s))
        queue = self._offline.get(user)
        if queue:
            s.mailbox = deque(queue)
            effects += self._next_stored(s)
        return effects

    def _next_stored(self, s: _Session) -> list[_Effect]:
        """The next chunk of ``s``'s stored messages, oldest first, then WhenWritable if more wait
        (or, once the last is out, the pongs that waited for it)."""
        queue = self._offline.get(s.user, _NO_QUEUE)
        mailbox = s.mailbox
        frames: list[Frame] = []
        size = 0
        while mailbox and size < MAILBOX_CHUNK:
            mid = mailbox.popleft()
            stored = queue.get(mid)
            if stored is None:   # acknowledged meanwhile
                continue
            sender, _, wire, sent = stored
            frame = {"type": "message", "from": sender, "id": mid}
            if sent is not None:
                frame["sent"] = sent
            frames.append(frame)
            size += _FRAME_OVERHEAD + _wire_size(sender) + wire
        effects: list[_Effect] = [SendStored(s.id, tuple(frames))] if frames else []
        if mailbox:
            effects.append(WhenWritable(s.id))
            return effects
        s.mailbox = None
        if s.pongs:
            effects += [Send((s.id,), _PONG)] * s.pongs
            s.pongs = 0
        return effects

    # -- commands ------------------------------------------------------------

    @_command(FrameType.MESSAGE, _string("to"), _string("text"))
    def _message(self, s: _Session, now: float, to: str, text: str) -> list[_Effect]:
        if not (text.isascii() and text.isprintable()) and _has_control(text):
            return self._reply(s, _CONTROL_CHARACTERS)
        if to not in self._accounts:
            return self._reply(s, _error(ErrorCode.INVALID_USER))
        sender = s.user
        if to == sender:
            return self._reply(s, _error(ErrorCode.SELF, command="message"))
        if len(text) > self._max_text:
            return self._reply(s, _error(ErrorCode.TEXT_TOO_LONG, max=self._max_text))
        if sender in self._blocks.get(to, _EMPTY):
            return self._reply(s, _error(ErrorCode.BLOCKED_BY_RECIPIENT, user=to))
        cost = _cost(text)
        target = self._online.get(to)
        mailbox = target.mailbox if target is not None else None
        if target is not None and not mailbox:
            return self._spend(s, cost, "message", now) or [
                Send((target.id,), {"type": "message", "from": sender, "text": text})]
        if target is None and not self.KEEPS_ALL:   # cluster mode: its node delivers it, or the engine keeps it
            return self._spend(s, cost, "message", now) or [self._pass_on(to, sender, text, s, now)]
        queue = self._offline.get(to, _NO_QUEUE)
        if len(queue) >= self._queue_cap:
            return self._reply(s, _error(ErrorCode.QUEUE_FULL, user=to))
        utf8 = len(text.encode("utf-8", "surrogatepass"))
        size = _stored_size(utf8)
        kept = self._kept_by.get(sender, 0)
        if self._sender_quota is not None and kept + size > self._sender_quota:
            return self._reply(s, _error(ErrorCode.QUOTA_EXCEEDED, quota=self._sender_quota))
        refusal = self._spend(s, cost, "message", now)
        if refusal:
            return refusal
        if queue is _NO_QUEUE:
            queue = self._offline[to] = {}
        self._kept_by[sender] = kept + size
        mid = self._next_id
        self._next_id += 1
        wire = _wire_bytes(utf8, len(text))
        sent = self._sent(now)
        queue[mid] = (sender, utf8, wire, sent)
        if mailbox:   # online, its stored messages still on their way: this one goes behind them
            mailbox.append(mid)
            return [KeepMessage(mid, to, sender, text, sent)]
        return [KeepMessage(mid, to, sender, text, sent, Send((s.id,), {"type": "stored", "to": to}))]

    def _sent(self, now: float) -> float | None:
        """The wall-clock time stamped on a message kept at ``now``, if the host said how to tell it."""
        return None if self._wall_offset is None else now + self._wall_offset

    def _pass_on(self, to: str, sender: str, text: str, s: _Session, now: float) -> _Effect:
        """Cluster mode: a message (paid for) to ``to``, who is not on this node: relayed to its node, or kept
        by the engine (which checks its mailbox's cap and the sender's quota) and then confirmed."""
        elsewhere = self._remote.get(to)
        if elsewhere is not None:
            return Relay(elsewhere.node, {"kind": "message", "to": to, "from": sender, "text": text})
        mid = self._next_id
        self._next_id += 1
        return KeepMessage(mid, to, sender, text, self._sent(now), Send((s.id,), {"type": "stored", "to": to}))

    @_command(FrameType.BROADCAST, _string("text"))
    def _broadcast(self, s: _Session, now: float, text: str) -> list[_Effect]:
        if not (text.isascii() and text.isprintable()) and _has_control(text):
            return self._reply(s, _CONTROL_CHARACTERS)
        if len(text) > self._max_text:
            return self._reply(s, _error(ErrorCode.TEXT_TOO_LONG, max=self._max_text))
        refusal = self._spend(s, _cost(text), "broadcast", now)
        if refusal:
            return refusal
        sender = s.user
        online = self._online
        blockers = self._blockers.get(sender)
        if blockers:
            conns = tuple(o.id for name, o in online.items() if o is not s and name not in blockers)
        else:
            conns = tuple(o.id for o in online.values() if o is not s)
        effects: list[_Effect] = []
        if conns:
            effects.append(Send(conns, {"type": "message", "from": sender, "text": text, "broadcast": True}))
        if self._remote:   # cluster mode: the other nodes tell theirs
            effects.append(Publish({"kind": "broadcast", "from": sender, "text": text}))
        if len(conns) < len(online) - 1 or blockers and not blockers.isdisjoint(self._remote):
            effects.append(Send((s.id,), {"type": "broadcast_partial"}))   # someone online blocked the sender
        return effects

    def _others(self, me: str, names: Iterable[str]) -> list[str]:
        """``names`` without ``me`` and those who blocked ``me``, sorted."""
        blockers = self._blockers.get(me, _EMPTY)
        return sorted(n for n in names if n != me and n not in blockers)

    @_command(FrameType.WHOELSE)
    def _whoelse(self, s: _Session, now: float) -> list[_Effect]:
        names = self._online.keys() | self._remote.keys() if self._remote else self._online
        return self._reply(s, {"type": "users", "names": self._others(s.user, names)})

    @_command(FrameType.WHOELSESINCE, _Field("seconds", _seconds_problem, ErrorCode.BAD_ARGUMENT))
    def _whoelsesince(self, s: _Session, now: float, seconds: float) -> list[_Effect]:
        try:
            cutoff = now - seconds
        except OverflowError:   # an int too large for a float: the window covers everything
            cutoff = -math.inf
        names = self._online.keys() | self._remote.keys()
        names.update(name for name, t in self._last_logout.items() if t >= cutoff)
        return self._reply(s, {"type": "users", "names": self._others(s.user, names)})

    @_command(FrameType.BLOCK, _string("user"))
    def _block(self, s: _Session, now: float, user: str) -> list[_Effect]:
        if user not in self._accounts:
            return self._reply(s, _error(ErrorCode.INVALID_USER))
        me = s.user
        if user == me:
            return self._reply(s, _error(ErrorCode.SELF, command="block"))
        if user in self._blocks.get(me, _EMPTY):
            return self._reply(s, _error(ErrorCode.ALREADY_BLOCKED, user=user))
        refusal = self._spend(s, 1, "block", now)
        if refusal:
            return refusal
        self._set_block(me, user, True)
        log.info("%s blocked %s", me, user)
        effects: list[_Effect] = [AddBlock(me, user, Send((s.id,), {"type": "blocked", "user": user}))]
        for key in ((me, user), (user, me)):
            req = self._requests.get(key)
            if req is not None:
                effects += self._cancel(req, key)
        return effects

    @_command(FrameType.UNBLOCK, _string("user"))
    def _unblock(self, s: _Session, now: float, user: str) -> list[_Effect]:
        if user not in self._accounts:
            return self._reply(s, _error(ErrorCode.INVALID_USER))
        me = s.user
        if user not in self._blocks.get(me, _EMPTY):
            return self._reply(s, _error(ErrorCode.NOT_BLOCKED, user=user))
        refusal = self._spend(s, 1, "unblock", now)
        if refusal:
            return refusal
        self._set_block(me, user, False)
        log.info("%s unblocked %s", me, user)
        return [RemoveBlock(me, user, Send((s.id,), {"type": "unblocked", "user": user}))]

    def _set_block(self, blocker: str, blocked: str, on: bool) -> None:
        if on:
            self._blocks.setdefault(blocker, set()).add(blocked)
            self._blockers.setdefault(blocked, set()).add(blocker)
            return
        for index, key, member in ((self._blocks, blocker, blocked), (self._blockers, blocked, blocker)):
            names = index.get(key)
            if names is not None:
                names.discard(member)
                if not names:
                    del index[key]

    @_command(FrameType.LOGOUT)
    def _logout(self, s: _Session, now: float) -> list[_Effect]:
        return self._close(s.conn, {"type": "bye", "reason": "logout"}, now, "logout")

    @_command(FrameType.ACTIVITY)
    def _activity(self, s: _Session, now: float) -> list[_Effect]:
        return []   # received() has noted the activity

    @_command(FrameType.PING, activity=False)
    def _ping(self, s: _Session, now: float) -> list[_Effect]:
        """Answer in order: the pong follows every answer to the frames before it (and any store commit),
        and the whole mailbox: while stored messages are on their way, it goes out after the last."""
        if s.mailbox:
            s.pongs += 1
            return []
        return self._reply(s, _PONG)

    @_command(FrameType.ACK, _valid("ids", "a list of integers",
                                    lambda ids: type(ids) is list and all(type(i) is int for i in ids)))
    def _ack(self, s: _Session, now: float, ids: list[int]) -> list[_Effect]:
        queue = self._offline.get(s.user)
        if not queue:
            return []
        gone = tuple(dict.fromkeys(i for i in ids if i in queue))   # (an id given twice is forgotten once)
        for mid in gone:
            self._unkeep(queue, mid)
        if not queue:
            del self._offline[s.user]
        return [ForgetMessages(gone)] if gone else []

    @_command(FrameType.LISTEN, _valid("port", "an integer from 1 to 65535",
                                       lambda port: type(port) is int and 0 < port < 65536),
              _valid("cert", f"a string of at most {MAX_CERT} characters",
                     lambda cert: cert is None or type(cert) is str and len(cert) <= MAX_CERT),
              states=_STRANGER | _LOGGED_IN)   # sent right after hello, so it is known before anyone can ask
    def _listen(self, c: _Conn, now: float, port: int, cert: str | None) -> list[_Effect]:
        """Only the port is the client's word: its peers connect to the address its connection comes
        from, so nobody can send another user's client (and its token) to a third party's address.
        A ``host`` field, which older clients send, is ignored. ``cert`` (TLS mode) is relayed as it
        is, with the token, to each client that is to connect to this one or to accept it."""
        c.listen = (c.address, port)
        c.cert = cert
        return []

    @staticmethod
    def _with_cert(frame: Frame, party: _Party | None) -> Frame:
        cert = party.conn.cert if isinstance(party, _Session) else party.cert if party is not None else None
        if cert is not None:
            frame["cert"] = cert
        return frame

    # -- private chat brokering ------------------------------------------------

    @_command(FrameType.STARTPRIVATE, _string("user"))
    def _startprivate(self, s: _Session, now: float, user: str) -> list[_Effect]:
        if user not in self._accounts:
            return self._reply(s, _error(ErrorCode.INVALID_USER))
        me = s.user
        if user == me:
            return self._reply(s, _error(ErrorCode.SELF, command="startprivate"))
        if me in self._blocks.get(user, _EMPTY):   # before `offline`: a blocked user learns no presence
            return self._reply(s, _error(ErrorCode.PRIVATE_BLOCKED, user=user))
        target = self._online.get(user)
        elsewhere = self._remote.get(user) if target is None else None
        if target is None and elsewhere is None:
            return self._reply(s, _error(ErrorCode.OFFLINE, user=user))
        if (me, user) in self._requests or (user, me) in self._requests:
            return self._reply(s, _error(ErrorCode.PRIVATE_PENDING, user=user))
        if target is not None and target.conn.listen is None:
            return self._reply(s, _error(ErrorCode.PRIVATE_UNAVAILABLE, user=user))
        refusal = self._spend(s, 1, "startprivate", now)
        if refusal:
            return refusal
        if elsewhere is not None:   # cluster mode: the request lives on the target's node, which answers
            return [Relay(elsewhere.node, {"kind": "startprivate", "from": me, "to": user, "cert": s.conn.cert})]
        assert target is not None
        return self._open_request(s, target)

    def _open_request(self, requester: _Party, target: _Session) -> list[_Effect]:
        """Ask ``target`` whether it takes a private chat with ``requester`` (checked and paid for)."""
        key = (requester.user, target.user)
        self._requests[key] = _Request(*key)
        for party in (requester, target):
            if party.requests is None:
                party.requests = set()
            party.requests.add(key)
        log.debug("private request %s -> %s", *key)
        return [Send((target.id,), {"type": "private_request", "from": requester.user})]

    @_command(FrameType.PRIVATE_ANSWER, _string("user"), _typed("accept", bool, "true or false"))
    def _private_answer(self, s: _Session, now: float, requester: str, accept: bool) -> list[_Effect]:
        me = s.user
        req = self._requests.get((requester, me))
        if req is None or req.token is not None:
            return self._reply(s, _error(ErrorCode.NO_REQUEST, user=requester))
        if not accept:
            log.debug("private request %s -> %s declined", requester, me)
            party = self._party(requester)
            assert party is not None   # (a request ends when either party leaves)
            return self._cancel(req, ()) + [self._to(party, _error(ErrorCode.PRIVATE_DECLINED, user=me))]
        req.token = self._token_factory()
        req.expires = now + self._token_ttl
        expect = {"type": "private_expect", "user": requester, "token": req.token}
        return [SetTimer(("private", requester, me), req.expires),
                Send((s.id,), self._with_cert(expect, self._party(requester)))]

    @_command(FrameType.PRIVATE_READY, _string("user"), _string("token"))
    def _private_ready(self, s: _Session, now: float, requester: str, token: str) -> list[_Effect]:
        me = s.user
        req = self._requests.get((requester, me))
        if req is None or req.token is None or not secrets.compare_digest(
                token.encode("utf-8", "surrogatepass"), req.token.encode()):
            log.debug("conn %d: private_ready for no live token from %.40r", s.id, requester)
            return []   # stale (expired or cancelled, and told so) or bogus: nothing to do
        listen = s.conn.listen
        assert listen is not None   # (the request was made only to a user who said where it listens)
        host, port = listen
        log.debug("private request %s -> %s: connecting", requester, me)
        connect = {"type": "private_connect", "user": me, "host": host, "port": port, "token": token}
        party = self._party(requester)
        assert party is not None   # (a request ends when either party leaves)
        return self._cancel(req, (), fired=False) + [self._to(party, self._with_cert(connect, s))]

    def _cancel(self, req: _Request, tell: tuple[str, ...], fired: bool = False) -> list[_Effect]:
        """Forget ``req``; each user in ``tell`` who is online gets private_cancelled naming the other."""
        key = (req.requester, req.target)
        del self._requests[key]
        for name in key:
            party = self._party(name)
            if party is not None and party.requests:
                party.requests.discard(key)
        effects: list[_Effect] = []
        if req.token is not None and not fired:
            effects.append(CancelTimer(("private",) + key))
        for name in tell:
            party = self._party(name)
            if party is not None:
                other = req.target if name == req.requester else req.requester
                effects.append(self._to(party, {"type": "private_cancelled", "user": other}))
        return effects

    def _party(self, user: str) -> _Party | None:
        """``user``'s session here, or where it is on another node, or None if it is offline."""
        return self._online.get(user) or self._remote.get(user)

    @staticmethod
    def _to(party: _Party, frame: Frame) -> Send | Relay:
        """``frame`` to ``party``: sent here, or relayed to its node (cluster mode)."""
        if isinstance(party, _Session):
            return Send((party.id,), frame)
        return Relay(party.node, {"kind": "deliver", "to": party.user, "frame": frame})
