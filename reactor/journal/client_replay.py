"""Replaying a client's journal: ``ChatClient`` rebuilt from the header, given each event, its effects checked
against the digest; the terminal drawn again (``--screen``) and a timeline (``--print``).

The screen is the line editor's (``reactor/client/line_editor.py``), given what
the terminal gave it (keys, sizes, timeouts: the journal's ``k z x y Z``) and
what the client printed and prompted, as ``TerminalConsole`` gives them; its
bytes go to ``out``. A journal recorded on pipes (no ``z``) shows the printed
lines alone. Keys and texts are the journal's: made up unless it was recorded
with ``--record-texts``.
"""
from __future__ import annotations

import datetime
from typing import IO, Any

from ..client.effects import ConnectPeer, Exit, Print, Prompt, ToPeer, ToServer
from ..client.line_editor import LineEditor
from ..client.rules import ChatClient
from . import scrub
from .client import SCREEN_OPS, call_client, client_args
from .format import Event, Header, JournalError
from .replay import check
from .timeline import clock

__all__ = ["ClientReplay", "ClientTimeline", "Screen"]


class Screen:
    """The terminal of a replayed client, drawn to ``out`` (see the module's docstring)."""

    def __init__(self, out: IO[bytes], rules: ChatClient) -> None:
        self._out = out
        self._rules = rules
        self.editor: LineEditor | None = None   # made at the journal's first size: the client was on a terminal

    def terminal(self, op: str, args: list[Any]) -> None:
        editor = self.editor
        if op == "z":
            if editor is None:
                self.editor = LineEditor(args[0], self._rules.completions, rows=args[1], measure=True)
                return
            editor.resize(args[0], args[1])
        elif editor is None:
            return
        elif op == "k":
            editor.feed(str(args[0]).encode("latin-1"))
        elif op == "x":
            editor.escape_timeout()
        elif op == "y":
            editor.measurement_timeout()
        elif op == "Z":
            editor.redraw()
        self._out.write(editor.take_output())

    def effects(self, effects: list[Any]) -> None:
        editor = self.editor
        for effect in effects:
            if type(effect) is Print:
                self._out.write(editor.print_above(effect.text) if editor is not None
                                else (effect.text + "\n").encode("utf-8", "replace"))
            elif type(effect) is Prompt and editor is not None:
                editor.set_prompt(effect.text or ("" if effect.secret else "> "), effect.secret, effect.remember)
                self._out.write(editor.take_output())
            elif type(effect) is Exit and editor is not None:
                self._out.write(editor.erase())


class ClientReplay:
    """The client's rules as the journal's header built them, given its events one at a time."""

    side = "client"

    def __init__(self, header: Header) -> None:
        self.header = header
        self.scrubber = scrub.Scrubber(texts=header.texts)
        try:
            self.rules = ChatClient(**client_args(header.args))
        except TypeError as exc:
            raise JournalError(f"the header's arguments do not build a ChatClient: {exc}") from None
        self.screen: Screen | None = None

    def show_screen(self, out: IO[bytes]) -> None:
        self.screen = Screen(out, self.rules)

    def timeline(self) -> ClientTimeline:
        return ClientTimeline(self.header)

    def apply(self, event: Event) -> list[Any]:
        if event.op in SCREEN_OPS:
            if self.screen is not None:
                self.screen.terminal(event.op, event.args)
            return []
        try:
            effects = call_client(self.rules, event.op, event.now, event.args)
        except KeyError:
            raise JournalError(f"line {event.line}: unknown op {event.op!r} in a client journal") from None
        if self.screen is not None:
            self.screen.effects(effects)
        check(event, effects, self.scrubber, keep_texts=True)
        return effects


class ClientTimeline:
    """Lines of a client's timeline: what came in, and what the client did."""

    def __init__(self, header: Header) -> None:
        args = header.args
        offset = args.get("tz_offset")
        self._tz = None if offset is None else datetime.timezone(datetime.timedelta(seconds=offset))
        self._wall_offset = args.get("wall_offset")
        self._names: set[str] = set()

    def before(self, event: Event) -> None:
        self._names = set()

    def involves(self, user: str) -> bool:
        return user in self._names

    def line(self, event: Event, effects: list[Any]) -> str:
        what = self._what(event)
        done = []
        for effect in effects:
            if type(effect) is Print:
                first = effect.text.split("\n", 1)[0]
                done.append(f"printed {first[:60]!r}" + (" ..." if "\n" in effect.text else ""))
            elif type(effect) is ToServer:
                done.append(f"to server: {effect.frame.get('type')}")
            elif type(effect) is ToPeer:
                done.append(f"to peer {effect.peer}: {effect.frame.get('type')}")
            elif type(effect) is ConnectPeer:
                done.append(f"connect to {effect.user} at {effect.host}:{effect.port}")
            elif type(effect) is Exit:
                done.append(f"exit {effect.status}")
        for text in [what, *done]:
            self._names.update(word.strip("'\":,()") for word in text.split())
        when = clock(event.now, self._wall_offset, self._tz)
        return f"{when} #{event.number} {what}" + (f" ({'; '.join(done)})" if done else "")

    def _what(self, event: Event) -> str:
        op, a = event.op, event.args
        if op == "f" or op == "pF":
            frame = a[-1] if type(a[-1]) is dict else {}
            source = "server" if op == "f" else f"peer {a[0]}"
            about = " ".join(f"{k}={frame[k]}" for k in ("from", "user", "code", "reason") if k in frame)
            return f"{source}: {frame.get('type', 'no frame')}" + (f" {about}" if about else "")
        names = {"S": "connected to the server", "l": "typed", "E": "end of input", "I": "interrupted",
                 "li": "listening on", "fb": "server: bad frame", "fl": "server lost", "t": "timer",
                 "pa": "peer accepted", "pr": "peer refused", "pc": "peer connected", "pf": "peer failed",
                 "pb": "peer bad frame", "pC": "peer closed", "k": "keys", "z": "terminal size", "x": "escape",
                 "y": "no measurement", "Z": "redraw"}
        shown = [repr(v) if op == "k" else str(v) for v in a if type(v) in (str, int) or type(v) is list]
        return f"{names.get(op, op)} {' '.join(shown)}".strip()
