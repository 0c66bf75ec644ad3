"""The client's console: plain lines on pipes, or a raw-mode line editor on a terminal.

Both read standard input through the loop and write every line at once
(flushed), so output reaches a pipe as soon as it is produced.
"""
from __future__ import annotations

import os
import sys
import termios
from typing import Any, Callable, TextIO

from .line_editor import LineEditor
from .loop import EventLoop
from .stdin import InputReader, LineSplitter


class PipeConsole:
    """Lines in, lines out: no escape codes, no command prompt; login prompts are printed as text.

    If the reader of standard output goes away (``client | head``), output is
    dropped from then on and the session ends as at the end of input.
    """

    def __init__(self, stdin_fd: int = 0, stdout: TextIO = sys.stdout) -> None:
        self._fd = stdin_fd
        self._out: TextIO | None = stdout
        self._reader: InputReader | None = None
        self._prompted = False   # a prompt is on screen without its line end (input is not echoed)
        self._end: Callable[[], Any] | None = None

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any]) -> None:
        splitter = LineSplitter(on_line)

        def eof() -> None:
            splitter.finish()
            on_eof()

        self._reader = InputReader(loop, self._fd, splitter.feed, eof)
        self._end = lambda: loop.call_soon(on_eof)

    def print(self, text: str) -> None:
        if self._prompted:
            text = "\n" + text
            self._prompted = False
        self._write(text + "\n")

    def prompt(self, text: str, secret: bool) -> None:
        if text:
            self._write(("\n" if self._prompted else "") + text)
            self._prompted = True

    def _write(self, text: str) -> None:
        if self._out is None:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())  # so the exit's flush is quiet too
            self._out = None
            if self._end is not None:
                self._end()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class TerminalConsole:
    """A line editor in raw mode; incoming lines print above the half-typed input.

    The terminal's settings are saved at ``start`` and restored by ``close``,
    which the host calls on every way out.
    """

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._editor = LineEditor()
        self._saved: list | None = None
        self._reader: InputReader | None = None
        self._on_line: Callable[[str], Any] = lambda text: None
        self._on_eof: Callable[[], Any] = lambda: None

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any]) -> None:
        self._on_line = on_line
        self._on_eof = on_eof
        self._saved = termios.tcgetattr(self._in)
        raw = termios.tcgetattr(self._in)
        raw[0] &= ~(termios.ICRNL | termios.IXON | termios.INLCR | termios.IGNCR)   # iflag
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)  # lflag
        raw[6][termios.VMIN] = 1
        raw[6][termios.VTIME] = 0
        termios.tcsetattr(self._in, termios.TCSAFLUSH, raw)
        self._reader = InputReader(loop, self._in, self._feed, on_eof)

    def _feed(self, data: bytes) -> None:
        events = self._editor.feed(data)
        self._write(self._editor.take_output())
        for event in events:
            if event[0] == "line":
                self._on_line(event[1])
            elif event[0] == "eof":
                self._on_eof()
            # 'interrupt' (Ctrl-C): the editor has already cleared the line

    def print(self, text: str) -> None:
        self._write(self._editor.print_above(text))

    def prompt(self, text: str, secret: bool) -> None:
        self._editor.set_prompt(text or "> ", secret)
        self._write(self._editor.take_output())

    def _write(self, data: bytes) -> None:
        while data:
            written = os.write(self._out, data)
            data = data[written:]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._saved is not None:
            self._write(b"\r\x1b[K")
            termios.tcsetattr(self._in, termios.TCSADRAIN, self._saved)
            self._saved = None


def open_console() -> PipeConsole | TerminalConsole:
    """A line editor when standard input and output are a terminal, plain lines otherwise."""
    if os.isatty(0) and os.isatty(1):
        return TerminalConsole()
    return PipeConsole()
