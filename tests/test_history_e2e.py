"""History and away against the real server, and across the nodes of a real cluster: what is kept, shown, forgotten,
refused; a long history in frames within the limit; the state file's history across a restart."""
import json
import time

import pytest

from reactor.framing import MAX_FRAME
from tests.support import NO_LIMITS, ClientProcess, ServerProcess, wait_for

pytestmark = pytest.mark.e2e


def recv(client, timeout=None):
    """The next frame but presence notices (and, in cluster mode, a message's ``delivered``, which comes when it
    comes)."""
    while (frame := client.recv(timeout))["type"] in ("presence", "delivered"):
        pass
    return frame


def history(client, **fields):
    """The messages of a history as (from, text), oldest first, and its frames (each until the pong)."""
    client.send({"type": "history", **fields})
    client.send({"type": "ping"})
    frames = []
    while (frame := recv(client))["type"] != "pong":
        assert frame["type"] == "history", frame
        frames.append(frame)
    return [(m["from"], m["text"]) for f in frames for m in f["messages"]], frames


def answer(client, frame):
    """The first frame the server answers ``frame`` with."""
    client.send(frame)
    return recv(client)


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, extra=("--state", str(tmp_path / "state.db"), *NO_LIMITS))
    yield srv
    srv.stop()


def test_a_conversation_is_kept_for_both_oldest_first_with_its_time_and_writer(server):
    hans, yoda = server.client(), server.client()
    hans.login("hans")
    yoda.login("yoda")
    hans.send({"type": "message", "to": "yoda", "text": "one"})
    assert yoda.until("message")["text"] == "one"
    yoda.send({"type": "message", "to": "hans", "text": "two"})
    assert hans.until("message")["text"] == "two"
    yoda.send({"type": "logout"})
    yoda.until("bye")
    hans.send({"type": "message", "to": "yoda", "text": "three\nlines"})   # kept for later: in the history too
    hans.until("stored", to="yoda")
    before = time.time()
    messages, frames = history(hans, user="yoda")
    assert messages == [("hans", "one"), ("yoda", "two"), ("hans", "three\nlines")]
    assert frames[0]["user"] == "yoda"
    assert all(before - 60 < m["sent"] <= before + 1 for m in frames[0]["messages"])
    assert history(hans, user="yoda", n=2)[0] == [("yoda", "two"), ("hans", "three\nlines")]
    again = server.client()
    again.login("yoda")
    assert again.until("message")["text"] == "three\nlines"
    assert history(again, user="hans")[0] == messages   # the other side's copy
    assert history(again, user="luke")[0] == [] and history(again, user="luke")[1][0]["messages"] == []


def test_the_real_clients_keep_a_live_conversation_and_hear_that_its_other_side_is_away(server):
    """The real client says it sends receipts: a live message handed to it with its ref is a live message like
    any, in both histories, and its sender hears the away words (they were lost on that relay)."""
    clients = []
    try:
        for user in ("yoda", "hans"):
            clients.append(ClientProcess(server.host, server.port))
            clients[-1].login(user)
        yoda, hans = clients
        yoda.type("away meditating")
        yoda.expect("You are away: meditating")
        hans.type("message yoda hello there")
        hans.expect("yoda is away: meditating")
        yoda.expect("hans: hello there")
        hans.type("history yoda")
        hans.expect("] hans: hello there")
        yoda.type("history hans")
        yoda.expect("] hans: hello there")
    finally:
        for client in clients:
            client.kill()


def test_broadcasts_kept_for_those_who_got_them_not_for_a_blocker_nor_for_one_logged_out(server):
    hans, yoda, vader = server.client(), server.client(), server.client()
    for client, user in ((hans, "hans"), (yoda, "yoda"), (vader, "vader")):
        client.login(user)
    assert answer(vader, {"type": "block", "user": "hans"})["type"] == "blocked"
    hans.send({"type": "broadcast", "text": "hello all"})
    assert yoda.until("message")["text"] == "hello all"
    hans.until("broadcast_partial")
    assert history(hans, broadcast=True)[0] == [("hans", "hello all")]   # sent
    assert history(yoda, broadcast=True)[0] == [("hans", "hello all")]   # got
    assert history(vader, broadcast=True)[0] == []                      # blocked it: never got it
    late = server.client()
    late.login("luke")   # logged in after it was sent: never got it
    assert history(late, broadcast=True)[0] == []
    # A message refused for a block is in nobody's history.
    assert answer(hans, {"type": "message", "to": "vader", "text": "let me in"})["code"] == "blocked_by_recipient"
    assert history(vader, user="hans")[0] == [] and history(hans, user="vader")[0] == []


def test_forget_drops_my_copy_only_and_bad_input_gets_an_error_each(server):
    hans, yoda = server.client(), server.client()
    hans.login("hans")
    yoda.login("yoda")
    hans.send({"type": "message", "to": "yoda", "text": "old"})
    yoda.until("message")
    assert answer(hans, {"type": "forget", "user": "yoda"}) == {"type": "forgotten", "user": "yoda"}
    hans.send({"type": "message", "to": "yoda", "text": "new"})
    yoda.until("message")
    assert history(hans, user="yoda")[0] == [("hans", "new")]
    assert history(yoda, user="hans")[0] == [("hans", "old"), ("hans", "new")]
    assert answer(hans, {"type": "forget", "broadcast": True}) == {"type": "forgotten", "broadcast": True}
    for frame, code in (({"type": "history", "user": "nobody"}, "invalid_user"),
                        ({"type": "history", "user": "hans"}, "self"),
                        ({"type": "history"}, "bad_argument"),
                        ({"type": "history", "user": "yoda", "n": 0}, "bad_argument"),
                        ({"type": "history", "user": "yoda", "n": 501}, "bad_argument"),
                        ({"type": "history", "user": "yoda", "n": "5"}, "bad_argument"),
                        ({"type": "forget", "user": "nobody"}, "invalid_user"),
                        ({"type": "away", "text": "gone\x1b[2J"}, "control_characters"),
                        ({"type": "away", "text": "x" * 201}, "text_too_long"),
                        ({"type": "back"}, "not_away")):
        reply = answer(hans, frame)
        assert reply["type"] == "error" and reply["code"] == code, (frame, reply)


def test_away_answers_each_sender_once_an_away_period_and_whoelse_marks_it(server):
    hans, yoda, luke = server.client(), server.client(), server.client()
    hans.login("hans")
    yoda.login("yoda")
    luke.login("luke")
    assert answer(yoda, {"type": "away", "text": "meditating"}) == {"type": "away", "text": "meditating"}
    hans.send({"type": "whoelse"})
    assert hans.until("users") == {"type": "users", "names": ["luke", "yoda"], "away": ["yoda"]}
    for _ in range(2):
        hans.send({"type": "message", "to": "yoda", "text": "master?"})
        assert yoda.until("message")["text"] == "master?"
    hans.send({"type": "ping"})
    assert recv(hans) == {"type": "away_reply", "user": "yoda", "text": "meditating"}
    assert recv(hans) == {"type": "pong"}   # (once: the second message got no answer)
    luke.send({"type": "message", "to": "yoda", "text": "master!"})
    assert luke.until("away_reply") == {"type": "away_reply", "user": "yoda", "text": "meditating"}
    assert yoda.until("message")["text"] == "master!"
    assert answer(yoda, {"type": "away"}) == {"type": "away", "text": ""}   # a new away period
    hans.send({"type": "message", "to": "yoda", "text": "now?"})
    assert hans.until("away_reply") == {"type": "away_reply", "user": "yoda", "text": ""}
    assert yoda.until("message")["text"] == "now?"
    assert answer(yoda, {"type": "back"}) == {"type": "back"}
    hans.send({"type": "message", "to": "yoda", "text": "back?"})
    hans.send({"type": "whoelse"})
    assert hans.until("users") == {"type": "users", "names": ["luke", "yoda"]}


def test_a_long_history_comes_in_frames_within_the_limit_and_others_are_not_held_up(server):
    hans, yoda, luke, leia = (server.client() for _ in range(4))
    for client, user in ((hans, "hans"), (yoda, "yoda"), (luke, "luke"), (leia, "leia")):
        client.login(user)
    texts = [f"{i:03d}" + "\U0001F600" * 4000 for i in range(500)]   # 48 KB on the wire each
    for text in texts:
        hans.send({"type": "message", "to": "yoda", "text": text})
    hans.send({"type": "ping"})
    hans.until("pong")
    yoda.sock.settimeout(60)
    hans.send({"type": "history", "user": "yoda", "n": 500})
    hans.send({"type": "ping"})
    # While hans reads nothing (500 x 48 KB wait), the others chat on.
    luke.send({"type": "message", "to": "leia", "text": "still here"})
    assert leia.until("message")["text"] == "still here"
    sizes, messages = [], []
    while True:
        hans.sock.settimeout(60)
        frame = recv(hans, timeout=60)
        if frame["type"] == "pong":
            break
        sizes.append(len(json.dumps(frame)))
        messages += [m["text"] for m in frame["messages"]]
    assert messages == texts
    assert max(sizes) <= MAX_FRAME and len(sizes) >= 500   # (one such message a frame)


def test_history_survives_a_restart_and_history_days_0_keeps_none(tmp_path):
    state = str(tmp_path / "state.db")
    (tmp_path / "one").mkdir()
    srv = ServerProcess(tmp_path / "one", extra=("--state", state, *NO_LIMITS))
    try:
        hans, yoda = srv.client(), srv.client()
        hans.login("hans")
        yoda.login("yoda")
        hans.send({"type": "message", "to": "yoda", "text": "remember me"})
        yoda.until("message")
    finally:
        assert srv.stop() == 0
    (tmp_path / "two").mkdir()
    srv = ServerProcess(tmp_path / "two", extra=("--state", state, *NO_LIMITS))
    try:
        hans = srv.client()
        hans.login("hans")
        assert history(hans, user="yoda")[0] == [("hans", "remember me")]
    finally:
        assert srv.stop() == 0
    (tmp_path / "three").mkdir()
    srv = ServerProcess(tmp_path / "three", extra=("--state", state, "--history-days", "0", *NO_LIMITS))
    try:
        wait_for(lambda: "history: none kept (--history-days 0)" in srv.log(), what="the log line")
        hans = srv.client()
        hans.login("hans")
        assert answer(hans, {"type": "history", "user": "yoda"})["code"] == "history_off"
        assert answer(hans, {"type": "forget", "user": "yoda"})["code"] == "history_off"
    finally:
        assert srv.stop() == 0
    import sqlite3
    conn = sqlite3.connect(state)
    assert conn.execute("SELECT count(*) FROM history").fetchone() == (0,)   # what was kept is dropped
    conn.close()


def test_history_and_away_across_the_nodes_of_a_cluster(cluster):
    hans = cluster.login_on("a", "hans")
    yoda = cluster.login("c", "yoda")
    luke = cluster.login_on("b", "luke")
    yoda.send({"type": "away", "text": "on Dagobah"})
    yoda.until("away")
    wait_for(lambda: answer(luke, {"type": "whoelse"}).get("away") == ["yoda"], what="yoda away on b")
    hans.send({"type": "message", "to": "yoda", "text": "across"})
    assert yoda.until("message")["text"] == "across"
    assert hans.until("away_reply") == {"type": "away_reply", "user": "yoda", "text": "on Dagobah"}
    yoda.send({"type": "message", "to": "hans", "text": "reply"})
    assert hans.until("message")["text"] == "reply"
    hans.send({"type": "broadcast", "text": "to all nodes"})
    assert luke.until("message")["text"] == "to all nodes"
    assert yoda.until("message")["text"] == "to all nodes"
    luke.send({"type": "message", "to": "yoda", "text": "from b"})
    assert yoda.until("message")["text"] == "from b"
    assert luke.until("away_reply") == {"type": "away_reply", "user": "yoda", "text": "on Dagobah"}
    expected = [("hans", "across"), ("yoda", "reply")]
    assert wait_for(lambda: history(hans, user="yoda")[0] == expected, what="hans's history") is True
    assert history(yoda, user="hans")[0] == expected
    assert history(luke, broadcast=True)[0] == [("hans", "to all nodes")]
    assert history(yoda, broadcast=True)[0] == [("hans", "to all nodes")]
    assert answer(hans, {"type": "forget", "user": "yoda"}) == {"type": "forgotten", "user": "yoda"}
    assert history(hans, user="yoda")[0] == [] and history(yoda, user="hans")[0] == expected
    yoda.send({"type": "back"})
    yoda.until("back")
    wait_for(lambda: "away" not in answer(luke, {"type": "whoelse"}), what="yoda back on b")
