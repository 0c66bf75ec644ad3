"""The simulator's clients: the real ``ChatClient`` rules, each on one ``Link``, typed at by the simulation.

A ``SimClient`` is what ``reactor/client/host.py`` is to a real client, cut to
what the rules need: it reads the server's bytes (unless the simulation
stalls it), cuts them into frames, hands each to the rules, and carries out
their effects: frames to the server, lines shown, timers on the virtual
clock, and private chats over ``PeerWire`` (peer connections the simulation
makes between its clients). What it sees and sends goes past the ``Checks``
(``reactor/sim/checks.py``) on the way.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..client.rules import (
    CancelTimer,
    ChatClient,
    ClientEffect,
    ClosePeer,
    ConnectPeer,
    Exit,
    Listen,
    Prompt,
    SetTimer,
    ToPeer,
    ToServer,
)
from ..client.words import PASSWORD_PROMPT, USERNAME_PROMPT
from ..framing import MAX_FRAME, decode, encode
from .network import SERVER_ADDRESS, Link

if TYPE_CHECKING:
    from .checks import Checks

__all__ = ["SimClient", "PeerWire"]

READ_SIZE = 64 * 1024   # bytes the client takes from its link per read


class SimClient:
    """One client process: ``ChatClient`` over ``link``, as ``user`` would use it (``number``: its place)."""

    def __init__(self, number: int, user: str, link: Link, checks: Checks, wire: PeerWire, now: float) -> None:
        self.number = number
        self.user = user                  # the account its user means to log in as
        self.link = link
        self.checks = checks
        self.wire = wire
        self.logic = ChatClient()
        self.timers: dict[Any, float] = {}
        self.events: deque[Callable[[float], list[ClientEffect]]] = deque()   # peer events, in order
        self.buffer = bytearray()         # an unfinished line from the server
        self.stalled = False              # a fault: it reads nothing from the server
        self.exited: int | None = None    # its exit status, once it exited
        self.welcomed = False             # it has seen its welcome
        self.roster = False               # the answer to its first whoelse is in: it knows who is online
        self.bye: str | None = None       # the reason of the server's goodbye, if it came
        self.listen_port = 9000 + number
        self.claimed: str | None = None   # the user name it last sent
        self.sent_ack: set[int] = set()   # ids of stored messages it acknowledged
        self.asking = ""                  # what its next line is taken as: "username", "password", "command"
        self.apply(self.logic.start(now, SERVER_ADDRESS), now)

    def __repr__(self) -> str:
        return f"client {self.number} ({self.user})"

    @property
    def active(self) -> bool:
        """Logged in and neither leaving nor gone."""
        return self.exited is None and self.welcomed and self.logic.user is not None and self.bye is None

    # -- what the user does --------------------------------------------------------

    def type(self, line: str, now: float) -> None:
        if self.exited is None:
            self.apply(self.logic.line(line, now), now)

    def end_input(self, now: float) -> None:
        if self.exited is None:
            self.apply(self.logic.end_of_input(now), now)

    # -- the host's work -------------------------------------------------------------

    def pump(self, now: float) -> bool:
        """Take what has come (peer events, the server's bytes) and fire due timers; whether anything happened."""
        if self.exited is not None:
            return False
        busy = False
        while self.events and self.exited is None:
            self.apply(self.events.popleft()(now), now)
            busy = True
        if not self.stalled:
            while self.exited is None:
                data = self.link.client_recv(READ_SIZE)
                if data is None:
                    break
                busy = True
                if not data:
                    self.apply(self.logic.server_lost(now), now)
                    break
                self.received(data, now)
        for key, when in sorted(self.timers.items(), key=lambda item: item[1]):
            if when <= now and self.exited is None and self.timers.get(key) == when:
                del self.timers[key]
                self.apply(self.logic.timer_fired(key, now), now)
                busy = True
        return busy

    def received(self, data: bytes, now: float) -> None:
        self.buffer += data
        *lines, rest = self.buffer.split(b"\n")
        self.buffer = bytearray(rest)
        for line in lines:
            if self.exited is not None:
                return
            if len(line) > MAX_FRAME:
                self.checks.fail(f"{self} got a frame of {len(line)} bytes from the server, over the "
                                 f"{MAX_FRAME} it accepts: {bytes(line[:120])!r}...")
            if not line:
                continue
            frame = decode(bytes(line))
            if not isinstance(frame, dict):
                self.checks.fail(f"{self} got a line from the server that is no frame: {bytes(line[:120])!r}")
                continue
            self.checks.before_frame(self, frame)
            effects = self.logic.server_frame(frame, now)
            self.checks.after_frame(self, frame, effects)
            if frame.get("type") == "welcome":
                self.welcomed = True
                self.type("whoelse", now)   # so that its view of who is online is whole from here on
            elif frame.get("type") == "bye":
                self.bye = str(frame.get("reason"))
            self.apply(effects, now)

    def next_timer(self) -> float | None:
        return min(self.timers.values()) if self.timers and self.exited is None else None

    def apply(self, effects: list[ClientEffect], now: float) -> None:
        for effect in effects:
            if self.exited is not None:
                return
            kind = type(effect)
            if kind is ToServer:
                assert isinstance(effect, ToServer)
                self.to_server(effect.frame)
            elif kind is SetTimer:
                assert isinstance(effect, SetTimer)
                self.timers[effect.key] = effect.when
            elif kind is CancelTimer:
                assert isinstance(effect, CancelTimer)
                self.timers.pop(effect.key, None)
            elif kind is Listen:
                self.apply(self.logic.listening(self.link.address, self.listen_port, now), now)
            elif kind is Exit:
                assert isinstance(effect, Exit)
                self.exited = effect.status
                self.link.client_close()
                self.wire.gone(self)
            elif kind is ToPeer or kind is ConnectPeer or kind is ClosePeer:
                self.wire.carry_out(self, effect)
            elif kind is Prompt:
                assert isinstance(effect, Prompt)
                if effect.text == USERNAME_PROMPT:
                    self.asking = "username"
                elif effect.text == PASSWORD_PROMPT:
                    self.asking = "password"
                elif effect.remember:
                    self.asking = "command"

    def to_server(self, frame: dict[str, Any]) -> None:
        data = encode(frame)
        self.checks.to_server(self, frame, len(data) - 1)
        if frame.get("type") == "username":
            self.claimed = frame.get("username")
        elif frame.get("type") == "ack":
            self.sent_ack.update(frame.get("ids", ()))
        self.link.client_send(data)


class PeerWire:
    """Peer connections between the simulation's clients: each frame and each close reaches the other end in
    order, through its ``events``."""

    def __init__(self, find: Callable[[str, int], SimClient | None]) -> None:
        self._find = find                 # the client listening at (host, port), if any
        self._ends: dict[tuple[int, int], tuple[SimClient, int]] = {}   # (client, peer) -> the other end
        self._next = 1

    def carry_out(self, client: SimClient, effect: ClientEffect) -> None:
        if isinstance(effect, ConnectPeer):
            self._connect(client, effect)
        elif isinstance(effect, ToPeer):
            other = self._ends.get((client.number, effect.peer))
            if other is not None:
                encode(effect.frame)   # (it must be a frame that encodes)
                target, peer = other
                frame = effect.frame
                target.events.append(lambda now: target.logic.peer_frame(peer, frame, now))
        elif isinstance(effect, ClosePeer):
            self._close(client, effect.peer)

    def _connect(self, client: SimClient, effect: ConnectPeer) -> None:
        target = self._find(effect.host, effect.port)
        user = effect.user
        if target is None or target.exited is not None:
            client.events.append(lambda now: client.logic.peer_failed(user, "connection refused", now))
            return
        mine, theirs = self._next, self._next + 1
        self._next += 2
        self._ends[(client.number, mine)] = (target, theirs)
        self._ends[(target.number, theirs)] = (client, mine)
        target.events.append(lambda now: target.logic.peer_accepted(theirs, now))
        client.events.append(lambda now: client.logic.peer_connected(mine, user, now))

    def _close(self, client: SimClient, peer: int) -> None:
        other = self._ends.pop((client.number, peer), None)
        if other is None:
            return
        target, theirs = other
        if self._ends.pop((target.number, theirs), None) is not None and target.exited is None:
            target.events.append(lambda now: target.logic.peer_closed(theirs, now))

    def gone(self, client: SimClient) -> None:
        """``client`` exited: its peer connections close."""
        for _, peer in [key for key in self._ends if key[0] == client.number]:
            self._close(client, peer)
