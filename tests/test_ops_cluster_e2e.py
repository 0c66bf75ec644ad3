"""The operator's tools in cluster mode, end to end: real nodes on a real engine, each with its admin socket and
metrics endpoint. ``who`` on one node lists the users of every node; ``kick``, ``lock`` and ``notice`` given on
one node reach the users of another; each node serves its own metrics, labelled with its id, and is ready only
while it holds its lease (an engine that stops answering fences it: not ready, then ready again)."""
import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ACCOUNTS, ServerProcess, WireClient, admin, cluster_login, scrape, wait_for

pytestmark = pytest.mark.e2e


class Node:
    """One node of the cluster with its admin socket and metrics endpoint."""

    def __init__(self, tmp_path, engine, name):
        directory = tmp_path / name
        directory.mkdir()
        self.name = name
        self.socket_path = str(directory / "admin.sock")
        self.process = ServerProcess(directory, block=30, timeout=120, extra=(
            "--cluster", f"redis://127.0.0.1:{engine.port}", "--node-id", name, "--rate", "0",
            "--admin-socket", self.socket_path, "--metrics", "127.0.0.1:0"))
        self.clients = []

    def ready(self):
        return scrape(self.process.metrics_address, "/readyz")

    def figures(self):
        """Each series of a scrape: (name, labels) -> value."""
        _, text = scrape(self.process.metrics_address)
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def login(self, user, password=None):
        """A client logged in as ``user`` here (its password sent again while the node cannot decide logins:
        not joined yet, or a new engine settling)."""
        client = WireClient(self.process.host, self.process.port)
        self.clients.append(client)
        cluster_login(client, user, password)
        return client

    def stop(self):
        for client in self.clients:
            client.close()
        self.process.stop()


@pytest.fixture
def nodes(tmp_path, engine):
    started = {name: Node(tmp_path, engine, name) for name in ("a", "c")}
    for node in started.values():
        wait_for(lambda node=node: node.ready() == (200, "ready\n"), what=f"node {node.name} ready")
    yield started
    for node in started.values():
        node.stop()


def who(node):
    status, out, err = admin(node.socket_path, "who")
    assert (status, err) == (0, ""), err
    return {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}


def test_who_kick_lock_and_notice_on_one_node_reach_the_users_of_another(nodes):
    a, c = nodes["a"], nodes["c"]
    hans = a.login("hans")
    yoda, luke = c.login("yoda"), c.login("luke")
    rows = wait_for(lambda: (rows := who(a)).keys() == {"hans", "yoda", "luke"} and rows, what="every user in who")
    assert rows["hans"][1] == "127.0.0.1" and rows["hans"][-1] == "a"
    assert rows["yoda"][1:] == ["-", "-", "-", "-", "c"]   # (what else is known of it is node c's)
    assert admin(a.socket_path, "notice", "maintenance at noon") == (0, "Notice sent to 3 users.\n", "")
    for client in (hans, yoda, luke):
        client.until("notice", text="maintenance at noon")
    assert admin(a.socket_path, "kick", "yoda", "be nice") == (0, "Kicked yoda.\n", "")
    yoda.until("bye", reason="operator", text="be nice")
    yoda.expect_closed()
    hans.until("presence", online=False)
    assert admin(a.socket_path, "lock", "luke", "60") == (0, "Locked luke for 60 seconds.\n", "")
    luke.until("bye", reason="operator")
    again = WireClient(c.process.host, c.process.port)
    again.send({"type": "username", "username": "luke"})
    frame = again.recv()
    if frame["type"] == "username_ok":   # (node c may hear of the lock a moment later: the engine says it)
        again.send({"type": "password", "password": ACCOUNTS["luke"]})
        frame = again.recv()
    assert (frame["type"], frame["code"]) == ("error", "account_locked") and 0 < frame["retry"] <= 60, frame
    assert admin(a.socket_path, "unlock", "luke") == (0, "Unlocked luke.\n", "")
    wait_for(lambda: _logs_in(c, "luke"), what="luke let in again on node c")
    assert c.figures()[("chat_users_online", (("node", "c"),))] == 1
    figures = a.figures()
    assert figures[("chat_users_online", (("node", "a"),))] == 1
    assert figures[("chat_lockouts_total", (("cause", "operator"), ("node", "a")))] == 1
    assert figures[("chat_cluster_engine_connected", (("node", "a"),))] == 1
    assert figures[("chat_cluster_fenced", (("node", "a"),))] == 0
    assert figures[("chat_cluster_engine_round_trip_seconds_count", (("node", "a"),))] > 0
    assert ("chat_stored_messages", (("node", "a"),)) not in figures   # the engine's to tell, not a node's
    assert c.figures()[("chat_messages_relayed_total", (("node", "c"),))] == 0
    log = a.process.log()
    assert "admin: kicked yoda (be nice)" in log and "admin: locked luke for 60s" in log


def _logs_in(node, user):
    """Whether ``user`` can log in on ``node`` now (not locked in its view)."""
    client = WireClient(node.process.host, node.process.port)
    node.clients.append(client)
    client.send({"type": "username", "username": user})
    if client.recv() != {"type": "username_ok"}:
        return False
    client.send({"type": "password", "password": ACCOUNTS[user]})
    return client.recv()["type"] == "welcome"


def test_a_node_whose_engine_stops_answering_is_fenced_not_ready_and_ready_again(nodes, engine):
    a = nodes["a"]
    assert a.figures()[("chat_ready", (("node", "a"),))] == 1
    engine.signal(signal.SIGSTOP)
    try:
        status, why = wait_for(lambda: (answer := a.ready())[0] == 503 and answer, what="node a not ready")
        assert why.startswith("not ready: ")
        wait_for(lambda: a.figures()[("chat_cluster_fenced", (("node", "a"),))] == 1, what="node a fenced")
        assert a.ready() in ((503, "not ready: fenced: the node lost its lease and has not joined the cluster "
                                   "again\n"), (503, "not ready: engine not connected\n"))
        assert a.figures()[("chat_cluster_fencings_total", (("node", "a"),))] == 1
    finally:
        engine.signal(signal.SIGCONT)
    wait_for(lambda: a.ready() == (200, "ready\n"), what="node a ready again")
    assert a.figures()[("chat_cluster_fenced", (("node", "a"),))] == 0
