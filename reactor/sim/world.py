"""The simulated world: the real server (rules, host, loop, streams, framing) on the virtual network, its store,
its password checker, and the clients; stepped and settled by the simulation.

Each server node is the product's own ``ServerHost`` over ``ChatServer`` (or a
cluster's ``ClusterChatServer``, ``reactor/sim/cluster.py``) on a real
``EventLoop`` whose selector and clock are the simulation's
(``reactor/sim/network.py``). ``SimServerHost`` changes only what reaches
outside the process: connections come from ``Link``s, and hashed passwords
are checked by ``SimChecker`` (a verdict after ``CHECK_TIME``, or none while
the checker is down) rather than by helper processes. The store is
``SimStore``: a transactional store in memory that a fault makes refuse
messages (``full``) or every change (``broken``).

``settle`` runs everything that is ready (bytes delivered, clients reading,
the loops' turns) until nothing is; ``advance`` moves the clock to each due
timer in turn, settling at each. The faults are the world's to set:
``Link.drop``/``held``, ``SimClient.stalled``, the store's mode, the checker
down, the cluster's engine stalled.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterable
from typing import Any

from ..loop import EventLoop, Handle
from ..server.effects import CheckPassword, KeepMessage, StoreChange
from ..server.host import ServerHost
from ..server.passwords import hash_password
from ..server.rules import ChatServer
from ..server.store import MemoryStore, StoreFull
from ..stream import Stream
from .checks import Broken, Checks, ObservedLogic
from .clients import PeerWire, SimClient
from .network import Link, Network, SimSelector, SimSocket, VirtualClock

__all__ = ["World", "USERS", "SimServerHost", "SimStore", "BLOCK_DURATION", "TIMEOUT", "Node"]

USERS = ("ann", "bob", "cat", "dan", "eve")   # the accounts, by their short names (``names`` makes them long)
HASHED = ("dan", "eve")          # accounts whose password field is a hash: checked off the loop
BLOCK_DURATION = 10.0            # seconds an account stays locked
TIMEOUT = 30.0                   # seconds of inactivity that log a user out
CHECK_TIME = 0.05                # seconds the password checker takes
WALL_OFFSET = 1_800_000_000.0    # the wall clock, as stored messages are stamped
MAX_ROUNDS = 20_000              # rounds of settling that find no rest: a livelock
_HASHES: dict[str, str] = {}     # user -> its hash field, made once (scrypt at its cheapest)


def account_names(names: str) -> dict[str, str]:
    """Each short name's account name: itself (``plain``), or (``long``) 64 characters, Cyrillic after the short
    name (JSON escapes each to 6 bytes on the wire: the frames that list users grow fast)."""
    if names == "long":
        return {user: (user + "-" + "\u0436" * 64)[:64] for user in USERS}
    return {user: user for user in USERS}


def accounts(names: dict[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The accounts as the server reads them (name -> password or hash field), each account's password, and
    each hash field's password."""
    passwords = {name: f"{user}-secret" for user, name in names.items()}
    for user in HASHED:
        if user not in _HASHES:
            _HASHES[user] = hash_password(f"{user}-secret", log2_n=10, r=1, salt=(user * 8).encode()[:16])
    fields = {name: _HASHES.get(user, passwords[name]) for user, name in names.items()}
    return fields, passwords, {_HASHES[user]: f"{user}-secret" for user in HASHED}


class SimStore:
    """A ``TransactionalStore`` in memory whose ``mode`` a fault sets: ``ok``; ``full``, a transaction that
    keeps a message is refused (``StoreFull``); ``broken``, every transaction is."""

    def __init__(self) -> None:
        self.kept = MemoryStore()
        self.mode = "ok"
        self._open: list[StoreChange] = []

    def apply(self, change: StoreChange) -> None:
        if self.mode == "broken":
            self._open.clear()
            raise StoreFull("simulated: the store refuses every change")
        self._open.append(change)

    def commit(self) -> None:
        changes, self._open = self._open, []
        if self.mode == "full" and any(type(change) is KeepMessage for change in changes):
            raise StoreFull("simulated: no room for messages")
        if self.mode == "broken" and changes:
            raise StoreFull("simulated: the store refuses every change")
        for change in changes:
            self.kept.apply(change)

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        return self.kept.texts(ids)


class SimChecker:
    """The password checker: the verdict after ``CHECK_TIME``; while it is down, every check (those under way
    too) is answered None, as the real pool answers when its helpers are gone."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes
        self.up = True
        self._pending: dict[tuple[int, int], tuple[Handle, SimServerHost]] = {}   # (node, conn) -> its answer

    def check(self, host: SimServerHost, loop: EventLoop, effect: CheckPassword) -> None:
        if not self.up:
            loop.call_soon(host.checked, effect.conn, None)
            return
        ok = self.hashes.get(effect.hashed) == effect.password
        key = (host.node, effect.conn)
        self._pending[key] = (loop.call_later(CHECK_TIME, self._answer, key, ok), host)

    def _answer(self, key: tuple[int, int], ok: bool) -> None:
        _, host = self._pending.pop(key)
        host.checked(key[1], ok)

    def set_up(self, up: bool) -> None:
        self.up = up
        if not up:
            pending, self._pending = self._pending, {}
            for (_, conn), (handle, host) in pending.items():
                handle.cancel()
                host.loop.call_soon(host.checked, conn, None)


class SimServerHost(ServerHost):
    """``ServerHost`` on the virtual network: connections handed to ``accept``, hashed passwords checked by the
    world's ``SimChecker``, and a stream cut off for its output buffer reported as broken."""

    def __init__(self, loop: EventLoop, logic: Any, world: World, node: int, **options: Any) -> None:
        self.world = world
        self.node = node
        super().__init__(loop, logic, password_helpers=1, **options)

    def accept(self, sock: SimSocket) -> None:
        """A client's connection comes in, as from the listener."""
        self._accept(sock)   # type: ignore[arg-type]

    @property
    def loop(self) -> EventLoop:
        return self._loop

    def checked(self, conn: int, ok: bool | None) -> None:
        self._password_checked(conn, ok)

    def _check_password(self, effect: CheckPassword) -> None:
        self.world.checker.check(self, self._loop, effect)

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if reason is not None and reason.startswith("output buffer over"):
            self.world.checks.note(f"node {self.node}: connection {stream.tag} cut off: {reason}")
        super().connection_lost(stream, reason)


class Node:
    """One server process: its loop, its selector and its host."""

    def __init__(self, number: int, loop: EventLoop, selector: SimSelector, host: ServerHost, logic: Any) -> None:
        self.number = number
        self.loop = loop
        self.selector = selector
        self.host = host
        self.logic = logic       # the rules themselves (the host holds them through ObservedLogic)

    def next_timer(self, now: float) -> float | None:
        timeout = self.selector.timeout
        return None if timeout is None else now + timeout


class _Alarm(logging.Handler):
    """Anything ``reactor`` logs at ERROR or above (a callback that raised, a handler's bug) breaks the run."""

    def __init__(self, checks: Checks) -> None:
        super().__init__(logging.ERROR)
        self.checks = checks

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("reactor."):
            return
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, Broken):
                return   # (our own, already noted)
            text += f": {type(exc).__name__}: {exc}"
        self.checks.note(f"{record.name} logged {record.levelname}: {text}")


class World:
    """One run's world (see the module's docstring); ``trace`` gets every event of the servers' rules."""

    def __init__(self, seed: int, *, trace: Any = None, cluster: int = 0, names: str = "plain") -> None:
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.network = Network()
        self.names = account_names(names)        # short name -> account name
        fields, self.passwords, hashes = accounts(self.names)
        self.accounts = fields
        self.checks = Checks(self.passwords, BLOCK_DURATION)
        self.checker = SimChecker(hashes)
        self.trace = trace or (lambda *args: None)
        self.clients: list[SimClient] = []
        self.wire = PeerWire(self.listener)
        self.store = SimStore()
        self.nodes: list[Node] = []
        self.engine: Any = None
        if cluster:
            from .cluster import build_cluster
            build_cluster(self, cluster)
        else:
            self.nodes.append(self.node(0, ChatServer, dict(accounts=dict(fields), block_duration=BLOCK_DURATION,
                                                            timeout=TIMEOUT, wall_offset=WALL_OFFSET),
                                        store=self.store))
        self._alarm = _Alarm(self.checks)
        logging.root.addHandler(self._alarm)

    def node(self, number: int, rules: type, args: dict[str, Any], **options: Any) -> Node:
        """A server node: ``rules(**args)`` (built by the trace, which may record them), on a host of
        ``options`` on a loop of its own."""
        selector = SimSelector(self.network, self.rng)
        loop = EventLoop(selector)
        loop.time = self.clock
        build = getattr(self.trace, "build", None)
        if build is not None:
            logic = build(number, rules, self.now, **args)
        else:
            tokens = itertools.count(1)
            logic = rules(token_factory=lambda: f"token-{next(tokens)}", **args)
        observed = ObservedLogic(logic, number, self.checks, self.clock, self.trace)
        host = options.pop("host_class", SimServerHost)(loop, observed, self, number, **options)
        return Node(number, loop, selector, host, logic)

    def close(self) -> None:
        logging.root.removeHandler(self._alarm)
        for node in self.nodes:
            node.loop.close()

    @property
    def now(self) -> float:
        return self.clock.now

    # -- clients -------------------------------------------------------------------

    def connect(self, user: str, node: int = 0) -> SimClient:
        number = len(self.clients) + 1
        address = f"10.1.{number // 200}.{number % 200 + 1}"
        link = Link(self.network, address, 40000 + number)
        client = SimClient(number, user, link, self.checks, self.wire, self.now)
        self.checks.by_address[address] = client
        self.clients.append(client)
        host = self.nodes[node % len(self.nodes)].host
        assert isinstance(host, SimServerHost)
        host.accept(link.server_socket)
        return client

    def listener(self, host: str, port: int) -> SimClient | None:
        for client in self.clients:
            if client.link.address == host and client.listen_port == port and client.exited is None:
                return client
        return None

    def live_clients(self) -> list[SimClient]:
        return [client for client in self.clients if client.exited is None]

    # -- running ---------------------------------------------------------------------

    def settle(self) -> None:
        """Run what is ready until nothing is (bytes, clients, the loops' turns, the engine)."""
        checks = self.checks
        for _ in range(MAX_ROUNDS):
            busy = False
            clients = list(self.clients)
            self.rng.shuffle(clients)
            for client in clients:
                busy = client.link.deliver() or busy
            for client in clients:
                busy = client.pump(self.now) or busy
            for node in self.nodes:
                node.loop.run_once()
                busy = busy or node.selector.timeout == 0 or node.selector.returned > 0
            if self.engine is not None:
                busy = self.engine.pump() or busy
            if checks.broken is not None:
                raise checks.broken
            if not busy:
                return
        checks.fail(f"no rest after {MAX_ROUNDS} rounds: something spins")

    def next_due(self) -> float | None:
        times = [t for t in (*(node.next_timer(self.now) for node in self.nodes),
                             *(client.next_timer() for client in self.clients)) if t is not None]
        if self.engine is not None and self.engine.next_due() is not None:
            times.append(self.engine.next_due())
        return min(times) if times else None

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, through every timer due on the way."""
        target = round((self.now + seconds) * 1e6) / 1e6
        self.settle()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            self.clock.now = max(self.now, math.ceil(due * 1e6) / 1e6)   # (on the journal's grid of us)
            self.settle()
        self.clock.now = target
        self.settle()

    def step_done(self) -> None:
        self.checks.step_done(self.now)

    def online(self) -> set[str]:
        """Who is logged in, as the servers say (on a cluster: on any node)."""
        return {user for node in self.nodes for user in node.logic.sessions.online}

    # -- faults --------------------------------------------------------------------

    def calm(self) -> None:
        """Lift every fault but the dropped connections: the clients read, the links deliver, the checker and
        the store work, the engine answers."""
        for client in self.clients:
            client.stalled = False
            client.link.held = False
        self.checker.set_up(True)
        self.store.mode = "ok"
        if self.engine is not None:
            self.engine.stalled = False
            self.engine.late.clear()

    def rest(self) -> None:
        """Calm, settle, and check everyone's view of who is online."""
        self.calm()
        self.advance(0.001)
        self.checks.at_rest(self.clients, self.online())

    def finish(self) -> None:
        """The end of a run: calm; every user with messages kept for it logs in and reads them; then every
        message accepted must have been shown."""
        self.rest()
        self.advance(1.0)   # (what was under way: password checks, acknowledgements)
        for attempt in range(3):
            waiting = {message.to for message in self.checks.messages.values()
                       if message.to is not None and message.kept - message.refused
                       and not any(who == message.to for _, who, _ in message.shown)} - self.online()
            if not waiting:
                break
            for user in sorted(waiting):
                client = self.connect(user, node=attempt)
                client.type(user, self.now)
                client.type(self.passwords[user], self.now)
            self.advance(1.0)
            if waiting - self.online():
                self.advance(BLOCK_DURATION)   # (locked: the lock ends)
        self.advance(1.0)
        self.checks.delivered()
