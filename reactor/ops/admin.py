"""The admin socket: a Unix socket on the server's loop that takes the operator's commands (``admin_commands.py``).

The socket is the server's user's alone (mode 0600, bound under a umask that never lets it be anything
else), in a directory the operator chooses (``/run/reactor-chat``: ``RuntimeDirectory=`` in the systemd
unit). A file left at the path by a server that died is replaced; one a live server listens on is refused
(``AdminSocketError``), as is a path that is not a socket at all. The server removes its socket when it
closes, if the file is still its own.

Each command calls the host through ``AdminHost``; the host carries it out on the chat (cluster mode: on
whatever node serves the user). Every action is logged with what was done and to whom (the fields
``action``, ``user``, ``reason`` for ``--log-format json``); a notice's text is not logged, its length is.
A connection carries one request and its answer; it has ``timeout`` seconds for both, its request at most
``MAX_REQUEST`` bytes, and at most ``max_connections`` are open at once. ``who``'s rows go out
``ROWS_PER_TURN`` a loop turn, paced by the reader (``Stream.when_drained``): 10,000 users cost no turn
more than a few milliseconds.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from ..framing import JsonLines, encode
from ..loop import EventLoop, TimerHandle
from ..stream import Listener, Stream, describe_os_error
from .admin_commands import STATS_COLUMNS, USAGE_STATUS, WHO_COLUMNS, BadArguments, parse, read_request

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024   # bytes of one request line (a notice of 4,096 characters, escaped, fits)
MAX_CONNECTIONS = 8
TIMEOUT = 30.0            # seconds a connection has for its request and its answer
ROWS_PER_TURN = 500       # rows of a table written per loop turn (~1 ms of encoding)
BACKLOG = 16


class WhoRow(NamedTuple):
    """One user online, as ``who`` lists them (None: not known here, as for a user of another cluster node)."""

    user: str
    address: str | None   # the address their connection came from
    since: float | None   # when they logged in: Unix time (seconds)
    idle: float | None    # seconds since they last sent anything
    tls: bool | None      # whether their connection speaks TLS
    node: str | None      # the node serving them (cluster mode); None on a single server


class AdminHost(Protocol):
    """What a host does for the admin socket. Each is called on the loop, and must not block it."""

    def who(self) -> Iterable[WhoRow]:
        """The users online (cluster mode: on every node), taken a slice a turn: iterate a snapshot, not a live
        dict, since users come and go between the slices."""

    def kick(self, user: str, reason: str | None) -> bool:
        """End ``user``'s session: their client shows ``Error. You were disconnected by the operator[: REASON]``.
        False if they are not online (cluster mode: on any node)."""

    def lock(self, user: str, seconds: float) -> bool:
        """Refuse ``user``'s logins for ``seconds`` (ending their session if online). False: no such account."""

    def unlock(self, user: str) -> bool:
        """Lift ``user``'s lock, the operator's or the wrong passwords'. False if they were not locked."""

    def notice(self, text: str) -> int:
        """Every user online sees ``[server] TEXT``; how many users that is."""

    def reload(self, done: Callable[[str | None], object]) -> None:
        """Read the accounts file again, as SIGHUP does (a slice a loop turn); then ``done(why)``: None if done,
        else why not (the old accounts stay)."""

    def stats(self) -> Iterable[tuple[str, float]]:
        """The metrics' figures: (series, value) rows (``Registry.samples``)."""


class AdminSocketError(Exception):
    """The admin socket cannot be opened; the message says why, for a person."""


class CommandCounts(Protocol):
    def add(self, value: str, n: int = 1) -> None: ...


def bind_admin_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600; a stale one replaced, a live one refused."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise AdminSocketError(f"Cannot open the admin socket {path}: {describe_os_error(exc)}") from None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise AdminSocketError(f"Cannot open the admin socket {path}: the path exists and is not a socket "
                                   "(not replaced)")
        if _listened_on(path):
            raise AdminSocketError(f"Cannot open the admin socket {path}: another server is listening on it")
        log.info("admin socket %s: replacing the one a server that is gone left behind", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise AdminSocketError(f"Cannot replace the stale admin socket {path}: {describe_os_error(exc)}") \
                from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)   # the socket is born 0600: never a moment when others could connect
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise AdminSocketError(f"Cannot open the admin socket {path}: {describe_os_error(exc)}") from None
    finally:
        os.umask(umask)
    return sock


def _listened_on(path: str) -> bool:
    """Whether a process accepts connections on the Unix socket at ``path`` (a full backlog counts as yes)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
        return True
    except (BlockingIOError, InterruptedError):
        return True
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise AdminSocketError(f"Cannot tell whether a server listens on {path}: {describe_os_error(exc)}") \
            from None
    finally:
        probe.close()


class AdminConnection:
    """One operator's connection: its deadline, and whether its request came."""

    __slots__ = ("stream", "deadline", "asked")

    def __init__(self, stream: Stream[JsonLines], deadline: TimerHandle) -> None:
        self.stream = stream
        self.deadline = deadline
        self.asked = False


class AdminServer:
    """Serves the admin commands on ``path`` for ``host``; ``counts`` (if given) counts each command by name."""

    def __init__(self, loop: EventLoop, path: str, host: AdminHost, counts: CommandCounts | None = None, *,
                 max_connections: int = MAX_CONNECTIONS, timeout: float = TIMEOUT) -> None:
        self._loop = loop
        self.path = path
        self._host = host
        self._counts = counts
        self._max_connections = max_connections
        self._timeout = timeout
        sock = bind_admin_socket(path)
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)
        self._listener = Listener(loop, sock, self._accept)
        self._connections: dict[Stream[JsonLines], AdminConnection] = {}

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        """Remove the socket file if it is still ours, stop listening, drop the connections.

        (The file goes first: while it is listened on, no other server replaces it, so it is ours.)"""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass
        self._listener.close()
        for connection in list(self._connections.values()):
            connection.stream.abort()

    def _accept(self, sock: socket.socket) -> None:
        if len(self._connections) >= self._max_connections:
            log.warning("admin socket: a connection over the %d allowed, closed", self._max_connections)
            sock.close()
            return
        try:
            stream = Stream(self._loop, sock, JsonLines(self, max_frame=MAX_REQUEST))
        except OSError as exc:
            log.debug("admin socket: accept: %s", describe_os_error(exc))
            sock.close()
            return
        deadline = self._loop.call_later(self._timeout, self._timed_out, stream)
        self._connections[stream] = AdminConnection(stream, deadline)

    def _timed_out(self, stream: Stream[JsonLines]) -> None:
        log.warning("admin socket: a connection took over %gs for its request and answer; closed", self._timeout)
        stream.abort()

    # -- the stream's handler ------------------------------------------

    def frame_received(self, stream: Stream[JsonLines], frame: dict[str, Any]) -> None:
        connection = self._connections.get(stream)
        if connection is None or connection.asked:   # one request a connection: the rest is ignored
            return
        connection.asked = True
        try:
            name, words = read_request(frame)
            command, args = parse(name, words)
        except BadArguments as exc:
            self._fail(stream, f"Error. {exc}", USAGE_STATUS)
            return
        if self._counts is not None:
            self._counts.add(command.name)
        try:
            getattr(self, f"_{command.name}")(stream, *args)
        except Exception as exc:
            log.exception("admin: %s failed", command.name)
            self._fail(stream, f"Error. The server could not {command.name}: {exc}", 1)

    def frame_error(self, stream: Stream[JsonLines], detail: str) -> None:
        connection = self._connections.get(stream)
        if connection is not None and not connection.asked:
            connection.asked = True
            self._fail(stream, f"Error. Not a request ({detail}): one JSON object a line", USAGE_STATUS)

    def connection_lost(self, stream: Stream[JsonLines], reason: str | None) -> None:
        connection = self._connections.pop(stream, None)
        if connection is not None:
            connection.deadline.cancel()

    # -- answers -------------------------------------------------------

    def _done(self, stream: Stream[JsonLines], text: str) -> None:
        stream.write(encode({"ok": text}))
        stream.close()

    def _fail(self, stream: Stream[JsonLines], text: str, status: int) -> None:
        stream.write(encode({"error": text, "status": status}))
        stream.close()

    def _table(self, stream: Stream[JsonLines], columns: tuple[str, ...], rows: Iterable[Iterable[Any]],
               ending: str) -> None:
        """The columns, then the rows ``ROWS_PER_TURN`` a turn as the reader takes them, then ``ending``
        (``{n}`` in it: how many rows)."""
        stream.write(encode({"columns": list(columns)}))
        self._rows(stream, iter(rows), 0, ending)

    def _rows(self, stream: Stream[JsonLines], rows: Iterator[Iterable[Any]], sent: int, ending: str) -> None:
        if stream.closed:
            return
        chunk = []
        try:
            for row in rows:
                chunk.append(encode({"row": list(row)}))
                if len(chunk) == ROWS_PER_TURN:
                    break
            stream.write(b"".join(chunk))
        except Exception as exc:
            log.exception("admin: listing failed")
            self._fail(stream, f"Error. The server could not list them all: {exc}", 1)
            return
        sent += len(chunk)
        if len(chunk) == ROWS_PER_TURN:
            stream.when_drained(lambda s: self._rows(s, rows, sent, ending))
        else:
            self._done(stream, ending.format(n=sent))

    # -- the commands --------------------------------------------------

    def _who(self, stream: Stream[JsonLines]) -> None:
        log.info("admin: who", extra={"action": "who"})
        self._table(stream, WHO_COLUMNS, self._host.who(), "{n} users online.")

    def _stats(self, stream: Stream[JsonLines]) -> None:
        log.info("admin: stats", extra={"action": "stats"})
        self._table(stream, STATS_COLUMNS, self._host.stats(), "{n} figures.")

    def _kick(self, stream: Stream[JsonLines], user: str, reason: str | None) -> None:
        if self._host.kick(user, reason):
            log.info("admin: kicked %s%s", user, f" ({reason})" if reason else "",
                     extra={"action": "kick", "user": user, "reason": reason})
            self._done(stream, f"Kicked {user}.")
        else:
            log.info("admin: kick %s: not online", user, extra={"action": "kick", "user": user})
            self._fail(stream, f"Error. {user} is not online.", 1)

    def _lock(self, stream: Stream[JsonLines], user: str, seconds: float) -> None:
        if self._host.lock(user, seconds):
            log.info("admin: locked %s for %gs", user, seconds,
                     extra={"action": "lock", "user": user, "seconds": seconds})
            self._done(stream, f"Locked {user} for {seconds:g} seconds.")
        else:
            log.info("admin: lock %s: no such account", user, extra={"action": "lock", "user": user})
            self._fail(stream, f"Error. There is no account {user}.", 1)

    def _unlock(self, stream: Stream[JsonLines], user: str) -> None:
        if self._host.unlock(user):
            log.info("admin: unlocked %s", user, extra={"action": "unlock", "user": user})
            self._done(stream, f"Unlocked {user}.")
        else:
            log.info("admin: unlock %s: not locked", user, extra={"action": "unlock", "user": user})
            self._fail(stream, f"Error. {user} is not locked.", 1)

    def _notice(self, stream: Stream[JsonLines], text: str) -> None:
        reached = self._host.notice(text)
        log.info("admin: notice of %d characters to %d users", len(text), reached,
                 extra={"action": "notice", "users": reached})
        self._done(stream, f"Notice sent to {reached} users.")

    def _reload(self, stream: Stream[JsonLines]) -> None:
        self._host.reload(lambda why: self._reloaded(stream, why))

    def _reloaded(self, stream: Stream[JsonLines], why: str | None) -> None:
        """The reload asked on ``stream`` has ended (the operator may have hung up meanwhile)."""
        if why is None:
            log.info("admin: reloaded the accounts", extra={"action": "reload"})
            self._done(stream, "Reloaded the accounts.")
        else:
            log.info("admin: reload failed, the old accounts stay: %s", why, extra={"action": "reload",
                                                                                     "reason": why})
            self._fail(stream, f"Error. Not reloaded, the old accounts stay: {why}", 1)
