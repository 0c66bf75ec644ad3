"""Cluster mode end to end: three real server nodes on one real engine (the ``cluster`` fixture, on the ``engine``
fixture), nodes a and b sharing one port (``--reuse-port``: the kernel picks which of the two a connection lands
on), node c on its own (``Cluster`` in tests/support.py). Faults (a node killed, the engine away or emptied, a
node id started twice): tests/test_cluster_faults.py.

Which node a login landed on is read from the nodes' logs (``USER logged in``). Every wait has a deadline."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from reactor.cluster.host import GRACE, RECONNECT, RENEW_EVERY
from tests.support import (
    ACCOUNTS,
    LEASE,
    ClientProcess,
    cluster_login,
    history_with,
    logout,
    names,
    presence_until,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_messages_presence_and_whoelse_across_three_nodes(cluster):
    hans = cluster.login_on("c", "hans")
    yoda = cluster.login_on("a", "yoda")
    luke = cluster.login_on("b", "luke")
    for client in (hans, yoda):
        presence_until(client, "luke", True)
    assert names(hans) == ["luke", "yoda"] and names(yoda) == ["hans", "luke"] and names(luke) == ["hans", "yoda"]
    for sender, to in ((hans, yoda), (yoda, luke), (luke, hans)):
        sender.send({"type": "message", "to": to.user, "text": f"from {sender.user} to {to.user}"})
        to.until("message", **{"from": sender.user, "text": f"from {sender.user} to {to.user}"})
    yoda.send({"type": "broadcast", "text": "to all nodes"})
    for client in (hans, luke):
        client.until("message", **{"from": "yoda", "text": "to all nodes", "broadcast": True})
    logout(yoda)
    for client in (hans, luke):
        presence_until(client, "yoda", False)
        assert names(client) == sorted({"hans", "luke"} - {client.user})
        assert "yoda" in names(client, "whoelsesince", seconds=60)


def test_the_same_user_on_two_nodes_is_already_logged_in(cluster):
    cluster.login("c", "yoda")
    for node in ("ab", "ab", "c"):
        client = cluster.connect(node)
        client.send({"type": "username", "username": "yoda"})
        client.expect("username_ok")
        client.send({"type": "password", "password": ACCOUNTS["yoda"]})
        client.expect("error", code="already_logged_in", user="yoda")


def test_simultaneous_logins_of_one_user_over_the_nodes_give_one_welcome(cluster):
    cluster.login("c", "hans")   # (every node has joined once a login went through on each)
    cluster.login_on("a", "luke")
    cluster.login_on("b", "vader")
    clients = [cluster.connect(node) for node in ("ab", "c") * 4]
    for client in clients:
        client.send({"type": "username", "username": "leia"})
        client.expect("username_ok")
    start = threading.Barrier(len(clients))

    def send(client):
        start.wait()
        client.send({"type": "password", "password": ACCOUNTS["leia"]})

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers = [client.recv() for client in clients]
    assert sorted(a["type"] for a in answers) == ["error"] * 7 + ["welcome"], answers
    assert all(a == {"type": "error", "code": "already_logged_in", "user": "leia"}
               for a in answers if a["type"] == "error"), answers


def test_wrong_passwords_over_nodes_lock_the_account_on_every_node(cluster):
    cluster.login("c", "hans")
    cluster.login_on("a", "luke")
    cluster.login_on("b", "vader")   # every node has joined
    for node, answer in (("c", "invalid_password"), ("ab", "invalid_password"), ("c", "account_blocked")):
        client = cluster.connect(node)
        client.send({"type": "username", "username": "yoda"})
        client.expect("username_ok")
        client.send({"type": "password", "password": "not yoda's"})
        client.expect("error", code=answer)
    for node in ("ab", "ab", "c"):
        client = cluster.connect(node)
        client.send({"type": "username", "username": "yoda"})
        frame = client.recv()
        if frame["type"] == "username_ok":   # (a node may hear of the lock a moment later: the engine says it)
            client.send({"type": "password", "password": ACCOUNTS["yoda"]})
            frame = client.recv()
        retry = frame.pop("retry", None)   # how long the lock lasts yet (block=30)
        assert frame == {"type": "error", "code": "account_locked"} and 0 < retry <= 30, (frame, retry)


def test_a_message_kept_via_one_node_is_delivered_once_on_another(cluster):
    hans = cluster.login("c", "hans")
    hans.send({"type": "message", "to": "yoda", "text": "kept in the engine"})
    hans.expect("stored", to="yoda")
    yoda = cluster.login("ab", "yoda")
    frame = yoda.until("message", **{"from": "hans", "text": "kept in the engine"})
    yoda.send({"type": "ack", "ids": [frame["id"]]})
    assert yoda.silent()
    logout(yoda)
    again = cluster.login("c", "yoda")
    assert again.silent()   # acknowledged: not delivered again


def fill(client, to, text, count):
    """Send ``count`` messages to the offline ``to``; the answers, in order (a ping after them marks the end),
    presence notices left out."""
    for _ in range(count):
        client.send({"type": "message", "to": to, "text": text})
    client.send({"type": "ping"})
    answers = []
    while (frame := client.recv())["type"] != "pong":
        if frame["type"] != "presence":
            answers.append(frame)
    return answers


def test_the_sender_quota_and_the_mailbox_cap_are_the_engines_for_the_whole_cluster(cluster):
    """The quota (1 MiB kept per sender) and the cap (1,000 kept per mailbox) are counted by the engine: a
    sender who moves to another node, or another sender on another node, finds them as full as they were."""
    hans = cluster.login("c", "hans")
    big = "x" * 4096   # counts 64 + 4096 bytes: 252 fit in 1 MiB
    answers = fill(hans, "vader", big, 260)
    assert answers[:252] == [{"type": "stored", "to": "vader"}] * 252
    assert answers[252:] == [{"type": "error", "code": "quota_exceeded", "quota": 1 << 20}] * 8
    logout(hans)
    hans = cluster.login("ab", "hans")   # another node: the same count
    assert fill(hans, "luke", big, 1) == [{"type": "error", "code": "quota_exceeded", "quota": 1 << 20}]

    yoda = cluster.login("c", "yoda")
    answers = fill(yoda, "leia", "hi", 1001)
    assert answers[:1000] == [{"type": "stored", "to": "leia"}] * 1000
    assert answers[1000:] == [{"type": "error", "code": "queue_full", "user": "leia"}]
    assert hans.node != "c"
    assert fill(hans, "leia", "me too", 1) == [{"type": "error", "code": "queue_full", "user": "leia"}]


def test_a_node_killed_is_reaped_and_its_users_may_log_in_elsewhere(cluster):
    yoda = cluster.login_on("a", "yoda")
    hans = cluster.login("c", "hans")   # (after yoda's tries: the next presence it hears of yoda is the kill's)
    killed = time.monotonic()
    cluster.nodes["a"].proc.kill()
    presence_until(hans, "yoda", False)
    reaped = time.monotonic() - killed
    assert reaped < 2 * LEASE + 1, reaped
    assert names(hans) == []
    hans.send({"type": "message", "to": "yoda", "text": "while you were dead"})
    hans.expect("stored", to="yoda")
    yoda.close()
    again = cluster.login("ab", "yoda")   # only b is left on the shared port
    assert again.node == "b"
    again.until("message", **{"from": "hans", "text": "while you were dead"})
    presence_until(hans, "yoda", True)


@pytest.mark.parametrize("fenced", [False, True], ids=["back-at-once", "back-after-the-fence"])
def test_the_engine_killed_and_restarted_loses_nothing_kept(cluster, engine, fenced):
    """Restarted at once the nodes may keep their sessions; restarted after the nodes ended theirs (bye
    cut_off), they join again. Either way what was kept is there, and nobody is logged in twice."""
    hans = cluster.login("c", "hans")
    hans.send({"type": "message", "to": "yoda", "text": "before the crash"})
    hans.expect("stored", to="yoda")
    luke = cluster.login("ab", "luke")
    if fenced:
        engine.kill9()
        for client in (hans, luke):
            client.until("bye", reason="cut_off", timeout=2 * LEASE)
        engine.start()   # on the same port and directory
    else:
        engine.restart()   # kill -9, then start on the same port and directory
    for node in ("c", "a", "b"):   # a node that took a login after the restart is back in the cluster
        logout(cluster.login_on(node, "vader"))
    clients = {"hans": hans, "luke": luke}
    # A node may have ended its sessions while the engine was away (bye cut_off), or kept them.
    for user, client in list(clients.items()):
        client.send({"type": "ping"})
        try:
            client.until("pong")
        except (EOFError, ConnectionError):
            clients[user] = cluster.login("c" if user == "hans" else "ab", user)
    yoda = cluster.login("ab", "yoda")
    yoda.until("message", **{"from": "hans", "text": "before the crash"})
    # Nobody is logged in twice, and every node agrees on who is online.
    for user in ("hans", "luke", "yoda"):
        for node in ("ab", "c"):
            client = cluster.connect(node)
            client.send({"type": "username", "username": user})
            client.expect("username_ok")
            client.send({"type": "password", "password": ACCOUNTS[user]})
            client.expect("error", code="already_logged_in", user=user)
    everyone = [*clients.values(), yoda]
    for client in everyone:
        wait_for(lambda client=client: names(client) == sorted({"hans", "luke", "yoda"} - {client.user}),
                 what=f"{client.user}'s whoelse")


@pytest.mark.parametrize("stopped_for", [0.0, LEASE], ids=["connection-kept", "connection-dropped"])
def test_a_node_cut_off_from_the_engine_ends_its_sessions_and_refuses_logins(cluster, engine, stopped_for):
    """Stopped just past the fence, the engine's connection stays up; stopped for a lease, it is dropped
    (no reply in time) and made again. Either way the node joins again once the engine answers."""
    hans = cluster.login("c", "hans")
    engine.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        hans.until("bye", reason="cut_off", timeout=2 * LEASE)
        assert time.monotonic() - stopped < LEASE, "fenced only after the lease"
        client = cluster.connect("c")
        client.send({"type": "username", "username": "yoda"})
        client.expect("username_ok")
        client.send({"type": "password", "password": ACCOUNTS["yoda"]})
        client.expect("error", code="cluster_unavailable")
        wait_for(lambda: time.monotonic() - stopped > stopped_for, what="the engine stopped long enough")
    finally:
        engine.signal(signal.SIGCONT)
    cluster_login(client, "yoda")
    assert names(client) == []
    with pytest.raises(AssertionError, match="no frame"):   # the node is back for good: no bye within a lease
        client.recv(timeout=LEASE)
    assert client.silent()


def test_a_message_the_node_was_told_not_kept_while_the_engine_stopped_arrives_once_after_a_retry(cluster, engine):
    """Issue 21 item 3, a long outage. The engine stopped (SIGSTOP) for longer than a lease, past the grace: the
    sender may be told its message was not kept, yet the node's KEEP is carried out once the engine runs again,
    and the node ends its sessions meanwhile (the real client then says the message was not confirmed and
    exits: a message typed in a new client is a new one). A client that sends it again with its ref, on its
    session if the node kept it, else after logging in again (played here on the wire), is confirmed, and the
    recipient gets it once (on main: twice). An outage the session outlives, with the real client: below."""
    hans = cluster.login("c", "hans")
    message = {"type": "message", "to": "vader", "text": "not twice", "ref": "e2e.1"}
    engine.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        hans.send(message)
        hans.send({"type": "ping"})
        answers = []
        try:
            while {"type": "pong"} not in answers:
                answers.append(hans.recv(timeout=2 * LEASE))
        except (EOFError, ConnectionError):
            pass
        assert {"type": "stored", "to": "vader", "ref": "e2e.1"} not in answers, answers   # not kept, it heard
        wait_for(lambda: time.monotonic() - stopped > LEASE, what="the engine stopped long enough")
    finally:
        engine.signal(signal.SIGCONT)
    try:
        assert hans.silent()
    except (EOFError, ConnectionError, AssertionError):   # its node ended the session meanwhile
        hans = cluster.login("c", "hans")
    hans.send({**message, "retry": True})
    hans.send({"type": "ping"})
    confirmed = hans.until("stored", to="vader")
    hans.expect("pong")
    vader = cluster.login("ab", "vader")
    vader.send({"type": "ping"})
    got = []
    while (frame := vader.recv())["type"] != "pong":
        got.append(frame)
    assert [(f["from"], f["text"]) for f in got if f["type"] == "message"] == [("hans", "not twice")]
    assert confirmed == {"type": "stored", "to": "vader", "ref": "e2e.1"}
    assert history_with(vader, "hans") == [("hans", "not twice")]   # its KEEP's history, and none from the retry


@pytest.mark.parametrize("where", ["offline", "on-another-node"])
def test_the_real_client_sends_again_a_message_its_node_could_not_confirm_while_the_engine_stopped_briefly(
        cluster, engine, where):
    """Issue 21 item 3 with the real client, through an outage its session outlives: the engine stopped (SIGSTOP)
    until the node gives up waiting for its reply (LEASE / 2) and the client says it waits, then at once running
    again: shorter than the grace (asserted), so nobody is logged out. The node said store_full (before the pong
    for vader offline: KEEP; after it, naming the ref, for vader on another node: RELAY), though the engine
    carries the queued command out once it runs; the client sends the message again with its ref, it is
    confirmed, and vader gets it once (on main: the client shows the error, and a sender who sends it again
    causes a second copy)."""
    logout(cluster.login("c", "luke"))   # (once node c takes logins: a new engine settles first)
    vader = cluster.login_on("a", "vader") if where == "on-another-node" else None
    client = ClientProcess("127.0.0.1", cluster.nodes["c"].port)
    try:
        client.login("hans")
        if vader is not None:
            client.type("whoelse")
            client.expect("vader")   # node c knows where vader is: the message goes through RELAY
        engine.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            client.type("message vader not twice")
            client.expect("Message to vader not confirmed yet; trying again in 1 s")
        finally:
            engine.signal(signal.SIGCONT)
        outage = time.monotonic() - stopped
        assert outage < GRACE - RENEW_EVERY - RECONNECT, f"an outage of {outage:.2f} s is not shorter than the grace"
        client.expect("vader is offline; the message will be delivered when they log in" if vader is None
                      else "Message to vader sent")
        client.type("message vader barrier")   # after it on the same way: once vader has this, nothing else comes
        assert "Error." not in client.text()
        if vader is None:
            client.expect("vader is offline; the message will be delivered when they log in")
            vader = cluster.login("ab", "vader")
        got = []
        while "barrier" not in got:
            frame = vader.recv()
            if frame["type"] == "message":
                assert frame["from"] == "hans", frame
                got.append(frame["text"])
        assert got == ["not twice", "barrier"]
        # In the history once: written by KEEP (vader offline: the retry's KEEP was 'again') or by vader's node
        # when it delivered the RELAY's (the retry's KEEP was 'again' too).
        assert history_with(vader, "hans") == [("hans", "not twice"), ("hans", "barrier")]
        client.type("whoelse")   # hans's session outlived the outage, and so did vader's
        client.expect("vader")
        vader.send({"type": "ping"})
        vader.until("pong")
        client.end_input()
        assert client.wait() == 0
    finally:
        client.kill()
