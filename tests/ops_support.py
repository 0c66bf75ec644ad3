"""Test helpers for the operator's tools: plain non-blocking clients of the metrics endpoint and the admin socket,
for tests that run the loop in the same process while they wait."""
import json
import socket

from reactor.framing import encode
from tests.support import run_until

REQUEST = b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n"


def split_responses(data, bodies=True):
    """The complete HTTP responses at the start of ``data``: (status, headers, body) each (``bodies``: False
    for the answers to HEAD, which have none)."""
    responses = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
        length = int(headers.get("content-length", 0)) if bodies else 0
        if len(rest) < length:
            break
        responses.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


class Client:
    """A plain non-blocking socket to the endpoint; the test runs the loop while it waits."""

    def __init__(self, loop, address):
        self.loop = loop
        self.sock = socket.create_connection(address[:2])
        self.sock.setblocking(False)
        self.data = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)
        return self

    def pump(self):
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.data += chunk

    def responses(self, n=1, bodies=True):
        """Run the loop until ``n`` responses came (or the endpoint closed); those that came."""
        def enough():
            self.pump()
            return len(split_responses(self.data, bodies)) >= n or self.closed
        run_until(self.loop, enough)
        return split_responses(self.data, bodies)

    def wait_closed(self):
        def closed():
            self.pump()
            return self.closed
        run_until(self.loop, closed)

    def close(self):
        self.sock.close()


class AdminClient:
    """A non-blocking connection to the admin socket; the test runs the loop while it waits for the answer."""

    def __init__(self, loop, path):
        self.loop = loop
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.sock.setblocking(False)
        self.data = b""
        self.closed = False

    def pump(self):
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            self.closed = not chunk
            self.data += chunk

    def frames(self):
        return [json.loads(line) for line in self.data.split(b"\n") if line]

    def ask(self, command, *args, raw=None):
        """Send a request (or ``raw`` bytes); the answer's frames once its last line came."""
        self.sock.sendall(raw if raw is not None else encode({"command": command, "args": list(args)}))

        def answered():
            self.pump()
            return any("ok" in f or "error" in f for f in self.frames()) or self.closed
        run_until(self.loop, answered)
        return self.frames()
