"""The messages this client sent and has not seen confirmed: each with the ref it gave it, and its retries.

Every ``message`` frame carries a ``ref``: this client's nonce (random, made
when it starts, so no other session of the same user shares it) and a
counter, ``k3Jd9aQ2x0Lm.17``. The server answers a connection's frames in
order and the client sends a ``ping`` after each command, so what comes before
the ``pong`` answers the message: nothing (it was taken), ``stored`` (it is
kept for an offline user), or an error (refused). On a cluster, a message to a
user on another node is answered after its pong, naming its ref: ``delivered``
(that node took it), ``stored`` (kept: that node was gone), or an error. So a
message whose pong came without an answer is still listened for (``late``:
the last ``LATE_KEPT`` of them; a single server never answers them, and they
leave as newer ones come).

Every answer is final but one: ``store_full``, "the server could not keep it
right now" (its store is full, or a cluster's engine could not be reached,
which may yet run the command). That one is worth trying again, and is: after
``RETRY_DELAYS``, with the same ref and ``retry`` set, which the server uses to
answer a message it did take after all as taken, rather than keep or deliver it
twice. Meanwhile the user sees that it waits (``waiting``), and the typed lines
wait too, so the answers still come in the order of the commands; after the
last retry it gives up and says so (``unconfirmed``). A ``store_full`` that
comes late is taken so too: the message goes again once the command on its way,
if any, has its pong.

One message goes again at a time, with its own ``ping`` (timer key ``("retry",
ref)``): the client never has two pings out, so each pong answers what it
follows. A command the server refused for the rate limit and a script sends
again (``retries.py``) is the same frame, so a message keeps its ref
(``sending``: its new answer is awaited).
"""
from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ..protocol import ErrorCode, Frame, FrameType
from .effects import ClientEffect, Print, SetTimer, ToServer
from .words import SAY

__all__ = ["RETRY_DELAYS", "LATE_KEPT", "Outbox", "new_nonce"]

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0)   # seconds before each retry: given up after about 31 s
LATE_KEPT = 256   # messages still listened for after their pong (about 50 s of them at the server's default rate)

# The errors that refuse a message (a server that names no ref sends them before its pong, as its answer).
_REFUSALS = frozenset({ErrorCode.CONTROL_CHARACTERS, ErrorCode.INVALID_USER, ErrorCode.SELF,
                       ErrorCode.BLOCKED_BY_RECIPIENT, ErrorCode.TEXT_TOO_LONG, ErrorCode.RATE_LIMITED,
                       ErrorCode.QUEUE_FULL, ErrorCode.QUOTA_EXCEEDED, ErrorCode.STORE_FULL})


def new_nonce() -> str:
    """A client's nonce: 12 URL-safe characters (72 random bits), the first part of each ref it gives."""
    return secrets.token_urlsafe(9)


@dataclass(slots=True)
class _Waiting:
    """A message sent and not confirmed yet."""
    frame: Frame                 # as first sent (to, text, ref)
    retries: int = 0             # times sent again so far
    again: bool = False          # its last sending got store_full: it goes again after its delay
    timed: bool = False          # ... and its timer is set
    answer: str | None = None    # its last sending's answer (before its pong, or late): stored, delivered, refused


class Outbox:
    """The messages sent and not confirmed, by ref (see the module's docstring)."""

    def __init__(self, nonce: str) -> None:
        self._nonce = nonce
        self._count = 0
        self._waiting: dict[str, _Waiting] = {}            # before their pong, or going again
        self._late: OrderedDict[str, _Waiting] = OrderedDict()   # pong in, no answer: one may yet come
        self.failed = False   # a message was given up, or the session ended while one waited

    def message(self, to: str, text: str) -> Frame:
        """The frame of a new message to ``to``, with a ref of its own; it waits for its answer."""
        self._count += 1
        ref = f"{self._nonce}.{self._count}"
        frame = {"type": FrameType.MESSAGE, "to": to, "text": text, "ref": ref}
        self._waiting[ref] = _Waiting(frame)
        return frame

    def retrying(self) -> bool:
        """Whether a message goes again (the typed lines wait for it)."""
        return any(waiting.again for waiting in self._waiting.values())

    def refused(self, frame: Frame, now: float) -> list[ClientEffect] | None:
        """An error: if it says a message could not be kept right now (``store_full``), what the user sees
        instead of the error (it goes again, ``arm``); None if it is another answer (shown as usual: the message
        is refused for good, or the error is not about a message)."""
        code, command = frame.get("code"), frame.get("command", FrameType.MESSAGE)
        if code not in _REFUSALS or command != FrameType.MESSAGE:
            return None
        found = self._find(frame, frame.get("user"))
        if found is None:
            return None
        waiting, late = found
        if late and waiting.answer is not None:   # taken already (delivered, stored): a late error about its
            return []                             # relay comes from a node that lost the engine's reply
        if code != ErrorCode.STORE_FULL:
            waiting.answer = "refused"
            self._late.pop(waiting.frame["ref"], None)
            return None
        if waiting.again:   # (said already: it goes again)
            return []
        ref, to = waiting.frame["ref"], waiting.frame["to"]
        if late:   # after its pong: it waits again
            del self._late[ref]
            self._waiting[ref] = waiting
        if waiting.retries >= len(RETRY_DELAYS):
            del self._waiting[ref]
            self.failed = True
            return [Print(SAY("unconfirmed", {"user": to}))]
        waiting.again, waiting.answer = True, "refused"
        return [Print(SAY("waiting", {"user": to, "seconds": f"{RETRY_DELAYS[waiting.retries]:g}"}))]

    def stored(self, frame: Frame) -> None:
        """A ``stored`` frame: the message it names is kept for its offline recipient (its words say so)."""
        found = self._find(frame, frame.get("to"))
        if found is not None:
            found[0].answer = "stored"

    def delivered(self, frame: Frame) -> None:
        """A ``delivered`` frame: the message it names reached its recipient's node (cluster mode). (One
        listened for after its pong stays so, taken: an error about its relay may still come, from a node
        that did not hear the engine's reply; it is not shown.)"""
        found = self._find(frame, frame.get("to"))
        if found is not None:
            found[0].answer = "delivered"

    def answered(self, now: float) -> list[ClientEffect]:
        """The pong after a message is in: it was taken (once sent again, the user is told so, unless ``stored``
        said it), or refused for good; or it goes again after its delay (``arm``). One taken without an answer
        is listened for still (``late``)."""
        effects: list[ClientEffect] = []
        for ref, waiting in list(self._waiting.items()):
            if waiting.again:
                continue
            del self._waiting[ref]
            if waiting.answer is None and not waiting.retries:
                self._late[ref] = waiting
                if len(self._late) > LATE_KEPT:
                    self._late.popitem(last=False)
            elif waiting.answer in (None, "delivered") and waiting.retries:
                effects.append(Print(SAY("sent_after_all", {"user": waiting.frame["to"]})))
        return effects + self.arm(now)

    def arm(self, now: float) -> list[ClientEffect]:
        """The timer of the first message that goes again, unless one is set: ``("retry", ref)``, after its
        delay (one at a time, so each has a ping of its own)."""
        going = [(ref, waiting) for ref, waiting in self._waiting.items() if waiting.again]
        if not going or any(waiting.timed for _, waiting in going):
            return []
        ref, waiting = going[0]
        waiting.timed = True
        return [SetTimer(("retry", ref), now + RETRY_DELAYS[waiting.retries])]

    def retry(self, ref: str, now: float) -> list[ClientEffect] | None:
        """The timer of message ``ref`` is due: its frame again (``ToServer``), with the same ref, marked as a
        retry; or, if a late ``delivered`` or ``stored`` naming it came meanwhile, nothing sent: it was taken
        (the user told so) and the next message that goes again is timed. None: it is not waiting any more."""
        waiting = self._waiting.get(ref)
        if waiting is None or not waiting.timed:
            return None
        if waiting.answer in ("delivered", "stored"):   # (its first sending was carried out after all)
            del self._waiting[ref]
            said: list[ClientEffect] = []
            if waiting.answer == "delivered":   # (stored said so itself)
                said.append(Print(SAY("sent_after_all", {"user": waiting.frame["to"]})))
            return said + self.arm(now)
        waiting.again = waiting.timed = False
        waiting.retries += 1
        waiting.answer = None
        return [ToServer({**waiting.frame, "retry": True})]

    def sending(self, frame: Frame) -> None:
        """``frame`` goes again as it was (a script's command refused for the rate limit): if it is a message
        waiting, its new answer is awaited."""
        ref = frame.get("ref")
        waiting = self._waiting.get(ref) if type(ref) is str and frame.get("type") == FrameType.MESSAGE else None
        if waiting is not None:
            waiting.answer = None

    def abandoned(self) -> list[ClientEffect]:
        """The session ends: the user hears of each message it was told is being tried again."""
        effects: list[ClientEffect] = [Print(SAY("unconfirmed_at_exit", {"user": waiting.frame["to"]}))
                                       for waiting in self._waiting.values() if waiting.again or waiting.retries]
        self.failed = self.failed or bool(effects)
        self._waiting.clear()
        self._late.clear()
        return effects

    def _find(self, frame: Frame, user: object) -> tuple[_Waiting, bool] | None:
        """The message an answer is about, and whether its pong is in (``late``): the one its ``ref`` names;
        else (a server that names none) the one whose answer is coming, if it is to ``user``."""
        ref = frame.get("ref")
        if type(ref) is str:
            waiting = self._waiting.get(ref)
            if waiting is not None:
                return waiting, False
            waiting = self._late.get(ref)
            return (waiting, True) if waiting is not None else None
        pending = [waiting for waiting in self._waiting.values() if not waiting.again]
        if pending and (user is None or pending[-1].frame["to"] == user):
            return pending[-1], False
        return None
