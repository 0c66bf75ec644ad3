"""Text is never code: the control characters no message may hold, and how a client shows them.

A control character here is C0 other than tab (U+0000 to U+0008, U+000A to
U+001F), DEL (U+007F) or C1 (U+0080 to U+009F). A terminal acts on them: ESC
(and the C1 CSI and OSC) starts a sequence that can retitle the window, clear
the screen or reset the terminal; CR and LF start a line that a sender could
fill with someone else's words. Tab only moves the cursor, and people type it.
The server refuses message and broadcast text that holds one; a client shows
whatever came from the network through ``visible``, so a hostile or old server
or peer cannot reach the terminal either.

A line break (LF) is the one exception in a message's text (``TEXT_CONTROL``):
a message may span lines. A client shows such text with ``visible_lines``, and
every line after the first indented under its sender, so no line of a message
can pass for a line of its own (another sender's, a notice).
"""
from __future__ import annotations

import re

__all__ = ["CONTROL", "TEXT_CONTROL", "LINE_BREAK", "visible", "visible_lines"]

CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # what a message's text may not hold: LF it may
LINE_BREAK = "\n"


def visible(text: str) -> str:
    """``text`` with each control character shown as ``^X`` (C0, ``^?`` for DEL) or ``<U+XXXX>`` (C1)."""
    if CONTROL.search(text) is None:
        return text
    return CONTROL.sub(_shown, text)


def visible_lines(text: str) -> str:
    """``text`` with each control character but the line break made visible, as ``visible`` does."""
    if TEXT_CONTROL.search(text) is None:
        return text
    return TEXT_CONTROL.sub(_shown, text)


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "^" + chr(code ^ 0x40) if code < 0x80 else f"<U+{code:04X}>"
