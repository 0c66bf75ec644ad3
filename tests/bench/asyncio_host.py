"""The chat logic on an asyncio event loop (stdlib, or uvloop), hosted as the reactor hosts it.

So that a comparison measures the loop and not a naive host, this host does
what the reactor's ``ServerHost`` and ``Stream`` do: one ``asyncio.Protocol``
per connection cuts received bytes into lines and feeds ``ChatServer``;
effects are applied at once, but the bytes for a connection are buffered
during the loop pass and written with one ``transport.write`` per connection
per pass (a flush scheduled with ``loop.call_soon`` by the first write of the
pass, as ``Stream.write`` does). A connection whose output the transport
cannot pass on is paused for reading until it drains (``pause_writing``), the
usual asyncio back-pressure; a recipient that lets ``MAX_OUTPUT`` bytes pile up
is dropped. On SIGTERM every transport is aborted, the loop is closed and the
process exits normally. Bench code only.
"""
from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from typing import Any

from reactor.framing import MAX_FRAME, encode
from reactor.server.effects import CancelTimer, Close, Send, SendBatch, SetTimer, WhenWritable
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore

from .common import LISTEN_BACKLOG, MAX_OUTPUT, decode_line, store_effect


class Connection(asyncio.Protocol):
    """One client: its transport, its partial line, and the bytes waiting for this pass's flush."""

    def __init__(self, host: AsyncioHost) -> None:
        self.host = host
        self.conn = next(host.ids)
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.out: list[bytes] = []
        self.closing = False          # a Close effect: flush, then close
        self.paused = False           # the transport's buffer is above its high-water mark
        self.on_drained = False       # the logic asked for WhenWritable

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.host.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        lines = data.split(b"\n")
        self.tail = lines.pop()
        host = self.host
        for line in lines:
            if self.closing:
                return
            if line:
                host.frame(self, decode_line(line))
        if len(self.tail) > MAX_FRAME and not self.closing:
            self.tail = b""
            host.bad_frame(self, f"frame longer than {MAX_FRAME} bytes")

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.lost(self)

    def pause_writing(self) -> None:
        self.paused = True
        self.transport.pause_reading()  # a sender that does not read its replies is not read either

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closing:
            self.transport.resume_reading()
        if self.on_drained:
            self.on_drained = False
            self.host.writable(self)


class AsyncioHost:
    def __init__(self, logic: ChatServer, loop: asyncio.AbstractEventLoop) -> None:
        self._logic = logic
        self._store = MemoryStore()   # keeps the stored messages' texts, as the reactor host without a file
        self._loop = loop
        self.ids = itertools.count(1)
        self._conns: dict[int, Connection] = {}
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._due: list = []
        self._dirty: list[Connection] = []  # connections with bytes waiting for this pass's flush

    # -- transports -> logic -------------------------------------------

    def opened(self, c: Connection) -> None:
        self._conns[c.conn] = c
        address = c.transport.get_extra_info("peername")[0]
        self._apply(self._logic.connected(c.conn, self._loop.time(), address))

    def frame(self, c: Connection, frame: dict | str) -> None:
        if type(frame) is dict:
            self._apply(self._logic.received(c.conn, frame, self._loop.time()))
        else:
            self._apply(self._logic.bad_frame(c.conn, frame, self._loop.time()))

    def bad_frame(self, c: Connection, detail: str) -> None:
        self._apply(self._logic.bad_frame(c.conn, detail, self._loop.time()))

    def lost(self, c: Connection) -> None:
        if self._conns.pop(c.conn, None) is not None:
            c.out.clear()
            self._apply(self._logic.disconnected(c.conn, self._loop.time()))

    def writable(self, c: Connection) -> None:
        self._apply(self._logic.writable(c.conn, self._loop.time()))

    def _fire(self, key: Any) -> None:
        """As the reactor host: timers due in one iteration reach the logic together."""
        del self._timers[key]
        self._due.append(key)
        if len(self._due) == 1:
            self._loop.call_soon(self._fire_due)

    def _fire_due(self) -> None:
        keys, self._due = self._due, []
        self._apply(self._logic.timers_fired(keys, self._loop.time()))

    # -- effects -> transports -----------------------------------------

    def _write(self, c: Connection, data: bytes) -> None:
        if not c.out:
            self._dirty.append(c)
            if len(self._dirty) == 1:
                self._loop.call_soon(self._flush)
        c.out.append(data)

    def _flush(self) -> None:
        """Once per loop pass: each connection's bytes of the pass in one ``transport.write``."""
        dirty, self._dirty = self._dirty, []
        for c in dirty:
            if not c.out or c.transport.is_closing():
                c.out.clear()
                continue
            c.transport.write(b"".join(c.out))
            c.out.clear()
            if c.closing:
                c.transport.close()  # after what is buffered is sent
            elif c.transport.get_write_buffer_size() > MAX_OUTPUT:  # not reading its messages
                c.transport.abort()

    def carry_out(self, effects: list) -> None:
        """Carry ``effects`` out as if the logic had returned them."""
        self._apply(effects)

    def _apply(self, effects: list) -> None:
        conns = self._conns
        for effect in effects:
            kind = type(effect)
            if kind is Send or kind is SendBatch:
                data = encode(effect.frame) if kind is Send else b"".join(map(encode, effect.frames))
                for conn in effect.conns:
                    c = conns.get(conn)
                    if c is not None and not c.closing:
                        self._write(c, data)
            elif kind is Close:
                c = conns.get(effect.conn)
                if c is not None and not c.closing:
                    c.closing = True
                    if c.out:
                        continue  # the flush closes it
                    c.transport.close()
            elif kind is WhenWritable:
                c = conns.get(effect.conn)
                if c is not None:
                    if c.paused:
                        c.on_drained = True
                    else:
                        self._loop.call_soon(self.writable, c)
            elif kind is SetTimer:
                old = self._timers.get(effect.key)
                if old is not None:
                    old.cancel()
                self._timers[effect.key] = self._loop.call_at(effect.when, self._fire, effect.key)
            elif kind is CancelTimer:
                old = self._timers.pop(effect.key, None)
                if old is not None:
                    old.cancel()
            else:
                self._apply(store_effect(self._store, effect, self._logic, self._loop.time()))

    def abort_all(self) -> None:
        """Teardown: no more effects; every transport dropped without writing anything more."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        conns, self._conns = self._conns, {}
        for c in conns.values():
            c.out.clear()
            c.transport.abort()


async def _main(logic: ChatServer, port: int, announce: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    host = AsyncioHost(logic, loop)
    server = await loop.create_server(lambda: Connection(host), "127.0.0.1", port, backlog=LISTEN_BACKLOG)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    announce(server.sockets[0].getsockname()[1])
    await stop
    server.close()
    host.abort_all()
    await asyncio.sleep(0)  # the aborted transports' connection_lost callbacks run


def serve(logic: ChatServer, port: int, announce: Callable[[int], None], *, use_uvloop: bool = False) -> None:
    if use_uvloop:
        import uvloop
        uvloop.run(_main(logic, port, announce))
    else:
        asyncio.run(_main(logic, port, announce))
