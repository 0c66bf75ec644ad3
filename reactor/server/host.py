"""Hosts the sans-I/O chat server on the reactor: sockets in, effects out.

The host owns the I/O the logic must not touch: it numbers connections, hands
decoded frames and the loop's clock to ``ChatServer``, and carries out the
effects it returns: frames to send (encoded once, however many recipients),
connections to close, timers to arm. ``WhenWritable`` is how the logic paces
a big mailbox by its reader: the host calls ``writable`` once the stream has
room (``Stream.when_drained``).

Durable effects go to the host's ``Durability`` (``reactor/server/durability.py``:
a store, by default a ``MemoryStore``, committed once per loop turn; a cluster
node's is the engine), and once one has, every send, close and WhenWritable
waits in the host's one queue until the durability has answered for the
changes before it (changes are numbered; ``_answered`` releases what waits, in
order, and has the logic answer for a change that was not kept). Before the
durability's turn ends the host ends the logic's (``end_turn``), so the logins
and logouts of a turn reach each user in one presence frame.

Stored messages (``SendStored``) get their texts from the durability where the
effect is carried out, before any later effect; the frames then wait as any
send does. A message whose text it has not is left out and logged
(``with_texts``).

Strangers (connections not logged in) get little: at most ``max_strangers`` of
them, and ``max_strangers_per_address`` from one source address; past either,
a new connection gets one ``error`` ``busy`` frame and is closed at accept, while
users and logins from other addresses go on. A stranger's stream takes lines
of at most ``STRANGER_MAX_FRAME`` bytes, reads ``STRANGER_READ_SIZE`` at a time and
may leave ``STRANGER_MAX_OUTPUT`` bytes unread, so all strangers together hold
at most ``max_strangers`` x (those three) bytes. Over TLS a stranger holds besides at most
``reactor.tls.MAX_FIRST_FLIGHT`` bytes of its hello, and the TLS library's 45 KiB
from its hello to the end of its handshake only while ``reactor.handshakes``
lets it (a few at once per address, 64 in all); each source address may start
``handshake_rate`` handshakes a second, ``max_strangers_per_address`` at once:
a connection past that is closed at accept (and counts against it). The logic's ``LoggedIn``
lifts these limits (the host counts strangers itself, so it needs to be told;
asking ``logic.user_of`` after every frame would cost every frame a lookup).

Failed logins and refused connections are logged per source address, once per
``failure_log_interval``, with counts (``FailureLog``), not one line each: the
host knows the addresses and owns the log and the clock, the logic only says
what failed (``LoginFailed``).

Hashed passwords (``CheckPassword``) are checked by helper processes the host
owns (``reactor/server/verifier.py``, one per core): started when checks need them, restarted
if they die, spoken to through socket pairs on the same loop. An answer goes to
the logic's ``password_checked``; a check that cannot be done (no helper, too
many waiting) is answered None, which the client hears as ``try_again``.

A user's new password (``HashPassword``) is hashed by the same helpers, and
written (``SetPassword``) into the accounts file by the host's ``AccountsFile``
(``reactor/server/accounts_file.py``), on the loop (a few milliseconds and two
syncs, once per change); the logic hears how it went (``password_written``),
and the operator reads it in the log. A host given no accounts file cannot
write one: every change is answered ``password_unchangeable``.

The host counts, for the metrics, what only it sees (``logic.counts``, the
rules' own counts, ``reactor/ops/catalog.py``): connections turned away, TLS
handshakes and their failures, messages the durability kept, and the bytes its
client connections read and send (``traffic``: one addition per recv and send).
``carry_out`` carries out effects the logic returned to someone else's call
(the operator's commands, ``reactor/server/operator.py``).
"""
from __future__ import annotations

import itertools
import logging
import math
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from ..compiled import mypyc_attr
from ..framing import MAX_FRAME, JsonLines, encode
from ..handshakes import HANDSHAKE_RATE, Handshakes
from ..loop import EventLoop, NamedTimers, TimerHandle
from ..protocol import ErrorCode
from ..stream import MAX_OUTPUT, RECV_SIZE, Listener, Stream, Traffic, listen
from ..tls import TLSStream
from .accounts_file import AccountsFile, Rewrite
from .durability import Durability, StoreDurability, TransactionalStore, with_texts
from .effects import (
    STORE_CHANGES,
    AddBlock,
    CancelTimer,
    CheckPassword,
    Close,
    ForgetHistory,
    ForgetMessages,
    HashPassword,
    HistoryNote,
    HistoryRow,
    KeepMessage,
    LoggedIn,
    LoginFailed,
    NoteSession,
    ReadHistory,
    Remember,
    RemoveBlock,
    Send,
    SendBatch,
    SendStored,
    SetPassword,
    SetTimer,
    StoreChange,
    WhenWritable,
    error,
)
from .rules import ChatServer
from .store import MemoryStore, StoreError, StoreFull
from .verifier import Verifier

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SHUTDOWN_GRACE = 2.0  # seconds to flush goodbyes before the loop stops anyway
MAX_STRANGERS = 512               # connections not logged in, in all
MAX_STRANGERS_PER_ADDRESS = 32    # ... from one source address
STRANGER_MAX_FRAME = 1024         # bytes in one line before login
STRANGER_READ_SIZE = 4096         # bytes one read of a stranger takes
STRANGER_MAX_OUTPUT = 16 * 1024   # bytes a stranger may leave unread before it is cut off
FAILURE_LOG_INTERVAL = 60.0       # seconds between the lines that count failed logins per address
FAILURE_LOG_ADDRESSES = 1000      # addresses counted one by one per interval; the rest are counted together
HISTORY_TRIM_EVERY = 60.0         # seconds between the trims of the history that is too old
DAY = 24 * 3600.0
_BUSY = encode(error(ErrorCode.BUSY))
# What the failure log says of a connection refused at accept, by the reason the metrics count.
_REFUSED = {"too_many_strangers": "refused (busy)", "too_many_from_address": "refused (busy)",
            "too_many_handshakes": "refused (TLS handshakes)"}
TLS_REQUIRED = encode(error(ErrorCode.TLS_REQUIRED))   # what a plaintext client hears on the TLS port
# What the user hears of a password the accounts file does not hold (None: it holds it now).
PASSWORD_REFUSALS: dict[Rewrite, ErrorCode | None] = {
    Rewrite.WRITTEN: None, Rewrite.UNCHANGED: None, Rewrite.UNWRITABLE: ErrorCode.PASSWORD_UNCHANGEABLE,
    Rewrite.CHANGED: ErrorCode.ACCOUNT_CHANGED, Rewrite.FAILED: ErrorCode.PASSWORD_NOT_CHANGED}


class FailureLog:
    """Counts failures per source address and kind, to be logged in one line per address per interval.

    At most ``max_addresses`` addresses are told apart in one interval; the
    failures of the others are counted under ``"other addresses"``.
    """

    def __init__(self, max_addresses: int = FAILURE_LOG_ADDRESSES) -> None:
        self._max = max_addresses
        self._counts: dict[str, Counter[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def note(self, address: str, kind: str) -> None:
        counts = self._counts.get(address)
        if counts is None:
            if len(self._counts) >= self._max:
                address = "other addresses"
            counts = self._counts.setdefault(address, Counter())
        counts[kind] += 1

    def take(self) -> list[str]:
        """One line per address, most failures first, and start counting anew."""
        counts, self._counts = self._counts, {}
        ranked = sorted(counts.items(), key=lambda item: -sum(item[1].values()))
        return [f"{address}: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
                for address, kinds in ranked]


class StopOnStoreFailure:
    """The store as the host sees it: a failed write stops the server rather than confirm what was not kept.

    A full store (``StoreFull``) is not a failure: the host refuses what did not fit and serves on.
    """

    def __init__(self, store: TransactionalStore, loop: EventLoop) -> None:
        self.store = store
        self.loop = loop
        self.failure: StoreError | None = None

    def apply(self, change: StoreChange) -> None:
        self._guard(self.store.apply, change)

    def commit(self) -> None:
        self._guard(self.store.commit)

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        return self._guard(self.store.texts, ids)

    def remember(self, notes: list[HistoryNote], changes: bool = False) -> None:
        self._guard(self.store.remember, notes, changes)

    def history(self, owner: str, peer: str | None, count: int) -> list[HistoryRow]:
        return self._guard(self.store.history, owner, peer, count)

    def trim_history(self, before: float) -> int:
        return self._guard(self.store.trim_history, before)

    def _guard(self, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return call(*args)
        except StoreFull:
            raise  # the host refuses what did not fit and goes on
        except StoreError as exc:
            if self.failure is None:
                self.failure = exc
                log.critical("%s; stopping", exc)
                self.loop.stop()
            raise  # the host must not go on as if it had been kept


@mypyc_attr(allow_interpreted_subclasses=True)   # cluster mode's host
class ServerHost:
    """Runs one ``ChatServer`` over a listening socket on ``loop``."""

    # Each ServerEffect type -> the method that carries it out (``_apply``); a test checks that none is missing.
    CARRY_OUT: ClassVar[dict[type, str]] = {
        Send: "_send", SendBatch: "_send", Close: "_send", WhenWritable: "_send", SendStored: "_send_stored",
        SetTimer: "_set_timer", CancelTimer: "_cancel_timer", LoggedIn: "_logged_in", LoginFailed: "_login_failed",
        CheckPassword: "_check_password", HashPassword: "_hash_password", SetPassword: "_set_password",
        KeepMessage: "_change", ForgetMessages: "_change", AddBlock: "_change", RemoveBlock: "_change",
        ForgetHistory: "_change", Remember: "_remember", NoteSession: "_remember", ReadHistory: "_read_history"}

    def __init__(self, loop: EventLoop, logic: ChatServer, store: TransactionalStore | None = None, *,
                 durability: Durability | None = None, max_strangers: int = MAX_STRANGERS,
                 max_strangers_per_address: int = MAX_STRANGERS_PER_ADDRESS,
                 failure_log_interval: float = FAILURE_LOG_INTERVAL, tls: ssl.SSLContext | None = None,
                 verifier_command: list[str] | None = None, password_helpers: int | None = None,
                 accounts_file: AccountsFile | None = None,
                 handshake_rate: float | None = HANDSHAKE_RATE, history_days: float | None = None) -> None:
        """``history_days``: how long history is kept (0: none; what a state file keeps is dropped), trimmed
        every ``HISTORY_TRIM_EVERY``; None: never trimmed here."""
        self._loop = loop
        self._tls = tls   # with a context, every connection speaks TLS (reactor/tls.py), within these limits:
        self._handshakes = None if tls is None else Handshakes(loop, rate=handshake_rate,
                                                                burst=max_strangers_per_address)
        self._logic = logic
        self._counts = logic.counts   # what the host sees, counted beside what the rules decide
        self.traffic = Traffic()      # the bytes of the client connections
        # Where store changes go: ``store`` (by default a MemoryStore), or a durability of the caller's (a cluster
        # node's engine); never both.
        assert store is None or durability is None, "a store or a durability, not both"
        self.durability: Durability = durability if durability is not None else StoreDurability(
            store if store is not None else MemoryStore(), self._answered, commits=logic.counts.store_commit)
        self._streams: dict[int, Stream] = {}
        self._timers = NamedTimers(loop, self._fire)
        self._ids = itertools.count(1)
        self._listener: Listener | None = None
        # The one queue of what waits for the durability: (how many changes must be answered first, the effect),
        # in order. A store change waits there too, for its own number: then its confirmation goes out, or the
        # logic's answer to its refusal (_answered). _dirty: something waits (sends go behind it).
        self._waiting: deque[tuple[int, Any]] = deque()
        self._asked = 0                       # store changes handed to the durability so far
        self._dirty = False
        self._stopping = False
        self._max_strangers = max_strangers
        self._max_per_address = max_strangers_per_address
        self._strangers: dict[int, str] = {}       # conn -> source address, until it logs in
        self._per_address: Counter[str] = Counter()   # source address -> its strangers
        self._failures = FailureLog()
        self._failure_interval = failure_log_interval
        self._failure_timer: TimerHandle | None = None
        self._telling_since: float | None = None   # when the last turn that told presence began
        self._quiet_until = 0.0                    # no presence told before this (see _end_turn)
        self._wake: TimerHandle | None = None
        self.verifier = Verifier(loop, self._password_checked, command=verifier_command,   # checks hashed passwords
                                 on_hashed=self._password_hashed, helpers=password_helpers)
        self.accounts_file = accounts_file   # where a user's new password is written (None: nowhere)
        self._carry_out: dict[type, Callable[[Any], None]] = {
            kind: getattr(self, name) for kind, name in self.CARRY_OUT.items()}
        loop.add_before_sleep(self._end_turn)   # first: its notices may wait for the commit
        loop.add_before_sleep(self._commit)
        self._history_days = history_days
        self._trim_timer: TimerHandle | None = None
        if history_days is not None:
            self._trim_timer = loop.call_later(0, self._trim_history)

    @property
    def address(self) -> tuple[Any, ...]:
        assert self._listener is not None
        address: tuple[Any, ...] = self._listener.address
        return address

    def serve(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Start accepting on ``host:port``; raises OSError if it cannot bind. ``reuse_port``: share the port
        with other processes (the nodes of a cluster on one machine)."""
        self._listener = listen(self._loop, host, port, self._accept, reuse_port=reuse_port)

    # -- sockets -> logic ----------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        if self._stopping:
            sock.close()
            return
        try:
            address = str(sock.getpeername()[0])
        except OSError as exc:  # the peer is already gone
            log.debug("accept: %s", exc)
            sock.close()
            return
        if len(self._strangers) >= self._max_strangers:
            self._turn_away(sock, address, "too_many_strangers")
            return
        if self._per_address[address] >= self._max_per_address:
            self._turn_away(sock, address, "too_many_from_address")
            return
        if self._handshakes is not None and not self._handshakes.admit(address):
            self._turn_away(sock, address, "too_many_handshakes")
            return
        lines = JsonLines(self, max_frame=STRANGER_MAX_FRAME)
        limits: dict[str, Any] = {"max_output": STRANGER_MAX_OUTPUT, "read_size": STRANGER_READ_SIZE,
                                  "traffic": self.traffic}
        try:
            if self._tls is None:
                stream = Stream(self._loop, sock, lines, **limits)
            else:
                stream = TLSStream(self._loop, sock, lines, context=self._tls, server_side=True,
                                   plaintext_answer=TLS_REQUIRED, on_secure=self._secured,
                                   handshakes=self._handshakes, **limits)
        except OSError as exc:  # the peer is already gone
            log.debug("accept: %s", exc)
            sock.close()
            return
        conn = next(self._ids)
        stream.tag = conn
        self._streams[conn] = stream
        self._strangers[conn] = address
        self._per_address[address] += 1
        log.debug("connection %d from %s", conn, stream.peer_address)
        self._apply(self._logic.connected(conn, self._loop.time(), address))

    def _turn_away(self, sock: socket.socket, address: str, reason: str) -> None:
        """Too many strangers (in all, or from ``address``), or TLS handshakes from it (``reason``, as the
        metrics count it): one ``busy`` frame, if it fits, and close.

        Over TLS it is just closed: a handshake first would cost what the cap is there to save."""
        self._counts.connections_refused.add(reason)
        if self._tls is None:
            try:
                sock.setblocking(False)
                sock.send(_BUSY)
            except OSError:
                pass
        sock.close()
        self._note_failure(address, _REFUSED[reason])

    def _secured(self, stream: Stream) -> None:
        self._counts.tls_handshakes += 1

    def _logged_in(self, effect: LoggedIn) -> None:
        """The connection is a user's now: no stranger's limits, not counted as one."""
        conn = effect.conn
        self._forget_stranger(conn)
        stream = self._streams.get(conn)
        if stream is not None:
            stream.set_limits(max_output=MAX_OUTPUT, read_size=RECV_SIZE)
            stream.protocol.max_frame = MAX_FRAME

    def _forget_stranger(self, conn: int) -> None:
        address = self._strangers.pop(conn, None)
        if address is not None:
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    @property
    def strangers(self) -> int:
        """Connections not logged in now."""
        return len(self._strangers)

    @property
    def connections(self) -> int:
        """Client connections open now (strangers' and users')."""
        return len(self._streams)

    @property
    def tls(self) -> bool:
        """Whether every connection speaks TLS."""
        return self._tls is not None

    @property
    def stopping(self) -> bool:
        """Whether it is shutting down."""
        return self._stopping

    @property
    def buffered(self) -> int:
        """Bytes queued for the connections and not yet written to them: the memory slow readers cost."""
        return sum(stream.buffered for stream in self._streams.values())

    def _note_failure(self, address: str, kind: str) -> None:
        self._failures.note(address, kind)
        if self._failure_timer is None:
            self._failure_timer = self._loop.call_later(self._failure_interval, self._log_failures)

    def _log_failures(self) -> None:
        self._failure_timer = None
        lines = self._failures.take()
        for line in lines:
            log.info("failed logins and refused connections in the last %gs from %s", self._failure_interval, line,
                     extra={"address": line.split(": ", 1)[0], "reason": "failed logins"})

    def frame_received(self, stream: Stream, frame: Any) -> None:
        effects: list[Any] = self._logic.received(stream.tag, frame, self._loop.time())   # (Any: see _apply)
        count = len(effects)
        if not self._dirty and (count == 1 or count == 2 and type(effects[1]) is Remember):
            # The relay's one Send carried out here, as _apply and _deliver would (two calls and two type tests
            # less a relayed message), and its history (the default) straight to the durability, as _remember
            # would: nothing waits for it (~1,000 instructions less).
            effect = effects[0]
            if type(effect) is Send:
                data = encode(effect.frame)
                get = self._streams.get
                for conn in effect.conns:
                    target = get(conn)
                    if target is not None:
                        target.write(data)
                if count == 2:
                    self.durability.remember(effects[1])
                return
        self._apply(effects)

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._apply(self._logic.bad_frame(stream.tag, detail, self._loop.time()))

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        conn = stream.tag
        if self._streams.pop(conn, None) is None:
            return
        if reason is not None:   # a stranger's is not worth a line each
            level = logging.DEBUG if conn in self._strangers else logging.INFO
            address = stream.peer_address[0] if isinstance(stream.peer_address, tuple) else None
            log.log(level, "connection %d from %s lost: %s", conn, stream.peer_address, reason,
                    extra={"conn": conn, "address": address, "reason": reason})
        if isinstance(stream, TLSStream) and not stream.secure:
            self._counts.tls_handshake_failures += 1
        self._forget_stranger(conn)
        self._apply(self._logic.disconnected(conn, self._loop.time()))
        if self._stopping and not self._streams:
            self._loop.stop()

    def _password_checked(self, conn: int, ok: bool | None) -> None:
        """The verifier's answer to a ``CheckPassword`` (None: it could not check)."""
        self._apply(self._logic.password_checked(conn, ok, self._loop.time()))

    def _password_hashed(self, conn: int, field: str | None) -> None:
        """The verifier's answer to a ``HashPassword`` (None: it could not hash)."""
        self._apply(self._logic.password_hashed(conn, field, self._loop.time()))

    def _writable(self, stream: Stream) -> None:
        """The stream asked for in a WhenWritable has room for more."""
        self._apply(self._logic.writable(stream.tag, self._loop.time()))

    def _fire(self, keys: list[Any]) -> None:
        """Timers that came due together reach the logic together (see ``timers_fired``)."""
        self._apply(self._logic.timers_fired(keys, self._loop.time()))

    # -- effects -> sockets --------------------------------------------

    def _apply(self, effects: list[Any]) -> None:
        """Carry out ``effects``: ``ServerEffect``s, and a cluster node's too (``ClusterHost``): Any, as compiled
        (make fast) a declared union is checked for each effect, and refuses those of a cluster."""
        carry_out = self._carry_out
        for effect in effects:
            if type(effect) is Send and not self._dirty:   # the relay's effect, straight out (as _send would)
                self._deliver(effect)
            else:
                carry_out[type(effect)](effect)

    def _send(self, effect: Send | SendBatch | Close | WhenWritable) -> None:
        if self._dirty:
            self._waiting.append((self._asked, effect))
        else:
            self._deliver(effect)

    def _send_stored(self, effect: SendStored) -> None:
        self._send(self._stored(effect))

    def _set_timer(self, effect: SetTimer) -> None:
        self._timers.set(effect.key, effect.when)

    def _cancel_timer(self, effect: CancelTimer) -> None:
        self._timers.cancel(effect.key)

    def _login_failed(self, effect: LoginFailed) -> None:
        address = self._strangers.get(effect.conn)
        if address is not None:
            self._note_failure(address, effect.reason)

    def _check_password(self, effect: CheckPassword) -> None:
        self.verifier.check(effect.conn, effect.hashed, effect.password)

    def _remember(self, note: HistoryNote) -> None:
        """History: to the durability, with the turn's changes; nothing waits for it."""
        self.durability.remember(note)

    def _read_history(self, request: ReadHistory) -> None:
        self.durability.read_history(request, lambda rows: self._history_read(request, rows))

    def _history_read(self, request: ReadHistory, rows: list[HistoryRow]) -> None:
        if not self._stopping:
            self._apply(self._logic.history_read(request.conn, request, rows, self._loop.time()))

    def _trim_history(self) -> None:
        """Drop the history older than it is kept (a batch a turn while a backlog lasts), then again later."""
        assert self._history_days is not None
        before = time.time() - self._history_days * DAY if self._history_days else math.inf
        more = self.durability.trim_history(before)
        self._trim_timer = self._loop.call_later(0 if more else HISTORY_TRIM_EVERY, self._trim_history)

    def _hash_password(self, effect: HashPassword) -> None:
        self.verifier.hash(effect.conn, effect.password)

    def _set_password(self, effect: SetPassword) -> None:
        """Write the new password into the accounts file now; the logic hears how it went in a callback of its
        own (as it hears of a check)."""
        outcome = self.write_password(effect.user, effect.field, effect.expected)
        self._loop.call_soon(self._password_written, effect, PASSWORD_REFUSALS[outcome])

    def _password_written(self, effect: SetPassword, refusal: ErrorCode | None) -> None:
        self._apply(self._logic.password_written(effect.conn, effect.user, effect.field, refusal, self._loop.time()))

    def write_password(self, user: str, field: str, expected: str | None) -> Rewrite:
        """Write ``field`` as ``user``'s password in the accounts file (if its line holds ``expected``; None: whatever
        it holds) and log how it went, for the operator (never quoting a password)."""
        file = self.accounts_file
        if file is None:
            log.error("%s's password not changed: this server was given no accounts file to write", user)
            return Rewrite.UNWRITABLE
        result = file.set_password(user, field, expected)
        outcome, extra = result.outcome, {"user": user, "reason": result.outcome.value}
        if outcome is Rewrite.WRITTEN:
            log.info("%s's new password written to %s", user, file.path, extra=extra)
        elif outcome is Rewrite.UNWRITABLE:
            log.error("%s's password not changed: the accounts file %s cannot be written: %s (the server changes "
                      "only a file it owns and may write; --no-password-change turns the command off)",
                      user, file.path, result.why, extra=extra)
        elif outcome is not Rewrite.UNCHANGED:
            log.warning("%s's password not changed in %s: %s", user, file.path, result.why, extra=extra)
        return outcome

    def _change(self, change: StoreChange) -> None:
        """To the durability; it, and what follows, wait until the durability has answered for it."""
        self._asked += 1
        self._dirty = True
        self._waiting.append((self._asked, change))
        self.durability.write(self._asked, change)

    def _answered(self, upto: int, refused: list[tuple[StoreChange, ErrorCode]]) -> None:
        """The durability has answered for the changes up to number ``upto``: kept, or (``refused``) not, each
        with why: the logic answers for those in place of their confirmation. What waited for them goes out."""
        now = self._loop.time()
        answers = {id(change): self._logic.not_stored(change, now, code) for change, code in refused}
        waiting = self._waiting
        while waiting and waiting[0][0] <= upto:
            _, effect = waiting.popleft()
            if not isinstance(effect, STORE_CHANGES):
                self._deliver(effect)
            elif id(effect) in answers:   # in the confirmation's place, so straight out
                self._dirty = False
                self._apply(answers[id(effect)])
            else:
                if type(effect) is KeepMessage:
                    self._counts.messages_stored += 1
                if effect.confirm is not None:
                    self._deliver(effect.confirm)
        self._dirty = bool(waiting) or upto < self._asked

    def _stored(self, effect: SendStored) -> SendBatch:
        """The stored messages, texts and all (the durability's; one it has not is left out and logged)."""
        texts = self.durability.texts([f["id"] for f in effect.frames])
        return SendBatch((effect.conn,), tuple(with_texts(effect.frames, texts)))

    def _deliver(self, effect: Send | SendBatch | Close | WhenWritable) -> None:
        get = self._streams.get
        if isinstance(effect, (Send, SendBatch)):   # the common case first
            data = encode(effect.frame) if isinstance(effect, Send) else b"".join(map(encode, effect.frames))
            for conn in effect.conns:
                stream = get(conn)
                if stream is not None:
                    stream.write(data)
            return
        stream = get(effect.conn)
        if stream is None:
            return
        if type(effect) is Close:
            stream.close()
        else:
            stream.when_drained(self._writable)

    def _end_turn(self) -> None:
        """Before the loop sleeps: the turn's presence notices, one frame per user (``ChatServer.end_turn``).

        Telling everyone costs a write to each; a login storm would spend every turn on it. So after a
        turn that told presence, as long again passes before the next is told (at most half the time
        goes to it, and the logins between join one frame); the logic still puts a user's pending
        notices before any other frame to it."""
        if self._stopping:
            return
        now = self._loop.time()
        if self._telling_since is not None:
            self._quiet_until = now + (now - self._telling_since)
            self._telling_since = None
        if now < self._quiet_until:
            if self._wake is None:   # make sure the loop comes round to tell them
                self._wake = self._loop.call_at(self._quiet_until, self._woken)
            return
        effects = self._logic.end_turn(now)
        if effects:
            self._telling_since = now
            self._apply(effects)

    def _woken(self) -> None:
        self._wake = None

    def _commit(self) -> None:
        """Before the loop sleeps: the durability's turn ends (a store commits this iteration's changes)."""
        self.durability.end_turn()

    def carry_out(self, effects: list[Any]) -> None:
        """Carry out ``effects`` the logic returned to a call of someone else's (the operator's commands), as
        those of an event; none once shutting down."""
        if not self._stopping:
            self._apply(effects)

    # -- accounts ------------------------------------------------------

    def accounts_changed(self, accounts: dict[str, str]) -> None:
        """The accounts file was read again (SIGHUP); moot once shutting down."""
        if not self._stopping:
            self._apply(self._logic.accounts_changed(accounts, self._loop.time()))

    # -- shutdown ------------------------------------------------------

    def shutdown(self) -> None:
        """Say goodbye to every client, flush, close; the loop stops when all are closed."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down: %d connections", len(self._streams))
        if self._listener is not None:
            self._listener.close()
        self._timers.clear()
        self.verifier.close()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        if self._failure_timer is not None:
            self._failure_timer.cancel()
            self._log_failures()
        self._apply(self._logic.shutdown(self._loop.time()))
        if not self._streams:
            self._loop.call_soon(self._loop.stop)
        else:
            self._loop.call_later(SHUTDOWN_GRACE, self._loop.stop)
        self._loop.call_soon(self._commit)
