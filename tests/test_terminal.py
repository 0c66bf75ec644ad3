"""The client on a pseudo-terminal, as a person types into it."""
import os
import select
import signal
import socket
import termios
import time

import pytest

from tests.support import RecordingProxy, ServerProcess, TerminalClient, wait_for

pytestmark = pytest.mark.e2e   # starts the real server or client


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


def bracketed_paste_ended(term):
    """The client turned the terminal's bracketed paste on, and off again after that."""
    term.settle(0.05)
    return term.screen.rfind(b"\x1b[?2004l") > term.screen.rfind(b"\x1b[?2004h") >= 0


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
    assert bracketed_paste_ended(term)


def test_terminal_settings_are_restored_when_the_server_is_lost(server, term):
    login(term)
    server.proc.kill()
    term.expect("Error. Connection to server lost")
    assert term.wait() == 1
    assert termios.tcgetattr(term.slave) == term.settings_before
    assert bracketed_paste_ended(term)


def test_terminal_settings_are_restored_after_a_signal(term):
    login(term)
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 0               # logged out on the way
    assert termios.tcgetattr(term.slave) == term.settings_before
    assert bracketed_paste_ended(term)


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


# -- keys a person uses ------------------------------------------------------------------

def test_tab_completes_a_command_and_an_online_user(server, term):
    login(term)
    term.expect("Type help for commands")
    hans = server.client()
    hans.login("hans")
    term.expect("hans logged in")
    term.keys(b"mes\t")
    term.expect("message ")
    term.keys(b"ha\t")
    term.expect("hans ")
    term.keys(b"hello there\r")
    assert hans.until("message")["text"] == "hello there"


def test_tab_completes_users_who_were_online_before_the_login_without_whoelse(server, term):
    hans, luke = server.client(), server.client()
    hans.login("hans")
    luke.login("luke")
    login(term)
    term.expect("Type help for commands")
    term.keys(b"message h\t")
    term.expect("hans ")
    term.keys(b"hi\r")
    assert hans.until("message")["text"] == "hi"
    luke.send({"type": "logout"})
    term.expect("luke logged out")
    term.keys(b"block l\t\r")   # luke is no longer online: nothing to complete, "l" is blocked
    term.expect("Error. Invalid user")


def test_ctrl_r_finds_an_earlier_line(server, term):
    login(term)
    hans = server.client()
    hans.login("hans")
    term.expect("hans logged in")
    term.keys(b"message hans first\r")
    hans.until("message", text="first")
    term.keys(b"whoelse\r")
    term.expect("hans")
    term.keys(b"\x12firs")
    term.expect("(reverse-i-search)'firs': message hans first")
    term.keys(b"\r")
    assert hans.until("message")["text"] == "first"


def test_the_username_stays_out_of_the_history(term):
    login(term)
    term.keys(b"\x1b[A")                             # Up: no earlier command, and never the name
    term.keys(b"\x12yod")
    term.expect("(failed reverse-i-search)'yod': ")


def test_ctrl_z_stops_and_sigcont_restores_raw_mode_and_redraws(server):
    term = TerminalClient(server.host, server.port, job_control=True)
    try:
        login(term)
        term.settle(0.1)
        raw = termios.tcgetattr(term.slave)
        assert raw != term.settings_before
        term.keys(b"half typed\x1a")
        term.expect("half typed^Z")
        wait_for(lambda: term.state() == "T", what="the client stopped")
        assert termios.tcgetattr(term.slave) == term.settings_before   # the shell's settings, while stopped
        assert bracketed_paste_ended(term)
        os.kill(term.pid, signal.SIGCONT)                               # fg
        term.expect("> half typed")                                     # drawn again
        assert not bracketed_paste_ended(term)
        wait_for(lambda: termios.tcgetattr(term.slave) == raw, what="raw mode again")
        term.keys(b"\x15logout\r")
        assert term.wait() == 0
    finally:
        term.close()


def test_a_resize_lays_a_long_input_line_out_again(server):
    term = TerminalClient(server.host, server.port, cols=80)
    try:
        login(term)
        hans = server.client()
        hans.login("hans")
        term.expect("hans logged in")
        text = "".join(chr(ord("a") + n % 26) for n in range(150))
        term.keys(b"message hans " + text.encode())
        term.expect(text[-10:])
        term.resize(40)                            # (the pty itself sends SIGWINCH too: one more redraw)
        os.kill(term.pid, signal.SIGWINCH)
        # Narrower: up as far as the old or the new layout says (the new: 4 rows), then all of it again.
        term.expect("\x1b[4A\r> message hans " + text + "\x1b[J")
        term.settle()
        term.seen = len(term.screen)
        term.resize(200)
        os.kill(term.pid, signal.SIGWINCH)
        redraw = term.expect("\r> message hans " + text + "\x1b[J")
        assert "A" not in redraw                   # wider: the terminal is taken to rewrap, no going up
        term.keys(b"\r")
        assert hans.until("message")["text"] == text
    finally:
        term.close()
