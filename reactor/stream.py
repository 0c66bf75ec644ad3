"""Non-blocking TCP on the event loop: framed streams, listeners and outgoing connects.

A ``Stream`` owns one connected socket. Reads are split into frames and handed
to its handler; writes go to an output buffer flushed once per loop iteration
(so many frames to one peer cost one ``send``), and the loop watches for
writability only while bytes are pending. An owner with much to send paces
itself with ``when_drained``: it writes while fewer than ``high_water`` bytes
wait and, beyond that, waits until flushing brings them down to ``low_water``.
A peer that stops reading is cut off once its buffer passes ``max_output``
(what its owner sends it anyway: live traffic); a line longer than
``max_frame`` ends the stream. ``set_limits`` changes these and ``read_size``
(how much one ``recv`` takes) on a live stream: the server keeps a
connection's limits small until it logs in.

Fair shares: one readable event handles at most ``frames_per_turn`` frames.
The lines read but not yet handled wait in the stream (at most one
``read_size`` of them), the socket is not read meanwhile, and the rest are
handled from the loop's ready queue, ``frames_per_turn`` a turn, so a client
that streams frames delays the others by one turn's work, not a whole read's.
Nothing a peer does raises into the loop:
failures reach the handler's ``connection_lost`` exactly once, always from a
fresh loop callback. A handler that raises on one frame is logged, and the
frames after it are still handled.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .framing import MAX_FRAME, BadFrame, FrameDecoder, decode, encode
from .loop import EventLoop, TimerHandle

log = logging.getLogger(__name__)

MAX_OUTPUT = 1 << 20   # bytes buffered for a peer before it counts as not reading
HIGH_WATER = 64 * 1024  # bytes buffered beyond which a paced owner waits (see ``when_drained``)
LOW_WATER = 16 * 1024   # ... until flushing brings them down to this
RECV_SIZE = 64 * 1024   # bytes one recv takes at most (``read_size``)
FRAMES_PER_TURN = 32    # frames handled per readable event (or ready-queue turn) before the others' turn
CLOSE_TIMEOUT = 5.0     # seconds a closing stream may take to flush before it is aborted


class StreamHandler(Protocol):
    def frame_received(self, stream: Stream, frame: dict[str, Any]) -> None: ...
    def frame_error(self, stream: Stream, detail: str) -> None: ...
    def connection_lost(self, stream: Stream, reason: str | None) -> None: ...


class _Flushes:
    """The streams of one loop with output to send this turn, flushed together by one ready callback.

    One loop callback a turn in place of one per stream written to (a Handle made, queued and run for
    each): 385 -> 92 ns per stream written to, about 3% of a relayed message's ~9 us.
    """

    __slots__ = ("_loop", "_streams", "__weakref__")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._streams: list[Stream] = []

    def add(self, stream: Stream) -> None:
        if not self._streams:
            self._loop.call_soon(self._run)
        self._streams.append(stream)

    def _run(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream._flush()
            except Exception:   # (as the loop does for each callback: one stream's bug does not keep the others')
                log.exception("stream %s: flush failed", stream.peer_address)


_flushes: weakref.WeakKeyDictionary[EventLoop, _Flushes] = weakref.WeakKeyDictionary()   # each loop's


def _flushes_of(loop: EventLoop) -> _Flushes:
    flushes = _flushes.get(loop)
    if flushes is None:
        flushes = _flushes[loop] = _Flushes(loop)
    return flushes


class Stream:
    """One connected TCP socket carrying JSON-line frames in both directions.

    ``tag`` is the owner's to set (a connection id, a user name). ``reason`` in
    ``connection_lost`` is ``None`` for a close the owner asked for, else why.
    """

    __slots__ = ("_loop", "_flushes", "_sock", "_handler", "_decoder", "_out", "_max_output", "_read_size", "_per_turn",
                 "_lines", "_next_line", "_high_water", "_low_water", "_on_drained",
                 "_flush_pending", "_writing", "_closing", "_closed", "_close_timer", "_reason",
                 "tag", "peer_address", "local_address")

    def __init__(self, loop: EventLoop, sock: socket.socket, handler: StreamHandler, *,
                 max_frame: int = MAX_FRAME, max_output: int = MAX_OUTPUT,
                 high_water: int = HIGH_WATER, low_water: int = LOW_WATER,
                 read_size: int = RECV_SIZE, frames_per_turn: int = FRAMES_PER_TURN) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop = loop
        self._flushes = _flushes_of(loop)
        self._sock = sock
        self._handler = handler
        self._decoder = FrameDecoder(max_frame)
        self._out: bytes | bytearray = b""   # unsent output: the bytes written, or a buffer of our own (``write``)
        self._max_output = max_output
        self._read_size = read_size
        self._per_turn = frames_per_turn
        self._lines: list[bytes | BadFrame] = []    # read, not yet handled: raw lines, maybe a fatal BadFrame last
        self._next_line = 0       # the index in _lines of the next to handle; above 0: the socket is not read
        self._high_water = high_water
        self._low_water = low_water
        self._on_drained: Callable[[Stream], Any] | None = None
        self._flush_pending = False
        self._writing = False
        self._closing = False
        self._closed = False
        self._close_timer: TimerHandle | None = None
        self._reason: str | None = None  # why it is closing, if the owner did not ask
        self.tag: Any = None
        self.peer_address = _address(sock.getpeername)
        self.local_address = _address(sock.getsockname)
        loop.add_reader(sock, self._on_readable)

    @property
    def closed(self) -> bool:
        """True once ``close()``/``abort()`` was called or the peer is gone."""
        return self._closing or self._closed

    def set_limits(self, *, max_frame: int, max_output: int, read_size: int) -> None:
        """Change the longest line taken, the output a peer may leave unread, and the bytes one read takes."""
        self._decoder.max_frame = max_frame
        self._max_output = max_output
        self._read_size = read_size

    @property
    def buffered(self) -> int:
        """Bytes waiting to be sent."""
        return len(self._out)

    # -- writing -------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame."""
        self.write(encode(frame))

    def write(self, data: bytes) -> None:
        """Queue already-encoded frames; they go out in order."""
        if self._closing:  # (also set once closed)
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

    def _append(self, data: bytes) -> None:
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
        """Flush in this turn's ready phase (with the other streams written to: ``_Flushes``)."""
        self._flush_pending = True
        self._flushes.add(self)

    def when_drained(self, callback: Callable[[Stream], Any]) -> None:
        """Call ``callback(self)`` once there is room for more output: soon if fewer than
        ``high_water`` bytes wait, else once flushing has brought them down to ``low_water``.

        Always from a fresh loop callback, and never once the stream is closing.
        One request at a time: a second call before the first was answered replaces it.
        """
        if self._closing:
            return
        if self.buffered < self._high_water:
            self._on_drained = None
            self._loop.call_soon(self._drained, callback)
        else:
            self._on_drained = callback

    def _drained(self, callback: Callable[[Stream], Any]) -> None:
        if not self._closing:
            callback(self)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._closed or not self._out:
            return
        out = self._out
        try:
            sent = self._sock.send(out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fail(describe_os_error(exc))
            return
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
            if self._closing:  # all said: release the socket once this turn's other sends are out
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
            self._received(data)
        else:  # the peer is done sending; it may still read our replies
            self._close(self._eof_reason())

    def _received(self, data: bytes) -> None:
        """Bytes read from the socket: split them into lines and handle what this turn allows."""
        self._lines = self._decoder.split(data)
        self._handle_lines()

    def _eof_reason(self) -> str:
        """Why the stream closes when the peer is done sending."""
        return "peer closed the connection"

    def _handle_lines(self) -> None:
        """Handle up to ``frames_per_turn`` of the lines read; leave the rest for the next turn."""
        handler = self._handler
        received = handler.frame_received
        lines = self._lines
        start = self._next_line
        end = min(len(lines), start + self._per_turn)
        for line in lines if start == 0 and end == len(lines) else lines[start:end]:
            if self._closing:   # (also set once closed)
                return
            item = decode(line) if isinstance(line, bytes) else line
            if isinstance(item, BadFrame):
                try:
                    handler.frame_error(self, item.detail)
                except Exception:  # a bug in the owner: the frames after this one are still handled
                    log.exception("stream %s: handler failed on a frame; going on with the next", self.peer_address)
                if item.fatal:
                    self._close(item.detail)
                continue
            try:
                received(self, item)
            except Exception:
                log.exception("stream %s: handler failed on a frame; going on with the next", self.peer_address)
        if self._closing:
            return
        if end < len(lines):
            if start == 0:   # lines left for the next turns: read no more until they are handled
                self._loop.remove_reader(self._sock)
            self._next_line = end
            self._loop.call_soon(self._next_turn)
            return
        self._lines = []
        if start:
            self._next_line = 0
            self._loop.add_reader(self._sock, self._on_readable)

    def _next_turn(self) -> None:
        if not self._closing:   # (also set once closed)
            self._handle_lines()

    # -- closing -------------------------------------------------------

    def close(self) -> None:
        """Stop reading, send what is buffered, then close (abort after CLOSE_TIMEOUT)."""
        self._close(None)

    def _close(self, reason: str | None) -> None:
        if self._closing or self._closed:
            return
        self._closing = True
        self._reason = reason
        self._loop.remove_reader(self._sock)
        if not self._out:
            self._finish(reason)
            return
        if not self._writing:
            self._flush()  # the last words go out now, not after the rest of this iteration's work
        if self._out:      # the peer is slow to read: the writer callback finishes the close
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self._fail, "close timed out")

    def abort(self) -> None:
        """Close now, dropping unsent bytes, with a reset (SO_LINGER 0)."""
        if self._closed:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._finish(None)

    def _fail(self, reason: str) -> None:
        if not self._closed:
            log.debug("stream %s: %s", self.peer_address, reason)
            self._finish(reason)

    def _finish(self, reason: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._out = b""
        self._lines = []
        self._on_drained = None
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._loop.remove_reader(self._sock)
        self._loop.remove_writer(self._sock)
        self._sock.close()
        self._loop.call_soon(self._handler.connection_lost, self, reason)


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
