"""The simulation's steps, as a Hypothesis state machine: Hypothesis draws the runs and shrinks a failing one.

Each rule is one step a user or the world takes: a client connects and logs
in (with the right password or a wrong one, maybe typing ahead), types a
command, closes its input; the world drops a connection, stalls a reader,
holds a link (its bytes wait while the others' go: frames reordered between
connections, never within one), lets time pass (past the inactivity timeout,
a lockout, a token's life), makes the store refuse, takes the password
checker down, stalls a cluster's engine, or comes to rest. After every step
the world settles and ``Checks`` looks at it; at the end the world finishes
(every kept message read) and the deliveries are checked.

The order in which ready connections reach the server is drawn from the
run's own ``seed`` (the first step), so a run is a function of what Hypothesis
drew. ``SimMachine.configure`` sets the mode (single process, or a cluster of
nodes) and where each run's steps are recorded.
"""
from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..protocol import MAX_TEXT
from .clients import SimClient
from .world import USERS, World

__all__ = ["SimMachine", "SIZES", "text_of"]

MAX_CLIENTS = 8
SIZES = ("short", "short", "long", "accented", "astral")
COMMANDS = ("block", "unblock", "whoelse", "whoelsesince", "startprivate", "yes", "no", "private", "stopprivate",
            "logout", "help")
AHEAD = ("", "", "logout", "message", "whoelse")
FAULTS = ("drop", "stall", "read", "hold", "deliver", "store full", "store broken", "store ok", "checker down",
          "checker up", "engine stalls", "engine answers", "news late", "news on time")
WAITS = (0.01, 0.2, 1.0, 3.5, 10.5, 31.0)   # a moment; a leave grace; a lockout; an idle timeout


def text_of(number: int, sender: str, size: str) -> str:
    """A message's text: unique (its number and sender first), of the ``size`` asked."""
    head = f"m{number}-{sender}"
    if size == "long":
        return (head + " " + "x" * MAX_TEXT)[:MAX_TEXT]
    if size == "accented":
        return head + " " + "é" * 1500
    if size == "astral":
        return head + " " + "\U0001f600" * 1000
    return head


class SimMachine(RuleBasedStateMachine):
    """One simulated run (see the module's docstring)."""

    cluster: ClassVar[int] = 0                # nodes of a cluster (0: the single process)
    names: ClassVar[str] = "plain"            # the accounts' names: "plain" or "long" (reactor/sim/world.py)
    sizes: ClassVar[tuple[str, ...]] = SIZES  # the sizes of the texts typed
    recorder: ClassVar[Any] = None            # makes each run's trace (reactor/sim/journal.py)

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self.texts = 0
        self.trace: Any = None

    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        self.trace = self.recorder(seed, self.cluster) if self.recorder is not None else None
        self.world = World(seed, trace=self.trace, cluster=self.cluster, names=self.names)

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    def _client(self, index: int) -> SimClient | None:
        live = self.w.live_clients()
        return live[index % len(live)] if live else None

    def _step(self, what: str) -> None:
        checks = self.w.checks
        checks.step += 1
        if self.trace is not None:
            self.trace.step(checks.step, what, self.w.now)
        self.w.settle()

    # -- users ---------------------------------------------------------------------

    @precondition(lambda self: self.world is not None and len(self.world.live_clients()) < MAX_CLIENTS)
    @rule(user=st.sampled_from(USERS), right=st.booleans(), ahead=st.sampled_from(AHEAD), node=st.integers(0, 2))
    def connect(self, user: str, right: bool, ahead: str, node: int) -> None:
        name = self.w.names[user]
        client = self.w.connect(name, node)
        client.type(name, self.w.now)
        client.type(self.w.passwords[name] if right else "wrong-" + user, self.w.now)
        if ahead:
            client.type(self._command_line(client, ahead, self._other(client, 0), "short"), self.w.now)
        self._step(f"{client} connects to node {node % max(1, len(self.w.nodes))}: {name}, "
                   f"{'right' if right else 'wrong'} password{', then ' + ahead if ahead else ''}")

    def _active(self, index: int) -> SimClient | None:
        active = [client for client in self.w.live_clients() if client.asking == "command"]
        return active[index % len(active)] if active else None

    def _other(self, client: SimClient, index: int) -> str:
        """Another user: those online first (a small ``index``), then the others, then the client's own."""
        online = self.w.online()
        others = (sorted(online - {client.user}) + sorted(set(self.w.names.values()) - online - {client.user})
                  + [client.user])
        return others[index % len(others)]

    @precondition(lambda self: self.world is not None and bool(self.world.live_clients()))
    @rule(index=st.integers(0, MAX_CLIENTS - 1), right=st.booleans())
    def log_in(self, index: int, right: bool) -> None:
        """A client asking for a name or a password is given it."""
        waiting = [client for client in self.w.live_clients() if client.asking in ("username", "password")]
        if not waiting:
            return
        client = waiting[index % len(waiting)]
        if client.asking == "username":
            line = client.user
        else:
            line = self.w.passwords[client.user] if right else "wrong-" + client.user
        client.type(line, self.w.now)
        self._step(f"{client} types {'a right' if right else 'a wrong'} {client.asking}")

    @precondition(lambda self: self.world is not None and bool(self.world.live_clients()))
    @rule(index=st.integers(0, MAX_CLIENTS - 1), other=st.integers(0, 5), size=st.sampled_from(SIZES))
    def message(self, index: int, other: int, size: str) -> None:
        size = size if size in self.sizes else self.sizes[0]
        client = self._active(index)
        if client is not None:
            self._type(client, self._command_line(client, "message", self._other(client, other), size))

    @precondition(lambda self: self.world is not None and bool(self.world.live_clients()))
    @rule(index=st.integers(0, MAX_CLIENTS - 1), size=st.sampled_from(SIZES))
    def broadcast(self, index: int, size: str) -> None:
        size = size if size in self.sizes else self.sizes[0]
        client = self._active(index)
        if client is not None:
            self._type(client, self._command_line(client, "broadcast", "", size))

    @precondition(lambda self: self.world is not None and bool(self.world.live_clients()))
    @rule(index=st.integers(0, MAX_CLIENTS - 1), command=st.sampled_from(COMMANDS), other=st.integers(0, 5))
    def command(self, index: int, command: str, other: int) -> None:
        client = self._active(index)
        if client is not None:
            self._type(client, self._command_line(client, command, self._other(client, other), "short"))

    def _type(self, client: SimClient, line: str) -> None:
        client.type(line, self.w.now)
        self._step(f"{client} types {line[:40]!r}")

    def _command_line(self, client: SimClient, command: str, target: str, size: str) -> str:
        if command == "message":
            self.texts += 1
            return f"message {target} {text_of(self.texts, client.user, size)}"
        if command == "broadcast":
            self.texts += 1
            return f"broadcast {text_of(self.texts, client.user, size)}"
        if command in ("block", "unblock", "startprivate", "stopprivate"):
            return f"{command} {target}"
        if command == "whoelsesince":
            return "whoelsesince 20"
        if command == "private":
            return f"private {target} hello"
        return {"yes": "y", "no": "n"}.get(command, command)

    @precondition(lambda self: self.world is not None and bool(self.world.live_clients()))
    @rule(index=st.integers(0, MAX_CLIENTS - 1))
    def close_input(self, index: int) -> None:
        client = self._client(index)
        assert client is not None
        client.end_input(self.w.now)
        self._step(f"{client} reaches the end of its input")

    # -- faults ----------------------------------------------------------------------

    @precondition(lambda self: self.world is not None)
    @rule(fault=st.sampled_from(FAULTS), index=st.integers(0, MAX_CLIENTS - 1))
    def fault(self, fault: str, index: int) -> None:
        """Something goes wrong (or right again): with a connection (``index``: which), the store, the password
        checker, the cluster's engine."""
        world = self.w
        client = self._client(index)
        if fault in ("drop", "stall", "read", "hold", "deliver"):
            if client is None:
                return
            if fault == "drop":
                client.link.drop()
            elif fault in ("stall", "read"):
                client.stalled = fault == "stall"
            else:
                client.link.held = fault == "hold"
            what = {"drop": "'s connection drops", "stall": " stops reading", "read": " reads again",
                    "hold": "'s link holds its bytes", "deliver": "'s link delivers again"}[fault]
            self._step(f"{client}{what}")
            return
        if fault.startswith("store "):
            world.store.mode = fault.split()[1]
        elif fault.startswith("checker "):
            world.checker.set_up(fault == "checker up")
        elif world.engine is None:
            return
        elif fault.startswith("news "):
            node = index % len(world.nodes)
            (world.engine.late.add if fault == "news late" else world.engine.late.discard)(node)
            fault = f"node {node} reads its news {'late' if fault == 'news late' else 'on time'}"
        else:
            world.engine.stalled = fault == "engine stalls"
        self._step(fault)

    @precondition(lambda self: self.world is not None)
    @rule(seconds=st.sampled_from(WAITS))
    def wait(self, seconds: float) -> None:
        if self.trace is not None:
            self.trace.step(self.w.checks.step + 1, f"{seconds}s pass", self.w.now)
        self.w.checks.step += 1
        self.w.advance(seconds)

    @precondition(lambda self: self.world is not None)
    @rule()
    def rest(self) -> None:
        if self.trace is not None:
            self.trace.step(self.w.checks.step + 1, "rest: every fault lifted", self.w.now)
        self.w.checks.step += 1
        self.w.rest()

    @invariant()
    def holds(self) -> None:
        if self.world is not None:
            self.w.step_done()

    def teardown(self) -> None:
        world = self.world
        if world is None:
            return
        try:
            if world.checks.broken is None:
                if self.trace is not None:
                    self.trace.step(world.checks.step + 1, "the end: every user with mail reads it", world.now)
                world.checks.step += 1
                world.finish()
        finally:
            world.close()
            if self.trace is not None:
                self.trace.done(world.checks.broken)
