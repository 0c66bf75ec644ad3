"""Recording a server: ``ChatServer``'s facade (or ``ClusterChatServer``'s) as its host sees it, each call written
to a journal with its time and the digest of its effects, then passed on.

``ServerRecorder`` has every method through which an input reaches the rules
(``RECORDED``: the host's events, the store's refusals, the password checks'
answers, the cluster engine's answers and the other nodes' news); each
quantizes ``now`` (``format.quantize``: the rules get the very float a replay
will give them), calls the rules, appends one line to the writer and returns
the effects. Whatever else the host reads (``user_of``, ``queue_cap``...) is
the rules' own, passed through. The host is not changed: ``RulesBuilder``
builds the rules, recorded or not, where ``server_main.py`` built them.

What is written of an input keeps what the rules look at and no secret
(``reactor.journal.scrub``): of a frame, its type and the fields its command
declares (``commands.declared_fields``), texts as placeholders, a password as
the stand-in of (the account it was given for, it), so that it matches the
made-up password of the header's account exactly when it matched the real
one; a user name that is no account (it may be a mistyped password) and
tokens and certificates as stand-ins. The tokens the rules draw (private
chats) are drawn here, and written as ``draw`` lines.

The relay (a ``message`` frame with an ASCII text, relayed to one connection)
and the pong are the hot path: the rules get ``now`` as it is, and the event is
four numbers added to the turn's ``R`` line, written once as doubles in
base64: recording costs the relay under a tenth (docs/performance.md).
"""
from __future__ import annotations

import argparse
import base64
import logging
import secrets
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any, TypeVar, cast

from ..loop import EventLoop
from ..protocol import ErrorCode, FrameType
from ..server.commands import declared_fields
from ..server.effects import HistoryRow, ReadHistory, RelayMessage, StoreChange
from ..server.privates import new_token
from ..server.rules import ChatServer
from . import scrub
from .format import DRAW, Header, dumps, micros
from .writer import JournalWriter

__all__ = ["ServerRecorder", "RulesBuilder", "RECORDED", "add_arguments"]

log = logging.getLogger(__name__)

_R = TypeVar("_R", bound=ChatServer)
_MESSAGE = FrameType.MESSAGE.value
_PING = FrameType.PING.value
_PONG = FrameType.PONG.value
_PASSWORD = FrameType.PASSWORD.value
_USERNAME = FrameType.USERNAME.value
_NOT_STRING = 0   # a secret field's value that is no string (so refused as one), written as this

# The facade's methods that take an input, each recorded (a test checks that no other public method of the rules
# takes one).
RECORDED = frozenset({
    "connected", "received", "bad_frame", "disconnected", "writable", "timer_fired", "timers_fired",
    "password_checked", "accounts_changed", "not_stored", "end_turn", "shutdown",
    "take_ids", "login_decided", "cluster_lost", "resync", "remote_login", "remote_logout", "remote_block",
    "remote_locked", "remote_broadcast", "relayed", "relay_answered", "sessions_taken", "remote_notice",
    "kick", "lock", "unlock", "notice", "history_read", "remote_away", "password_hashed", "password_written",
    "password_counted", "remote_password"})


class ServerRecorder:
    """The rules' facade, recording every input into ``writer`` (see the module's docstring)."""

    def __init__(self, writer: JournalWriter, scrubber: scrub.Scrubber) -> None:
        self.writer = writer
        self._scrub = scrubber
        self._texts = scrubber.texts
        self._append = writer.lines.append
        self._draws: list[str] = []
        self._fields = declared_fields()
        self.last = writer.header.t0   # the last event's time, microseconds
        writer.clock = lambda: self.last
        writer.before_flush = self._write_relays
        self._relays: list[float] = []   # the relays and pongs of the R line to come: 4 numbers each
        self._relay = self._relays.extend
        self.recording = True
        self._relaying = not scrubber.texts   # the relay's own line (printable ASCII as a length) is written
        self.rules: Any = None   # set by build

    def build(self, cls: type[_R], *args: Any, **kwargs: Any) -> _R:
        """Make the rules (``cls(*args, token_factory=..., **kwargs)``) whose inputs this records."""
        self.rules = cls(*args, token_factory=self.draw, **kwargs)
        self._received = self.rules.received
        return cast(_R, self)   # (it has the facade's methods; the others are the rules', through __getattr__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rules, name)

    def stopped(self, why: str) -> None:
        """The writer stopped: from now on every call goes straight through."""
        self.recording = self._relaying = False

    def draw(self) -> str:
        """The rules' token factory: a real token for the rules, its stand-in for the journal."""
        token = new_token()
        self._draws.append(self._scrub.secret(scrub.TAGS["token"], token))
        return token

    # -- the line --------------------------------------------------------------

    def _line(self, t: int, op: str, effects: list[Any], *args: Any) -> list[Any]:
        """Write the event (``t``: its time in microseconds) and pass ``effects`` on."""
        if not self.recording:
            self._draws.clear()
            return effects
        if self._relays:
            self._write_relays()
        try:
            line = dumps([t - self.last, op, scrub.digest(effects, self._scrub), *args]) + "\n"
        except (TypeError, ValueError, RecursionError) as exc:   # (what the rules took, the journal cannot write)
            self.writer.stop(f"event {op!r} cannot be written ({exc})")
            return effects
        if self._draws:
            self._write_draws()
        self.last = t
        self._append(line)
        return effects

    def _write_draws(self) -> None:
        for value in self._draws:
            self._append(f'["{DRAW}",{_quoted(value)}]\n')
        self.writer.draws += len(self._draws)
        self._draws.clear()

    def _write_relays(self) -> None:
        """The relays and pongs so far, as one ``R`` line: their times (doubles), then conn, target, N each
        (32-bit integers, or 64-bit if one does not fit), both little-endian in base64."""
        relays = self._relays
        if not relays or not self.recording:
            relays.clear()
            return
        times = array("d", relays[0::4])
        del relays[0::4]
        try:
            numbers = array("i", relays)
        except OverflowError:
            numbers = array("q", relays)
        if sys.byteorder != "little":
            times.byteswap()
            numbers.byteswap()
        self._append(f'[0,"R",0,"{base64.b64encode(times.tobytes()).decode("ascii")}",'
                     f'"{base64.b64encode(numbers.tobytes()).decode("ascii")}",{numbers.itemsize}]\n')
        self.writer.draws -= len(times) - 1   # (one line, so many events)
        relays.clear()

    # -- the host's events -----------------------------------------------------------

    def received(self, conn: int, frame: Any, now: float, _message: str = _MESSAGE, _ping: str = _PING) -> list[Any]:
        if type(frame) is dict and self._relaying:
            kind = frame.get("type")
            if kind == _message or kind == _ping:
                # The hot path (~4,000 instructions more a relayed message, docs/performance.md): the rules
                # get ``now`` as it is, and a message relayed to one connection, or a ping answered with a
                # pong, is 4 numbers in the turn's R line, written once. Relayed, a text held no control
                # character, so "x" times its length decides alike (a tab, the one other character that
                # is not printable, changes nothing the rules look at).
                effects: list[Any] = self._received(conn, frame, now)
                try:
                    (effect,) = effects
                    (target,) = effect.conns
                    text = effect.frame.get("text")   # (no frame, no conns: no Send)
                except (ValueError, AttributeError):
                    return self._exactly(conn, frame, now, effects)
                if kind == _message:
                    if text is not None and text.isascii():
                        self._relay((now, conn, target, len(text)))
                        return effects
                elif target == conn and effect.frame.get("type") == _PONG:
                    self._relay((now, conn, conn, -1))
                    return effects
                return self._exactly(conn, frame, now, effects)
        t = round(now * 1e6)
        if not self.recording:
            return self._received(conn, frame, t / 1e6)
        args = self._frame(conn, frame)
        return self._line(t, "r", self._received(conn, frame, t / 1e6), conn, args)

    def _exactly(self, conn: int, frame: dict[str, Any], now: float, effects: list[Any]) -> list[Any]:
        """A message or ping that was no relay or pong: its line, with the very time the rules were given."""
        args = self._frame(conn, frame)
        if frame.get("type") == _MESSAGE and type(args.get("to")) is str and type(args.get("text")) is str:
            text = frame["text"]   # (printable ASCII made up is N times "x": N is written, not the Xs)
            shown = len(text) if text.isascii() and text.isprintable() else args["text"]
            return self._line(round(now * 1e6), "m", effects, conn, args["to"], shown, now)
        return self._line(round(now * 1e6), "r", effects, conn, args, now)

    def _frame(self, conn: int, frame: Any) -> Any:
        """What is written of a frame: its type and the fields its command declares, secrets scrubbed (read
        before the rules take it: a password's stand-in names the account the connection gave)."""
        if type(frame) is not dict:
            return None   # (every value that is no object is refused alike)
        kind = frame.get("type")
        if type(kind) is not str:
            return {"type": kind if kind is None or type(kind) in (int, float, bool) else None}
        names = self._fields.get(kind)
        if names is None:
            return {"type": kind[:40]}   # (refused, and named by its first 40 characters)
        shown: dict[str, Any] = {"type": kind}
        for name in names:
            if name in frame:
                shown[name] = self._value(conn, kind, name, frame[name])
        return shown

    def _value(self, conn: int, kind: str, name: str, value: Any) -> Any:
        if name == "text" and type(value) is str:
            return self._scrub.text(value)
        if name in scrub.SECRET_KEYS:
            if type(value) is not str:
                return value if value is None else _NOT_STRING
            if name == "password":
                c = self.rules.sessions.conns.get(conn)
                claimed = c.claimed if c is not None else None
                return self._scrub.password(claimed or "", value)
            return self._scrub.secret(scrub.TAGS[name], value)
        if kind == _USERNAME and type(value) is str and value not in self.rules.logins.accounts:
            return self._scrub.secret("user", value)   # it may be a mistyped password
        return value

    def connected(self, conn: int, now: float, address: str) -> list[Any]:
        t = micros(now)
        return self._line(t, "c", self.rules.connected(conn, t / 1e6, address), conn, address)

    def bad_frame(self, conn: int, detail: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "b", self.rules.bad_frame(conn, detail, t / 1e6), conn, detail)

    def disconnected(self, conn: int, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "d", self.rules.disconnected(conn, t / 1e6), conn)

    def writable(self, conn: int, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "w", self.rules.writable(conn, t / 1e6), conn)

    def timer_fired(self, key: Any, now: float) -> list[Any]:
        return self.timers_fired((key,), now)

    def timers_fired(self, keys: Iterable[Any], now: float) -> list[Any]:
        t = micros(now)
        keys = list(keys)
        return self._line(t, "t", self.rules.timers_fired(keys, t / 1e6), keys)

    def password_checked(self, conn: int, ok: bool | None, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "p", self.rules.password_checked(conn, ok, t / 1e6), conn, ok)

    def accounts_changed(self, accounts: dict[str, str], now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "a", self.rules.accounts_changed(accounts, t / 1e6), self._scrub.accounts(accounts))

    def not_stored(self, change: StoreChange, now: float, code: ErrorCode = ErrorCode.STORE_FULL) -> list[Any]:
        t = micros(now)
        return self._line(t, "n", self.rules.not_stored(change, t / 1e6, code), scrub.render(change, self._scrub),
                          str(code))

    def history_read(self, conn: int, request: ReadHistory, rows: list[HistoryRow], now: float) -> list[Any]:
        t = micros(now)
        shown = [[sender, self._scrub.text(text), sent] for sender, text, sent in rows]
        return self._line(t, "h", self.rules.history_read(conn, request, rows, t / 1e6), conn,
                          scrub.render(request, self._scrub), shown)

    def password_hashed(self, conn: int, field: str | None, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "ph", self.rules.password_hashed(conn, field, t / 1e6), conn,
                          self._scrub.secret(scrub.TAGS["field"], field))

    def password_written(self, conn: int, user: str, field: str, refusal: ErrorCode | None,
                         now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "pw", self.rules.password_written(conn, user, field, refusal, t / 1e6), conn, user,
                          self._scrub.secret(scrub.TAGS["field"], field), None if refusal is None else str(refusal))

    def end_turn(self, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "e", self.rules.end_turn(t / 1e6))

    def shutdown(self, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "s", self.rules.shutdown(t / 1e6))

    # -- the operator's commands (the admin socket) ---------------------------------------------------

    def kick(self, user: str, reason: str | None, now: float) -> list[Any]:
        t = micros(now)
        shown = self._scrub.text(reason) if type(reason) is str else None
        return self._line(t, "ok", self.rules.kick(user, reason, t / 1e6), user, shown)

    def lock(self, user: str, until: float, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "oL", self.rules.lock(user, until, t / 1e6), user, until)

    def unlock(self, user: str, now: float) -> bool:
        t = micros(now)
        was = self.rules.unlock(user, t / 1e6)
        self._line(t, "oU", [], user)
        return was

    def notice(self, text: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "oN", self.rules.notice(text, t / 1e6), self._scrub.text(text))

    # -- cluster mode: the engine's answers and the other nodes' news ----------------------------------

    def take_ids(self, first: int) -> None:
        self.rules.take_ids(first)
        self._line(self.last, "i", [], first)

    def login_decided(self, conn: int | None, user: str, outcome: Any, now: float, *, until: float | None = None,
                      mailbox: Iterable[Any] = ()) -> list[Any]:
        t = micros(now)
        mailbox = [list(record) for record in mailbox]
        effects = self.rules.login_decided(conn, user, outcome, t / 1e6, until=until, mailbox=mailbox)
        return self._line(t, "L", effects, conn, user, str(outcome), until, mailbox)

    def cluster_lost(self, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "X", self.rules.cluster_lost(t / 1e6))

    def resync(self, online: dict[str, str], last_logout: dict[str, float], blocks: Iterable[tuple[str, str]],
               locks: dict[str, float], node: str, now: float, away: dict[str, str] | None = None) -> list[Any]:
        t = micros(now)
        pairs = [list(pair) for pair in blocks]
        effects = self.rules.resync(online, last_logout, [(a, b) for a, b in pairs], locks, node, t / 1e6,
                                    away=away)
        shown = None if away is None else {user: self._scrub.text(text) for user, text in away.items()}
        return self._line(t, "R", effects, online, last_logout, pairs, locks, node, shown)

    def remote_login(self, user: str, node: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rl", self.rules.remote_login(user, node, t / 1e6), user, node)

    def remote_logout(self, user: str, node: str, at: float, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "ro", self.rules.remote_logout(user, node, at, t / 1e6), user, node, at)

    def remote_block(self, blocker: str, blocked: str, on: bool, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rb", self.rules.remote_block(blocker, blocked, on, t / 1e6), blocker, blocked, on)

    def remote_locked(self, user: str, until: float, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rk", self.rules.remote_locked(user, until, t / 1e6), user, until)

    def remote_broadcast(self, sender: str, text: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rB", self.rules.remote_broadcast(sender, text, t / 1e6), sender, self._scrub.text(text))

    def remote_notice(self, text: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rN", self.rules.remote_notice(text, t / 1e6), self._scrub.text(text))

    def password_counted(self, conn: int, user: str, outcome: Any, now: float, *,
                         until: float | None = None) -> list[Any]:
        t = micros(now)
        return self._line(t, "pc", self.rules.password_counted(conn, user, outcome, t / 1e6, until=until), conn,
                          user, str(outcome), until)

    def remote_password(self, user: str, field: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rP", self.rules.remote_password(user, field, t / 1e6), user,
                          self._scrub.secret(scrub.TAGS["field"], field))

    def remote_away(self, user: str, text: str | None) -> None:
        self.rules.remote_away(user, text)
        self._line(self.last, "rA", [], user, None if text is None else self._scrub.text(text))

    def relay_answered(self, relay: RelayMessage, answer: str, now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "ra", self.rules.relay_answered(relay, answer, t / 1e6),
                          scrub.render(relay, self._scrub), answer)

    def sessions_taken(self, taken: dict[str, str], now: float) -> list[Any]:
        t = micros(now)
        return self._line(t, "rt", self.rules.sessions_taken(taken, t / 1e6), taken)

    def relayed(self, event: dict[str, Any], now: float) -> list[Any]:
        t = micros(now)
        shown = self._scrub.frame(event) if self.recording else None
        return self._line(t, "rr", self.rules.relayed(event, t / 1e6), shown)


def server_header(cls: type, t0: int, args: dict[str, Any], scrubber: scrub.Scrubber, run: str) -> Header:
    """The header of a server's journal: the rules' class and arguments, accounts made up."""
    shown = dict(args)
    shown["accounts"] = scrubber.accounts(args["accounts"])
    for name in ("blocks", "offline"):
        if name in shown:
            shown[name] = [list(row) for row in shown[name]]
    return Header(side="server", rules=cls.__name__, t0=t0, args=shown, texts=scrubber.texts, run=run,
                  extra={"recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# -- server_main.py's part ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, byte_count: Callable[[str], int]) -> None:
    """The options of recording (server_main.py's parser)."""
    parser.add_argument("--record", metavar="FILE",
                        help="append a journal of every input the rules take to FILE, for replay "
                             "(python3 server_main.py replay FILE; docs/debugging.md); no password, token or "
                             "certificate is written, and message texts only with --record-texts")
    parser.add_argument("--record-texts", action="store_true",
                        help="with --record: write message texts as they are (default: placeholders of the same "
                             "length)")
    parser.add_argument("--record-max-bytes", type=byte_count, metavar="N",
                        help="with --record: once FILE holds N bytes (K, M, G allowed) it becomes FILE.1 (then "
                             "FILE.2...) and FILE starts again; a replay needs them all")


class RulesBuilder:
    """Builds the server's rules as ``cls(*args, **kwargs)``, recording them if ``--record`` was given."""

    def __init__(self, loop: EventLoop, record: str | None = None, *, texts: bool = False,
                 max_bytes: int | None = None) -> None:
        self._loop = loop
        self._record = record
        self._texts = texts
        self._max_bytes = max_bytes
        self.writer: JournalWriter | None = None

    @classmethod
    def from_args(cls, loop: EventLoop, args: argparse.Namespace) -> RulesBuilder:
        return cls(loop, args.record, texts=args.record_texts, max_bytes=args.record_max_bytes)

    def build(self, rules: type[_R], *args: Any, **kwargs: Any) -> _R:
        if self._record is None:
            return rules(*args, **kwargs)
        names = ("accounts", "block_duration", "timeout")
        named = dict(zip(names, args, strict=False), **kwargs)
        scrubber = scrub.Scrubber(texts=self._texts)
        header = server_header(rules, micros(self._loop.time()), named, scrubber, run=secrets.token_hex(8))
        try:
            self.writer = JournalWriter(self._record, header, max_bytes=self._max_bytes)
        except OSError as exc:
            raise SystemExit(f"Error. Cannot record to {self._record}: {exc.strerror or exc}") from None
        recorder = ServerRecorder(self.writer, scrubber)
        self.writer.on_stop = recorder.stopped
        self.writer.attach(self._loop)
        log.info("recording the rules' inputs to %s%s", self._record, " (texts included)" if self._texts else "")
        return recorder.build(rules, *args, **kwargs)

    def close(self) -> None:
        """Write the last lines and close the journal."""
        if self.writer is not None:
            self.writer.close()
