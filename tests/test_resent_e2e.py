"""A message is kept and delivered once however often it is sent (issue 21 item 3), on the real single server:
the real client sends a message the full store refused again by itself, with its ref, until it is kept, and the
user sees it wait; and a message sent again after a restart is confirmed, not kept twice, because the state file
keeps its ref; it is in the history once. (A cluster's engine stopped: test_cluster_e2e.py.)"""
import pytest

from tests.support import NO_LIMITS, ClientProcess, ServerProcess, history_with

pytestmark = pytest.mark.e2e


def fill(sender, to):
    """``sender`` sends ``to`` (offline) messages until the store has no room even for a short one; the number
    kept."""
    kept = 0
    for size in (3000, 300, 1):
        while True:
            sender.send({"type": "message", "to": to, "text": f"{kept} " + "x" * size})
            reply = sender.recv()
            while reply["type"] == "presence":
                reply = sender.recv()
            if reply["type"] != "stored":
                assert reply == {"type": "error", "code": "store_full", "command": "message", "user": to}, reply
                break
            kept += 1
    return kept


def messages(client):
    """The messages ``client`` gets until the pong that answers a ping sent now."""
    client.send({"type": "ping"})
    got = []
    while (frame := client.recv())["type"] != "pong":
        if frame["type"] == "message":
            got.append(frame)
    return got


def test_the_client_sends_a_message_the_full_store_refused_again_until_it_is_kept_and_it_arrives_once(tmp_path):
    srv = ServerProcess(tmp_path, extra=("--state", str(tmp_path / "state.db"), "--state-max-bytes", "96K",
                                         *NO_LIMITS))
    client = ClientProcess(srv.host, srv.port)
    try:
        luke = srv.client()
        luke.login("luke")
        kept = fill(luke, "vader")
        client.login("hans")
        client.type("message yoda only once")
        client.type("whoelse")   # waits its turn
        client.expect("Message to yoda not confirmed yet; trying again in 1 s")
        vader = srv.client()   # reads and acknowledges: room again
        vader.login("vader")
        got = messages(vader)
        assert len(got) == kept
        vader.send({"type": "ack", "ids": [m["id"] for m in got]})
        before = client.expect("yoda is offline; the message will be delivered when they log in")
        assert "Error." not in before and "luke\nvader" in client.expect("vader")
        yoda = srv.client()
        yoda.login("yoda")
        assert [(m["from"], m["text"]) for m in messages(yoda)] == [("hans", "only once")]
        client.end_input()
        assert client.wait() == 0
    finally:
        client.kill()
        assert srv.stop() == 0


def test_a_kept_message_sent_again_after_a_restart_is_confirmed_and_arrives_once(tmp_path):
    extra = ("--state", str(tmp_path / "state.db"))
    message = {"type": "message", "to": "yoda", "text": "once", "ref": "restart.1"}
    srv = ServerProcess(tmp_path, extra=extra)
    try:
        hans = srv.client()
        hans.login("hans")
        hans.send(message)
        first = hans.expect("stored", to="yoda")
    finally:
        assert srv.stop() == 0
    srv = ServerProcess(tmp_path, extra=extra)
    try:
        hans = srv.client()
        hans.login("hans")
        hans.send({**message, "retry": True})
        confirmed = hans.recv()
        yoda = srv.client()
        yoda.login("yoda")
        assert [(m["from"], m["text"]) for m in messages(yoda)] == [("hans", "once")]
        assert first == confirmed == {"type": "stored", "to": "yoda", "ref": "restart.1"}
        assert history_with(yoda, "hans") == history_with(hans, "yoda") == [("hans", "once")]   # in it once
    finally:
        assert srv.stop() == 0
