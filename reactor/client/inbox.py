"""The messages that come to the user: shown with when they came, a stored one once, and each said shown.

A stored message (one with an ``id``, kept while the user was offline) is
shown once, however often it comes again, with when it was ``sent``, and
acknowledged: one ``ack`` for a burst of them, as soon as the loop turns (the
``ack`` timer), and before any logout (``acknowledge``: after the logout the
server reads nothing). A live message that comes with its sender's ``ref``, to
a client that sends receipts, is said shown ``SHOWN_DELAY`` later (the
``shown`` timer), with whatever else was shown by then, in one ``shown`` frame
(reactor/client/receipts.py is the sender's side). Neither is acknowledged once
the session is not active (``active()`` false: the logout is sent).

Wall-clock time comes only from the host: ``wall_offset`` added to ``now``
(stored messages carry their own ``sent``); ``tz`` is the time zone shown
(None: the machine's local time).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from ..protocol import Frame, FrameType
from .effects import ClientEffect, Print, SetTimer, ToServer
from .frames import on_frame
from .words import Words, hanging

__all__ = ["Inbox", "SHOWN_DELAY", "SHOWN_PAGE"]

SHOWN_PAGE = 500     # refs in one shown frame at most (at most 64 characters each: about 34 KB)
# Seconds a live message's shown waits for others: one frame for a burst. A receipt costs the server about as much
# as the relay of its message when each comes alone (callgrind, a message and its receipt: 94,600 -> 194,300
# instructions; 56,000 -> 70,100 for 20 at a time); its sender hears of it only after READ_WAIT (5 s) anyway.
SHOWN_DELAY = 1.0


class Inbox:
    """The messages shown and not yet acknowledged or said shown (see the module's docstring). ``receipts``: the
    client says which live messages it showed; ``live_stamps``: live messages show when they came."""

    def __init__(self, *, active: Callable[[], bool], receipts: bool, live_stamps: bool, wall_offset: float,
                 tz: tzinfo | None) -> None:
        self._active = active
        self._receipts = receipts
        self._live_stamps = live_stamps
        self._wall_offset = wall_offset
        self._tz = tz
        self._shown: set[int] = set()              # ids of stored messages already shown
        self._unacked: list[int] = []
        self._unshown: list[str] = []              # refs of live messages shown, to say so (``shown``)

    @on_frame(FrameType.MESSAGE, lines="text")
    def _on_message(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        sender, text = frame.get("from"), frame.get("text")
        if type(sender) is not str or type(text) is not str:
            return []
        effects: list[ClientEffect] = []
        mid = frame.get("id")
        if type(mid) is int:           # a stored message: acknowledge it, show it once
            if not self._active():
                return []              # logout is sent: no ack could precede it, so it waits for the next login
            if not self._unacked:
                effects.append(SetTimer(("ack",), now))   # one ack for the whole burst (and what else was shown)
            self._unacked.append(mid)
            if mid in self._shown:
                return effects
            self._shown.add(mid)
        elif type(frame.get("ref")) is str and self._receipts and self._active():
            # a live one with its sender's ref: say it was shown, a second later (with what else was shown by then)
            if not self._unshown:
                effects.append(SetTimer(("shown",), now + SHOWN_DELAY))
            self._unshown.append(frame["ref"])
        stamp = self.sent_stamp(frame.get("sent")) if type(mid) is int else self.live_stamp(now)
        shown = say("broadcast" if frame.get("broadcast") is True else "message", {"from": sender, "text": text})
        effects.append(Print(hanging(stamp + shown, text)))
        return effects

    def sent_stamp(self, sent: Any) -> str:
        """``[Nov 24 14:03] `` for a stored message's ``sent``; nothing when it is missing or absurd."""
        if type(sent) not in (int, float):
            return ""
        try:
            when = datetime.fromtimestamp(sent, self._tz)
        except (OverflowError, OSError, ValueError):
            return ""
        return f"[{when:%b} {when.day} {when:%H:%M}] "

    def live_stamp(self, now: float) -> str:
        """``[14:03] `` when the user asked for timestamps on live messages."""
        if not self._live_stamps:
            return ""
        return f"[{datetime.fromtimestamp(now + self._wall_offset, self._tz):%H:%M}] "

    def acknowledge(self) -> list[ClientEffect]:
        """The ack of the stored messages shown since the last one, and the ``shown`` of the live ones that had
        a ref (an ack timer still armed then finds none)."""
        ids, self._unacked = self._unacked, []
        refs, self._unshown = self._unshown, []
        said: list[ClientEffect] = [ToServer({"type": FrameType.ACK, "ids": ids})] if ids else []
        return said + [ToServer({"type": FrameType.SHOWN, "refs": refs[i:i + SHOWN_PAGE]})
                       for i in range(0, len(refs), SHOWN_PAGE)]
