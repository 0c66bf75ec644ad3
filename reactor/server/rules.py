"""The chat server's rules as a sans-I/O state machine: decoded frames and the time go in, effects come out.

``ChatServer`` never touches a socket, a file or a clock. The host numbers the
connections, calls one method per event with the current monotonic time
``now`` (seconds), and carries out the returned effects in order (the effect
types: ``reactor/server/effects.py``).

``ChatServer`` is the one object the hosts call; the rules are its parts, each
the owner of its state (``reactor/server/``):

- ``sessions.py``: the connections, the users online (and, on a cluster,
  where), the last logouts; ``door.py``: how a connection comes in, is
  welcomed, spends its budget of bad frames, times out and leaves;
- ``logins.py``: the accounts, the handshake, wrong passwords and lockouts,
  the queue of passwords being checked, and what a password's outcome means;
  ``password_change.py``: a user's change of their own password;
- ``presence.py``: who came and went, told to everyone in as few frames as
  order allows (``end_turn``);
- ``limits.py``: each user's token bucket and quota;
- ``mail.py``: the stored messages and each session's cursor through its own;
- ``receipts.py``: which messages a recipient's client showed, told to their senders (``read``);
- ``privates.py``: private-chat requests and their tokens;
- ``blocks.py``: who blocked whom; ``chat.py``: the commands of a logged-in user;
- ``history.py``: reading and forgetting one's history (what is kept is the
  durability's), and the reads on their way; ``away.py``: who is away;
- ``commands.py``: how each client frame is declared (its fields and states).

A cluster node (``reactor/cluster/rules.py``) is a ``ChatServer`` whose six
hooks decide otherwise what a single process decides alone: ``claim_login``
(a password's outcome), ``keep_away`` (a message for a user not here),
``resent`` (a message sent again: was it kept before?), ``release_login`` (a
session ended), ``count_password`` (a current password given to change it) and
``password_changed`` (a user's new password, for the other nodes). The single
process calls the very same hooks; it has no other seam.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from ..compiled import mypyc_attr
from ..ops.catalog import ChatCounts
from ..protocol import CLIENT_FRAMES, LOGIN_FRAMES, MAX_TEXT, ByeReason, ErrorCode, FrameType
from .away import Away
from .blocks import Blocks
from .chat import ChatCommands
from .commands import Command, State, bind
from .door import MAX_BAD_FRAMES, Door
from .effects import (
    AddBlock,
    Close,
    ForgetHistory,
    HistoryRow,
    KeepMessage,
    ReadHistory,
    RemoveBlock,
    Send,
    ServerEffect,
    Step,
    StoreChange,
    bye,
    error,
)
from .history import History
from .limits import BURST, RATE, SENDER_QUOTA, Limits
from .logins import Logins
from .mail import QUEUE_CAP, Mail, OfflineRow
from .password_change import PasswordChanges
from .presence import Presence
from .privates import TOKEN_TTL, PrivateChats, new_token
from .receipts import Receipts
from .sessions import Conn, Session, Sessions

__all__ = ["ChatServer"]

log = logging.getLogger(__name__)

_NOT_LOGGED_IN = error(ErrorCode.NOT_LOGGED_IN)
_BE_PATIENT = "wait for the answer to the password"


def _unknown(kind: str) -> str:
    return f"unknown frame type {kind[:40]!r}"


@mypyc_attr(allow_interpreted_subclasses=True)   # cluster mode's rules, tests' doubles
class ChatServer:
    """Every server-side rule of the chat; one method per event, each returning effects in order."""

    # Every kept message is this server's, so it checks the quota (a cluster node's: the engine's).
    KEEPS_ALL: ClassVar[bool] = True

    def __init__(self, accounts: dict[str, str], block_duration: float, timeout: float, *,
                 max_text: int = MAX_TEXT, queue_cap: int = QUEUE_CAP, max_bad_frames: int = MAX_BAD_FRAMES,
                 token_ttl: float = TOKEN_TTL, token_factory: Callable[[], str] = new_token,
                 blocks: Iterable[tuple[str, str]] = (), offline: Iterable[OfflineRow] = (),
                 wall_offset: float | None = None,
                 rate: float | None = RATE, burst: int = BURST,
                 sender_quota: int | None = SENDER_QUOTA, counts: ChatCounts | None = None,
                 history: bool = False, password_changes: bool = True) -> None:
        """``blocks``: (blocker, blocked) pairs; ``offline``: the stored messages as (id, to, sender, size,
        chars, sent): their texts' UTF-8 bytes and characters (the texts stay in the host's store), and
        when they were sent (or None).

        ``rate``/``burst``: each user's token bucket (None: no rate limit);
        ``sender_quota``: bytes a user may have kept for others (None: no quota);
        ``queue_cap``: messages kept for one user, at most.

        ``wall_offset``: ``now + wall_offset`` is the wall-clock time (seconds
        since the epoch) stamped as ``sent`` on stored messages; None leaves
        ``sent`` out (the logic cannot read a clock itself).

        ``counts``: what the parts count as they decide (``reactor/ops/catalog.py``: messages relayed and
        refused, logins, lockouts...), for the host's metrics; by default counts of its own.

        ``history``: this server keeps history (``--history-days`` more than 0): relayed messages, broadcasts and
        sessions are noted for the durability (``Remember``, ``NoteSession``), and ``history`` reads it.
        ``password_changes``: whether users may change their own password (``--no-password-change``: no).
        """
        self.counts = counts = counts if counts is not None else ChatCounts()
        self.sessions = sessions = Sessions()
        self.blocks = Blocks(blocks)
        self.limits = Limits(rate, burst, sender_quota, checks_quota=self.KEEPS_ALL, refused=counts.messages_refused)
        self.presence = Presence(sessions, self.blocks)
        self.mail = Mail(sessions, self.limits, queue_cap=queue_cap, wall_offset=wall_offset, offline=offline,
                         counts=counts)
        accounts = dict(accounts)   # Logins' from now on; the parts that ask who exists hold this very dict
        self.privates = PrivateChats(sessions, self.blocks, self.limits, accounts, token_ttl=token_ttl,
                                     token_factory=token_factory)
        self.history = History(self.limits, self.mail, accounts, keeps=history)
        self.away = Away(sessions)
        self.door = Door(sessions, self.presence, self.privates, self.mail, timeout=timeout,
                         max_bad_frames=max_bad_frames, release=self.release_login, counts=counts,
                         noted=self._session_noted)
        self.logins = Logins(accounts, block_duration, sessions, self.door, claim=self.claim_login, counts=counts)
        chat = ChatCommands(sessions, self.blocks, self.limits, self.mail, self.privates, self.door,
                            accounts, max_text=max_text, away=self.keep_away, resent=self.resent,
                            counts=counts, absent=self.away, remember=history)
        self.changes = PasswordChanges(sessions, self.logins, self.door, count=self.count_password,
                                       changed=self.password_changed, enabled=password_changes)
        self._commands: dict[str, Command] = bind(self.logins, chat, self.mail, self.privates, self.history,
                                                  self.away, self.changes, Receipts(sessions))
        assert self._commands.keys() == CLIENT_FRAMES, "each frame a client may send has one handler"
        # Held here for every frame (the hot path): the parts' own dict and method, not a copy.
        self._conns = sessions.conns
        self._settle = self.presence.settle

    # -- read-only views ---------------------------------------------------

    def user_of(self, conn: int) -> str | None:
        """The user logged in on ``conn``, or None."""
        return self.sessions.user_of(conn)

    def online_users(self) -> list[str]:
        """The users logged in now, sorted."""
        return sorted(self.sessions.names())

    def here(self, user: str) -> bool:
        """Whether ``user`` is logged in here (on a cluster node: on this node)."""
        return user in self.sessions.online

    @property
    def block_duration(self) -> float:
        """Seconds an account stays locked after too many wrong passwords."""
        return self.logins.block_duration

    @property
    def queue_cap(self) -> int:
        """Messages kept for one user, at most."""
        return self.mail.queue_cap

    def is_locked(self, user: str, now: float) -> bool:
        """Whether ``user``'s account is in its lockout at ``now``."""
        return self.logins.is_locked(user, now)

    def kept_by(self, sender: str) -> int:
        """The bytes ``sender`` has kept for others, as its quota counts them."""
        return self.limits.kept_by(sender)

    def stored(self, user: str) -> list[tuple[int, str]]:
        """The messages kept for ``user``, oldest first, as (id, sender)."""
        return self.mail.stored(user)

    # -- events ------------------------------------------------------------

    def connected(self, conn: int, now: float, address: str) -> list[ServerEffect]:
        """A new connection from ``address`` (the IP address the host saw it come from, as text: where
        this client's peers will connect): arm its login deadline (``timeout``, at most
        ``MAX_LOGIN_TIME``), or after shutdown turn it away."""
        if self.sessions.shut:
            return [Send((conn,), bye(ByeReason.SHUTDOWN)), Close(conn)]
        return [self.door.connect(conn, now, address)]

    def received(self, conn: int, frame: Any, now: float) -> list[ServerEffect]:
        """One decoded frame (any JSON value) from ``conn``."""
        return self._settle(self._received(conn, frame, now))

    def _received(self, conn: int, frame: Any, now: float) -> list[Step]:
        c = self._conns.get(conn)
        if c is None:
            return []
        if type(frame) is not dict:
            return self.door.bad(c, "a frame must be a JSON object", now)
        kind = frame.get("type")
        if type(kind) is not str:
            return self.door.bad(c, "a frame needs a string 'type'", now)
        command = self._commands.get(kind)
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
                    return self.door.bad(c, problem, now)
                return [Send((c.id,), error(field.code, detail=problem))]
            values.append(value)
        if command.optional:   # its handler reads and checks them where it uses them
            values.append(frame)
        return command.handler(session if command.session else c, now, *values)

    def _misplaced(self, c: Conn, kind: str, command: Command | None, now: float) -> list[Step]:
        """Refuse a frame of a type unknown, or not taken in the connection's state."""
        state, door = c.state, self.door
        if state is State.HELLO:
            return door.bad(c, "the first frame must be hello", now)
        if state is State.ACTIVE:
            return door.bad(c, "already logged in" if kind in LOGIN_FRAMES else _unknown(kind), now)
        if command is not None and command.session:
            return door.refuse(c, _NOT_LOGGED_IN, now)
        if state is State.CHECKING and kind in (FrameType.USERNAME, FrameType.PASSWORD):
            return door.bad(c, _BE_PATIENT, now)
        if kind == FrameType.PASSWORD:
            return door.bad(c, "send the username first", now)
        return door.bad(c, "hello was already said" if kind == FrameType.HELLO else _unknown(kind), now)

    def bad_frame(self, conn: int, detail: str, now: float) -> list[ServerEffect]:
        """The framing layer could not decode a line from ``conn``."""
        c = self._conns.get(conn)
        return self._settle(self.door.bad(c, detail, now)) if c is not None else []

    def disconnected(self, conn: int, now: float) -> list[ServerEffect]:
        """``conn`` is gone: log its user out; nothing is sent to it any more."""
        c = self._conns.get(conn)
        if c is None:
            return []
        if c.session is None:
            log.debug("conn %d: gone before logging in", conn)
        return self._settle(self.door.forget(c, now, "connection lost"))

    def writable(self, conn: int, now: float) -> list[ServerEffect]:
        """``conn`` has room for more output (the answer to ``WhenWritable``): the next stored messages, or once
        they are out, the next frame of a history on its way."""
        c = self._conns.get(conn)
        s = c.session if c is not None else None
        if s is None:
            return []
        effects = self.mail.next_stored(s) if s.mailbox else []
        if s.history is not None and not s.mailbox:
            effects += self.history.next_chunk(s)
        return self._settle(effects)

    def history_read(self, conn: int, request: ReadHistory, rows: list[HistoryRow], now: float
                     ) -> list[ServerEffect]:
        """The answer to ``ReadHistory``: its rows, newest first, as (sender, text, sent); they go out as
        history frames, paced as a mailbox is (nothing if the session is gone)."""
        c = self._conns.get(conn)
        s = c.session if c is not None else None
        return [] if s is None else self._settle(self.history.read(s, request, rows))

    def _session_noted(self, user: str, online: bool, now: float) -> list[Step]:
        """A session began or ended here: noted for the history; at its end, its user is no longer away."""
        if not online:
            self.away.left(user)
            return self.history.ended(user, now)
        return self.history.began(user, now)

    def timer_fired(self, key: Any, now: float) -> list[ServerEffect]:
        """The timer ``key`` came due."""
        return self.timers_fired((key,), now)

    def timers_fired(self, keys: Iterable[Any], now: float) -> list[ServerEffect]:
        """Timers that came due together, in order. Users timed out together are not told of
        each other's logout (they are leaving at the same instant); everyone who stays is."""
        effects: list[Step] = []
        timed_out: list[Session] = []
        for key in keys:
            if type(key) is not tuple or not key:
                continue
            kind = key[0]
            if kind == "idle":
                effects += self.door.idle_due(key, now, timed_out)
            elif kind == "login":
                effects += self.door.login_due(key, now)
            elif kind == "private":
                effects += self.privates.token_due(key, now)
        if timed_out:
            effects.insert(0, Send(tuple(s.id for s in timed_out), bye(ByeReason.TIMEOUT)))
            effects += [self.presence.note(s.user, False) for s in timed_out]
        return self._settle(effects)

    def password_checked(self, conn: int, ok: bool | None, now: float) -> list[ServerEffect]:
        """The answer to ``CheckPassword`` for ``conn``: whether the password matched (None: it could not be
        checked); then the passwords waiting for the same account, in order, until one needs checking. (Or
        the current password of a change on ``conn``: its change goes on.)"""
        if self.changes.checking(conn):
            return self._settle(self.changes.checked(conn, ok, now))
        return self._settle(self.logins.password_checked(conn, ok, now))

    def password_hashed(self, conn: int, field: str | None, now: float) -> list[ServerEffect]:
        """The answer to ``HashPassword`` for ``conn``: the new password's hash field (None: it could not be made)."""
        return self._settle(self.changes.hashed(conn, field, now))

    def password_written(self, conn: int, user: str, field: str, refusal: ErrorCode | None,
                         now: float) -> list[ServerEffect]:
        """The answer to ``SetPassword``: the accounts file holds ``field`` as ``user``'s password now
        (``refusal`` None: in force from now), or why not, as the code the user is answered."""
        return self._settle(self.changes.written(conn, user, field, refusal, now))

    def accounts_changed(self, accounts: dict[str, str], now: float) -> list[ServerEffect]:
        """The accounts file was read again: new accounts can log in, a changed password counts from the
        next login, and the session of a removed account ends (bye ``account_removed``; the others see it
        log out). A login waiting for the password of a removed name fails at the password. Messages kept
        for a removed account stay, for the day it comes back."""
        if self.sessions.shut:
            return []
        online = self.sessions.online
        gone = [online[user] for user in self.logins.replace(accounts) if user in online]
        if not gone:
            return []
        effects: list[Step] = [
            Send(tuple(s.id for s in gone), bye(ByeReason.ACCOUNT_REMOVED))]
        for s in gone:
            effects += [Close(s.id), *self.door.forget(s.conn, now, "account removed", announce=False)]
        return self._settle(effects + [self.presence.note(s.user, False) for s in gone])

    def not_stored(self, change: StoreChange, now: float, code: ErrorCode = ErrorCode.STORE_FULL
                   ) -> list[ServerEffect]:
        """The durability did not keep ``change``: undo it and answer in place of its ``confirm``. ``code``
        says why: ``store_full`` (the store has no room, or a cluster's engine could not be reached), or a
        cluster's engine checked the recipient's cap (``queue_full``) or the sender's quota (``quota_exceeded``).

        A message is forgotten (never delivered later, not counted in the queue) and its sender gets ``code``;
        unless its recipient logged in meanwhile and was handed it: then it is confirmed after all. A block or
        unblock is undone and refused with ``store_full``. An acknowledgement that was not recorded leaves
        those messages on disk: they come again after a restart.
        """
        if type(change) is KeepMessage:
            refusal = None   # store_full
            if code is ErrorCode.QUEUE_FULL:
                refusal = error(code, user=change.to)
            elif code is ErrorCode.QUOTA_EXCEEDED:
                refusal = error(code, quota=self.limits.sender_quota)
            return self._settle(self.mail.refused(change, refusal))
        if type(change) is ForgetHistory:
            log.warning("%s's forgetting of its history with %s not kept: %s", change.owner, change.peer, code)
            conns = change.confirm.conns if change.confirm is not None else ()
            fields = {"user": change.peer} if change.peer is not None else {"broadcast": True}
            return self._settle([Send(conns, error(ErrorCode.STORE_FULL, command="forget", **fields))]
                                if conns else [])
        if type(change) is AddBlock or type(change) is RemoveBlock:
            command = "block" if type(change) is AddBlock else "unblock"
            self.blocks.set(change.blocker, change.blocked, type(change) is RemoveBlock)
            log.warning("%s of %s by %s not kept: %s", command, change.blocked, change.blocker, code)
            conns = change.confirm.conns if change.confirm is not None else ()
            refusal = error(ErrorCode.STORE_FULL, command=command, user=change.blocked)
            return self._settle([Send(conns, refusal)] if conns else [])
        log.warning("%r not kept: %s", change, code)
        return []

    def shutdown(self, now: float) -> list[ServerEffect]:
        """Say bye(shutdown) to every connection and close each; afterwards every event is ignored."""
        if self.sessions.shut:
            return []
        told = self.presence.tell_all()   # the turn's presence changes before the bye
        users = len(self.sessions.online)
        conns = self.sessions.shutdown(now)
        log.info("shutdown: %d connections, %d users online", len(conns), users)
        self.privates.clear()
        if not conns:
            return told
        return [*told, Send(conns, bye(ByeReason.SHUTDOWN)),
                *(Close(conn) for conn in conns)]

    def end_turn(self, now: float) -> list[ServerEffect]:
        """The host's loop turn is over (call it before the loop sleeps): tell everyone online the presence
        changes of the turn they have not been told, one frame per run of logins or logouts (version 2)
        or one frame per change (version 1). Once a host has called it, the changes wait for it (a storm
        of logins costs each user one frame a turn, not one a login), except that a user's pending ones
        always go before any other frame to it; a host that never calls it gets them at once."""
        return self.presence.end_turn()

    # -- the operator's commands (reactor/server/operator.py; a cluster node reaches the other nodes' users) --

    def kick(self, user: str, reason: str | None, now: float) -> list[ServerEffect]:
        """End ``user``'s session here: bye ``operator`` (``reason``, if any, as its ``text``); the others hear
        it left. Nothing if it is not logged in here."""
        s = self.sessions.online.get(user)
        if s is None:
            return []
        frame = bye(ByeReason.OPERATOR, text=reason) if reason else bye(ByeReason.OPERATOR)
        return self._settle(self.door.close(s.conn, frame, now, "disconnected by the operator"))

    def lock(self, user: str, until: float, now: float) -> list[ServerEffect]:
        """The operator locks ``user``'s account until ``until``: its logins are refused (``account_locked``) and
        its session ends as a kick's does."""
        self.logins.lock(user, until)
        self.counts.lockouts.operator += 1
        return self.kick(user, None, now)

    def unlock(self, user: str, now: float) -> bool:
        """The operator lifts ``user``'s lockout, its own or the wrong passwords'; whether it was locked."""
        return self.logins.unlock(user, now)

    def notice(self, text: str, now: float) -> list[ServerEffect]:
        """Every user logged in here gets the operator's ``text`` (a ``notice`` frame)."""
        conns = tuple(s.id for s in self.sessions.online.values())
        if not conns:
            return []
        return self._settle([Send(conns, {"type": FrameType.NOTICE.value, "text": text})])

    # -- hooks: what a cluster node decides otherwise (reactor/cluster/rules.py overrides them) --------

    def claim_login(self, c: Conn | None, user: str, ok: bool, now: float) -> list[Step]:
        """The password given for ``user`` on ``c`` (None: gone since) was right (``ok``) or wrong: claim the
        login. Here this process decides (``Logins.decide``)."""
        return self.logins.decide(c, user, ok, now)

    def keep_away(self, s: Session, to: str, text: str, cost: int, now: float, ref: str | None = None
                  ) -> list[Step]:
        """``s``'s message for ``to``, who is not logged in here (checked, but not paid for, ``cost`` tokens;
        ``ref``: the id its sender's client gave it, or None): kept here for its next login."""
        return self.mail.keep(s, to, text, cost, now, None, ref)

    def resent(self, s: Session, to: str, text: str, cost: int, now: float, ref: str) -> list[Step] | None:
        """``s`` sent its message ``ref`` to ``to`` again (``retry``: it was not confirmed): the answer, if it was
        kept before (``Mail.again``: confirmed, not kept or delivered twice); None takes it as a new message.
        Here every message kept is this process's, so it knows (a cluster node asks the engine)."""
        return self.mail.again(s, to, ref, now)

    def release_login(self, s: Session) -> list[Step]:
        """``s``'s session here ended (its user is logged out): nothing more to do in a single process."""
        return []

    def count_password(self, conn: int, user: str, ok: bool, now: float) -> list[Step]:
        """The current password ``user`` gave on ``conn`` to change it was right (``ok``: the count of wrong ones
        ends) or wrong: counted here as a login's (``Logins.count_wrong``), and the change told."""
        if ok:
            self.logins.forget_failures(user)
            return []
        return self.changes.counted(conn, user, self.logins.count_wrong(conn, user, now), now)

    def password_changed(self, user: str, field: str) -> list[Step]:
        """``user``'s password is ``field`` now, in the accounts file and here: nobody else to tell here."""
        return []
