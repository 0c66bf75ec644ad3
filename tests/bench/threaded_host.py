"""The chat logic hosted thread-per-connection, like the design the reactor replaces.

One thread per client reads its blocking socket and splits lines; every call
into ``ChatServer`` and every effect runs under one global lock, and sends are
``sendall`` on the recipients' blocking sockets from whichever thread holds it.
A timer thread sleeps on a heap of deadlines (a ``Condition`` on the same lock).
Bench code only.
"""
from __future__ import annotations

import heapq
import itertools
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from reactor.framing import MAX_FRAME, encode
from reactor.server.effects import CancelTimer, Close, Send, SendBatch, SetTimer, WhenWritable
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore

from .common import LISTEN_BACKLOG, decode_line, store_effect

RECV_SIZE = 64 * 1024


class ThreadedHost:
    def __init__(self, logic: ChatServer) -> None:
        self._logic = logic
        self._store = MemoryStore()   # keeps the stored messages' texts, as the reactor host without a file
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)   # the timer thread waits on it
        self._socks: dict[int, socket.socket] = {}
        self._heap: list[tuple[float, int, Any]] = []  # (when, seq, key); stale entries skipped
        self._timers: dict[Any, int] = {}              # key -> seq of its live heap entry
        self._seq = itertools.count()
        self._ids = itertools.count(1)

    def accept_forever(self, listener: socket.socket) -> None:
        while True:
            sock, address = listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(sock, address[0]), daemon=True).start()

    def _serve(self, sock: socket.socket, address: str) -> None:
        logic = self._logic
        with self._lock:
            conn = next(self._ids)
            self._socks[conn] = sock
            self._apply(logic.connected(conn, time.monotonic(), address))
        buffer = b""
        try:
            while True:
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                buffer += data
                if b"\n" not in data:
                    if len(buffer) > MAX_FRAME:
                        with self._lock:
                            self._apply(logic.bad_frame(conn, f"frame longer than {MAX_FRAME} bytes",
                                                        time.monotonic()))
                        break
                    continue
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line:
                        continue
                    frame = decode_line(line)
                    with self._lock:
                        if conn not in self._socks:  # closed by the logic
                            return
                        if type(frame) is dict:
                            self._apply(logic.received(conn, frame, time.monotonic()))
                        else:
                            self._apply(logic.bad_frame(conn, frame, time.monotonic()))
        except OSError:
            pass
        finally:
            with self._lock:
                if self._socks.pop(conn, None) is not None:
                    self._apply(logic.disconnected(conn, time.monotonic()))
            sock.close()

    def run_timers(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                due = []  # as the reactor host: timers due together reach the logic together
                while self._heap and self._heap[0][0] <= now:
                    _when, seq, key = heapq.heappop(self._heap)
                    if self._timers.get(key) == seq:
                        del self._timers[key]
                        due.append(key)
                if due:
                    self._apply(self._logic.timers_fired(due, now))
                self._wake.wait(self._heap[0][0] - now if self._heap else None)

    def carry_out(self, effects: list) -> None:
        """Carry ``effects`` out as if the logic had returned them (under the lock, as every event is)."""
        with self._lock:
            self._apply(effects)

    def _apply(self, effects: list) -> None:
        """Carry out effects; the caller holds the lock."""
        for effect in effects:
            kind = type(effect)
            if kind is Send or kind is SendBatch:
                data = encode(effect.frame) if kind is Send else b"".join(map(encode, effect.frames))
                for conn in effect.conns:
                    sock = self._socks.get(conn)
                    if sock is not None:
                        try:
                            sock.sendall(data)
                        except OSError:
                            pass  # its reader thread sees the failure and cleans up
            elif kind is Close:
                sock = self._socks.get(effect.conn)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread, which cleans up
                    except OSError:
                        pass
            elif kind is SetTimer:
                seq = next(self._seq)
                self._timers[effect.key] = seq
                heapq.heappush(self._heap, (effect.when, seq, effect.key))
                if self._heap[0][1] == seq:
                    self._wake.notify()
                elif len(self._heap) > 2 * len(self._timers) + 1000:  # mostly re-armed timers: rebuild
                    self._heap = [entry for entry in self._heap if self._timers.get(entry[2]) == entry[1]]
                    heapq.heapify(self._heap)
            elif kind is CancelTimer:
                self._timers.pop(effect.key, None)
            elif kind is WhenWritable:   # sendall has waited for room already
                self._apply(self._logic.writable(effect.conn, time.monotonic()))
            else:
                self._apply(store_effect(self._store, effect, self._logic, time.monotonic()))


def serve(logic: ChatServer, port: int, announce: Callable[[int], None]) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # every thread inherits it; sigwait takes it
    host = ThreadedHost(logic)
    listener = socket.create_server(("127.0.0.1", port), backlog=LISTEN_BACKLOG)
    threading.Thread(target=host.run_timers, daemon=True).start()
    threading.Thread(target=host.accept_forever, args=(listener,), daemon=True).start()
    announce(listener.getsockname()[1])
    signal.sigwait({signal.SIGTERM})
