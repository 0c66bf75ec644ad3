"""Part A: the reactor's own costs, each beside stdlib asyncio doing the same work in the same run.

* timers: schedule + cancel with 100,000 timers pending, in batches run from
  loop callbacks so each loop's own housekeeping (heap compaction) is counted.
* streams: one loopback TCP connection, 100,000 small JSON-line frames each
  way; reactor.stream.Stream (a window of frames in flight, refilled as the
  peer reads them) against asyncio streams (readline + json.loads,
  write(json.dumps) + drain).
"""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Callable

from reactor.framing import JsonLines, encode
from reactor.loop import EventLoop
from reactor.stream import Stream

from .common import median

PENDING_TIMERS = 100_000
TIMER_OPS = 100_000      # schedule + cancel pairs timed per run
STREAM_FRAMES = 100_000  # frames each way per run
TIMER_BATCH = 1_000
WINDOW = 1_000  # reactor stream frames in flight per direction


def _noop() -> None:
    pass


def _delays(count: int) -> list[float]:
    rng = random.Random(1)
    return [rng.uniform(1.0, 3600.0) for _ in range(count)]


def _time_timers(loop, run: Callable[[], None], ops: int) -> float:
    """µs per call_later + cancel on ``loop`` with PENDING_TIMERS pending, in batches run from loop callbacks."""
    for delay in _delays(PENDING_TIMERS):
        loop.call_later(delay, _noop)
    delays = _delays(ops)
    position = 0

    def batch() -> None:
        nonlocal position
        call_later = loop.call_later
        for delay in delays[position:position + TIMER_BATCH]:
            call_later(delay, _noop).cancel()
        position += TIMER_BATCH
        if position < ops:
            loop.call_soon(batch)
        else:
            loop.stop()

    loop.call_soon(batch)
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    loop.close()
    return elapsed / ops * 1e6


def timers_reactor(ops: int) -> float:
    """On reactor.loop.EventLoop."""
    loop = EventLoop()
    return _time_timers(loop, loop.run, ops)


def timers_asyncio(ops: int) -> float:
    """The same on asyncio's event loop."""
    loop = asyncio.new_event_loop()
    return _time_timers(loop, loop.run_forever, ops)


def _frame(seq: int) -> dict:
    return {"type": "message", "from": "user1", "text": "hello there", "seq": seq}


class _Pusher:
    """One end of the reactor connection: sends ``total`` frames, ``WINDOW`` at a time ahead of the reader."""

    def __init__(self, total: int, on_done) -> None:
        self.total = total
        self.sent = 0
        self.received = 0
        self.peer: _Pusher | None = None
        self.stream: Stream | None = None
        self.on_done = on_done

    def start(self) -> None:
        for _ in range(min(WINDOW, self.total)):
            self.send_one()

    def send_one(self) -> None:
        self.stream.write(encode(_frame(self.sent)))
        self.sent += 1

    def frame_received(self, stream: Stream, frame: dict) -> None:
        self.received += 1
        peer = self.peer
        if peer.sent < peer.total:  # the peer refills its window
            peer.send_one()
        if self.received == self.total:
            self.on_done()

    def frame_error(self, stream: Stream, detail: str) -> None:
        raise RuntimeError(detail)

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if self.received < self.total:
            raise RuntimeError(f"connection lost: {reason}")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def streams_reactor(frames: int) -> float:
    """Frames per second (both directions together) through two reactor Streams."""
    loop = EventLoop()
    finished = []

    def done() -> None:
        finished.append(1)
        if len(finished) == 2:
            loop.stop()

    a, b = _Pusher(frames, done), _Pusher(frames, done)
    a.peer, b.peer = b, a
    sock_a, sock_b = _tcp_pair()
    a.stream = Stream(loop, sock_a, JsonLines(a))
    b.stream = Stream(loop, sock_b, JsonLines(b))
    start = time.perf_counter()
    a.start()
    b.start()
    loop.run()
    elapsed = time.perf_counter() - start
    a.stream.close()
    b.stream.close()
    loop.run_once(0)
    loop.close()
    return 2 * frames / elapsed


async def _asyncio_streams(frames: int) -> float:
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_connect(reader, writer) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader_a, writer_a = await asyncio.open_connection("127.0.0.1", port)
    reader_b, writer_b = await accepted

    async def push(writer) -> None:
        for seq in range(frames):
            writer.write(json.dumps(_frame(seq)).encode() + b"\n")
            await writer.drain()

    async def pull(reader) -> None:
        for _ in range(frames):
            json.loads(await reader.readline())

    start = time.perf_counter()
    await asyncio.gather(push(writer_a), push(writer_b), pull(reader_a), pull(reader_b))
    elapsed = time.perf_counter() - start
    for writer in (writer_a, writer_b):
        writer.close()
    server.close()
    return 2 * frames / elapsed


def streams_asyncio(frames: int) -> float:
    """The same workload on stdlib asyncio streams."""
    return asyncio.run(_asyncio_streams(frames))


def run(quick: bool) -> dict:
    """Medians of repeats that alternate reactor and asyncio, so both see the same machine state."""
    repeats = 3 if quick else 7
    timer_us: dict[str, list[float]] = {"reactor": [], "asyncio": []}
    stream_fps: dict[str, list[float]] = {"reactor": [], "asyncio": []}
    for _ in range(repeats):
        timer_us["reactor"].append(timers_reactor(TIMER_OPS))
        timer_us["asyncio"].append(timers_asyncio(TIMER_OPS))
        stream_fps["reactor"].append(streams_reactor(STREAM_FRAMES))
        stream_fps["asyncio"].append(streams_asyncio(STREAM_FRAMES))
    return {"timer_us": {name: median(values) for name, values in timer_us.items()},
            "stream_fps": {name: median(values) for name, values in stream_fps.items()},
            "repeats": repeats}


if __name__ == "__main__":
    import sys
    print(run("--quick" in sys.argv))
