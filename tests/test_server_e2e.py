"""The real server process on loopback, driven by scripted socket clients."""
import json
import pathlib
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support import ACCOUNTS, NO_LIMITS, ROOT, ServerProcess, coverage_env, wait_for, write_credentials

pytestmark = [pytest.mark.e2e, pytest.mark.compiled]   # starts the real server or client (and on the compiled build)


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=30, timeout=30)   # a lock lasts longer than any test
    yield srv
    srv.stop()


@pytest.fixture
def unlimited(tmp_path):
    """A server without the per-user rate limit and quota: one sender here stands for many senders together."""
    srv = ServerProcess(tmp_path, block=0.5, timeout=30, extra=NO_LIMITS)
    yield srv
    srv.stop()


def run_server(args, cwd, timeout=10):
    return subprocess.run([sys.executable, str(ROOT / "server_main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=coverage_env())


# -- the command line ---------------------------------------------------

@pytest.mark.parametrize("args", [[], ["5000"], ["5000", "10"], ["x", "10", "10"], ["5000", "-1", "10"],
                                  ["5000", "10", "zero"], ["70000", "1", "1"], ["5000", "1", "0"],
                                  ["5000", "1", "1", "--bogus"], ["5000", "nan", "1"], ["5000", "1", "inf"],
                                  ["5000", "1", "-inf"], ["5000", "0", "1"], ["5000", "1", "31536000.5"],
                                  ["5000", "1e400", "1"], ["5000", "3e7", "4e7"]])
def test_bad_arguments_give_usage_and_status_2(tmp_path, args):
    out = run_server(args, tmp_path)
    assert out.returncode == 2
    assert "usage: server_main.py" in out.stderr


@pytest.mark.parametrize("args, name", [(["0", "nan", "1"], "block_duration"), (["0", "1", "31536001"], "timeout")])
def test_seconds_out_of_range_say_the_limits(tmp_path, args, name):
    out = run_server(args, tmp_path)
    assert out.returncode == 2
    assert f"argument {name}: '{args[1 if name == 'block_duration' else 2]}' is not a number of seconds " \
           "more than 0 and at most 31536000 (a year)" in out.stderr


def test_the_longest_durations_serve_connections(tmp_path):
    """A year of timeout arms timers a year out: the loop must wait for them without overflowing."""
    srv = ServerProcess(tmp_path, block=365 * 24 * 3600, timeout=365 * 24 * 3600)
    try:
        hans = srv.client()                 # its login deadline: the old loop died here
        hans.login("hans")
        hans.send({"type": "whoelse"})
        hans.expect("users", names=[])
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0


def test_missing_credentials_file_is_named(tmp_path):
    out = run_server(["0", "1", "1", "--credentials", "nope.txt"], tmp_path)
    assert out.returncode == 2
    assert "nope.txt" in out.stderr and len(out.stderr.strip().splitlines()) == 1


INSTALLED = pathlib.Path(sys.executable).parent / "reactor-chat-server"   # the console script make installs


def test_the_installed_command_names_itself_and_says_how_to_name_the_accounts_file(tmp_path):
    missing = subprocess.run([str(INSTALLED), "0", "1", "1"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=10, env=coverage_env())
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "credentials.txt" in missing.stderr and "--credentials FILE" in missing.stderr
    assert "'<username> <password>'" in missing.stderr
    usage = subprocess.run([str(INSTALLED), "x"], cwd=tmp_path, capture_output=True, text=True, timeout=10,
                           env=coverage_env())
    assert usage.returncode == 2 and "usage: reactor-chat-server" in usage.stderr and "server_main" not in usage.stderr
    write_credentials(tmp_path)   # plain passwords: the hint names the command to hash them with
    server = subprocess.Popen([str(INSTALLED), "0", "1", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=coverage_env())
    try:
        assert server.stdout.readline().startswith("Server listening on")
        hint = next(line for line in server.stderr if "plain password" in line)
        assert "hash them with: reactor-chat-server hash-password --user NAME" in hint
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=10)


def test_an_empty_accounts_file_is_warned_of(tmp_path):
    srv = ServerProcess(tmp_path, accounts={})
    try:
        wait_for(lambda: "serving 0 accounts" in srv.log(), what="the server serving")
        assert "holds no accounts: nobody can log in" in srv.log()
    finally:
        assert srv.stop() == 0


def test_malformed_credentials_line_is_named(tmp_path):
    (tmp_path / "creds.txt").write_text("# comment\n\nyoda wise\nbroken\n")
    out = run_server(["0", "1", "1", "--credentials", "creds.txt"], tmp_path)
    assert out.returncode == 2
    assert "creds.txt" in out.stderr and "4" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_port_in_use_is_status_1(tmp_path):
    write_credentials(tmp_path)
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        out = run_server([str(busy.getsockname()[1]), "1", "1"], tmp_path)
    finally:
        busy.close()
    assert out.returncode == 1
    assert "in use" in out.stderr


# -- the chat -----------------------------------------------------------

def test_login_message_broadcast_presence_logout(server):
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    yoda.expect("presence", user="hans", online=True)

    hans.send({"type": "message", "to": "yoda", "text": "hello there"})
    yoda.expect("message", **{"from": "hans", "text": "hello there"})

    yoda.send({"type": "broadcast", "text": "all"})
    hans.expect("message", **{"from": "yoda", "text": "all", "broadcast": True})

    hans.send({"type": "whoelse"})
    hans.expect("users", names=["yoda"])

    hans.send({"type": "logout"})
    hans.expect("bye", reason="logout")
    hans.expect_closed()
    yoda.expect("presence", user="hans", online=False)


def test_offline_message_is_kept_and_delivered_at_login(server):
    yoda = server.client()
    yoda.login("yoda")
    yoda.send({"type": "message", "to": "luke", "text": "first"})
    yoda.send({"type": "message", "to": "luke", "text": "second"})
    yoda.expect("stored", to="luke")
    yoda.expect("stored", to="luke")
    luke = server.client()
    luke.login("luke", listen=False)
    m1 = luke.expect("message", **{"from": "yoda", "text": "first"})
    m2 = luke.expect("message", **{"from": "yoda", "text": "second"})
    assert m1["id"] < m2["id"]


def three_strikes_for_vader(server):
    for attempt in range(3):
        c = server.client()
        c.send({"type": "username", "username": "vader"})
        c.expect("username_ok")
        c.send({"type": "password", "password": "wrong"})
        if attempt < 2:
            c.expect("error", code="invalid_password")
            c.close()
        else:
            c.expect("error", code="account_blocked")
            c.expect_closed()


def test_three_strikes_lock_the_account_for_block_duration(tmp_path, server):
    three_strikes_for_vader(server)      # locked for 30 s: still locked however slowly the next try comes
    c = server.client()
    c.send({"type": "username", "username": "vader"})
    frame = c.recv()
    if frame["type"] == "username_ok":
        c.send({"type": "password", "password": ACCOUNTS["vader"]})
        frame = c.recv()
    retry = frame.pop("retry", None)     # how long the lock lasts yet, in whole seconds
    assert frame == {"type": "error", "code": "account_locked"} and 0 < retry <= 30, retry
    c.expect_closed()

    (tmp_path / "short").mkdir()         # the end of a lock, on a server whose locks last 0.5 s
    short = ServerProcess(tmp_path / "short", block=0.5, timeout=30)
    try:
        three_strikes_for_vader(short)
        locked_at = time.monotonic()     # the lock began before this
        wait_for(lambda: time.monotonic() - locked_at > 0.6, what="lock over")
        c = short.client()
        c.login("vader")
    finally:
        short.stop()


def test_inactivity_timeout_comes_on_time(tmp_path):
    timeout = 2.0                        # the login and the steps below have this long before a deadline
    srv = ServerProcess(tmp_path, block=1, timeout=timeout)
    try:
        idle = srv.client()
        start = time.monotonic()
        idle.login("hans")
        time.sleep(0.3)
        idle.send({"type": "activity"})  # re-arms the deadline
        re_armed = time.monotonic()
        time.sleep(0.4)
        watcher = srv.client()           # its own deadline comes 0.4 s after hans's
        watcher.login("yoda")
        idle.expect("presence", user="yoda", online=True)
        idle.expect("bye", reason="timeout")
        late = time.monotonic() - (re_armed + timeout)
        assert time.monotonic() - start > timeout + 0.2  # the activity counted
        assert late < 0.25                               # within a fraction of a second, not a 1 s sweep
        idle.expect_closed()
        watcher.expect("presence", user="hans", online=False)
    finally:
        srv.stop()


def test_idle_users_leave_at_their_own_deadlines_while_others_are_active(tmp_path):
    """Active users' deadlines come and are moved later again and again; each idle user still leaves on time."""
    timeout, beat, slack = 1.5, 0.2, 0.5
    srv = ServerProcess(tmp_path, block=1, timeout=timeout)
    try:
        active = [srv.client() for _ in range(2)]
        for c, user in zip(active, ("hans", "yoda"), strict=True):
            c.login(user, listen=False)
        next_beat = time.monotonic()

        def keep_active():
            nonlocal next_beat
            if time.monotonic() >= next_beat:
                for c in active:
                    c.send({"type": "activity"})
                next_beat += beat

        idle = {}      # client -> (before its login, after it): its deadline is timeout after some instant between
        for user in ("vader", "luke", "leia"):
            started = time.monotonic()
            while time.monotonic() < started + 0.3:     # logged in at different times, the others busy meanwhile
                keep_active()
                time.sleep(min(0.02, max(0.0, next_beat - time.monotonic())))
            c = srv.client()
            before = time.monotonic()
            c.login(user, listen=False)
            idle[c] = (before, time.monotonic())
        left = {}      # client -> when its bye arrived
        give_up = max(after for _, after in idle.values()) + timeout + 3.0
        while len(left) < len(idle):
            now = time.monotonic()
            assert now < give_up, f"no bye for {[c.user for c in idle if c not in left]}"
            keep_active()
            waiting = [c for c in idle if c not in left]
            ready = [c for c in waiting if b"\n" in c.buffer]
            if not ready:
                readable = select.select([c.sock for c in waiting], [], [], max(0.0, min(next_beat, give_up) - now))[0]
                ready = [c for c in waiting if c.sock in readable]
            for c in ready:
                frame = c.recv()
                if frame["type"] == "bye":
                    left[c] = time.monotonic()
                    assert frame["reason"] == "timeout", frame
        for c, (before, after) in idle.items():
            assert left[c] >= before + timeout, f"{c.user} left early"
            assert left[c] <= after + timeout + slack, f"{c.user} left {left[c] - after - timeout:.2f}s late"
        for c in active:                                 # the active ones were never logged out
            c.send({"type": "whoelse"})
            assert c.until("users")["names"] == sorted({"hans", "yoda"} - {c.user})
    finally:
        srv.stop()


def test_login_deadline_closes_idle_unauthenticated_connection(tmp_path):
    srv = ServerProcess(tmp_path, block=1, timeout=0.3)
    try:
        c = srv.client()
        c.expect("error", code="login_timeout", timeout=3)
        c.expect_closed()
    finally:
        srv.stop()


# -- what the server must survive ----------------------------------------

def assert_pair_still_talks(server, a, b, tag):
    a.send({"type": "message", "to": b.user, "text": tag})
    b.until("message", text=tag)


def test_numbers_and_text_that_orjson_reads_or_writes_otherwise_get_the_standard_librarys_answers(server):
    """The fast build reads and writes frames with orjson where it agrees with json (reactor/fastjson.py): each
    case where it would not, sent through the real server, gets the answer and the bytes the pure build gives."""
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    yoda.until("presence", user="hans")
    for seconds in (b"123456789012345678901234567890", b"18446744073709551616", b"1E2", b"0.5e1", b"-0"):
        hans.send_raw(b'{"type":"whoelsesince","seconds":' + seconds + b"}\n")
        hans.expect("users", names=["yoda"])
    for seconds in (b"1e400", b"-1"):
        hans.send_raw(b'{"type":"whoelsesince","seconds":' + seconds + b"}\n")
        hans.expect("error", code="bad_argument")
    for line in (b'{"type":"whoelsesince","seconds":NaN}', b'{"type":"message","to":"yoda","text":"\\ud800"}',
                 b'{"type":"message","to":"yoda","text":"a\x01b"}'):
        hans.send_raw(line + b"\n")
        hans.expect("error", code="bad_frame")
    hans.send_raw(b'{"type":"message","to":"yoda","text":"\\u001b[2J"}\n')
    hans.expect("error", code="control_characters")
    hans.send({"type": "message", "to": "yoda", "text": "é😀\u2028 and 1e-07"})
    line = yoda.recv_line()
    frame = json.loads(line)
    assert frame["text"] == "é😀\u2028 and 1e-07"
    assert line == json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()   # as json writes it
    assert '"text":"é😀\u2028 and 1e-07"'.encode() in line   # (UTF-8 on the wire)
    assert_pair_still_talks(server, yoda, hans, "after the awkward numbers and texts")


def test_garbage_from_peers_never_hurts_the_others(server):
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    yoda.until("presence", user="hans")

    garbage = server.client(hello=False)
    garbage.send_raw(bytes(range(256)) + b"\n")
    garbage.expect("error", code="bad_frame")
    assert_pair_still_talks(server, yoda, hans, "after garbage")

    bad_utf8 = server.client()
    bad_utf8.send_raw(b'{"type":"username","username":"\xff\xfe"}\n')
    bad_utf8.expect("error", code="bad_frame")
    assert_pair_still_talks(server, yoda, hans, "after bad utf-8")

    endless = server.client()
    endless.send_raw(b"a" * 200_000)  # a line with no end, over the frame limit
    endless.expect("error", code="bad_frame")
    endless.expect_closed()
    assert_pair_still_talks(server, yoda, hans, "after endless line")

    flood = server.client()
    try:
        flood.send_raw(b"not json\n" * 5000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    flood.expect_closed()
    assert_pair_still_talks(server, yoda, hans, "after flood")

    deep = server.client()
    deep.send_raw(b"[" * 30000 + b"]" * 30000 + b"\n")
    deep.expect("error", code="bad_frame")
    assert_pair_still_talks(server, yoda, hans, "after deep nesting")

    wrong_types = server.client()
    for frame in ([], {"type": 5}, {"type": "username", "username": ["x"]}, {"type": "message"}):
        wrong_types.send(frame)
        wrong_types.expect("error")
    assert_pair_still_talks(server, yoda, hans, "after wrong types")
    assert server.proc.poll() is None


def test_many_silent_connections_do_not_stall_the_others(unlimited):
    server = unlimited
    # From 12 other addresses, 27 strangers each: under the cap per address, so all are let in.
    silent = [socket.create_connection((server.host, server.port), source_address=(f"127.0.1.{i % 12 + 1}", 0))
              for i in range(300)]
    half_open = [server.client(source=f"127.0.1.{i % 12 + 1}") for i in range(20)]
    for c in half_open:
        c.send_raw(b'{"type":"username"')  # half a frame, then nothing
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    start = time.monotonic()
    for i in range(50):
        assert_pair_still_talks(server, yoda, hans, f"m{i}")
    assert time.monotonic() - start < 5
    for s in silent:
        s.close()
    for c in half_open:
        c.close()


def test_a_client_that_never_reads_is_dropped_and_others_are_not_slowed(unlimited):
    server = unlimited
    sink = server.client()
    sink.login("leia")
    sink.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    big = "x" * 4000
    dropped = False
    sent = 0
    while sent * 4000 < 50 * (1 << 20) and not dropped:   # bounded by bytes, not by the machine's speed
        for _ in range(50):
            yoda.send({"type": "message", "to": "leia", "text": big})
            sent += 1
        assert_pair_still_talks(server, hans, yoda, f"still fast {sent}")
        dropped = "not reading" in server.log()
    assert dropped, "the server kept buffering for a peer that never reads"
    assert sent * 4000 < 50 * (1 << 20)  # cut off long before 50 MiB piled up


def test_sigterm_says_goodbye_to_every_client(server):
    clients = []
    for user in ("yoda", "hans", "luke"):
        c = server.client()
        c.login(user)
        clients.append(c)
    anonymous = server.client()
    server.proc.send_signal(signal.SIGTERM)
    for c in clients:
        c.until("bye", reason="shutdown")
        c.expect_closed()
    anonymous.until("bye", reason="shutdown")
    assert server.proc.wait(10) == 0
