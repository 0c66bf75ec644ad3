"""The server's edges with the real process (and, for exact turns, the real host in this process): SIGHUP
reloads the accounts, a full store refuses only what does not fit, and files it must not touch or read."""
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support import (
    ACCOUNTS,
    NO_LIMITS,
    ROOT,
    ClientProcess,
    FullCommit,
    InProcess,
    ServerProcess,
    contents,
    coverage_env,
    opened,
    wait_for,
    write_credentials,
)

pytestmark = [pytest.mark.e2e, pytest.mark.compiled]   # starts the real server or client (and on the compiled build)


def frame(type_, **fields):
    return {"type": type_, **fields}


# -- SIGHUP --------------------------------------------------------------------------------

def test_sighup_reloads_the_accounts_and_a_bad_file_keeps_them(tmp_path):
    srv = ServerProcess(tmp_path)
    try:
        hans, yoda = srv.client(), srv.client()
        hans.login("hans")
        yoda.login("yoda")
        hans.until("presence", user="yoda", online=True)
        accounts = {u: p for u, p in ACCOUNTS.items() if u != "yoda"}
        accounts.update({"luke": "new*saber", "rey": "scavenger"})
        write_credentials(tmp_path, accounts)
        srv.proc.send_signal(signal.SIGHUP)
        yoda.expect("bye", reason="account_removed", timeout=5)
        yoda.expect_closed()
        hans.until("presence", user="yoda", online=False)
        rey = srv.client()
        rey.login("rey", "scavenger")
        luke = srv.client()
        luke.send(frame("username", username="luke"))
        luke.expect("username_ok")
        luke.send(frame("password", password=ACCOUNTS["luke"]))
        luke.expect("error", code="invalid_password")
        luke.send(frame("password", password="new*saber"))
        luke.expect("welcome", user="luke")
        log = wait_for(lambda: "with a new password" in srv.log() and srv.log(), what="reload logged")
        assert "accounts reloaded: 2 removed" not in log and "accounts reloaded: 1 removed: yoda" in log
        assert "accounts reloaded: 1 added" in log and "new*saber" not in log

        (tmp_path / "credentials.txt").write_text("hans falcon*solo\nbroken line here\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "accounts not reloaded" in srv.log(), what="refusal logged")
        assert "credentials.txt:2" in srv.log()
        again = srv.client()
        again.send(frame("username", username="leia"))   # the accounts of the last good reload stay
        again.expect("username_ok")
        hans.send(frame("whoelse"))
        assert hans.until("users")["names"] == ["luke", "rey"]
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0


def test_the_client_of_a_removed_account_says_so_and_exits_1(tmp_path):
    srv = ServerProcess(tmp_path)
    client = ClientProcess(srv.host, srv.port, cwd=tmp_path)
    try:
        client.login("yoda")
        write_credentials(tmp_path, {u: p for u, p in ACCOUNTS.items() if u != "yoda"})
        srv.proc.send_signal(signal.SIGHUP)
        client.expect("Error. Your account was removed")
        assert client.wait() == 1
    finally:
        client.kill()
        assert srv.stop() == 0


def test_sighup_while_shutting_down_does_no_harm(tmp_path):
    srv = ServerProcess(tmp_path)
    hans = srv.client()
    hans.login("hans")
    srv.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while srv.proc.poll() is None and time.monotonic() < deadline:   # reloads asked for all the way out
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.001)
    assert srv.stop() == 0, srv.log()
    assert hans.until("bye")["reason"] == "shutdown"
    assert "Traceback" not in srv.log()


# -- a full store --------------------------------------------------------------------------

def fill(hans, to="yoda", size=3000):
    """Hans sends messages to ``to`` (offline) until one is refused; the number kept."""
    kept = 0
    while True:
        hans.send(frame("message", to=to, text=f"{kept} " + "x" * size))
        reply = hans.recv()
        while reply["type"] == "presence":
            reply = hans.recv()
        if reply["type"] == "stored":
            kept += 1
            continue
        assert reply == frame("error", code="store_full", command="message", user=to), reply
        return kept


def test_a_full_store_refuses_a_message_serves_everyone_and_stores_again_once_there_is_room(tmp_path):
    state = tmp_path / "state.db"
    # (no history: the offline messages alone fill the state file, and acknowledging them frees it)
    srv = ServerProcess(tmp_path, extra=("--state", str(state), "--state-max-bytes", "96K", "--history-days", "0",
                                         *NO_LIMITS))
    try:
        hans, luke, leia = srv.client(), srv.client(), srv.client()
        hans.login("hans")
        luke.login("luke")
        leia.login("leia")
        kept = fill(hans)
        assert 10 < kept < 40, kept
        hans.send(frame("message", to="yoda", text="x" * 3000))   # the store stays full
        hans.until("error", code="store_full", user="yoda")
        # Everyone else goes on: online messages need no room.
        luke.send(frame("message", to="leia", text="still here?"))
        assert leia.until("message")["text"] == "still here?"
        hans.send(frame("whoelse"))
        assert hans.until("users")["names"] == ["leia", "luke"]
        # yoda reads and acknowledges: room again.
        yoda = srv.client()
        yoda.login("yoda")
        got = [yoda.until("message") for _ in range(kept)]
        assert [m["text"].split(" ")[0] for m in got] == [str(i) for i in range(kept)]   # none refused came
        yoda.send(frame("ack", ids=[m["id"] for m in got]))
        yoda.send(frame("logout"))
        yoda.expect_closed()
        hans.send(frame("message", to="yoda", text="after the ack"))
        hans.until("stored", to="yoda")
        assert "the store is full" in srv.log()
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0
    conn = sqlite3.connect(state)
    assert [r[0] for r in conn.execute("SELECT text FROM offline")] == ["after the ack"]
    conn.close()


def next_reply(peer, limit=5.0):
    """The next frame ``peer`` gets, running the in-process loop meanwhile."""
    deadline = time.monotonic() + limit
    while not peer.pending:
        assert time.monotonic() < deadline, "no reply"
        peer.world.loop.run_once(0.01)
        peer.pending += peer.frames()
    return peer.pending.pop(0)


def test_in_a_full_turn_the_messages_are_refused_and_the_acks_and_blocks_kept(tmp_path):
    from reactor.server.store import Store
    store = Store.open(str(tmp_path / "state.db"), max_bytes=96 * 1024)
    world = InProcess(lambda loop: store)
    try:
        hans = world.connect()
        hans.login("hans")
        hans.pending = []
        kept = 0
        while True:
            hans.send(frame("message", to="yoda", text=f"{kept} " + "x" * 3000))
            reply = next_reply(hans)
            if reply["type"] != "stored":
                break
            kept += 1
        assert reply == frame("error", code="store_full", command="message", user="yoda")
        yoda = world.connect()
        got = yoda.login("yoda")
        got += yoda.until("message", kept - sum(f["type"] == "message" for f in got))
        ids = [f["id"] for f in got if f["type"] == "message"]
        assert len(ids) == kept
        # One turn: a message that does not fit, then an ack that frees room, and a block.
        turn = [frame("message", to="leia", text="y" * 3000), frame("ack", ids=ids), frame("block", user="vader")]
        yoda.sock.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in turn))
        replies = [f for f in yoda.until("blocked") if f["type"] in ("stored", "error", "blocked")]
        assert replies == [frame("error", code="store_full", command="message", user="leia"),
                           frame("blocked", user="vader")]
        assert contents(store) == ([("yoda", "vader")], [])
        yoda.send(frame("message", to="leia", text="now it fits"))
        yoda.until("stored")
        assert [m[3] for m in contents(store)[1]] == ["now it fits"]
    finally:
        world.close()
        store.close()


@pytest.mark.parametrize("failing_commits", [1, 2])
def test_a_commit_that_finds_the_disk_full_refuses_the_turn_and_retries_the_rest(tmp_path, failing_commits):
    """The disk fills at COMMIT (as on a real disk): the messages are refused; the ack and the block are
    tried again on their own, and kept, unless that commit fails too: then the block is refused as well."""
    store, conn = opened(str(tmp_path / "state.db"), FullCommit)
    world = InProcess(lambda loop: store)
    try:
        hans = world.connect()
        hans.login("hans")
        hans.send(frame("message", to="yoda", text="kept"))
        hans.until("stored")
        yoda = world.connect()
        got = yoda.login("yoda")
        if not any(f["type"] == "message" for f in got):
            got += yoda.until("message")
        (stored,) = [f for f in got if f["type"] == "message"]
        conn.fails = failing_commits
        turn = [frame("message", to="leia", text="lost"), frame("ack", ids=[stored["id"]]),
                frame("block", user="vader"), frame("whoelse")]
        yoda.sock.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in turn))
        replies = [f for f in yoda.until("users") if f["type"] in ("stored", "error", "blocked")]
        refused = frame("error", code="store_full", command="message", user="leia")
        if failing_commits == 1:
            assert replies == [refused, frame("blocked", user="vader")]
            assert contents(store) == ([("yoda", "vader")], [])
        else:
            assert replies == [refused, frame("error", code="store_full", command="block", user="vader")]
            assert contents(store) == ([], [(stored["id"], "yoda", "hans", "kept")])   # comes again after a restart
        vader = world.connect()
        vader.login("vader")
        vader.send(frame("message", to="yoda", text="can you hear me?"))
        vader.send(frame("whoelse"))
        refused_for_blocking = [f for f in vader.until("users") if f.get("code") == "blocked_by_recipient"]
        assert bool(refused_for_blocking) == (failing_commits == 1)   # memory agrees with the disk
    finally:
        world.close()
        store.close()


def test_without_a_store_a_kept_message_is_confirmed_at_once():
    world = InProcess(lambda loop: None)
    try:
        hans = world.connect()
        hans.login("hans")
        hans.send(frame("message", to="yoda", text="kept in memory"))
        assert hans.until("stored")[-1] == frame("stored", to="yoda")
    finally:
        world.close()


@pytest.mark.parametrize("value", ["-1", "12X", "K", "1.5M", ""])
def test_a_bad_state_cap_is_a_usage_error(tmp_path, value):
    out = run_server(tmp_path, "--state-max-bytes", value)
    assert out.returncode == 2 and "--state-max-bytes" in out.stderr, out


def test_a_cap_too_small_for_an_empty_state_stops_the_start(tmp_path):
    out = run_server(tmp_path, "--state-max-bytes", "1K")
    assert out.returncode == 2 and out.stderr.startswith("Error. ") and "full" in out.stderr, out


# -- files the server must not touch, or read ----------------------------------------------

def run_server(tmp_path, *args, timeout=10):
    if not (tmp_path / "credentials.txt").exists():
        write_credentials(tmp_path)
    return subprocess.run([sys.executable, str(ROOT / "server_main.py"), "0", "1", "1", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=coverage_env())


def one_error_line(out, status=2):
    assert out.returncode == status, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error. "), out.stderr
    assert "Server listening" not in out.stdout
    return lines[0]


def test_another_programs_database_is_refused_without_changing_a_byte(tmp_path):
    other = tmp_path / "photos.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO photos (name) VALUES (?)", [(f"p{i}",) for i in range(100)])
    conn.commit()
    conn.close()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    line = one_error_line(run_server(tmp_path, "--state", str(other)))
    assert "not a chat state file" in line
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    assert not any(p.name.startswith("photos.db-") for p in tmp_path.iterdir())


def test_a_credentials_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "creds.fifo"
    os.mkfifo(fifo)
    line = one_error_line(run_server(tmp_path, "--credentials", str(fifo), timeout=10))
    assert line == f"Error. cannot read credentials file {fifo}: not a regular file (a FIFO)"


def test_a_username_with_a_control_character_stops_the_start(tmp_path):
    (tmp_path / "credentials.txt").write_text("hans falcon*solo\nev\x1bil pw\n")
    line = one_error_line(run_server(tmp_path))
    assert line == "Error. credentials.txt:2: the username holds a control character (U+001B)"

