"""Away: who is away (here, and on a cluster on every node) with what words, and whom each away user's words
have answered this away period.

``away [text]`` marks its user away until ``back`` or its logout; ``whoelse``
marks away users (``reactor/server/chat.py``), and a message to one gets its
sender an ``away_reply`` (``<user> is away: <text>``), once per sender per away
period (a new ``away`` starts a new one). The answer comes from the node the
away user is on (``reply``), so a cluster node publishes its users' changes
(``Publish`` ``away``), and learns the others' (``remote``).
"""
from __future__ import annotations

from ..protocol import MAX_AWAY, ErrorCode, FrameType
from ..text import TEXT_CONTROL
from .commands import command, valid
from .effects import Publish, Step, error, reply
from .sessions import Session, Sessions

__all__ = ["Away"]

_AWAY = FrameType.AWAY.value
_AWAY_REPLY = FrameType.AWAY_REPLY.value


class Away:
    """Away users (anywhere) and their words; the senders each away user of this node has answered."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self.texts: dict[str, str] = {}        # away user -> its words ('': none)
        self._told: dict[str, set[str]] = {}   # away user here -> the senders answered this away period

    @command(FrameType.AWAY, valid("text", f"a string of at most {MAX_AWAY} characters, or absent",
                                   lambda text: text is None or type(text) is str))
    def away(self, s: Session, now: float, text: str | None) -> list[Step]:
        text = (text or "").strip()
        if TEXT_CONTROL.search(text):
            return reply(s.id, error(ErrorCode.CONTROL_CHARACTERS))
        if len(text) > MAX_AWAY:
            return reply(s.id, error(ErrorCode.TEXT_TOO_LONG, max=MAX_AWAY))
        self.texts[s.user] = text
        self._told[s.user] = set()   # a new away period
        effects = reply(s.id, {"type": _AWAY, "text": text})
        if self._sessions.remote:   # cluster mode: every node marks it
            effects.append(Publish({"kind": "away", "user": s.user, "text": text}))
        return effects

    @command(FrameType.BACK)
    def back(self, s: Session, now: float) -> list[Step]:
        if s.user not in self.texts:
            return reply(s.id, error(ErrorCode.NOT_AWAY))
        self.left(s.user)
        effects = reply(s.id, {"type": FrameType.BACK.value})
        if self._sessions.remote:
            effects.append(Publish({"kind": "away", "user": s.user, "text": None}))
        return effects

    def reply(self, to: str, sender: str) -> dict[str, str] | None:
        """The ``away_reply`` ``sender`` gets for its message to ``to`` (a user of this node), if ``to`` is away
        and has not answered ``sender`` this away period."""
        text = self.texts.get(to)
        if text is None:
            return None
        told = self._told.setdefault(to, set())
        if sender in told:
            return None
        told.add(sender)
        return {"type": _AWAY_REPLY, "user": to, "text": text}

    def left(self, user: str) -> None:
        """``user`` is back, or logged out (here or on another node)."""
        self.texts.pop(user, None)
        self._told.pop(user, None)

    def remote(self, user: str, text: str | None) -> None:
        """Cluster mode: ``user``, of another node, is away with ``text`` (None: back)."""
        if text is None:
            self.left(user)
        elif user not in self._sessions.online:
            self.texts[user] = text

    def reset(self, texts: dict[str, str]) -> None:
        """Cluster mode: the engine's view of who is away, read at once; this node's own users stay as they are."""
        online = self._sessions.online
        mine = {user: text for user, text in self.texts.items() if user in online}
        self.texts.clear()   # (in place: the relay holds this very dict)
        self.texts.update((user, text) for user, text in texts.items() if user not in online)
        self.texts.update(mine)
