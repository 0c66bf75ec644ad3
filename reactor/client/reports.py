"""What the server reports that the user reads: who is online (kept, for Tab completion), history, away, notices.

``Reports`` takes the server's answers that list or report users and past
messages, and the news it sends unasked: the pages of a ``whoelse`` or
``whoelsesince`` answer (``users``, those away marked once its last page is
in), who else was online at the login (``online``), who came and went
(``presence``), a conversation's ``history`` and its ``forgotten``, the user's
own ``away`` and ``back`` and another's ``away_reply``, and the operator's
``notice``. None of them changes the session (reactor/client/rules.py): each
shows its words, and the first three keep the roster of the other users
online, as far as the login, presence notices and ``whoelse`` have told, which
Tab completion offers (``CommandLine``, reactor/client/commands.py).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol import Frame, FrameType
from ..text import visible, visible_lines
from .effects import ClientEffect, Print
from .frames import on_frame
from .words import Words, hanging

__all__ = ["Reports"]


class Reports:
    """The roster of who is online and the frames that report users and history (see the module's docstring);
    ``sent_stamp(sent)``: what a stored message shows before it, for when it was ``sent``."""

    def __init__(self, sent_stamp: Callable[[Any], str]) -> None:
        self._sent_stamp = sent_stamp
        self._online: set[str] = set()             # other users online, as the login, presence and whoelse told
        self._asked: deque[bool] = deque()         # users answers to come: True for whoelse, False for since
        self._listed: list[str] = []               # the names of the answer whose pages are coming, so far
        self._listed_away: set[str] = set()        # those marked away in its pages so far

    def online_users(self) -> frozenset[str]:
        """The other users online, as far as the login, presence notices and ``whoelse`` have told."""
        return frozenset(self._online)

    def asked(self, whoelse: bool) -> None:
        """A ``whoelse`` (``whoelse``) or a ``whoelsesince`` was sent: the server answers them in order, and the
        answer to ``whoelse`` is exactly who is online."""
        self._asked.append(whoelse)

    @on_frame(FrameType.USERS)
    def _on_users(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """The names one a line (the answer to whoelse or whoelsesince), those away marked, once its last page
        is in."""
        names = frame.get("names")
        if type(names) is not list:
            return []
        away = frame.get("away")
        if type(away) is list:
            self._listed_away.update(n for n in away if type(n) is str)
        self._listed += [n for n in names if type(n) is str]
        if frame.get("more") is True:
            return []
        listed, self._listed = self._listed, []
        if self._asked and self._asked.popleft():
            self._online = set(listed)
        away, self._listed_away = self._listed_away, set()
        shown = [say("away", {"user": n}) if n in away else n for n in listed]
        return [Print("\n".join(shown) if listed else say("nobody"))]

    def _presence(self, user: str, online: bool) -> None:
        """``user`` came online, or went."""
        if online:
            self._online.add(user)
        else:
            self._online.discard(user)

    @on_frame(FrameType.ONLINE)
    def _on_online(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Who else was online at the login (a page of them): for completion, not shown."""
        users = frame.get("users")
        for user in users if type(users) is list else ():
            if type(user) is str:
                self._presence(user, True)
        return []

    @on_frame(FrameType.PRESENCE)
    def _on_presence(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """One line per user, whether the frame lists them (``users``) or names one (``user``)."""
        users, online = frame.get("users"), frame.get("online") is True
        if type(users) is not list:
            users = [frame.get("user")]
        if not users:
            return []
        for user in users:
            if type(user) is str:
                self._presence(user, online)
        went = "online" if online else "offline"
        return [Print("\n".join(say(went, {"user": user}) for user in users))]

    @on_frame(FrameType.HISTORY)
    def _on_history(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Each message a line (or more), oldest first, with when it was sent and who wrote it; none: so said.
        The messages are a list of objects, whose strings are made visible here."""
        messages = frame.get("messages")
        if type(messages) is not list:
            return []
        broadcast = frame.get("broadcast") is True
        lines = []
        for item in messages:
            if type(item) is not dict or type(item.get("from")) is not str or type(item.get("text")) is not str:
                continue
            text = visible_lines(item["text"])
            shown = say("broadcast" if broadcast else "message", {"from": visible(item["from"]), "text": text})
            lines.append(hanging(self._sent_stamp(item.get("sent")) + shown, text))
        if lines:
            return [Print("\n".join(lines))]
        if messages:
            return []
        return [Print(say("no_broadcasts") if broadcast else say("none", frame))]

    @on_frame(FrameType.FORGOTTEN)
    def _on_forgotten(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("broadcasts") if frame.get("broadcast") is True else say("forgotten", frame))]

    @on_frame(FrameType.AWAY)
    def _on_away(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("away_text", frame) if frame.get("text") else say("away"))]

    @on_frame(FrameType.BACK)
    def _on_back(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("back"))]

    @on_frame(FrameType.AWAY_REPLY)
    def _on_away_reply(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        if type(frame.get("user")) is not str:
            return []
        return [Print(say("away_text", frame) if frame.get("text") else say("away", frame))]

    @on_frame(FrameType.NOTICE)
    def _on_notice(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """The operator's words (made visible, as every string from the network)."""
        if type(frame.get("text")) is not str:
            return []
        return [Print(say("notice", frame))]
