"""The client on a pseudo-terminal, as a person types into it."""
import os
import select
import signal
import socket
import subprocess
import sys
import termios
import time

import pytest

from tests.support import ROOT, RecordingProxy, ServerProcess, coverage_env, wait_for


# Runs the client with the pty (its stdin) as its controlling terminal, so closing the master hangs it up.
WITH_CONTROLLING_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                             "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


class TerminalClient:
    """client_main.py on a pty; the test holds the slave end to check its settings.

    ``stdout`` other than the pty (a pipe) leaves the pty as stdin only.
    """

    def __init__(self, host, port, stdout=None):
        self.master, self.slave = os.openpty()
        self.settings_before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen([sys.executable, "-c", WITH_CONTROLLING_TERMINAL,
                                      str(ROOT / "client_main.py"), host, str(port)],
                                     stdin=self.slave, stdout=self.slave if stdout is None else stdout,
                                     stderr=self.slave, start_new_session=True, env=coverage_env())
        self.screen = b""
        self.seen = 0

    def keys(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: str, timeout=5.0) -> str:
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
        if self.master is None:
            time.sleep(timeout)
            return
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

    def wait(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.screen
            self.pump(0.02)
        self.pump(0.05)
        return self.proc.returncode

    def hang_up(self):
        """Close the terminal under the client, as closing its window does."""
        os.close(self.master)
        self.master = None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.master is not None:
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


def test_a_closed_terminal_logs_out_and_exits(server):
    proxy = RecordingProxy(server.host, server.port)   # to learn where the client listens for peers
    term = TerminalClient(server.host, proxy.port)
    try:
        hans = server.client()
        hans.login("hans")
        login(term)
        hans.until("presence", user="yoda", online=True)
        listen = wait_for(lambda: [f for f in proxy.sent_frames() if f.get("type") == "listen"], what="listen")[0]
        term.hang_up()                              # SIGHUP, then EIO on every read and write
        hans.until("presence", user="yoda", online=False)
        assert term.wait(timeout=5) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((listen["host"], listen["port"]), timeout=2)
    finally:
        term.close()
        proxy.close()


def test_text_that_is_not_unicode_does_not_wedge_the_terminal(server, term):
    login(term)
    hans = server.client()
    hans.login("hans")
    term.expect("hans logged in")
    hans.send_raw(b'{"type": "broadcast", "text": "lone \\ud800 surrogate"}\n')  # valid JSON, not Unicode
    hans.send({"type": "message", "to": "yoda", "text": "after"})
    term.expect("hans: after")
    term.keys(b"\x04")
    assert term.wait() == 0


def test_password_is_not_echoed_on_a_terminal_whose_output_is_piped(server):
    out_r, out_w = os.pipe()
    term = TerminalClient(server.host, server.port, stdout=out_w)
    os.close(out_w)
    piped = b""

    def expect_piped(needle):
        nonlocal piped
        deadline = time.monotonic() + 5
        while needle not in piped:
            assert time.monotonic() < deadline, piped
            if select.select([out_r], [], [], 0.05)[0]:
                piped += os.read(out_r, 65536)

    try:
        expect_piped(b"Username: ")
        term.keys(b"yoda\n")
        term.expect("yoda")                         # the terminal echoes what is typed
        expect_piped(b"Password: ")
        term.keys(b"wise@!man\n")
        expect_piped(b"Welcome to the greatest messaging application ever!")
        term.keys(b"whoelse\n")
        term.expect("whoelse")                      # echo is back after the password
        expect_piped(b"No other users online")
        assert b"wise@!man" not in term.screen
        term.keys(b"\x04")                          # end of input in canonical mode
        assert term.wait() == 0
        assert termios.tcgetattr(term.slave) == term.settings_before
    finally:
        term.close()
        os.close(out_r)
