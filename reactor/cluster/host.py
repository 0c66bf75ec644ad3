"""Runs one node of a cluster: ``ServerHost`` whose durable changes, logins and news go through the engine.

Two engine connections on the same loop: one for commands (pipelined, in the
order the effects came), one that waits on the streams (``XREAD BLOCK``) for
what the other nodes tell all nodes and this one. Nothing blocks.

- **Durability.** The host's ``Durability`` is the engine (``EngineDurability``,
  ``reactor/cluster/keeping.py``): a store change is a script; what the logic
  said after it (to any connection) waits for its answer in ``ServerHost``'s one
  queue, as it waits for a store's commit: the sender's ``stored`` line means the
  engine has the message on disk.
- **The lease.** The node renews it every ``lease/4``; the others reap a node
  whose lease ran out and log its users out. If this node cannot renew for
  ``lease/2``, it ends its sessions (``cluster_lost``) and takes no login until
  it has joined again: a user is never logged in on two nodes.
- **Resync.** On every (re)connection the node reads the engine's whole view
  (``SNAPSHOT``) and its users hear what they missed; the streams go on from there.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..loop import EventLoop, TimerHandle
from ..server.effects import ClaimLogin, Publish, Relay, ReleaseLogin
from ..server.host import ServerHost
from ..server.logins import MAX_LOGIN_FAILURES
from . import scripts
from .engine import Engine, EngineError, Reply
from .keeping import EngineDurability
from .rules import ClusterChatServer, LoginOutcome, StoredRecord

__all__ = ["ClusterHost", "LEASE"]

log = logging.getLogger(__name__)

LEASE = 4.0          # seconds a node's lease lasts; renewed every LEASE/4, given up (sessions ended) after LEASE/2
READ_BLOCK = 1000    # ms one XREAD waits for news
READ_COUNT = 1000    # entries one XREAD takes at most


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class ClusterHost(ServerHost):
    """``ServerHost`` for a ``ClusterChatServer``: the engine in place of the local store."""

    CARRY_OUT = {**ServerHost.CARRY_OUT, ClaimLogin: "_claim", ReleaseLogin: "_release", Relay: "_relay",
                 Publish: "_publish"}

    def __init__(self, loop: EventLoop, logic: ClusterChatServer, engine: tuple[str, int], node: str, *,
                 lease: float = LEASE, prefix: str = scripts.PREFIX, **options: Any) -> None:
        self._cluster = logic
        self._node = node
        self._lease = lease
        self._prefix = prefix
        host, port = engine
        self._engine = Engine(loop, host, port, name=f"engine ({node})", on_up=self._engine_up,
                              on_down=self._engine_down, reply_timeout=lease / 2,
                              round_trips=logic.counts.engine_round_trip)
        self.keeping = EngineDurability(self._script, node, logic, self._answered)   # the engine keeps the changes
        super().__init__(loop, logic, durability=self.keeping, **options)
        self._reader = Engine(loop, host, port, name=f"engine reader ({node})", on_up=self._read,
                              reply_timeout=READ_BLOCK / 1000 + lease)
        self._joined = False          # holds a lease: may log users in
        self._fenced = False          # lost its lease, and has not joined again yet
        self._joining = False         # a JOIN is on its way
        self._generation = 0          # joins so far: an answer to an older one's login is void
        self._renewed = 0.0           # when the last renewal that succeeded was sent
        self._reading = False
        self._events_from = "$"       # the last entry read of each stream
        self._inbox_from = "$"
        self._floor: dict[str, tuple[int, int]] = {}   # user -> its inbox's last entry when it logged in
        self._wall_offset = time.time() - loop.time()
        self._tick: TimerHandle | None = None

    def start_cluster(self) -> None:
        """Connect to the engine; the node joins as soon as it answers, and logins wait until then."""
        self._engine.start()
        self._reader.start()
        self._tick = self._loop.call_later(self._lease / 4, self._on_tick)

    def _clock(self, engine_ms: Any) -> float:
        """A time of the engine's (ms since the epoch) on this host's loop clock."""
        return float(engine_ms) / 1000 - self._wall_offset

    def _script(self, script: Any, args: list[Any], reply: Callable[[Reply], Any] | None = None) -> None:
        self._engine.script(script, (self._prefix,), args, reply=reply)

    # -- the lease -------------------------------------------------------

    def _engine_up(self) -> None:
        log.info("node %s: engine up", self._node)
        if self._joined:
            sent = self._loop.time()
            self._script(scripts.RENEW, [self._node, int(self._lease * 1000)],
                         lambda reply: self._renewed_after_gap(reply, sent))
        else:
            self._join()

    def _engine_down(self, reason: str) -> None:
        log.warning("node %s: engine down (%s)", self._node, reason)

    def _join(self) -> None:
        if self._joining:
            return
        self._joining = True
        sent = self._loop.time()
        self._script(scripts.JOIN, [self._node, int(self._lease * 1000)], lambda reply: self._joined_as(reply, sent))

    def _joined_as(self, reply: Reply, sent: float) -> None:
        self._joining = False
        if isinstance(reply, EngineError):
            log.warning("node %s: could not join: %s", self._node, reply)
            return
        epoch, inbox = reply
        if self._loop.time() - sent > self._lease / 4:   # too late to count on: the lease may be half gone
            log.warning("node %s: joined too slowly (%.1fs); joining again", self._node, self._loop.time() - sent)
            self._join()
            return
        self._cluster.take_ids(int(epoch) * scripts.IDS_PER_EPOCH + 1)
        if self._inbox_from == "$":
            self._inbox_from = inbox
        self._joined, self._renewed = True, sent
        self._fenced = False
        self._generation += 1
        log.info("node %s: joined (epoch %s)", self._node, epoch)
        self._snapshot()

    def _renewed_after_gap(self, reply: Reply, sent: float) -> None:
        if reply == 1:
            self._renewed = sent
            self._snapshot()
        elif not isinstance(reply, EngineError):
            self._fence("its lease ran out")
            self._join()

    def _on_tick(self) -> None:
        self._tick = self._loop.call_later(self._lease / 4, self._on_tick)
        now = self._loop.time()
        if self._joined and now - self._renewed > self._lease / 2:
            self._fence(f"no lease renewed for {now - self._renewed:.1f}s")
        if not self._engine.up:
            return
        if self._joined:
            self._script(scripts.RENEW, [self._node, int(self._lease * 1000)], lambda reply: self._renew(reply, now))
        else:   # it left (or never got in) while the connection stayed up: in again
            self._join()
        self._script(scripts.REAP, [], self._reaped)

    def _renew(self, reply: Reply, sent: float) -> None:
        if reply == 1:
            self._renewed = max(self._renewed, sent)
        elif reply == 0 and self._joined:
            self._fence("its lease ran out")
            self._join()

    def _reaped(self, reply: Reply) -> None:
        if isinstance(reply, int) and reply:
            log.warning("node %s: %d nodes found dead; their users are logged out", self._node, reply)

    def _fence(self, why: str) -> None:
        """End every session here: this node can no longer vouch for its logins."""
        if not self._joined:
            return
        log.warning("node %s: leaving the cluster: %s", self._node, why, extra={"reason": why})
        self._joined = False
        self._fenced = True
        self._cluster.counts.cluster_fencings += 1
        self._generation += 1
        self._apply(self._cluster.cluster_lost(self._loop.time()))
        self.keeping.clear()
        self._floor.clear()

    def _snapshot(self) -> None:
        self._script(scripts.SNAPSHOT, [], self._resync)

    def _resync(self, reply: Reply) -> None:
        if isinstance(reply, EngineError) or not self._joined:
            return
        online, last, blocks, locks, events_from, now_ms = reply
        now = self._loop.time()
        pairs = (pair.split("\n", 1) for pair in blocks)
        locked = {user: self._clock(until) for user, until in _pairs(locks) if float(until) > float(now_ms)}
        self._apply(self._cluster.resync(
            dict(_pairs(online)), {user: self._clock(at) for user, at in _pairs(last)},
            [(blocker, blocked) for blocker, blocked in pairs], locked, self._node, now))
        if not self._reading:   # (a read under way goes on from where it is: its news are no older than ours)
            self._events_from = events_from
        self._read()

    # -- news from the other nodes ----------------------------------------------

    def _read(self) -> None:
        if self._reading or not self._joined or not self._reader.up:
            return
        self._reading = True
        self._reader.call("XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK, "STREAMS",
                          f"{self._prefix}:events", f"{self._prefix}:inbox:{self._node}",
                          self._events_from, self._inbox_from, reply=self._news)

    def _news(self, reply: Reply) -> None:
        self._reading = False
        if isinstance(reply, EngineError):
            return   # (the reader's on_up reads again)
        try:
            for stream, entries in reply or ():
                inbox = stream.endswith(f":inbox:{self._node}")
                for entry_id, fields in entries:
                    if inbox:
                        self._inbox_from = entry_id
                    else:
                        self._events_from = entry_id
                    try:
                        event = json.loads(fields[1])
                        if inbox:
                            self._take_inbox(entry_id, event)
                        else:
                            self._take_event(event)
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        log.warning("node %s: an entry dropped (%s): %.200r", self._node, exc, fields)
        finally:   # whatever an entry did (the loop logs what raised), the node goes on reading its news
            self._read()

    def _take_event(self, event: dict[str, Any]) -> None:
        if event.get("node") == self._node:
            return   # this node did it, and knows
        kind, now, logic = event["kind"], self._loop.time(), self._cluster
        if kind == "login":
            self._apply(logic.remote_login(event["user"], event["node"], now))
        elif kind == "logout":
            self._apply(logic.remote_logout(event["user"], event["node"], self._clock(event["at"]), now))
        elif kind == "block":
            self._apply(logic.remote_block(event["blocker"], event["blocked"], bool(event["on"]), now))
        elif kind == "locked":
            self._apply(logic.remote_locked(event["user"], self._clock(event["until"]), now))
        elif kind == "broadcast":
            self._apply(logic.remote_broadcast(event["from"], event["text"], now))
        elif kind == "notice":
            self._apply(logic.remote_notice(event["text"], now))

    def _take_inbox(self, entry_id: str, event: dict[str, Any]) -> None:
        if event["kind"] == "stored":
            record = event["rec"]
            to = record["to"]
            floor = self._floor.get(to)
            if floor is None or _stream_id(entry_id) <= floor:
                return   # not here, or kept before it logged in here: its login brought it
            self.keeping.cache(to, int(event["id"]), record["text"])
            event = {"kind": "stored", "id": event["id"], **record}
        self._apply(self._cluster.relayed(event, self._loop.time()))

    # -- effects ---------------------------------------------------------------

    def _claim(self, effect: ClaimLogin) -> None:
        generation = self._generation
        if not self._joined:
            self._loop.call_soon(self._decided, effect, generation, LoginOutcome.UNAVAILABLE)
            return
        self._script(scripts.LOGIN, [effect.user, int(effect.ok), self._node,
                                     int(self._cluster.block_duration * 1000), MAX_LOGIN_FAILURES],
                     lambda reply: self._login_answer(effect, generation, reply))

    def _login_answer(self, effect: ClaimLogin, generation: int, reply: Reply) -> None:
        if isinstance(reply, EngineError):
            self._decided(effect, generation, LoginOutcome.UNAVAILABLE)
            return
        outcome = LoginOutcome(reply[0])
        if outcome is LoginOutcome.WELCOME and (generation != self._generation or not self._joined):
            self._script(scripts.LOGOUT, [effect.user, self._node])   # taken before this node left: give it up
            outcome = LoginOutcome.UNAVAILABLE
        until = self._clock(reply[1]) if outcome in (LoginOutcome.LOCKED, LoginOutcome.BLOCKED) else None
        mailbox: list[StoredRecord] = []
        if outcome is LoginOutcome.WELCOME:
            self._floor[effect.user] = _stream_id(reply[1])
            for mid, record in zip(reply[2], reply[3], strict=True):
                if record is None:
                    continue
                r = json.loads(record)
                self.keeping.cache(effect.user, int(mid), r["text"])
                mailbox.append((int(mid), r["from"], r["size"], r["chars"], r.get("sent")))
        self._decided(effect, generation, outcome, until, mailbox)

    def _decided(self, effect: ClaimLogin, generation: int, outcome: LoginOutcome, until: float | None = None,
                 mailbox: list[StoredRecord] | None = None) -> None:
        self._apply(self._cluster.login_decided(effect.conn, effect.user, outcome, self._loop.time(),
                                                until=until, mailbox=mailbox or ()))

    def _release(self, effect: ReleaseLogin) -> None:
        user = effect.user
        self.keeping.release(user)
        self._floor.pop(user, None)
        if self._joined:
            self._script(scripts.LOGOUT, [user, self._node])

    def _relay(self, effect: Relay) -> None:
        self._engine.call("XADD", f"{self._prefix}:inbox:{effect.node}", "MAXLEN", "~", scripts.INBOX_KEPT, "*",
                          "e", json.dumps(effect.event))

    def _publish(self, effect: Publish) -> None:
        self._engine.call("XADD", f"{self._prefix}:events", "MAXLEN", "~", scripts.EVENTS_KEPT, "*",
                          "e", json.dumps({**effect.event, "node": self._node}))

    # -- for the operator (reactor/cluster/operator.py) ---------------------------------

    @property
    def node(self) -> str:
        return self._node

    @property
    def engine(self) -> Engine:
        """The connection for commands (the news have one of their own)."""
        return self._engine

    @property
    def joined(self) -> bool:
        """Whether it holds a lease: it may log users in."""
        return self._joined

    @property
    def fenced(self) -> bool:
        """Whether it lost its lease (its sessions ended) and has not joined again yet."""
        return self._fenced

    def lock_everywhere(self, user: str, seconds: float) -> None:
        """The operator's lockout of ``user`` for ``seconds`` (0: lifted, its wrong passwords forgotten), in the
        engine and told to every other node (a ``locked`` event; this node's own view is the caller's)."""
        self._script(scripts.LOCK, [user, int(seconds * 1000), self._node], self._locked_everywhere)

    def _locked_everywhere(self, reply: Reply) -> None:
        if isinstance(reply, EngineError):
            log.warning("node %s: the operator's lock or unlock did not reach the engine: %s", self._node, reply)

    # -- shutdown ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Leave the cluster (this node's users are logged out for every node), then as ``ServerHost``."""
        if not self._stopping:
            if self._tick is not None:
                self._tick.cancel()
            if self._joined:
                self._script(scripts.LEAVE, [self._node])
                self._joined = False
        super().shutdown()


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))

