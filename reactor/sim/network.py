"""The simulator's virtual network and clock: sockets that are byte queues, and a selector that never waits.

The server's real ``EventLoop`` runs on a ``SimSelector`` and a ``VirtualClock``:
``select`` answers at once with the sockets that are ready, in an order the
simulation draws (so frames from different connections reach the server in
any order, while each connection's bytes stay in order, as TCP keeps them),
and remembers the wait the loop asked for, so the simulation knows when the
loop's next timer is due and moves the clock there itself. Nothing waits and
nothing reads a real clock: a run is a function of its seed.

A ``Link`` is one TCP connection between a simulated client and the server:
a queue of bytes each way. What a side sends is *in flight* until the network
delivers it (``deliver``); a held link (a fault) delivers nothing until it is
let go. Bytes towards the client fit in ``capacity`` (the kernel's buffers):
a client that stops reading fills them, and the server's stream buffers the
rest, as on a real socket. ``drop`` resets the connection: what was in flight
is lost both ways, and either side's next call fails.
"""
from __future__ import annotations

import errno
import random
import selectors
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["VirtualClock", "Link", "SimSocket", "SimSelector", "Network", "SERVER_ADDRESS"]

SERVER_ADDRESS = ("10.0.0.1", 5000)
KERNEL_BUFFER = 64 * 1024   # bytes one direction holds in flight and unread (the client's receive side)


class VirtualClock:
    """The simulation's time: a number only the simulation moves (the loop's ``time``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class _Direction:
    """One direction of a link: bytes sent and not yet delivered, bytes delivered and not yet read."""

    __slots__ = ("flight", "arrived", "closed", "eof")

    def __init__(self) -> None:
        self.flight = bytearray()
        self.arrived = bytearray()
        self.closed = False   # the sender is done (its FIN follows what is in flight)
        self.eof = False      # ... and it has arrived


class Link:
    """One connection between a client at ``address`` and the server (see the module's docstring)."""

    def __init__(self, network: Network, address: str, port: int, capacity: int = KERNEL_BUFFER) -> None:
        self.address = address
        self.port = port
        self.capacity = capacity
        self.up = _Direction()     # client -> server
        self.down = _Direction()   # server -> client
        self.reset = False         # dropped: every later call on either side fails
        self.held = False          # a fault: nothing is delivered until it is let go
        self.server_socket = SimSocket(network, self)

    # -- the client's side ------------------------------------------------------

    def client_send(self, data: bytes) -> None:
        if not self.reset and not self.up.closed:
            self.up.flight += data

    def client_recv(self, size: int) -> bytes | None:
        """Up to ``size`` bytes the server sent; b"" at its end of stream; None if there is nothing yet."""
        down = self.down
        if down.arrived:
            data = bytes(down.arrived[:size])
            del down.arrived[:size]
            return data
        if down.eof or self.reset:
            return b""
        return None

    def client_close(self) -> None:
        self.up.closed = True

    def drop(self) -> None:
        """Reset the connection: what is in flight either way is lost."""
        self.reset = True
        for direction in (self.up, self.down):
            direction.flight.clear()
            direction.arrived.clear()

    # -- the network ----------------------------------------------------------

    def deliver(self) -> bool:
        """Move what is in flight to its receiver (unless held); whether anything moved."""
        if self.held or self.reset:
            return False
        moved = False
        for direction in (self.up, self.down):
            if direction.flight:
                direction.arrived += direction.flight
                direction.flight.clear()
                moved = True
            if direction.closed and not direction.eof:
                direction.eof = True
                moved = True
        return moved

    @property
    def in_flight(self) -> int:
        return len(self.up.flight) + len(self.down.flight)

    def room_down(self) -> int:
        """Bytes the server may still send before the client reads some."""
        return self.capacity - len(self.down.flight) - len(self.down.arrived)


class SimSocket:
    """The server's end of a ``Link``, as much of ``socket.socket`` as ``reactor.stream.Stream`` uses."""

    family = socket.AF_UNIX   # (so Stream sets no TCP options)

    def __init__(self, network: Network, link: Link) -> None:
        self.link = link
        self._fd = network.new_fd(self)
        self.closed = False
        self._linger = False

    def fileno(self) -> int:
        return self._fd

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if option == socket.SO_LINGER:
            self._linger = True

    def getpeername(self) -> tuple[str, int]:
        return (self.link.address, self.link.port)

    def getsockname(self) -> tuple[str, int]:
        return SERVER_ADDRESS

    def _check(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.link.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._check()
        room = self.link.room_down()
        if room <= 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        sent = min(room, len(data))
        self.link.down.flight += bytes(data[:sent])
        return sent

    def recv(self, size: int) -> bytes:
        self._check()
        up = self.link.up
        if up.arrived:
            data = bytes(up.arrived[:size])
            del up.arrived[:size]
            return data
        if up.eof:
            return b""
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._linger:
            self.link.drop()
        else:
            self.link.down.closed = True

    def readable(self) -> bool:
        return not self.closed and (bool(self.link.up.arrived) or self.link.up.eof or self.link.reset)

    def writable(self) -> bool:
        return not self.closed and (self.link.reset or self.link.room_down() > 0)


class SimSelector(selectors.BaseSelector):
    """A selector over ``SimSocket``s that never waits: ``select`` says what is ready now, in the order
    ``rng`` draws, and keeps the wait the loop asked for in ``timeout`` (None: no timer)."""

    def __init__(self, network: Network, rng: random.Random) -> None:
        self._network = network
        self._rng = rng
        self._keys: dict[int, selectors.SelectorKey] = {}
        self.timeout: float | None = None
        self.returned = 0   # how many events the last select gave

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeout = timeout
        ready = []
        sockets = self._network.sockets
        for fd, key in self._keys.items():
            sock = sockets.get(fd)
            if sock is None:
                continue
            mask = 0
            if key.events & selectors.EVENT_READ and sock.readable():
                mask |= selectors.EVENT_READ
            if key.events & selectors.EVENT_WRITE and sock.writable():
                mask |= selectors.EVENT_WRITE
            if mask:
                ready.append((key, mask))
        if len(ready) > 1:
            self._rng.shuffle(ready)   # the order the connections' bytes reach the server in
        self.returned = len(ready)
        return ready

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return dict(self._keys)

    def close(self) -> None:
        self._keys.clear()


class Network:
    """Every socket of the simulation, by file number."""

    def __init__(self) -> None:
        self.sockets: dict[int, SimSocket] = {}
        self._next_fd = 1000

    def new_fd(self, sock: SimSocket) -> int:
        self._next_fd += 1
        self.sockets[self._next_fd] = sock
        return self._next_fd
