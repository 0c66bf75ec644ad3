"""The commands the user types: each declared once, on its handler, with what it needs to be parsed and completed.

``@command(name, *params)`` declares a method of ``CommandLine`` the handler of
``name``; its help text is ``COMMAND_HELP[name]`` (reactor/client/words.py),
and the help list, a command's usage, its arity, "text takes the rest of the
line" and Tab completion all derive from the declaration. ``CommandLine`` acts on
the private chats (``PrivateChats``) and offers for completion the other users
online that ``Reports`` keeps (reactor/client/reports.py), telling it of each
``whoelse`` and ``whoelsesince`` sent.

Text holding a control character (a line break is text) is not sent
(``message``, ``broadcast``, ``private``), nor text longer than the server takes
(``message``, ``broadcast``: their text parameter's ``most``); ``text_limit``
tells the line editor where a line being typed passes that, so the excess shows.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ..protocol import HISTORY_COUNT, MAX_AWAY, MAX_HISTORY, MAX_TEXT, ErrorCode, FrameType
from ..text import TEXT_CONTROL
from .effects import ClientEffect, Print, ToServer
from .outbox import Outbox
from .private_chat import PrivateChats
from .reports import Reports
from .words import COMMAND_HELP, ERRORS, SAY, help_text

__all__ = ["Choices", "Param", "Command", "COMMANDS", "command", "CommandLine", "HELP", "text_limit"]


class Choices(Enum):
    """What Tab completes a parameter with."""
    COMMAND = "a command"
    ONLINE_USER = "another user online"
    CHAT_USER = "a user with an open private chat"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a command: ``text`` takes the rest of the line, spaces and all (so only the
    last one may), at most ``most`` characters of it when given; an ``optional`` one may be left out (so
    only the last ones may)."""
    name: str
    text: bool = False
    optional: bool = False
    completes: Choices | None = None
    most: int | None = None

    @property
    def usage(self) -> str:
        return f"[<{self.name}>]" if self.optional else f"<{self.name}>"


USER = Param("user", completes=Choices.ONLINE_USER)
CHAT_USER = Param("user", completes=Choices.CHAT_USER)
TEXT = Param("text", text=True)
SENT_TEXT = Param("text", text=True, most=MAX_TEXT)   # through the server, which takes at most so much

CommandHandler: TypeAlias = Callable[..., "list[ClientEffect]"]


@dataclass(frozen=True, slots=True)
class Command:
    """A command the user types: its name, its parameters, what it does (for help) and its handler,
    called as ``handler(command_line, *words, now=now)``. Usage, help, arity and completion derive from it."""
    name: str
    params: tuple[Param, ...]
    does: str
    handler: CommandHandler

    def __post_init__(self) -> None:
        if any(p.text for p in self.params[:-1]):
            raise ValueError(f"{self.name}: only the last parameter may take the rest of the line")
        if any(p.optional and not later.optional for p, later in zip(self.params, self.params[1:], strict=False)):
            raise ValueError(f"{self.name}: only the last parameters may be optional")

    @property
    def usage(self) -> str:
        return " ".join([self.name, *(p.usage for p in self.params)])

    def words(self, rest: str) -> list[str] | None:
        """The parameters given in ``rest`` (the line after the name), or None if they do not fit."""
        takes_text = bool(self.params) and self.params[-1].text
        words = rest.split(None, len(self.params) - 1) if takes_text else rest.split()
        required = sum(not p.optional for p in self.params)
        return words if required <= len(words) <= len(self.params) else None


COMMANDS: dict[str, Command] = {}   # in the order help lists them: the order of their declarations


def command(name: str, *params: Param) -> Callable[[CommandHandler], CommandHandler]:
    """Declare the decorated method the handler of the command ``name`` (its help: ``COMMAND_HELP[name]``)."""
    def declare(handler: CommandHandler) -> CommandHandler:
        COMMANDS[name] = Command(name, params, COMMAND_HELP[name], handler)
        return handler
    return declare


def refuse_text(text: str, limit: bool = True) -> list[ClientEffect]:
    """Why ``text`` cannot be sent (control characters; with ``limit``, too long), or nothing."""
    if TEXT_CONTROL.search(text):
        return [Print(ERRORS[ErrorCode.CONTROL_CHARACTERS].shown({}))]
    if limit and len(text) > MAX_TEXT:
        return [Print(ERRORS[ErrorCode.TEXT_TOO_LONG].shown({"max": MAX_TEXT}))]
    return []


# Where a command's text begins, after k parameters: blanks, then each parameter and the blanks after it.
_BEFORE_TEXT = [re.compile(r"\s*" + r"\S+\s+" * k) for k in range(4)]


def text_limit(line: str) -> int | None:
    """Where ``line`` passes what can be sent, as an offset into it: the first character of its text
    past its command's text parameter's ``most`` (None: nothing is too long). Read as ``CommandLine.run``
    reads the line (stripped, the name up to the first space, the text after the other parameters)."""
    start = len(line) - len(line.lstrip())
    name, space, _ = line[start:].partition(" ")
    declared = COMMANDS.get(name)
    if declared is None or not space or not declared.params or declared.params[-1].most is None:
        return None
    before = _BEFORE_TEXT[len(declared.params) - 1].match(line, start + len(name) + 1)
    if before is None:
        return None
    at, end = before.end(), len(line.rstrip())
    most = declared.params[-1].most
    return at + most if end - at > most else None


class CommandLine:
    """Runs the lines typed while logged in; ``leave(now)``: what the user's wish to log out does; ``outbox``
    gives each message its ref and waits for its answer; ``reports`` keeps who is online; ``change_password()``:
    what the password command does (its dialogue begins)."""

    def __init__(self, private: PrivateChats, leave: Callable[[float], list[ClientEffect]], outbox: Outbox,
                 reports: Reports, change_password: Callable[[], list[ClientEffect]] = list) -> None:
        self._private = private
        self._leave = leave
        self._outbox = outbox
        self._reports = reports
        self._change_password = change_password   # begins the password dialogue (reactor/client/password_change.py)

    def run(self, line: str, now: float) -> list[ClientEffect]:
        """One typed line (stripped): a ``y`` or ``n`` answers the oldest private-chat request, if one waits."""
        if not line:
            return []
        if self._private.has_question() and line.lower() in ("y", "n"):
            return self._private.answer(line.lower() == "y")
        name, _, rest = line.partition(" ")
        declared = COMMANDS.get(name)
        if declared is None:
            return [Print(SAY("invalid_command"))]
        words = declared.words(rest)
        if words is None:
            return [Print(SAY("usage_error", {"usage": declared.usage}))]
        return declared.handler(self, *words, now=now)

    # -- completion ------------------------------------------------------------

    def completions(self, before_cursor: str) -> list[str]:
        """Whole words that can replace the blank-separated word before the cursor: a command
        as the first word (or after ``help``), a user as the first word after a command."""
        words = before_cursor.split(" ")
        word = words[-1]
        if len(words) == 1:
            kind: Choices | None = Choices.COMMAND
        else:
            declared = COMMANDS.get(words[0])
            params = declared.params if declared is not None else ()
            kind = params[len(words) - 2].completes if len(words) - 2 < len(params) else None
        return sorted(choice for choice in self._choices(kind) if choice.startswith(word))

    def _choices(self, kind: Choices | None) -> Collection[str]:
        if kind is Choices.COMMAND:
            return COMMANDS
        if kind is Choices.ONLINE_USER:
            return self._reports.online_users()
        if kind is Choices.CHAT_USER:
            return self._private.chats()
        return ()

    # -- the commands, in the order help lists them ----------------------------

    @command("message", USER, SENT_TEXT)
    def _message(self, user: str, text: str, *, now: float) -> list[ClientEffect]:
        return refuse_text(text) or [ToServer(self._outbox.message(user, text))]

    @command("broadcast", SENT_TEXT)
    def _broadcast(self, text: str, *, now: float) -> list[ClientEffect]:
        return refuse_text(text) or [ToServer({"type": FrameType.BROADCAST, "text": text})]

    @command("whoelse")
    def _whoelse(self, *, now: float) -> list[ClientEffect]:
        self._reports.asked(True)
        return [ToServer({"type": FrameType.WHOELSE})]

    @command("whoelsesince", Param("seconds"))
    def _whoelsesince(self, seconds: str, *, now: float) -> list[ClientEffect]:
        try:
            value = float(seconds)
        except ValueError:
            return [Print(SAY("not_seconds", {"seconds": seconds}))]
        if not math.isfinite(value):
            return [Print(SAY("infinite_seconds"))]
        if value < 0:
            return [Print(SAY("negative_seconds"))]
        number: int | float = int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
        self._reports.asked(False)
        return [ToServer({"type": FrameType.WHOELSESINCE, "seconds": number})]

    @command("block", USER)
    def _block(self, user: str, *, now: float) -> list[ClientEffect]:
        return [ToServer({"type": FrameType.BLOCK, "user": user})]

    @command("unblock", USER)
    def _unblock(self, user: str, *, now: float) -> list[ClientEffect]:
        return [ToServer({"type": FrameType.UNBLOCK, "user": user})]

    @command("startprivate", USER)
    def _startprivate(self, user: str, *, now: float) -> list[ClientEffect]:
        return self._private.start(user)

    @command("private", CHAT_USER, TEXT)
    def _private_text(self, user: str, text: str, *, now: float) -> list[ClientEffect]:
        if not self._private.chatting(user):
            return [Print(SAY("not_chatting", {"user": user}))]
        return refuse_text(text, limit=False) or self._private.send(user, text)

    @command("stopprivate", CHAT_USER)
    def _stopprivate(self, user: str, *, now: float) -> list[ClientEffect]:
        if not self._private.chatting(user):
            return [Print(SAY("not_chatting", {"user": user}))]
        return self._private.stop(user)

    @command("history", Param("user", completes=Choices.ONLINE_USER), Param("n", optional=True))
    def _history(self, user: str, n: str | None = None, *, now: float) -> list[ClientEffect]:
        """``user``'s history, or (``broadcast``) the broadcasts'."""
        count = HISTORY_COUNT
        if n is not None:
            count = int(n) if n.isascii() and n.isdigit() else 0
            if not 1 <= count <= MAX_HISTORY:
                return [Print(SAY("bad_count", {"most": MAX_HISTORY, "count": n}))]
        frame: dict[str, object] = {"type": FrameType.HISTORY, "n": count}
        frame.update({"broadcast": True} if user == "broadcast" else {"user": user})
        return [ToServer(frame)]

    @command("forget", Param("user", completes=Choices.ONLINE_USER))
    def _forget(self, user: str, *, now: float) -> list[ClientEffect]:
        frame: dict[str, object] = {"type": FrameType.FORGET}
        frame.update({"broadcast": True} if user == "broadcast" else {"user": user})
        return [ToServer(frame)]

    @command("away", Param("text", text=True, optional=True, most=MAX_AWAY))
    def _away(self, text: str | None = None, *, now: float) -> list[ClientEffect]:
        if text is not None and TEXT_CONTROL.search(text):
            return [Print(SAY("away_control"))]
        if text is not None and len(text) > MAX_AWAY:
            return [Print(SAY("away_too_long", {"max": MAX_AWAY}))]
        return [ToServer({"type": FrameType.AWAY, "text": text or ""})]

    @command("back")
    def _back(self, *, now: float) -> list[ClientEffect]:
        return [ToServer({"type": FrameType.BACK})]
    @command("password")
    def _password(self, *, now: float) -> list[ClientEffect]:
        return self._change_password()

    @command("logout")
    def _logout(self, *, now: float) -> list[ClientEffect]:
        return self._leave(now)

    @command("help", Param("command", optional=True, completes=Choices.COMMAND))
    def _help(self, name: str | None = None, *, now: float) -> list[ClientEffect]:
        if name is None:
            return [Print(HELP)]
        declared = COMMANDS.get(name)
        if declared is None:
            return [Print(SAY("no_command", {"name": name}))]
        return [Print(SAY("usage", {"usage": declared.usage, "does": declared.does[0].upper() + declared.does[1:]}))]


HELP = help_text((c.usage, c.does) for c in COMMANDS.values())
