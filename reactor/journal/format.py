"""The journal's format: a header line, then one line per input the rules were given, each with its time and a
digest of what the rules did with it (docs/debugging.md, "Journal format", is the specification).

A journal is UTF-8 JSON lines, ASCII in practice (JSON escapes the rest):

- line 1, the header: a JSON object (``journal``: ``"reactor-chat"``,
  ``version``, ``side``, ``rules``, ``t0``, ``texts``, ``run``, ``segment``,
  ``first``, ``args``): enough to build the very rules that were recorded;
- then one line per event, a JSON array ``[dt, op, digest, *args]``: ``dt``
  microseconds since the event before (the first: since ``t0``), ``op`` the
  input (a short code, ``SERVER_OPS`` / ``CLIENT_OPS``), ``digest`` the 32-bit
  digest of the effects the rules returned for it (``reactor.journal.scrub``) or
  null, ``args`` the input's arguments;
- a line ``["draw", value]`` is no event: it is a value the rules drew (a
  private chat's token), given back to the rules of the event after it;
- a line ``[0, "R", 0, times, numbers, width]`` holds several events, the hot
  path's, in base64 of little-endian arrays: the time each was given
  (doubles), and three integers each (``width`` bytes apiece: 4 or 8): conn,
  target, N: a message relayed to connection target with N ASCII characters
  (an ``M`` event), or with N = -1 a ping answered with a pong (a ``P`` event).

An event's time is ``(t0 + the sum of dt so far) / 1e6`` seconds: the rules
are given that very float while recording (``quantize``), so a replay gives
them the same one.
"""
from __future__ import annotations

import base64
import json
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from json.scanner import make_scanner
from typing import IO, Any

__all__ = ["MAGIC", "VERSION", "SERVER_OPS", "CLIENT_OPS", "DRAW", "Event", "Header", "JournalError", "quantize",
           "micros", "dumps", "read_header", "read_events"]

MAGIC = "reactor-chat"
VERSION = 1
DRAW = "draw"

# op -> (the rules' method it is given to, its arguments): the table docs/debugging.md shows.
SERVER_OPS: dict[str, tuple[str, str]] = {
    "c": ("connected", "conn, address"),
    "r": ("received", "conn, frame (its type and the fields the command declares, secrets scrubbed)"),
    "m": ("received", "conn, to, text: a message frame (its text scrubbed)"),
    "M": ("received", "conn, target, N: a message relayed to connection target: to its user, N times 'x'"),
    "P": ("received", "conn: a ping answered with a pong"),
    "b": ("bad_frame", "conn, detail"),
    "d": ("disconnected", "conn"),
    "w": ("writable", "conn"),
    "t": ("timers_fired", "keys (each a list)"),
    "p": ("password_checked", "conn, ok (true, false or null)"),
    "a": ("accounts_changed", "accounts (made-up passwords)"),
    "n": ("not_stored", "change, code"),
    "h": ("history_read", "conn, request (a ReadHistory), rows (sender, text scrubbed, sent)"),
    "ph": ("password_hashed", "conn, the new field (a stand-in) or null"),
    "pw": ("password_written", "conn, user, field (a stand-in), refusal or null"),
    "e": ("end_turn", ""),
    "s": ("shutdown", ""),
    # the operator's commands
    "ok": ("kick", "user, reason (scrubbed) or null"),
    "oL": ("lock", "user, until"),
    "oU": ("unlock", "user"),
    "oN": ("notice", "text (scrubbed)"),
    # cluster mode: the engine's answers and the other nodes' news
    "i": ("take_ids", "first"),
    "L": ("login_decided", "conn, user, outcome, until, mailbox"),
    "X": ("cluster_lost", ""),
    "R": ("resync", "online, last_logout, blocks, locks, node, away (texts scrubbed)"),
    "rl": ("remote_login", "user, node"),
    "ro": ("remote_logout", "user, node, at"),
    "rb": ("remote_block", "blocker, blocked, on"),
    "rk": ("remote_locked", "user, until"),
    "rB": ("remote_broadcast", "sender, text"),
    "rr": ("relayed", "event"),
    "pc": ("password_counted", "conn, user, outcome, until"),
    "rP": ("remote_password", "user, field (a stand-in)"),
    "rA": ("remote_away", "user, text (scrubbed) or null (back)"),
    "rN": ("remote_notice", "text (scrubbed)"),
    "ra": ("relay_answered", "relay (a RelayMessage, its text scrubbed), answer"),
    "rt": ("sessions_taken", "taken (user -> node)"),
}

CLIENT_OPS: dict[str, tuple[str, str]] = {
    "S": ("start", "server (host, port) or null"),
    "l": ("line", "text (scrubbed)"),
    "E": ("end_of_input", ""),
    "I": ("interrupt", ""),
    "li": ("listening", "host, port"),
    "f": ("server_frame", "frame (scrubbed)"),
    "fb": ("server_bad_frame", "detail"),
    "fl": ("server_lost", ""),
    "t": ("timer_fired", "key (a list)"),
    "pa": ("peer_accepted", "peer, certificate"),
    "pr": ("peer_refused", "reason"),
    "pc": ("peer_connected", "peer, user, certificate"),
    "pf": ("peer_failed", "user, reason"),
    "pF": ("peer_frame", "peer, frame (scrubbed)"),
    "pb": ("peer_bad_frame", "peer, detail"),
    "pC": ("peer_closed", "peer"),
    # the terminal, for the screen (the line editor's inputs; digest null)
    "k": ("keys", "the bytes read from the terminal, as a string (scrubbed)"),
    "z": ("resize", "cols, rows"),
    "x": ("escape_timeout", ""),
    "y": ("measurement_timeout", ""),
    "Z": ("redraw", ""),
}


_scan = make_scanner(json.JSONDecoder())   # type: ignore[arg-type]  # (the scanner alone: a replay reads every line)


def _parsed(text: str) -> Any:
    """One line's JSON value (ValueError if it is none)."""
    try:
        value, end = _scan(text, 0)
        if not text[end:].isspace() and text[end:]:
            raise ValueError("extra data")
        return value
    except (StopIteration, ValueError):
        return json.loads(text)   # (what the scanner alone refuses, such as leading blanks; or its error)


class JournalError(ValueError):
    """A file that is not a journal this code can replay, said in words."""


def micros(now: float) -> int:
    """``now`` (seconds) as whole microseconds."""
    return round(now * 1e6)


def quantize(now: float) -> float:
    """The time the rules are given for ``now``: the float a replay computes from the journal."""
    return round(now * 1e6) / 1e6


def dumps(value: Any) -> str:
    """One line's JSON: compact, ASCII (so the file is too); NaN and the infinities as Python's json writes and
    reads them (a frame cannot hold them, but an event another node relayed through the engine may)."""
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Header:
    """A journal's first line: which rules, built with which arguments, recorded when."""
    side: str                      # "server" or "client"
    rules: str                     # the rules' class: ChatServer, ClusterChatServer, ChatClient
    t0: int                        # microseconds: the time the first event's dt counts from
    args: dict[str, Any]           # the rules' constructor's keyword arguments (secrets made up)
    texts: bool = False            # message texts recorded as they were (--record-texts)
    run: str = ""                  # the recording's id: every segment of one recording has it
    segment: int = 1               # 1, 2, ... (--record-max-bytes starts a new file)
    first: int = 1                 # the number of this segment's first event
    extra: dict[str, Any] = field(default_factory=dict)   # anything else (for people: when, which build)

    def line(self) -> str:
        return dumps({"journal": MAGIC, "version": VERSION, "side": self.side, "rules": self.rules, "t0": self.t0,
                      "texts": self.texts, "run": self.run, "segment": self.segment, "first": self.first,
                      "args": self.args, **self.extra}) + "\n"

    @classmethod
    def parse(cls, line: str) -> Header:
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise JournalError(f"the first line is not JSON ({exc})") from None
        if type(raw) is not dict or raw.get("journal") != MAGIC:
            raise JournalError("not a journal of reactor chat (its first line has no \"journal\": "
                               f"\"{MAGIC}\")")
        if raw.get("version") != VERSION:
            raise JournalError(f"a journal of version {raw.get('version')!r}; this code reads version {VERSION}")
        known = {"journal", "version", "side", "rules", "t0", "texts", "run", "segment", "first", "args"}
        try:
            return cls(side=str(raw["side"]), rules=str(raw["rules"]), t0=int(raw["t0"]), args=dict(raw["args"]),
                       texts=bool(raw.get("texts", False)), run=str(raw.get("run", "")),
                       segment=int(raw.get("segment", 1)), first=int(raw.get("first", 1)),
                       extra={k: v for k, v in raw.items() if k not in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"the header lacks or garbles {exc}") from None


@dataclass
class Event:
    """One event of a journal: its number (from 1), time (seconds, as the rules were given it), op, digest,
    arguments, and the values the rules drew while taking it."""
    number: int
    now: float
    op: str
    digest: int | None
    args: list[Any]
    draws: list[Any]
    line: int                      # its line in its file (for messages)


def _records(times_b64: Any, numbers_b64: Any, width: Any, line: int) -> Iterator[tuple[float, int, int, int]]:
    """An R line's events: (time, conn, target, N) each."""
    try:
        times = array("d", base64.b64decode(times_b64, validate=True))
        numbers = array({4: "i", 8: "q"}[width], base64.b64decode(numbers_b64, validate=True))
    except (TypeError, ValueError, KeyError) as exc:
        raise JournalError(f"line {line}: an R line's records do not read ({exc!r})") from None
    if sys.byteorder != "little":
        times.byteswap()
        numbers.byteswap()
    if len(numbers) != 3 * len(times):
        raise JournalError(f"line {line}: an R line has three numbers for each time")
    for k, now in enumerate(times):
        yield now, numbers[3 * k], numbers[3 * k + 1], numbers[3 * k + 2]


def read_header(stream: IO[str]) -> Header:
    """The header of the journal ``stream`` is at the start of."""
    first = stream.readline()
    if not first:
        raise JournalError("the file is empty")
    return Header.parse(first)


def read_events(stream: IO[str], header: Header, *, strict_end: bool = False) -> Iterator[Event]:
    """The events after ``header`` in ``stream``. A last line cut short (the recording stopped while writing
    it) ends the journal, unless ``strict_end``; any other line that does not parse raises JournalError."""
    micros_now = header.t0
    number = header.first - 1
    draws: list[Any] = []
    pending: str | None = None
    for index, text in enumerate(stream, start=2):
        if pending is not None:   # the line before did not parse, and it was not the last
            raise JournalError(f"line {index - 1}: {pending}")
        try:
            item = _parsed(text)
        except ValueError as exc:
            pending = f"not JSON ({exc})"
            continue
        if type(item) is not list or not item:
            raise JournalError(f"line {index}: an event is a JSON array")
        if item[0] == DRAW and len(item) == 2:
            draws.append(item[1])
            continue
        if item[1:2] == ["R"] and len(item) == 6:
            for now, conn, target, chars in _records(item[3], item[4], item[5], index):
                number += 1
                yield Event(number, now, "P" if chars < 0 else "M", None,
                            [conn] if chars < 0 else [conn, target, chars], [], index)
            continue
        if len(item) < 3 or type(item[0]) is not int or type(item[1]) is not str:
            raise JournalError(f"line {index}: an event is [dt, op, digest, args...]")
        micros_now += item[0]
        number += 1
        digest = item[2]
        yield Event(number, micros_now / 1e6, item[1], digest if type(digest) is int else None, item[3:],
                    draws, index)
        draws = []
    if pending is not None and strict_end:
        raise JournalError(f"the last line is cut short ({pending})")
