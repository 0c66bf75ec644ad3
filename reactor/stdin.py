"""Standard input as a loop reader: raw chunks or whole lines, and end of input."""
from __future__ import annotations

import os
from typing import Any, Callable

from .loop import EventLoop

READ_SIZE = 65536


class InputReader:
    """Calls ``on_data(bytes)`` for each chunk read from ``fd`` and ``on_eof()`` once at its end.

    The descriptor is left blocking (it is shared with the shell); the loop
    reads only when it is readable, one ``read`` per wake-up, so it never blocks.
    """

    def __init__(self, loop: EventLoop, fd: int, on_data: Callable[[bytes], Any],
                 on_eof: Callable[[], Any]) -> None:
        self._loop = loop
        self._fd = fd
        self._on_data = on_data
        self._on_eof = on_eof
        self._open = True
        loop.add_reader(fd, self._on_readable)

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
        """Stop watching the descriptor (it is not closed)."""
        if self._open:
            self._open = False
            self._loop.remove_reader(self._fd)


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
