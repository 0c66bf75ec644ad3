"""The frames the server sends, each declared once, on the handler of the client's part that takes it.

A part of the client's rules (``ChatClient`` itself for the session's frames,
``Inbox``, ``Reports``, ``PrivateChats``) declares the handler of a frame type
on one of its methods::

    @on_frame(FrameType.NOTICE)
    def _on_notice(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]: ...

and ``ChatClient`` binds the handlers of all its parts into one table
(``bind``), which ``server_frame`` looks a frame's ``type`` up in, as the
server's ``ChatServer`` does with its ``@command`` (reactor/server/commands.py).
The words a handler shows are its frame's entry in ``words.FRAME_WORDS``.

Text is never code: every frame from the server or a peer has the control
characters in its strings made visible (``reactor.text.visible``) before any
handler reads it (``shown_fields``), so no text, user name or error detail
reaches the terminal or the pipe raw; the client's own words keep their
newlines, and so does a message's text (declared with ``lines``), shown with
every line after the first indented under its sender (``words.hanging``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from ..protocol import Frame, FrameType
from ..text import visible, visible_lines
from .effects import ClientEffect
from .words import FRAME_WORDS, Words

__all__ = ["FrameHandler", "FrameRule", "FRAMES", "on_frame", "bind", "shown_fields"]

FrameHandler: TypeAlias = Callable[..., "list[ClientEffect]"]   # (part,) frame, now, words -> effects


@dataclass(frozen=True, slots=True)
class FrameRule:
    """How the client takes one type of frame from the server: its handler is called with the
    frame (its strings made visible, but for the line breaks of its ``lines`` field), ``now`` and its
    ``words`` (``FRAME_WORDS``' entry). In ``FRAMES`` the handler is the function declared; in a table
    ``bind`` made, the method of the part that takes the frame."""
    handler: FrameHandler
    words: Words
    lines: str | None = None


FRAMES: dict[str, FrameRule] = {}   # keyed by FrameType (a str): every frame the server sends, as declared


def on_frame(kind: FrameType, lines: str | None = None) -> Callable[[FrameHandler], FrameHandler]:
    """Declare the decorated method the handler of the server's ``kind`` frames (``lines``: the field
    whose text may hold line breaks)."""
    def declare(handler: FrameHandler) -> FrameHandler:
        assert kind not in FRAMES, f"two handlers of {kind!r}"
        FRAMES[kind] = FrameRule(handler, FRAME_WORDS.get(kind, Words()), lines)
        return handler
    return declare


def bind(*parts: object) -> dict[str, FrameRule]:
    """The frames declared on the methods of ``parts``, each rule's handler bound to its part: frame type ->
    how it is taken."""
    declared = {rule.handler: (kind, rule) for kind, rule in FRAMES.items()}
    table: dict[str, FrameRule] = {}
    for part in parts:
        for klass in type(part).__mro__:
            for name, function in vars(klass).items():
                found = declared.get(function) if callable(function) else None
                if found is not None:
                    kind, rule = found
                    table[kind] = FrameRule(getattr(part, name), rule.words, rule.lines)
    return table


def shown_fields(frame: Frame, lines: str | None = None) -> Frame:
    """``frame`` with the control characters made visible in its strings, and in the strings of its
    lists: all a handler shows (anything deeper is shown only as a ``repr``, which escapes them); the
    field ``lines`` keeps its line breaks."""
    return {key: (visible_lines(value) if key == lines else visible(value)) if type(value) is str
            else [visible(v) if type(v) is str else v for v in value] if type(value) is list
            else value
            for key, value in frame.items()}
