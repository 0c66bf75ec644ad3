"""The consoles on real descriptors: what cannot be encoded or written never breaks them."""
import os
import termios

import pytest

from reactor.console import PipeConsole, TerminalConsole
from reactor.loop import EventLoop


@pytest.fixture
def loop():
    lp = EventLoop()
    yield lp
    lp.close()


def run_until(loop, predicate, timeout=5.0):
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached before the deadline"
        loop.run_once(timeout=0.05)


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
