"""The per-user limits against the real server: one logged-in user attacks while honest users go on."""
import json
import threading
import time

import pytest

from reactor.server.limits import BURST, RATE, SENDER_QUOTA, STORED_OVERHEAD
from tests.support import ACCOUNTS, ServerProcess, WireClient

pytestmark = pytest.mark.e2e   # starts the real server or client

FLOOD_SECONDS = 3.0
ROUND_TRIP_BOUND = 0.5   # seconds: generous, the machine is shared


class SlowReader(WireClient):
    """An honest client that reads everything, but at most about 1 MB/s: slower than a flood."""

    read_size = 4096
    pause = 0.004


class Flooder:
    """A logged-in user writing ``frame`` as fast as the socket takes it; a thread reads and keeps its replies."""

    def __init__(self, server, user, frame):
        client = server.client()
        client.login(user)
        self.sock = client.sock
        self.sock.settimeout(10.0)
        self.replies: list[dict] = []
        self.buffer = client.buffer
        self.stop = threading.Event()
        self.sent = 0
        self._batch = (json.dumps(frame).encode() + b"\n") * 16
        self._threads = [threading.Thread(target=self._write, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _write(self):
        try:
            while not self.stop.is_set():
                self.sock.sendall(self._batch)
                self.sent += 16
        except OSError:
            pass

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.buffer += chunk
                *lines, self.buffer = self.buffer.split(b"\n")
                self.replies += [json.loads(line) for line in lines]
        except OSError:
            pass

    def close(self):
        self.stop.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(5.0)


def round_trip(client):
    """Seconds from a whoelse to its answer, the broadcasts in between read on the way."""
    started = time.monotonic()
    client.send({"type": "whoelse"})
    client.until("users", timeout=5.0)
    return time.monotonic() - started


def test_one_user_flooding_broadcasts_neither_slows_nor_cuts_off_honest_readers(tmp_path):
    server = ServerProcess(tmp_path, timeout=60)
    try:
        honest = [SlowReader(server.host, server.port) for _ in range(2)]
        for client, user in zip(honest, ("yoda", "luke"), strict=True):
            client.login(user)
        flooder = Flooder(server, "hans", {"type": "broadcast", "text": "x" * 4096})
        started = time.monotonic()
        trips = []
        try:
            while time.monotonic() - started < FLOOD_SECONDS:
                for client in honest:
                    trips.append(round_trip(client))   # EOFError here: an honest user was cut off
        finally:
            elapsed = time.monotonic() - started
            flooder.close()
        assert max(trips) < ROUND_TRIP_BOUND, sorted(trips)[-5:]
        limited = [r for r in flooder.replies if r.get("code") == "rate_limited"]
        assert limited and limited[0]["command"] == "broadcast" and limited[0]["retry"] >= 1, flooder.replies[:3]
        assert flooder.sent > 10 * (BURST + RATE * elapsed)   # it did try far more than it was allowed
        for client, other in zip(honest, ("luke", "yoda"), strict=True):   # both still logged in
            client.until("presence", online=False)   # the flooder's end reached the server (behind its flood)
            client.send({"type": "whoelse"})
            assert client.until("users")["names"] == [other]   # (the flooder has closed)
        assert server.proc.poll() is None
        assert "not reading" not in server.log()
    finally:
        server.stop()


def vm_rss(pid):
    """The resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_one_user_filling_many_mailboxes_hits_its_quota_and_honest_users_still_store(tmp_path):
    recipients = [f"u{i:03d}" for i in range(300)]
    accounts = {**ACCOUNTS, **{name: "pass-word" for name in recipients}}
    server = ServerProcess(tmp_path, timeout=60, accounts=accounts, extra=("--rate", "0"))   # the quota alone
    try:
        luke = server.client()
        luke.login("luke")
        attacker = server.client(timeout=30.0)
        attacker.login("hans")
        before = vm_rss(server.proc.pid)
        text = "x" * 4000
        count = 2400
        batch = b"".join(json.dumps({"type": "message", "to": recipients[i % len(recipients)], "text": text})
                         .encode() + b"\n" for i in range(count))
        writer = threading.Thread(target=attacker.send_raw, args=(batch,), daemon=True)
        writer.start()
        replies = [attacker.recv() for _ in range(count)]
        writer.join(10.0)
        stored = sum(r["type"] == "stored" for r in replies)
        refused = [r for r in replies if r["type"] == "error"]
        assert stored * (STORED_OVERHEAD + len(text)) <= SENDER_QUOTA < (stored + 1) * (STORED_OVERHEAD + len(text))
        assert refused and all(r == {"type": "error", "code": "quota_exceeded", "quota": SENDER_QUOTA}
                               for r in refused), refused[:3]
        luke.send({"type": "message", "to": recipients[0], "text": "an honest note"})
        assert luke.until("stored") == {"type": "stored", "to": recipients[0]}
        grown = vm_rss(server.proc.pid) - before
        assert grown < 6 << 20, f"RSS grew by {grown >> 20} MiB for {count * len(text) >> 20} MiB sent"
        reader = server.client()
        reader.login(recipients[1], "pass-word")
        assert reader.until("message")["text"] == text   # what was kept is delivered
    finally:
        server.stop()
