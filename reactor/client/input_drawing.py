"""What of the input is on the screen, and the bytes that bring the screen up to date with a new layout.

The drawing remembers the rows it wrote (how many cells each used, and
whether the terminal's autowrap carried it into the next), where it left the
cursor among them and which layout rows they were, so that the next redraw
goes back up to the first of them exactly, and so that a resize can work out
where a terminal that rewraps its rows put them.

A resize is the one moment the editor cannot know where its rows are: some
terminals rewrap the rows on screen to the new width (tmux, VTE, kitty), others
cut or keep them (xterm, the Linux console), and tmux also keeps the cursor on
its screen row, pushing rows that no longer fit above it into its history.
So when the terminal answers questions, the drawing asks it where the cursor
is (``resized``, then ``positioned``): the cursor's column tells the two kinds
apart (when it can: in the rare case both would leave it in the same column,
the old guess below holds), and its row tells how many of the input's rows went
above the top of the screen; those are left there, and the drawing goes on
below them.  Without an answer (``no_position``), it guesses: when the terminal
narrows, the input's first row is as far above the cursor as either kind
has it, whichever is more (nothing stale is left on either; on one that cuts,
as many rows of output just above the input are erased); when it widens, as
a terminal that rewraps has it (on one that does not, the input's old first
rows stay above the redrawn input).
"""
from __future__ import annotations

from .input_layout import ERASE_BELOW, ERASE_ROW, MARK_OFF, MARK_ON, WRAP, Layout, rewrapped_place, window

NO_MARK = 1 << 62           # nothing is past the limit


class Drawing:
    """The input's rows on screen, counted from the first one drawn."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, bool]] = []   # cells used, wrapped into the next
        self.cursor_row = 0
        self.cursor_col = 0
        self.top = 0                # the first layout row drawn
        self.hidden = 0             # layout rows above the screen, put there by the terminal's rewrapping
        self.mark = NO_MARK         # the first piece drawn as past the limit
        self.typed_from: int | None = None   # units drawn, if only typing at the end happened since
        self.shows_all = True       # no row of the input is out of sight
        self.waiting = False        # for the cursor's position after a resize: nothing is drawn till then
        self._cols = 0              # the width the rows were drawn at
        self._narrowest = 0         # the narrowest the terminal has been since
        self._drawn_cursor: tuple[int, int] | None = None   # where the drawing left the cursor, if resized since
        self._guesses: tuple[tuple[int, int], tuple[int, int], bool] | None = None

    def to_top(self) -> str:
        return (f"\x1b[{self.cursor_row}A" if self.cursor_row else "") + "\r"

    def forget(self) -> None:
        """Nothing of the input is on screen any more; the cursor is where it would begin."""
        self.rows, self.cursor_row, self.cursor_col, self.top, self.hidden = [], 0, 0, 0, 0
        self.typed_from, self.shows_all, self._guesses, self._drawn_cursor = None, True, None, None
        self.waiting = False        # (an answer on its way finds no guesses to settle)

    # -- drawing -----------------------------------------------------------------

    def echo(self, layout: Layout, cursor: int, mark: int, units: int) -> str | None:
        """The bytes that write only the last ``units - typed_from`` pieces, typed at the end, when they
        land on the cursor's row and nothing else changed; None when a redraw is needed."""
        typed_from = self.typed_from
        if typed_from is None or mark != self.mark or cursor != len(layout.widths) or layout.at_margin:
            return None
        first = cursor - (units - typed_from)
        row, col = layout.end
        if layout.place(first) != (row, self.cursor_col) or row - self.top + self._noted() != self.cursor_row:
            return None
        self.cursor_col = col
        self.rows[-1] = (col, False)
        self.typed_from = units
        return _pieces(layout.texts[first:cursor], first, mark)

    def draw(self, layout: Layout, cursor: int, mark: int, height: int, typed: int | None,
             whole: bool = False, before: str = "") -> str:
        """The bytes that rewrite the input from its first row drawn and put the cursor back: a window
        of ``height`` rows around the cursor, or (``whole``) every row with the cursor left at the end.
        ``typed``: the units of the line, when the cursor is at its end (typing there may be echoed);
        ``before``: what to write at the start of the first row before the drawing writes over it."""
        cols = layout.cols
        cursor_row, cursor_col = layout.place(cursor)
        first, last = (0, layout.rows) if whole else self._window(layout.rows, height, cursor_row)
        out = [self.to_top(), before]
        rows: list[tuple[int, bool]] = []
        if first != self.hidden:
            self.hidden = 0
        if first and first != self.hidden:
            note = f"({first} rows above)"[:cols - 1]
            out += [MARK_ON, note, MARK_OFF, ERASE_ROW, "\r\n"]
            rows.append((len(note), False))
        out.append(layout.draw(first, last, mark))
        rows += [(layout.row_width(row), layout.kinds[row] == WRAP) for row in range(first, last)]
        if last < layout.rows:
            note = f"({layout.rows - last} rows below)"[:cols - 1]
            out += [MARK_ON, note, MARK_OFF, ERASE_BELOW]
            end = (len(rows), len(note))
            rows.append((len(note), False))
        else:
            # At the margin: a space takes the cursor to the next row; erasing from column 0 there
            # would make tmux forget that the row above wraps into it, so the erase comes first.
            out.append(" " + ERASE_BELOW + "\r" if layout.at_margin else ERASE_BELOW)
            end = (layout.end[0] - first + (len(rows) - (last - first)), layout.end[1])
        self.top, self.rows, self.mark = first, rows, mark
        self._cols = self._narrowest = cols
        self._drawn_cursor = None
        place = end if whole else (cursor_row - first + self._noted(), cursor_col)
        out.append(_move(end, place))
        self.cursor_row, self.cursor_col = place
        self.shows_all = first == self.hidden and last == layout.rows
        self.typed_from = typed if last == layout.rows else None
        return "".join(out)

    def _noted(self) -> int:
        """1 if a note row stands above the rows drawn."""
        return 1 if self.top and self.top != self.hidden else 0

    def _window(self, total: int, height: int, cursor_row: int) -> tuple[int, int]:
        """The layout rows to draw: a window around the cursor, below the rows in the terminal's history."""
        hidden = self.hidden if cursor_row >= self.hidden else 0
        first, last = window(total - hidden, height, cursor_row - hidden, max(self.top - hidden, 0))
        return first + hidden, last + hidden

    def leave(self, layout: Layout, mark_text: str) -> str:
        """From the cursor to the end of the input (drawn whole), then ``mark_text`` and a fresh row."""
        out = _move((self.cursor_row, self.cursor_col), (layout.end[0] - self.top, layout.end[1]))
        if mark_text or not layout.at_margin:  # at the margin the cursor is on a fresh row already
            out += mark_text + "\r\n"
        self.forget()
        return out

    # -- resizing ------------------------------------------------------------------

    def resized(self, cols: int) -> None:
        """The terminal is now ``cols`` wide: guess where the input's rows went, until ``positioned``
        (from the rows drawn, however many resizes came since).

        The rows in the terminal's history count when the first drawn row continues them (there is
        no note above it): the input's row, and so what no longer fits, is counted from the first."""
        if self._drawn_cursor is None:
            self._drawn_cursor = (self.cursor_row, self.cursor_col)
        row, col = self._drawn_cursor
        self._narrowest = min(self._narrowest or cols, cols)
        above = [] if self._noted() else [(self._cols, True)] * self.hidden
        rewrapped = rewrapped_place(above + self.rows, (len(above) + row, col), cols)
        cut = (row, min(col, self._narrowest - 1))
        self._guesses = (rewrapped, cut, bool(self._noted()))
        guess = max(rewrapped[0] - len(above), 0)
        self.cursor_row = max(cut[0], guess) if self._narrowest < self._cols else guess
        self.typed_from = None

    def positioned(self, row: int, col: int) -> None:
        """The terminal's answer: the cursor is at ``(row, col)`` on the screen (0-based)."""
        self.waiting = False
        if self._guesses is None:
            return
        (rewrapped_row, rewrapped_col), (cut_row, cut_col), noted = self._guesses
        self._guesses = None
        if rewrapped_row == cut_row or col != cut_col:
            if col == rewrapped_col:
                # Rewrapped; tmux keeps the cursor's screen row, so what does not fit above it went
                # into its history: those rows stay there, and the drawing goes on below them.
                pushed = max(rewrapped_row - row, 0)
                self.hidden = self.top = 0 if noted else pushed
                self.cursor_row = rewrapped_row - pushed
        elif col != rewrapped_col:
            self.cursor_row = cut_row                       # cut, or kept
        # (Both would leave the cursor in this column, on different rows: the guess stands.)

    def no_position(self) -> None:
        self.waiting = False
        self._guesses = None


def _pieces(texts: list[str], first: int, mark: int) -> str:
    """The pieces' text, those from ``mark`` on (counted like ``first``) in reverse video."""
    split = min(max(mark - first, 0), len(texts))
    if split == len(texts):
        return "".join(texts)
    return "".join(texts[:split]) + MARK_ON + "".join(texts[split:]) + MARK_OFF


def _move(origin: tuple[int, int], target: tuple[int, int]) -> str:
    """Cursor motions from one (row, col) to another; neither is in a pending wrap."""
    (row, col), (to_row, to_col) = origin, target
    vertical = f"\x1b[{row - to_row}A" if to_row < row else f"\x1b[{to_row - row}B" if to_row > row else ""
    horizontal = f"\x1b[{col - to_col}D" if to_col < col else f"\x1b[{to_col - col}C" if to_col > col else ""
    return vertical + horizontal
