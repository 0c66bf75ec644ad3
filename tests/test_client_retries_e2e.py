"""The real client trying again by itself, on pipes as a script runs it: a server too busy to take it, and a
script over the rate limit (the password the server could not check: tests/test_hashed_e2e.py)."""
import json
import socket
import subprocess
import sys
import threading

import pytest

from reactor.client.retries import RESENDS
from tests.support import ACCOUNTS, PATIENCE, ROOT, ClientProcess, ServerProcess, coverage_env

pytestmark = pytest.mark.e2e   # starts the real server or client


def test_a_busy_server_is_tried_again_and_the_script_runs_once_it_takes_the_client(tmp_path):
    server = ServerProcess(tmp_path, extra=("--max-strangers", "1"))
    stranger = socket.create_connection((server.host, server.port))   # takes the one place for a stranger
    client = ClientProcess(server.host, server.port)
    try:
        client.expect("Server busy; trying again in 1 s")
        client.type("yoda")                       # typed while the client waits: it waits its turn
        client.type(ACCOUNTS["yoda"])
        client.type("whoelse")
        client.expect("Server busy; trying again in 2 s")   # still busy at the first try again
        stranger.close()
        client.expect("Welcome to the greatest messaging application ever!")
        client.expect("No other users online")
        client.end_input()
        assert client.wait() == 0
        assert "Error" not in client.text()
    finally:
        client.kill()
        stranger.close()
        server.stop()


def test_a_script_over_the_rate_limit_waits_and_every_message_arrives(tmp_path):
    server = ServerProcess(tmp_path, extra=("--rate", "5", "--burst", "3"))
    hans = server.client()
    hans.login("hans")
    try:
        script = "".join(f"message hans number {n}\n" for n in range(12))
        out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                             input=f"yoda\n{ACCOUNTS['yoda']}\n{script}", capture_output=True, text=True,
                             timeout=PATIENCE, env=coverage_env())
        assert out.returncode == 0, out
        assert [hans.until("message")["text"] for _ in range(12)] == [f"number {n}" for n in range(12)]
        assert "Sending too fast; trying again in 1 s" in out.stdout and "Error" not in out.stdout
    finally:
        server.stop()


class RefusingServer:
    """A server that takes a login and refuses every message for the rate limit, ``retry`` 0; it counts them."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        answers = {"hello": [{"type": "hello", "version": 2}], "username": [{"type": "username_ok"}],
                   "password": [{"type": "welcome", "user": "yoda"}], "ping": [{"type": "pong"}],
                   "message": [{"type": "error", "code": "rate_limited", "command": "message", "retry": 0}],
                   "logout": [{"type": "bye", "reason": "logout"}]}
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                kind = json.loads(line).get("type")
                self.refused += kind == "message"
                for frame in answers.get(kind, []):
                    conn.sendall(json.dumps(frame).encode() + b"\n")
                if kind == "logout":
                    return

    def close(self):
        self.listener.close()


def test_a_script_whose_message_never_goes_through_exits_1():
    server = RefusingServer()
    try:
        out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), "127.0.0.1", str(server.port)],
                             input="yoda\nsecret\nmessage hans hi\n", capture_output=True, text=True,
                             timeout=PATIENCE, env=coverage_env())
        assert out.returncode == 1, out
        lines = out.stdout.splitlines()
        assert lines.count("Sending too fast; trying again in 0 s") == RESENDS
        assert "Error. You are sending too fast; try again in 0 s" in lines and lines[-1] == "Logged out"
        server.thread.join(PATIENCE)
        assert server.refused == RESENDS + 1
    finally:
        server.close()
