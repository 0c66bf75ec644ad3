"""A terminal line editor as pure logic: keystroke bytes in, events and screen bytes out.

``feed(data)`` takes whatever a raw-mode terminal sent (UTF-8 characters and
escape sequences may be split across calls) and returns events in order:
``("line", text)`` on Enter, ``("eof",)`` on Ctrl-D at an empty line and
``("interrupt",)`` on Ctrl-C.  The echo and redraw bytes pile up until
``take_output()``; ``print_above(text)`` writes text above the half-typed line.

Keys: printable characters insert at the cursor; Backspace (DEL or ^H) and
Delete (ESC [ 3 ~, or ^D on a non-empty line) remove a character; Left/Right
and ^B/^F move; Home/End (several encodings) and ^A/^E jump; ^U kills to the
start, ^K to the end, ^W the word before the cursor; Up/Down and ^P/^N browse
the history (Down past the newest entry brings back the draft); ^L redraws.
Tab, Alt-combinations (ESC + key), unknown escape sequences and other control
bytes are ignored.  Editing a recalled history line does not change history.

With a secret prompt nothing typed is shown, the history cannot be browsed
and the submitted line is not remembered.  Every character is taken to be one
column wide and the prompt plus the line is assumed to fit the terminal's
width: a redraw is "\\r", prompt, line, erase-to-end, then the cursor moves back.
"""
from __future__ import annotations

import codecs

ESC = "\x1b"
HISTORY_LIMIT = 500

CONTROL_KEYS = {
    "\x01": "home", "\x02": "left", "\x03": "interrupt", "\x04": "eof_or_delete",
    "\x05": "end", "\x06": "right", "\x08": "backspace", "\x0b": "kill_to_end",
    "\x0c": "redraw", "\x0e": "down", "\x10": "up", "\x15": "kill_to_start",
    "\x17": "kill_word", "\x7f": "backspace",
}
# ESC [ <final> and ESC O <final>; the parameters of CSI are ignored for these.
FINAL_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end"}
# ESC [ <number> ~
TILDE_KEYS = {"1": "home", "7": "home", "4": "end", "8": "end", "3": "delete"}


class LineEditor:
    """One editable input line behind a prompt, with a history of submitted lines."""

    def __init__(self) -> None:
        self._prompt = ""
        self._secret = False
        self._chars: list[str] = []
        self._cursor = 0
        self._history: list[str] = []
        self._browsing: int | None = None  # index into history while browsing
        self._draft: list[str] = []        # the line being typed before browsing
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape = ""                  # a partial escape sequence
        self._after_cr = False             # so that \r\n submits only once
        self._output: list[str] = []
        self._events: list[tuple] = []

    # -- the interface -----------------------------------------------------

    def feed(self, data: bytes) -> list[tuple]:
        for char in self._decoder.decode(data):
            self._take_char(char)
        events, self._events = self._events, []
        return events

    def take_output(self) -> bytes:
        """The screen bytes so far, in UTF-8; what cannot be encoded (a lone surrogate) shows as ``?``."""
        output, self._output = self._output, []
        return "".join(output).encode("utf-8", "replace")

    def set_prompt(self, text: str, secret: bool) -> None:
        self._prompt = text
        self._secret = secret
        self._redraw()

    def print_above(self, text: str) -> bytes:
        self._output.append("\r\x1b[K")
        self._output.extend(line + "\r\n" for line in text.split("\n"))
        self._redraw()
        return self.take_output()

    # -- decoding keys -----------------------------------------------------

    def _take_char(self, char: str) -> None:
        if self._escape:
            self._continue_escape(char)
        elif char == ESC:
            self._escape = ESC
        elif char in "\r\n":
            if not (char == "\n" and self._after_cr):
                self._enter()
        elif char in CONTROL_KEYS:
            self._do(CONTROL_KEYS[char])
        elif char.isprintable():
            self._insert(char)
        self._after_cr = char == "\r"

    def _continue_escape(self, char: str) -> None:
        if char == ESC:                        # a new sequence (Escape, then a key)
            self._escape = ESC
        elif not " " <= char <= "~":           # a control or non-ASCII character ends it
            self._escape = ""
            self._take_char(char)
        elif self._escape == ESC:              # ESC [ or ESC O go on; Alt + key is ignored
            self._escape = ESC + char if char in "[O" else ""
        elif self._escape == ESC + "O":
            self._escape = ""
            self._do(FINAL_KEYS.get(char, ""))
        elif char >= "\x40":                   # the final byte of ESC [ ...
            parameters, self._escape = self._escape[2:], ""
            self._do(TILDE_KEYS.get(parameters, "") if char == "~" else FINAL_KEYS.get(char, ""))
        else:                                  # parameter and intermediate bytes
            self._escape += char

    def _do(self, action: str) -> None:
        if action:
            getattr(self, "_" + action)()

    # -- editing -----------------------------------------------------------

    def _insert(self, char: str) -> None:
        self._chars.insert(self._cursor, char)
        self._cursor += 1
        if self._secret:
            return
        if self._cursor == len(self._chars):
            self._output.append(char)          # typing at the end: just echo it
        else:
            self._redraw()

    def _enter(self) -> None:
        text = "".join(self._chars)
        if not self._secret:
            self._remember(text)
        self._events.append(("line", text))
        self._start_fresh_line("\r\n")

    def _interrupt(self) -> None:
        self._events.append(("interrupt",))
        self._start_fresh_line("^C\r\n")

    def _eof_or_delete(self) -> None:
        if self._chars:
            self._delete()
        else:
            self._events.append(("eof",))

    def _start_fresh_line(self, ending: str) -> None:
        self._chars, self._cursor, self._browsing = [], 0, None
        self._output.append(ending)
        self._redraw()

    def _edit(self, chars: list[str], cursor: int) -> None:
        self._chars, self._cursor = chars, cursor
        self._redraw()

    def _backspace(self) -> None:
        if self._cursor > 0:
            before, after = self._chars[:self._cursor - 1], self._chars[self._cursor:]
            self._edit(before + after, self._cursor - 1)

    def _delete(self) -> None:
        if self._cursor < len(self._chars):
            self._edit(self._chars[:self._cursor] + self._chars[self._cursor + 1:], self._cursor)

    def _left(self) -> None:
        self._edit(self._chars, max(self._cursor - 1, 0))

    def _right(self) -> None:
        self._edit(self._chars, min(self._cursor + 1, len(self._chars)))

    def _home(self) -> None:
        self._edit(self._chars, 0)

    def _end(self) -> None:
        self._edit(self._chars, len(self._chars))

    def _kill_to_start(self) -> None:
        self._edit(self._chars[self._cursor:], 0)

    def _kill_to_end(self) -> None:
        self._edit(self._chars[:self._cursor], self._cursor)

    def _kill_word(self) -> None:
        start = self._cursor
        while start > 0 and self._chars[start - 1] == " ":
            start -= 1
        while start > 0 and self._chars[start - 1] != " ":
            start -= 1
        self._edit(self._chars[:start] + self._chars[self._cursor:], start)

    # -- history -----------------------------------------------------------

    def _remember(self, text: str) -> None:
        if text and (not self._history or self._history[-1] != text):
            self._history.append(text)
            del self._history[:-HISTORY_LIMIT]

    def _up(self) -> None:
        if self._secret or self._browsing == 0 or not self._history:
            return
        if self._browsing is None:
            self._draft, self._browsing = self._chars, len(self._history)
        self._browsing -= 1
        self._recall(list(self._history[self._browsing]))

    def _down(self) -> None:
        if self._secret or self._browsing is None:
            return
        self._browsing += 1
        if self._browsing == len(self._history):
            self._browsing = None
            self._recall(self._draft)
        else:
            self._recall(list(self._history[self._browsing]))

    def _recall(self, chars: list[str]) -> None:
        self._edit(chars, len(chars))

    # -- the screen --------------------------------------------------------

    def _redraw(self) -> None:
        shown = "" if self._secret else "".join(self._chars)
        back = 0 if self._secret else len(self._chars) - self._cursor
        move_back = f"\x1b[{back}D" if back else ""
        self._output.append("\r" + self._prompt + shown + "\x1b[K" + move_back)
