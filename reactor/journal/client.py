"""Recording a client: ``ChatClient``'s facade as its host sees it, and the keys its terminal gave the line editor,
written to a journal with a digest of what a replay will do with them.

A client journal must hold no password, no token, no certificate and, unless
``--record-texts``, no text, and still replay, screen included ("a bug report
can be a journal"). So ``ClientRecorder`` runs two clients: the live one, which
the host uses, and a **shadow** given the journal's own inputs (scrubbed, as a
replay will be): each event's digest is of the shadow's effects, which a
replay must match exactly. If the live client and the shadow ever do
different kinds of things (a scrubbed input that changed the course of the
run), one line says so.

A typed line is a password or a user name, or a command, depending on the
state the client is in when it *takes* the line, which may be long after it
was typed (lines typed ahead wait for the server's answers). So a line's
event waits, with every event after it, until the live client has taken it
(``ChatClient.typed_ahead``): a line taken as the user name or the password
(the last one a call took, when that call sent one), or taken while not
logged in, is written as a stand-in; a command keeps its name and user
names, and its text becomes a placeholder; any other line is a stand-in.

The terminal's inputs (``TerminalConsole.tap``: keys, resizes, timeouts) are
written as they come: while the prompt is secret no printable key is written
at all; otherwise, unless ``--record-texts``, each printable character is
written as one of its kind (``x`` for a letter or digit, ``.`` for other
ASCII, ``あ`` for a wide one...), escape sequences and control keys as they are.
"""
from __future__ import annotations

import base64
import codecs
import datetime
import logging
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from ..client.commands import COMMANDS
from ..client.effects import Exit, Prompt, ToServer
from ..client.outbox import new_nonce
from ..client.rules import ChatClient
from ..loop import EventLoop
from ..protocol import FrameType
from . import scrub
from .format import Header, dumps, micros
from .writer import JournalWriter

__all__ = ["ClientRecorder", "ClientRecording", "KeyScrubber", "command_line", "client_args", "as_der"]

log = logging.getLogger(__name__)

_LOGIN_FRAMES = frozenset({FrameType.USERNAME.value, FrameType.PASSWORD.value})
_ESC = "\x1b"


def command_line(line: str, scrubber: scrub.Scrubber) -> str:
    """A line typed while logged in, as written: a command keeps its name and words, its text a placeholder;
    a line that is no command (it may be anything) is a stand-in; ``y``/``n`` (an answer) stay."""
    stripped = line.strip()
    if stripped.lower() in ("", "y", "n"):
        return line
    name, _, rest = stripped.partition(" ")
    declared = COMMANDS.get(name)
    if declared is None:
        return str(scrubber.secret("line", line))
    words = declared.words(rest)
    if words is None or not declared.params or not declared.params[-1].text or len(words) < len(declared.params):
        return stripped
    return " ".join([name, *words[:-1], scrubber.text(words[-1])])


class KeyScrubber:
    """The bytes a terminal sent, as written (see the module's docstring): escape sequences and control keys
    kept, printable characters made up (or left out while the prompt is secret)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._state = ""   # "" (text), "esc", "csi", "ss3"

    def __call__(self, data: bytes, secret: bool, texts: bool) -> bytes:
        if texts and not secret:
            self._decoder.reset()
            self._state = ""
            return data
        out = []
        for ch in self._decoder.decode(data):
            state = self._state
            if state == "esc":
                self._state = "csi" if ch == "[" else "ss3" if ch == "O" else ""
                out.append(ch if ch < " " or ch in "[Obfd\x7f" or not secret and ch.isascii() else "")
            elif state == "csi":
                out.append(ch)
                if "\x40" <= ch <= "\x7e" and ch != "[":
                    self._state = ""
            elif state == "ss3":
                out.append(ch)
                self._state = ""
            elif ch == _ESC:
                out.append(ch)
                self._state = "esc"
            elif ch < " " or "\x7f" <= ch <= "\x9f" or "\udc80" <= ch <= "\udcff":
                out.append(ch)   # a control key (or a byte that is no UTF-8)
            elif not secret:
                out.append(_kind(ch))
        return "".join(out).encode("utf-8", "surrogateescape")


def _kind(ch: str) -> str:
    """A printable character of the same kind as ``ch``, for the line editor: words, blanks, widths."""
    if ch.isascii():
        return "x" if ch.isalnum() else ch if ch == " " else "."
    category = unicodedata.category(ch)
    if category in ("Mn", "Me", "Cf"):
        return ch   # a mark or a joiner: part of a cluster, not a letter of its own
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return "\u3042"
    return "\u00e9" if ch.isalnum() else "\u00b7"


def as_der(value: Any) -> bytes | None:
    """A certificate as a journal writes it (base64, or null) back to DER."""
    return None if value is None else base64.b64decode(value)


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def client_args(header_args: dict[str, Any]) -> dict[str, Any]:
    """``ChatClient``'s keyword arguments from a client journal's header."""
    args = dict(header_args)
    offset = args.pop("tz_offset", None)
    args["tz"] = None if offset is None else datetime.timezone(datetime.timedelta(seconds=offset))
    args["certificate"] = as_der(args.get("certificate"))
    return args


class _Held:
    """An event not yet written: its time, op and arguments as written (None: a line not yet taken)."""
    __slots__ = ("t", "op", "args", "line", "kinds")

    def __init__(self, t: int, op: str, args: list[Any] | None, line: str | None, kinds: list[str]) -> None:
        self.t, self.op, self.args, self.line, self.kinds = t, op, args, line, kinds


class ClientRecorder:
    """The client's facade, recording each input (see the module's docstring)."""

    def __init__(self, writer: JournalWriter, scrubber: scrub.Scrubber, live: ChatClient, shadow: ChatClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self._clock = clock   # the loop's: the time of the terminal's inputs
        self.live = live
        self._shadow = shadow
        self._scrub = scrubber
        self._held: deque[_Held] = deque()
        self._untaken: deque[_Held] = deque()   # line events the live client has not taken yet
        self._secret = False                      # the last prompt was secret
        self._keys = KeyScrubber()
        self._departed = False
        self.last = writer.header.t0
        writer.clock = lambda: self.last
        self.recording = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.live, name)

    def stopped(self, why: str) -> None:
        self.recording = False
        self._held.clear()
        self._untaken.clear()

    # -- events ------------------------------------------------------------------

    def _event(self, op: str, now: float, call: Any, args: list[Any] | None, line: str | None = None) -> Any:
        t = micros(now)
        effects = call(t / 1e6)
        if not self.recording:
            return effects
        held = _Held(t, op, args, line, [type(e).__name__ for e in effects])
        self._held.append(held)
        if line is not None:
            self._untaken.append(held)
        self._taken(effects)
        for effect in effects:
            if type(effect) is Prompt:
                self._secret = effect.secret
        self._release()
        return effects

    def _taken(self, effects: list[Any]) -> None:
        """The lines the live client took in the call that returned ``effects``: as written."""
        count = len(self._untaken) - self.live.typed_ahead
        if count <= 0:
            return
        login = any(type(e) is ToServer and e.frame.get("type") in _LOGIN_FRAMES for e in effects)
        gone = any(type(e) is Exit for e in effects)
        # A line that answered a secret prompt (a password to change one's own) is a secret: the first line
        # taken answered the prompt before this call, the others those of this call (if one was secret).
        asked = any(type(e) is Prompt and e.secret for e in effects)
        for index in range(count):
            held = self._untaken.popleft()
            line = held.line or ""
            secret = login and index == count - 1 or gone or self.live.user is None or (
                self._secret if index == 0 else asked)
            held.args = [self._scrub.secret("line", line) if secret and line.strip() else
                         line if secret or self._scrub.texts else command_line(line, self._scrub)]

    def _release(self) -> None:
        """Write the events whose lines are all taken, in order, each with the digest of the shadow's effects."""
        held = self._held
        while held and held[0].args is not None:
            event = held.popleft()
            assert event.args is not None
            digest: int | None = None
            if event.op not in SCREEN_OPS:
                effects = call_client(self._shadow, event.op, event.t / 1e6, event.args)
                digest = scrub.digest(effects, self._scrub, keep_texts=True)
                if not self._departed and [type(e).__name__ for e in effects] != event.kinds:
                    self._departed = True
                    log.warning("client journal %s: from this %s event on it shows another run than this one (a "
                                "text or secret made up changed what the client did); --record-texts keeps texts",
                                self.writer.path, event.op)
            self.writer.lines.append(dumps([event.t - self.last, event.op, digest, *event.args]) + "\n")
            self.last = event.t

    def close(self) -> None:
        """Lines never taken are written as stand-ins (they were never used)."""
        for held in self._untaken:
            held.args = [self._scrub.secret("line", held.line or "")]
        self._untaken.clear()
        self._release()

    # -- the facade ------------------------------------------------------------------

    def start(self, now: float, server: tuple[str, int] | None = None) -> Any:
        return self._event("S", now, lambda t: self.live.start(t, server), [list(server) if server else None])

    def line(self, text: str, now: float) -> Any:
        return self._event("l", now, lambda t: self.live.line(text, t), None, line=text)

    def end_of_input(self, now: float) -> Any:
        return self._event("E", now, self.live.end_of_input, [])

    def interrupt(self, now: float) -> Any:
        return self._event("I", now, self.live.interrupt, [])

    def listening(self, host: str, port: int, now: float) -> Any:
        return self._event("li", now, lambda t: self.live.listening(host, port, t), [host, port])

    def server_frame(self, frame: Any, now: float) -> Any:
        shown = self._scrub.frame(frame) if type(frame) is dict else None
        return self._event("f", now, lambda t: self.live.server_frame(frame, t), [shown])

    def server_bad_frame(self, detail: str, now: float) -> Any:
        return self._event("fb", now, lambda t: self.live.server_bad_frame(detail, t), [detail])

    def server_lost(self, now: float) -> Any:
        return self._event("fl", now, self.live.server_lost, [])

    def timer_fired(self, key: Any, now: float) -> Any:
        return self._event("t", now, lambda t: self.live.timer_fired(key, t), [list(key)])

    def peer_accepted(self, peer: int, now: float, certificate: bytes | None = None) -> Any:
        return self._event("pa", now, lambda t: self.live.peer_accepted(peer, t, certificate),
                           [peer, _b64(self._scrub.certificate(certificate))])

    def peer_refused(self, reason: str, now: float) -> Any:
        return self._event("pr", now, lambda t: self.live.peer_refused(reason, t), [reason])

    def peer_connected(self, peer: int, user: str, now: float, certificate: bytes | None = None) -> Any:
        return self._event("pc", now, lambda t: self.live.peer_connected(peer, user, t, certificate),
                           [peer, user, _b64(self._scrub.certificate(certificate))])

    def peer_failed(self, user: str, reason: str, now: float) -> Any:
        return self._event("pf", now, lambda t: self.live.peer_failed(user, reason, t), [user, reason])

    def peer_frame(self, peer: int, frame: Any, now: float) -> Any:
        shown = self._scrub.frame(frame) if type(frame) is dict else None
        return self._event("pF", now, lambda t: self.live.peer_frame(peer, frame, t), [peer, shown])

    def peer_bad_frame(self, peer: int, detail: str, now: float) -> Any:
        return self._event("pb", now, lambda t: self.live.peer_bad_frame(peer, detail, t), [peer, detail])

    def peer_closed(self, peer: int, now: float) -> Any:
        return self._event("pC", now, lambda t: self.live.peer_closed(peer, t), [peer])

    # -- the terminal (TerminalConsole.tap) ---------------------------------------------

    def terminal(self, op: str, *args: Any) -> None:
        """An input of the line editor: keys (bytes), a resize, a timeout, a redraw."""
        if not self.recording:
            return
        if op == "k":
            args = (self._keys(args[0], self._secret, self._scrub.texts).decode("latin-1"),)
        t = max(micros(self._clock()), self._held[-1].t if self._held else self.last)
        self._held.append(_Held(t, op, list(args), None, []))
        self._release()


SCREEN_OPS = frozenset({"k", "z", "x", "y", "Z"})


def call_client(rules: ChatClient, op: str, now: float, a: list[Any]) -> list[Any]:
    """Give ``rules`` the client event ``op`` with the arguments a journal wrote."""
    if op == "S":
        return rules.start(now, (a[0][0], a[0][1]) if a[0] else None)
    if op == "l":
        return rules.line(a[0], now)
    if op == "f":
        return rules.server_frame(a[0], now)
    if op == "t":
        return rules.timer_fired(tuple(a[0]), now)
    if op == "pa":
        return rules.peer_accepted(a[0], now, as_der(a[1]))
    if op == "pc":
        return rules.peer_connected(a[0], a[1], now, as_der(a[2]))
    simple: dict[str, Callable[[float], list[Any]]] = {"E": rules.end_of_input, "I": rules.interrupt,
                                                       "fl": rules.server_lost}
    if op in simple:
        return simple[op](now)
    two: dict[str, Callable[..., list[Any]]] = {
        "li": rules.listening, "fb": rules.server_bad_frame, "pr": rules.peer_refused, "pf": rules.peer_failed,
        "pF": rules.peer_frame, "pb": rules.peer_bad_frame, "pC": rules.peer_closed}
    if op in two:
        return two[op](*a, now)
    raise KeyError(op)


class ClientRecording:
    """client_main.py's part: builds the client, recording it with ``--record``; watches the console."""

    def __init__(self, loop: EventLoop, record: str | None, *, texts: bool = False) -> None:
        self._loop = loop
        self._record = record
        self._texts = texts
        self.recorder: ClientRecorder | None = None

    def build(self, **kwargs: Any) -> ChatClient:
        if self._record is None:
            return ChatClient(**kwargs)
        kwargs.setdefault("nonce", new_nonce())   # (its refs: the shadow and a replay make the same ones)
        scrubber = scrub.Scrubber(texts=self._texts)
        offset = datetime.datetime.now().astimezone().utcoffset()
        shown = {k: v for k, v in kwargs.items() if k not in ("certificate", "tz")}
        shown["certificate"] = _b64(scrubber.certificate(kwargs.get("certificate")))
        shown["tz_offset"] = None if kwargs.get("tz") is None and offset is None else (
            (offset or datetime.timedelta()).total_seconds())
        header = Header(side="client", rules="ChatClient", t0=micros(self._loop.time()), args=shown,
                        texts=self._texts, run=secrets.token_hex(8),
                        extra={"recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        try:
            writer = JournalWriter(self._record, header)
        except OSError as exc:
            raise SystemExit(f"Error. Cannot record to {self._record}: {exc.strerror or exc}") from None
        live = ChatClient(**kwargs)
        shadow = ChatClient(**client_args(shown))
        self.recorder = ClientRecorder(writer, scrubber, live, shadow, self._loop.time)
        writer.on_stop = self.recorder.stopped
        writer.attach(self._loop)
        return cast(ChatClient, self.recorder)

    def watch(self, console: Any) -> None:
        """Record what the terminal gives the line editor (a pipe console has no editor: nothing to watch)."""
        if self.recorder is not None and hasattr(console, "tap"):
            console.tap = self.recorder.terminal
            self.recorder.terminal("z", *console.size)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder.writer.close()
