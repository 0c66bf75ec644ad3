"""A terminal line editor as pure logic: keystroke bytes in, events and screen bytes out.

``feed(data)`` takes whatever a raw-mode terminal sent (read by ``KeyReader``:
UTF-8 characters and escape sequences may be split across calls) and returns
events in order: ``("line", text)`` on Enter, ``("eof",)`` on Ctrl-D at an
empty line, ``("interrupt", was_empty)`` on Ctrl-C (the line is cleared;
``was_empty`` says it held nothing, so the owner can say how to quit) and
``("suspend",)`` on Ctrl-Z (the owner stops the process and calls
``redraw()`` once resumed).  What changed is drawn once per ``feed`` however
many keys came (a paste costs one redraw, not one per character; in the middle
of a bracketed paste, not at all: its end is on its way), and the screen
bytes pile up until ``take_output()``; ``print_above(text)`` writes text
above the half-typed input and returns them.  ``text``, ``cursor`` and
``history`` read the line, the cursor's offset in it and the remembered lines.

A line may hold line breaks (``\\n`` in its text): a bracketed paste keeps
those of the pasted block (the console turns the terminal's bracketed paste
on; trailing ones are left out) and Alt-Enter (ESC CR) inserts one.  Each
line after a break is drawn indented under the first; Up and Down move
between them before they browse the history, Home and End go to the start
and end of the current one.

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
history line does not change history.  A lone Escape counts once the owner
calls ``escape_timeout()`` (see ``waiting_for_escape``).

With a secret prompt nothing typed is shown, there is no history, search or
completion, the submitted line is not remembered and kills do not reach the
kill buffer.  A prompt set with ``remember=False`` (a user name) keeps its
lines out of the history too.  ``limit(text)``, when given, says where the
line passes what can be sent (an offset into it, or None): the excess is shown
in reverse video, so a paste that is too long says so before Enter.

The screen: the prompt and the line wrap over as many rows as the width
(``cols``, changed by ``resize``) needs; with ``rows`` (the screen's height)
an input taller than the screen less two rows shows a window of them around
the cursor, with a row above and below saying how many rows are out of sight.
Control and other invisible characters are shown as ``^X`` or ``<U+XXXX>``,
never sent raw, in the line and in printed text alike.  Widths follow Unicode
where terminals agree (``graphemes.certain``); a cluster they draw each their
own way (an emoji sequence, a flag) is measured the first time it is drawn,
when ``measure`` is on: the editor writes it at the start of the input's row,
asks for the cursor's position (ESC [ 6 n) and reads the answer, which comes
back through ``feed``; until it is known, and for good if the terminal does
not answer before the owner calls ``measurement_timeout()`` (see
``waiting_for_measurement``), the cluster is shown as its parts.  So the
cursor is always where the terminal puts the next character.

A redraw goes up to the first input row, rewrites it all, erases below and
puts the cursor back; input that ends exactly at the right margin gets a
space, the erase and a carriage return so the cursor sits at the start of the
next row on every terminal, whatever its pending-wrap rule (erasing from
column 0 of a row would make tmux unwrap the row above it).

On ``resize(cols)`` the editor must find how far above the cursor the input
now begins: when ``measure`` is on it asks the terminal where the cursor is
and draws once it knows (see ``input_drawing`` for how the answer tells a
terminal that rewraps its rows from one that cuts them); otherwise, or when
the answer does not settle it, it guesses from the rows it drew: when the
terminal narrows it goes up as far as either kind would have it, whichever is
more (nothing stale is left on either; one that cuts may lose rows of output
just above the input); when it widens it assumes the terminal rewraps its
rows, as tmux, VTE and kitty do (on one that does not, the input's old first
rows stay above the redrawn input).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .cell_widths import CellWidths
from .graphemes import NEWLINE, clusters, joins, shown
from .input_drawing import NO_MARK, Drawing
from .input_layout import ERASE_BELOW, Layout
from .keys import KeyReader

HISTORY_LIMIT = 500
KILLS = {"kill_to_start", "kill_to_end", "kill_word", "kill_word_after", "kill_word_before"}
ASK_POSITION = "\x1b[6n"
WORD_SEPARATORS = (" ", NEWLINE)


class LineEditor:
    """An editable input behind a prompt, over as many rows as it needs, with a history."""

    def __init__(self, cols: int = 80, complete: Callable[[str], list[str]] | None = None, *,
                 rows: int | None = None, limit: Callable[[str], int | None] | None = None,
                 measure: bool = False) -> None:
        self._cols = max(cols, 1)
        self._rows = rows
        self._complete_words = complete
        self._limit = limit
        self._prompt = ""
        self._secret = False
        self._remembering = True
        self._chars: list[str] = []        # units, see graphemes.clusters()
        self._cursor = 0
        self._history: list[str] = []
        self._browsing: int | None = None  # index into history while browsing
        self._draft: list[str] = []        # the line being typed before browsing
        self._query: str | None = None     # what a reverse search looks for, while it runs
        self._found: int | None = None     # index into history of the match shown
        self._search_failed = False
        self._before_search: tuple[list[str], int, int | None] = ([], 0, None)
        self._killed: list[str] = []
        self._last_action = ""
        self._held_breaks = 0              # line breaks at the end of the paste so far
        self._keys = KeyReader()
        self._output: list[str] = []
        self._events: list[tuple[Any, ...]] = []
        self._drawing = Drawing()
        self._dirty = False                # the drawing is behind the line, the cursor or the prompt
        self._widths = CellWidths(measure)
        self._questions: list[str | None] = []   # asked of the terminal, in order: a cluster's width,
                                                 # or (None) where the cursor is after a resize

    # -- the interface -----------------------------------------------------

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        for action in self._keys.feed(data):
            self._act(action)
        if not self._keys.pasting:
            self._flush()
        events, self._events = self._events, []
        return events

    def take_output(self) -> bytes:
        """The screen bytes so far, with what changed drawn (except in the middle of a paste), in
        UTF-8; what cannot be encoded (a lone surrogate) shows as ``?``."""
        if not self._keys.pasting:
            self._flush()
        output, self._output = self._output, []
        return "".join(output).encode("utf-8", "replace")

    def set_prompt(self, text: str, secret: bool, remember: bool = True) -> None:
        """Ask with ``text``; ``secret`` hides what is typed; ``remember``: submitted lines
        enter the history (a secret line never does)."""
        self._prompt = text
        self._secret = secret
        self._remembering = remember and not secret
        self._changed(redraw=True)

    def print_above(self, text: str) -> bytes:
        self._print_above(text)
        return self.take_output()

    def resize(self, cols: int, rows: int | None = None) -> None:
        """The terminal is now ``cols`` wide (and ``rows`` high, if given): lay the input out again,
        once the terminal has said where the cursor is (when it answers; see ``input_drawing``)."""
        cols = max(cols, 1)
        self._drawing.resized(cols)
        if self._widths.measuring:                 # where did the rows go? (see input_drawing)
            self._output.append(ASK_POSITION)
            self._questions.append(None)
            self._drawing.waiting = True
        self._cols = cols
        self._rows = rows if rows is not None else self._rows
        self._changed(redraw=True)

    def redraw(self) -> None:
        """Draw the input again from the cursor's row (after ``("suspend",)`` and resuming)."""
        self._changed(redraw=True)

    def erase(self) -> bytes:
        """Bytes that erase the input from the screen, leaving the cursor where it began."""
        self._output.append(self._drawing.to_top() + ERASE_BELOW)
        self._drawing.forget()
        self._dirty = False
        output, self._output = self._output, []
        return "".join(output).encode("utf-8", "replace")

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
        return self._keys.waiting_for_escape

    def escape_timeout(self) -> None:
        for action in self._keys.escape_timeout():
            self._act(action)

    @property
    def waiting_for_measurement(self) -> bool:
        """The terminal has not yet said where the cursor is (after drawing a cluster to measure it,
        or after a resize)."""
        return bool(self._questions)

    def measurement_timeout(self) -> None:
        """The terminal did not answer: show what was to be measured as its parts, guess where the
        rows went after a resize, and ask no more."""
        if self._questions:
            self._questions.clear()
            self._widths.give_up()
            self._drawing.no_position()
            self._changed(redraw=True)

    # -- acting on keys ----------------------------------------------------

    def _act(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "text":
            if self._query is not None:
                self._search_for(action[1])
            elif action[1]:
                self._insert_text(action[1])
                self._last_action = "insert"
        elif kind == "key":
            if self._query is None or not self._search_key(action[1]):
                self._do(action[1])
        elif kind == "paste_start":
            self._do("")
            self._held_breaks = 0
        elif kind == "paste":
            self._paste(action[1])
        elif kind == "paste_end":
            self._held_breaks = 0
            self._last_action = "paste"
        elif kind == "report":
            self._answered(action[1] - 1, action[2] - 1)

    def _do(self, action: str) -> None:
        if action in ("cancel", "escape"):     # mean something to a search only
            return
        if self._query is not None:            # any other key ends a search, keeping the match
            self._end_search()
        if action:
            getattr(self, "_" + action)()
        self._last_action = action

    # -- editing -----------------------------------------------------------

    def _changed(self, redraw: bool = False) -> None:
        """The line, the cursor or the prompt changed; ``redraw``: more than text typed at the end."""
        if redraw or not self._secret:
            self._dirty = True
        if redraw:
            self._drawing.typed_from = None

    def _insert_text(self, text: str) -> None:
        """Insert at the cursor; the unit before it may take in the first characters (a mark)."""
        start = self._cursor - 1 if self._cursor and joins(self._chars[self._cursor - 1], text[0]) else self._cursor
        units = clusters("".join(self._chars[start:self._cursor]) + text)
        at_end = self._cursor == len(self._chars) and start == self._cursor
        self._chars[start:self._cursor] = units
        self._cursor = start + len(units)
        self._changed(redraw=not at_end)

    def _paste(self, text: str) -> None:
        """Pasted text at the cursor; line breaks at its end wait to see if more text follows."""
        body = text.rstrip(NEWLINE)
        if body:
            self._insert_text(NEWLINE * self._held_breaks + body)
            self._held_breaks = 0
        self._held_breaks += len(text) - len(body)

    def _newline(self) -> None:
        if not self._secret:
            self._insert_text(NEWLINE)

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
        self._changed(redraw=True)

    def _edit(self, chars: list[str], cursor: int) -> None:
        self._chars, self._cursor = chars, cursor
        self._changed(redraw=True)

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

    def _line_start(self, at: int) -> int:
        """Where the line (between line breaks) that holds offset ``at`` starts."""
        while at > 0 and self._chars[at - 1] != NEWLINE:
            at -= 1
        return at

    def _line_end(self, at: int) -> int:
        while at < len(self._chars) and self._chars[at] != NEWLINE:
            at += 1
        return at

    def _home(self) -> None:
        self._edit(self._chars, self._line_start(self._cursor))

    def _end(self) -> None:
        self._edit(self._chars, self._line_end(self._cursor))

    def _word_start(self) -> int:
        start = self._cursor
        while start > 0 and not self._chars[start - 1][0].isalnum():
            start -= 1
        while start > 0 and self._chars[start - 1][0].isalnum():
            start -= 1
        return start

    def _word_end(self) -> int:
        end = self._cursor
        while end < len(self._chars) and not self._chars[end][0].isalnum():
            end += 1
        while end < len(self._chars) and self._chars[end][0].isalnum():
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
        while start > 0 and self._chars[start - 1] in WORD_SEPARATORS:
            start -= 1
        while start > 0 and self._chars[start - 1] not in WORD_SEPARATORS:
            start -= 1
        self._kill(start, self._cursor)

    def _kill_word_before(self) -> None:
        self._kill(self._word_start(), self._cursor)

    def _kill_word_after(self) -> None:
        self._kill(self._cursor, self._word_end())

    def _yank(self) -> None:
        self._edit(self._chars[:self._cursor] + self._killed + self._chars[self._cursor:],
                   self._cursor + len(self._killed))

    # -- completion --------------------------------------------------------

    def _complete(self) -> None:
        if self._secret or self._complete_words is None:
            return
        start = self._cursor
        while start > 0 and self._chars[start - 1] not in WORD_SEPARATORS:
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
        start = self._line_start(self._cursor)
        if start > 0:                          # to the line above, as far along as it goes
            above = self._line_start(start - 1)
            self._edit(self._chars, min(above + self._cursor - start, start - 1))
            return
        if self._secret or self._browsing == 0 or not self._history:
            return
        if self._browsing is None:
            self._draft, self._browsing = self._chars, len(self._history)
        self._browsing -= 1
        self._recall(clusters(self._history[self._browsing]))

    def _down(self) -> None:
        end = self._line_end(self._cursor)
        if end < len(self._chars):             # to the line below
            column = self._cursor - self._line_start(self._cursor)
            self._edit(self._chars, min(end + 1 + column, self._line_end(end + 1)))
            return
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
        self._changed(redraw=True)

    def _search_key(self, key: str) -> bool:
        """Handle a key that means something to the search; False for the others."""
        if key in ("cancel", "escape"):
            self._cancel_search()
        elif key == "interrupt":
            self._cancel_search()
            self._do("interrupt")
        elif key == "start_search":
            self._search_from((self._found if self._found is not None else len(self._history)) - 1)
        elif key == "backspace":
            self._query = self._query[:-1] if self._query else ""
            self._search_failed = False
            self._search_from(len(self._history) - 1)
        else:
            return False
        return True

    def _search_for(self, text: str) -> None:
        for char in text:                      # one at a time: a failed search keeps the last match
            self._query = (self._query or "") + char
            self._search_from(len(self._history) - 1 if self._found is None else self._found)

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
        self._changed(redraw=True)

    def _end_search(self) -> None:
        self._query = None
        if self._found is not None:
            self._draft, self._browsing = self._before_search[0], self._found
        self._changed(redraw=True)

    def _cancel_search(self) -> None:
        self._query = None
        self._chars, self._cursor, self._browsing = self._before_search
        self._changed(redraw=True)

    # -- the terminal's answers ---------------------------------------------

    def _answered(self, row: int, col: int) -> None:
        """The terminal says the cursor is at (row, col), 0-based: the answer to the oldest question."""
        if not self._questions:
            return                             # not ours (Shift-F3 reads the same), or too late
        cluster = self._questions.pop(0)
        if cluster is None:
            if None not in self._questions:    # (only the answer after the last resize counts)
                self._drawing.positioned(row, col)
        else:
            self._widths.measured(cluster, col)
        self._changed(redraw=True)

    # -- the screen --------------------------------------------------------

    def _shown_prompt(self) -> str:
        if self._query is None:
            return self._prompt
        failed = "failed " if self._search_failed else ""
        return f"({failed}reverse-i-search)'{self._query}': "

    def _shown_chars(self) -> list[str]:
        return [] if self._secret else self._chars

    def _layout(self) -> tuple[Layout, int, int]:
        """The layout of prompt and line, the piece the cursor is on, and the first piece past the limit."""
        prompt = clusters(shown(self._shown_prompt()))
        units = self._shown_chars()
        cells = [self._widths.cell(unit) for unit in prompt + units]
        layout = Layout([cell[0] for cell in cells], [cell[1] for cell in cells], self._cols)
        cursor = len(prompt) + (0 if self._secret else self._cursor)
        past = self._past_limit(units)
        return layout, cursor, past if past == NO_MARK else len(prompt) + past

    def _past_limit(self, units: list[str]) -> int:
        """The first unit past the limit (``NO_MARK`` when none is)."""
        offset = self._limit("".join(units)) if self._limit is not None and units else None
        if offset is not None:
            length = 0
            for index, unit in enumerate(units):
                length += len(unit)
                if length > offset:
                    return index
        return NO_MARK

    def _height(self) -> int:
        """Rows the input may take on screen."""
        return max(self._rows - 2, 3) if self._rows else 1 << 30

    def _flush(self) -> None:
        """Draw what changed since the last drawing: the characters typed at the end, or all (not while
        the terminal is still to say where the cursor went after a resize)."""
        if not self._dirty or self._drawing.waiting:
            return
        self._dirty = False
        layout, cursor, mark = self._layout()
        questions = self._ask_widths()
        echoed = None if questions else self._drawing.echo(layout, cursor, mark, len(self._chars))
        self._output.append(echoed if echoed is not None else self._draw(layout, cursor, mark, questions))

    def _draw(self, layout: Layout, cursor: int, mark: int, questions: list[str], whole: bool = False) -> str:
        """The drawing, after the questions about clusters not measured yet (each drawn at the start
        of the input's first row, where the drawing then writes over it)."""
        asked = "".join(cluster + ASK_POSITION + "\r" for cluster in questions)
        typed = len(self._chars) if cursor == len(layout.widths) and not self._secret else None
        return self._drawing.draw(layout, cursor, mark, self._height(), typed, whole, before=asked)

    def _ask_widths(self) -> list[str]:
        """Clusters in the line to measure, now asked about."""
        questions = self._widths.to_measure(self._shown_chars(), self._cols)
        self._questions += questions
        return questions

    def _leave_input(self, mark: str) -> None:
        """Put ``mark`` after the input, all of it, and start a fresh row below it, leaving the
        input on screen."""
        self._flush()
        layout, cursor, past = self._layout()
        if not self._drawing.shows_all:
            self._output.append(self._draw(layout, cursor, past, self._ask_widths(), whole=True))
        self._output.append(self._drawing.leave(layout, mark))

    def _print_above(self, text: str) -> None:
        if not self._keys.pasting:
            self._flush()
        self._output.append(self._drawing.to_top() + ERASE_BELOW)
        self._output.extend(shown(line) + "\r\n" for line in text.split("\n"))
        self._drawing.forget()
        self._changed(redraw=True)

    def _clear_screen(self) -> None:
        self._output.append("\x1b[H\x1b[2J")
        self._drawing.forget()
        self._changed(redraw=True)
