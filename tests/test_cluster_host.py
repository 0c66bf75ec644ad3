"""A cluster node's host in this process, on a real engine: what it does with the news the other nodes send."""
from __future__ import annotations

import json
import time

import pytest

from reactor.cluster import scripts
from reactor.cluster.engine import Engine
from reactor.cluster.host import ClusterHost
from reactor.cluster.keeping import EngineDurability, message_record
from reactor.cluster.rules import ClusterChatServer, LoginOutcome
from reactor.server.effects import Remember
from reactor.server.mail import REF_MEMORY
from tests.support import ACCOUNTS, PATIENCE, login_peer, run_until

pytestmark = pytest.mark.e2e


def test_a_news_entry_whose_handling_raises_does_not_stop_the_node_reading_its_news(loop, engine):
    logic = ClusterChatServer(ACCOUNTS, 10.0, 60.0, first_id=1)
    host = ClusterHost(loop, logic, ("127.0.0.1", engine.port), "n1")
    host.start_cluster()
    other = Engine(loop, "127.0.0.1", engine.port)
    other.start()

    def news(user):   # user logged in on node n2: an entry on the stream every node reads
        other.call("XADD", "{chat}:events", "*", "e", json.dumps({"kind": "login", "user": user, "node": "n2"}))

    deadline = time.monotonic() + PATIENCE
    while "leia" not in logic.online_users():   # once the node reads its news (one posted earlier may be missed)
        assert time.monotonic() < deadline, "the node never read its news"
        if other.up:
            news("leia")
        for _ in range(20):
            loop.run_once(timeout=0.01)
    real = logic.remote_login

    def broken_once(user, node, now):
        logic.remote_login = real
        raise RuntimeError("a bug in a handler")

    logic.remote_login = broken_once
    news("yoda")
    news("hans")
    run_until(loop, lambda: "hans" in logic.online_users(), timeout=PATIENCE)
    assert "yoda" not in logic.online_users()   # its handling failed: dropped, and logged
    other.close()
    host.shutdown()


class WithAPhantom(ClusterChatServer):
    """A node's rules, but each login's mailbox holds one message more, id 999, that the engine never kept."""

    def login_decided(self, conn, user, outcome, now, *, until=None, mailbox=()):
        if outcome is LoginOutcome.WELCOME:
            mailbox = [*mailbox, (999, "leia", 4, 4, None, None)]
        return super().login_decided(conn, user, outcome, now, until=until, mailbox=mailbox)


def log_in(loop, host, user):
    """``user`` logged in on ``host`` (a node answers ``try_again`` until it has joined the cluster); its peer
    holds what came after the welcome."""
    peer = login_peer(loop, host, user, password=False)
    deadline = time.monotonic() + PATIENCE
    while not peer.has("welcome"):
        assert time.monotonic() < deadline, peer.got
        asked = len(peer.got)
        peer.send({"type": "password", "password": ACCOUNTS[user]})
        run_until(loop, lambda asked=asked: len(peer.read()) > asked, timeout=PATIENCE)
    welcome = [frame["type"] for frame in peer.got].index("welcome")
    del peer.got[:welcome + 1]   # (what follows the welcome is the test's)
    return peer


def test_a_stored_message_whose_text_the_node_has_not_is_left_out_logged_and_the_others_arrive(loop, engine,
                                                                                              caplog):
    """The one answer of both hosts (reactor/server/durability.py; the single process's: test_server_host.py)."""
    host = ClusterHost(loop, WithAPhantom(ACCOUNTS, 10.0, 60.0, first_id=1), ("127.0.0.1", engine.port), "n1")
    host.serve("127.0.0.1", 0)
    host.start_cluster()
    hans = log_in(loop, host, "hans")
    hans.send({"type": "message", "to": "yoda", "text": "kept by the engine"})
    run_until(loop, lambda: hans.has("stored"), timeout=PATIENCE)
    yoda = log_in(loop, host, "yoda")
    yoda.send({"type": "ping"})
    run_until(loop, lambda: yoda.has("pong"), timeout=PATIENCE)
    assert [{k: v for k, v in m.items() if k != "id"} for m in yoda.messages()] == [
        {"type": "message", "from": "hans", "text": "kept by the engine"}]
    assert "stored message 999 has no text in the store: not sent" in caplog.text
    host.shutdown()


def test_the_engine_keeps_to_the_cap_the_rules_were_given(loop, engine):
    """``queue_cap`` has one owner, the rules (``ChatServer.queue_cap``): the node's engine checks that figure."""
    logic = ClusterChatServer(ACCOUNTS, 10.0, 60.0, first_id=1, queue_cap=1, rate=None)
    host = ClusterHost(loop, logic, ("127.0.0.1", engine.port), "n1")
    host.serve("127.0.0.1", 0)
    host.start_cluster()
    hans = log_in(loop, host, "hans")
    for text in ("first", "second"):
        hans.send({"type": "message", "to": "yoda", "text": text})
    run_until(loop, lambda: hans.has("error"), timeout=PATIENCE)
    assert [f for f in hans.got if f["type"] in ("stored", "error")] == [
        {"type": "stored", "to": "yoda"}, {"type": "error", "code": "queue_full", "user": "yoda"}]
    assert logic.queue_cap == 1
    host.shutdown()

def engine_calls(loop, engine):
    """A connection to the real engine, ``ask(*command)`` and ``run(script, *args)``: each its reply, waited for."""
    conn = Engine(loop, "127.0.0.1", engine.port)
    conn.start()
    run_until(loop, lambda: conn.up, timeout=PATIENCE)
    answers = []

    def ask(*command):
        conn.call(*command, reply=answers.append)
        run_until(loop, lambda: len(answers) == 1, timeout=PATIENCE)
        return answers.pop()

    def run(script, *args):
        conn.script(script, (scripts.PREFIX,), args, reply=answers.append)
        run_until(loop, lambda: len(answers) == 1, timeout=PATIENCE)
        return answers.pop()

    return conn, ask, run



def test_the_engine_keeps_a_message_once_per_ref_and_remembers_the_ref_after_the_acknowledgement(loop, engine):
    """KEEP and FORGET on the real engine: a ref kept is answered 'again' (confirmed, not kept twice), and its
    key outlives the message by REF_MEMORY."""
    logic = ClusterChatServer(ACCOUNTS, 10.0, 60.0, first_id=1, rate=None)
    host = ClusterHost(loop, logic, ("127.0.0.1", engine.port), "n1")
    host.serve("127.0.0.1", 0)
    host.start_cluster()
    other = Engine(loop, "127.0.0.1", engine.port)
    other.start()
    hans = log_in(loop, host, "hans")
    for retry in (None, True, True):
        frame = {"type": "message", "to": "yoda", "text": "once", "ref": "r.1"}
        hans.send(frame if retry is None else {**frame, "retry": retry})
    hans.send({"type": "ping"})
    run_until(loop, lambda: hans.has("pong"), timeout=PATIENCE)
    assert [f for f in hans.got if f["type"] != "pong"] == [{"type": "stored", "to": "yoda", "ref": "r.1"}] * 3
    answers = []

    def ask(*command):
        other.call(*command, reply=answers.append)
        run_until(loop, lambda: len(answers) == 1, timeout=PATIENCE)
        return answers.pop()

    key = "{chat}:ref:hans\nyoda\nr.1"
    assert ask("HLEN", "{chat}:msg") == 1 and ask("PTTL", key) == -1   # kept: remembered while it is
    yoda = log_in(loop, host, "yoda")
    yoda.send({"type": "ping"})
    run_until(loop, lambda: yoda.has("pong"), timeout=PATIENCE)
    (message,) = yoda.messages()
    yoda.send({"type": "ack", "ids": [message["id"]]}, {"type": "ping"})
    run_until(loop, lambda: len([f for f in yoda.read() if f["type"] == "pong"]) == 2, timeout=PATIENCE)
    assert ask("HLEN", "{chat}:msg") == 0
    assert 0 < ask("PTTL", key) <= REF_MEMORY * 1000   # forgotten: remembered for REF_MEMORY more
    run_until(loop, lambda: hans.has("read"), timeout=PATIENCE)   # shown: its sender hears it (receipts), once
    assert [f for f in hans.got if f["type"] == "read"] == [{"type": "read", "by": "yoda", "refs": ["r.1"]}]
    hans.got.clear()
    hans.send({"type": "message", "to": "yoda", "text": "once", "ref": "r.1", "retry": True}, {"type": "ping"})
    run_until(loop, lambda: hans.has("pong"), timeout=PATIENCE)
    yoda.send({"type": "ping"})
    run_until(loop, lambda: len([f for f in yoda.read() if f["type"] == "pong"]) == 3, timeout=PATIENCE)
    assert [f for f in hans.got if f["type"] != "presence"] == [{"type": "pong"}]   # taken ...
    assert len(yoda.messages()) == 1                                                # ... not delivered again
    other.close()
    host.shutdown()


def test_relay_and_keep_share_one_keep_with_the_ref_on_the_engine(loop, engine):
    """The scripts on the real engine: RELAY to a live node remembers the ref for RELAYED_REF_MEMORY, and a sending
    of the sender's node with that ref (a retry's KEEP, or a RELAY) is 'again', while a keep of the message on its
    way (its node keeps it behind a mailbox: not fresh) is kept with its ref, remembered while it is kept and
    REF_MEMORY once forgotten; a dead node's untaken message is kept with its ref, and its fate names it."""
    conn, ask, run = engine_calls(loop, engine)

    def relay(mid, to, ref, fresh=1):
        record, cost = message_record(to, "hans", "hi", None, ref)
        return run(scripts.RELAY, mid, to, "hans", record, cost, 10, 0, "a", "a", ref, fresh)

    def keep(mid, to, ref, fresh):
        record, cost = message_record(to, "hans", "hi", None, ref)
        return run(scripts.KEEP, mid, to, "hans", record, cost, 10, 0, ref, fresh)

    for user, node, lease in (("yoda", "b", 10**15), ("luke", "c", 10**15)):
        ask("HSET", "{chat}:online", user, node)
        ask("SADD", f"{{chat}}:users:{node}", user)
        ask("ZADD", "{chat}:nodes", lease, node)
        ask("SET", f"{{chat}}:taken:{node}", "0-0")
    key = "{chat}:ref:hans\nyoda\nr.1"
    assert relay(1, "yoda", "r.1") == "relayed"
    assert ask("GET", key) == "1" and 0 < ask("PTTL", key) <= scripts.RELAYED_REF_MEMORY * 1000
    assert relay(2, "yoda", "r.1") == "again" and ask("XLEN", "{chat}:inbox:b") == 1   # not relayed twice
    assert keep(3, "yoda", "r.1", fresh=1) == "again" and ask("HLEN", "{chat}:msg") == 0   # a retry: not kept
    assert keep(4, "yoda", "r.1", fresh=0) == "kept"   # node b keeps it on its way: the message's own ref
    assert json.loads(ask("HGET", "{chat}:msg", "4"))["ref"] == "r.1" and ask("PTTL", key) == -1
    assert run(scripts.FORGET, 4) == 1 and 0 < ask("PTTL", key) <= REF_MEMORY * 1000
    assert relay(5, "luke", "r.5") == "relayed"
    ask("ZADD", "{chat}:nodes", 0, "c")   # c dies before taking it: its lease runs out
    assert run(scripts.REAP, 10, 0) == 1
    assert json.loads(ask("HGET", "{chat}:msg", "5"))["ref"] == "r.5"
    assert ask("PTTL", "{chat}:ref:hans\nluke\nr.5") == -1   # kept: remembered while it is
    (_, fields), = ask("XREVRANGE", "{chat}:inbox:a", "+", "-", "COUNT", 1)
    assert json.loads(fields[1]) == {"kind": "taken", "list": [{"to": "luke", "from": "hans", "how": "stored",
                                                                "ref": "r.5"}]}
    assert keep(6, "luke", "r.5", fresh=1) == "again" and ask("HLEN", "{chat}:msg") == 1
    conn.close()


def test_a_repeat_of_a_ref_writes_no_history_twice_on_the_engine(loop, engine):
    """KEEP and RELAY on the real engine, history kept: a message kept is in the history once however often its
    ref comes again ('again' writes nothing); one relayed to a live node is in none here (the node that delivers
    it notes it), and its keep on its way by that node is in it once; so is a dead node's untaken message, kept
    by the rescue."""
    conn, ask, run = engine_calls(loop, engine)

    def relay(mid, to, ref, fresh=1):
        record, cost = message_record(to, "hans", f"to {to} {ref}", None, ref)
        return run(scripts.RELAY, mid, to, "hans", record, cost, 10, 0, "a", "a", ref, fresh)

    def keep(mid, to, ref, fresh):
        record, cost = message_record(to, "hans", f"to {to} {ref}", None, ref)
        return run(scripts.KEEP, mid, to, "hans", record, cost, 10, 0, ref, fresh)

    def history(user):
        return [json.loads(record)["x"] for record in run(scripts.READH, user, "hans", 100)]

    ask("HSET", "{chat}:h:cfg", "keep", 86_400_000, "cap", 100)   # (as JOIN sets it: a day, 100 each)
    for user, node in (("yoda", "b"), ("luke", "c")):
        ask("HSET", "{chat}:online", user, node)
        ask("SADD", f"{{chat}}:users:{node}", user)
        ask("ZADD", "{chat}:nodes", 10**15, node)
        ask("SET", f"{{chat}}:taken:{node}", "0-0")
    assert keep(1, "leia", "r.1", fresh=1) == "kept"   # leia offline
    assert keep(2, "leia", "r.1", fresh=1) == "again" and relay(3, "leia", "r.1") == "again"
    assert history("leia") == ["to leia r.1"]
    assert relay(4, "yoda", "r.4") == "relayed" and history("yoda") == []   # node b notes it when it delivers it
    assert keep(5, "yoda", "r.4", fresh=0) == "kept"   # ... or, behind yoda's mailbox, keeps it
    assert keep(6, "yoda", "r.4", fresh=1) == "again" and relay(7, "yoda", "r.4") == "again"
    assert history("yoda") == ["to yoda r.4"]
    assert relay(8, "luke", "r.8") == "relayed"
    ask("ZADD", "{chat}:nodes", 0, "c")   # c dies before taking it: its lease runs out, and the rescue keeps it
    assert run(scripts.REAP, 10, 0) == 1
    assert keep(9, "luke", "r.8", fresh=1) == "again" and relay(10, "luke", "r.8") == "again"
    assert history("luke") == ["to luke r.8"]
    assert ask("HLEN", "{chat}:h:m") == 3
    conn.close()


def test_history_written_while_the_engine_is_away_is_written_first_once_it_is_back():
    """A node delivers what its inbox brought while its command connection reconnects (the engine stopped a
    moment): that history waits for the engine, then goes first, once (it was lost: a flaky e2e test)."""
    calls, up = [], [False]
    keeping = EngineDurability(lambda script, args, reply: calls.append((script, list(args))), "a", None,
                               lambda *answer: None, history_keep_ms=60_000, up=lambda: up[0])
    keeping.remember(Remember("hans", "vader", "not twice", 1.0))
    keeping.end_turn()
    assert calls == []
    up[0] = True
    keeping.remember(Remember("hans", "vader", "barrier", 2.0))
    keeping.resume()
    keeping.end_turn()
    assert calls == [(scripts.REMEMBER, ["hans", "vader", "not twice", 1.0, "", "hans", "vader", "barrier", 2.0, ""])]
