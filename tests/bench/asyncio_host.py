"""The chat logic on stdlib asyncio streams, written the way asyncio code usually is.

One coroutine per connection reads lines with ``StreamReader.readline``, decodes
them and feeds ``ChatServer``; effects are applied at once: ``writer.write``
for every recipient (the frame encoded once), ``writer.close`` for a close,
``loop.call_at`` for timers. The connection's own writer is drained after
each frame, the usual asyncio back-pressure. Bench code only.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
from typing import Any, Callable

from reactor.chat_server import CancelTimer, ChatServer, Close, Persist, Send, SendBatch, SetTimer
from reactor.framing import MAX_FRAME, encode

from .common import LISTEN_BACKLOG, MAX_OUTPUT, decode_line


class AsyncioHost:
    def __init__(self, logic: ChatServer, loop: asyncio.AbstractEventLoop) -> None:
        self._logic = logic
        self._loop = loop
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._due: list = []
        self._ids = itertools.count(1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(self._ids)
        self._writers[conn] = writer
        logic, loop = self._logic, self._loop
        self._apply(logic.connected(conn, loop.time(), writer.get_extra_info("peername")[0]))
        try:
            while conn in self._writers and not writer.is_closing():
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    self._apply(logic.bad_frame(conn, f"frame longer than {MAX_FRAME} bytes", loop.time()))
                    break
                if not line.endswith(b"\n"):  # end of stream (a partial last line is dropped)
                    break
                line = line[:-1]
                if not line:
                    continue
                frame = decode_line(line)
                if type(frame) is dict:
                    self._apply(logic.received(conn, frame, loop.time()))
                else:
                    self._apply(logic.bad_frame(conn, frame, loop.time()))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            if self._writers.pop(conn, None) is not None:
                self._apply(logic.disconnected(conn, loop.time()))

    def _fire(self, key: Any) -> None:
        """As the reactor host: timers due in one iteration reach the logic together."""
        del self._timers[key]
        self._due.append(key)
        if len(self._due) == 1:
            self._loop.call_soon(self._fire_due)

    def _fire_due(self) -> None:
        keys, self._due = self._due, []
        self._apply(self._logic.timers_fired(keys, self._loop.time()))

    def _apply(self, effects: list) -> None:
        writers = self._writers
        for effect in effects:
            kind = type(effect)
            if kind is Send or kind is SendBatch:
                data = encode(effect.frame) if kind is Send else b"".join(map(encode, effect.frames))
                for conn in effect.conns:
                    writer = writers.get(conn)
                    if writer is not None:
                        writer.write(data)
                        if writer.transport.get_write_buffer_size() > MAX_OUTPUT:  # not reading
                            writer.transport.abort()
            elif kind is Close:
                writer = writers.get(effect.conn)
                if writer is not None:
                    writer.close()  # flushes first; the reader then sees the end and cleans up
            elif kind is SetTimer:
                old = self._timers.get(effect.key)
                if old is not None:
                    old.cancel()
                self._timers[effect.key] = self._loop.call_at(effect.when, self._fire, effect.key)
            elif kind is CancelTimer:
                old = self._timers.pop(effect.key, None)
                if old is not None:
                    old.cancel()
            elif kind is not Persist:
                raise TypeError(f"unknown effect {effect!r}")


async def _main(logic: ChatServer, port: int, announce: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    host = AsyncioHost(logic, loop)
    server = await asyncio.start_server(host.handle, "127.0.0.1", port, backlog=LISTEN_BACKLOG,
                                        limit=MAX_FRAME + 1)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    announce(server.sockets[0].getsockname()[1])
    await stop
    os._exit(0)  # a bench host needs no orderly goodbye to thousands of tasks


def serve(logic: ChatServer, port: int, announce: Callable[[int], None]) -> None:
    asyncio.run(_main(logic, port, announce))
