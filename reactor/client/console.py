"""The client's console: plain lines on pipes, or a raw-mode line editor on a terminal.

Both read standard input through the loop and write every line at once,
straight to the descriptor, so output reaches a pipe as soon as it is
produced. Neither can be left broken by what it is asked to show, nor by an
output that went away.
"""
from __future__ import annotations

import logging
import os
import re
import select
import signal
import termios
import time
from collections.abc import Callable
from typing import Any

from ..loop import EventLoop, TimerHandle
from ..stdin import READ_SIZE, InputReader, LineSplitter
from .line_editor import LineEditor
from .words import QUIT_HINT

log = logging.getLogger(__name__)

LINE_ENDS = re.compile(rb"(?<=[\r\n])")   # splits after each line end
PASTE_ON, PASTE_OFF = b"\x1b[?2004h", b"\x1b[?2004l"   # the terminal's bracketed paste


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
        self._echo_settings: list[Any] | None = None  # the terminal's own settings, kept while its echo is off

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any],
              on_interrupt: Callable[[bool], Any] | None = None) -> None:
        """(Ctrl-C on a terminal in its own mode is SIGINT, the host's business: ``on_interrupt`` is not called.)"""
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

    def prompt(self, text: str, secret: bool, remember: bool = False) -> None:
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
            elif self._echo_settings is not None:
                settings, self._echo_settings = self._echo_settings, None
                termios.tcsetattr(self._fd, termios.TCSANOW, settings)
        except termios.error as exc:   # the terminal is gone
            log.debug("terminal echo: %s", exc)

    def draft(self) -> str:
        """(A terminal in its own mode holds the line being typed where it cannot be read without taking it.)"""
        return ""

    def close(self, drain: bool = False) -> None:
        """``drain``: what a terminal holds of a line being typed is dropped (a password typed ahead of a
        refused login), not left for the shell."""
        if self._reader is not None:
            self._reader.close()
        if drain and self._on_terminal:
            try:
                termios.tcflush(self._fd, termios.TCIFLUSH)
            except termios.error as exc:   # the terminal is gone
                log.debug("terminal flush: %s", exc)
        self._hide_typing(False)


class TerminalConsole:
    """A line editor in raw mode; incoming lines print above the half-typed input.

    The terminal's settings are saved at ``start`` and restored by ``close``,
    which the host calls on every way out, and while the client is stopped by
    Ctrl-Z; bracketed paste is on in between (so a pasted block is one input,
    its line breaks kept: a line may then hold ``\n``). Lines typed before
    ``start`` are kept (the mode changes without flushing input). SIGWINCH
    lays the input out again at the new size; a lone Escape counts as the
    Escape key when nothing follows it within ``ESCAPE_WAIT``; a terminal that
    has not said where a cluster drawn to measure it left the cursor within
    ``MEASURE_WAIT`` is asked no more (such clusters show as their parts). If
    the terminal closes under it, the session ends as at the end of input.
    ``complete(text_before_cursor)`` gives Tab its words; ``limit(line)``, where
    the line passes what can be sent (an offset, or None), so the excess shows.
    Ctrl-C clears the line and calls ``on_interrupt(was_empty)`` (without one,
    an empty line's Ctrl-C says how to quit).
    ``tap``, when set, is told each input of the line editor, as ``(op, *args)``
    (``reactor.journal.client`` records them: the screen can be drawn again);
    ``size`` is the terminal's (columns, rows) as the editor was last given it.
    """

    ESCAPE_WAIT = 0.05   # seconds
    MEASURE_WAIT = 0.5   # seconds; a terminal answers in well under a millisecond, over ssh in a round trip
    DRAIN_QUIET = 1.0    # seconds without a key that end a drain (``close(drain=True)``) ...
    DRAIN_MOST = 5.0     # ... which lasts at most this long

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1,
                 complete: Callable[[str], list[str]] | None = None,
                 limit: Callable[[str], int | None] | None = None) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._output = _Output(stdout_fd)
        cols, rows = self.size = self._size()
        self._editor = LineEditor(cols, complete, rows=rows, limit=limit, measure=True)
        self._secret = False
        self.tap: Callable[..., Any] | None = None
        self._saved: list[Any] | None = None
        self._raw: list[Any] | None = None
        self._loop: EventLoop | None = None
        self._reader: InputReader | None = None
        self._escape_timer: TimerHandle | None = None
        self._measure_timer: TimerHandle | None = None
        self._on_line: Callable[[str], Any] = lambda text: None
        self._on_eof: Callable[[], Any] = lambda: None
        self._on_interrupt: Callable[[bool], Any] = self._quit_hint

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any],
              on_interrupt: Callable[[bool], Any] | None = None) -> None:
        self._loop = loop
        self._on_line = on_line
        self._on_eof = on_eof
        if on_interrupt is not None:
            self._on_interrupt = on_interrupt
        self._saved = termios.tcgetattr(self._in)
        raw = termios.tcgetattr(self._in)
        raw[0] &= ~(termios.ICRNL | termios.IXON | termios.INLCR | termios.IGNCR)   # iflag
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)  # lflag
        raw[6][termios.VMIN] = 1
        raw[6][termios.VTIME] = 0
        self._raw = raw
        termios.tcsetattr(self._in, termios.TCSANOW, raw)   # not TCSAFLUSH: typed-ahead lines stay
        self._output.write(PASTE_ON)
        self._reader = InputReader(loop, self._in, self._feed, on_eof)
        self._output.on_gone = lambda: loop.call_soon(on_eof)
        loop.add_signal_handler(signal.SIGWINCH, self._resized)
        loop.add_signal_handler(signal.SIGCONT, self._resumed)

    def _size(self) -> tuple[int, int]:
        """The terminal's columns and rows (80 by 24 when it cannot say)."""
        try:
            size = os.get_terminal_size(self._out)
        except OSError:
            return 80, 24
        return size.columns or 80, size.lines or 24

    def _feed(self, data: bytes) -> None:
        # Line by line, so that what a line changes (a secret prompt after a user name)
        # holds for the keys typed after it in the same read.
        for piece in LINE_ENDS.split(data):
            if piece:
                self._take(piece)
        self._watch_timers()

    def _take(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap("k", data)
        events = self._editor.feed(data)
        if events:                          # (inside a bracketed paste there are none, and nothing to draw)
            self._output.write(self._editor.take_output())
        for event in events:
            if event[0] == "line":
                self._on_line(event[1])
            elif event[0] == "eof":
                self._on_eof()
            elif event[0] == "interrupt":   # the editor has already cleared the line
                self._on_interrupt(event[1])
            elif event[0] == "suspend":
                self._suspend()

    def _quit_hint(self, was_empty: bool) -> None:
        if was_empty:
            self.print(QUIT_HINT)

    def _watch_timers(self) -> None:
        """Write what the keys drew, then wait for the rest of an escape sequence or for the
        terminal's answers to questions about widths, for a moment at most."""
        self._output.write(self._editor.take_output())
        if self._escape_timer is not None:
            self._escape_timer.cancel()
            self._escape_timer = None
        if self._loop is None:
            return
        if self._editor.waiting_for_escape:
            self._escape_timer = self._loop.call_later(self.ESCAPE_WAIT, self._escape_timeout)
        if self._editor.waiting_for_measurement and self._measure_timer is None:
            self._measure_timer = self._loop.call_later(self.MEASURE_WAIT, self._measurement_timeout)
        elif not self._editor.waiting_for_measurement and self._measure_timer is not None:
            self._measure_timer.cancel()
            self._measure_timer = None

    def _escape_timeout(self) -> None:
        self._escape_timer = None
        if self.tap is not None:
            self.tap("x")
        self._editor.escape_timeout()
        self._watch_timers()

    def _measurement_timeout(self) -> None:
        self._measure_timer = None
        if self.tap is not None:
            self.tap("y")
        self._editor.measurement_timeout()
        self._watch_timers()

    def _suspend(self) -> None:
        """Ctrl-Z: give the terminal back as it was and stop; ``_resumed`` takes it again."""
        if self._saved is None:
            return
        self._output.write(PASTE_OFF)
        self._set_mode(self._saved, termios.TCSADRAIN)
        os.kill(0, signal.SIGTSTP)

    def _resumed(self) -> None:
        """SIGCONT (``fg``): raw mode again, and the input drawn again."""
        if self._raw is None or self._saved is None:
            return
        self._set_mode(self._raw, termios.TCSANOW)
        self._output.write(PASTE_ON)
        if self.tap is not None:
            self.tap("Z")
        self._editor.redraw()
        self._watch_timers()

    def _resized(self) -> None:
        self.size = self._size()
        if self.tap is not None:
            self.tap("z", *self.size)
        self._editor.resize(*self.size)
        self._watch_timers()

    def _set_mode(self, settings: list[Any], when: int) -> None:
        try:
            termios.tcsetattr(self._in, when, settings)
        except termios.error as exc:   # the terminal is gone
            log.debug("terminal mode: %s", exc)

    def print(self, text: str) -> None:
        self._output.write(self._editor.print_above(text))
        self._watch_timers()

    def prompt(self, text: str, secret: bool, remember: bool = False) -> None:
        """``''``: the command prompt (``> ``), or, when secret, nothing while a login answer is awaited."""
        self._secret = secret
        self._editor.set_prompt(text or ("" if secret else "> "), secret, remember)
        self._watch_timers()

    def draft(self) -> str:
        """What is typed and not yet entered (nothing while typing is hidden: it may be a password)."""
        return "" if self._secret else self._editor.text

    def close(self, drain: bool = False) -> None:
        """Give the terminal back as it was; ``drain``: first read and drop what is being typed, up to the
        end of its line (or ``DRAIN_QUIET`` without a key): a password typed ahead of a refused login is not
        left for the shell to run."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for timer in (self._escape_timer, self._measure_timer):
            if timer is not None:
                timer.cancel()
        self._escape_timer = self._measure_timer = None
        if self._saved is not None:
            saved, self._saved = self._saved, None
            if self._loop is not None:
                self._loop.remove_signal_handler(signal.SIGWINCH)
                self._loop.remove_signal_handler(signal.SIGCONT)
            self._output.write(self._editor.erase() + PASTE_OFF)
            self._take_last_answers()
            if drain:
                self._drop_typing()
            self._set_mode(saved, termios.TCSAFLUSH if drain else termios.TCSADRAIN)

    def _drop_typing(self) -> None:
        """Read and drop keys until a line ends, or none comes for ``DRAIN_QUIET`` (``DRAIN_MOST`` in all)."""
        deadline = time.monotonic() + self.DRAIN_MOST
        while (left := min(self.DRAIN_QUIET, deadline - time.monotonic())) > 0:
            try:
                if not select.select([self._in], [], [], left)[0]:
                    return
                data = os.read(self._in, READ_SIZE)
            except OSError:                 # the terminal is gone
                return
            if not data or b"\r" in data or b"\n" in data:
                return

    def _take_last_answers(self) -> None:
        """Read the terminal's answers still on their way (for ``MEASURE_WAIT`` at most), so that
        none reaches the shell as typed text once the client is gone."""
        deadline = time.monotonic() + self.MEASURE_WAIT
        while self._editor.waiting_for_measurement and (left := deadline - time.monotonic()) > 0:
            try:
                if not select.select([self._in], [], [], left)[0]:
                    return
                self._editor.feed(os.read(self._in, READ_SIZE))
            except OSError:                 # the terminal is gone
                return
        self._editor.take_output()          # (nothing more is drawn)


def open_console(complete: Callable[[str], list[str]] | None = None,
                 limit: Callable[[str], int | None] | None = None) -> PipeConsole | TerminalConsole:
    """A line editor (``complete`` gives Tab its words, ``limit`` marks what is too long to send)
    when standard input and output are both a terminal, plain lines otherwise.

    (Input from a terminal with output to a pipe or file gets plain lines, and the
    terminal's echo is turned off while the password is typed.)
    """
    if os.isatty(0) and os.isatty(1):
        return TerminalConsole(complete=complete, limit=limit)
    return PipeConsole()
