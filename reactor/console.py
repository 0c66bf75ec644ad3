"""The client's console: plain lines on pipes, or a raw-mode line editor on a terminal.

Both read standard input through the loop and write every line at once,
straight to the descriptor, so output reaches a pipe as soon as it is
produced. Neither can be left broken by what it is asked to show, nor by an
output that went away.
"""
from __future__ import annotations

import logging
import os
import termios
from typing import Any, Callable

from .line_editor import LineEditor
from .loop import EventLoop
from .stdin import InputReader, LineSplitter

log = logging.getLogger("chat.client")


class _Output:
    """Bytes to a blocking descriptor. The first write that fails (EPIPE: the reader went away;
    EIO: the terminal closed) ends the output for good and calls ``on_gone`` once."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._gone = False
        self.on_gone: Callable[[], Any] = lambda: None

    def write(self, data: bytes) -> None:
        while data and not self._gone:
            try:
                data = data[os.write(self._fd, data):]
            except OSError as exc:
                log.debug("console output gone: %s", exc)
                self._gone = True
                self.on_gone()


class PipeConsole:
    """Lines in, lines out: no escape codes, no command prompt; login prompts are printed as text.

    Output is UTF-8 (what cannot be encoded, such as a lone surrogate, shows as
    ``?``). If it cannot be written any more (``client | head``, a closed
    terminal), it is dropped from then on and the session ends as at the end of
    input. When standard input is a terminal (and output is not), the
    terminal's echo is off while a secret is typed.
    """

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self._fd = stdin_fd
        self._output = _Output(stdout_fd)
        self._reader: InputReader | None = None
        self._prompted = False   # a prompt is on screen without its line end (input is not echoed)
        self._on_terminal = os.isatty(stdin_fd)
        self._echo_settings: list | None = None  # the terminal's own settings, kept while its echo is off

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any]) -> None:
        def line(text: str) -> None:
            self._hide_typing(False)
            on_line(text)

        splitter = LineSplitter(line)

        def eof() -> None:
            splitter.finish()
            on_eof()

        self._reader = InputReader(loop, self._fd, splitter.feed, eof)
        self._output.on_gone = lambda: loop.call_soon(on_eof)

    def print(self, text: str) -> None:
        if self._prompted:
            text = "\n" + text
            self._prompted = False
        self._write(text + "\n")

    def prompt(self, text: str, secret: bool) -> None:
        self._hide_typing(secret)
        if text:
            self._write(("\n" if self._prompted else "") + text)
            self._prompted = True

    def _write(self, text: str) -> None:
        self._output.write(text.encode("utf-8", "replace"))

    def _hide_typing(self, hide: bool) -> None:
        """Turn a terminal's echo off (keeping the line end) while a secret is typed, or back on."""
        if not self._on_terminal or hide == (self._echo_settings is not None):
            return
        try:
            if hide:
                settings = termios.tcgetattr(self._fd)
                quiet = termios.tcgetattr(self._fd)
                quiet[3] = quiet[3] & ~termios.ECHO | termios.ECHONL  # lflag
                termios.tcsetattr(self._fd, termios.TCSANOW, quiet)
                self._echo_settings = settings
            else:
                settings, self._echo_settings = self._echo_settings, None
                termios.tcsetattr(self._fd, termios.TCSANOW, settings)
        except termios.error as exc:   # the terminal is gone
            log.debug("terminal echo: %s", exc)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._hide_typing(False)


class TerminalConsole:
    """A line editor in raw mode; incoming lines print above the half-typed input.

    The terminal's settings are saved at ``start`` and restored by ``close``,
    which the host calls on every way out. If the terminal closes under it, the
    session ends as at the end of input.
    """

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self._in = stdin_fd
        self._output = _Output(stdout_fd)
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
        self._output.on_gone = lambda: loop.call_soon(on_eof)

    def _feed(self, data: bytes) -> None:
        events = self._editor.feed(data)
        self._output.write(self._editor.take_output())
        for event in events:
            if event[0] == "line":
                self._on_line(event[1])
            elif event[0] == "eof":
                self._on_eof()
            # 'interrupt' (Ctrl-C): the editor has already cleared the line

    def print(self, text: str) -> None:
        self._output.write(self._editor.print_above(text))

    def prompt(self, text: str, secret: bool) -> None:
        self._editor.set_prompt(text or "> ", secret)
        self._output.write(self._editor.take_output())

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._saved is not None:
            saved, self._saved = self._saved, None
            self._output.write(b"\r\x1b[K")
            try:
                termios.tcsetattr(self._in, termios.TCSADRAIN, saved)
            except termios.error as exc:   # the terminal is gone
                log.debug("restoring the terminal: %s", exc)


def open_console() -> PipeConsole | TerminalConsole:
    """A line editor when standard input and output are both a terminal, plain lines otherwise.

    (Input from a terminal with output to a pipe or file gets plain lines, and the
    terminal's echo is turned off while the password is typed.)
    """
    if os.isatty(0) and os.isatty(1):
        return TerminalConsole()
    return PipeConsole()
