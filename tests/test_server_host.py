"""The host's limits on strangers and its failure counts, on a real loop with an injected clock."""
import json
import logging
import socket

from reactor.chat_server import ChatServer
from reactor.loop import EventLoop
from reactor.server_host import FailureLog, ServerHost
from tests.test_chat_server import ACCOUNTS


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


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run_until(loop, predicate):
    for _ in range(500):
        if predicate():
            return
        loop.run_once(timeout=0.01)
    raise AssertionError("condition not reached")


def test_strangers_are_capped_per_address_counted_out_at_login_and_failures_logged_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="chat.host")
    loop = EventLoop()
    clock = loop.time = Clock()
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
    except (BlockingIOError, socket.timeout):
        return False
