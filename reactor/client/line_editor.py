"""A terminal line editor as pure logic: keystroke bytes in, events and screen bytes out.

``feed(data)`` takes whatever a raw-mode terminal sent (UTF-8 characters and
escape sequences may be split across calls) and returns events in order:
``("line", text)`` on Enter, ``("eof",)`` on Ctrl-D at an empty line,
``("interrupt", was_empty)`` on Ctrl-C (the line is cleared; ``was_empty``
says it held nothing, so the owner can say how to quit) and ``("suspend",)``
on Ctrl-Z (the owner stops the process and calls ``redraw()`` once resumed).
The echo and redraw bytes pile up until ``take_output()``;
``print_above(text)`` writes text above the half-typed input and returns them.
``text``, ``cursor`` and ``history`` read the line, the cursor's offset in it
and the remembered lines.

Keys: printable characters insert at the cursor; Backspace (DEL or ^H) and
Delete (ESC [ 3 ~, or ^D on a non-empty line) remove a character; Left/Right
and ^B/^F move; Home/End (several encodings) and ^A/^E jump; Alt-b/Alt-f and
Ctrl-Left/Ctrl-Right move by words (runs of letters and digits); ^T swaps
the two characters at the cursor; ^U kills to the start, ^K to the end, ^W
the blank-separated word before the cursor, Alt-d the word after it and
Alt-Backspace the word before it; kills in a row add up, and ^Y yanks the
last kill back.  Up/Down and ^P/^N browse the history (Down past the newest
entry brings back the draft); ^R searches it backwards as one types (^R again
finds older matches, Enter submits the match, ^G or Escape gives the search
up, any other key keeps the match for editing).  Tab asks the ``complete``
callable for the words that can replace the one before the cursor: one is
filled in, several are filled in as far as they agree and a second Tab lists
them.  ^L clears the screen and redraws.  Other Alt-combinations, unknown
escape sequences and other control bytes are ignored.  Editing a recalled
history line does not change history.

A lone Escape cannot be told from the start of a sequence without a clock:
when ``waiting_for_escape`` stays true for a moment with no more input, the
owner calls ``escape_timeout()`` and it counts as the Escape key.

With a secret prompt nothing typed is shown, there is no history, search or
completion, the submitted line is not remembered and kills do not reach the
kill buffer.  A prompt set with ``remember=False`` (a user name) keeps its
lines out of the history too.

The screen: the prompt and the line wrap over as many rows as the width
(``cols``, changed by ``resize``) needs.  Widths follow Unicode: East Asian
wide and fullwidth characters take two columns, combining marks and joiners
none (they stay with the character before them, so the cursor moves over
whole characters).  Control and other invisible characters are shown as
``^X`` or ``<U+XXXX>``, never sent raw, in the line and in printed text alike.
A redraw goes up to the first input row, rewrites it all, erases below and
puts the cursor back; input that ends exactly at the right margin gets a
space, the erase and a carriage return so the cursor sits at the start of the
next row on every terminal, whatever its pending-wrap rule (erasing from
column 0 of a row would make tmux unwrap the row above it).

On ``resize(cols)`` the editor must guess how far above the cursor the input
now begins: when the terminal narrows it goes up as far as the old or the new
layout says, whichever is more (nothing stale is left on any terminal; one
that does not rewrap may lose rows of output just above the input); when it
widens it assumes the terminal rewraps its rows, as tmux, VTE and kitty do
(exact there; one that does not rewrap keeps the input's old first rows above
the redrawn input).
"""
from __future__ import annotations

import codecs
import os
import unicodedata
from collections.abc import Callable
from typing import Any

ESC = "\x1b"
HISTORY_LIMIT = 500
JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner

CONTROL_KEYS = {
    "\x01": "home", "\x02": "left", "\x03": "interrupt", "\x04": "eof_or_delete",
    "\x05": "end", "\x06": "right", "\x08": "backspace", "\x09": "complete",
    "\x0b": "kill_to_end", "\x0c": "clear_screen", "\x0e": "down", "\x10": "up",
    "\x12": "start_search", "\x14": "transpose", "\x15": "kill_to_start",
    "\x17": "kill_word", "\x19": "yank", "\x1a": "suspend", "\x7f": "backspace",
}
# ESC <key>: the Alt-combinations.
ALT_KEYS = {"b": "word_left", "f": "word_right", "d": "kill_word_after",
            "\x7f": "kill_word_before", "\x08": "kill_word_before"}
# ESC [ <final> and ESC O <final>; of the parameters only a Ctrl or Alt modifier counts.
FINAL_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
              "c": "word_right", "d": "word_left"}  # ESC O c/d: Ctrl-Right/Left in rxvt
WORD_KEYS = {"C": "word_right", "D": "word_left"}
WORD_MODIFIERS = {"3", "5"}  # Alt, Ctrl
# ESC [ <number> ~
TILDE_KEYS = {"1": "home", "7": "home", "4": "end", "8": "end", "3": "delete"}
KILLS = {"kill_to_start", "kill_to_end", "kill_word", "kill_word_after", "kill_word_before"}


def char_width(char: str) -> int:
    """Columns a terminal gives a character: 2 wide, 0 combining or joining, else 1."""
    if unicodedata.combining(char) or char in JOINERS or unicodedata.category(char) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _safe(char: str) -> bool:
    return char.isprintable() or char in JOINERS or unicodedata.category(char) == "Zs"


def shown(text: str) -> str:
    """The text with control and invisible characters made visible and harmless."""
    out = []
    for char in text:
        if char < " " or char == "\x7f":
            out.append("^" + chr(ord(char) ^ 0x40))
        elif _safe(char):
            out.append(char)
        else:
            out.append(f"<U+{ord(char):04X}>")
    return "".join(out)


def clusters(text: str) -> list[str]:
    """The text as the units the cursor moves over: a character with its combining marks and joins."""
    units: list[str] = []
    for char in text:
        if units and (char_width(char) == 0 or units[-1][-1] in JOINERS):
            units[-1] += char
        else:
            units.append(char)
    return units


def _is_word(unit: str) -> bool:
    return unit[0].isalnum()


class _Layout:
    """Where prompt + line land on a screen ``cols`` wide, rows counted from the first input row."""

    def __init__(self, prompt: str, units: list[str], cols: int) -> None:
        parts = [shown(prompt)]
        starts = [len(parts[0])]                  # offset in the text of each cursor position
        for unit in units:
            part = shown(unit)
            parts.append(" " + part if char_width(part[0]) == 0 else part)  # a mark needs a base
            starts.append(starts[-1] + len(parts[-1]))
        row = col = 0
        places = []
        out = []
        for char in "".join(parts):
            width = char_width(char)
            if width and col + width > cols and col > 0:   # wraps before it, as terminals do,
                out.append(" " * (cols - col))             # over a gap written blank: nothing stale shows
                row, col = row + 1, 0
            places.append((row, col))
            out.append(char)
            col += width
        self.text = "".join(out)
        # Text that fills the last column leaves the terminal's cursor there with a pending
        # wrap; the redraw writes a space and a carriage return to take it to the next row.
        self.at_margin = col >= cols and bool(self.text)
        self.end = (row + 1, 0) if self.at_margin else (row, col)
        places.append(self.end)
        self.cursor_places = [places[start] for start in starts]


class LineEditor:
    """An editable input behind a prompt, over as many rows as it needs, with a history."""

    def __init__(self, cols: int = 80, complete: Callable[[str], list[str]] | None = None) -> None:
        self._cols = max(cols, 1)
        self._complete_words = complete
        self._prompt = ""
        self._secret = False
        self._remembering = True
        self._chars: list[str] = []        # units, see clusters()
        self._cursor = 0
        self._cursor_row = 0               # the terminal cursor's row, counted from the first input row
        self._history: list[str] = []
        self._browsing: int | None = None  # index into history while browsing
        self._draft: list[str] = []        # the line being typed before browsing
        self._query: str | None = None     # what a reverse search looks for, while it runs
        self._found: int | None = None     # index into history of the match shown
        self._search_failed = False
        self._before_search: tuple[list[str], int, int | None] = ([], 0, None)
        self._killed: list[str] = []
        self._last_action = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape = ""                  # a partial escape sequence
        self._after_cr = False             # so that \r\n submits only once
        self._output: list[str] = []
        self._events: list[tuple[Any, ...]] = []

    # -- the interface -----------------------------------------------------

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        for char in self._decoder.decode(data):
            self._take_char(char)
        events, self._events = self._events, []
        return events

    def take_output(self) -> bytes:
        """The screen bytes so far, in UTF-8; what cannot be encoded (a lone surrogate) shows as ``?``."""
        output, self._output = self._output, []
        return "".join(output).encode("utf-8", "replace")

    def set_prompt(self, text: str, secret: bool, remember: bool = True) -> None:
        """Ask with ``text``; ``secret`` hides what is typed; ``remember``: submitted lines
        enter the history (a secret line never does)."""
        self._prompt = text
        self._secret = secret
        self._remembering = remember and not secret
        self._redraw()

    def print_above(self, text: str) -> bytes:
        self._print_above(text)
        return self.take_output()

    def resize(self, cols: int) -> None:
        """The terminal is now ``cols`` wide: lay the input out again.

        Some terminals rewrap the rows on screen to the new width (tmux, VTE,
        kitty, iTerm2), others cut or keep them as they are (xterm, the Linux
        console), and the editor cannot tell which it is on.  When the terminal
        narrows, the input's first row is as far above the cursor as under the
        old layout or under the new one: the redraw goes up by the larger, so
        no stale rows survive (when the guess is too high, as many rows of
        output just above the input are erased).  When it widens, the editor
        assumes the terminal rewraps and goes up as the new layout says: exact
        there, while a terminal that keeps its rows is left with the input's
        old first rows above the redrawn input.
        """
        cols = max(cols, 1)
        rewrapped_row = self._cursor_place(_Layout(self._shown_prompt(), self._shown_chars(), cols))[0]
        narrowing = cols < self._cols
        self._cols = cols
        self._cursor_row = max(self._cursor_row, rewrapped_row) if narrowing else rewrapped_row
        self._redraw()

    def redraw(self) -> None:
        """Draw the input again from the cursor's row (after ``("suspend",)`` and resuming)."""
        self._redraw()

    def erase(self) -> bytes:
        """Bytes that erase the input from the screen, leaving the cursor where it began."""
        self._output.append(self._to_top() + "\x1b[J")
        self._cursor_row = 0
        return self.take_output()

    @property
    def text(self) -> str:
        """The line being edited."""
        return "".join(self._chars)

    @property
    def cursor(self) -> int:
        """Where the cursor is, as an offset into ``text`` (never inside a character and its marks)."""
        return sum(map(len, self._chars[:self._cursor]))

    @property
    def history(self) -> tuple[str, ...]:
        """The remembered lines, oldest first, at most ``HISTORY_LIMIT`` of them."""
        return tuple(self._history)

    @property
    def waiting_for_escape(self) -> bool:
        """A lone ESC came last: it is the Escape key if nothing follows soon."""
        return self._escape == ESC

    def escape_timeout(self) -> None:
        if self._escape == ESC:
            self._escape = ""
            if self._query is not None:
                self._cancel_search()

    # -- decoding keys -----------------------------------------------------

    def _take_char(self, char: str) -> None:
        if self._escape:
            self._continue_escape(char)
        elif self._query is not None and self._take_search_key(char):
            pass
        elif char == ESC:
            self._escape = ESC
        elif char in "\r\n":
            if not (char == "\n" and self._after_cr):
                self._do("enter")
        elif char in CONTROL_KEYS:
            self._do(CONTROL_KEYS[char])
        elif _safe(char):
            self._insert(char)
            self._last_action = "insert"
        self._after_cr = char == "\r"

    def _continue_escape(self, char: str) -> None:
        if char == ESC:                        # a new sequence (Escape, then a key)
            self._escape = ESC
        elif self._escape == ESC and char in ALT_KEYS:
            self._escape = ""
            self._do(ALT_KEYS[char])
        elif not " " <= char <= "~":           # a control or non-ASCII character ends it
            self._escape = ""
            self._take_char(char)
        elif self._escape == ESC:              # ESC [ or ESC O go on; other Alt + key is ignored
            self._escape = ESC + char if char in "[O" else ""
            if not self._escape:
                self._do("")
        elif self._escape == ESC + "O":
            self._escape = ""
            self._do(FINAL_KEYS.get(char, ""))
        elif char >= "\x40":                   # the final byte of ESC [ ...
            parameters, self._escape = self._escape[2:], ""
            if char == "~":
                self._do(TILDE_KEYS.get(parameters, ""))
            elif parameters.split(";")[-1] in WORD_MODIFIERS and char in WORD_KEYS:
                self._do(WORD_KEYS[char])
            else:
                self._do(FINAL_KEYS.get(char, "") if char.isupper() else "")
        else:                                  # parameter and intermediate bytes
            self._escape += char

    def _do(self, action: str) -> None:
        if self._query is not None:            # any other key ends a search, keeping the match
            self._end_search()
        if action:
            getattr(self, "_" + action)()
        self._last_action = action

    # -- editing -----------------------------------------------------------

    def _insert(self, char: str) -> None:
        if self._cursor and (char_width(char) == 0 or self._chars[self._cursor - 1][-1] in JOINERS):
            self._chars[self._cursor - 1] += char
            self._redraw()
            return
        self._chars.insert(self._cursor, char)
        self._cursor += 1
        if self._secret:
            return
        layout = self._layout()
        if self._cursor == len(self._chars) and char_width(char) and not layout.at_margin:
            self._output.append(shown(char))   # typing at the end: just echo it
            self._cursor_row = layout.end[0]
        else:
            self._redraw(layout)

    def _insert_units(self, units: list[str]) -> None:
        self._edit(self._chars[:self._cursor] + units + self._chars[self._cursor:], self._cursor + len(units))

    def _enter(self) -> None:
        text = "".join(self._chars)
        if self._remembering:
            self._remember(text)
        self._events.append(("line", text))
        self._leave_input("")
        self._start_fresh_line()

    def _interrupt(self) -> None:
        self._events.append(("interrupt", not self._chars))
        self._leave_input("^C")
        self._start_fresh_line()

    def _suspend(self) -> None:
        self._events.append(("suspend",))
        self._leave_input("^Z")

    def _eof_or_delete(self) -> None:
        if self._chars:
            self._delete()
        else:
            self._events.append(("eof",))

    def _start_fresh_line(self) -> None:
        self._chars, self._cursor, self._browsing = [], 0, None
        self._redraw()

    def _edit(self, chars: list[str], cursor: int) -> None:
        self._chars, self._cursor = chars, cursor
        self._redraw()

    def _backspace(self) -> None:
        if self._cursor > 0:
            self._edit(self._chars[:self._cursor - 1] + self._chars[self._cursor:], self._cursor - 1)

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

    def _word_start(self) -> int:
        start = self._cursor
        while start > 0 and not _is_word(self._chars[start - 1]):
            start -= 1
        while start > 0 and _is_word(self._chars[start - 1]):
            start -= 1
        return start

    def _word_end(self) -> int:
        end = self._cursor
        while end < len(self._chars) and not _is_word(self._chars[end]):
            end += 1
        while end < len(self._chars) and _is_word(self._chars[end]):
            end += 1
        return end

    def _word_left(self) -> None:
        self._edit(self._chars, self._word_start())

    def _word_right(self) -> None:
        self._edit(self._chars, self._word_end())

    def _transpose(self) -> None:
        here = min(self._cursor, len(self._chars) - 1)   # at the end: the last two
        if here > 0:
            chars = list(self._chars)
            chars[here - 1], chars[here] = chars[here], chars[here - 1]
            self._edit(chars, here + 1)

    # -- killing and yanking -------------------------------------------------

    def _kill(self, start: int, end: int) -> None:
        """Cut the units from start to end (one of them is the cursor) into the kill buffer."""
        cut = self._chars[start:end]
        if not self._secret:
            if self._last_action not in KILLS:
                self._killed = []
            self._killed = cut + self._killed if start < self._cursor else self._killed + cut
        self._edit(self._chars[:start] + self._chars[end:], start)

    def _kill_to_start(self) -> None:
        self._kill(0, self._cursor)

    def _kill_to_end(self) -> None:
        self._kill(self._cursor, len(self._chars))

    def _kill_word(self) -> None:
        start = self._cursor
        while start > 0 and self._chars[start - 1] == " ":
            start -= 1
        while start > 0 and self._chars[start - 1] != " ":
            start -= 1
        self._kill(start, self._cursor)

    def _kill_word_before(self) -> None:
        self._kill(self._word_start(), self._cursor)

    def _kill_word_after(self) -> None:
        self._kill(self._cursor, self._word_end())

    def _yank(self) -> None:
        self._insert_units(self._killed)

    # -- completion --------------------------------------------------------

    def _complete(self) -> None:
        if self._secret or self._complete_words is None:
            return
        start = self._cursor
        while start > 0 and self._chars[start - 1] != " ":
            start -= 1
        word = "".join(self._chars[start:self._cursor])
        candidates = sorted(set(self._complete_words("".join(self._chars[:self._cursor]))))
        if len(candidates) == 1:
            self._replace_word(start, candidates[0] + " ")
        elif candidates:
            common = os.path.commonprefix(candidates)
            if len(common) > len(word):
                self._replace_word(start, common)
            elif self._last_action == "complete":
                self._print_above("  ".join(candidates))

    def _replace_word(self, start: int, text: str) -> None:
        units = clusters(text)
        self._edit(self._chars[:start] + units + self._chars[self._cursor:], start + len(units))

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
        self._recall(clusters(self._history[self._browsing]))

    def _down(self) -> None:
        if self._secret or self._browsing is None:
            return
        self._browsing += 1
        if self._browsing == len(self._history):
            self._browsing = None
            self._recall(self._draft)
        else:
            self._recall(clusters(self._history[self._browsing]))

    def _recall(self, chars: list[str]) -> None:
        self._edit(chars, len(chars))

    # -- reverse search ----------------------------------------------------

    def _start_search(self) -> None:
        if self._secret:
            return
        self._before_search = (self._chars, self._cursor, self._browsing)
        self._query, self._found, self._search_failed = "", None, False
        self._redraw()

    def _take_search_key(self, char: str) -> bool:
        """Handle a key that means something to the search; False for the others."""
        if char in "\r\n":
            return False                       # _do ends the search, then Enter submits
        if char == "\x07":                     # ^G
            self._cancel_search()
        elif char == "\x03":
            self._cancel_search()
            self._do("interrupt")
        elif char == "\x12":
            self._search_from((self._found if self._found is not None else len(self._history)) - 1)
        elif char in "\x7f\x08":
            self._query = self._query[:-1] if self._query else ""
            self._search_failed = False
            self._search_from(len(self._history) - 1)
        elif _safe(char):
            self._query = (self._query or "") + char
            self._search_from(len(self._history) - 1 if self._found is None else self._found)
        else:
            return False
        return True

    def _search_from(self, index: int) -> None:
        if not self._query:
            self._found = None
            self._edit(*self._before_search[:2])
            return
        for found in range(index, -1, -1):
            offset = self._history[found].find(self._query)
            if offset >= 0:
                self._found, self._search_failed = found, False
                self._edit(clusters(self._history[found]), len(clusters(self._history[found][:offset])))
                return
        self._search_failed = True
        self._redraw()

    def _end_search(self) -> None:
        self._query = None
        if self._found is not None:
            self._draft, self._browsing = self._before_search[0], self._found
        self._redraw()

    def _cancel_search(self) -> None:
        self._query = None
        self._chars, self._cursor, self._browsing = self._before_search
        self._redraw()

    # -- the screen --------------------------------------------------------

    def _shown_prompt(self) -> str:
        if self._query is None:
            return self._prompt
        failed = "failed " if self._search_failed else ""
        return f"({failed}reverse-i-search)'{self._query}': "

    def _shown_chars(self) -> list[str]:
        return [] if self._secret else self._chars

    def _layout(self) -> _Layout:
        return _Layout(self._shown_prompt(), self._shown_chars(), self._cols)

    def _cursor_place(self, layout: _Layout) -> tuple[int, int]:
        return layout.cursor_places[0 if self._secret else self._cursor]

    def _to_top(self) -> str:
        return (f"\x1b[{self._cursor_row}A" if self._cursor_row else "") + "\r"

    def _redraw(self, layout: _Layout | None = None) -> None:
        layout = layout or self._layout()
        # At the margin: a space takes the cursor to the next row; erasing from column 0 there
        # would make tmux forget that the row above wraps into it, so the erase comes first.
        end = " \x1b[J\r" if layout.at_margin else "\x1b[J"
        self._output.append(self._to_top() + layout.text + end)
        self._output.append(_move(layout.end, self._cursor_place(layout)))
        self._cursor_row = self._cursor_place(layout)[0]

    def _leave_input(self, mark: str) -> None:
        """Put ``mark`` after the input and start a fresh row below it, leaving the input on screen."""
        layout = self._layout()
        self._output.append(_move(self._cursor_place(layout), layout.end))
        if mark or not layout.at_margin:       # at the margin the cursor is on a fresh row already
            self._output.append(mark + "\r\n")
        self._cursor_row = 0

    def _clear_screen(self) -> None:
        self._output.append("\x1b[H\x1b[2J")
        self._cursor_row = 0
        self._redraw()

    def _print_above(self, text: str) -> None:
        self._output.append(self._to_top() + "\x1b[J")
        self._output.extend(shown(line) + "\r\n" for line in text.split("\n"))
        self._cursor_row = 0
        self._redraw()


def _move(origin: tuple[int, int], target: tuple[int, int]) -> str:
    """Cursor motions from one (row, col) to another; neither is in a pending wrap."""
    (row, col), (to_row, to_col) = origin, target
    vertical = f"\x1b[{row - to_row}A" if to_row < row else f"\x1b[{to_row - row}B" if to_row > row else ""
    horizontal = f"\x1b[{col - to_col}D" if to_col < col else f"\x1b[{to_col - col}C" if to_col > col else ""
    return vertical + horizontal
