"""A Valkey/Redis connection on the event loop: pipelined RESP commands, reconnecting.

Cluster mode only (it needs ``hiredis``, the ``cluster`` extra); the default server never imports it.

``Engine.call`` packs a command with ``hiredis.pack_command`` into the output
buffer of a ``Stream`` (so a turn's commands leave in one ``send``), and the
replies, parsed by a ``hiredis.Reader`` (the stream's protocol object, as
``JsonLines`` is a chat connection's), go to the callbacks strictly in command
order. A reply is what hiredis gives: ``str`` (UTF-8, undecodable bytes replaced),
``int``, ``list``, ``None``, or an ``EngineError`` for an error reply, handed over
as a value. A callback is never called from inside ``call``/``script``: when the
engine is not up it gets ``EngineUnavailable`` from a fresh loop callback.

Up means connected and answering: after the connect, a ``PING`` must be answered
``PONG`` within ``connect_timeout`` (an engine still loading its data answers an
error, and is tried again later). The connection goes down on EOF, a socket
error, a protocol error, more than ``max_output`` bytes unsent (the engine does
not read), or the oldest command waiting longer than ``reply_timeout`` for its
reply (a stopped engine). Then every waiting callback gets ``EngineUnavailable``
in order, ``on_down(reason)`` is called once, and reconnecting starts: the
delay doubles from ``backoff[0]`` to ``backoff[1]`` and is reset once up, when
``on_up()`` is called. A command whose connection went down may or may not
have been carried out. A callback that raises is logged; the others still run.

``script`` sends a script's first use on a connection as ``EVAL`` (which also
loads it) and later uses as ``EVALSHA``; an ``EVALSHA`` answered ``NOSCRIPT``
(after a ``SCRIPT FLUSH``) is sent again as ``EVAL``, and the callbacks of the
commands behind it wait, so the order of replies holds. The order of execution
does not: the re-sent script runs after the commands pipelined behind it.

Not for ``SUBSCRIBE`` (a reply nobody waits for fails the connection). A blocking
command (``XREAD BLOCK``) holds up the commands behind it: give it an ``Engine``
of its own, with ``reply_timeout`` longer than the block.
"""
from __future__ import annotations

import hashlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from ..loop import EventLoop, TimerHandle
from ..ops.metrics import Observer
from ..stream import Connector, Stream

log = logging.getLogger(__name__)

MAX_OUTPUT = 8 << 20   # bytes of commands unsent before the engine counts as not reading

Reply = Any   # str, int, list, None, or an EngineError instance
Arg = str | bytes | int | float


class EngineError(Exception):
    """An error reply (``NOSCRIPT ...``, ``ERR ...``): handed to callbacks as a value, never raised into the loop."""


class EngineUnavailable(EngineError):
    """The connection went down (or never came up) before the reply."""


class Script:
    """A Lua script, sent by its SHA1 once the engine knows it."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Command:
    """One command waiting for its reply (and then for the callbacks ahead of it)."""

    __slots__ = ("reply_to", "sent", "script", "reply", "done")

    def __init__(self, reply_to: Callable[[Reply], Any] | None, sent: float,
                 script: tuple[Script, Sequence[str], Sequence[Arg]] | None = None) -> None:
        self.reply_to = reply_to
        self.sent = sent          # loop time it was written
        self.script = script      # an EVALSHA's script and arguments: what to send again on NOSCRIPT
        self.reply: Reply = None
        self.done = False


class _Replies:
    """The protocol of one engine connection: the bytes read go to a hiredis ``Reader``, each whole reply to
    ``on_reply``; the connection's loss to ``on_lost``."""

    __slots__ = ("_reader", "_on_reply", "_on_lost")

    def __init__(self, on_reply: Callable[[Reply], Any],
                 on_lost: Callable[[Stream[_Replies], str | None], Any]) -> None:
        self._reader = hiredis.Reader(replyError=EngineError, encoding="utf-8", errors="replace",
                                      notEnoughData=_NOT_YET)
        self._on_reply = on_reply
        self._on_lost = on_lost

    def data_received(self, stream: Stream[_Replies], data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while not stream.closed:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                stream.abort(f"protocol error: {exc}")
                return
            if reply is _NOT_YET:
                return
            self._on_reply(reply)

    def eof_received(self, stream: Stream[_Replies]) -> None:
        stream.close("the engine closed the connection")

    def connection_lost(self, stream: Stream[_Replies], reason: str | None) -> None:
        self._on_lost(stream, reason)


_NOT_YET = object()   # what the reader gives while no reply is whole


class Engine:
    """One connection to a Valkey/Redis engine at ``host:port``, kept up from ``start()`` until ``close()``.

    ``sends`` counts the socket sends of commands (for tests and figures); ``round_trips`` (if given) is told
    each command's round trip, from its write to its reply, in seconds.
    """

    def __init__(self, loop: EventLoop, host: str, port: int, *, name: str = "engine",
                 on_up: Callable[[], None] | None = None, on_down: Callable[[str], None] | None = None,
                 connect_timeout: float = 2.0, reply_timeout: float | None = 5.0,
                 backoff: tuple[float, float] = (0.05, 2.0), max_output: int = MAX_OUTPUT,
                 round_trips: Observer | None = None) -> None:
        self._loop = loop
        self._round_trips = round_trips
        self._host = host
        self._port = port
        self.name = name
        self._on_up = on_up
        self._on_down = on_down
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._backoff = backoff
        self._delay = backoff[0]
        self._max_output = max_output
        self._stream: Stream[_Replies] | None = None
        self._connector: Connector | None = None
        self._timer: TimerHandle | None = None       # the pending reconnect, handshake deadline or reply deadline
        self._up = False
        self._started = False
        self._closed = False
        self._failures = 0                  # connection attempts failed in a row (the first of a streak is logged)
        self._queue: deque[_Command] = deque()      # in call order: whose callbacks are still due
        self._waiting: deque[_Command] = deque()    # in wire order: whose replies are still due
        self._loaded: set[str] = set()      # the SHAs of the scripts sent by EVAL on this connection
        self._earlier_sends = 0             # the sends of the connections before this one

    @property
    def up(self) -> bool:
        """Connected, and the engine answered."""
        return self._up

    @property
    def sends(self) -> int:
        """The socket sends of commands so far, on every connection."""
        current = self._stream.sends if self._stream is not None else None
        return self._earlier_sends + (current or 0)

    @property
    def pending(self) -> int:
        """Commands written and not answered yet."""
        return len(self._waiting)

    @property
    def failed_attempts(self) -> int:
        """Connection attempts that failed in a row (0 once connected)."""
        return self._failures

    def start(self) -> None:
        """Connect, and reconnect whenever the connection is lost, until ``close()``."""
        if self._started or self._closed:
            return
        self._started = True
        self._connect()

    def call(self, *args: Arg, reply: Callable[[Reply], Any] | None = None) -> None:
        """Send one command; ``reply(answer)`` gets its reply, later, in command order."""
        if self._up:
            self._send(_pack(args), _Command(reply, self._loop.time()))
        else:
            self._unavailable(reply)

    def script(self, script: Script, keys: Sequence[str], args: Sequence[Arg],
               reply: Callable[[Reply], Any] | None = None) -> None:
        """Run ``script`` (``EVALSHA``, or ``EVAL`` where the engine does not know it); ``reply`` as for ``call``."""
        if not self._up:
            self._unavailable(reply)
            return
        now = self._loop.time()
        if script.sha in self._loaded:
            packed = _pack(("EVALSHA", script.sha, len(keys), *keys, *args))
            self._send(packed, _Command(reply, now, (script, keys, args)))
        else:
            self._loaded.add(script.sha)
            self._send(_pack_eval(script, keys, args), _Command(reply, now))

    def close(self) -> None:
        """Stop: send what is written, then close; the callbacks still due get ``EngineUnavailable`` soon."""
        if self._closed:
            return
        self._closed = True
        self._up = False
        if self._connector is not None:
            self._connector.cancel()
            self._connector = None
        self._cancel_timer()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
            self._earlier_sends += stream.sends or 0
        queue, self._queue = self._queue, deque()
        self._waiting = deque()
        if queue:
            self._loop.call_soon(self._fail_all, queue, f"{self.name} closed")

    def _unavailable(self, reply: Callable[[Reply], Any] | None) -> None:
        """A command while the engine is not up: ``reply`` is told so from a fresh loop callback."""
        if reply is not None:
            self._loop.call_soon(_call, reply, EngineUnavailable(f"{self.name} is not up"))

    # -- sending and receiving ----------------------------------------

    def _send(self, packed: bytes, command: _Command) -> None:
        assert self._stream is not None
        self._stream.write(packed)
        self._queue.append(command)
        self._waiting.append(command)
        if self._timer is None and self._reply_timeout is not None:
            self._timer = self._loop.call_at(command.sent + self._reply_timeout, self._check_replies)

    def _received(self, reply: Reply) -> None:
        try:
            command = self._waiting.popleft()
        except IndexError:
            self._lose("a reply to no command")
            return
        if command.script is not None:
            if isinstance(reply, EngineError) and str(reply).startswith("NOSCRIPT"):
                script, keys, args = command.script
                command.script = None
                command.sent = self._loop.time()
                assert self._stream is not None
                self._stream.write(_pack_eval(script, keys, args))
                self._waiting.append(command)
                return
            command.script = None
        if self._round_trips is not None:
            self._round_trips.observe(self._loop.time() - command.sent)
        command.reply = reply
        command.done = True
        queue = self._queue   # (a callback that closes the engine, or loses it, empties this one)
        while queue and queue[0].done:
            done = queue.popleft()
            if done.reply_to is not None:
                _call(done.reply_to, done.reply)

    def _check_replies(self) -> None:
        """The reply deadline: down if the oldest command waited too long, else wait for the next oldest."""
        self._timer = None
        if not self._waiting or self._reply_timeout is None:
            return
        due = self._waiting[0].sent + self._reply_timeout
        if due <= self._loop.time():
            self._lose(f"no reply within {self._reply_timeout:g}s")
        else:
            self._timer = self._loop.call_at(due, self._check_replies)

    # -- connecting ---------------------------------------------------

    def _connect(self) -> None:
        self._timer = None
        self._connector = Connector(self._loop, self._host, self._port, self._connected,
                                    timeout=self._connect_timeout)

    def _connected(self, sock: socket.socket | None, error: str | None) -> None:
        self._connector = None
        if sock is None:
            self._retry(f"cannot connect: {error}")
            return
        self._stream = Stream(self._loop, sock, _Replies(self._received, self._stream_lost),
                              max_output=self._max_output, count_sends=True)
        self._loaded.clear()
        self._send(_pack(("PING",)), _Command(self._answered, self._loop.time()))
        self._cancel_timer()   # the handshake's deadline in place of the reply deadline
        self._timer = self._loop.call_later(self._connect_timeout, self._lose, "no answer to PING")

    def _answered(self, reply: Reply) -> None:
        if isinstance(reply, EngineUnavailable) or self._stream is None:
            return   # lost meanwhile: _lose has taken care of it
        if reply != "PONG":
            self._lose(f"not ready: {reply}")
            return
        self._cancel_timer()
        self._up = True
        self._delay = self._backoff[0]
        if self._failures:
            log.warning("%s: up again at %s:%d", self.name, self._host, self._port)
        self._failures = 0
        if self._on_up is not None:
            _call(self._on_up)

    def _stream_lost(self, stream: Stream[_Replies], reason: str | None) -> None:
        if stream is self._stream:
            self._lose(reason or "closed")

    def _lose(self, reason: str) -> None:
        """The connection is gone: fail what waits, in order, say so once, and try again later."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._cancel_timer()
        stream.abort()
        self._earlier_sends += stream.sends or 0
        was_up, self._up = self._up, False
        queue, self._queue = self._queue, deque()
        self._waiting = deque()
        self._fail_all(queue, f"{self.name}: {reason}")
        if was_up:
            log.warning("%s: down: %s", self.name, reason)
            if self._on_down is not None:
                _call(self._on_down, reason)
            self._delay = self._backoff[0]
        self._retry(reason)

    def _retry(self, reason: str) -> None:
        if self._closed:
            return
        self._failures += 1
        if self._failures == 1:
            log.warning("%s: %s:%d: %s; retrying", self.name, self._host, self._port, reason)
        else:
            log.debug("%s: %s:%d: %s", self.name, self._host, self._port, reason)
        self._timer = self._loop.call_later(self._delay, self._connect)
        self._delay = min(self._delay * 2, self._backoff[1])

    def _fail_all(self, queue: deque[_Command], reason: str) -> None:
        """Each callback still due, in order: its reply if it came (held behind a re-sent script), else the loss."""
        while queue:
            command = queue.popleft()
            if command.reply_to is not None:
                _call(command.reply_to, command.reply if command.done else EngineUnavailable(reason))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _pack(args: tuple[Arg, ...]) -> bytes:
    """``hiredis.pack_command`` (whose stub wants a 1-tuple and returns nothing typed)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def _pack_eval(script: Script, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    return _pack(("EVAL", script.source, len(keys), *keys, *args))


def _call(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("engine callback %r raised", callback)
