"""Cluster mode's logic (reactor/cluster/rules.py), sans-I/O: several ``ClusterChatServer`` nodes wired through
a fake engine that decides logins as the engine's scripts do and carries what the nodes tell each other.
No sockets, no engine process: the clock is a number the test sets."""
from __future__ import annotations

import itertools
import json
from collections import defaultdict, deque
from typing import Any

import pytest

from reactor.cluster.rules import ClusterChatServer, LoginOutcome
from reactor.protocol import ErrorCode
from reactor.server.effects import (
    AddBlock,
    CancelTimer,
    CheckPassword,
    ClaimLogin,
    Close,
    CountPassword,
    ForgetMessages,
    HashPassword,
    KeepMessage,
    LoggedIn,
    LoginFailed,
    Publish,
    Relay,
    RelayMessage,
    ReleaseLogin,
    RemoveBlock,
    Send,
    SendBatch,
    SendStored,
    SetPassword,
    SetTimer,
    WhenWritable,
)
from reactor.server.limits import stored_size
from reactor.server.passwords import hash_password, verify_password
from tests.support import ACCOUNTS

BLOCK = 10.0
TIMEOUT = 600.0
TTL = 30.0
NODES = ("a", "b", "c")


class Fake:
    """The engine and the hosts of ``nodes``, played in memory.

    Effects are carried out as a host and the engine would: frames to connections are recorded per
    (node, conn); what goes through the engine (a login's claim, a release, a relay, a publish, a kept
    message, a block) waits in ``pending`` until ``run()`` (the engine answers in order, later)."""

    def __init__(self, nodes=NODES, cap=1000, quota=None):
        self.now = 1000.0
        self.tokens = (f"token{n}" for n in itertools.count(1))
        self.nodes = {name: ClusterChatServer(ACCOUNTS, BLOCK, TIMEOUT, first_id=(i + 1) << 32, rate=None,
                                              token_ttl=TTL, token_factory=lambda: next(self.tokens),
                                              sender_quota=quota)
                      for i, name in enumerate(nodes)}
        self.cap = cap
        self.online: dict[str, str] = {}          # user -> node (the engine's :online)
        self.last: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.locks: dict[str, float] = {}
        self.blocks: set[tuple[str, str]] = set()
        self.kept: dict[int, dict[str, Any]] = {}   # id -> record
        self.refuse: ErrorCode | None = None          # the engine refuses every KeepMessage with this code
        self.reply_lost = False   # the engine keeps (or relays) each message, but its node hears store_full
        self.refs: dict[tuple[str, str, str], int] = {}   # (sender, to, ref) -> id: the engine's :ref: keys
        self.dead: set[str] = set()                   # nodes killed, whose leases have not run out yet
        self.unread: dict[str, list[dict]] = defaultdict(list)   # a dead node's inbox: the messages it never took
        self.frames: dict[tuple[str, int], list[dict]] = defaultdict(list)
        self.closed: set[tuple[str, int]] = set()
        self.effects: dict[str, list[Any]] = defaultdict(list)   # every effect a node returned
        self.pending: deque[Any] = deque()
        self.conns = itertools.count(1)
        self.claims_held = False                    # ClaimLogins wait in `claims` until the test answers
        self.claims: list[tuple[str, ClaimLogin]] = []
        self.files: dict[str, dict[str, str]] = {name: dict(ACCOUNTS) for name in nodes}   # each node's own file

    # -- carrying out ---------------------------------------------------------

    def apply(self, node: str, effects: list[Any]) -> None:
        self.effects[node] += effects
        for e in effects:
            if type(e) is Send:
                self._frames(node, e.conns, [e.frame])
            elif type(e) is SendBatch:
                self._frames(node, e.conns, list(e.frames))
            elif type(e) is SendStored:
                self._frames(node, (e.conn,), [{**f, "text": self.kept[f["id"]]["text"]} for f in e.frames])
            elif type(e) is Close:
                self.closed.add((node, e.conn))
            elif type(e) is WhenWritable:
                self.pending.append(lambda node=node, conn=e.conn: self.apply(
                    node, self.nodes[node].writable(conn, self.now)))
            elif type(e) is ClaimLogin:
                if self.claims_held:
                    self.claims.append((node, e))
                else:
                    self.pending.append(lambda node=node, e=e: self.decide(node, e))
            elif type(e) in (ReleaseLogin, Relay, RelayMessage, Publish, KeepMessage, ForgetMessages, AddBlock,
                             RemoveBlock, CountPassword, CheckPassword, HashPassword, SetPassword):
                self.pending.append(lambda node=node, e=e: getattr(self, "_" + type(e).__name__)(node, e))
            else:
                assert type(e) in (SetTimer, CancelTimer, LoggedIn, LoginFailed), e

    def _frames(self, node, conns, frames):
        for conn in conns:
            assert (node, conn) not in self.closed, f"a frame after the close: {frames}"
            self.frames[(node, conn)] += frames

    def run(self) -> None:
        """The engine answers everything asked so far, and what that asks in turn."""
        while self.pending:
            self.pending.popleft()()

    def others(self, node):
        return [(name, logic) for name, logic in self.nodes.items() if name != node]

    def decide(self, node: str, claim: ClaimLogin) -> None:
        """The LOGIN script's decision, answered with ``login_decided``."""
        user, now = claim.user, self.now
        until = self.locks.get(user)
        outcome, mailbox = LoginOutcome.WELCOME, []
        if until is not None and until > now:
            outcome = LoginOutcome.LOCKED
        elif not claim.ok:
            outcome, until = self._count_wrong(node, user)
        elif user in self.online:
            outcome = LoginOutcome.ALREADY
        else:
            self.online[user] = node
            self.failures.pop(user, None)
            for name, logic in self.others(node):
                self.apply(name, logic.remote_login(user, node, now))
            mailbox = [(mid, r["from"], r["size"], r["chars"], r["sent"])
                       for mid, r in sorted(self.kept.items()) if r["to"] == user]
        self.answer(node, claim, outcome, until, mailbox)

    def _count_wrong(self, node: str, user: str) -> tuple[LoginOutcome, float | None]:
        """A wrong password counted as LOGIN counts it: WRONG, or BLOCKED (and the lock told to the others)."""
        self.failures[user] = self.failures.get(user, 0) + 1
        if self.failures[user] < 3:
            return LoginOutcome.WRONG, None
        del self.failures[user]
        until = self.locks[user] = self.now + BLOCK
        for _, logic in self.others(node):
            logic.remote_locked(user, until, self.now)
        return LoginOutcome.BLOCKED, until

    def _CountPassword(self, node, e):
        """A current password given to change it: a right one ends the count; a wrong one is counted by LOGIN."""
        if e.ok:
            self.failures.pop(e.user, None)
            return
        until = self.locks.get(e.user)
        outcome = LoginOutcome.LOCKED if until is not None and until > self.now else None
        if outcome is None:
            outcome, until = self._count_wrong(node, e.user)
        self.apply(node, self.nodes[node].password_counted(e.conn, e.user, outcome, self.now, until=until))

    def _CheckPassword(self, node, e):
        """The node's host's helpers."""
        self.apply(node, self.nodes[node].password_checked(e.conn, verify_password(e.password, e.hashed), self.now))

    def _HashPassword(self, node, e):
        self.apply(node, self.nodes[node].password_hashed(e.conn, hash_password(e.password, log2_n=10), self.now))

    def _SetPassword(self, node, e):
        """The node's host writes its own file."""
        assert self.files[node][e.user] == e.expected
        self.files[node][e.user] = e.field
        self.apply(node, self.nodes[node].password_written(e.conn, e.user, e.field, None, self.now))

    def answer(self, node, claim, outcome, until=None, mailbox=()):
        self.apply(node, self.nodes[node].login_decided(claim.conn, claim.user, outcome, self.now, until=until,
                                                        mailbox=mailbox))

    def _ReleaseLogin(self, node, e):
        if self.online.get(e.user) != node:
            return
        del self.online[e.user]
        self.last[e.user] = self.now
        for name, logic in self.others(node):
            self.apply(name, logic.remote_logout(e.user, node, self.now, self.now))

    def _Relay(self, node, e):
        event = json.loads(json.dumps(e.event))   # as it goes through the engine's stream
        self.apply(e.node, self.nodes[e.node].relayed(event, self.now))

    def _Publish(self, node, e):
        assert e.event["kind"] in ("broadcast", "notice", "password")
        for name, logic in self.others(node):
            if e.event["kind"] == "password":   # (each host writes its own file too)
                self.files[name][e.event["user"]] = e.event["field"]
                self.apply(name, logic.remote_password(e.event["user"], e.event["field"], self.now))
            elif e.event["kind"] == "notice":
                self.apply(name, logic.remote_notice(e.event["text"], self.now))
            else:
                self.apply(name, logic.remote_broadcast(e.event["from"], e.event["text"], self.now))

    def _KeepMessage(self, node, e):
        logic = self.nodes[node]
        code = self._keep(node, e, fresh=not e.relayed)
        if code == "again":   # KEEP's 'again': confirmed, nothing kept
            if e.confirm is not None:
                self.apply(node, [e.confirm])
        elif code is not None:
            self.apply(node, logic.not_stored(e, self.now, code))
        elif self.reply_lost:
            self.apply(node, logic.not_stored(e, self.now, ErrorCode.STORE_FULL))
        elif e.confirm is not None:
            self.apply(node, [e.confirm])

    def _keep(self, node, e, fresh):
        """Keep message ``e`` (a KeepMessage's or RelayMessage's fields) as keep_for does; None, or why not
        (``again``: ``fresh``, and its ref is known)."""
        ref = (e.sender, e.to, e.ref) if e.ref is not None else None
        if fresh and ref in self.refs:
            return "again"
        mine = sum(1 for r in self.kept.values() if r["to"] == e.to)
        code = self.refuse or (ErrorCode.QUEUE_FULL if mine >= self.cap else None)
        if code is not None:
            return code
        size = len(e.text.encode())
        record = {"to": e.to, "from": e.sender, "text": e.text, "sent": e.sent, "size": size, "chars": len(e.text),
                  "cost": stored_size(size)}
        if ref is not None:
            record["ref"] = e.ref
            self.refs[ref] = e.id
        self.kept[e.id] = record
        holder = self.online.get(e.to)
        # (a node has its own kept behind its mailbox; a retry it sent through the engine comes to it too)
        if holder is not None and holder not in self.dead and (holder != node or not getattr(e, "handed_here", True)):
            self.apply(holder, self.nodes[holder].relayed({"kind": "stored", "id": e.id, **record}, self.now))
        return None

    def _RelayMessage(self, node, e):
        """RELAY: dropped (``again``) if it is its sender's node's and its ref is known; to the node ``e.to`` is
        logged in on, if not ``node`` (the inbox of a dead one, ``unread``, until it is reaped), its ref
        remembered; else kept; the answer to ``node`` (``store_full`` if ``reply_lost``)."""
        ref = (e.sender, e.to, e.ref) if e.ref is not None else None
        holder = self.online.get(e.to)
        if e.origin is None and ref in self.refs:
            answer = "again"
        elif holder is not None and holder != node:
            fields = {"kind": "message", "to": e.to, "from": e.sender, "text": e.text, "sent": e.sent, "id": e.id,
                      "node": e.origin or node}
            if ref is not None:
                fields["ref"] = e.ref
                self.refs[ref] = e.id
            event = json.loads(json.dumps(fields))
            if holder in self.dead:
                self.unread[holder].append((e, event))
            else:
                self.apply(holder, self.nodes[holder].relayed(event, self.now))
            answer = "relayed"
        else:
            answer = self._keep(node, e, fresh=False) or "kept"
        if self.reply_lost:
            answer = "store_full"
        self.apply(node, self.nodes[node].relay_answered(e, answer, self.now))

    def kill(self, node):
        """``node`` dies: what it is sent from now on waits in its inbox, unread."""
        self.dead.add(node)

    def reap(self, node):
        """The dead ``node``'s lease ran out (REAP): its users logged out, the messages it never took kept for
        them and their senders' nodes told."""
        for user in [user for user, where in self.online.items() if where == node]:
            del self.online[user]
            self.last[user] = self.now
            for name, logic in self.others(node):
                if name not in self.dead:
                    self.apply(name, logic.remote_logout(user, node, self.now, self.now))
        for e, event in self.unread.pop(node, []):
            code = self._keep(node, e, fresh=False)
            fate = {"to": e.to, "from": e.sender, "how": "stored" if code is None else code.value}
            if e.ref is not None:
                fate["ref"] = e.ref
            origin = event["node"]
            self.apply(origin, self.nodes[origin].relayed({"kind": "taken", "list": [fate]}, self.now))

    def _ForgetMessages(self, node, e):
        for mid in e.ids:
            self.kept.pop(mid, None)
        if e.confirm is not None:
            self.apply(node, [e.confirm])

    def _AddBlock(self, node, e):
        self._block(node, e, True)

    def _RemoveBlock(self, node, e):
        self._block(node, e, False)

    def _block(self, node, e, on):
        (self.blocks.add if on else self.blocks.discard)((e.blocker, e.blocked))
        if e.confirm is not None:
            self.apply(node, [e.confirm])
        for name, logic in self.others(node):
            self.apply(name, logic.remote_block(e.blocker, e.blocked, on, self.now))

    # -- clients --------------------------------------------------------------

    def connect(self, node: str) -> Client:
        conn = next(self.conns)
        self.apply(node, self.nodes[node].connected(conn, self.now, "127.0.0.1"))
        client = Client(self, node, conn)
        client.send({"type": "hello", "version": 2})
        assert client.take() == [{"type": "hello", "version": 2, "timeout": TIMEOUT}]
        return client

    def login(self, node: str, user: str, listen: bool = True) -> Client:
        client = self.connect(node)
        client.send({"type": "username", "username": user})
        client.send({"type": "password", "password": ACCOUNTS[user]})
        self.run()
        frames = client.take()
        assert frames[:2] == [{"type": "username_ok"}, {"type": "welcome", "user": user}]
        self.frames[(node, client.conn)] = frames[2:]   # (what followed the welcome is the test's to take)
        if listen:
            client.send({"type": "listen", "port": 9000 + client.conn, "cert": f"cert-{user}"})
        client.user = user
        return client

    def all_take(self, *clients):
        for client in clients:
            client.take()


class Client:
    """One connection to one node."""

    def __init__(self, fake: Fake, node: str, conn: int) -> None:
        self.fake, self.node, self.conn = fake, node, conn
        self.user: str | None = None

    def send(self, frame: dict) -> None:
        fake = self.fake
        fake.apply(self.node, fake.nodes[self.node].received(self.conn, frame, fake.now))

    def do(self, frame: dict) -> list[dict]:
        """Send ``frame``, let the engine answer everything, and take what came to this client."""
        self.send(frame)
        self.fake.run()
        return self.take()

    def take(self) -> list[dict]:
        frames = self.fake.frames.pop((self.node, self.conn), [])
        return frames

    def drop(self) -> None:
        fake = self.fake
        fake.apply(self.node, fake.nodes[self.node].disconnected(self.conn, fake.now))
        fake.run()

    @property
    def closed(self) -> bool:
        return (self.node, self.conn) in self.fake.closed


def presence(users, online):
    return {"type": "presence", "users": list(users), "online": online}


def msg(sender, text, **extra):
    return {"type": "message", "from": sender, "text": text, **extra}


@pytest.fixture
def fake():
    return Fake()


# -- presence and who is online ------------------------------------------------

def test_a_login_on_one_node_is_told_on_the_others(fake):
    hans = fake.login("a", "hans")
    yoda = fake.login("b", "yoda")
    assert hans.take() == [presence(["yoda"], True)]
    luke = fake.login("c", "luke")
    assert hans.take() == yoda.take() == [presence(["luke"], True)]
    assert luke.take() == []   # not told of its own login
    assert fake.nodes["c"].online_users() == ["hans", "luke", "yoda"]


def test_a_logout_on_one_node_is_told_on_the_others(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert yoda.do({"type": "logout"}) == [{"type": "bye", "reason": "logout"}]
    assert hans.take() == [presence(["yoda"], False)]
    assert fake.online == {"hans": "a"}
    assert fake.nodes["a"].online_users() == ["hans"]


def test_a_lost_connection_releases_the_login(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    yoda.drop()
    assert ReleaseLogin("yoda") in fake.effects["b"]
    assert hans.take() == [presence(["yoda"], False)]
    assert "yoda" not in fake.online


def test_whoelse_lists_the_users_of_every_node(fake):
    hans = fake.login("a", "hans")
    fake.login("b", "yoda")
    fake.login("c", "luke")
    fake.login("a", "leia")
    hans.take()
    assert hans.do({"type": "whoelse"}) == [{"type": "users", "names": ["leia", "luke", "yoda"]}]


def test_whoelsesince_counts_a_logout_on_another_node(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    yoda.do({"type": "logout"})
    fake.now += 50
    hans.take()
    assert hans.do({"type": "whoelsesince", "seconds": 60}) == [{"type": "users", "names": ["yoda"]}]
    assert hans.do({"type": "whoelsesince", "seconds": 40}) == [{"type": "users", "names": []}]


def test_a_remote_user_who_blocked_me_is_hidden_from_presence_and_whoelse(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert yoda.do({"type": "block", "user": "hans"}) == [{"type": "blocked", "user": "hans"}]
    assert hans.do({"type": "whoelse"}) == [{"type": "users", "names": []}]
    yoda.do({"type": "logout"})
    assert hans.take() == []   # yoda's logout is hidden from hans, whom it blocked
    hans.do({"type": "whoelsesince", "seconds": 60})   # (logged out: not listed either)
    yoda = fake.login("c", "yoda")
    assert hans.take() == []   # nor its login
    assert hans.do({"type": "whoelse"}) == [{"type": "users", "names": []}]
    fake.login("b", "luke").take()
    assert hans.take() == [presence(["luke"], True)]


# -- messages ----------------------------------------------------------------

def test_a_message_to_a_user_on_another_node_is_relayed_and_its_sender_told_it_was_delivered(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert hans.do({"type": "message", "to": "yoda", "text": "hello there"}) == [
        {"type": "delivered", "to": "yoda"}]   # once node b took it
    (relay,) = [e for e in fake.effects["a"] if type(e) is RelayMessage]
    assert (relay.to, relay.sender, relay.text, relay.origin) == ("yoda", "hans", "hello there", None)
    assert yoda.take() == [msg("hans", "hello there")]
    assert fake.kept == {}
    # counted once, by the node that handed it to its recipient
    assert [fake.nodes[n].counts.messages_relayed for n in NODES] == [0, 1, 0]


def test_a_message_to_a_user_who_left_meanwhile_is_kept_and_its_sender_told_so(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    hans.send({"type": "message", "to": "yoda", "text": "are you there"})
    yoda.send({"type": "logout"})   # before the relay reaches node b
    fake.run()
    assert [(r["to"], r["from"], r["text"]) for r in fake.kept.values()] == [("yoda", "hans", "are you there")]
    assert hans.take() == [presence(["yoda"], False), {"type": "stored", "to": "yoda"}]   # b had it kept
    yoda = fake.login("c", "yoda")
    assert yoda.take() == [msg("hans", "are you there", id=next(iter(fake.kept)))]


def test_a_message_to_a_user_on_no_node_is_kept_and_confirmed(fake):
    hans = fake.login("a", "hans")
    assert hans.do({"type": "message", "to": "yoda", "text": "later"}) == [{"type": "stored", "to": "yoda"}]
    (mid, record), = fake.kept.items()
    assert (record["to"], record["from"], record["text"]) == ("yoda", "hans", "later")
    yoda = fake.login("b", "yoda", listen=False)
    assert yoda.take() == [msg("hans", "later", id=mid)]
    yoda.do({"type": "ack", "ids": [mid]})
    assert fake.kept == {}
    yoda.do({"type": "logout"})
    assert fake.login("c", "yoda").take() == []


def test_a_message_kept_while_its_user_logs_in_on_another_node_is_delivered_there(fake):
    hans = fake.login("a", "hans")
    hans.send({"type": "message", "to": "yoda", "text": "catch this"})   # kept by the engine after yoda's login
    yoda = fake.connect("b")
    yoda.send({"type": "username", "username": "yoda"})
    yoda.send({"type": "password", "password": ACCOUNTS["yoda"]})
    fake.pending.rotate(1)   # the login is decided first
    fake.run()
    mid = next(iter(fake.kept))
    assert yoda.take() == [{"type": "username_ok"}, {"type": "welcome", "user": "yoda"},
                           msg("hans", "catch this", id=mid)]
    assert {"type": "stored", "to": "yoda"} in hans.take()


@pytest.mark.parametrize("code, answer", [
    (ErrorCode.QUEUE_FULL, {"type": "error", "code": "queue_full", "user": "yoda"}),
    (ErrorCode.QUOTA_EXCEEDED, {"type": "error", "code": "quota_exceeded", "quota": 5000}),
    (ErrorCode.STORE_FULL, {"type": "error", "code": "store_full", "command": "message", "user": "yoda"}),
])
def test_a_message_the_engine_refuses_to_keep_is_refused_with_its_code(code, answer):
    fake = Fake(quota=5000)
    hans = fake.login("a", "hans")
    fake.refuse = code
    assert hans.do({"type": "message", "to": "yoda", "text": "no room"}) == [answer]
    assert fake.kept == {}


# -- a message sent again (its ref) ------------------------------------------------------------

def ref_msg(to, text, ref, retry=None):
    frame = {"type": "message", "to": to, "text": text, "ref": ref}
    return frame if retry is None else {**frame, "retry": retry}


STORE_FULL = {"type": "error", "code": "store_full", "command": "message", "user": "yoda"}
STORED = {"type": "stored", "to": "yoda", "ref": "r.1"}


def kept_once(fake):
    """The one message the engine keeps: its (from, to, text, ref)."""
    (record,) = fake.kept.values()
    return record["from"], record["to"], record["text"], record.get("ref")


def test_a_retry_of_a_message_the_engine_kept_after_all_is_confirmed_and_kept_once(fake):
    hans = fake.login("a", "hans")
    fake.reply_lost = True   # the engine ran KEEP, but node a heard "not kept" (its connection went down)
    assert hans.do(ref_msg("yoda", "once", "r.1")) == [STORE_FULL]
    fake.reply_lost = False
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == [STORED]
    assert kept_once(fake) == ("hans", "yoda", "once", "r.1")
    yoda = fake.login("b", "yoda")
    assert [f["text"] for f in yoda.take()] == ["once"]


@pytest.mark.parametrize("where", ["a", "b"], ids=["on-the-senders-node", "on-another-node"])
def test_a_retry_to_a_user_who_got_the_first_sending_is_not_delivered_again(fake, where):
    hans = fake.login("a", "hans")
    fake.reply_lost = True
    hans.do(ref_msg("yoda", "once", "r.1"))
    fake.reply_lost = False
    yoda = fake.login(where, "yoda")
    (first,) = yoda.take()
    hans.take()
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == []   # taken: the pong says so
    assert yoda.take() == []
    yoda.do({"type": "ack", "ids": [first["id"]]})
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == []   # remembered after the acknowledgement too
    assert yoda.take() == [] and fake.kept == {}


@pytest.mark.parametrize("where", ["a", "b"], ids=["on-the-senders-node", "on-another-node"])
def test_a_retry_the_engine_never_kept_reaches_its_user_online_once_as_a_stored_message(fake, where):
    hans = fake.login("a", "hans")
    fake.refuse = ErrorCode.STORE_FULL   # (the engine was away: nothing kept)
    assert hans.do(ref_msg("yoda", "once", "r.1")) == [STORE_FULL]
    fake.refuse = None
    yoda = fake.login(where, "yoda")
    assert yoda.take() == [] and hans.take() == [presence(["yoda"], True)]
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == []   # yoda is online: no `stored`
    (mid,) = fake.kept
    assert yoda.take() == [msg("hans", "once", id=mid)]
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == [] and yoda.take() == []


@pytest.mark.parametrize("where", ["a", "b"], ids=["on-the-senders-node", "on-another-node"])
def test_a_retry_the_engine_refuses_again_is_refused_even_to_a_user_online(fake, where):
    hans = fake.login("a", "hans")
    yoda = fake.login(where, "yoda")
    fake.all_take(hans, yoda)
    fake.refuse = ErrorCode.STORE_FULL
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == [STORE_FULL]
    assert yoda.take() == [] and fake.kept == {}


def test_a_first_sending_to_a_user_online_goes_live_with_its_ref_and_is_kept_with_it_if_they_left(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert hans.do(ref_msg("yoda", "live", "r.1")) == [{"type": "delivered", "to": "yoda", "ref": "r.1"}]
    assert yoda.take() == [msg("hans", "live")]
    hans.send(ref_msg("yoda", "too late", "r.2"))
    yoda.send({"type": "logout"})   # before the relay reaches node b
    fake.run()
    assert kept_once(fake) == ("hans", "yoda", "too late", "r.2")
    # Its answer after its pong: kept, naming its ref (a client that missed it sends it again, below).
    assert hans.take() == [{"type": "presence", "users": ["yoda"], "online": False},
                           {"type": "stored", "to": "yoda", "ref": "r.2"}]
    assert hans.do(ref_msg("yoda", "too late", "r.2", True)) == [{"type": "stored", "to": "yoda", "ref": "r.2"}]
    assert len(fake.kept) == 1


# -- refs on a relayed message's way: RELAY remembers them, each keep on the way keeps them -------------------------

def test_a_retry_of_a_message_relayed_and_delivered_on_another_node_is_taken_by_the_pong_and_not_delivered_twice(
        fake):
    """RELAY handed the message to node b, but node a heard store_full (the engine's reply was lost): its
    sender's client sends it again; the engine knows its ref (RELAY remembered it), so the retry is confirmed
    by the pong alone and yoda does not get it twice."""
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.reply_lost = True
    answers = hans.do(ref_msg("yoda", "once", "r.1"))
    assert sorted(answers, key=lambda f: f["type"]) == [
        {"type": "delivered", "to": "yoda", "ref": "r.1"},   # (node b took it: its fate)
        {**STORE_FULL, "ref": "r.1"}]                         # (what node a heard of RELAY: after its pong)
    assert yoda.take() == [msg("hans", "once")]
    fake.reply_lost = False
    assert hans.do(ref_msg("yoda", "once", "r.1", True)) == []
    assert yoda.take() == [] and fake.kept == {}


def test_a_first_relay_whose_ref_the_engine_knows_is_dropped_and_nothing_more_is_said(fake):
    """Its retry's KEEP ran first (the relay's bytes waited in a stopped engine): the relay does nothing."""
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.refs[("hans", "yoda", "r.1")] = 5
    assert hans.do(ref_msg("yoda", "late", "r.1")) == []
    assert yoda.take() == [] and fake.kept == {}


def test_a_message_relayed_behind_a_mailbox_on_its_way_is_kept_with_its_ref_not_taken_for_a_repeat(fake):
    hans = fake.login("a", "hans")
    for n in range(10):   # more than one chunk of a mailbox
        assert hans.do({"type": "message", "to": "yoda", "text": f"{n} " + "x" * 4000}) == [
            {"type": "stored", "to": "yoda"}]
    yoda = fake.connect("b")
    yoda.send({"type": "username", "username": "yoda"})
    yoda.send({"type": "password", "password": ACCOUNTS["yoda"]})
    while {"type": "welcome", "user": "yoda"} not in fake.frames[("b", yoda.conn)]:
        fake.pending.popleft()()
    fake.refs[("hans", "yoda", "r.1")] = 99   # RELAY remembered its ref as it handed it to node b
    fake.apply("b", fake.nodes["b"].relayed({"kind": "message", "to": "yoda", "from": "hans", "text": "behind",
                                             "sent": 5.0, "id": 99, "node": "a", "ref": "r.1"}, fake.now))
    (keep,) = [e for e in fake.effects["b"] if type(e) is KeepMessage]
    assert (keep.ref, keep.relayed) == ("r.1", True)
    fake.pending.rotate(2)   # (the keep and the fate before the mailbox's next chunk: a host has the text at hand)
    fake.run()
    assert [(r["text"], r.get("ref")) for r in fake.kept.values()][-1] == ("behind", "r.1")
    got = yoda.take()
    assert [f["text"] for f in got if f["type"] == "message"][-1] == "behind" and "id" in got[-1]
    assert hans.take() == [presence(["yoda"], True), {"type": "delivered", "to": "yoda", "ref": "r.1"}]


def test_a_message_relayed_to_a_node_its_user_left_is_relayed_again_and_kept_with_its_ref(fake):
    hans = fake.login("a", "hans")
    fake.all_take(hans)
    fake.refs[("hans", "luke", "r.1")] = 9
    effects = fake.nodes["b"].relayed({"kind": "message", "to": "luke", "from": "hans", "text": "hi", "sent": 5.0,
                                       "id": 9, "node": "a", "ref": "r.1"}, fake.now)
    (relay,) = effects
    assert (type(relay), relay.origin, relay.ref) == (RelayMessage, "a", "r.1")
    fake.apply("b", effects)
    fake.run()
    assert kept_once(fake) == ("hans", "luke", "hi", "r.1")   # on its way: not taken for a repeat
    assert hans.take() == [{"type": "stored", "to": "luke", "ref": "r.1"}]


def test_a_dead_nodes_untaken_message_is_kept_with_its_ref_and_a_retry_of_it_is_confirmed_and_kept_once(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.kill("b")
    assert hans.do(ref_msg("yoda", "into the void", "r.1")) == []
    fake.reap("b")
    assert hans.take() == [presence(["yoda"], False), {"type": "stored", "to": "yoda", "ref": "r.1"}]
    assert kept_once(fake) == ("hans", "yoda", "into the void", "r.1")
    assert hans.do(ref_msg("yoda", "into the void", "r.1", True)) == [{"type": "stored", "to": "yoda", "ref": "r.1"}]
    assert len(fake.kept) == 1


def test_the_mailbox_cap_is_the_engines(fake):
    fake.cap = 2
    hans = fake.login("a", "hans")
    assert hans.do({"type": "message", "to": "yoda", "text": "1"}) == [{"type": "stored", "to": "yoda"}]
    assert hans.do({"type": "message", "to": "yoda", "text": "2"}) == [{"type": "stored", "to": "yoda"}]
    assert hans.do({"type": "message", "to": "yoda", "text": "3"}) == [
        {"type": "error", "code": "queue_full", "user": "yoda"}]


# -- what became of a relayed message: a node's death loses none ------------------------

def test_messages_to_the_users_of_a_dead_node_are_kept_when_its_lease_runs_out_and_their_senders_told(fake):
    hans, luke, yoda = fake.login("a", "hans"), fake.login("a", "luke"), fake.login("b", "yoda")
    fake.all_take(hans, luke, yoda)
    fake.kill("b")   # its lease runs on: messages for yoda go to its inbox, which nobody reads
    for n in range(3):
        assert hans.do({"type": "message", "to": "yoda", "text": f"are you there {n}"}) == []   # nothing yet
    assert luke.do({"type": "message", "to": "yoda", "text": "me too"}) == []
    fake.reap("b")
    assert hans.take() == [presence(["yoda"], False)] + [{"type": "stored", "to": "yoda"}] * 3
    assert luke.take() == [presence(["yoda"], False), {"type": "stored", "to": "yoda"}]
    yoda = fake.login("c", "yoda")   # once, on any node
    assert [(m["from"], m["text"]) for m in yoda.take()] == [("hans", f"are you there {n}") for n in range(3)] + [
        ("luke", "me too")]
    hans.take()
    assert hans.do({"type": "message", "to": "yoda", "text": "welcome back"}) == [{"type": "delivered", "to": "yoda"}]


def test_a_message_for_a_dead_node_that_does_not_fit_is_refused_to_its_sender_when_it_is_reaped(fake):
    fake.cap = 1
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.kill("b")
    hans.do({"type": "message", "to": "yoda", "text": "fits"})
    hans.do({"type": "message", "to": "yoda", "text": "does not"})
    fake.reap("b")
    assert hans.take() == [presence(["yoda"], False), {"type": "stored", "to": "yoda"},
                           {"type": "error", "code": "queue_full", "user": "yoda"}]


@pytest.mark.parametrize("answer, frame", [
    ("kept", {"type": "stored", "to": "yoda"}),
    ("queue_full", {"type": "error", "code": "queue_full", "user": "yoda"}),
    ("quota_exceeded", {"type": "error", "code": "quota_exceeded", "quota": 5000}),
    ("store_full", {"type": "error", "code": "store_full", "command": "message", "user": "yoda"}),
    ("relayed", None),
])
def test_the_engines_answer_to_a_relay_reaches_its_sender(answer, frame):
    fake = Fake(quota=5000)
    hans = fake.login("a", "hans")
    relay = RelayMessage(7, "yoda", "hans", "hi", None)
    fake.apply("a", fake.nodes["a"].relay_answered(relay, answer, fake.now))
    assert hans.take() == ([] if frame is None else [frame])


def test_what_became_of_a_message_relayed_again_goes_to_its_senders_node(fake):
    """Node b took a message for yoda, who had just left it for c: relayed again, and a is told by c."""
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    effects = fake.nodes["b"].relayed({"kind": "message", "to": "luke", "from": "hans", "text": "hi", "sent": 5.0,
                                       "id": 9, "node": "a"}, fake.now)
    (relay,) = effects
    assert (type(relay), relay.to, relay.sender, relay.origin, relay.sent) == (RelayMessage, "luke", "hans", "a", 5.0)
    assert fake.nodes["b"].relay_answered(relay, "kept", fake.now) == [
        Relay("a", {"kind": "taken", "list": [{"to": "luke", "from": "hans", "how": "stored"}]})]


def test_a_message_its_recipient_blocked_meanwhile_is_refused_to_its_sender(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    yoda.send({"type": "block", "user": "hans"})
    hans.send({"type": "message", "to": "yoda", "text": "hi"})   # (a hears of the block after the message left)
    fake.pending.rotate(-1)
    fake.run()
    assert {"type": "error", "code": "blocked_by_recipient", "user": "yoda"} in hans.take()
    assert msg("hans", "hi") not in yoda.take()


def test_a_fate_for_a_sender_gone_meanwhile_is_dropped(fake):
    hans = fake.login("a", "hans")
    hans.do({"type": "logout"})
    assert fake.nodes["a"].relayed({"kind": "taken", "list": [{"to": "yoda", "from": "hans", "how": "stored"}]},
                                   fake.now) == []


# -- broadcasts -----------------------------------------------------------------

def test_a_broadcast_reaches_every_node_but_those_who_blocked_the_sender(fake):
    hans, yoda, luke, leia = (fake.login("a", "hans"), fake.login("b", "yoda"), fake.login("c", "luke"),
                              fake.login("a", "leia"))
    luke.do({"type": "block", "user": "hans"})
    fake.all_take(hans, yoda, luke, leia)
    assert hans.do({"type": "broadcast", "text": "all hands"}) == [{"type": "broadcast_partial"}]
    assert yoda.take() == leia.take() == [msg("hans", "all hands", broadcast=True)]
    assert luke.take() == []


def test_a_broadcast_nobody_blocked_is_not_partial(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert hans.do({"type": "broadcast", "text": "hi all"}) == []
    assert yoda.take() == [msg("hans", "hi all", broadcast=True)]


def test_a_broadcast_read_late_by_the_node_its_sender_moved_to_is_not_shown_to_its_sender(fake):
    """hans broadcast on a, logged out and in again on b before b read the broadcast (the simulator's seed 5)."""
    hans, yoda = fake.login("b", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.apply("b", fake.nodes["b"].remote_broadcast("hans", "sent from a", fake.now))
    assert yoda.take() == [msg("hans", "sent from a", broadcast=True)]
    assert hans.take() == []


def test_a_block_by_a_user_who_is_offline_does_not_make_a_broadcast_partial(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    yoda.do({"type": "block", "user": "hans"})
    yoda.do({"type": "logout"})
    fake.login("c", "luke")
    hans.take()
    assert hans.do({"type": "broadcast", "text": "anyone"}) == []


# -- the operator's commands reach a user on whatever node serves it ------------------

def test_a_kick_given_on_one_node_ends_the_session_of_a_user_on_another(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.apply("a", fake.nodes["a"].kick("yoda", "spamming", fake.now))
    assert Relay("b", {"kind": "kick", "to": "yoda", "reason": "spamming"}) in fake.effects["a"]
    fake.run()
    assert yoda.take() == [{"type": "bye", "reason": "operator", "text": "spamming"}] and yoda.closed
    assert hans.take() == [presence(["yoda"], False)]
    assert fake.nodes["a"].kick("yoda", None, fake.now) == []   # gone from every node's view


def test_a_lock_given_on_one_node_kicks_its_user_on_another(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    fake.apply("a", fake.nodes["a"].lock("yoda", fake.now + 60, fake.now))
    fake.run()
    assert yoda.take() == [{"type": "bye", "reason": "operator"}]
    assert fake.nodes["a"].is_locked("yoda", fake.now) and fake.nodes["a"].counts.lockouts.operator == 1


def test_a_notice_given_on_one_node_reaches_the_users_of_every_node(fake):
    hans, yoda, luke = fake.login("a", "hans"), fake.login("b", "yoda"), fake.login("c", "luke")
    fake.all_take(hans, yoda, luke)
    fake.apply("b", fake.nodes["b"].notice("maintenance at noon", fake.now))
    fake.run()
    for client in (hans, yoda, luke):
        assert client.take() == [{"type": "notice", "text": "maintenance at noon"}]


def test_a_relayed_kick_for_a_user_who_left_meanwhile_does_nothing(fake):
    yoda = fake.login("b", "yoda")
    yoda.take()
    assert fake.nodes["b"].relayed({"kind": "kick", "to": "hans", "reason": 5}, fake.now) == []
    assert yoda.take() == []


# -- private chat across nodes ---------------------------------------------------

def request(fake):
    """hans on a asks yoda on b for a private chat; the request lives on b."""
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda")
    fake.all_take(hans, yoda)
    assert hans.do({"type": "startprivate", "user": "yoda"}) == []
    assert yoda.take() == [{"type": "private_request", "from": "hans"}]
    return hans, yoda


def test_a_private_request_to_a_user_on_another_node_lives_on_its_node(fake):
    request(fake)
    assert Relay("b", {"kind": "startprivate", "from": "hans", "to": "yoda", "cert": "cert-hans"}) in fake.effects["a"]


def test_a_declined_private_request_is_told_across_nodes(fake):
    hans, yoda = request(fake)
    assert yoda.do({"type": "private_answer", "user": "hans", "accept": False}) == []
    assert hans.take() == [{"type": "error", "code": "private_declined", "user": "yoda"}]
    assert yoda.do({"type": "private_answer", "user": "hans", "accept": True}) == [
        {"type": "error", "code": "no_request", "user": "hans"}]


def test_an_accepted_private_request_connects_across_nodes_with_the_certs(fake):
    hans, yoda = request(fake)
    assert yoda.do({"type": "private_answer", "user": "hans", "accept": True}) == [
        {"type": "private_expect", "user": "hans", "token": "token1", "cert": "cert-hans"}]
    assert yoda.do({"type": "private_ready", "user": "hans", "token": "token1"}) == []
    assert hans.take() == [{"type": "private_connect", "user": "yoda", "host": "127.0.0.1",
                            "port": 9000 + yoda.conn, "token": "token1", "cert": "cert-yoda"}]


def test_a_second_private_request_while_one_is_open_is_pending(fake):
    hans, yoda = request(fake)
    assert hans.do({"type": "startprivate", "user": "yoda"}) == [
        {"type": "error", "code": "private_pending", "user": "yoda"}]
    assert yoda.do({"type": "startprivate", "user": "hans"}) == [
        {"type": "error", "code": "private_pending", "user": "hans"}]


def test_a_private_request_to_a_user_without_listen_is_unavailable(fake):
    hans, yoda = fake.login("a", "hans"), fake.login("b", "yoda", listen=False)
    fake.all_take(hans, yoda)
    assert hans.do({"type": "startprivate", "user": "yoda"}) == [
        {"type": "error", "code": "private_unavailable", "user": "yoda"}]
    assert yoda.take() == []


@pytest.mark.parametrize("who", ["requester", "target"])
def test_a_private_request_ends_when_either_side_logs_out(fake, who):
    hans, yoda = request(fake)
    leaving, staying, other = (hans, yoda, "hans") if who == "requester" else (yoda, hans, "yoda")
    leaving.do({"type": "logout"})
    assert staying.take() == [{"type": "private_cancelled", "user": other}, presence([other], False)]
    fake.login("c" if who == "requester" else "b", other)
    if who == "requester":   # the request is gone with it: an answer finds none
        assert yoda.do({"type": "private_answer", "user": "hans", "accept": True})[-1] == {
            "type": "error", "code": "no_request", "user": "hans"}


@pytest.mark.parametrize("who", ["requester", "target"])
def test_a_private_request_ends_when_either_side_blocks_the_other(fake, who):
    hans, yoda = request(fake)
    blocker, other = (hans, "yoda") if who == "requester" else (yoda, "hans")
    answers = blocker.do({"type": "block", "user": other})   # (in either order: one goes through the engine)
    assert sorted(answers, key=str) == [{"type": "blocked", "user": other},
                                        {"type": "private_cancelled", "user": other}]
    assert (yoda if blocker is hans else hans).take() == [{"type": "private_cancelled", "user": blocker.user}]
    assert yoda.do({"type": "private_answer", "user": "hans", "accept": True}) == [
        {"type": "error", "code": "no_request", "user": "hans"}]


def test_an_accepted_request_whose_token_expires_is_cancelled_for_both(fake):
    hans, yoda = request(fake)
    yoda.do({"type": "private_answer", "user": "hans", "accept": True})
    fake.now += TTL + 1
    fake.apply("b", fake.nodes["b"].timer_fired(("private", "hans", "yoda"), fake.now))
    fake.run()
    assert yoda.take() == [{"type": "private_cancelled", "user": "hans"}]
    assert hans.take() == [{"type": "private_cancelled", "user": "yoda"}]


# -- logins decided by the engine ---------------------------------------------------

def claimed(fake, node, user, password):
    """A connection on ``node`` that gave ``user`` and ``password``; its ClaimLogin is held, not answered."""
    fake.claims_held = True
    client = fake.connect(node)
    client.send({"type": "username", "username": user})
    client.send({"type": "password", "password": password})
    assert client.take() == [{"type": "username_ok"}]
    (where, claim), = fake.claims
    fake.claims.clear()
    assert where == node and (claim.conn, claim.user) == (client.conn, user)
    return client, claim


def test_welcome_brings_the_mailbox(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    assert claim.ok
    fake.kept[7] = {"to": "yoda", "from": "hans", "text": "kept for you", "sent": 123.0, "size": 12, "chars": 12}
    fake.answer("a", claim, LoginOutcome.WELCOME, mailbox=[(7, "hans", 12, 12, 123.0)])
    assert client.take() == [{"type": "welcome", "user": "yoda"}, msg("hans", "kept for you", id=7, sent=123.0)]


def test_wrong_is_invalid_password_and_the_password_may_come_again(fake):
    client, claim = claimed(fake, "a", "yoda", "nope")
    assert not claim.ok
    fake.answer("a", claim, LoginOutcome.WRONG)
    assert client.take() == [{"type": "error", "code": "invalid_password"}]
    client.send({"type": "password", "password": ACCOUNTS["yoda"]})
    assert len(fake.claims) == 1


def test_blocked_closes_and_locks_the_account_here(fake):
    client, claim = claimed(fake, "a", "yoda", "nope")
    fake.answer("a", claim, LoginOutcome.BLOCKED, until=fake.now + BLOCK)
    assert client.take() == [{"type": "error", "code": "account_blocked", "retry": BLOCK}]
    assert client.closed
    assert fake.nodes["a"].counts.lockouts.passwords == 1 and fake.nodes["a"].counts.logins_failed.wrong_password == 1
    again = fake.connect("a")
    again.send({"type": "username", "username": "yoda"})
    assert again.take() == [{"type": "error", "code": "account_locked", "retry": BLOCK}]
    fake.now += BLOCK
    assert fake.connect("a").do({"type": "username", "username": "yoda"}) == [{"type": "username_ok"}]


def test_locked_closes_with_account_locked(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    fake.answer("a", claim, LoginOutcome.LOCKED, until=fake.now + 5)
    assert client.take() == [{"type": "error", "code": "account_locked", "retry": 5}]
    assert client.closed
    assert fake.nodes["a"].is_locked("yoda", fake.now)


def test_already_lets_the_connection_try_another_name(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    fake.answer("a", claim, LoginOutcome.ALREADY)
    assert client.take() == [{"type": "error", "code": "already_logged_in", "user": "yoda"}]
    fake.claims_held = False
    assert client.do({"type": "username", "username": "hans"}) == [{"type": "username_ok"}]
    assert client.do({"type": "password", "password": ACCOUNTS["hans"]}) == [{"type": "welcome", "user": "hans"}]


def test_unavailable_is_cluster_unavailable_and_counts_nothing(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    fake.answer("a", claim, LoginOutcome.UNAVAILABLE)
    assert client.take() == [{"type": "error", "code": "cluster_unavailable"}]
    fake.claims_held = False
    assert client.do({"type": "password", "password": ACCOUNTS["yoda"]}) == [{"type": "welcome", "user": "yoda"}]


def test_a_welcome_for_a_connection_gone_meanwhile_releases_the_login(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    client.drop()
    assert ReleaseLogin("yoda") not in fake.effects["a"]   # it had not logged in
    effects = fake.nodes["a"].login_decided(claim.conn, "yoda", LoginOutcome.WELCOME, fake.now)
    assert effects == [ReleaseLogin("yoda")]


def test_a_welcome_after_a_new_connection_took_the_same_number_is_not_its(fake):
    client, claim = claimed(fake, "a", "yoda", ACCOUNTS["yoda"])
    fake.answer("a", ClaimLogin(claim.conn, "hans", True), LoginOutcome.WELCOME)
    assert client.take() == []   # it claimed yoda, not hans: the answer is not its
    assert ReleaseLogin("hans") in fake.effects["a"]


def test_the_same_user_on_two_nodes_is_already_logged_in(fake):
    fake.login("a", "yoda")
    client = fake.connect("b")
    client.send({"type": "username", "username": "yoda"})
    assert client.do({"type": "password", "password": ACCOUNTS["yoda"]}) == [
        {"type": "username_ok"}, {"type": "error", "code": "already_logged_in", "user": "yoda"}]


def test_three_wrong_passwords_over_three_nodes_lock_the_account_everywhere(fake):
    for node in ("a", "b"):
        client = fake.connect(node)
        client.send({"type": "username", "username": "yoda"})
        assert client.do({"type": "password", "password": "nope"})[-1] == {"type": "error", "code": "invalid_password"}
    client = fake.connect("c")
    client.send({"type": "username", "username": "yoda"})
    assert client.do({"type": "password", "password": "nope"})[-1] == {
        "type": "error", "code": "account_blocked", "retry": BLOCK}
    for node in NODES:   # told at the user name on every node, not only the one that locked it
        assert fake.connect(node).do({"type": "username", "username": "yoda"}) == [
            {"type": "error", "code": "account_locked", "retry": BLOCK}]


def test_a_welcome_for_a_user_known_on_a_dead_node_drops_the_stale_one_first(fake):
    hans = fake.login("a", "hans")
    fake.nodes["a"].remote_login("yoda", "c", fake.now)   # c died before telling yoda's logout
    hans.take()
    yoda = fake.connect("a")
    yoda.send({"type": "username", "username": "yoda"})
    assert yoda.do({"type": "password", "password": ACCOUNTS["yoda"]}) == [
        {"type": "username_ok"}, {"type": "welcome", "user": "yoda"}]   # not told of its own old logout
    assert hans.take() == [presence(["yoda"], False), presence(["yoda"], True)]
    assert fake.nodes["a"].online_users() == ["hans", "yoda"]


# -- a user's own new password, counted by the engine and told to every node --------------------------

def change(client, current, new="new*secret"):
    return client.do({"type": "change_password", "current": current, "new": new})


def test_a_password_changed_on_one_node_is_in_force_on_every_node(fake):
    yoda = fake.login("a", "yoda")
    assert change(yoda, ACCOUNTS["yoda"]) == [{"type": "password_changed"}]
    field = fake.files["a"]["yoda"]
    assert verify_password("new*secret", field) and all(fake.files[n]["yoda"] == field for n in NODES)
    assert all(logic.logins.accounts["yoda"] == field for logic in fake.nodes.values())
    publish = [e for e in fake.effects["a"] if type(e) is Publish and e.event["kind"] == "password"]
    assert [e.event for e in publish] == [{"kind": "password", "user": "yoda", "field": field}]
    yoda.do({"type": "logout"})
    client = fake.connect("c")
    client.send({"type": "username", "username": "yoda"})
    assert client.do({"type": "password", "password": ACCOUNTS["yoda"]})[-1] == {
        "type": "error", "code": "invalid_password"}
    assert client.do({"type": "password", "password": "new*secret"}) == [{"type": "welcome", "user": "yoda"}]


def test_wrong_current_passwords_are_counted_by_the_engine_with_the_logins_of_every_node(fake):
    yoda = fake.login("a", "yoda")
    assert change(yoda, "guess") == [{"type": "error", "code": "wrong_password"}]
    client = fake.connect("b")
    client.send({"type": "username", "username": "yoda"})
    assert client.do({"type": "password", "password": "nope"})[-1] == {"type": "error", "code": "invalid_password"}
    assert change(yoda, "guess") == [{"type": "error", "code": "account_blocked", "retry": BLOCK}]
    assert yoda.closed and fake.online == {}
    for node in NODES:   # locked on every node
        assert fake.connect(node).do({"type": "username", "username": "yoda"}) == [
            {"type": "error", "code": "account_locked", "retry": BLOCK}]


def test_a_right_current_password_ends_the_engines_count(fake):
    fake.failures["yoda"] = 2
    yoda = fake.login("a", "yoda")   # (a login ends it too: so it begins again after)
    fake.failures["yoda"] = 2
    assert change(yoda, ACCOUNTS["yoda"]) == [{"type": "password_changed"}]
    assert "yoda" not in fake.failures


def test_a_count_the_engine_could_not_make_changes_nothing(fake):
    yoda = fake.login("a", "yoda")
    yoda.send({"type": "change_password", "current": "guess", "new": "new*secret"})
    assert fake.effects["a"][-1] == CountPassword(yoda.conn, "yoda", False)
    fake.pending.clear()   # the engine never answers: the host says UNAVAILABLE
    fake.apply("a", fake.nodes["a"].password_counted(yoda.conn, "yoda", LoginOutcome.UNAVAILABLE, fake.now))
    assert yoda.take() == [{"type": "error", "code": "password_not_changed"}]
    assert "yoda" not in fake.failures and fake.nodes["a"].logins.accounts["yoda"] == ACCOUNTS["yoda"]


def test_a_new_password_for_an_account_this_node_has_not_is_only_logged(fake, caplog):
    assert fake.nodes["b"].remote_password("nobody", "$scrypt$x", fake.now) == []
    assert "nobody" not in fake.nodes["b"].logins.accounts
    assert "nobody changed their password on another node, but has no account here" in caplog.text


# -- losing the cluster, and resyncing -------------------------------------------------

def test_cluster_lost_ends_every_session_here_without_releasing_logins(fake):
    hans, leia, yoda = fake.login("a", "hans"), fake.login("a", "leia"), fake.login("b", "yoda")
    fake.all_take(hans, leia, yoda)
    effects = fake.nodes["a"].cluster_lost(fake.now)
    fake.apply("a", effects)
    assert not any(type(e) is ReleaseLogin for e in effects)
    assert hans.take() == leia.take() == [{"type": "bye", "reason": "cut_off"}]
    assert hans.closed and leia.closed
    assert fake.nodes["a"].online_users() == ["yoda"]
    assert fake.nodes["a"].cluster_lost(fake.now) == []


def test_sessions_another_node_took_while_the_engine_had_lost_its_state_end_and_are_its_users_now(fake):
    hans, leia, yoda = fake.login("a", "hans"), fake.login("a", "leia"), fake.login("b", "yoda")
    fake.all_take(hans, leia, yoda)
    fake.apply("a", fake.nodes["a"].sessions_taken({"leia": "c"}, fake.now))
    assert leia.take() == [{"type": "bye", "reason": "cut_off"}] and leia.closed
    assert hans.take() == []   # leia did not leave the chat: she is on c now
    assert not any(type(e) is ReleaseLogin for e in fake.effects["a"])   # the login is c's
    assert hans.do({"type": "whoelse"}) == [{"type": "users", "names": ["leia", "yoda"]}]
    assert fake.nodes["a"].sessions_taken({"leia": "c"}, fake.now) == []


def test_resync_tells_the_logins_and_logouts_missed(fake):
    hans = fake.login("a", "hans")
    fake.nodes["a"].remote_login("yoda", "b", fake.now)
    hans.take()
    fake.now += 5
    effects = fake.nodes["a"].resync({"hans": "a", "luke": "c", "leia": "b"}, {"yoda": fake.now - 2}, [], {}, "a",
                                     fake.now)
    fake.apply("a", effects)
    assert hans.take() == [presence(["yoda"], False), presence(["luke", "leia"], True)]
    assert fake.nodes["a"].online_users() == ["hans", "leia", "luke"]
    assert hans.do({"type": "whoelsesince", "seconds": 3}) == [{"type": "users", "names": ["leia", "luke", "yoda"]}]


def test_resync_takes_the_blocks_and_locks(fake):
    hans = fake.login("a", "hans")
    fake.nodes["a"].remote_login("yoda", "b", fake.now)
    hans.take()
    fake.apply("a", fake.nodes["a"].resync({"hans": "a", "yoda": "b"}, {}, [("yoda", "hans")],
                                           {"luke": fake.now + 5}, "a", fake.now))
    assert hans.take() == []
    assert hans.do({"type": "whoelse"}) == [{"type": "users", "names": []}]
    assert fake.connect("a").do({"type": "username", "username": "luke"}) == [
        {"type": "error", "code": "account_locked", "retry": 5}]


def test_resync_drops_a_private_request_of_a_user_gone_meanwhile(fake):
    hans, yoda = request(fake)
    fake.apply("b", fake.nodes["b"].resync({"yoda": "b"}, {"hans": fake.now}, [], {}, "b", fake.now))
    assert yoda.take() == [{"type": "private_cancelled", "user": "hans"}, presence(["hans"], False)]


# -- what other nodes send that is not well formed --------------------------------------

@pytest.mark.parametrize("event", [{}, {"kind": "bogus"}, {"kind": "message", "to": "yoda"},
                                   {"kind": "stored", "to": "yoda", "id": "x", "from": "hans", "size": 1, "chars": 1},
                                   {"kind": "deliver"}, {"kind": "startprivate", "from": "hans"}])
def test_a_malformed_relayed_event_is_dropped(fake, event):
    yoda = fake.login("b", "yoda")
    assert fake.nodes["b"].relayed(event, fake.now) == []
    assert yoda.take() == []
