"""The messages this client sent and has not seen confirmed: each with the ref it gave it, and its retries.

Every ``message`` frame carries a ``ref``: this client's nonce (random, made
when it starts, so no other session of the same user shares it) and a
counter, ``k3Jd9aQ2x0Lm.17``. The server answers a connection's frames in
order and the client sends a ``ping`` after each command, so what comes before
the ``pong`` answers the message: nothing (it was delivered), ``stored`` (it is
kept for an offline user), or an error (refused). Every answer is final but
one: ``store_full``, "the server could not keep it right now" (its store is
full, or a cluster's engine could not be reached, which may yet run the
command). That one is worth trying again, and is: after ``RETRY_DELAYS``, with
the same ref and ``retry`` set, which the server uses to answer a message it
did keep after all as kept, rather than keep or deliver it twice. Meanwhile the
user sees that it waits (``waiting``), and the typed lines wait too, so the
answers still come in the order of the commands; after the last retry it gives
up and says so (``unconfirmed``).

The waiting messages are kept by ref: one at a time today (a command waits for
the previous one's pong), and the place for a receipt that names a ref later.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..protocol import ErrorCode, Frame, FrameType
from .effects import ClientEffect, Print, SetTimer, ToServer
from .words import SAY

__all__ = ["RETRY_DELAYS", "Outbox", "new_nonce"]

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0)   # seconds before each retry: given up after about 31 s


def new_nonce() -> str:
    """A client's nonce: 12 URL-safe characters (72 random bits), the first part of each ref it gives."""
    return secrets.token_urlsafe(9)


@dataclass(slots=True)
class _Waiting:
    """A message sent and not confirmed yet."""
    frame: Frame             # as first sent (to, text, ref)
    retries: int = 0         # times sent again so far
    again: bool = False      # its last sending got store_full: it goes again once its pong is in
    stored: bool = False     # the server said it is kept for its offline recipient


class Outbox:
    """The messages sent and not confirmed, by ref (see the module's docstring)."""

    def __init__(self, nonce: str) -> None:
        self._nonce = nonce
        self._count = 0
        self._waiting: dict[str, _Waiting] = {}

    def message(self, to: str, text: str) -> Frame:
        """The frame of a new message to ``to``, with a ref of its own; it waits for its answer."""
        self._count += 1
        ref = f"{self._nonce}.{self._count}"
        frame = {"type": FrameType.MESSAGE, "to": to, "text": text, "ref": ref}
        self._waiting[ref] = _Waiting(frame)
        return frame

    def retrying(self) -> bool:
        """Whether a message goes again once the pong that ends its answer is in."""
        return any(waiting.again for waiting in self._waiting.values())

    def refused(self, frame: Frame, now: float) -> list[ClientEffect] | None:
        """An error before the pong: if it says the message waiting could not be kept right now (``store_full``),
        what the user sees instead of the error (it is tried again); None if it is another answer (shown as
        usual: the message is refused for good, or the error is not about a message)."""
        if frame.get("code") != ErrorCode.STORE_FULL or frame.get("command") != FrameType.MESSAGE:
            return None
        waiting = self._last()
        if waiting is None or waiting.frame["to"] != frame.get("user"):
            return None
        to = waiting.frame["to"]
        if waiting.retries >= len(RETRY_DELAYS):
            del self._waiting[waiting.frame["ref"]]
            return [Print(SAY("unconfirmed", {"user": to}))]
        waiting.again = True
        return [Print(SAY("waiting", {"user": to, "seconds": f"{RETRY_DELAYS[waiting.retries]:g}"}))]

    def stored(self, frame: Frame) -> None:
        """A ``stored`` frame: the message waiting is kept for its offline recipient (its words say so)."""
        waiting = self._last()
        if waiting is not None and waiting.frame["to"] == frame.get("to"):
            waiting.stored = True

    def answered(self, now: float) -> list[ClientEffect]:
        """The pong after a message is in: it was taken (once sent again, the user is told so, unless ``stored``
        said it), or refused for good; or it goes again after its delay (the timer ``("retry", ref)``)."""
        effects: list[ClientEffect] = []
        for ref, waiting in list(self._waiting.items()):
            if waiting.again:
                effects.append(SetTimer(("retry", ref), now + RETRY_DELAYS[waiting.retries]))
                continue
            del self._waiting[ref]
            if waiting.retries and not waiting.stored:
                effects.append(Print(SAY("sent_after_all", {"user": waiting.frame["to"]})))
        return effects

    def retry(self, ref: str) -> list[ClientEffect]:
        """The timer of message ``ref`` is due: sent again, with the same ref, marked as a retry."""
        waiting = self._waiting.get(ref)
        if waiting is None or not waiting.again:
            return []
        waiting.again = False
        waiting.retries += 1
        return [ToServer({**waiting.frame, "retry": True})]

    def abandoned(self) -> list[ClientEffect]:
        """The session ends: the user hears of each message it was told is being tried again."""
        effects: list[ClientEffect] = [Print(SAY("unconfirmed_at_exit", {"user": waiting.frame["to"]}))
                                       for waiting in self._waiting.values() if waiting.again or waiting.retries]
        self._waiting.clear()
        return effects

    def _last(self) -> _Waiting | None:
        """The message whose answer is coming (the last sent: a command waits for the one before)."""
        return next(reversed(self._waiting.values()), None)
