"""Hosts the sans-I/O chat server on the reactor: sockets in, effects out.

The host owns the I/O the logic must not touch: it numbers connections, hands
decoded frames and the loop's clock to ``ChatServer``, and carries out the
effects it returns: frames to send (encoded once, however many recipients),
connections to close, timers to arm. ``WhenWritable`` is how the logic paces
a big mailbox by its reader: the host calls ``writable`` once the stream has
room (``Stream.when_drained``). Durable effects go to an optional store, and
once one has, every send, close and WhenWritable waits until the store has
committed (``_commit``, run before the loop sleeps: one transaction per loop
turn).

A turn the store cannot keep because it is full (``StoreFull``: the store
rolled the transaction back) is not a reason to stop: its messages are refused
(the logic's ``not_stored`` answers in place of their confirmation), and its
other changes, acknowledgements that free room and blocks, are tried again in
a transaction of their own. The next turn stores again.
"""
from __future__ import annotations

import itertools
import logging
import socket
from typing import Protocol

from .chat_server import CancelTimer, ChatServer, Close, Persist, Send, SendBatch, SetTimer, WhenWritable
from .framing import encode
from .loop import EventLoop, NamedTimers
from .store import StoreFull
from .stream import Listener, Stream, listen

log = logging.getLogger("chat.host")

SHUTDOWN_GRACE = 2.0  # seconds to flush goodbyes before the loop stops anyway


class Store(Protocol):
    """Durable state: ``apply`` takes Persist effects, ``commit`` makes them durable; either raises
    ``StoreFull`` (the open transaction rolled back) when there is no room."""

    def apply(self, effect: Persist) -> None: ...
    def commit(self) -> None: ...


class ServerHost:
    """Runs one ``ChatServer`` over a listening socket on ``loop``."""

    def __init__(self, loop: EventLoop, logic: ChatServer, store: Store | None = None) -> None:
        self._loop = loop
        self._logic = logic
        self._store = store
        self._streams: dict[int, Stream] = {}
        self._timers = NamedTimers(loop, self._fire)
        self._ids = itertools.count(1)
        self._listener: Listener | None = None
        self._held: list[Send | SendBatch | Close | WhenWritable | Persist] = []   # waiting for the commit
        self._turn: list[Persist] = []        # the changes of the open transaction
        self._full = False                    # the store refused this turn's transaction
        self._dirty = False                   # the store has uncommitted changes
        self._stopping = False
        if store is not None:
            loop.add_before_sleep(self._commit)

    @property
    def address(self) -> tuple:
        assert self._listener is not None
        return self._listener.address

    def serve(self, host: str, port: int) -> None:
        """Start accepting on ``host:port``; raises OSError if it cannot bind."""
        self._listener = listen(self._loop, host, port, self._accept)

    # -- sockets -> logic ----------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        if self._stopping:
            sock.close()
            return
        try:
            stream = Stream(self._loop, sock, self)
        except OSError as exc:  # the peer is already gone
            log.debug("accept: %s", exc)
            sock.close()
            return
        conn = next(self._ids)
        stream.tag = conn
        self._streams[conn] = stream
        log.debug("connection %d from %s", conn, stream.peer_address)
        self._apply(self._logic.connected(conn, self._loop.time()))

    def frame_received(self, stream: Stream, frame: dict) -> None:
        self._apply(self._logic.received(stream.tag, frame, self._loop.time()))

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._apply(self._logic.bad_frame(stream.tag, detail, self._loop.time()))

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        conn = stream.tag
        if self._streams.pop(conn, None) is None:
            return
        if reason is not None:
            log.info("connection %d from %s lost: %s", conn, stream.peer_address, reason)
        self._apply(self._logic.disconnected(conn, self._loop.time()))
        if self._stopping and not self._streams:
            self._loop.stop()

    def _writable(self, stream: Stream) -> None:
        """The stream asked for in a WhenWritable has room for more."""
        self._apply(self._logic.writable(stream.tag, self._loop.time()))

    def _fire(self, keys: list) -> None:
        """Timers that came due together reach the logic together (see ``timers_fired``)."""
        self._apply(self._logic.timers_fired(keys, self._loop.time()))

    # -- effects -> sockets --------------------------------------------

    def _apply(self, effects: list) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is Send or kind is SendBatch or kind is Close or kind is WhenWritable:
                if self._dirty:
                    self._held.append(effect)
                else:
                    self._deliver(effect)
            elif kind is SetTimer:
                self._timers.set(effect.key, effect.when)
            elif kind is CancelTimer:
                self._timers.cancel(effect.key)
            elif kind is Persist:
                if self._store is None:
                    if effect.confirm is not None:
                        self._apply([effect.confirm])
                    continue
                self._turn.append(effect)
                if not self._full:
                    try:
                        self._store.apply(effect)
                    except StoreFull:
                        self._full = True
                self._dirty = True
                if effect.confirm is not None:
                    self._held.append(effect)
            else:
                raise TypeError(f"unknown effect {effect!r}")

    def _deliver(self, effect: Send | SendBatch | Close | WhenWritable) -> None:
        get = self._streams.get
        kind = type(effect)
        if kind is Close or kind is WhenWritable:
            stream = get(effect.conn)   # type: ignore[union-attr]
            if stream is None:
                return
            if kind is Close:
                stream.close()
            else:
                stream.when_drained(self._writable)
            return
        data = encode(effect.frame) if type(effect) is Send else b"".join(map(encode, effect.frames))
        for conn in effect.conns:
            stream = get(conn)
            if stream is not None:
                stream.write(data)

    def _commit(self) -> None:
        """Before the loop sleeps: make this iteration's changes durable, then release what waited."""
        if not self._dirty:
            return
        refused = self._store_turn()
        self._dirty = self._full = False
        self._turn = []
        held, self._held = self._held, []
        now = self._loop.time()
        answers = {id(change): self._logic.not_stored(change, now) for change in reversed(refused)}
        for effect in held:
            if type(effect) is not Persist:
                self._deliver(effect)
            elif id(effect) in answers:
                self._apply(answers.pop(id(effect)))
            else:
                self._deliver(effect.confirm)  # type: ignore[arg-type]
        for answer in answers.values():
            self._apply(answer)

    def _store_turn(self) -> list[Persist]:
        """Commit this turn's changes; those the store had no room for, in order."""
        store = self._store
        assert store is not None
        if not self._full:
            try:
                store.commit()
                return []
            except StoreFull:
                pass
        others = [change for change in self._turn if change.op != "add_offline"]
        try:
            for change in others:
                store.apply(change)
            store.commit()
            kept = True
        except StoreFull:
            kept = False
        log.warning("the store is full: %d messages refused; %d other changes %s",
                    len(self._turn) - len(others), len(others), "kept" if kept else "refused too")
        return [change for change in self._turn if change.op == "add_offline" or not kept]

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
        self._apply(self._logic.shutdown(self._loop.time()))
        if not self._streams:
            self._loop.call_soon(self._loop.stop)
        else:
            self._loop.call_later(SHUTDOWN_GRACE, self._loop.stop)
        if self._store is not None:
            self._loop.call_soon(self._commit)
