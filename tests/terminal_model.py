"""A small model of an xterm-like screen, for testing what the line editor draws.

It interprets the bytes the editor emits: printable text (wide characters take
two cells, combining marks join the cell before), CR, LF, CUU/CUD/CUF/CUB
(ESC [ n A/B/C/D), CHA (ESC [ n G), CUP (ESC [ H), ED (ESC [ J, ESC [ 2 J),
EL (ESC [ K), reverse video on and off (ESC [ 7 m, ESC [ 27 m, ESC [ m: the
cells written in it are ``marked``), bracketed paste on and off
(ESC [ ? 2004 h/l, kept in ``bracketed_paste``) and the cursor position
request (ESC [ 6 n: the answer a terminal would send piles up in
``answers``).  Anything else fails the test, so the editor cannot start using
a sequence the model does not know.

Characters after a zero-width joiner are drawn as the model is told: with
``emoji_sequences=False`` each takes its own cells, as most terminals do
(👨‍👩‍👧 takes 6 columns); with ``emoji_sequences=True`` they join the cell
before, as tmux 3.3a does (👨‍👩‍👧 takes 2).

Autowrap follows real terminals (DEC's "pending wrap"): a character written in
the last column leaves the cursor ON that column with a wrap pending; only the
next printable character wraps, while CR, LF, cursor motions and erasures act
from the last column and cancel the wrap.  A wide character that does not fit
in the columns left wraps before it is written.

``resize`` models both kinds of terminals: ``reflow=False`` cuts rows to the
new width and keeps the cursor's row (xterm); ``reflow=True`` joins rows that
were wrapped by autowrap and wraps them again at the new width, the cursor
staying on the character it was on (tmux, VTE, kitty).  Erasing to the end
of the screen from column 0 unmarks the row above as wrapped, as tmux does.
"""
from __future__ import annotations

import re
import unicodedata

TAIL = ""          # the right half of a wide character
BLANK = " "
CSI = re.compile(r"\x1b\[(\??[0-9;]*)([A-Za-z])")
ZWJ = "\u200d"


def width(char: str) -> int:
    if unicodedata.combining(char) or char in "\u200c\u200d" or unicodedata.category(char) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


class Screen:
    def __init__(self, cols: int, rows: int = 30, emoji_sequences: bool = False) -> None:
        self.cols, self.rows = cols, rows
        self.emoji_sequences = emoji_sequences
        self.grid = [[BLANK] * cols for _ in range(rows)]
        self.marks = [[False] * cols for _ in range(rows)]   # written in reverse video
        self.wrapped = [False] * rows     # the row continues on the next one by autowrap
        self.scrolled_off: list[str] = []
        self.x = self.y = 0
        self.pending_wrap = False
        self.reverse = False
        self.bracketed_paste = False
        self.answers: list[bytes] = []

    # -- reading -------------------------------------------------------------

    def line(self, y: int) -> str:
        return "".join(self.grid[y]).rstrip()

    def lines(self) -> list[str]:
        """The screen's rows as text, without the blank rows at the bottom."""
        lines = [self.line(y) for y in range(self.rows)]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def marked(self, y: int) -> str:
        """The row's text written in reverse video (the other cells as blanks), stripped."""
        return "".join(cell if mark else BLANK for cell, mark in zip(self.grid[y], self.marks[y], strict=True)).strip()

    def take_answers(self) -> bytes:
        answers, self.answers = self.answers, []
        return b"".join(answers)

    @property
    def cursor(self) -> tuple[int, int]:
        """(row, column) of the cursor."""
        return self.y, self.x

    # -- writing -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        text = data.decode("utf-8")
        i = 0
        while i < len(text):
            match = CSI.match(text, i)
            if match:
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            char = text[i]
            assert char != "\x1b", f"an escape sequence the model does not know: {text[i:i + 8]!r}"
            if char == "\r":
                self.x, self.pending_wrap = 0, False
            elif char == "\n":
                self._line_feed()
            else:
                assert char >= " " and char != "\x7f", f"a raw control character: {char!r}"
                self._print(char)
            i += 1

    def _print(self, char: str) -> None:
        w = width(char)
        if self.emoji_sequences and self._after_joiner():
            w = 0
        if w == 0:                              # joins the cell before the cursor
            x = self.x if self.pending_wrap else self.x - 1
            if x >= 0:
                if self.grid[self.y][x] == TAIL:
                    x -= 1
                self.grid[self.y][x] += char
            return
        if self.pending_wrap or self.x + w > self.cols:
            self.wrapped[self.y] = True
            self.x = 0
            self._line_feed()
        self._clear_cell(self.x)
        if w == 2:
            self._clear_cell(self.x + 1)
            self.grid[self.y][self.x + 1] = TAIL
            self.marks[self.y][self.x + 1] = self.reverse
        self.grid[self.y][self.x] = char
        self.marks[self.y][self.x] = self.reverse
        if self.x + w >= self.cols:
            self.x, self.pending_wrap = self.cols - 1, True
        else:
            self.x += w

    def _after_joiner(self) -> bool:
        x = self.x if self.pending_wrap else self.x - 1
        if x >= 0 and self.grid[self.y][x] == TAIL:
            x -= 1
        return x >= 0 and self.grid[self.y][x].endswith(ZWJ)

    def _clear_cell(self, x: int) -> None:
        """Blank a cell, and the other half of a wide character it belongs to."""
        row = self.grid[self.y]
        if row[x] == TAIL:
            row[x - 1] = BLANK
        elif x + 1 < self.cols and row[x + 1] == TAIL:
            row[x + 1] = BLANK
        row[x] = BLANK
        self.marks[self.y][x] = False

    def _line_feed(self) -> None:
        self.pending_wrap = False
        if self.y < self.rows - 1:
            self.y += 1
            return
        self.scrolled_off.append("".join(self.grid.pop(0)).rstrip())
        self.grid.append([BLANK] * self.cols)
        self.marks = self.marks[1:] + [[False] * self.cols]
        self.wrapped = self.wrapped[1:] + [False]

    def _csi(self, parameters: str, final: str) -> None:
        if parameters.startswith("?"):
            assert parameters == "?2004" and final in "hl", f"a private mode the model does not know: {parameters}"
            self.bracketed_paste = final == "h"
            return
        numbers = [int(p) if p else 0 for p in parameters.split(";")] if parameters else []
        if final == "m":                         # (does not touch the cursor or a pending wrap)
            assert numbers in ([], [0], [7], [27]), f"an attribute the model does not know: {numbers}"
            self.reverse = numbers == [7]
            return
        if final == "n":
            assert numbers == [6], f"a report the model does not know: {numbers}"
            self.answers.append(b"\x1b[%d;%dR" % (self.y + 1, self.x + 1))
            return
        n = max(numbers[0], 1) if numbers else 1
        self.pending_wrap = False
        if final == "A":
            self.y = max(self.y - n, 0)
        elif final == "B":
            self.y = min(self.y + n, self.rows - 1)
        elif final == "C":
            self.x = min(self.x + n, self.cols - 1)
        elif final == "D":
            self.x = max(self.x - n, 0)
        elif final == "G":
            self.x = min(n, self.cols) - 1
        elif final == "H":
            row, col = (numbers + [1, 1])[:2] if numbers else (1, 1)
            self.y, self.x = max(row, 1) - 1, max(col, 1) - 1
        elif final == "J" and numbers in ([], [0]):
            if self.x == 0 and self.y > 0:       # as tmux: the row above no longer wraps into this one
                self.wrapped[self.y - 1] = False
            for x in range(self.x, self.cols):
                self.grid[self.y][x] = BLANK
                self.marks[self.y][x] = False
            for y in range(self.y + 1, self.rows):
                self.grid[y] = [BLANK] * self.cols
                self.marks[y] = [False] * self.cols
                self.wrapped[y] = False
        elif final == "J" and numbers == [2]:
            self.grid = [[BLANK] * self.cols for _ in range(self.rows)]
            self.marks = [[False] * self.cols for _ in range(self.rows)]
            self.wrapped = [False] * self.rows
        elif final == "K" and numbers in ([], [0]):
            for x in range(self.x, self.cols):
                self.grid[self.y][x] = BLANK
                self.marks[self.y][x] = False
        else:
            raise AssertionError(f"a CSI sequence the model does not know: {parameters!r} {final!r}")

    # -- resizing ------------------------------------------------------------

    def resize(self, cols: int, reflow: bool) -> None:
        self.pending_wrap = False
        self.marks = [[False] * cols for _ in range(self.rows)]   # (what was marked is not kept)
        if not reflow:
            self.grid = [(row + [BLANK] * cols)[:cols] for row in self.grid]
            self.cols, self.x = cols, min(self.x, cols - 1)
            return
        # Join the logical lines, noting where the cursor is in its line.
        logical: list[list[str]] = []
        cursor = (0, 0)
        joining = False
        for y in range(self.rows):
            row = self.grid[y] if self.wrapped[y] else _trimmed(self.grid[y], keep=self.x + 1 if y == self.y else 0)
            if y == self.y:
                cursor = (len(logical) - 1 if joining else len(logical), (len(logical[-1]) if joining else 0) + self.x)
            if joining:
                logical[-1].extend(row)
            else:
                logical.append(list(row))
            joining = self.wrapped[y]
        # Wrap them again at the new width.
        grid, wrapped = [], []
        for number, cells in enumerate(logical):
            rows, places = _wrap([c for c in cells if c != TAIL], cells, cols)
            if number == cursor[0]:
                self.y, self.x = len(grid) + places[cursor[1]][0], min(places[cursor[1]][1], cols - 1)
            grid.extend(rows)
            wrapped.extend([True] * (len(rows) - 1) + [False])
        while len(grid) < self.rows:
            grid.append([BLANK] * cols)
            wrapped.append(False)
        while len(grid) > self.rows:         # drop blank rows below the cursor, then rows from the top
            drop = -1 if len(grid) - 1 > self.y and grid[-1] == [BLANK] * cols else 0
            grid.pop(drop)
            wrapped.pop(drop)
            self.y -= 1 if drop == 0 else 0
        self.grid, self.wrapped, self.cols = grid, wrapped, cols


def _trimmed(row: list[str], keep: int) -> list[str]:
    end = len(row)
    while end > keep and row[end - 1] == BLANK:
        end -= 1
    return row[:end]


def _wrap(chars: list[str], cells: list[str], cols: int) -> tuple[list[list[str]], dict[int, tuple[int, int]]]:
    """Rows of ``cols`` cells for the characters, and where each old cell offset lands (row, col)."""
    rows: list[list[str]] = [[]]
    places: dict[int, tuple[int, int]] = {}
    offset = 0
    for char in chars:
        w = max(width(char[0]), 1)
        if len(rows[-1]) + w > cols:
            rows[-1].extend([BLANK] * (cols - len(rows[-1])))
            rows.append([])
        for k in range(w):
            places[offset + k] = (len(rows) - 1, len(rows[-1]) + k)
        rows[-1].extend([char] + [TAIL] * (w - 1))
        offset += w
    places[offset] = (len(rows) - 1, len(rows[-1])) if len(rows[-1]) < cols else (len(rows), 0)
    if places[offset][0] == len(rows):
        rows.append([])
    for extra in range(offset + 1, len(cells) + 1):
        places[extra] = places[offset]
    return [row + [BLANK] * (cols - len(row)) for row in rows], places
