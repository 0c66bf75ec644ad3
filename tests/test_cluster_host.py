"""A cluster node's host in this process, on a real engine: what it does with the news the other nodes send."""
from __future__ import annotations

import json
import time

import pytest

from reactor.cluster.engine import Engine
from reactor.cluster.host import ClusterHost
from reactor.cluster.rules import ClusterChatServer
from tests.support import ACCOUNTS, PATIENCE, run_until

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
