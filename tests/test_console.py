"""The consoles on real descriptors: what cannot be encoded or written never breaks them."""
import fcntl
import os
import select
import signal
import struct
import termios
import time

import pytest

from reactor.client.console import PipeConsole, TerminalConsole
from tests.support import run_until
from tests.terminal_model import Screen


def read_all(fd):
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data


def test_pipe_console_shows_a_lone_surrogate_as_a_question_mark_and_goes_on(loop):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    console = PipeConsole(in_r, out_w)
    console.start(loop, lambda text: None, lambda: None)
    console.print("hans: \ud800")
    console.print("hans: after")
    assert read_all(out_r) == b"hans: ?\nhans: after\n"
    console.close()
    for fd in (in_r, in_w, out_r, out_w):
        os.close(fd)


def test_pipe_console_output_gone_ends_the_session_once(loop):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.close(out_r)                                   # the reader went away: EPIPE
    ended = []
    console = PipeConsole(in_r, out_w)
    console.start(loop, lambda text: None, lambda: ended.append(True))
    console.print("one")
    console.print("two")                              # dropped, without raising
    run_until(loop, lambda: ended)
    loop.run_once(timeout=0.01)
    assert ended == [True]
    console.close()
    for fd in (in_r, in_w, out_w):
        os.close(fd)


def test_terminal_console_survives_bad_text_and_a_closed_terminal(loop):
    master, slave = os.openpty()
    ended = []
    console = TerminalConsole(slave, slave)
    console.start(loop, lambda text: None, lambda: ended.append(True))
    console.print("hans: \ud800")
    console.print("hans: after")
    screen = read_all(master)
    assert b"hans: <U+D800>\r" in screen and b"hans: after\r" in screen
    os.close(master)                                  # the terminal closes: EIO on writes and reads
    console.print("lost")
    run_until(loop, lambda: ended)
    console.close()                                   # restoring a gone terminal does not raise
    console.close()
    os.close(slave)


def test_terminal_console_restores_the_terminal_on_close(loop):
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    console = TerminalConsole(slave, slave)
    console.start(loop, lambda text: None, lambda: None)
    assert termios.tcgetattr(slave) != before
    console.close()
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


def test_pipe_console_on_a_terminal_hides_a_secret_until_its_line(loop):
    master, slave = os.openpty()
    out_r, out_w = os.pipe()
    lines = []
    console = PipeConsole(slave, out_w)
    console.start(loop, lines.append, lambda: None)

    def echoing():
        return bool(termios.tcgetattr(slave)[3] & termios.ECHO)

    assert echoing()
    console.prompt("Password: ", True)
    assert not echoing()
    os.write(master, b"secret\n")
    run_until(loop, lambda: lines)
    assert lines == ["secret"] and echoing()         # back on once the line is in
    console.prompt("Password: ", True)
    os.close(master)                                  # the terminal closes while the echo is off
    console.close()                                   # restoring a gone terminal does not raise
    for fd in (slave, out_r, out_w):
        os.close(fd)


# -- the terminal console's keys, signals and timers ------------------------------------

class OnPty:
    """A TerminalConsole on a fresh pty of ``cols`` columns; what it writes piles up in ``screen``
    and is shown on ``model``, a model terminal that does not rewrap on a resize."""

    def __init__(self, loop, cols=80, **options):
        self.loop = loop
        self.master, self.slave = os.openpty()
        self.set_size(cols)
        self.before = termios.tcgetattr(self.slave)
        self.lines, self.ended = [], []
        self.console = TerminalConsole(self.slave, self.slave, **options)
        self.screen = b""
        self.model = Screen(cols, rows=24)

    def start(self, on_line=None):
        """Start the console; each line goes to ``on_line``, by default into ``lines``."""
        self.console.start(self.loop, on_line or self.lines.append, lambda: self.ended.append(True))
        self.console.prompt("", False, True)

    def set_size(self, cols):
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))

    def resize(self, cols):
        """The terminal is ``cols`` wide now, and says so with SIGWINCH."""
        self.read()
        self.model.resize(cols, reflow=False)
        self.set_size(cols)
        os.kill(os.getpid(), signal.SIGWINCH)

    def keys(self, data):
        os.write(self.master, data)

    def read(self):
        new = read_all(self.master)
        self.model.feed(new)
        self.screen += new
        return self.screen

    def until_on_screen(self, needle):
        run_until(self.loop, lambda: needle in self.read())

    def until_shown(self, *lines):
        """Until the model terminal shows these lines (the pty turns each \\n into \\r\\n)."""
        run_until(self.loop, lambda: self.read() is not None and self.model.lines() == list(lines))

    def close(self):
        self.console.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty(loop):
    on_pty = OnPty(loop)
    yield on_pty
    on_pty.close()


def test_lines_typed_before_the_start_are_kept(pty):
    pty.keys(b"typed ahead\n")                       # in cooked mode, before the client took the terminal

    def waiting_to_be_read():
        return struct.unpack("i", fcntl.ioctl(pty.slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    run_until(pty.loop, lambda: waiting_to_be_read() == len(b"typed ahead\n"))
    pty.start()
    run_until(pty.loop, lambda: pty.lines)
    assert pty.lines == ["typed ahead"]


def test_a_secret_prompt_set_by_a_line_hides_the_rest_of_the_same_read(pty):
    def on_line(text):
        pty.lines.append(text)
        pty.console.prompt("", True)                 # as the client does once it sent the user name

    pty.start(on_line)
    pty.keys(b"yoda\rwise@!man\r")                   # pasted: one read
    run_until(pty.loop, lambda: len(pty.lines) == 2)
    assert pty.lines == ["yoda", "wise@!man"]
    assert b"yoda" in pty.read() and b"wise" not in pty.read()


def test_ctrl_c_goes_to_the_owner_when_it_asks_for_it(pty):
    """The client decides what Ctrl-C does (at a login prompt, it ends the client): the console clears the line
    and tells whether it was empty, and says nothing of its own."""
    interrupts = []
    pty.console.start(pty.loop, pty.lines.append, lambda: pty.ended.append(True), interrupts.append)
    pty.console.prompt("Password: ", True)
    pty.keys(b"half a pass\x03")
    run_until(pty.loop, lambda: interrupts == [False])
    pty.keys(b"\x03")
    run_until(pty.loop, lambda: interrupts == [False, True])
    assert b"To quit" not in pty.read() and pty.lines == []


def test_a_drain_drops_the_line_being_typed_and_nothing_after_its_end(pty):
    pty.start()
    pty.keys(b"falcon")
    pty.until_on_screen(b"falcon")
    pty.keys(b"*solo\r")                              # the rest comes while the client exits
    started = time.monotonic()
    pty.console.close(drain=True)
    assert time.monotonic() - started < TerminalConsole.DRAIN_QUIET   # the line's end ended the drain
    assert select.select([pty.slave], [], [], 0)[0] == []              # nothing left for the shell


def test_a_drain_ends_when_no_key_comes(pty):
    pty.start()
    started = time.monotonic()
    pty.console.close(drain=True)
    assert TerminalConsole.DRAIN_QUIET <= time.monotonic() - started < TerminalConsole.DRAIN_MOST


def test_ctrl_c_on_an_empty_line_says_how_to_quit(pty):
    pty.start()
    pty.keys(b"abc\x03")
    pty.until_on_screen(b"^C")
    pty.keys(b"\x03")
    pty.until_on_screen(b"To quit, type logout or press Ctrl-D")
    assert pty.screen.count(b"To quit") == 1         # not after a line that held something
    assert not pty.ended


def test_sigwinch_lays_the_input_out_again(pty):
    pty.start()
    pty.keys(b"x" * 100)
    pty.until_shown("> " + "x" * 78, "x" * 22)
    pty.resize(40)
    pty.until_shown("> " + "x" * 38, "x" * 40, "x" * 22)
    pty.keys(b"!")
    pty.until_shown("> " + "x" * 38, "x" * 40, "x" * 22 + "!")
    pty.resize(120)
    # Wider: the editor assumes the terminal rewrapped (tmux does); this one did not, so the old
    # first rows stay above the input, which is drawn whole from the cursor's row.
    pty.until_shown("> " + "x" * 38, "x" * 40, "> " + "x" * 100 + "!")


def test_a_lone_escape_counts_once_nothing_follows(pty):
    pty.start()
    pty.keys(b"hello\r")
    run_until(pty.loop, lambda: pty.lines)
    pty.keys(b"\x12hel")                             # reverse search finds it
    pty.until_on_screen(b"(reverse-i-search)'hel': hello")
    pty.until_shown("> hello", "(reverse-i-search)'hel': hello")
    pty.keys(b"\x1b")                                # Escape gives the search up, after a moment
    pty.until_shown("> hello", ">")
    pty.keys(b"\r")
    run_until(pty.loop, lambda: len(pty.lines) == 2)
    assert pty.lines == ["hello", ""]                # the search was given up, not submitted


def test_ctrl_z_gives_the_terminal_back_and_sigcont_takes_it_again(pty, monkeypatch):
    stops = []

    def kill(pid, signum):                           # stopping the test run itself would not do
        stops.append((pid, signum, termios.tcgetattr(pty.slave)))

    monkeypatch.setattr("reactor.client.console.os.kill", kill)
    pty.start()
    raw = termios.tcgetattr(pty.slave)
    pty.keys(b"half typed\x1a")
    run_until(pty.loop, lambda: stops)
    assert stops == [(0, signal.SIGTSTP, pty.before)]   # the shell gets its own settings back
    pty.until_shown("> half typed^Z")
    signal.raise_signal(signal.SIGCONT)              # fg (os.kill is the stand-in here)
    pty.until_shown("> half typed^Z", "> half typed")
    assert termios.tcgetattr(pty.slave) == raw


def test_close_erases_every_input_row(loop):
    pty = OnPty(loop, cols=20)
    pty.start()
    pty.keys(b"y" * 50)                              # three rows
    pty.until_shown("> " + "y" * 18, "y" * 20, "y" * 12)
    pty.console.close()
    pty.read()
    assert pty.model.lines() == [] and pty.model.cursor == (0, 0)
    assert termios.tcgetattr(pty.slave) == pty.before
    os.close(pty.master)
    os.close(pty.slave)


def test_tab_asks_the_completion_source(loop):
    asked = []

    def complete(before_cursor):
        asked.append(before_cursor)
        return ["whoelse", "whoelsesince"]

    pty = OnPty(loop, complete=complete)
    try:
        pty.start()
        pty.keys(b"wh\t")
        pty.until_on_screen(b"whoelse")
        assert asked == ["wh"]
    finally:
        pty.close()


# -- pastes and widths ---------------------------------------------------------------------

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"


def test_bracketed_paste_is_on_only_while_the_console_has_the_terminal(pty, monkeypatch):
    monkeypatch.setattr("reactor.client.console.os.kill", lambda pid, signum: None)   # (no real stop)
    assert not pty.model.bracketed_paste
    pty.start()
    pty.read()
    assert pty.model.bracketed_paste
    pty.keys(b"\x1a")                                # Ctrl-Z
    run_until(pty.loop, lambda: pty.read() is not None and not pty.model.bracketed_paste)
    signal.raise_signal(signal.SIGCONT)
    run_until(pty.loop, lambda: pty.read() is not None and pty.model.bracketed_paste)
    pty.console.close()
    pty.read()
    assert not pty.model.bracketed_paste


def test_a_pasted_block_is_one_line_with_its_line_breaks(pty):
    pty.start()
    pty.keys(b"\x1b[200~message yoda Dear Yoda,\rthe fleet is ready.\rRegards\r\x1b[201~")
    pty.until_shown("> message yoda Dear Yoda,", "  the fleet is ready.", "  Regards")
    assert pty.lines == []
    pty.keys(b"\r")
    run_until(pty.loop, lambda: pty.lines)
    assert pty.lines == ["message yoda Dear Yoda,\nthe fleet is ready.\nRegards"]


def test_a_cluster_is_measured_by_the_terminal_answering_through_the_input(pty):
    pty.start()
    pty.keys(("AB " + FAMILY + " CD").encode())
    run_until(pty.loop, lambda: pty.read() is not None and pty.model.answers)
    pty.keys(pty.model.take_answers())               # the terminal answers: 6 columns, as it drew
    pty.until_shown("> AB " + FAMILY + " CD")
    pty.keys(b"\x1b[D\x1b[DX")
    pty.until_shown("> AB " + FAMILY + " XCD")
    assert pty.model.cursor == (0, 2 + 3 + 6 + 2)


def test_a_terminal_that_does_not_answer_gets_the_cluster_as_its_parts(pty, monkeypatch):
    monkeypatch.setattr(TerminalConsole, "MEASURE_WAIT", 0.05)
    pty.start()
    pty.keys(("AB " + FAMILY + " CD").encode())
    run_until(pty.loop, lambda: pty.read() is not None and pty.model.answers)
    pty.model.take_answers()                          # lost
    pty.until_shown("> AB \U0001F468<U+200D>\U0001F469<U+200D>\U0001F467 CD")
    drawn = len(pty.screen)
    run_until(pty.loop, lambda: len(pty.read()) > drawn)   # drawn again once the wait is over
    pty.keys("\x1b[D\x1b[DX\U0001F1EB\U0001F1F7".encode())
    pty.until_shown("> AB \U0001F468<U+200D>\U0001F469<U+200D>\U0001F467 X<U+1F1EB><U+1F1F7>CD")
    assert pty.model.cursor == (0, 2 + 3 + 6 + 16 + 2 + 18)
    assert pty.screen.count(b"\x1b[6n") == 1           # a terminal that did not answer is asked no more


def test_an_answer_still_on_its_way_at_close_does_not_reach_the_shell(pty):
    pty.start()
    pty.keys(FAMILY.encode())
    run_until(pty.loop, lambda: pty.read() is not None and pty.model.answers)
    pty.keys(pty.model.take_answers())               # on its way as the client exits
    pty.console.close()
    assert struct.unpack("i", fcntl.ioctl(pty.slave, termios.FIONREAD, b"\0\0\0\0"))[0] == 0
    assert termios.tcgetattr(pty.slave) == pty.before


def test_a_crash_gives_the_terminal_back_with_bracketed_paste_off(monkeypatch):
    import client_main
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    console = TerminalConsole(slave, slave)

    def crash(loop):                                 # connected, the console started, then a crash
        console.start(loop, lambda text: None, lambda: None)
        raise MemoryError

    monkeypatch.setattr(client_main, "open_console", lambda **options: console)
    monkeypatch.setattr(client_main.EventLoop, "run", crash)
    try:
        with pytest.raises(MemoryError):
            client_main.main(["127.0.0.1", "9"])
        screen = Screen(80)
        screen.feed(read_all(master))
        assert not screen.bracketed_paste
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
