"""Receipts: a sender learns, by ref, which of its messages its recipient's client showed (``read``).

A client that says so in its ``hello`` (``"receipts": true``) is handed each
live message that has a ``ref`` with that ref, and answers ``shown`` with the
refs of those it showed. Its session remembers the refs handed to it and not
yet said shown (``Session.unread`` and ``unread_before``: ref -> sender, at
most ``UNREAD_CAP``, the older half forgotten when it is full, ``hand``; the
first sender of a ref keeps it), so a ``shown``
naming a ref never handed to this session, or already answered, does nothing:
a client cannot make a receipt up, nor have one sent twice, and a flood of
``shown`` costs a dict lookup a ref and keeps nothing. A stored message is
acknowledged by its id (``ack``, ``Mail``), which tells its sender the same way.

A receipt goes to the sender's session wherever it is logged in now: here, or
through its node (a cluster's ``deliver`` event, ``route``); a sender offline
gets none (its client that sent the message is gone, and a new one would not
know the ref). Broadcasts carry no ref and get no receipts.
"""
from __future__ import annotations

from collections.abc import Iterable

from ..protocol import FrameType
from .commands import command, valid
from .effects import Step
from .sessions import Session, Sessions, route

__all__ = ["UNREAD_CAP", "GENERATION", "READ_PAGE", "Receipts", "hand", "read_receipts"]

# Refs remembered per session: a client says what it showed within a turn or two, so only a client that never
# says (or a flood from senders) fills it; 256 refs of at most 64 characters are at most ~40 KB a session.
UNREAD_CAP = 256
GENERATION = UNREAD_CAP // 2   # the newest refs of a session always remembered, at least
READ_PAGE = 256   # refs in one ``read`` frame at most (about 17 KB at 64 characters each): a big mailbox in pages
_READ = FrameType.READ.value


def hand(s: Session, ref: str, sender: str) -> None:
    """The live message ``ref`` from ``sender`` is handed to ``s``, whose client sends receipts. The refs are
    remembered in two generations of ``GENERATION`` each: when the newer is full it becomes the older, and the
    older is forgotten. (Deleting the oldest one at a time costs each look for the next oldest a scan over the
    keys deleted before it: a client that never says ``shown`` cost a relayed message ~9,400 instructions more,
    callgrind; copying the newer half out when full, ~250; so, one length check.)"""
    unread = s.unread
    assert unread is not None
    if len(unread) >= GENERATION:
        s.unread_before, s.unread = unread, {}
        unread = s.unread
    before = s.unread_before
    if before is None or ref not in before:   # (a ref handed already stays its first sender's)
        unread.setdefault(ref, sender)


def read_receipts(sessions: Sessions, by: str, shown: Iterable[tuple[str, str]]) -> list[Step]:
    """``by``'s client showed these messages, as (sender, ref): a ``read`` frame (or a few) to each sender
    online, here or on its node."""
    refs_of: dict[str, list[str]] = {}
    for sender, ref in shown:
        refs_of.setdefault(sender, []).append(ref)
    effects: list[Step] = []
    for sender, refs in refs_of.items():
        party = sessions.where(sender)
        if party is not None:
            effects += [route(party, {"type": _READ, "by": by, "refs": refs[i:i + READ_PAGE]})
                        for i in range(0, len(refs), READ_PAGE)]
    return effects


class Receipts:
    """The ``shown`` command: what a client says it showed, told to the senders."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    @command(FrameType.SHOWN, valid("refs", "a list", lambda refs: type(refs) is list), activity=False)
    def shown(self, s: Session, now: float, refs: list[object]) -> list[Step]:
        """Not the user's activity: the client says it by itself when a message comes."""
        unread, before = s.unread, s.unread_before
        if not unread and not before:
            return []
        assert unread is not None
        shown: list[tuple[str, str]] = []
        for ref in refs:
            if type(ref) is str:
                sender = unread.pop(ref, None)
                if sender is None and before:
                    sender = before.pop(ref, None)
                if sender is not None:
                    shown.append((sender, ref))
        return read_receipts(self._sessions, s.user, shown) if shown else []
