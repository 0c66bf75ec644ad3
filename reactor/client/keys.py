"""What a raw-mode terminal sends, read as keys: typed text, named keys, pastes and cursor reports.

``KeyReader.feed(data)`` takes bytes as they come (a UTF-8 character or an
escape sequence may be split across calls) and returns actions in order:

- ``("text", str)``: printable characters typed, a run of them at once;
- ``("key", name)``: a key the editor acts on (``"enter"``, ``"left"``,
  ``"newline"`` for Alt-Enter, ``"cancel"`` for ^G, ...); ``""`` for a key
  that does nothing but still counts as a key (an unknown sequence or Alt
  combination);
- ``("paste", str)``: text pasted between the terminal's bracketed-paste marks
  (ESC [ 200 ~ ... ESC [ 201 ~), line ends as ``\\n``, a Tab as four spaces,
  other control characters left out, between ``("paste_start",)`` and
  ``("paste_end",)``;
- ``("report", row, col)``: the answer to a cursor position request (ESC [ 6 n).

A lone Escape cannot be told from the start of a sequence without a clock:
when ``waiting_for_escape`` stays true for a moment with no more input, the
owner calls ``escape_timeout()``, which gives ``("key", "escape")``.
"""
from __future__ import annotations

import codecs
import re
from typing import Any

from .graphemes import is_safe

ESC = "\x1b"
PASTE_START, PASTE_END = "200", "201"
PASTE_END_MARK = "\x1b[201~"
PASTE_TAB = "    "

CONTROL_KEYS = {
    "\x01": "home", "\x02": "left", "\x03": "interrupt", "\x04": "eof_or_delete",
    "\x05": "end", "\x06": "right", "\x07": "cancel", "\x08": "backspace", "\x09": "complete",
    "\x0b": "kill_to_end", "\x0c": "clear_screen", "\x0e": "down", "\x10": "up",
    "\x12": "start_search", "\x14": "transpose", "\x15": "kill_to_start",
    "\x17": "kill_word", "\x19": "yank", "\x1a": "suspend", "\x7f": "backspace",
}
# ESC <key>: the Alt-combinations (Alt-Enter is ESC CR).
ALT_KEYS = {"b": "word_left", "f": "word_right", "d": "kill_word_after",
            "\x7f": "kill_word_before", "\x08": "kill_word_before", "\r": "newline", "\n": "newline"}
# ESC [ <final> and ESC O <final>; of the parameters only a Ctrl or Alt modifier counts.
FINAL_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
              "c": "word_right", "d": "word_left"}  # ESC O c/d: Ctrl-Right/Left in rxvt
WORD_KEYS = {"C": "word_right", "D": "word_left"}
WORD_MODIFIERS = {"3", "5"}  # Alt, Ctrl
# ESC [ <number> ~
TILDE_KEYS = {"1": "home", "7": "home", "4": "end", "8": "end", "3": "delete"}
REPORT = re.compile(r"(\d+);(\d+)")
TYPED_RUN = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")   # no C0 or C1 control characters
PASTED_RUN = re.compile(r"[^\x00-\x1f\x7f-\x9f]+|\r\n|[\r\n]|\t")


class KeyReader:
    """Bytes from a terminal in, actions out (see the module's docstring)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape = ""                  # a partial escape sequence
        self._after_cr = False             # so that \r\n is one Enter
        self._pasting = False
        self._actions: list[tuple[Any, ...]] = []

    @property
    def waiting_for_escape(self) -> bool:
        """A lone ESC came last: it is the Escape key if nothing follows soon."""
        return self._escape == ESC and not self._pasting

    @property
    def pasting(self) -> bool:
        """Inside a bracketed paste, its end not seen yet."""
        return self._pasting

    def escape_timeout(self) -> list[tuple[Any, ...]]:
        if self.waiting_for_escape:
            self._escape = ""
            return [("key", "escape")]
        return []

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        text = self._decoder.decode(data)
        at = 0
        while at < len(text):
            if not self._pasting:
                at = self._take(text, at)
                continue
            if self._escape:                    # a part of the end mark came last time
                text, at, self._escape = self._escape + text[at:], 0, ""
            at = self._take_pasted(text, at)
        actions, self._actions = self._actions, []
        return actions

    # -- typed keys ----------------------------------------------------------

    def _take(self, text: str, at: int) -> int:
        """Read from ``text[at]``: a run of typed characters, or one key's character; where to go on."""
        if not self._escape:
            run = TYPED_RUN.match(text, at)
            if run:
                self._after_cr = False
                self._actions.append(("text", "".join(filter(is_safe, run.group()))))
                return run.end()
        self._take_char(text[at])
        return at + 1

    def _take_char(self, char: str) -> None:
        if self._escape:
            self._continue_escape(char)
        elif char == ESC:
            self._escape = ESC
        elif char in "\r\n":
            if not (char == "\n" and self._after_cr):
                self._key("enter")
        elif char in CONTROL_KEYS:
            self._key(CONTROL_KEYS[char])
        elif is_safe(char):
            self._actions.append(("text", char))
        self._after_cr = char == "\r"

    def _key(self, name: str) -> None:
        self._actions.append(("key", name))

    def _continue_escape(self, char: str) -> None:
        if char == ESC:                        # a new sequence (Escape, then a key)
            self._escape = ESC
        elif self._escape == ESC and char in ALT_KEYS:
            self._escape = ""
            self._key(ALT_KEYS[char])
        elif not " " <= char <= "~":           # a control or non-ASCII character ends it
            self._escape = ""
            self._take_char(char)
        elif self._escape == ESC:              # ESC [ or ESC O go on; other Alt + key is ignored
            self._escape = ESC + char if char in "[O" else ""
            if not self._escape:
                self._key("")
        elif self._escape == ESC + "O":
            self._escape = ""
            self._key(FINAL_KEYS.get(char, ""))
        elif char >= "\x40":                   # the final byte of ESC [ ...
            parameters, self._escape = self._escape[2:], ""
            self._csi(parameters, char)
        else:                                  # parameter and intermediate bytes
            self._escape += char

    def _csi(self, parameters: str, final: str) -> None:
        report = REPORT.fullmatch(parameters) if final == "R" else None
        if report:
            self._actions.append(("report", int(report.group(1)), int(report.group(2))))
        elif final == "~" and parameters == PASTE_START:
            self._pasting = True
            self._actions.append(("paste_start",))
        elif final == "~":
            self._key(TILDE_KEYS.get(parameters, ""))
        elif parameters.split(";")[-1] in WORD_MODIFIERS and final in WORD_KEYS:
            self._key(WORD_KEYS[final])
        else:
            self._key(FINAL_KEYS.get(final, "") if final.isupper() else "")

    # -- pasted text -----------------------------------------------------------

    def _take_pasted(self, text: str, at: int) -> int:
        """Read pasted text from ``text[at]`` up to the end mark (keeping back what may be its start)."""
        end = text.find(PASTE_END_MARK, at)
        stop = len(text) if end < 0 else end
        if end < 0:                             # keep back what may begin the end mark
            for keep in range(min(len(PASTE_END_MARK) - 1, stop - at), 0, -1):
                if PASTE_END_MARK.startswith(text[stop - keep:stop]):
                    stop -= keep
                    self._escape = text[stop:]
                    break
        pasted = []
        for run in PASTED_RUN.finditer(text, at, stop):
            piece = run.group()
            if piece in ("\r\n", "\r") or (piece == "\n" and not self._after_cr):
                pasted.append("\n")
            elif piece == "\t":
                pasted.append(PASTE_TAB)
            elif piece != "\n":
                pasted.append("".join(filter(is_safe, piece)))
            self._after_cr = piece == "\r"
        if pasted:
            self._actions.append(("paste", "".join(pasted)))
        if end >= 0:
            self._pasting, self._after_cr = False, False
            self._actions.append(("paste_end",))
            return end + len(PASTE_END_MARK)
        return len(text)
