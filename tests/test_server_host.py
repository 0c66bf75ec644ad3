"""The host on a real loop: its limits on strangers and its failure counts (with an injected clock), and the
texts of stored messages, which it reads from the store."""
import json
import logging
import socket
import sqlite3

import pytest

from reactor.loop import EventLoop
from reactor.server.durability import with_texts
from reactor.server.effects import KeepMessage
from reactor.server.host import FailureLog, ServerHost
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore
from tests.support import ACCOUNTS, FakeClock, StandIn, login_peer, opened, run_until

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


def test_failure_log_counts_per_address_and_kind_and_starts_anew():
    failures = FailureLog(max_addresses=2)
    for _ in range(3):
        failures.note("10.0.0.1", "unknown user name")
    failures.note("10.0.0.2", "wrong password")
    failures.note("10.0.0.3", "wrong password")   # past max_addresses: counted with the others
    failures.note("10.0.0.4", "refused (busy)")
    assert failures.take() == ["10.0.0.1: unknown user name x3",   # most first
                               "other addresses: refused (busy) x1, wrong password x1",
                               "10.0.0.2: wrong password x1"]
    assert not failures and failures.take() == []


def test_strangers_are_capped_per_address_counted_out_at_login_and_failures_logged_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="reactor.server.host")
    loop = EventLoop()
    clock = loop.time = FakeClock(100.0)
    host = ServerHost(loop, ChatServer(dict(ACCOUNTS), 10.0, 60.0), max_strangers=10, max_strangers_per_address=2,
                      failure_log_interval=30.0)
    host.serve("127.0.0.1", 0)
    port = host.address[1]
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    run_until(loop, lambda: host.strangers == 2 and _closed(socks[2]))
    first = socks[0]
    for frame in ({"type": "hello", "version": 1}, {"type": "username", "username": "nobody"},
                  {"type": "username", "username": "hans"}, {"type": "password", "password": ACCOUNTS["hans"]}):
        first.sendall(json.dumps(frame).encode() + b"\n")
    run_until(loop, lambda: host.strangers == 1)   # logged in: no stranger any more
    again = socket.create_connection(("127.0.0.1", port))
    run_until(loop, lambda: host.strangers == 2)   # so its address has a place again
    assert "failed logins" not in caplog.text      # nothing yet: counted until the interval ends
    clock.now += 30.0
    run_until(loop, lambda: "failed logins" in caplog.text)
    lines = [r.getMessage() for r in caplog.records if "failed logins" in r.getMessage()]
    assert lines == ["failed logins and refused connections in the last 30s from 127.0.0.1: "
                     "refused (busy) x1, unknown user name x1"]
    for sock in socks + [again]:
        sock.close()
    run_until(loop, lambda: host.strangers == 0)
    loop.close()


def _closed(sock):
    sock.settimeout(0.001)
    try:
        return sock.recv(4096).startswith(b'{"type":"error","code":"busy"}')
    except (TimeoutError, BlockingIOError):
        return False


# -- stored messages: their texts come from the store where the effect is carried out -------------

def test_without_a_store_stored_messages_reach_their_reader_with_their_texts():
    loop = EventLoop()
    host = ServerHost(loop, ChatServer(dict(ACCOUNTS), 10.0, 60.0))
    host.serve("127.0.0.1", 0)
    hans = login_peer(loop, host, "hans")
    hans.send({"type": "message", "to": "yoda", "text": "kept in memory"})
    run_until(loop, lambda: hans.has("stored"))
    yoda = login_peer(loop, host, "yoda", password=False)
    yoda.send({"type": "password", "password": ACCOUNTS["yoda"]}, {"type": "ping"})
    run_until(loop, lambda: yoda.has("pong"))
    assert [f["type"] for f in yoda.got] == ["hello", "username_ok", "welcome", "message", "pong"]
    assert yoda.messages() == [{"type": "message", "from": "hans", "text": "kept in memory", "id": 1}]
    loop.close()


def test_a_stored_message_whose_text_is_gone_from_the_store_is_left_out_and_logged(caplog):
    frames = ({"type": "message", "from": "hans", "id": 1}, {"type": "message", "from": "luke", "id": 2})
    assert with_texts(frames, {2: ""}) == [{"type": "message", "from": "luke", "id": 2, "text": ""}]
    assert "stored message 1 has no text in the store: not sent" in caplog.text


def test_a_stored_message_whose_text_the_store_has_not_is_left_out_logged_and_the_others_arrive(loop, caplog):
    """The one answer of both hosts (reactor/server/durability.py; the cluster node's: test_cluster_host.py):
    a message is never shown with a text that is not its own (nor acknowledged, and so lost)."""
    store = MemoryStore()
    store.apply(KeepMessage(2, "yoda", "luke", "still here"))
    offline = [(1, "yoda", "hans", 4, 4, None, None), *store.load()[1]]   # the store has not the text of message 1
    host = ServerHost(loop, ChatServer(dict(ACCOUNTS), 10.0, 60.0, offline=offline), store)
    host.serve("127.0.0.1", 0)
    yoda = login_peer(loop, host, "yoda", password=False)
    yoda.send({"type": "password", "password": ACCOUNTS["yoda"]}, {"type": "ping"})
    run_until(loop, lambda: yoda.has("pong"))
    assert yoda.messages() == [{"type": "message", "from": "luke", "text": "still here", "id": 2}]
    assert "stored message 1 has no text in the store: not sent" in caplog.text
    host.shutdown()


class FullForLuke:
    """A SQLite connection that finds the disk full when a message to luke is inserted."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO offline") and args[0][1] == "luke":
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_message_handed_on_in_a_turn_the_store_then_refuses_still_arrives_with_its_text():
    """One turn: hans keeps a message for yoda, then one for luke that does not fit (the store rolls the
    whole transaction back, yoda's row too), then yoda logs in and is handed hers: its text comes from the
    host's copy of the turn, and hans is told it was kept (it was delivered); luke's is refused."""
    loop = EventLoop()
    store, _ = opened(":memory:", FullForLuke)
    logic = ChatServer(dict(ACCOUNTS), 10.0, 60.0, rate=None)
    host = ServerHost(loop, logic, store)
    host.serve("127.0.0.1", 0)
    hans = login_peer(loop, host, "hans")
    yoda = login_peer(loop, host, "yoda", password=False)
    assert (logic.user_of(1), logic.user_of(2)) == ("hans", None)   # the host numbers connections from 1

    stand_ins = {conn: StandIn(loop, conn) for conn in (1, 2)}

    def one_turn():   # the frames as the streams would hand them on, in this order, in one loop turn
        for conn, frame in ((1, {"type": "message", "to": "yoda", "text": "just in time"}),
                            (1, {"type": "message", "to": "luke", "text": "no room"}),
                            (2, {"type": "password", "password": ACCOUNTS["yoda"]}), (2, {"type": "ping"})):
            host.frame_received(stand_ins[conn].stream, frame)

    loop.call_soon(one_turn)
    run_until(loop, lambda: yoda.has("pong") and hans.has("error"))
    assert yoda.messages() == [{"type": "message", "from": "hans", "text": "just in time", "id": 1}]
    assert [f for f in hans.got if f["type"] in ("stored", "error")] == [
        {"type": "stored", "to": "yoda"},
        {"type": "error", "code": "store_full", "command": "message", "user": "luke"}]
    assert store.load() == ([], []) and not store.broken
    for stand_in in stand_ins.values():
        stand_in.close()
    loop.close()
    store.close()
