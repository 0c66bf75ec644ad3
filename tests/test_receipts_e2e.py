"""Knowing a message arrived (issue 26 item 2), with the real server, the real clients and a cluster's real
nodes: the recipient's client says what it showed, and its sender's client shows a line only for a message not
read within a few seconds (then its receipt), or every receipt with --receipts; a stored message's receipt comes
when its recipient logs in and its client shows it, on any node. No receipt for a message not shown (its
recipient's session ended first, or the client acknowledges refs it never got), none twice, across a restart's
retry too. (The logic: test_receipts.py, test_client_receipts.py, test_cluster_server.py.)"""
import pytest

from tests.support import ClientProcess, ServerProcess, WireClient, cluster_login, logout

pytestmark = pytest.mark.e2e


def receipts_client(host, port, user=None):
    """A protocol client whose hello says it sends receipts; logged in as ``user`` if given."""
    client = WireClient(host, port, hello=False)
    client.hello(receipts=True)
    if user is not None:
        client.login(user)
    return client


def frames_until_pong(client):
    """What ``client`` gets before the answer to a ping sent now (the server answers in order)."""
    client.send({"type": "ping"})
    got = []
    while (frame := client.recv())["type"] != "pong":
        got.append(frame)
    return got


def test_with_receipts_the_sender_sees_its_message_read_by_the_real_client(tmp_path):
    srv = ServerProcess(tmp_path)
    hans = ClientProcess(srv.host, srv.port, extra=("--receipts",))
    yoda = ClientProcess(srv.host, srv.port)
    try:
        yoda.login("yoda")
        hans.login("hans")
        hans.type("message yoda hello there, a message longer than thirty characters")
        yoda.expect("hans: hello there, a message longer than thirty characters")
        hans.expect("Read by yoda: hello there, a message longer...")
        hans.never_shows("Read by yoda")   # once
    finally:
        hans.kill()
        yoda.kill()
        assert srv.stop() == 0


def test_by_default_only_a_message_not_read_in_time_is_shown_and_then_its_receipt(tmp_path):
    srv = ServerProcess(tmp_path)
    hans = ClientProcess(srv.host, srv.port)
    yoda = ClientProcess(srv.host, srv.port)
    try:
        yoda.login("yoda")
        luke = receipts_client(srv.host, srv.port, "luke")   # handed messages with their ref, says nothing yet
        hans.login("hans")
        hans.type("message yoda read at once")
        yoda.expect("hans: read at once")
        hans.type("message luke not read yet")
        message = luke.until("message")   # (when hans's client has sent it)
        assert message["text"] == "not read yet" and message["ref"]
        # yoda's line would come first (its message went first): it never does, as yoda's client showed it.
        assert "Not yet read by yoda" not in hans.expect("Not yet read by luke: not read yet")
        luke.send({"type": "shown", "refs": [message["ref"]]})
        hans.expect("Read by luke: not read yet")
        hans.never_shows("Read by yoda")
    finally:
        hans.kill()
        yoda.kill()
        assert srv.stop() == 0


def test_a_stored_message_is_read_when_its_recipient_logs_in_and_its_client_shows_it(tmp_path):
    srv = ServerProcess(tmp_path)
    hans = ClientProcess(srv.host, srv.port, extra=("--receipts",))
    yoda = ClientProcess(srv.host, srv.port)
    try:
        hans.login("hans")
        hans.type("message yoda for when you are back")
        hans.expect("yoda is offline; the message will be delivered when they log in")
        hans.never_shows("Read by yoda")
        yoda.login("yoda")
        yoda.expect("hans: for when you are back")
        hans.expect("Read by yoda: for when you are back")
        hans.never_shows("Read by yoda")
    finally:
        hans.kill()
        yoda.kill()
        assert srv.stop() == 0


def test_no_receipt_for_a_message_not_shown_nor_for_refs_never_handed_and_none_twice(tmp_path):
    srv = ServerProcess(tmp_path)
    try:
        hans = srv.client()
        hans.login("hans")
        yoda = receipts_client(srv.host, srv.port, "yoda")
        hans.send({"type": "message", "to": "yoda", "text": "never shown", "ref": "h.1"})
        assert yoda.until("message")["ref"] == "h.1"
        yoda.close()   # gone before it said it showed it
        hans.until("presence", online=False)
        yoda = receipts_client(srv.host, srv.port, "yoda")
        hans.until("presence", online=True)
        yoda.send({"type": "shown", "refs": ["h.1", "made.up"]})   # not handed to this session
        hans.send({"type": "message", "to": "yoda", "text": "shown", "ref": "h.2"})
        assert yoda.until("message")["ref"] == "h.2"
        yoda.send({"type": "shown", "refs": ["h.2"]})
        yoda.send({"type": "shown", "refs": ["h.2"]})   # twice
        assert frames_until_pong(yoda) == []
        assert frames_until_pong(hans) == [{"type": "read", "by": "yoda", "refs": ["h.2"]}]
    finally:
        assert srv.stop() == 0


def test_a_flood_of_shown_costs_others_nothing_and_tells_nobody(tmp_path):
    srv = ServerProcess(tmp_path)
    try:
        hans = srv.client()
        hans.login("hans")
        vader = receipts_client(srv.host, srv.port, "vader")
        hans.until("presence", online=True)
        hans.send({"type": "message", "to": "vader", "text": "hi", "ref": "h.1"})
        vader.until("message")
        refs = [f"hans.{i}" for i in range(1500)]   # (about 14 KB a frame)
        for _ in range(300):
            vader.send({"type": "shown", "refs": refs})
        assert frames_until_pong(vader) == []
        assert frames_until_pong(hans) == []   # nothing for hans, and hans answered at once all the same
        vader.send({"type": "shown", "refs": ["h.1"]})
        vader.silent()
        assert frames_until_pong(hans) == [{"type": "read", "by": "vader", "refs": ["h.1"]}]
    finally:
        assert srv.stop() == 0


def test_a_message_sent_again_after_a_restart_is_read_once(tmp_path):
    """Kept, the server restarted, sent again (its ref known: confirmed, not kept twice): one receipt."""
    extra = ("--state", str(tmp_path / "state.db"))
    message = {"type": "message", "to": "yoda", "text": "once", "ref": "restart.1"}
    srv = ServerProcess(tmp_path, extra=extra)
    try:
        hans = srv.client()
        hans.login("hans")
        hans.send(message)
        hans.expect("stored", to="yoda")
    finally:
        assert srv.stop() == 0
    srv = ServerProcess(tmp_path, extra=extra)
    try:
        hans = srv.client()
        hans.login("hans")
        hans.send({**message, "retry": True})
        hans.expect("stored", to="yoda", ref="restart.1")
        yoda = ClientProcess(srv.host, srv.port)
        try:
            yoda.login("yoda")
            yoda.expect("hans: once")
            assert hans.until("read") == {"type": "read", "by": "yoda", "refs": ["restart.1"]}
            yoda.never_shows("hans: once")
            assert frames_until_pong(hans) == []
        finally:
            yoda.kill()
    finally:
        assert srv.stop() == 0


# -- a cluster: the receipt goes from the recipient's node to the sender's --------------------------

def ready(cluster):
    """Every node takes logins (a new engine settles first): a client of the shared port lands on a ready one."""
    for node in ("a", "b"):
        logout(cluster.login_on(node, "leia"))
    logout(cluster.login("c", "leia"))


def test_on_a_cluster_a_message_read_on_another_node_is_told_to_its_sender(cluster):
    ready(cluster)
    yoda = ClientProcess("127.0.0.1", cluster.nodes["c"].port)
    hans = ClientProcess("127.0.0.1", cluster.shared, extra=("--receipts",))   # on a or b
    try:
        yoda.login("yoda")
        hans.login("hans")
        hans.type("message yoda across the nodes")
        yoda.expect("hans: across the nodes")
        hans.expect("Read by yoda: across the nodes")
        hans.never_shows("Read by yoda")
    finally:
        hans.kill()
        yoda.kill()


def test_on_a_cluster_a_stored_message_is_read_when_its_recipient_logs_in_on_another_node(cluster):
    ready(cluster)
    hans = ClientProcess("127.0.0.1", cluster.shared, extra=("--receipts",))
    vader = ClientProcess("127.0.0.1", cluster.nodes["c"].port)
    try:
        hans.login("hans")
        hans.type("message vader kept in the engine")
        hans.expect("vader is offline; the message will be delivered when they log in")
        vader.login("vader")
        vader.expect("hans: kept in the engine")
        hans.expect("Read by vader: kept in the engine")
        hans.never_shows("Read by vader")
    finally:
        hans.kill()
        vader.kill()


def test_on_a_cluster_no_receipt_for_a_ref_never_handed_to_the_session_that_says_it(cluster):
    ready(cluster)
    hans = cluster.login("c", "hans")
    yoda = WireClient("127.0.0.1", cluster.shared, hello=False)
    cluster.clients.append(yoda)
    yoda.hello(receipts=True)
    cluster_login(yoda, "yoda")
    hans.send({"type": "message", "to": "yoda", "text": "hi", "ref": "h.1"})
    assert hans.until("delivered") == {"type": "delivered", "to": "yoda", "ref": "h.1"}
    assert yoda.until("message")["ref"] == "h.1"
    luke = receipts_client("127.0.0.1", cluster.nodes["c"].port)
    cluster.clients.append(luke)
    cluster_login(luke, "luke")
    luke.send({"type": "shown", "refs": ["h.1"]})   # not luke's to say
    yoda.send({"type": "shown", "refs": ["h.1"]})
    yoda.send({"type": "shown", "refs": ["h.1"]})
    assert hans.until("read") == {"type": "read", "by": "yoda", "refs": ["h.1"]}
    hans.send({"type": "message", "to": "yoda", "text": "barrier", "ref": "h.2"})   # after the receipt's way
    got = []
    while (frame := hans.recv())["type"] != "delivered":
        got.append(frame)
    assert [f for f in got if f["type"] == "read"] == []
