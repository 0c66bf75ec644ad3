"""Characters as a terminal draws them: grapheme clusters, their columns, and how to show them safely.

A cluster is what the cursor moves over as one: a character with the marks,
joiners, variation selectors and skin tones that follow it, a character joined
to the one before by a zero-width joiner, or a pair of regional indicators (a
flag): a close, simplified reading of Unicode's extended grapheme clusters.

Terminals agree on the width of most characters (1, or 2 for East Asian wide
ones) and disagree on the rest: emoji sequences (tmux 3.3a draws 👨‍👩‍👧 in 2
columns, others in 6), emoji newer than their tables, text symbols with an
emoji selector, spacing marks of Indic scripts.  ``certain`` tells the two
apart; the editor measures the others on the terminal, and until it knows
(or where it cannot know) shows such a cluster as ``parts``, each part a
character whose width no terminal disputes.
"""
from __future__ import annotations

import unicodedata

ZWJ = "\u200d"
JOINERS = "\u200c\u200d"            # zero-width non-joiner and joiner
SELECTORS = "\ufe0e\ufe0f"          # text and emoji presentation
NEWLINE = "\n"                      # a line break inside the input: a unit of its own


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _modifier(char: str) -> bool:     # skin tones
    return "\U0001f3fb" <= char <= "\U0001f3ff"


def _tag(char: str) -> bool:          # the letters of a subdivision flag
    return "\U000e0020" <= char <= "\U000e007f"


def char_width(char: str) -> int:
    """Columns a terminal gives a character alone: 2 wide, 0 combining or joining, else 1."""
    if unicodedata.combining(char) or char in JOINERS or unicodedata.category(char) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def is_safe(char: str) -> bool:
    """A character that may reach the terminal as it is (it prints, or it is a joiner or a space)."""
    return char.isprintable() or char in JOINERS or unicodedata.category(char) == "Zs"


def shown(text: str) -> str:
    """The text with control and invisible characters made visible and harmless."""
    out = []
    for char in text:
        if char < " " or char == "\x7f":
            out.append("^" + chr(ord(char) ^ 0x40))
        elif is_safe(char):
            out.append(char)
        else:
            out.append(f"<U+{ord(char):04X}>")
    return "".join(out)


def _extends(char: str) -> bool:
    """A character that belongs to the cluster before it, whatever that is."""
    return (char_width(char) == 0 or char in SELECTORS or _modifier(char) or _tag(char)
            or unicodedata.category(char) == "Mc")


def joins(unit: str, char: str) -> bool:
    """Whether ``char`` continues the cluster ``unit`` (never across a line break)."""
    if unit == NEWLINE or char == NEWLINE:
        return False
    if _extends(char) or unit[-1] == ZWJ:
        return True
    return _regional(char) and len(unit) == 1 and _regional(unit)


def clusters(text: str) -> list[str]:
    """The text as the units the cursor moves over (see the module's docstring)."""
    units: list[str] = []
    for char in text:
        if units and joins(units[-1], char):
            units[-1] += char
        else:
            units.append(char)
    return units


def _certain_char(char: str) -> bool:
    code = ord(char)
    if code >= 0x1F000 or char in JOINERS or char in SELECTORS:
        return False
    return not (0x2300 <= code <= 0x2BFF and char_width(char) == 2)   # symbols some draw as emoji


def certain(cluster: str) -> bool:
    """Every terminal gives the cluster the width ``estimated_width`` says: one character whose
    width is settled, with only combining marks after it."""
    return _certain_char(cluster[0]) and all(
        _certain_char(char) and unicodedata.category(char) in ("Mn", "Me") for char in cluster[1:])


def estimated_width(text: str) -> int:
    """The width of a certain cluster, or of a part, by Unicode's tables (marks take none)."""
    return sum(map(char_width, text))


def parts(cluster: str) -> list[str]:
    """The cluster as pieces no terminal can draw differently: its characters one by one, each with
    its marks, and what joins or modifies them (joiners, selectors, skin tones, flags' letters)
    spelled out as ``<U+XXXX>``."""
    pieces: list[str] = []
    for char in cluster:
        if char in JOINERS or char in SELECTORS or _modifier(char) or _regional(char) or _tag(char):
            pieces.append(f"<U+{ord(char):04X}>")
        elif pieces and char_width(char) == 0 and not pieces[-1].startswith("<"):
            pieces[-1] += char
        else:
            pieces.append(char)
    return pieces
