"""Standard input as a loop reader: raw chunks or whole lines, and end of input."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .loop import EventLoop, Handle

READ_SIZE = 65536


class InputReader:
    """Calls ``on_data(bytes)`` for each chunk read from ``fd`` and ``on_eof()`` once at its end.

    The descriptor is left blocking (it is shared with the shell). A pipe or a
    terminal is read only when the loop finds it readable, one ``read`` per
    wake-up, so it never blocks. A regular file or ``/dev/null``, which epoll
    refuses to watch (EPERM) and whose reads never wait, is read one chunk per
    loop turn, so the server and the peers get their turns between chunks.
    """

    def __init__(self, loop: EventLoop, fd: int, on_data: Callable[[bytes], Any],
                 on_eof: Callable[[], Any]) -> None:
        self._loop = loop
        self._fd = fd
        self._on_data = on_data
        self._on_eof = on_eof
        self._open = True
        self._next_turn: Handle | None = None   # the next read of a file the loop cannot watch; None: watched
        try:
            loop.add_reader(fd, self._on_readable)
        except PermissionError:
            self._next_turn = loop.call_soon(self._read_turn)

    def _read_turn(self) -> None:
        self._next_turn = self._loop.call_soon(self._read_turn)  # first, so a failing on_data stops nothing
        self._on_readable()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a terminal that went away reads as EIO
            data = b""
        if data:
            self._on_data(data)
        else:
            self.close()
            self._on_eof()

    def close(self) -> None:
        """Stop reading the descriptor (it is not closed)."""
        if not self._open:
            return
        self._open = False
        if self._next_turn is None:
            self._loop.remove_reader(self._fd)
        else:
            self._next_turn.cancel()


class LineSplitter:
    """Turns chunks into lines (UTF-8, bad bytes replaced; ``\\r\\n`` or ``\\n``)."""

    def __init__(self, on_line: Callable[[str], Any]) -> None:
        self._on_line = on_line
        self._partial = b""

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._on_line(line.rstrip(b"\r").decode("utf-8", "replace"))

    def finish(self) -> None:
        """End of input: a last line without a newline still counts."""
        if self._partial:
            line, self._partial = self._partial, b""
            self._on_line(line.rstrip(b"\r").decode("utf-8", "replace"))
