"""The client on a pseudo-terminal, as a person types into it."""
import os
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from tests.support import PATIENCE, ROOT, ServerProcess, coverage_env


class TerminalClient:
    """client_main.py on a pty; the test holds the slave end to check its settings."""

    def __init__(self, host, port):
        self.master, self.slave = os.openpty()
        self.settings_before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "client_main.py"), host, str(port)],
                                     stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True, env=coverage_env())
        self.screen = b""
        self.seen = 0

    def keys(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: str, timeout=PATIENCE) -> str:
        deadline = time.monotonic() + timeout
        raw = needle.encode()
        while True:
            at = self.screen.find(raw, self.seen)
            if at >= 0:
                consumed = self.screen[self.seen:at + len(raw)]
                self.seen = at + len(raw)
                return consumed.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not on screen:\n{self.screen!r}")
            self.pump(min(left, 0.05))

    def pump(self, timeout):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.screen += os.read(self.master, 65536)
            except OSError:
                pass

    def settle(self, wait=0.2):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.pump(0.02)

    def wait(self, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.screen
            self.pump(0.02)
        self.pump(0.05)
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=1, timeout=30)
    yield srv
    srv.stop()


@pytest.fixture
def term(server):
    t = TerminalClient(server.host, server.port)
    yield t
    t.close()


def login(term, user="yoda", password="wise@!man"):
    term.expect("Username: ")
    term.keys(user.encode() + b"\r")
    term.expect("Password: ")
    term.keys(password.encode() + b"\r")
    term.expect("Welcome to the greatest messaging application ever!")


def test_password_is_not_echoed(term):
    login(term)
    assert b"wise@!man" not in term.screen
    assert b"yoda" in term.screen  # the user name is echoed as typed


def test_incoming_message_keeps_the_half_typed_line(server, term):
    login(term)
    hans = server.client()
    hans.login("hans")
    term.expect("hans logged in")
    term.keys(b"message hans hel")
    term.expect("message hans hel")
    hans.send({"type": "message", "to": "yoda", "text": "ping"})
    term.expect("hans: ping")
    redraw = term.expect("message hans hel")  # the half line comes back after the message
    assert "ping" not in redraw
    term.keys(b"lo\r")
    hans.until("message", text="hello")


def test_history_recall_and_line_editing(server, term):
    login(term)
    hans = server.client()
    hans.login("hans")
    term.keys(b"message hans first\r")
    hans.until("message", text="first")
    term.keys(b"\x1b[A\r")                     # up: the same line again
    hans.until("message", text="first")
    term.keys(b"message hans abc\x1b[D\x1b[DX\x7f\x7fZ\r")  # left, left, insert, backspace twice, type
    hans.until("message", text="Zbc")
    term.keys(b"junk\x15message hans clean\r")  # Ctrl-U kills the line
    hans.until("message", text="clean")


def test_ctrl_c_clears_the_line_and_ctrl_d_logs_out(server, term):
    login(term)
    hans = server.client()
    hans.login("hans")
    term.keys(b"message hans never\x03")
    term.keys(b"message hans sent\r")
    assert hans.until("message")["text"] == "sent"
    term.keys(b"\x04")
    assert term.wait() == 0


def test_terminal_settings_are_restored_after_exit(term):
    login(term)
    term.settle(0.1)
    assert termios.tcgetattr(term.slave) != term.settings_before  # raw mode while running
    term.keys(b"logout\r")
    assert term.wait() == 0
    assert termios.tcgetattr(term.slave) == term.settings_before


def test_terminal_settings_are_restored_when_the_server_is_lost(server, term):
    login(term)
    server.proc.kill()
    term.expect("Error. Connection to server lost")
    assert term.wait() == 1
    assert termios.tcgetattr(term.slave) == term.settings_before


def test_terminal_settings_are_restored_after_a_signal(term):
    login(term)
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 0               # logged out on the way
    assert termios.tcgetattr(term.slave) == term.settings_before
