"""Non-blocking TCP on the event loop: byte streams, listeners and outgoing connects.

A ``Stream`` is a transport, as asyncio has them: it owns one connected socket
and moves bytes, and what the bytes mean is its protocol object's business (a
``StreamProtocol``: ``reactor.framing.JsonLines`` for the chat's JSON lines, a
RESP reader for the cluster's engine). Each read goes to the protocol's
``data_received`` as it came; the protocol may ``pause_reading`` while it still
has work from the last read (its fair share) and ``resume_reading`` after.

Writes go to an output buffer flushed once per loop iteration (so many writes
to one peer cost one ``send``), and the loop watches for writability only
while bytes are pending. An owner with much to send paces itself with
``when_drained``: it writes while fewer than ``high_water`` bytes wait and,
beyond that, waits until flushing brings them down to ``low_water``. A peer
that stops reading is cut off once its buffer passes ``max_output`` (what its
owner sends it anyway: live traffic). ``set_limits`` changes ``max_output`` and
``read_size`` (how much one ``recv`` takes) on a live stream: the server keeps
a connection's limits small until it logs in.

Every stream counts the bytes it reads and sends into a ``Traffic``, one
addition per ``recv`` and per ``send`` (not per message): its owner's (the
chat server's client connections share one, for its metrics), else ``UNOWNED``.

Nothing a peer does raises into the loop: failures reach the protocol's
``connection_lost`` exactly once, always from a fresh loop callback.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from .loop import EventLoop, TimerHandle

log = logging.getLogger(__name__)

MAX_OUTPUT = 1 << 20   # bytes buffered for a peer before it counts as not reading
HIGH_WATER = 64 * 1024  # bytes buffered beyond which a paced owner waits (see ``when_drained``)
LOW_WATER = 16 * 1024   # ... until flushing brings them down to this
RECV_SIZE = 64 * 1024   # bytes one recv takes at most (``read_size``)
CLOSE_TIMEOUT = 5.0     # seconds a closing stream may take to flush before it is aborted
PEER_CLOSED = "peer closed the connection"   # the reason a stream closes when the peer is done sending


class StreamProtocol(Protocol):
    """What a stream's bytes mean: it is given every read, the end of input, and the stream's loss."""

    def data_received(self, stream: Stream[Any], data: bytes) -> None:
        """Bytes read from the peer (any number: part of a message, or many)."""

    def eof_received(self, stream: Stream[Any]) -> None:
        """The peer is done sending. The stream closes after this returns (``PEER_CLOSED``), unless the
        protocol closed it first, with words of its own."""

    def connection_lost(self, stream: Stream[Any], reason: str | None) -> None:
        """The stream is closed: once, from a fresh loop callback; ``reason`` None for a close its owner
        asked for, else why."""


P = TypeVar("P", bound=StreamProtocol)


# The streams of each loop with output to send this turn (by the loop's id), flushed together by one ready
# callback: one loop callback a turn in place of one per stream written to (a Handle made, queued and run for
# each): 385 -> 92 ns per stream written to, about 3% of a relayed message's ~9 us. An entry lives from the
# turn's first write to its ready phase (its streams keep the loop alive meanwhile, so the id is that loop's):
# nothing is kept per loop, and no weak reference is needed (the fast build's loop has none).
_to_flush: dict[int, list[Stream[Any]]] = {}


def _flush_all(loop_id: int) -> None:
    for stream in _to_flush.pop(loop_id, ()):
        try:
            stream._flush()
        except Exception:   # (as the loop does for each callback: one stream's bug does not keep the others')
            log.exception("stream %s: flush failed", stream.peer_address)


class Traffic:
    """Bytes some streams read (``received``) and sent (``sent``), on the wire: a stream adds once per ``recv``
    and once per ``send``, ~20 ns each (a relayed message's ~9 us reads and sends many messages at once)."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


# What the streams given no ``Traffic`` of their owner's read and sent: the process's, not each loop's (one per
# loop needs a weak reference to the loop, which the fast build's compiled loop takes none of).
UNOWNED = Traffic()


class Stream(Generic[P]):
    """One connected TCP socket: bytes out through an output buffer, bytes in to ``protocol``.

    ``tag`` is the owner's to set (a connection id, a user name). ``closed`` (read it, do not set it) is
    true once ``close()``/``abort()`` was called or the peer is gone. With ``count_sends``, ``sends`` counts
    the socket sends made (for tests and figures), else it is None: a new int each send would cost a relayed
    message 0.3% (270 of its 92,000 instructions; the test for None, 0.04%). ``traffic``: where its bytes are
    counted (by default ``UNOWNED``).
    """

    __slots__ = ("_loop", "_sock", "_protocol", "_out", "_max_output", "_read_size",
                 "_high_water", "_low_water", "_on_drained", "_flush_pending", "_writing", "_released",
                 "_close_timer", "_reason", "_traffic", "closed", "sends", "tag", "peer_address", "local_address")

    def __init__(self, loop: EventLoop, sock: socket.socket, protocol: P, *, max_output: int = MAX_OUTPUT,
                 high_water: int = HIGH_WATER, low_water: int = LOW_WATER, read_size: int = RECV_SIZE,
                 count_sends: bool = False, traffic: Traffic | None = None) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop = loop
        self._traffic = traffic if traffic is not None else UNOWNED
        self._sock = sock
        self._protocol = protocol
        self._out: bytes | bytearray = b""   # unsent output: the bytes written, or a buffer of our own (``write``)
        self._max_output = max_output
        self._read_size = read_size
        self._high_water = high_water
        self._low_water = low_water
        self._on_drained: Callable[[Stream[P]], Any] | None = None
        self._flush_pending = False
        self._writing = False
        # ``closed``: no more reading or writing (a plain attribute, not a property: the protocol of a read
        # tests it before each message it hands on). ``_released``: the socket is closed, connection_lost due.
        self.closed = False
        self._released = False
        self._close_timer: TimerHandle | None = None
        self._reason: str | None = None  # why it is closing, if the owner did not ask
        self.sends: int | None = 0 if count_sends else None
        self.tag: Any = None
        self.peer_address = _address(sock.getpeername)
        self.local_address = _address(sock.getsockname)
        loop.add_reader(sock, self._on_readable)

    @property
    def protocol(self) -> P:
        """The object the bytes read go to."""
        return self._protocol

    @property
    def loop(self) -> EventLoop:
        """The loop it runs on (where a protocol puts its work for later turns)."""
        return self._loop

    def set_limits(self, *, max_output: int, read_size: int) -> None:
        """Change the output a peer may leave unread and the bytes one read takes."""
        self._max_output = max_output
        self._read_size = read_size

    @property
    def buffered(self) -> int:
        """Bytes waiting to be sent."""
        return len(self._out)

    # -- writing -------------------------------------------------------

    def write(self, data: bytes | bytearray) -> None:
        """Queue bytes; they go out in order."""
        if self.closed:
            return
        out = self._out
        if not out and type(data) is bytes:
            # The first write since the last flush keeps the caller's bytes, not a copy: a frame written to
            # many streams (the presence notices of a login storm, a broadcast) is held once until each
            # send, not once per stream. After a storm of 10,000 logins the server's RSS per idle client was
            # 14 KiB (glibc kept the heap those copies had grown); with this and the lazy session parts, 2.4.
            self._out = out = data
        else:
            if type(out) is not bytearray:   # a second write: into a buffer of our own from now on (``_append``)
                self._out = out = bytearray(out)
            out += data
        if len(out) > self._max_output:
            self._fail(f"output buffer over {self._max_output} bytes: peer not reading")
        elif not self._flush_pending and not self._writing:
            self._flush_soon()

    def _append(self, data: bytes | bytearray) -> None:
        """Add bytes to the output buffer as ``write`` does (inline there, the hot path): the caller's bytes
        kept while the buffer is empty, else copied into a buffer of our own that grows in place."""
        out = self._out
        if not out and type(data) is bytes:
            self._out = data
        else:
            if type(out) is not bytearray:
                self._out = out = bytearray(out)
            out += data

    def _flush_soon(self) -> None:
        """Flush in this turn's ready phase (with the other streams written to: ``_to_flush``)."""
        self._flush_pending = True
        loop_id = id(self._loop)
        streams = _to_flush.get(loop_id)
        if streams is None:
            _to_flush[loop_id] = [self]
            self._loop.call_soon(_flush_all, loop_id)
        else:
            streams.append(self)

    def when_drained(self, callback: Callable[[Stream[P]], Any]) -> None:
        """Call ``callback(self)`` once there is room for more output: soon if fewer than
        ``high_water`` bytes wait, else once flushing has brought them down to ``low_water``.

        Always from a fresh loop callback, and never once the stream is closing.
        One request at a time: a second call before the first was answered replaces it.
        """
        if self.closed:
            return
        if self.buffered < self._high_water:
            self._on_drained = None
            self._loop.call_soon(self._drained, callback)
        else:
            self._on_drained = callback

    def _drained(self, callback: Callable[[Stream[P]], Any]) -> None:
        if not self.closed:
            callback(self)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._released or not self._out:
            return
        out = self._out
        if self.sends is not None:
            self.sends += 1
        try:
            sent = self._sock.send(out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fail(describe_os_error(exc))
            return
        self._traffic.sent += sent
        if sent == len(out):
            self._out = b""   # (an idle stream holds no buffer)
        elif type(out) is bytearray:
            del out[:sent]
        else:   # the rest in a buffer of our own, sent from its front in place: not copied again at each send
            self._out = bytearray(memoryview(out)[sent:])
        if self._on_drained is not None and len(self._out) <= self._low_water:
            self._loop.call_soon(self._drained, self._on_drained)
            self._on_drained = None
        if self._out:
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self._sock, self._flush)
        else:
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._sock)
            if self.closed:  # all said: release the socket once this turn's other sends are out
                self._loop.call_soon(self._finish, self._reason)

    # -- reading -------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(describe_os_error(exc))
            return
        if data:
            self._traffic.received += len(data)
            self._protocol.data_received(self, data)
        else:  # the peer is done sending; it may still read our replies
            self._end_of_input()

    def _end_of_input(self) -> None:
        self._protocol.eof_received(self)
        self._close(self._eof_reason())

    def _eof_reason(self) -> str:
        """Why the stream closes when the peer is done sending."""
        return PEER_CLOSED

    def pause_reading(self) -> None:
        """Read nothing more until ``resume_reading``: what the peer sends waits in the kernel's buffers."""
        if not self.closed:
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        """Read again (after ``pause_reading``)."""
        if not self.closed:
            self._loop.add_reader(self._sock, self._on_readable)

    # -- closing -------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        """Stop reading, send what is buffered, then close (abort after CLOSE_TIMEOUT).

        ``reason``: why, when it is not the owner's wish (the peer sent what cannot be read); the
        protocol's ``connection_lost`` gets it."""
        self._close(reason)

    def _close(self, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._reason = reason
        self._loop.remove_reader(self._sock)
        if not self._out:
            self._finish(reason)
            return
        if not self._writing:
            self._flush()  # the last words go out now, not after the rest of this iteration's work
        if self._out:      # the peer is slow to read: the writer callback finishes the close
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self._fail, "close timed out")

    def abort(self, reason: str | None = None) -> None:
        """Close now, dropping unsent bytes, with a reset (SO_LINGER 0); ``reason`` as for ``close``."""
        if self._released:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._finish(reason)

    def _fail(self, reason: str) -> None:
        if not self._released:
            log.debug("stream %s: %s", self.peer_address, reason)
            self._finish(reason)

    def _finish(self, reason: str | None) -> None:
        if self._released:
            return
        self._released = True
        self.closed = True
        self._out = b""
        self._on_drained = None
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._loop.remove_reader(self._sock)
        self._loop.remove_writer(self._sock)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, self, reason)


class Listener:
    """A listening socket that hands each accepted socket to ``on_accept``.

    Accepts up to ``batch`` connections per wake-up. Out of file descriptors
    (EMFILE/ENFILE) or memory, it stops watching the socket for
    ``retry_delay`` seconds instead of spinning.
    """

    def __init__(self, loop: EventLoop, sock: socket.socket, on_accept: Callable[[socket.socket], Any], *,
                 batch: int = 128, retry_delay: float = 0.5) -> None:
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._on_accept = on_accept
        self._batch = batch
        self._retry_delay = retry_delay
        self._retry: TimerHandle | None = None
        self.address = sock.getsockname()
        loop.add_reader(sock, self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept: %s; pausing accepts for %.1fs", describe_os_error(exc), self._retry_delay)
                    self._loop.remove_reader(self._sock)
                    self._retry = self._loop.call_later(self._retry_delay, self._resume)
                else:  # ECONNABORTED and friends: that one client is gone
                    log.debug("accept: %s", describe_os_error(exc))
                    continue
                return
            self._on_accept(conn)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock, self._on_readable)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._sock)
        self._sock.close()


def listen(loop: EventLoop, host: str, port: int, on_accept: Callable[[socket.socket], Any], *,
           backlog: int = 1024, reuse_port: bool = False, **options: Any) -> Listener:
    """Bind and listen on ``host:port`` (port 0: the OS picks); raises OSError on failure. ``reuse_port``:
    other processes may listen on the same port too (``SO_REUSEPORT``: the kernel spreads connections)."""
    sock = socket.create_server((host, port), backlog=backlog, reuse_port=reuse_port)
    return Listener(loop, sock, on_accept, **options)


class Connector:
    """A non-blocking outgoing TCP connect; calls ``on_done(sock, None)`` or ``on_done(None, error)``.

    A host name is resolved by a blocking ``getaddrinfo``; with ``numeric`` only an IP address is
    taken, and anything else fails at once without a look-up (for addresses from the network).
    """

    def __init__(self, loop: EventLoop, host: str, port: int,
                 on_done: Callable[[socket.socket | None, str | None], Any], *, timeout: float = 10.0,
                 numeric: bool = False) -> None:
        self._loop = loop
        self._on_done = on_done
        self._sock: socket.socket | None = None
        self._error = "no address"
        try:
            self._addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                 flags=socket.AI_NUMERICHOST if numeric else 0)
        except (OSError, UnicodeError) as exc:
            self._addresses = []
            self._error = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        self._timer: TimerHandle | None = loop.call_later(timeout, self._timed_out)
        loop.call_soon(self._next)

    def _next(self) -> None:
        if self._timer is None:
            return
        if not self._addresses:
            self._done(None, self._error)
            return
        family, type_, proto, _name, address = self._addresses.pop(0)
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        err = sock.connect_ex(address)
        if err in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._sock = sock
            self._loop.add_writer(sock, self._on_writable)
        else:
            sock.close()
            self._error = describe_os_error(OSError(err, os.strerror(err)))
            self._loop.call_soon(self._next)

    def _on_writable(self) -> None:
        sock = self._sock
        assert sock is not None
        self._loop.remove_writer(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._sock = None
        if err == 0:
            self._done(sock, None)
        else:
            sock.close()
            self._error = describe_os_error(OSError(err, os.strerror(err)))
            self._next()

    def _timed_out(self) -> None:
        self._timer = None
        self._drop_socket()
        self._on_done(None, "timed out")

    def _done(self, sock: socket.socket | None, error: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_done(sock, error)

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._loop.remove_writer(self._sock)
            self._sock.close()
            self._sock = None

    def cancel(self) -> None:
        """Give up; ``on_done`` is not called."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_socket()


def _address(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except OSError:
        return None


def describe_os_error(exc: BaseException) -> str:
    """What went wrong, in words: an OSError's own text, else the exception's message or its name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
