"""Strangers (connections not logged in) against the real server while two honest users keep talking.

Each attack asserts the honest pair's round trip stays within a bound, no
honest user is disconnected, and the attacker gets the documented answer.
Other machines are played by other loopback addresses (127.x.y.z).
"""
import json
import re
import socket
import time

import pytest

from tests.bench.attacks import round_trip, start_attackers, stop_attackers
from tests.support import NO_LIMITS, ServerProcess, WireClient, wait_for

pytestmark = pytest.mark.e2e   # starts the real server or client

BOUND = 0.5   # seconds an honest round trip may take under attack (the old server: seconds to minutes)


@pytest.fixture
def server(tmp_path):
    # The honest pair's round trips are many messages in a row: no per-user rate limit here.
    srv = ServerProcess(tmp_path, block=1.0, timeout=30,
                        extra=["--max-strangers", "12", "--max-strangers-per-address", "4",
                               "--failure-log-interval", "0.5", *NO_LIMITS])
    yield srv
    srv.stop()


@pytest.fixture
def pair(server):
    yoda, hans = server.client(), server.client()
    yoda.login("yoda")
    hans.login("hans")
    yield yoda, hans
    yoda.close()
    hans.close()


def still_talking(yoda, hans, rounds=5):
    """The honest pair's round trips all stay within BOUND, both ways, and both are still logged in."""
    for i in range(rounds):
        assert round_trip(yoda, hans, f"y{i}") < BOUND
        assert round_trip(hans, yoda, f"h{i}") < BOUND


def busy(sock: socket.socket) -> bool:
    """The server answered ``busy`` and closed."""
    sock.settimeout(5)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return json.loads(data.split(b"\n")[0]) == {"type": "error", "code": "busy"}


def connect_from(server, source):
    return socket.create_connection((server.host, server.port), timeout=5, source_address=(source, 0))


def test_strangers_past_the_cap_per_address_are_refused_busy_and_others_still_log_in(server, pair):
    held = [connect_from(server, "127.0.2.1") for _ in range(4)]
    for sock in held:   # let in: each gets its hello answered
        sock.sendall(b'{"type":"hello","version":1}\n')
        assert json.loads(sock.recv(4096)) == {"type": "hello", "version": 1, "timeout": 30}
    refused = [connect_from(server, "127.0.2.1") for _ in range(3)]
    assert all(busy(sock) for sock in refused)
    still_talking(*pair)
    luke = server.client(source="127.0.2.2")   # another address logs in
    luke.login("luke")
    held[0].close()   # one of them leaves: that address may come in again
    wait_for(lambda: _let_in(server, "127.0.2.1"), what="a place for 127.0.2.1 again")
    for sock in held[1:]:
        sock.close()
    counts = wait_for(lambda: re.findall(r"from 127\.0\.2\.1: refused \(busy\) x(\d+)", server.log()),
                      what="the refusals counted")
    assert sum(map(int, counts)) >= 3 and len(counts) <= 2   # a line per interval, not per refusal


def _let_in(server, source):
    client = WireClient(server.host, server.port, hello=False, source=source)
    client.send({"type": "hello", "version": 1})
    try:
        return client.recv()["type"] == "hello"
    finally:
        client.close()


def test_strangers_past_the_total_cap_are_refused_and_logins_from_anywhere_work_again_once_they_go(server, pair):
    held = [connect_from(server, f"127.0.4.{i % 3 + 1}") for i in range(12)]
    wait_for(lambda: busy(connect_from(server, "127.0.5.1")), what="the total cap")
    still_talking(*pair)
    leia = WireClient(server.host, server.port, hello=False, source="127.0.5.2")
    assert busy(leia.sock)
    for sock in held[:2]:
        sock.close()
    wait_for(lambda: _let_in(server, "127.0.5.2"), what="a place again")
    leia = server.client(source="127.0.5.2")
    leia.login("leia")   # a logged-in user is no stranger: the strangers' places are not taken
    still_talking(*pair)
    for sock in held[2:]:
        sock.close()


def test_a_stranger_line_is_at_most_1_kib_and_a_user_line_64_kib(server, pair):
    stranger = server.client()
    stranger.send_raw(b'{"type":"username","username":"' + b"x" * 2000)   # unfinished, over 1 KiB
    assert stranger.recv() == {"type": "error", "code": "bad_frame", "detail": "frame longer than 1024 bytes"}
    stranger.expect_closed()
    yoda, hans = pair
    text = "z" * 4000   # a 4 KiB frame: fine once logged in
    yoda.send({"type": "message", "to": "hans", "text": text})
    assert hans.until("message")["text"] == text
    still_talking(yoda, hans)


def test_who_is_online_is_told_only_after_the_right_password(server, pair):
    stranger = server.client()
    stranger.send({"type": "username", "username": "yoda"})
    stranger.expect("username_ok")   # the same as for anyone offline
    stranger.send({"type": "password", "password": "guess"})
    stranger.expect("error", code="invalid_password")
    stranger.send({"type": "password", "password": "wise@!man"})
    stranger.expect("error", code="already_logged_in", user="yoda")
    still_talking(*pair)


def test_repeated_failures_are_logged_as_counts_not_a_line_each(server, pair):
    stranger = server.client(source="127.0.6.1")
    for i in range(9):
        stranger.send({"type": "username", "username": f"nobody{i}"})
        stranger.expect("error", code="invalid_username")
    stranger.send({"type": "username", "username": "nobody9"})
    stranger.expect("error", code="invalid_username")   # the tenth refusal closes it
    stranger.expect_closed()
    line = wait_for(lambda: [entry for entry in server.log().splitlines() if "from 127.0.6.1:" in entry],
                    what="the count")
    assert len(line) == 1
    assert "closed after too many errors x1" in line[0] and "unknown user name x10" in line[0]
    assert "unknown user name" not in server.log().replace(line[0], "")   # no line per attempt
    still_talking(*pair)


def test_eight_strangers_streaming_user_names_do_not_delay_the_others(server, pair):
    attackers = start_attackers("flood-names", server.host, server.port, 8)
    try:
        wait_for(lambda: "unknown user name" in server.log(), what="the flood under way")
        yoda, hans = pair
        slowest = 0.0
        for i in range(40):
            slowest = max(slowest, round_trip(yoda, hans, f"f{i}"), round_trip(hans, yoda, f"g{i}"))
        assert slowest < BOUND
        assert all(proc.poll() is None for proc in attackers)
    finally:
        stop_attackers(attackers)
    still_talking(*pair)


def test_users_streaming_frames_get_fair_shares_of_the_loop(server, pair):
    """Logged-in users streaming as fast as they can: each readable event handles a bounded number of frames."""
    flooders = []
    for user in ("luke", "leia", "vader"):
        client = server.client()
        client.login(user)
        flooders.append(client)
    burst = b'{"type":"activity"}\n' * 20000
    yoda, hans = pair
    slowest = 0.0
    for i in range(10):
        for client in flooders:
            client.sock.sendall(burst)   # 400 KB each, handled in turns of a few frames
        time.sleep(0.001)
        slowest = max(slowest, round_trip(yoda, hans, f"a{i}"))
    assert slowest < BOUND
    for client in flooders:
        client.send({"type": "ping"})
        client.until("pong", timeout=30)   # every frame was handled, in order
    still_talking(yoda, hans)
