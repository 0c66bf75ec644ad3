"""Standard input on the loop: chunks, lines, and end of input, from a pipe."""
import os

from reactor.loop import EventLoop
from reactor.stdin import InputReader, LineSplitter


def test_pipe_lines_and_end_of_input():
    loop = EventLoop()
    r, w = os.pipe()
    lines, eof = [], []
    splitter = LineSplitter(lines.append)

    def on_eof():
        splitter.finish()
        eof.append(True)

    InputReader(loop, r, splitter.feed, on_eof)
    os.write(w, b"whoelse\r\nmessage yoda h")
    os.write(w, "é\n".encode() + b"\xff\nlast without newline")
    os.close(w)
    deadline = loop.time() + 5
    while not eof:
        assert loop.time() < deadline
        loop.run_once(timeout=0.05)
    assert lines == ["whoelse", "message yoda hé", "\ufffd", "last without newline"]
    os.close(r)
    loop.close()


def test_close_stops_watching():
    loop = EventLoop()
    r, w = os.pipe()
    chunks = []
    reader = InputReader(loop, r, chunks.append, lambda: None)
    reader.close()
    reader.close()
    os.write(w, b"x")
    loop.run_once(timeout=0.01)
    assert chunks == []
    os.close(r)
    os.close(w)
    loop.close()


def test_a_vanished_terminal_reads_as_end_of_input(monkeypatch):
    import reactor.stdin as stdin_mod
    loop = EventLoop()
    r, w = os.pipe()
    chunks, eof = [], []
    InputReader(loop, r, chunks.append, lambda: eof.append(True))
    errors = [BlockingIOError(), OSError(5, "Input/output error")]

    def read(fd, size):
        raise errors.pop(0)

    monkeypatch.setattr(stdin_mod.os, "read", read)
    os.write(w, b"x")
    loop.run_once(timeout=1)            # would block: nothing yet
    assert chunks == [] and eof == []
    loop.run_once(timeout=1)            # EIO: the terminal is gone
    assert eof == [True] and chunks == []
    monkeypatch.undo()
    os.close(r)
    os.close(w)
    loop.close()


def test_a_regular_file_is_read_a_chunk_per_loop_turn(tmp_path):
    import reactor.stdin as stdin_mod
    path = tmp_path / "script.txt"
    path.write_bytes(b"a" * stdin_mod.READ_SIZE * 2 + b"\nlast")
    fd = os.open(path, os.O_RDONLY)
    loop = EventLoop()
    chunks, eof = [], []
    InputReader(loop, fd, chunks.append, lambda: eof.append(True))   # epoll refuses a regular file
    loop.run_once(timeout=1)
    assert len(chunks) == 1 and eof == []         # one chunk, then the loop's other work gets a turn
    loop.run_once(timeout=1)
    loop.run_once(timeout=1)
    assert len(chunks) == 3 and eof == []
    loop.run_once(timeout=1)
    assert eof == [True]
    assert b"".join(chunks) == path.read_bytes()
    loop.run_once(timeout=0.01)
    assert eof == [True]
    os.close(fd)
    loop.close()


def test_dev_null_is_at_its_end_at_once():
    fd = os.open(os.devnull, os.O_RDONLY)
    loop = EventLoop()
    chunks, eof = [], []
    InputReader(loop, fd, chunks.append, lambda: eof.append(True))
    loop.run_once(timeout=1)
    assert chunks == [] and eof == [True]
    os.close(fd)
    loop.close()


def test_a_file_reader_stops_when_closed_and_goes_on_after_a_failing_callback(tmp_path):
    path = tmp_path / "script.txt"
    path.write_bytes(b"x" * 200_000)
    fd = os.open(path, os.O_RDONLY)
    loop = EventLoop()
    chunks = []

    def on_data(data):
        chunks.append(data)
        if len(chunks) == 1:
            raise ValueError("a bug in the line handler")

    reader = InputReader(loop, fd, on_data, lambda: None)
    loop.run_once(timeout=1)
    loop.run_once(timeout=1)
    assert len(chunks) == 2                       # the failure (logged by the loop) did not stop reading
    reader.close()
    reader.close()
    loop.run_once(timeout=0.01)
    assert len(chunks) == 2
    os.close(fd)
    loop.close()
