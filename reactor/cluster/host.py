"""Runs one node of a cluster: ``ServerHost`` whose durable changes, logins and news go through the engine.

Two engine connections on the same loop: one for commands (pipelined, in the
order the effects came), one that waits on the streams (``XREAD BLOCK``) for
what the other nodes tell all nodes and this one. Nothing blocks.

- **Durability.** The host's ``Durability`` is the engine (``EngineDurability``,
  ``reactor/cluster/keeping.py``): a store change is a script; what the logic
  said after it (to any connection) waits for its answer in ``ServerHost``'s one
  queue, as it waits for a store's commit: the sender's ``stored`` line means the
  engine has the message on disk.
- **The lease.** The node renews it every ``RENEW_EVERY``; the others reap a
  node whose lease ran out and log its users out. If this node has renewed
  nothing for ``GRACE`` (3 s, a second before its lease can run out), it ends
  its sessions (``cluster_lost``, bye ``cut_off``) and takes no login until it
  has joined again: a user is never logged in on two nodes. An engine outage
  shorter than that (less the time since the last renewal, and the wait to
  reconnect) ends no session: the node tries to reconnect every ``RECONNECT``
  and renews at once. While it is out of touch, logins get ``cluster_unavailable``.
- **One process per id.** The lease is held by a token of this process: a
  second process started under a live node's id is refused (``failure``: the
  caller exits saying which id and for how long it is held), and a node that
  finds its id held by another process (it was paused past its lease, and
  another took the id) ends its sessions and stops.
- **The engine's state.** Each join learns the engine's incarnation; a renewal
  that finds another (or none: a ``FLUSHALL``, an engine restarted empty) means
  the engine lost its state: the node claims its users again (``CLAIM``),
  ending those another node logged in meanwhile (``sessions_taken``). The
  engine decides no login for a lease after it finds itself without state, so
  every node that still serves users has claimed them or ended them first.
- **Messages for a dead node's users.** A message for a user of another node
  goes through ``RELAY``, which hands it to that node's inbox only while its
  lease is live (else keeps it); the node records what it took (``TOOK``), and
  what a dead node never took is kept for its users when its lease runs out.
  The node that took a message tells the sender's (``taken``), in one entry
  per node a turn.
- **Resync.** On every (re)connection the node reads the engine's whole view
  (``SNAPSHOT``) and its users hear what they missed; the streams go on from there.
- **Passwords.** A user's current password, given to change it, is counted by
  the engine as a login's (``CountPassword``: a wrong one by the ``LOGIN``
  script, which logs nobody in for one; a right one ends the count). The node
  that took the change writes its own accounts file and publishes the new hash
  (``password``); every other node sets it in its logins and writes it into its
  own file too, unless the file already holds it (nodes that share one file:
  the first node wrote it). So nodes may share a file or each have their own.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..loop import EventLoop, TimerHandle
from ..protocol import ErrorCode
from ..server.effects import ClaimLogin, CountPassword, Publish, Relay, RelayMessage, ReleaseLogin
from ..server.host import DAY, ServerHost
from ..server.logins import MAX_LOGIN_FAILURES
from ..server.passwords import parse_hash
from ..server.store import HISTORY_CAP
from . import scripts
from .engine import Engine, EngineError, Reply
from .keeping import EngineDurability, message_record
from .rules import ClusterChatServer, LoginOutcome, StoredRecord

__all__ = ["ClusterHost", "LEASE", "GRACE", "RENEW_EVERY"]

log = logging.getLogger(__name__)

LEASE = 4.0          # seconds a node's lease lasts in the engine
GRACE = LEASE * 3 / 4     # no renewal for this long: the node ends its sessions, a second before its lease can end
RENEW_EVERY = LEASE / 16  # renewals (and the reaper's look for dead nodes), 0.25 s
RECONNECT = 0.1           # the longest wait between tries to reach an engine that is away
# So an engine outage of up to GRACE - RENEW_EVERY - RECONNECT (2.65 s, less a round trip) ends no session.
READ_BLOCK = 1000    # ms one XREAD waits for news
READ_COUNT = 1000    # entries one XREAD takes at most


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class ClusterHost(ServerHost):
    """``ServerHost`` for a ``ClusterChatServer``: the engine in place of the local store."""

    CARRY_OUT = {**ServerHost.CARRY_OUT, ClaimLogin: "_claim", CountPassword: "_count_password",
                 ReleaseLogin: "_release", Relay: "_relay", RelayMessage: "_relay_message", Publish: "_publish"}

    def __init__(self, loop: EventLoop, logic: ClusterChatServer, engine: tuple[str, int], node: str, *,
                 lease: float = LEASE, prefix: str = scripts.PREFIX, history_cap: int = HISTORY_CAP,
                 **options: Any) -> None:
        """``lease``: seconds; the renewals, the grace and the reconnects scale with it. ``history_cap``: the
        messages of its own a user's history keeps (with ``history_days``, the engine's settings for every node)."""
        self._cluster = logic
        self._node = node
        self._lease = lease
        self._renew_every = lease * RENEW_EVERY / LEASE
        self._grace = lease * GRACE / LEASE
        self._prefix = prefix
        self._token = secrets.token_hex(8)   # this process's, on its lease: one process per node id
        host, port = engine
        backoff = (0.05, RECONNECT)   # back within the grace after an outage shorter than it
        self._engine = Engine(loop, host, port, name=f"engine ({node})", on_up=self._engine_up,
                              on_down=self._engine_down, reply_timeout=lease / 2, backoff=backoff,
                              round_trips=logic.counts.engine_round_trip)
        days = options.get("history_days")
        self.keeping = EngineDurability(   # the engine keeps the changes, and the history
            self._script, node, logic, self._answered, history_keep_ms=int((days or 0) * DAY * 1000),
            history_cap=history_cap, up=lambda: self._engine.up)
        super().__init__(loop, logic, durability=self.keeping, **options)
        self._reader = Engine(loop, host, port, name=f"engine reader ({node})", on_up=self._read,
                              reply_timeout=READ_BLOCK / 1000 + lease, backoff=backoff)
        self._joined = False          # holds a lease: may log users in
        self._joined_once = False     # ever joined: a node id held by another process now means stop
        self._fenced = False          # lost its lease, and has not joined again yet
        self._joining = False         # a JOIN is on its way
        self._answered_once = False   # the engine answered a JOIN (or the connection failed): start is over
        self._claiming = False        # a CLAIM is on its way
        self._failure: str | None = None   # why this node stopped by itself
        self._generation = 0          # joins, claims and fences so far: an answer to an older one's login is void
        self._renewed = 0.0           # when the last renewal that succeeded was sent
        self._grace_timer: TimerHandle | None = None
        self._settle_timer: TimerHandle | None = None
        self._incarnation = ""        # the engine's state this node joined
        self._epoch = 0
        self._reading = False
        self._reads = 0               # reads issued; a read's answer older than a resync or join is not used
        self._events_from = "$"       # the last entry read of each stream
        self._inbox_from = "$"
        self._took = ""               # the last entry of the inbox this node took (RENEW keeps it on disk)
        self._floor: dict[str, tuple[int, int]] = {}   # user -> its inbox's last entry when it logged in
        self._taken: dict[str, list[dict[str, Any]]] = {}   # node -> the fates of its users' messages to tell it
        self._wall_offset = time.time() - loop.time()
        self._tick: TimerHandle | None = None

    @property
    def failure(self) -> str | None:
        """Why this node stopped by itself (its id is held by another live process), or None."""
        return self._failure

    @property
    def starting(self) -> bool:
        """Whether the node's first join is still on its way (the engine has neither answered nor failed)."""
        return not self._answered_once and self._failure is None and self._engine.failed_attempts == 0

    def start_cluster(self) -> None:
        """Connect to the engine; the node joins as soon as it answers, and logins wait until then."""
        self._engine.start()
        self._reader.start()
        self._tick = self._loop.call_later(self._renew_every, self._on_tick)

    def _clock(self, engine_ms: Any) -> float:
        """A time of the engine's (ms since the epoch) on this host's loop clock."""
        return float(engine_ms) / 1000 - self._wall_offset

    def _script(self, script: Any, args: list[Any], reply: Callable[[Reply], Any] | None = None) -> None:
        self._engine.script(script, (self._prefix,), args, reply=reply)

    # -- the lease -------------------------------------------------------

    def _engine_up(self) -> None:
        log.info("node %s: engine up", self._node)
        self.keeping.resume()
        if self._joined:
            self._renew(after_gap=True)
        else:
            self._join()

    def _engine_down(self, reason: str) -> None:
        log.warning("node %s: engine down (%s)", self._node, reason)

    def _limits(self) -> list[Any]:
        """The cap and quota the engine keeps a message to (a dead node's, too): the logic's."""
        return [self._cluster.queue_cap, self._cluster.quota or 0]

    def _join(self) -> None:
        if self._joining or self._failure is not None:
            return
        self._joining = True
        sent = self._loop.time()
        self._script(scripts.JOIN, [self._node, int(self._lease * 1000), self._token, secrets.token_hex(8),
                                    *self._limits(), self.keeping.history_keep_ms, self.keeping.history_cap],
                     lambda reply: self._joined_as(reply, sent))

    def _joined_as(self, reply: Reply, sent: float) -> None:
        self._joining = False
        if isinstance(reply, EngineError):
            log.warning("node %s: could not join: %s", self._node, reply)
            self._answered_once = True
            return
        self._answered_once = True
        if reply[0] == "taken":
            self._held(int(reply[1]))
            return
        _, epoch, inbox, incarnation, settle = reply
        if self._loop.time() - sent > self._lease / 4:   # too late to count on: the lease may be half gone
            log.warning("node %s: joined too slowly (%.1fs); joining again", self._node, self._loop.time() - sent)
            self._join()
            return
        self._took_epoch(epoch)
        self._incarnation = incarnation
        self._inbox_from = self._took = inbox   # (what came before, the engine kept for its users at the join)
        self._joined = self._joined_once = True
        self._fenced = False
        self._generation += 1
        self._reads += 1
        self._renewed_at(sent)
        log.info("node %s: joined (epoch %s)%s", self._node, epoch,
                 f"; logins wait {int(settle) / 1000:.1f}s: the engine has a new state" if int(settle) else "")
        self._snapshot()

    def _took_epoch(self, epoch: Any) -> None:
        self._epoch = int(epoch)
        self._cluster.take_ids(self._epoch * scripts.IDS_PER_EPOCH + 1)

    def _held(self, left_ms: int) -> None:
        """Another live process holds this node's id, for ``left_ms`` more (as far as the engine knows)."""
        held = (f"node id {self._node} is in use by another live node: its lease is held for "
                f"{left_ms / 1000:.1f}s more")
        if self._joined_once:
            self._fence("another process took its node id")
            self._failure = f"{held}; this node stops (start only one node with each --node-id)"
        else:
            self._failure = (f"{held} (a node that died holds it until then): start this node after that, "
                             "or give it another --node-id")
        log.error("node %s: %s", self._node, self._failure)
        self.shutdown()

    def _on_tick(self) -> None:
        self._tick = self._loop.call_later(self._renew_every, self._on_tick)
        if not self._engine.up:
            return
        if self._joined:
            if not self._claiming:
                self._renew()
        else:   # it left (or never got in) while the connection stayed up: in again
            self._join()
        self._script(scripts.REAP, self._limits(), self._reaped)

    def _renew(self, after_gap: bool = False) -> None:
        """Renew the lease; ``after_gap``: the engine was away, so read its view again once renewed."""
        sent, generation = self._loop.time(), self._generation
        self._script(scripts.RENEW, [self._node, int(self._lease * 1000), self._token, self._incarnation, self._took],
                     lambda reply: self._renewed_as(reply, sent, generation, after_gap))

    def _renewed_as(self, reply: Reply, sent: float, generation: int, after_gap: bool) -> None:
        if isinstance(reply, EngineError) or generation != self._generation or not self._joined:
            return   # (the grace runs on from the last renewal)
        what = reply[0]
        if what == "renewed":
            self._renewed_at(sent)
            if after_gap:
                self._snapshot()
        elif what == "expired":
            self._fence("its lease ran out")
            self._join()
        elif what == "taken":
            self._held(int(reply[1]))
        elif what == "lost":
            self._claim_again()

    def _renewed_at(self, sent: float) -> None:
        """A renewal sent at ``sent`` succeeded: the grace runs from then."""
        if sent <= self._renewed:
            return
        self._renewed = sent
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self._grace_timer = self._loop.call_at(sent + self._grace, self._grace_over)

    def _grace_over(self) -> None:
        self._grace_timer = None
        self._fence(f"no lease renewed for {self._loop.time() - self._renewed:.1f}s")

    def _claim_again(self) -> None:
        """The engine lost the state this node joined: claim its users again (a login answered meanwhile was
        decided in the lost state, or not at all: void)."""
        if self._claiming:
            return
        self._claiming = True
        self._generation += 1
        sent, generation = self._loop.time(), self._generation
        users = list(self._cluster.sessions.online)
        log.warning("node %s: the engine lost its state; claiming %d users again", self._node, len(users))
        self._script(scripts.CLAIM, [self._node, int(self._lease * 1000), self._token, secrets.token_hex(8),
                                     self._epoch, *users],
                     lambda reply: self._claimed(reply, sent, generation))

    def _claimed(self, reply: Reply, sent: float, generation: int) -> None:
        self._claiming = False
        if generation != self._generation or not self._joined:
            return
        if isinstance(reply, EngineError):
            log.warning("node %s: could not claim its users again: %s", self._node, reply)
            return   # (the next renewal finds the state lost again, and claims again)
        if reply[0] == "taken":
            self._held(int(reply[1]))
            return
        _, epoch, inbox, incarnation, settle, taken = reply
        self._took_epoch(epoch)
        self._incarnation = incarnation
        self._inbox_from = self._took = inbox
        self._reads += 1
        self._renewed_at(sent)
        elsewhere = dict(_pairs(taken))
        log.warning("node %s: users claimed again; %d had logged in on other nodes meanwhile: %s", self._node,
                    len(elsewhere), ", ".join(sorted(elsewhere)) or "none")
        self._apply(self._cluster.sessions_taken(elsewhere, self._loop.time()))
        # The view is read again once every node has claimed its users (or ended them): after the settling.
        self._settle_timer = self._loop.call_later(int(settle) / 1000, self._snapshot)

    def _reaped(self, reply: Reply) -> None:
        if isinstance(reply, int) and reply:
            log.warning("node %s: %d nodes found dead; their users are logged out", self._node, reply)

    def _fence(self, why: str) -> None:
        """End every session here: this node can no longer vouch for its logins."""
        if not self._joined:
            return
        log.warning("node %s: leaving the cluster: %s", self._node, why, extra={"reason": why})
        self._joined = False
        self._claiming = False
        self._fenced = True
        self._cluster.counts.cluster_fencings += 1
        self._generation += 1
        self._reads += 1
        for timer in (self._grace_timer, self._settle_timer):
            if timer is not None:
                timer.cancel()
        self._grace_timer = self._settle_timer = None
        self._apply(self._cluster.cluster_lost(self._loop.time()))
        self.keeping.clear()
        self._floor.clear()

    def _snapshot(self) -> None:
        self._script(scripts.SNAPSHOT, [], self._resync)

    def _resync(self, reply: Reply) -> None:
        if isinstance(reply, EngineError) or not self._joined:
            return
        online, last, blocks, locks, events_from, now_ms, away = reply
        now = self._loop.time()
        pairs = (pair.split("\n", 1) for pair in blocks)
        locked = {user: self._clock(until) for user, until in _pairs(locks) if float(until) > float(now_ms)}
        self._apply(self._cluster.resync(
            dict(_pairs(online)), {user: self._clock(at) for user, at in _pairs(last)},
            [(blocker, blocked) for blocker, blocked in pairs], locked, self._node, now, away=dict(_pairs(away))))
        if not self._reading:   # (a read under way goes on from where it is: its news are no older than ours)
            self._events_from = events_from
        self._read()

    # -- news from the other nodes ----------------------------------------------

    def _read(self) -> None:
        if self._reading or not self._joined or not self._reader.up:
            return
        self._reading = True
        reads = self._reads
        self._reader.call("XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK, "STREAMS",
                          f"{self._prefix}:events", f"{self._prefix}:inbox:{self._node}",
                          self._events_from, self._inbox_from, reply=lambda reply: self._news(reply, reads))

    def _news(self, reply: Reply, reads: int) -> None:
        self._reading = False
        if isinstance(reply, EngineError):
            return   # (the reader's on_up reads again)
        if reads != self._reads:   # asked before this node left, joined or claimed: read again from where it is
            self._read()
            return
        took = None
        try:
            for stream, entries in reply or ():
                inbox = stream.endswith(f":inbox:{self._node}")
                for entry_id, fields in entries:
                    if inbox:
                        self._inbox_from = took = entry_id
                    else:
                        self._events_from = entry_id
                    try:
                        event = json.loads(fields[1])
                        if inbox:
                            self._take_inbox(entry_id, event, fields)
                        else:
                            self._take_event(event)
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        log.warning("node %s: an entry dropped (%s): %.200r", self._node, exc, fields)
        finally:   # whatever an entry did (the loop logs what raised), the node goes on reading its news
            if took is not None and self._joined:   # what a death of this node would leave is what follows
                self._took = took
                self._tell_taken(took)
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
        elif kind == "away":
            text = event.get("text")
            logic.remote_away(event["user"], text if type(text) is str else None)
        elif kind == "password":
            self._password_elsewhere(event["user"], event["field"])

    def _password_elsewhere(self, user: Any, field: Any) -> None:
        """``user`` changed their password on another node: this node's file gets it (unless it holds it
        already: a file shared with that node), and this node's logins need it from now."""
        if type(user) is not str or type(field) is not str:
            raise TypeError("a password event needs a user and a field")
        parse_hash(field)   # (ValueError: dropped) never a malformed line in the file: its reload would fail
        self.write_password(user, field, None)
        self._apply(self._cluster.remote_password(user, field, self._loop.time()))

    def _take_inbox(self, entry_id: str, event: dict[str, Any], fields: list[Any]) -> None:
        if event["kind"] == "message" and len(fields) >= 4:   # (RELAY's: the record in the second field)
            event = {**json.loads(fields[3]), "kind": "message", "node": event["node"]}
        elif event["kind"] == "stored":
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
        self._login_script(effect.user, effect.ok, lambda reply: self._login_answer(effect, generation, reply))

    def _login_script(self, user: str, ok: bool, answer: Callable[[Reply], Any]) -> None:
        self._script(scripts.LOGIN, [user, int(ok), self._node, int(self._cluster.block_duration * 1000),
                                     MAX_LOGIN_FAILURES, self._token, self._incarnation, *self._limits()], answer)

    def _count_password(self, effect: CountPassword) -> None:
        """A current password given to change it: a right one ends the count of wrong ones in the engine (no
        answer needed); a wrong one is counted by the ``LOGIN`` script, as a login's, and answered."""
        if effect.ok:
            if self._joined:
                self._engine.call("HDEL", f"{self._prefix}:failures", effect.user)
            return
        if not self._joined:
            self._loop.call_soon(self._counted, effect, EngineError("not in the cluster"))
            return
        self._login_script(effect.user, False, lambda reply: self._counted(effect, reply))

    def _counted(self, effect: CountPassword, reply: Reply) -> None:
        outcome = LoginOutcome.UNAVAILABLE if isinstance(reply, EngineError) else LoginOutcome(reply[0])
        until = self._clock(reply[1]) if outcome in (LoginOutcome.LOCKED, LoginOutcome.BLOCKED) else None
        self._apply(self._cluster.password_counted(effect.conn, effect.user, outcome, self._loop.time(),
                                                   until=until))

    def _login_answer(self, effect: ClaimLogin, generation: int, reply: Reply) -> None:
        if isinstance(reply, EngineError):
            self._decided(effect, generation, LoginOutcome.UNAVAILABLE)
            return
        outcome = LoginOutcome(reply[0])
        if outcome is LoginOutcome.WELCOME and (generation != self._generation or not self._joined):
            # taken before this node left (or before the engine lost its state): give it up
            self._script(scripts.LOGOUT, [effect.user, self._node, self._token])
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
                ref = r.get("ref")
                mailbox.append((int(mid), r["from"], r["size"], r["chars"], r.get("sent"),
                                ref if type(ref) is str else None))
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
            self._script(scripts.LOGOUT, [user, self._node, self._token])

    def _relay(self, effect: Relay) -> None:
        event = effect.event
        if event.get("kind") == "taken":   # the fates of a node's users' messages: one entry a turn
            if not self._taken:
                self._loop.call_soon(self._tell_taken)
            self._taken.setdefault(effect.node, []).extend(event["list"])
            return
        self._engine.call("XADD", f"{self._prefix}:inbox:{effect.node}", "MAXLEN", "~", scripts.INBOX_KEPT, "*",
                          "e", json.dumps(event))

    def _tell_taken(self, took: str = "") -> None:
        """The fates of other nodes' users' messages, one entry per node, and what this node took of its inbox
        (up to entry ``took``): one TOOK script."""
        taken, self._taken = self._taken, {}
        if not took and not taken:
            return
        args = [self._node, self._token, took]
        for node, fates in taken.items():
            args += [node, json.dumps({"kind": "taken", "list": fates})]
        self._script(scripts.TOOK, args)

    def _relay_message(self, effect: RelayMessage) -> None:
        """To the node of its recipient through the engine (``RELAY``), or kept; the answer to the logic."""
        record, cost = message_record(effect.to, effect.sender, effect.text, effect.sent, effect.ref)
        self._script(scripts.RELAY, [effect.id, effect.to, effect.sender, record, cost, *self._limits(),
                                     effect.origin or self._node, self._node, effect.ref or "",
                                     int(effect.origin is None)],
                     lambda reply: self._relay_answered(effect, reply))

    def _relay_answered(self, effect: RelayMessage, reply: Reply) -> None:
        if isinstance(reply, EngineError) or not isinstance(reply, str):
            log.warning("message %d to %s not relayed: %s", effect.id, effect.to, reply)
            reply = ErrorCode.STORE_FULL.value
        self._apply(self._cluster.relay_answered(effect, reply, self._loop.time()))

    def _publish(self, effect: Publish) -> None:
        event = effect.event
        if event.get("kind") == "away":   # kept in the engine too, for a node that reads its view again
            text = event.get("text")
            self._script(scripts.AWAY, [event["user"], int(text is not None), text or "", self._node])
            return
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
                self._script(scripts.LEAVE, [self._node, self._token, *self._limits()])
                self._joined = False
        super().shutdown()


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))

