"""History: the commands that read and forget a user's conversations, and each session's reads on their way.

What is kept is written by the durability (``reactor/server/durability.py``),
not here: a message relayed live or a broadcast is noted with a ``Remember``
(``reactor/server/chat.py``; nothing waits for it), a message kept for later
is written with its ``KeepMessage``, and each session's start and end with a
``NoteSession`` (a broadcast was got by whoever was logged in). Peer-to-peer
private messages never pass the server, so they are in no history.

``history`` asks the host to read (``ReadHistory``); its answer
(``read``) goes out as ``history`` frames, oldest message first, each frame
at most ``HISTORY_CHUNK`` bytes of messages (and so within the frame limit:
one message of the longest text fits alone), one frame per ``writable``, as a
mailbox goes; a ``ping`` is answered after the last. A session's reads go one
at a time: a ``history`` that comes while one is on its way waits behind it.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from ..protocol import HISTORY_COUNT, MAX_HISTORY, ErrorCode, Frame, FrameType
from .commands import Field, any_value, command
from .effects import ForgetHistory, HistoryRow, NoteSession, ReadHistory, Send, Step, WhenWritable, error, reply
from .limits import Limits
from .mail import Mail
from .sessions import Session

__all__ = ["HISTORY_CHUNK", "History", "Reading"]

HISTORY_CHUNK = 32 * 1024   # bytes of messages in one history frame, about (one message alone may pass it)
_HISTORY = FrameType.HISTORY.value
_PONG = {"type": FrameType.PONG.value}
_HISTORY_OFF = error(ErrorCode.HISTORY_OFF)
_NEEDS_PEER = "history needs a user, or broadcast: true"


def count_problem(n: object) -> str | None:
    """What is wrong with a history's ``n`` (how many messages), if anything (None: the default)."""
    if n is None or type(n) is int and 1 <= n <= MAX_HISTORY:
        return None
    return f"history shows from 1 to {MAX_HISTORY} messages"


@dataclass(slots=True)
class Reading:
    """A session's history reads: the one under way (``reading``), its frames still to send, the reads after it."""
    reading: bool = True
    frames: deque[Frame] = field(default_factory=deque)
    waiting: deque[ReadHistory] = field(default_factory=deque)


class History:
    """The history commands and the reads on their way; ``keeps``: whether this server keeps history at all."""

    def __init__(self, limits: Limits, mail: Mail, accounts: dict[str, str], *, keeps: bool) -> None:
        self._limits = limits
        self._mail = mail
        self._accounts = accounts   # (Logins' dict, changed in place)
        self.keeps = keeps

    def _peer(self, s: Session, user: object, broadcast: object, command_name: str) -> tuple[str | None, Frame | None]:
        """Whose conversation a ``history`` or ``forget`` names (None: the broadcasts), or why it will not do."""
        if not self.keeps:
            return None, _HISTORY_OFF
        if broadcast is True:
            return None, None
        if type(user) is not str:
            return None, error(ErrorCode.BAD_ARGUMENT, detail=_NEEDS_PEER)
        if user not in self._accounts:
            return None, error(ErrorCode.INVALID_USER)
        if user == s.user:
            return None, error(ErrorCode.SELF, command=command_name)
        return user, None

    # -- sessions ------------------------------------------------------------

    def began(self, user: str, now: float) -> list[Step]:
        """``user`` logged in here at ``now``: from now on it gets broadcasts."""
        return [NoteSession(user, True, self._mail.sent(now))] if self.keeps else []

    def ended(self, user: str, now: float) -> list[Step]:
        """``user`` logged out here at ``now``."""
        return [NoteSession(user, False, self._mail.sent(now))] if self.keeps else []

    # -- commands --------------------------------------------------------------

    @command(FrameType.HISTORY, any_value("user"), any_value("broadcast"),
             Field("n", count_problem, ErrorCode.BAD_ARGUMENT))
    def history(self, s: Session, now: float, user: object, broadcast: object, n: int | None) -> list[Step]:
        """Ask the host for the last ``n`` messages with ``user`` (or the broadcasts): one token."""
        peer, refusal = self._peer(s, user, broadcast, "history")
        if refusal is not None:
            return reply(s.id, refusal)
        spent = self._limits.spend(s.id, s.user, 1, "history", now)
        if spent:
            return spent
        request = ReadHistory(s.id, s.user, peer, HISTORY_COUNT if n is None else n)
        if s.history is not None:   # one read at a time: after the one on its way
            s.history.waiting.append(request)
            return []
        s.history = Reading()
        return [request]

    @command(FrameType.FORGET, any_value("user"), any_value("broadcast"))
    def forget(self, s: Session, now: float, user: object, broadcast: object) -> list[Step]:
        """Forget ``s``'s copy of its conversation with ``user`` (or its broadcasts): answered once kept."""
        peer, refusal = self._peer(s, user, broadcast, "forget")
        if refusal is not None:
            return reply(s.id, refusal)
        spent = self._limits.spend(s.id, s.user, 1, "forget", now)
        if spent:
            return spent
        answer: Frame = {"type": FrameType.FORGOTTEN.value}
        if peer is None:
            answer["broadcast"] = True
        else:
            answer["user"] = peer
        return [ForgetHistory(s.user, peer, Send((s.id,), answer))]

    # -- the reads on their way ---------------------------------------------------

    def read(self, s: Session, request: ReadHistory, rows: list[HistoryRow]) -> list[Step]:
        """The host read ``request``'s rows (newest first): its frames go out, after any mailbox on its way."""
        reading = s.history
        if reading is None or not reading.reading:
            return []
        reading.reading = False
        reading.frames.extend(history_frames(request, rows))
        return [] if s.mailbox else self.next_chunk(s)

    def next_chunk(self, s: Session) -> list[Step]:
        """The next frame of ``s``'s history (then WhenWritable if more waits), or the next read, or, once all is
        out, the pongs that waited."""
        reading = s.history
        if reading is None or reading.reading:
            return []
        if reading.frames:
            effects: list[Step] = [Send((s.id,), reading.frames.popleft())]
            if reading.frames or reading.waiting:
                effects.append(WhenWritable(s.id))
                return effects
            return effects + self._done(s)
        if reading.waiting:
            reading.reading = True
            return [reading.waiting.popleft()]
        return self._done(s)

    def _done(self, s: Session) -> list[Step]:
        s.history = None
        if s.pongs and not s.mailbox:
            pongs, s.pongs = s.pongs, 0
            return [Send((s.id,), _PONG)] * pongs
        return []


def history_frames(request: ReadHistory, rows: list[HistoryRow]) -> list[Frame]:
    """``rows`` (newest first) as history frames, oldest first, at most ``HISTORY_CHUNK`` bytes of messages each
    (as the wire spells them; a longer message alone); none at all: one frame with no messages."""
    def frame() -> Frame:
        if request.peer is None:
            return {"type": _HISTORY, "broadcast": True, "messages": []}
        return {"type": _HISTORY, "user": request.peer, "messages": []}
    frames = [frame()]
    size = 0
    for sender, text, sent in reversed(rows):
        item: Frame = {"from": sender, "text": text}
        if sent is not None:
            item["sent"] = sent
        bytes_ = len(json.dumps(item)) + 2
        if size and size + bytes_ > HISTORY_CHUNK:
            frames.append(frame())
            size = 0
        frames[-1]["messages"].append(item)
        size += bytes_
    return frames
