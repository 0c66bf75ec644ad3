"""Which of the user's messages their recipients' clients have shown: quiet, but for a message not shown in time.

The server hands a live message to a client that sends receipts with its
sender's ``ref``; that client answers ``shown``, and the sender gets ``read``
naming the refs (a stored message's ``read`` comes when its recipient's client
acknowledges it, later, on whatever server node). ``Outbox`` says when a message
was taken (``taken``: handed on, or kept for an offline recipient) or, on a
cluster, turned out kept (``kept``) or refused (``dropped``) after all.

What the user sees: nothing for a message shown in time. A message taken live
and not shown within ``READ_WAIT`` seconds gets one line, ``Not yet read by
<user>: <its start>``, and if it is shown later, ``Read by <user>: <its
start>``. With ``every`` (``--receipts``), each receipt is shown as it comes.
A message kept for later was said so (``stored``), and a refused one got its
error: neither gets the waiting line.

Only the last ``RECEIPTS_KEPT`` messages are listened for (the oldest
forgotten first), and a ``read`` is believed only for a ref this client gave
to the very user it names, once: a receipt is never shown twice, nor for a
message this session did not send.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..protocol import Frame, FrameType
from .effects import ClientEffect, Print, SetTimer
from .words import FRAME_WORDS, SAY

__all__ = ["READ_WAIT", "RECEIPTS_KEPT", "START", "Receipts", "start_of"]

READ_WAIT = 5.0       # seconds a message taken live may go unshown before the user hears of it
RECEIPTS_KEPT = 256   # messages listened for at most (about 50 s of them at the server's default rate)
START = 30            # characters of a message's text that name it on a receipt's line
_READ_WORDS = FRAME_WORDS[FrameType.READ]


def start_of(text: str) -> str:
    """The first line of ``text``, cut to ``START`` characters (``...`` when cut)."""
    line, _, rest = text.partition("\n")
    if len(line) > START or rest:
        return line[:START].rstrip() + "..."
    return line


@dataclass(slots=True)
class _Sent:
    """A message taken and not yet shown."""
    to: str
    start: str           # start_of its text
    kept: bool = False   # kept for later (``stored``): no waiting line
    told: bool = False   # the waiting line was shown: its receipt will be too


class Receipts:
    """The messages taken and not yet shown, by ref (see the module's docstring)."""

    def __init__(self, every: bool = False, listening: bool = True) -> None:
        """``every``: show each receipt (``--receipts``), not only one that comes late; not ``listening``: a
        client without receipts, which keeps nothing."""
        self.every = every
        self._listening = listening
        self._sent: OrderedDict[str, _Sent] = OrderedDict()

    def taken(self, frame: Frame, kept: bool, now: float) -> list[ClientEffect]:
        """The message ``frame`` (to, text, ref) was taken: handed on, or (``kept``) kept for later. Its timer,
        ``("unread", ref)``, if it goes to be shown now."""
        if not self._listening:
            return []
        ref = frame["ref"]
        self._sent[ref] = _Sent(frame["to"], start_of(frame["text"]), kept)
        if len(self._sent) > RECEIPTS_KEPT:
            self._sent.popitem(last=False)
        return [] if kept else [SetTimer(("unread", ref), now + READ_WAIT)]

    def kept(self, ref: str) -> None:
        """Message ``ref``, taken as handed on, was kept for later after all (cluster mode: its node had died)."""
        sent = self._sent.get(ref)
        if sent is not None:
            sent.kept = True

    def dropped(self, ref: str) -> None:
        """Message ``ref`` was refused after all, or goes again (it is taken anew then)."""
        self._sent.pop(ref, None)

    def read(self, frame: Frame) -> list[ClientEffect]:
        """A ``read`` frame: ``by``'s client showed the messages ``refs`` names (each once; any other ignored)."""
        by, refs = frame.get("by"), frame.get("refs")
        if type(by) is not str or type(refs) is not list:
            return []
        lines: list[str] = []
        for ref in refs:
            sent = self._sent.get(ref) if type(ref) is str else None
            if sent is None or sent.to != by:
                continue
            del self._sent[ref]
            if self.every or sent.told:
                lines.append(_READ_WORDS("read", {"user": by, "start": sent.start}))
        return [Print("\n".join(lines))] if lines else []

    def due(self, ref: str) -> list[ClientEffect]:
        """The timer of message ``ref``: if it is still not shown (and not kept for later), the user hears so."""
        sent = self._sent.get(ref)
        if sent is None or sent.kept or sent.told:
            return []
        sent.told = True
        return [Print(SAY("unread", {"user": sent.to, "start": sent.start}))]

    def clear(self) -> None:
        """The session ended: no receipt can come for these."""
        self._sent.clear()
