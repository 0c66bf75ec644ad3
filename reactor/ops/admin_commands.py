"""The admin socket's commands and wire format, shared by the server's side and the command line's.

The command line checks a command's arguments before it connects (a typo costs no round trip), and the
server checks them again (the socket is the server's user's only, but what comes in is checked all the
same). One JSON object a line each way (``reactor/framing.py``):

- the request: ``{"command": "kick", "args": ["alice", "spamming"]}``, one per connection;
- the answer: for a table, ``{"columns": [...]}`` then one ``{"row": [...]}`` per row; last,
  ``{"ok": "what was done"}`` or ``{"error": "Error. ...", "status": 1 or 2}`` (2: the command or its
  arguments were wrong; 1: it could not be done), and the server closes the connection.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..protocol import MAX_TEXT
from ..text import CONTROL

MAX_NAME = 256          # characters of a user name given to a command
MAX_REASON = 200        # characters of a kick's reason
MAX_SECONDS = 365 * 24 * 3600   # a lock lasts at most a year
USAGE_STATUS = 2        # the exit status for an unknown command or bad arguments
FAILED_STATUS = 1       # ... for a command that could not be done
WHO_COLUMNS = ("user", "address", "since", "idle", "tls", "node")
STATS_COLUMNS = ("metric", "value")


class BadArguments(ValueError):
    """A command's arguments that do not fit it; the message says why, for a person."""


def _user(text: str) -> str:
    if not 0 < len(text) <= MAX_NAME or any(ch.isspace() for ch in text) or CONTROL.search(text):
        raise BadArguments(f"USER must be a user name (1 to {MAX_NAME} characters, no spaces or control "
                           "characters)")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:   # (NaN and infinity fail this too)
        raise BadArguments(f"SECONDS must be a number of seconds more than 0 and at most {MAX_SECONDS} (a year)")
    return value


def _text(words: Sequence[str], what: str, longest: int) -> str:
    text = " ".join(words)
    if not text.strip() or len(text) > longest or CONTROL.search(text):
        raise BadArguments(f"{what} must be 1 to {longest} characters with no control characters")
    return text


def _none(args: Sequence[str]) -> tuple[()]:
    if args:
        raise BadArguments("takes no arguments")
    return ()


def _kick(args: Sequence[str]) -> tuple[str, str | None]:
    if not args:
        raise BadArguments("needs a USER")
    return _user(args[0]), (_text(args[1:], "REASON", MAX_REASON) if len(args) > 1 else None)


def _lock(args: Sequence[str]) -> tuple[str, float]:
    if len(args) != 2:
        raise BadArguments("needs a USER and SECONDS")
    return _user(args[0]), _seconds(args[1])


def _unlock(args: Sequence[str]) -> tuple[str]:
    if len(args) != 1:
        raise BadArguments("needs a USER")
    return (_user(args[0]),)


def _notice(args: Sequence[str]) -> tuple[str]:
    if not args:
        raise BadArguments("needs a TEXT")
    return (_text(args, "TEXT", MAX_TEXT),)


@dataclass(frozen=True)
class Command:
    """One admin command: how it is written, what it does, and its arguments' check (words in, values out)."""

    name: str
    usage: str
    summary: str
    parse: Callable[[Sequence[str]], tuple[Any, ...]]


COMMANDS = {c.name: c for c in (
    Command("who", "who", "each user online: the address seen, logged in since, idle for, TLS or not, node", _none),
    Command("kick", "kick USER [REASON]", "end USER's session; their client says why and exits", _kick),
    Command("lock", "lock USER SECONDS", "refuse USER's logins for SECONDS (ends a session too)", _lock),
    Command("unlock", "unlock USER", "lift a lock on USER, the operator's or after wrong passwords", _unlock),
    Command("notice", "notice TEXT", "every user sees [server] TEXT", _notice),
    Command("reload", "reload", "read the accounts file again, as SIGHUP does", _none),
    Command("stats", "stats", "the metrics' figures as a table", _none),
)}


def usage() -> str:
    """Every command, one a line, for a person."""
    width = max(len(c.usage) for c in COMMANDS.values())
    return "\n".join(f"  {c.usage:<{width}}  {c.summary}" for c in COMMANDS.values())


def parse(name: str, args: Sequence[str]) -> tuple[Command, tuple[Any, ...]]:
    """The command called ``name`` and its checked arguments; raises BadArguments with the words to show."""
    command = COMMANDS.get(name)
    if command is None:
        raise BadArguments(f"Unknown command {name[:40]!r}. Commands: {', '.join(COMMANDS)}")
    try:
        return command, command.parse(args)
    except BadArguments as exc:
        raise BadArguments(f"{command.name}: {exc}. Usage: {command.usage}") from None


def request(name: str, args: Sequence[str]) -> dict[str, Any]:
    return {"command": name, "args": list(args)}


def read_request(frame: dict[str, Any]) -> tuple[str, list[str]]:
    """A request frame's command and arguments; raises BadArguments if it is not one."""
    name, args = frame.get("command"), frame.get("args", [])
    if not isinstance(name, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise BadArguments('A request is {"command": NAME, "args": [WORDS]}')
    return name, args
