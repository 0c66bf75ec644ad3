"""Where the prompt and the input land on a screen, and the bytes that draw the rows of it in sight.

The editor hands over the prompt's and the line's pieces as ``texts`` (what is
written) and ``widths`` (the columns each takes; ``BREAK_WIDTH`` for a line
break, drawn as one blank cell that ends the row).  Laying them out is one
pass over the pieces, and drawing writes only the rows asked for, so a long
input costs time in proportion to its length, and each redraw writes no more
than the window in sight (a 20,000-character paste at 40 columns is 500 rows:
the window shows the screen's height of them).

Rows end in one of three ways: ``WRAP`` (the row is written up to the right
margin, with blanks where a wide character did not fit, and the terminal's
autowrap carries on to the next: terminals that rewrap on a resize join such
rows again), ``BREAK`` (a line break: the rest of the row is erased and the
next row starts indented by ``CONTINUATION`` columns) or ``LAST``.
"""
from __future__ import annotations

from bisect import bisect_right

BREAK_WIDTH = -1
WRAP, BREAK, LAST = 0, 1, 2
CONTINUATION = 2                    # columns a line after a line break is indented by
MARK_ON, MARK_OFF = "\x1b[7m", "\x1b[27m"   # reverse video: text past the limit, and the window's notes
ERASE_ROW, ERASE_BELOW = "\x1b[K", "\x1b[J"


class Layout:
    """The rows of ``texts``/``widths`` on a screen ``cols`` wide, counted from the first one."""

    def __init__(self, texts: list[str], widths: list[int], cols: int) -> None:
        self.texts, self.widths, self.cols = texts, widths, cols
        starts, indents, kinds, pads = [0], [0], [], []

        def new_row(kind: int, pad: int, start: int, indent: int) -> None:
            kinds.append(kind)                              # how the row before it ends
            pads.append(pad)
            starts.append(start)
            indents.append(indent)

        indent = min(CONTINUATION, cols - 1)
        col = 0
        for i, width in enumerate(widths):
            if width < 0:                                   # a line break: one cell, then a new row
                if col >= cols:
                    new_row(WRAP, 0, i, 0)
                new_row(BREAK, 0, i + 1, indent)
                col = indent
            elif width and col + width > cols and col > 0:  # wraps before it, as terminals do
                new_row(WRAP, max(cols - col, 0), i, 0)
                col = width
            else:
                col += width
        # Text that fills the last column leaves the terminal's cursor there with a pending wrap:
        # the end is at the start of one more (empty) row, which a redraw reaches by writing a space.
        self.at_margin = col >= cols and bool(widths)
        if self.at_margin:
            new_row(WRAP, 0, len(widths), 0)
            col = 0
        kinds.append(LAST)
        pads.append(0)
        self.starts, self.indents, self.kinds, self.pads = starts, indents, kinds, pads
        self.end = (len(starts) - 1, col)

    @property
    def rows(self) -> int:
        return len(self.starts)

    def _row_end(self, row: int) -> int:
        return self.starts[row + 1] if row + 1 < len(self.starts) else len(self.widths)

    def place(self, item: int) -> tuple[int, int]:
        """(row, col) where the piece ``item`` is drawn (``len(widths)``: the end)."""
        if item >= len(self.widths):
            return self.end
        row = bisect_right(self.starts, item) - 1
        return row, self.indents[row] + sum(self.widths[self.starts[row]:item])

    def row_width(self, row: int) -> int:
        """Cells the row's drawing takes (a wrapped row: all of them)."""
        if self.kinds[row] == WRAP:
            return self.cols
        used = sum(max(w, 1) for w in self.widths[self.starts[row]:self._row_end(row)])
        return self.indents[row] + used

    def draw(self, first: int, last: int, mark_from: int) -> str:
        """The bytes that write rows ``first`` to ``last`` (excluded) from the start of the first,
        pieces from ``mark_from`` on in reverse video.  A wrapped row ends at the margin (the next
        piece written wraps), a broken one with the rest of its row erased and a line feed."""
        out = []
        texts = self.texts
        for row in range(first, last):
            start, end = self.starts[row], self._row_end(row)
            if self.indents[row]:
                out.append(" " * self.indents[row])
            if mark_from >= end:
                out.append("".join(texts[start:end]))
            elif end > start:
                split = max(mark_from, start)
                out += ["".join(texts[start:split]), MARK_ON, "".join(texts[split:end]), MARK_OFF]
            if self.kinds[row] == WRAP:
                out.append(" " * self.pads[row])
            elif self.kinds[row] == BREAK:
                out.append(ERASE_ROW + "\r\n")
        return "".join(out)


def window(total: int, height: int, cursor_row: int, top: int) -> tuple[int, int]:
    """The rows ``[first, last)`` of ``total`` to show in ``height`` rows (at least 3) around the
    cursor's, moving the window ``top`` shown before as little as it can.  When rows are left out
    above (``first > 0``) or below (``last < total``), a row of the height says so."""
    if total <= height:
        return 0, total

    def last_for(first: int) -> int:
        room = height - (first > 0)
        return total if first + room >= total else first + room - 1

    first = max(0, min(top, cursor_row, total - 1))
    if cursor_row >= last_for(first):
        first = max(cursor_row - (height - 3), 1)
        while cursor_row >= last_for(first):
            first += 1
    while first > 0 and last_for(first - 1) == total and cursor_row >= first - 1:
        first -= 1                                          # no room wasted at the end
    return first, last_for(first)


def rewrapped_place(rows: list[tuple[int, bool]], cursor: tuple[int, int], cols: int) -> tuple[int, int]:
    """Where the cursor is, (row, col) counted from the first of ``rows`` (cells used, wrapped into
    the next), once a terminal that rewraps its rows has laid them out again ``cols`` wide."""
    cursor_row, cursor_col = cursor
    new_row = row = 0
    while row < len(rows):
        offset = 0                                          # cells of this joined line so far
        while True:
            width, wrapped = rows[row]
            if row == cursor_row:
                return new_row + (offset + cursor_col) // cols, (offset + cursor_col) % cols
            if not wrapped or row + 1 >= len(rows):
                break
            offset += width
            row += 1
        new_row += max(1, -(-(offset + width) // cols))
        row += 1
    return new_row, cursor_col
