"""Big mailboxes and invalid text against the real server process."""
import socket
import time

import pytest

from tests.support import EMOJI, NO_LIMITS, InProcess, ServerProcess, WireClient, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.compiled]   # starts the real server or client (and on the compiled build)



@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=0.5, timeout=60, extra=NO_LIMITS)   # big mailboxes, filled fast
    yield srv
    assert srv.proc.poll() is None, "the server died\n" + srv.log()
    srv.stop()


class SlowReader(WireClient):
    """A client with a small receive buffer that reads a little at a time, with a pause between reads."""

    def __init__(self, host, port, chunk=8192, pause=0.001, hello=True, timeout=5.0):
        self.read_size = chunk
        self.pause = pause
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # before connect: a small window
        sock.settimeout(timeout)
        sock.connect((host, port))
        self._begin(sock, hello, timeout)


def fill_mailbox(server, to, texts, sender="hans"):
    """``sender`` leaves ``texts`` for ``to`` (offline) and logs out once each is confirmed kept."""
    client = server.client()
    client.login(sender)
    for text in texts:
        client.send({"type": "message", "to": to, "text": text})
        client.expect("stored", to=to)
    client.send({"type": "logout"})
    client.expect("bye", reason="logout")
    client.close()


def receive_mailbox(client, count, timeout=30.0):
    """The next ``count`` stored messages, skipping notices in between."""
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        frame = client.recv(max(0.001, deadline - time.monotonic()))
        if frame.get("type") == "message":
            frames.append(frame)
    return frames


def synced(client):
    """Return once the server has handled (and committed) everything ``client`` sent before."""
    client.send({"type": "whoelse"})
    client.until("users")


@pytest.mark.parametrize("count, text", [(30, EMOJI * 4096), (300, "x" * 4000)], ids=["emoji", "ascii"])
def test_a_big_mailbox_is_delivered_in_full_to_a_slow_reader(server, count, text):
    texts = [f"{i:04d}{text[4:]}" for i in range(count)]
    fill_mailbox(server, "yoda", texts)

    yoda = SlowReader(server.host, server.port)
    start = time.monotonic()
    yoda.login("yoda")
    frames = receive_mailbox(yoda, count)
    took = time.monotonic() - start
    print(f"\n{count} stored messages of {len(text)} characters delivered in {took:.2f}s")
    assert [f["text"] for f in frames] == texts            # all of them, oldest first
    ids = [f["id"] for f in frames]
    assert ids == sorted(set(ids))
    yoda.send({"type": "ack", "ids": ids})
    synced(yoda)
    yoda.send({"type": "logout"})
    yoda.until("bye", reason="logout")

    again = server.client()
    again.login("yoda")
    assert again.silent()   # acknowledged: not delivered a second time


def test_stored_messages_not_acknowledged_come_again_and_a_live_one_never_overtakes_them(server):
    texts = [f"{i:02d}{EMOJI * 4000}" for i in range(30)]
    fill_mailbox(server, "yoda", texts)
    hans = server.client()
    hans.login("hans")

    yoda = SlowReader(server.host, server.port, pause=0.005)
    yoda.login("yoda")
    first = yoda.until("message")
    assert first["text"] == texts[0]
    hans.send({"type": "message", "to": "yoda", "text": "live"})
    synced(hans)
    frames = [first, *receive_mailbox(yoda, 30)]
    assert [f["text"] for f in frames] == texts + ["live"]
    # "live" is stored behind the mailbox if the server still held some of it, else sent after
    # it (the kernel's send buffer, autotuned to megabytes on loopback, may have taken it all)
    kept = ["live"] if "id" in frames[-1] else []
    yoda.close()   # gone without acknowledging: every stored one comes again

    wait_for(lambda: "yoda logged out" in server.log(), what="yoda's logout")
    again = server.client()
    again.login("yoda")
    assert [f["text"] for f in receive_mailbox(again, 30 + len(kept))] == texts + kept
    assert again.silent()


def test_a_reader_that_never_reads_is_still_cut_off(server):
    fill_mailbox(server, "yoda", [EMOJI * 4096] * 30)
    sink = WireClient(server.host, server.port)
    sink.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.login("yoda")          # and never reads again
    hans = server.client()
    hans.login("hans")
    leia = server.client()
    leia.login("leia")
    big = EMOJI * 4096
    sent = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "not reading" not in server.log():
        for _ in range(20):
            hans.send({"type": "broadcast", "text": big})
            sent += 1
        leia.send({"type": "whoelse"})   # leia reads: the server keeps answering her
        leia.until("users")
    assert "not reading" in server.log(), "the server kept buffering for a peer that never reads"
    assert sent * len(big) * 12 < 50 * (1 << 20)
    leia.send({"type": "message", "to": "hans", "text": "still here"})
    hans.until("message", text="still here", timeout=20)


def test_the_host_paces_a_mailbox_while_the_store_commits_every_turn(tmp_path):
    """In one process: the server's buffer for the reader stays near one window, though the
    store is dirty every turn (so each WhenWritable waits for a commit), and a live message
    sent meanwhile is stored behind the mailbox."""
    from reactor.server.mail import MAILBOX_CHUNK
    from reactor.server.store import Store
    from reactor.stream import HIGH_WATER
    store = Store.open(str(tmp_path / "state.db"))
    world = InProcess(lambda loop: store)
    try:
        hans = world.connect()
        hans.login("hans")
        texts = [f"{i:02d}{EMOJI * 4000}" for i in range(30)]
        for text in texts:
            hans.send({"type": "message", "to": "yoda", "text": text})
        hans.until("stored", 30)
        yoda = world.connect()
        frames = yoda.login("yoda")
        hans.send({"type": "message", "to": "yoda", "text": "live"})
        peak = 0
        deadline = time.monotonic() + 10
        while sum(f["type"] == "message" for f in frames) < 31:
            assert time.monotonic() < deadline, frames[-1:]
            hans.send({"type": "message", "to": "luke", "text": "x"})   # a store write every turn
            world.loop.run_once(0.01)
            peak = max(peak, world.host.buffered)   # all connections: more than the reader's own buffer
            frames += yoda.frames()
        messages = [f for f in frames if f["type"] == "message"]
        assert [m["text"] for m in messages] == texts + ["live"]
        assert messages[-1]["id"] == 31      # stored: it went behind the mailbox
        assert peak < HIGH_WATER + MAILBOX_CHUNK + 64 * 1024, peak
    finally:
        world.close()
        store.close()


# -- invalid text ----------------------------------------------------------------

LONE = b'"\\ud800 lone"'


def test_a_lone_surrogate_is_a_bad_frame_and_the_connection_goes_on(server):
    yoda = server.client()
    yoda.login("yoda")
    hans = server.client()
    hans.login("hans")
    yoda.until("presence", user="hans")
    for frame in (b'{"type":"message","to":"luke","text":' + LONE + b'}\n',      # luke is offline
                  b'{"type":"message","to":"yoda","text":' + LONE + b'}\n',      # yoda is online
                  b'{"type":"broadcast","text":' + LONE + b'}\n',
                  b'{"type":"broadcast","text":"ok",' + LONE + b':1}\n'):        # in a key
        hans.send_raw(frame + b'{"type":"whoelse"}\n')   # the next frame in the same chunk
        hans.expect("error", code="bad_frame")
        hans.expect("users", names=["yoda"])
    hans.send({"type": "message", "to": "yoda", "text": "pair " + EMOJI})      # a valid pair is fine
    assert yoda.recv() == {"type": "message", "from": "hans", "text": "pair " + EMOJI}
    luke = server.client()
    luke.login("luke")
    assert luke.silent()   # nothing was kept for luke
