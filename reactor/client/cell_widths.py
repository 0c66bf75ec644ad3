"""What each unit of the input is drawn as, and how wide: Unicode's width where terminals agree, else measured.

A cluster terminals draw each their own way (``graphemes.certain`` says which)
is measured on the terminal the first time it is drawn: the editor writes it
at the start of a row, asks where the cursor went (ESC [ 6 n) and hands the
answer to ``measured``.  Until then, and for good once the terminal has not
answered (``give_up``), the cluster is drawn as its ``parts``, whose widths no
terminal disputes.  A measured width is kept for the session: a terminal
draws a cluster the same way every time.
"""
from __future__ import annotations

from .graphemes import NEWLINE, certain, char_width, clusters, estimated_width, parts, shown
from .input_layout import BREAK_WIDTH

CACHE_LIMIT = 10_000   # distinct units whose drawing is remembered


class CellWidths:
    """The drawing of units, with the widths measured so far; ``measuring``: the terminal is asked."""

    def __init__(self, measuring: bool) -> None:
        self.measuring = measuring
        self._measured: dict[str, int] = {}    # -1: the answer made no sense, so the parts are drawn
        self._asked: set[str] = set()
        self._cells: dict[str, tuple[str, int]] = {}

    def cell(self, unit: str) -> tuple[str, int]:
        """What the unit is drawn as, and its width (``BREAK_WIDTH`` for a line break)."""
        cell = self._cells.get(unit)
        if cell is not None:
            return cell
        if unit == NEWLINE:
            return " ", BREAK_WIDTH
        text, width, settled = "", 0, True
        for cluster in clusters(shown(unit)):
            measured = self._measured.get(cluster, -1)
            if certain(cluster):
                pieces = [cluster]
            elif measured >= 0:
                text, width = text + cluster, width + measured
                continue
            else:
                pieces = parts(cluster)
                settled = settled and (cluster in self._measured or not self.measuring)
            for piece in pieces:
                text, width = text + piece, width + estimated_width(piece)
        if char_width(text[0]) == 0:
            text, width = " " + text, width + 1                # a mark needs a base
        if settled:
            if len(self._cells) >= CACHE_LIMIT:
                self._cells.clear()
            self._cells[unit] = (text, width)
        return text, width

    def to_measure(self, units: list[str], cols: int) -> list[str]:
        """Clusters among ``units`` to ask the terminal about (once each; none wider than the row
        can be, so that drawing one never wraps)."""
        if not self.measuring:
            return []
        wanted: dict[str, None] = {}
        for unit in set(units):
            if unit in self._cells or unit == NEWLINE:
                continue
            for cluster in clusters(shown(unit)):
                if not (certain(cluster) or cluster in self._measured or cluster in self._asked) \
                        and 2 * len(cluster) < cols:
                    wanted[cluster] = None
        self._asked.update(wanted)
        return list(wanted)

    def measured(self, cluster: str, width: int) -> None:
        """The terminal moved the cursor ``width`` columns drawing ``cluster``."""
        self._measured[cluster] = width if 0 <= width <= 2 * len(cluster) else -1
        self._asked.discard(cluster)
        self._cells.clear()

    def give_up(self) -> None:
        """The terminal does not answer: draw what is not measured as its parts, and ask no more."""
        self.measuring = False
        self._asked.clear()
        self._cells.clear()
