"""The simulator's cluster: three ``ClusterChatServer`` nodes, each on its own host and loop, over a fake engine.

``SimEngine`` plays the engine's scripts (``reactor/cluster/scripts.py``) in
memory, as ``tests/test_cluster_server.py`` does: the one login per user, the
wrong passwords and lockouts, the kept messages with their cap and quota, the
blocks, and the news every node hears (logins, logouts, blocks, lockouts,
broadcasts) or one node hears (relayed events, messages kept for its users).
It answers asynchronously: every request waits in one queue, in the order the
nodes made them, and is answered on the asking node's loop; stalled (a fault),
it answers nothing until it is let go. News go to each node's own queue,
which a node reads at its own pace: one that lags (a fault) has them late,
after replies the engine made since, as a node whose stream reader is behind. The store's fault (``SimStore.mode``)
makes it refuse to keep messages (``full``) or anything (``broken``), as an
engine that cannot be reached answers.

Each node's durability is the product's own ``EngineDurability`` over the fake
engine's script calls; ``SimClusterHost`` carries out the cluster effects as
``reactor/cluster/host.py`` does, minus the lease (the nodes never lose it).
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cluster import scripts
from ..cluster.engine import EngineError, Reply
from ..cluster.keeping import EngineDurability, message_record
from ..cluster.rules import ClusterChatServer, LoginOutcome
from ..cluster.scripts import REF_MEMORY, RELAYED_REF_MEMORY
from ..server.effects import ClaimLogin, Publish, Relay, RelayMessage, ReleaseLogin
from ..server.limits import stored_size
from ..server.logins import MAX_LOGIN_FAILURES
from .world import BLOCK_DURATION, TIMEOUT, WALL_OFFSET, SimServerHost

if TYPE_CHECKING:
    from ..loop import EventLoop
    from .world import World

__all__ = ["SimEngine", "SimClusterHost", "build_cluster"]


class SimClusterHost(SimServerHost):
    """A node's host: ``SimServerHost`` whose durability and cluster effects go to the ``SimEngine``."""

    CARRY_OUT = {**SimServerHost.CARRY_OUT, ClaimLogin: "_claim", ReleaseLogin: "_release", Relay: "_relay",
                 RelayMessage: "_relay_message", Publish: "_publish"}

    def __init__(self, loop: EventLoop, logic: Any, world: World, node: int, *, engine: SimEngine) -> None:
        self.engine = engine
        self.keeping = EngineDurability(lambda script, args, reply: engine.script(node, script, args, reply),
                                        str(node), logic, self._answered)
        super().__init__(loop, logic, world, node, durability=self.keeping)

    def _claim(self, effect: ClaimLogin) -> None:
        self.engine.request(self.node, lambda: self.engine.login(self.node, effect))

    def decided(self, effect: ClaimLogin, outcome: LoginOutcome, until: float | None,
                mailbox: list[tuple[int, dict[str, Any]]]) -> None:
        records = []
        for mid, record in mailbox:
            self.keeping.cache(effect.user, mid, record["text"])
            records.append((mid, record["from"], record["size"], record["chars"], record["sent"]))
        logic: Any = self._logic
        self._apply(logic.login_decided(effect.conn, effect.user, outcome, self._loop.time(), until=until,
                                        mailbox=records))

    def _release(self, effect: ReleaseLogin) -> None:
        self.keeping.release(effect.user)
        self.engine.request(self.node, lambda: self.engine.logout(self.node, effect.user))

    def _relay(self, effect: Relay) -> None:
        event = json.loads(json.dumps(effect.event))   # (as it goes through the engine's stream)
        self.engine.request(self.node, lambda: self.engine.tell(int(effect.node), "relayed", event))

    def _relay_message(self, effect: RelayMessage) -> None:
        """``RELAY``, as ``ClusterHost`` calls it: to its recipient's node, or kept; the answer to the rules."""
        record, cost = message_record(effect.to, effect.sender, effect.text, effect.sent, effect.ref)
        logic: Any = self._logic
        self.engine.script(self.node, scripts.RELAY,
                           [effect.id, effect.to, effect.sender, record, cost, logic.queue_cap, logic.quota or 0,
                            effect.origin or str(self.node), str(self.node), effect.ref or "",
                            int(effect.origin is None)],
                           lambda reply: self._apply(logic.relay_answered(
                               effect, reply if isinstance(reply, str) else "store_full", self._loop.time())))

    def _publish(self, effect: Publish) -> None:
        event = effect.event
        self.engine.request(self.node, lambda: self.engine.tell_others(
            self.node, "remote_broadcast", event["from"], event["text"]))

    def news(self, name: str, *args: Any) -> None:
        """An event from the engine's streams, for this node's rules."""
        if name == "relayed" and args[0].get("kind") == "stored":
            event = args[0]
            self.keeping.cache(event["to"], int(event["id"]), event["text"])
        self._apply(getattr(self._logic, name)(*args, self._loop.time()))


class SimEngine:
    """The engine, in memory (see the module's docstring)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.hosts: list[SimClusterHost] = []
        self.stalled = False
        self.late: set[int] = set()   # nodes whose news wait (a fault: their reader lags behind the streams)
        self._queue: deque[Callable[[], None]] = deque()
        self._news: dict[int, deque[tuple[str, tuple[Any, ...]]]] = {}   # node -> news it has not read yet
        self.online: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.locks: dict[str, float] = {}
        self.kept: dict[int, dict[str, Any]] = {}
        self.kept_by: dict[str, int] = {}
        self.refs: dict[tuple[str, str, str], float] = {}   # (from, to, ref) -> until when it is known

    def request(self, node: int, call: Callable[[], None]) -> None:
        self._queue.append(call)

    def pump(self) -> bool:
        """Answer what waits, in order (nothing while stalled), and hand each node that does not lag its news;
        whether there was anything."""
        busy = False
        while self._queue and not self.stalled:
            self._queue.popleft()()
            busy = True
        for node, news in self._news.items():
            while news and node not in self.late:
                name, args = news.popleft()
                self._on(node, self.hosts[node].news, name, *args)
                busy = True
        return busy

    def next_due(self) -> float | None:
        return None

    def _on(self, node: int, call: Callable[..., Any], *args: Any) -> None:
        """``call(*args)`` on ``node``'s loop, as a reply or news reaches it."""
        self.hosts[node].loop.call_soon(call, *args)

    def tell(self, node: int, name: str, *args: Any) -> None:
        """News for ``node`` (on the streams it reads): it has them at its next read, or once it reads again."""
        self._news.setdefault(node, deque()).append((name, args))

    def tell_others(self, node: int, name: str, *args: Any) -> None:
        for other in range(len(self.hosts)):
            if other != node:
                self.tell(other, name, *args)

    # -- the scripts ---------------------------------------------------------------

    def login(self, node: int, claim: ClaimLogin) -> None:
        """LOGIN: the lockout, the count of wrong passwords, the one login per user."""
        user, now = claim.user, self.world.now
        until = self.locks.get(user)
        mailbox: list[tuple[int, dict[str, Any]]] = []
        if until is not None and until <= now:
            del self.locks[user]
            self.failures.pop(user, None)
            until = None
        if until is not None:
            outcome = LoginOutcome.LOCKED
        elif not claim.ok:
            failures = self.failures[user] = self.failures.get(user, 0) + 1
            outcome = LoginOutcome.WRONG
            if failures >= MAX_LOGIN_FAILURES:
                del self.failures[user]
                until = self.locks[user] = now + BLOCK_DURATION
                outcome = LoginOutcome.BLOCKED
                self.tell_others(node, "remote_locked", user, until)
        elif user in self.online:
            outcome = LoginOutcome.ALREADY
        else:
            outcome = LoginOutcome.WELCOME
            self.online[user] = node
            self.failures.pop(user, None)
            self.tell_others(node, "remote_login", user, str(node))
            mailbox = [(mid, record) for mid, record in sorted(self.kept.items()) if record["to"] == user]
        self._on(node, self.hosts[node].decided, claim, outcome, until, mailbox)

    def logout(self, node: int, user: str) -> None:
        """LOGOUT: the user left the node (if its login is still that node's)."""
        if self.online.get(user) != node:
            return
        del self.online[user]
        self.tell_others(node, "remote_logout", user, str(node), self.world.now)

    def script(self, node: int, script: Any, args: list[Any], reply: Callable[[Reply], Any]) -> None:
        """A script (KEEP, RELAY, FORGET, BLOCK), answered in order with the rest."""
        self.request(node, lambda: self._on(node, reply, self._run(node, script, args)))

    def _seen(self, sender: str, to: str, ref: str) -> bool:
        return bool(ref) and self.refs.get((sender, to, ref), 0.0) > self.world.now

    def _keep(self, mid: int, to: str, sender: str, record: str, cost: int, cap: int, quota: int, ref: str,
              fresh: bool) -> Reply:
        """``keep_for``: unless fresh and its ref known (``again``), the message kept for ``to`` within its cap
        and its sender's quota (its ref known while kept), told to ``to``'s node if it is online."""
        if self.world.store.mode != "ok":
            return EngineError("simulated: the engine cannot keep it")
        if fresh and self._seen(sender, to, ref):
            return "again"
        if sum(1 for r in self.kept.values() if r["to"] == to) >= cap:
            return "queue_full"
        if quota and self.kept_by.get(sender, 0) + cost > quota:
            return "quota_exceeded"
        self.kept[mid] = json.loads(record)
        self.kept_by[sender] = self.kept_by.get(sender, 0) + cost
        if ref:
            self.refs[(sender, to, ref)] = float("inf")
        holder = self.online.get(to)
        if holder is not None:
            self.tell(holder, "relayed", {"kind": "stored", "id": mid, **self.kept[mid]})
        return "kept"

    def _run(self, node: int, script: Any, args: list[Any]) -> Reply:
        mode = self.world.store.mode
        if script is scripts.RELAY:
            if mode == "broken":
                return EngineError("simulated: the engine cannot relay it")
            mid, to, sender, record, cost, cap, quota, origin, passing, ref, fresh = args
            if fresh and self._seen(sender, to, ref):
                return "again"
            holder = self.online.get(to)
            if holder is not None and str(holder) != passing:   # (the nodes never lose their lease here)
                self.tell(holder, "relayed", {**json.loads(record), "kind": "message", "node": origin})
                if ref:
                    self.refs[(sender, to, ref)] = self.world.now + RELAYED_REF_MEMORY
                return "relayed"
            return self._keep(mid, to, sender, record, cost, cap, quota, ref, False)
        if script is scripts.KEEP:
            mid, to, sender, record, cost, cap, quota, ref, fresh = args
            return self._keep(mid, to, sender, record, cost, cap, quota, ref, fresh == 1)
        if script is scripts.FORGET:
            if mode == "broken":
                self.world.checks.unforgotten.update(args)   # (they stay: the next login reads them again)
                return EngineError("simulated: the engine cannot forget them")
            for mid in args:
                record = self.kept.pop(mid, None)
                if record is not None:
                    if record.get("ref"):
                        self.refs[(record["from"], record["to"], record["ref"])] = self.world.now + REF_MEMORY
                    left = self.kept_by.get(record["from"], 0) - stored_size(record["size"])
                    self.kept_by[record["from"]] = max(0, left)
            return len(args)
        if script is scripts.BLOCK:
            if mode == "broken":
                return EngineError("simulated: the engine cannot keep the block")
            blocker, blocked, on, _ = args
            self.tell_others(node, "remote_block", blocker, blocked, bool(on))
            return 1
        raise AssertionError(f"a script the simulated engine does not know: {script}")


def build_cluster(world: World, nodes: int) -> None:
    """``nodes`` cluster nodes in ``world``, over one ``SimEngine``."""
    engine = world.engine = SimEngine(world)
    fields = world.accounts
    for number in range(nodes):
        node = world.node(number, ClusterChatServer, dict(
            accounts=dict(fields), block_duration=BLOCK_DURATION, timeout=TIMEOUT, first_id=(number + 1) << 32,
            wall_offset=WALL_OFFSET), host_class=SimClusterHost, engine=engine)
        assert isinstance(node.host, SimClusterHost)
        engine.hosts.append(node.host)
        world.nodes.append(node)
