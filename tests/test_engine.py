"""reactor/cluster/engine.py against a real Valkey/Redis engine on loopback (the ``engine`` fixture)."""
import logging
import signal
import time

import pytest

from reactor.cluster.engine import Engine, EngineError, EngineUnavailable, Script
from reactor.ops.metrics import Histogram
from reactor.stream import listen
from tests.support import run_until

pytestmark = pytest.mark.e2e

FAST = {"backoff": (0.02, 0.2), "connect_timeout": 1.0}


class Events:
    """What an engine reported, in order: ("up",), ("down", reason), (tag, reply)."""

    def __init__(self):
        self.seen = []

    def up(self):
        self.seen.append(("up",))

    def down(self, reason):
        self.seen.append(("down", reason))

    def reply(self, tag):
        return lambda answer: self.seen.append((tag, answer))

    def count(self, kind):
        return sum(1 for event in self.seen if event[0] == kind)

    def tags(self):
        return [event[0] for event in self.seen]


def started(loop, port, events=None, **options):
    events = events or Events()
    engine = Engine(loop, "127.0.0.1", port, on_up=events.up, on_down=events.down, **{**FAST, **options})
    engine.start()
    run_until(loop, lambda: engine.up)
    return engine, events


def answer(loop, engine, *args, timeout=5.0):
    """Run the loop until the reply to one command came; return it."""
    replies = []
    engine.call(*args, reply=replies.append)
    run_until(loop, lambda: replies, timeout=timeout)
    return replies[0]


def test_set_then_get_round_trip(loop, engine):
    client, _ = started(loop, engine.port)
    assert answer(loop, client, "SET", "greeting", "héllo wörld") == "OK"
    assert answer(loop, client, "GET", "greeting") == "héllo wörld"
    assert answer(loop, client, "GET", "nothing") is None
    assert answer(loop, client, "RPUSH", "list", b"a", 2, 3.5) == 3
    assert answer(loop, client, "LRANGE", "list", 0, -1) == ["a", "2", "3.5"]
    client.close()


def test_each_reply_tells_its_round_trip_and_pending_counts_the_commands_not_answered_yet(loop, engine):
    round_trips = Histogram((0.001, 0.01, 1.0))
    client, _ = started(loop, engine.port, round_trips=round_trips)
    observed = round_trips.count   # (the PING that brought it up)
    replies = []
    for _ in range(3):
        client.call("INCR", "trips", reply=replies.append)
    assert client.pending == 3
    run_until(loop, lambda: len(replies) == 3)
    assert client.pending == 0 and round_trips.count == observed + 3
    assert 0 < round_trips.sum < 3.0
    client.close()


def test_ten_thousand_pipelined_commands_answer_in_order_in_few_sends(loop, engine):
    client, _ = started(loop, engine.port)
    sends_before = client.sends
    replies = []
    started_at = time.perf_counter()
    for _ in range(10_000):
        client.call("INCR", "counter", reply=replies.append)
    run_until(loop, lambda: len(replies) == 10_000, timeout=30)
    elapsed = time.perf_counter() - started_at
    assert replies == list(range(1, 10_001))
    sends = client.sends - sends_before
    assert 1 <= sends < 100, sends   # one turn's commands leave together (a few sends if the socket fills)
    print(f"10,000 pipelined INCRs in {elapsed * 1e3:.0f} ms ({10_000 / elapsed:,.0f}/s), {sends} sends")
    client.close()


def test_an_error_reply_is_a_value_and_a_raising_callback_breaks_nothing(loop, engine, caplog):
    client, events = started(loop, engine.port)
    results = []

    def bad_callback(reply):
        raise RuntimeError("a bug in the owner")

    client.call("SET", "text", "abc")
    client.call("INCR", "text", reply=results.append)
    client.call("PING", reply=bad_callback)
    client.call("GET", "text", reply=results.append)
    with caplog.at_level(logging.ERROR, logger="reactor.cluster.engine"):
        run_until(loop, lambda: len(results) == 2)
    error, text = results
    assert type(error) is EngineError and str(error).startswith("ERR value is not an integer")
    assert text == "abc"
    assert "a bug in the owner" in caplog.text
    assert client.up and events.count("down") == 0


def commandstats(loop, client):
    info = answer(loop, client, "INFO", "commandstats")
    stats = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            stats[name] = int(dict(field.split("=") for field in fields.split(","))["calls"])
    return stats


def test_scripts_go_by_sha_and_survive_a_script_flush_in_order(loop, engine):
    client, _ = started(loop, engine.port)
    add = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    events = Events()
    for n in range(5):
        client.script(add, ["total"], [10], reply=events.reply(f"add{n}"))
    run_until(loop, lambda: len(events.seen) == 5)
    assert events.seen == [(f"add{n}", 10 * (n + 1)) for n in range(5)]
    stats = commandstats(loop, client)
    assert stats.get("eval") == 1 and stats.get("evalsha") == 4   # sent whole once, then by its SHA

    events.seen.clear()
    client.call("SCRIPT", "FLUSH", reply=events.reply("flush"))
    client.script(add, ["total"], [1], reply=events.reply("after1"))
    client.call("INCR", "other", reply=events.reply("incr"))
    client.script(add, ["total"], [2], reply=events.reply("after2"))
    client.call("GET", "other", reply=events.reply("get"))
    run_until(loop, lambda: len(events.seen) == 5)
    assert events.seen == [("flush", "OK"), ("after1", 51), ("incr", 1), ("after2", 53), ("get", "1")]
    stats = commandstats(loop, client)
    assert stats["evalsha"] == 4 + 2 and stats["eval"] == 1 + 2   # both refused (NOSCRIPT), both sent again whole
    assert answer(loop, client, "EVALSHA", add.sha, 1, "total", 0) == 53   # and the engine knows it again


def test_a_killed_engine_fails_the_pending_calls_then_comes_back_with_its_data(loop, engine):
    client, events = started(loop, engine.port)
    assert answer(loop, client, "SET", "durable", "kept") == "OK"   # appendfsync always: on disk when answered
    engine.signal(signal.SIGSTOP)   # so the next commands are still waiting when it dies
    for n in range(3):
        client.call("INCR", "lost", reply=events.reply(f"pending{n}"))
    sends = client.sends
    run_until(loop, lambda: client.sends > sends)
    engine.kill9()
    run_until(loop, lambda: events.count("down") == 1)
    assert events.tags() == ["up", "pending0", "pending1", "pending2", "down"]
    assert all(isinstance(reply, EngineUnavailable) for _, reply in events.seen[1:4])
    assert not client.up

    engine.restart()
    run_until(loop, lambda: client.up, timeout=10)
    assert events.count("up") == 2 and events.count("down") == 1
    assert answer(loop, client, "GET", "durable") == "kept"
    assert answer(loop, client, "INCR", "fresh") == 1
    client.close()


def test_a_stopped_engine_is_down_after_the_reply_timeout_and_up_after_it_continues(loop, engine):
    client, events = started(loop, engine.port, reply_timeout=0.5, connect_timeout=0.3)
    engine.signal(signal.SIGSTOP)
    try:
        sent_at = time.monotonic()
        client.call("PING", reply=events.reply("ping"))
        run_until(loop, lambda: events.count("down") == 1)
        assert time.monotonic() - sent_at >= 0.5   # not before the deadline
        assert events.tags() == ["up", "ping", "down"]
        assert isinstance(events.seen[1][1], EngineUnavailable)
        assert "no reply within 0.5s" in events.seen[2][1]
        run_until(loop, lambda: client.sends >= 3, timeout=5)   # it keeps trying (PINGs that time out)
        assert not client.up
    finally:
        engine.signal(signal.SIGCONT)
    run_until(loop, lambda: client.up, timeout=10)
    assert events.count("up") == 2 and events.count("down") == 1
    assert answer(loop, client, "PING") == "PONG"
    client.close()


def test_a_call_while_down_fails_from_a_later_callback_never_inside_the_call(loop, engine):
    events = Events()
    port = engine.port
    engine.stop()
    client = Engine(loop, "127.0.0.1", port, on_up=events.up, on_down=events.down, **FAST)
    client.start()
    client.call("PING", reply=events.reply("call"))
    client.script(Script("return 1"), [], [], reply=events.reply("script"))
    assert events.seen == []   # not inside call()/script()
    loop.run_once(timeout=0)
    assert events.tags() == ["call", "script"]
    assert all(isinstance(reply, EngineUnavailable) for _, reply in events.seen)
    run_until(loop, lambda: client.failed_attempts >= 2)   # a refused connect is retried, and is no "down": never up
    assert events.count("down") == 0 and not client.up
    client.close()


def test_too_much_unsent_output_counts_as_down(loop, engine):
    client, events = started(loop, engine.port, max_output=1 << 20)
    client.call("SET", "big", "x" * (2 << 20), reply=events.reply("set"))
    run_until(loop, lambda: events.count("down") == 1)
    assert isinstance(events.seen[1][1], EngineUnavailable)
    assert "output buffer over" in events.seen[2][1]
    run_until(loop, lambda: client.up)
    client.close()


def test_a_blocking_xread_on_an_engine_of_its_own_returns_when_another_adds(loop, engine):
    reader, reader_events = started(loop, engine.port, reply_timeout=5.0)
    writer, _ = started(loop, engine.port)
    assert answer(loop, reader, "XREAD", "BLOCK", 300, "STREAMS", "feed", "0-0") is None   # a block that ends empty
    replies = []
    reader.call("XREAD", "BLOCK", 3000, "STREAMS", "feed", "$", reply=replies.append)
    run_until(loop, lambda: "blocked_clients:1" in answer(loop, writer, "INFO", "clients"))
    entry_id = answer(loop, writer, "XADD", "feed", "*", "text", "hello")
    run_until(loop, lambda: replies)
    assert replies == [[["feed", [[entry_id, ["text", "hello"]]]]]]
    assert reader.up and reader_events.count("down") == 0
    reader.close()
    writer.close()


def test_an_answer_that_is_not_resp_drops_the_connection_and_says_why(loop, caplog):
    """A peer that is no engine: its bytes reach the hiredis reader (the connection's protocol), which refuses
    them; the connection is dropped, the reason logged, and connecting goes on."""
    accepted = []
    impostor = listen(loop, "127.0.0.1", 0, accepted.append)
    client = Engine(loop, "127.0.0.1", impostor.address[1], **FAST)
    with caplog.at_level(logging.WARNING, logger="reactor.cluster.engine"):
        client.start()
        run_until(loop, lambda: accepted)
        accepted[0].sendall(b"x not RESP\r\n")
        run_until(loop, lambda: "protocol error" in caplog.text)
    assert not client.up and client.failed_attempts >= 1
    client.close()
    impostor.close()
    for sock in accepted:
        sock.close()
