"""Replaying a journal: the rules built from its header, given its events in order, each event's effects checked
against the digest the recording wrote; the first that differs is a ``Departure``.

``open_journal(path)`` reads a journal, and the segments before it when
``--record-max-bytes`` split the recording (``FILE.1``, ``FILE.2``, ..., then
``FILE``). ``ServerReplay`` (and ``reactor.journal.client``'s
``ClientReplay``) hold the rules; ``apply(event)`` gives them one event and
returns its effects, or raises ``Departure``. The command line, with its
timeline and debugger, is ``reactor.journal.cli``.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from ..protocol import ErrorCode, FrameType
from ..server import effects as server_effects
from ..server.logins import LoginOutcome
from ..server.rules import ChatServer
from . import scrub
from .format import Event, Header, JournalError, read_events, read_header

__all__ = ["Departure", "Journal", "open_journal", "ServerReplay", "change_from", "as_tuple"]


class Departure(Exception):
    """The replay departs from the recording at ``event``: ``why`` in words, with the effects the replay got."""

    def __init__(self, event: Event, why: str, effects: list[Any] | None = None) -> None:
        super().__init__(f"event #{event.number}: {why}")
        self.event = event
        self.why = why
        self.effects = effects or []


class Journal:
    """A journal's header and its events, over all its segments (see ``open_journal``)."""

    def __init__(self, files: list[str], header: Header) -> None:
        self.files = files
        self.header = header

    def events(self) -> Iterator[Event]:
        with ExitStack() as stack:
            expected = 1
            for index, path in enumerate(self.files):
                stream = stack.enter_context(open(path, encoding="utf-8", newline="\n"))
                header = read_header(stream)
                if header.run != self.header.run or header.first != expected:
                    raise JournalError(f"{path} is not the segment that follows (run {header.run}, from event "
                                       f"{header.first}; expected run {self.header.run}, from event {expected})")
                last = index == len(self.files) - 1
                for event in read_events(stream, header, strict_end=not last):
                    expected = event.number + 1
                    yield event


def open_journal(path: str) -> Journal:
    """The journal at ``path``, with the segments it continues (``path.1``, ...): JournalError if one is missing."""
    with open(path, encoding="utf-8", newline="\n") as stream:
        header = read_header(stream)
    files = [path]
    if header.segment > 1:
        suffix = f".{header.segment}"
        base = path[:-len(suffix)] if path.endswith(suffix) else path
        files = [f"{base}.{k}" for k in range(1, header.segment)] + [path]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise JournalError(f"{path} is segment {header.segment} of a recording (from event {header.first}); "
                               f"a replay starts at the first, and {', '.join(missing)} is missing")
        with open(files[0], encoding="utf-8", newline="\n") as stream:
            header = read_header(stream)
    return Journal(files, header)


def as_tuple(value: Any) -> Any:
    """A JSON list back to the tuple it was (a timer's key), all the way down."""
    return tuple(as_tuple(v) for v in value) if type(value) is list else value


_CHANGES = {cls.__name__: cls for cls in server_effects.STORE_CHANGES}


def change_from(rendered: Any) -> Any:
    """A store change from its rendering (``scrub.render``): ``[name, field, ...]``, a confirm as ``["Send", conns,
    frame]``."""
    if type(rendered) is not list or not rendered or rendered[0] not in _CHANGES:
        raise JournalError(f"not a store change: {rendered!r:.200}")
    cls = _CHANGES[rendered[0]]
    values = []
    for name, value in zip(cls.__slots__, rendered[1:], strict=True):
        if name == "confirm" and value is not None:
            value = server_effects.Send(tuple(value[1]), value[2])
        elif name == "ids":
            value = tuple(value)
        values.append(value)
    return cls(*values)


_RULES = {"ChatServer": ChatServer}


def _rules_class(name: str) -> type[ChatServer]:
    if name == "ClusterChatServer":   # (imported only when a cluster node's journal is replayed)
        from ..cluster.rules import ClusterChatServer
        return ClusterChatServer
    if name not in _RULES:
        raise JournalError(f"a server journal of unknown rules {name!r}")
    return _RULES[name]


class ServerReplay:
    """The server's rules as the journal's header built them, given its events one at a time."""

    side = "server"

    def __init__(self, header: Header) -> None:
        args = dict(header.args)
        if "blocks" in args:
            args["blocks"] = [tuple(pair) for pair in args["blocks"]]
        if "offline" in args:
            args["offline"] = [tuple(row) for row in args["offline"]]
        self.header = header
        self.scrubber = scrub.Scrubber(texts=header.texts)
        self._draws: deque[Any] = deque()
        self._event: Event | None = None
        try:
            self.rules: Any = _rules_class(header.rules)(**args, token_factory=self._draw)
        except TypeError as exc:
            raise JournalError(f"the header's arguments do not build {header.rules}: {exc}") from None
        self._ops: dict[str, Callable[[Any, float, list[Any]], list[Any]]] = {
            "c": lambda r, now, a: r.connected(a[0], now, a[1]),
            # (a message or a ping was given its very time, the line's last number)
            "r": lambda r, now, a: r.received(a[0], a[1], a[2] if len(a) > 2 else now),
            "m": lambda r, now, a: r.received(a[0], {"type": _MESSAGE, "to": a[1],
                                                     "text": "x" * a[2] if type(a[2]) is int else a[2]},
                                              a[3] if len(a) > 3 else now),
            "b": lambda r, now, a: r.bad_frame(a[0], a[1], now),
            "d": lambda r, now, a: r.disconnected(a[0], now),
            "w": lambda r, now, a: r.writable(a[0], now),
            "t": lambda r, now, a: r.timers_fired([as_tuple(key) for key in a[0]], now),
            "p": lambda r, now, a: r.password_checked(a[0], a[1], now),
            "a": lambda r, now, a: r.accounts_changed(a[0], now),
            "n": lambda r, now, a: r.not_stored(change_from(a[0]), now, ErrorCode(a[1])),
            "e": lambda r, now, a: r.end_turn(now),
            "s": lambda r, now, a: r.shutdown(now),
            "i": lambda r, now, a: r.take_ids(a[0]) or [],
            "L": lambda r, now, a: r.login_decided(a[0], a[1], LoginOutcome(a[2]), now, until=a[3],
                                                   mailbox=[tuple(m) for m in a[4]]),
            "X": lambda r, now, a: r.cluster_lost(now),
            "R": lambda r, now, a: r.resync(a[0], a[1], [tuple(b) for b in a[2]], a[3], a[4], now,
                                            away=a[5] if len(a) > 5 else None),
            "rl": lambda r, now, a: r.remote_login(a[0], a[1], now),
            "ro": lambda r, now, a: r.remote_logout(a[0], a[1], a[2], now),
            "rb": lambda r, now, a: r.remote_block(a[0], a[1], a[2], now),
            "rk": lambda r, now, a: r.remote_locked(a[0], a[1], now),
            "rB": lambda r, now, a: r.remote_broadcast(a[0], a[1], now),
            "rr": lambda r, now, a: r.relayed(a[0], now),
            "rN": lambda r, now, a: r.remote_notice(a[0], now),
            "ph": lambda r, now, a: r.password_hashed(a[0], a[1], now),
            "pw": lambda r, now, a: r.password_written(a[0], a[1], a[2], None if a[3] is None else ErrorCode(a[3]),
                                                       now),
            "pc": lambda r, now, a: r.password_counted(a[0], a[1], LoginOutcome(a[2]), now, until=a[3]),
            "rP": lambda r, now, a: r.remote_password(a[0], a[1], now),
            "rA": lambda r, now, a: (r.remote_away(a[0], a[1]), [])[1],
            "h": lambda r, now, a: r.history_read(a[0], server_effects.ReadHistory(*a[1][1:]),
                                                  [tuple(row) for row in a[2]], now),
            "ra": lambda r, now, a: r.relay_answered(server_effects.RelayMessage(*a[0][1:]), a[1], now),
            "rt": lambda r, now, a: r.sessions_taken(a[0], now),
            "ok": lambda r, now, a: r.kick(a[0], a[1], now),
            "oL": lambda r, now, a: r.lock(a[0], a[1], now),
            "oU": lambda r, now, a: (r.unlock(a[0], now), [])[1],
            "oN": lambda r, now, a: r.notice(a[0], now),
        }

    def _relay(self, event: Event) -> list[Any]:
        """An ``M`` line: the message its sender's connection sent, relayed to connection ``target`` (its user
        named the recipient), ``chars`` printable ASCII characters; its effects must be that one Send."""
        conn, target, chars = event.args
        to = self.rules.user_of(target)
        if to is None:
            raise Departure(event, f"the recording relayed a message to conn {target}, which has no user here")
        effects: list[Any] = self.rules.received(conn, {"type": _MESSAGE, "to": to, "text": "x" * chars}, event.now)
        effect = effects[0] if len(effects) == 1 else None
        if type(effect) is not server_effects.Send or effect.conns != (target,) or \
                effect.frame.get("type") != _MESSAGE or effect.frame.get("text") != "x" * chars:
            raise Departure(event, f"the recording relayed this message to {to} (conn {target}); the rules "
                                   f"return {len(effects)} other effect(s)", effects)
        return effects

    def _pong(self, event: Event) -> list[Any]:
        """A ``P`` event: a ping from ``conn``, answered at once with a pong."""
        conn = event.args[0]
        effects: list[Any] = self.rules.received(conn, {"type": _PING}, event.now)
        effect = effects[0] if len(effects) == 1 else None
        if type(effect) is not server_effects.Send or effect.conns != (conn,) or effect.frame != {"type": _PONG}:
            raise Departure(event, f"the recording answered this ping with a pong; the rules return {len(effects)} "
                                   "other effect(s)", effects)
        return effects

    def _draw(self) -> Any:
        if not self._draws:
            assert self._event is not None
            raise Departure(self._event, "the rules drew a token where the recording drew none")
        return self._draws.popleft()

    def apply(self, event: Event) -> list[Any]:
        """Give the rules ``event``; its effects, or Departure if they are not what the recording's were."""
        if event.op == "M":
            return self._relay(event)
        if event.op == "P":
            return self._pong(event)
        call = self._ops.get(event.op)
        if call is None:
            raise JournalError(f"line {event.line}: unknown op {event.op!r} in a {self.side} journal")
        self._event = event
        self._draws.extend(event.draws)
        effects = call(self.rules, event.now, event.args)   # (what the rules raise is theirs: the caller shows it)
        if self._draws:
            left = len(self._draws)
            self._draws.clear()
            raise Departure(event, f"the recording drew {left} token(s) the rules did not", effects)
        check(event, effects, self.scrubber)
        return effects


_MESSAGE = FrameType.MESSAGE.value
_PING = FrameType.PING.value
_PONG = FrameType.PONG.value


def check(event: Event, effects: list[Any], scrubber: scrub.Scrubber, keep_texts: bool = False) -> None:
    """Departure if ``effects`` are not what the recording's digest says."""
    if event.digest is None:
        return
    got = scrub.digest(effects, scrubber, keep_texts)
    if got == event.digest:
        return
    recorded, replayed = scrub.count_of(event.digest), scrub.count_of(got)
    if recorded != replayed:
        why = f"the recording's rules returned {recorded} effect(s), these return {replayed}"
    else:
        why = f"the rules return {replayed} effect(s), as recorded, but not the same ones"
    raise Departure(event, why, effects)
