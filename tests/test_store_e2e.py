"""Nothing lost on restart: the real server with a state file, stopped, killed and started again."""
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support import (
    ACCOUNTS,
    NO_LIMITS,
    PATIENCE,
    ROOT,
    FailingCommit,
    InProcess,
    ServerProcess,
    WireClient,
    contents,
    coverage_env,
    opened,
    wait_for,
    write_credentials,
)

pytestmark = pytest.mark.e2e   # starts the real server or client


def start(tmp_path, run, state, *extra, **kw):
    """A server in its own folder (its own log) on the shared state file."""
    cwd = tmp_path / run
    cwd.mkdir()
    return ServerProcess(cwd, extra=("--state", str(state), *NO_LIMITS, *extra), **kw)   # bursts of messages


def synced(client):
    """Return once everything ``client`` sent before is committed: replies wait for the commit before them."""
    client.send({"type": "whoelse"})
    client.until("users")


def inbox(client):
    """The stored-message frames that arrive before the answer to a ping sent now.

    The server answers in order, and a pong waits for every stored message still on its way.
    """
    client.send({"type": "ping"})
    frames = []
    while True:
        frame = client.recv()
        if frame.get("type") == "pong":
            return frames
        if frame.get("type") == "message":
            frames.append(frame)


def ack(client, frames):
    client.send({"type": "ack", "ids": [f["id"] for f in frames]})
    synced(client)


def check_order(frames):
    ids = [f["id"] for f in frames]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(set(ids)), ids  # unique, oldest first


def store_messages(client, to, texts):
    for text in texts:
        client.send({"type": "message", "to": to, "text": text})
    for _ in texts:
        client.expect("stored", to=to)


# -- what survives ---------------------------------------------------------------

def test_offline_messages_and_blocks_survive_a_restart(tmp_path):
    state = tmp_path / "state.db"
    srv = start(tmp_path, "first", state)
    try:
        yoda = srv.client()
        yoda.login("yoda")
        for frame, reply in ((("block", "vader"), "blocked"), (("block", "luke"), "blocked"),
                             (("unblock", "luke"), "unblocked")):
            yoda.send({"type": frame[0], "user": frame[1]})
            yoda.expect(reply, user=frame[1])
        yoda.send({"type": "logout"})
        yoda.expect("bye", reason="logout")
        hans = srv.client()
        hans.login("hans")
        store_messages(hans, "yoda", ["one", "two", "three"])
    finally:
        assert srv.stop() == 0

    srv = start(tmp_path, "second", state)
    try:
        vader = srv.client()
        vader.login("vader")
        vader.send({"type": "message", "to": "yoda", "text": "let me in"})
        vader.expect("error", code="blocked_by_recipient")
        luke = srv.client()
        luke.login("luke")
        store_messages(luke, "yoda", ["four"])  # the unblock survived too
        yoda = srv.client()
        yoda.login("yoda")
        frames = inbox(yoda)
        assert [(f["from"], f["text"]) for f in frames] == \
            [("hans", "one"), ("hans", "two"), ("hans", "three"), ("luke", "four")]
        check_order(frames)
        assert all(abs(f["sent"] - time.time()) < 60 for f in frames)   # when it was sent, kept across the restart
        yoda.send({"type": "block", "user": "vader"})
        yoda.expect("error", code="already_blocked")
    finally:
        assert srv.stop() == 0
    assert "3 offline messages" in srv.log() and "1 blocks" in srv.log()


def test_a_memory_state_forgets_at_exit(tmp_path):
    srv = start(tmp_path, "first", ":memory:")
    try:
        hans = srv.client()
        hans.login("hans")
        store_messages(hans, "yoda", ["gone soon"])
    finally:
        srv.stop()
    srv = start(tmp_path, "second", ":memory:")
    try:
        yoda = srv.client()
        yoda.login("yoda")
        assert inbox(yoda) == []
    finally:
        srv.stop()
    assert not list(tmp_path.rglob("*.db*"))


def test_the_default_state_file_is_in_the_current_directory(tmp_path):
    srv = ServerProcess(tmp_path)
    try:
        hans = srv.client()
        hans.login("hans")
        store_messages(hans, "yoda", ["kept in chat-state.db"])
    finally:
        srv.stop()
    conn = sqlite3.connect(tmp_path / "chat-state.db")
    assert conn.execute("SELECT recipient, sender, text FROM offline").fetchall() == \
        [("yoda", "hans", "kept in chat-state.db")]
    conn.close()


# -- crashes ---------------------------------------------------------------------

def test_sigkill_during_a_burst_loses_no_confirmed_message(tmp_path):
    state = tmp_path / "state.db"
    total, kill_after = 600, 150
    in_flight = 100  # at most this many sent but not yet confirmed: the kill comes before the last is confirmed
    srv = start(tmp_path, "first", state)
    try:
        hans = srv.client(timeout=10)
        hans.login("hans")
        confirmed = sent = 0
        killed = False
        while True:
            sending = not killed and sent < total and sent - confirmed < in_flight
            if sending:
                hans.send({"type": "message", "to": "yoda", "text": f"m{sent}"})
                sent += 1
            try:  # else wait for a confirmation; after the kill: read what the server had sent, until it is gone
                frame = hans.recv(0.001 if sending else None)
            except AssertionError:
                if sending:
                    continue
                break
            except (EOFError, ConnectionResetError):
                break
            assert frame == {"type": "stored", "to": "yoda"}, frame
            confirmed += 1
            if confirmed == kill_after and not killed:
                srv.proc.send_signal(signal.SIGKILL)
                killed = True
        assert killed, "the burst ended before the kill"
    finally:
        assert srv.stop() == -signal.SIGKILL
    assert kill_after <= confirmed < total

    srv = start(tmp_path, "second", state)
    try:
        yoda = srv.client(timeout=10)
        yoda.login("yoda")
        frames = inbox(yoda)
        texts = [f["text"] for f in frames]
        # Every confirmed message, once, in the order sent; perhaps a few
        # that were kept but whose confirmation the kill cut off; no gap.
        assert len(texts) >= confirmed, (len(texts), confirmed)
        assert texts == [f"m{i}" for i in range(len(texts))]
        check_order(frames)
        ack(yoda, frames)
        srv.proc.send_signal(signal.SIGKILL)  # the acknowledgement was committed before its reply
    finally:
        srv.stop()

    srv = start(tmp_path, "third", state)
    try:
        yoda = srv.client()
        yoda.login("yoda")
        assert inbox(yoda) == []
    finally:
        srv.stop()


def test_messages_come_again_until_acknowledged(tmp_path):
    state = tmp_path / "state.db"
    srv = start(tmp_path, "first", state, "--synchronous", "NORMAL")
    try:
        hans = srv.client()
        hans.login("hans")
        store_messages(hans, "yoda", ["a", "b", "c"])
        yoda = srv.client()
        yoda.login("yoda")
        first = inbox(yoda)
        assert [f["text"] for f in first] == ["a", "b", "c"]
        yoda.close()  # vanishes without acknowledging

        yoda = srv.client()
        wait_for(lambda: _login_ok(yoda), what="yoda's old session gone")
        again = inbox(yoda)
        assert [(f["id"], f["text"]) for f in again] == [(f["id"], f["text"]) for f in first]
        ack(yoda, again[:2])
        yoda.send({"type": "logout"})
        yoda.expect("bye")

        yoda = srv.client()
        yoda.login("yoda")
        rest = inbox(yoda)
        assert [(f["id"], f["text"]) for f in rest] == [(again[2]["id"], "c")]
        yoda.close()
    finally:
        assert srv.stop() == 0

    srv = start(tmp_path, "second", state)
    try:
        yoda = srv.client()
        yoda.login("yoda")
        rest = inbox(yoda)
        assert [(f["id"], f["text"]) for f in rest] == [(again[2]["id"], "c")]
        ack(yoda, rest)
        hans = srv.client()
        hans.login("hans")
        hans.send({"type": "message", "to": "leia", "text": "new"})
        hans.expect("stored", to="leia")
    finally:
        assert srv.stop() == 0

    srv = start(tmp_path, "third", state)
    try:
        yoda = srv.client()
        yoda.login("yoda")
        assert inbox(yoda) == []
        leia = srv.client()
        leia.login("leia")
        (new,) = inbox(leia)
        assert new["text"] == "new" and new["id"] > again[2]["id"]  # numbering goes on after a restart
    finally:
        srv.stop()


def _login_ok(client):
    """Log in unless the account is still online (its old connection not yet noticed as gone)."""
    client.send({"type": "username", "username": "yoda"})
    client.expect("username_ok")
    client.send({"type": "password", "password": ACCOUNTS["yoda"]})
    frame = client.recv()
    if frame.get("type") != "welcome":
        assert frame.get("code") == "already_logged_in", frame
        return False
    assert frame.get("user") == "yoda", frame
    client.send({"type": "listen", "host": "127.0.0.1", "port": 9})
    return True


def test_a_failed_write_stops_the_server_and_confirms_nothing_it_lost(tmp_path):
    """A write that fails (here: past a file size limit, an I/O error to SQLite, unlike a full disk which
    only refuses what does not fit) stops the server; what it confirmed is there after."""
    import resource
    state = tmp_path / "state.db"
    creds = write_credentials(tmp_path)

    def small_files():  # in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server_main.py"), "0", "1", "30", "--credentials", str(creds),
         "--state", str(state), *NO_LIMITS],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=coverage_env(),
        preexec_fn=small_files)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Server listening on "), line
        port = int(line.rsplit(":", 1)[1])
        hans = WireClient("127.0.0.1", port)
        hans.login("hans")
        confirmed = 0
        with pytest.raises((EOFError, ConnectionResetError, BrokenPipeError)):
            for i in range(1000):
                hans.send({"type": "message", "to": "yoda", "text": f"{i} " + "x" * 4000})
                hans.expect("stored", to="yoda")
                confirmed += 1
        status = proc.wait(10)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert status == 1, stderr
    assert stderr.rstrip().splitlines()[-1].startswith("Error. Cannot write state file"), stderr
    assert 10 < confirmed < 1000

    srv = start(tmp_path, "again", state)
    try:
        yoda = srv.client(timeout=10)
        yoda.login("yoda")
        texts = [f["text"].split(" ")[0] for f in inbox(yoda)]
        assert len(texts) >= confirmed and texts == [str(i) for i in range(len(texts))]
    finally:
        srv.stop()


# -- group commit, in process ------------------------------------------------------

class Recording:
    """A store that remembers what was committed when."""

    def __init__(self, store):
        self.store = store
        self.committed = 0  # KeepMessage changes made durable
        self.pending = 0

    def apply(self, effect):
        self.store.apply(effect)
        from reactor.server.effects import KeepMessage
        self.pending += type(effect) is KeepMessage

    def commit(self):
        self.store.commit()
        self.committed += self.pending
        self.pending = 0

    def texts(self, ids):
        return self.store.texts(ids)


@pytest.mark.parametrize("path", ["file", ":memory:"])
def test_a_burst_of_stored_messages_takes_few_commits_and_no_confirmation_comes_early(tmp_path, path):
    from reactor.server.store import Store
    store = Store.open(str(tmp_path / "state.db") if path == "file" else path)
    recording = Recording(store)
    world = InProcess(lambda loop: recording)
    try:
        hans = world.connect()
        hans.login("hans")
        burst = 500
        confirmed = [0]

        def check(frames):
            confirmed[0] += sum(f["type"] == "stored" for f in frames)
            assert confirmed[0] <= recording.committed  # never confirmed before it was durable

        data = b"".join(
            b'{"type":"message","to":"yoda","text":"burst %d"}\n' % i for i in range(burst))
        hans.sock.sendall(data)
        hans.until("stored", burst, on_frames=check)
        assert store.commits <= burst // 10, store.commits
        assert len(contents(store)[1]) == burst

        yoda = world.connect()
        frames = yoda.login("yoda")
        frames += yoda.until("message", burst - sum(f["type"] == "message" for f in frames))
        messages = [f for f in frames if f["type"] == "message"]
        assert [m["text"] for m in messages] == [f"burst {i}" for i in range(burst)]
        commits = store.commits
        yoda.send({"type": "ack", "ids": [m["id"] for m in messages]})
        yoda.send({"type": "whoelse"})
        yoda.until("users")
        assert store.commits == commits + 1  # the whole acknowledgement: one transaction
        assert contents(store)[1] == []
    finally:
        world.close()
        store.close()


def test_a_failed_commit_stops_the_server_without_confirming(tmp_path):
    from reactor.server.host import StopOnStoreFailure
    store, conn = opened(str(tmp_path / "state.db"), FailingCommit)
    guards = []
    world = InProcess(lambda loop: guards.append(StopOnStoreFailure(store, loop)) or guards[0])
    try:
        hans = world.connect()
        hans.login("hans")
        conn.failing = True
        hans.send({"type": "message", "to": "yoda", "text": "doomed"})
        hans.send({"type": "whoelse"})
        world.loop.call_later(PATIENCE, world.loop.stop)  # in case the guard does not stop it
        world.loop.run()
        assert "disk I/O error" in str(guards[0].failure)
        for _ in range(5):  # however often the host tries again, nothing is confirmed
            world.loop.run_once(0.01)
        assert [f for f in hans.frames() if f["type"] in ("stored", "users")] == []
    finally:
        world.close()
        store.close()


# -- state files the server will not start on --------------------------------------

def run_server(tmp_path, *args):
    write_credentials(tmp_path)
    return subprocess.run([sys.executable, str(ROOT / "server_main.py"), "0", "1", "1", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=10, env=coverage_env())


def refused(out, *needles):
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error. "), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Server listening" not in out.stdout


def test_a_corrupt_state_file_stops_the_start(tmp_path):
    (tmp_path / "chat-state.db").write_bytes(b"\x00garbage" * 1000)
    refused(run_server(tmp_path), "chat-state.db", "corrupt")
    assert (tmp_path / "chat-state.db").read_bytes() == b"\x00garbage" * 1000


def test_an_unwritable_state_path_stops_the_start(tmp_path):
    refused(run_server(tmp_path, "--state", "no/such/dir/state.db"), "no/such/dir/state.db", "does not exist")
    refused(run_server(tmp_path, "--state", str(tmp_path)), "is a directory")


def test_a_state_file_from_a_newer_server_stops_the_start(tmp_path):
    from reactor.server.store import Store
    Store.open(str(tmp_path / "future.db")).close()
    conn = sqlite3.connect(tmp_path / "future.db")
    conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    refused(run_server(tmp_path, "--state", "future.db"), "future.db", "newer server", "version 7")


def test_a_state_file_in_use_by_another_server_stops_the_start(tmp_path):
    state = tmp_path / "shared.db"
    srv = start(tmp_path, "first", state)
    try:
        refused(run_server(tmp_path, "--state", str(state)), "in use by another server")
    finally:
        srv.stop()


def test_a_bad_synchronous_level_is_a_usage_error(tmp_path):
    out = run_server(tmp_path, "--synchronous", "OFF")
    assert out.returncode == 2 and "usage: server_main.py" in out.stderr


def test_a_pong_comes_after_the_stored_messages_and_after_the_commit(tmp_path):
    srv = start(tmp_path, "run", tmp_path / "state.db")
    try:
        hans = srv.client()
        hans.login("hans")
        store_messages(hans, "luke", ["one", "two"])
        luke = srv.client()
        luke.login("luke", listen=False)
        luke.send({"type": "ping"})
        assert [luke.expect("message")["text"] for _ in range(2)] == ["one", "two"]
        luke.expect("pong")
        luke.send_raw(b'{"type":"message","to":"yoda","text":"kept"}\n{"type":"ping"}\n'
                      b'{"type":"whoelse"}\n{"type":"ping"}\n')
        luke.expect("stored", to="yoda")
        luke.expect("pong")
        luke.expect("users", names=["hans"])
        luke.expect("pong")
    finally:
        assert srv.stop() == 0
