"""Stored mail: what the logic knows of the messages kept for each user (not their texts: the store has those),
and each session's cursor through its own, sent paced by its reader.

Stored messages go out paced by the reader: at login the first chunk of them
(about ``MAILBOX_CHUNK`` bytes, one ``SendStored``), then one more chunk per
``writable``. A session keeps a cursor (``mailbox``: the ids still to send);
while it is not empty, a message to that user is stored behind them rather than
sent at once, so no live message overtakes a stored one; and a ``ping`` is
answered after the last of them.

It keeps running totals of what it knows is kept (``kept``, ``kept_bytes``: the texts' UTF-8 bytes), so the
operator's gauges cost a scrape nothing, however many users wait for mail.

A kept message holds the ``ref`` its sender's client gave it, if any, and that
ref is remembered for ``REF_MEMORY`` after its recipient acknowledged it: a
message sent again with a ref remembered (the client retries what was not
confirmed) is answered as a new one would be and is neither kept nor delivered
twice (``again``).
"""
from __future__ import annotations

import logging
import sys
from collections import OrderedDict, deque
from collections.abc import Iterable

from ..ops.catalog import ChatCounts
from ..protocol import ErrorCode, Frame, FrameType
from .commands import command, valid
from .effects import ForgetMessages, KeepMessage, Send, SendStored, Step, WhenWritable, error, reply
from .limits import Limits, stored_size, wire_bytes, wire_size
from .sessions import Session, Sessions

__all__ = ["MAILBOX_CHUNK", "QUEUE_CAP", "REF_MEMORY", "Mail", "OfflineRow", "stored_frame"]

log = logging.getLogger(__name__)

MAILBOX_CHUNK = 32 * 1024   # about the bytes of stored messages sent per turn of a mailbox delivery
QUEUE_CAP = 1000            # messages kept for one user, at most
REF_MEMORY = 600.0          # seconds a kept message's ref is remembered once acknowledged (a client retries ~30 s)
_FRAME_OVERHEAD = 64        # about the bytes of a stored message's frame besides its sender and text
_PONG = {"type": FrameType.PONG.value}
_MESSAGE = FrameType.MESSAGE.value   # (plain strs: an enum member costs a lookup of ~1,000 instructions a frame)
_STORED = FrameType.STORED.value

OfflineRow = tuple[int, str, str, int, int, "float | None", "str | None"]   # id, to, sender, size, chars, sent, ref
_Kept = tuple[str, int, int, "float | None", "str | None"]   # of a kept message: sender, size, wire bytes, sent, ref
_NO_QUEUE: dict[int, _Kept] = {}   # read-only stand-in for a user with no kept messages


def stored_frame(to: str, ref: str | None) -> Frame:
    """The ``stored`` frame that confirms a message to ``to`` is kept (with its ``ref``, if it had one)."""
    return {"type": _STORED, "to": to} if ref is None else {"type": _STORED, "to": to, "ref": ref}


class Mail:
    """The messages kept for each user (``to`` -> id -> sender, sizes, sent), the next id, and the cap."""

    def __init__(self, sessions: Sessions, limits: Limits, *, queue_cap: int = QUEUE_CAP,
                 wall_offset: float | None = None, offline: Iterable[OfflineRow] = (),
                 counts: ChatCounts | None = None) -> None:
        """``offline``: the stored messages as (id, to, sender, size, chars, sent, ref): their texts' UTF-8 bytes
        and characters, when they were sent (or None), and the ref their sender's client gave them (or None).
        ``wall_offset``: ``now + wall_offset`` is the wall-clock time stamped as ``sent`` on kept messages; None
        leaves ``sent`` out (the logic cannot read a clock). ``counts``: where messages delivered from storage
        and refused for want of room are counted."""
        self._sessions = sessions
        self._limits = limits
        self.queue_cap = queue_cap
        self._wall_offset = wall_offset
        self._counts = counts if counts is not None else ChatCounts()
        self._offline: dict[str, dict[int, _Kept]] = {}
        # (to, sender, ref) of the messages acknowledged less than REF_MEMORY ago -> until when, oldest first
        self._acknowledged: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._next_id = 1
        self.kept = 0         # messages known to be kept, in all
        self.kept_bytes = 0   # ... and their texts' UTF-8 bytes
        for mid, to, sender, size, chars, sent, ref in sorted(offline, key=lambda r: r[0]):
            sender = sys.intern(sender)   # one string per sender, not one per message
            self._add(self._offline.setdefault(to, {}), mid, (sender, size, wire_bytes(size, chars), sent, ref))
            limits.charge(sender, stored_size(size))
            self._next_id = max(self._next_id, mid + 1)

    def _add(self, queue: dict[int, _Kept], mid: int, kept: _Kept) -> None:
        """Message ``mid`` is in ``queue`` now (counted in the totals)."""
        queue[mid] = kept
        self.kept += 1
        self.kept_bytes += kept[1]

    # -- views and ids -----------------------------------------------------

    def stored(self, user: str) -> list[tuple[int, str]]:
        """The messages kept for ``user``, oldest first, as (id, sender)."""
        return [(mid, meta[0]) for mid, meta in self._offline.get(user, {}).items()]

    def new_id(self) -> int:
        """The id of a message kept now."""
        mid = self._next_id
        self._next_id += 1
        return mid

    def take_ids(self, first: int) -> None:
        """Number kept messages from ``first`` on (unless past it already)."""
        self._next_id = max(self._next_id, first)

    def sent(self, now: float) -> float | None:
        """The wall-clock time stamped on a message kept at ``now``, if the host said how to tell it."""
        return None if self._wall_offset is None else now + self._wall_offset

    # -- keeping -----------------------------------------------------------

    def keep(self, s: Session, to: str, text: str, cost: int, now: float, mailbox: deque[int] | None,
             ref: str | None = None) -> list[Step]:
        """Keep ``s``'s message for ``to`` (checked but for the cap, the quota and its cost): for its next login,
        or (``mailbox``: its stored messages on their way) behind them; unless its ``ref`` says it is kept already
        (``again``)."""
        if ref is not None:
            again = self.again(s, to, ref, now)
            if again is not None:
                return again
        queue = self._offline.get(to, _NO_QUEUE)
        if len(queue) >= self.queue_cap:
            self._counts.messages_refused.queue_full += 1
            return reply(s.id, error(ErrorCode.QUEUE_FULL, user=to))
        sender = s.user
        utf8 = len(text.encode("utf-8", "surrogatepass"))
        size = stored_size(utf8)
        limits = self._limits
        if limits.over_quota(sender, size):
            self._counts.messages_refused.quota_exceeded += 1
            return reply(s.id, error(ErrorCode.QUOTA_EXCEEDED, quota=limits.sender_quota))
        refusal = limits.spend(s.id, sender, cost, "message", now)
        if refusal:
            return refusal
        if queue is _NO_QUEUE:
            queue = self._offline[to] = {}
        limits.charge(sender, size)
        mid = self.new_id()
        sent = self.sent(now)
        self._add(queue, mid, (sender, utf8, wire_bytes(utf8, len(text)), sent, ref))
        if mailbox:   # online, its stored messages still on their way: this one goes behind them
            mailbox.append(mid)
            return [KeepMessage(mid, to, sender, text, sent, ref=ref)]
        return [KeepMessage(mid, to, sender, text, sent, Send((s.id,), stored_frame(to, ref)), ref)]

    def keep_behind(self, s: Session, mid: int, sender: str, text: str, sent: float | None,
                    ref: str | None = None) -> None:
        """Message ``mid`` (kept elsewhere, with no quota counted here) goes behind ``s``'s mailbox on its way."""
        utf8 = len(text.encode("utf-8", "surrogatepass"))
        self._add(self._offline.setdefault(s.user, {}), mid, (sys.intern(sender), utf8, wire_bytes(utf8, len(text)),
                                                             sent, ref))
        assert s.mailbox is not None
        s.mailbox.append(mid)

    def arrived(self, s: Session, mid: int, sender: str, size: int, chars: int, sent: float | None) -> list[Step]:
        """Message ``mid`` was kept for ``s``'s user elsewhere (the engine, after it logged in): delivered as
        stored, behind the mailbox on its way if there is one; nothing if it is known already."""
        queue = self._offline.setdefault(s.user, {})
        if mid in queue:
            return []
        self._add(queue, mid, (sys.intern(sender), size, wire_bytes(size, chars), sent, None))
        if s.mailbox:
            s.mailbox.append(mid)
            return []
        s.mailbox = deque([mid])
        return self.next_stored(s)

    def load(self, user: str, records: Iterable[tuple[int, str, int, int, float | None]]) -> None:
        """The messages kept for ``user`` elsewhere, as (id, sender, size, chars, sent), are its mail here now."""
        self.drop(user)
        queue: dict[int, _Kept] = {}
        for mid, sender, size, chars, sent in sorted(records):
            self._add(queue, mid, (sys.intern(sender), size, wire_bytes(size, chars), sent, None))
        if queue:
            self._offline[user] = queue

    def drop(self, user: str) -> None:
        """Forget what is known here of ``user``'s mail (it is kept elsewhere: the engine)."""
        queue = self._offline.pop(user, None)
        if queue:
            self.kept -= len(queue)
            self.kept_bytes -= sum(kept[1] for kept in queue.values())

    def _unkeep(self, to: str, queue: dict[int, _Kept], mid: int, now: float | None = None) -> None:
        """Forget the kept message ``mid`` of ``to``'s ``queue`` and give its bytes back to its sender's quota;
        given ``now`` (it was acknowledged, not refused), its ref is remembered until ``now + REF_MEMORY``."""
        sender, size, _, _, ref = queue.pop(mid)
        self.kept -= 1
        self.kept_bytes -= size
        self._limits.refund(sender, stored_size(size))
        if ref is not None and now is not None:
            self._acknowledged[(to, sender, ref)] = now + REF_MEMORY

    # -- refs: a message sent again is not kept twice ----------------------------------

    def remembers(self, to: str, sender: str, ref: str, now: float) -> bool:
        """Whether ``sender``'s message ``ref`` to ``to`` is kept, or was acknowledged less than ``REF_MEMORY``
        ago. (A scan of ``to``'s kept messages: only a message to be kept, or sent again, asks.)"""
        acknowledged = self._acknowledged
        while acknowledged:   # the oldest first: forget those past their time
            _, until = next(iter(acknowledged.items()))
            if until > now:
                break
            acknowledged.popitem(last=False)
        if (to, sender, ref) in acknowledged:
            return True
        return any(kept[4] == ref and kept[0] == sender for kept in self._offline.get(to, _NO_QUEUE).values())

    def again(self, s: Session, to: str, ref: str, now: float) -> list[Step] | None:
        """``s``'s message ``ref`` to ``to``, sent again: if it was kept (``remembers``), the answer a new message
        to ``to`` would get now (``stored`` while ``to`` is offline, else nothing: the pong says it was taken),
        and nothing is kept or delivered twice; None if it was not kept (it is taken as a new message)."""
        if not self.remembers(to, s.user, ref, now):
            return None
        log.info("%s sent message %s to %s again: it was kept already", s.user, ref, to)
        if self._sessions.where(to) is not None:
            return []
        return reply(s.id, stored_frame(to, ref))

    def refused(self, change: KeepMessage, refusal: Frame | None = None) -> list[Step]:
        """The store did not keep ``change``: forget it, and its sender gets ``refusal`` (by default
        ``store_full``) in place of its confirmation; unless its recipient logged in meanwhile and was handed
        it (``change.handed_here``: it may have been): then it is confirmed after all."""
        conns = change.confirm.conns if change.confirm is not None else ()
        mid, to = change.id, change.to
        queue = self._offline.get(to)
        if queue is not None and mid in queue:
            self._unkeep(to, queue, mid)
            if not queue:
                del self._offline[to]
        online = self._sessions.online
        target = online.get(to)
        if target is not None and change.handed_here:
            if not target.mailbox or mid not in target.mailbox:   # already handed to its recipient
                return [change.confirm] if change.confirm is not None else []
            target.mailbox.remove(mid)
        source = online.get(change.sender)
        if not conns and source is not None:   # queued behind a mailbox on its way: no confirm was due
            conns = (source.id,)
        refusal = refusal or error(ErrorCode.STORE_FULL, command="message", user=to)
        self._counts.messages_refused.add(refusal["code"])   # (store_full, queue_full, quota_exceeded)
        log.info("message %d to %s not kept: %s", mid, to, refusal["code"],
                 extra={"user": to, "reason": refusal["code"]})
        return [Send(conns, refusal)] if conns else []

    # -- the mailbox on its way ------------------------------------------------

    def start(self, s: Session) -> list[Step]:
        """``s`` logged in: its stored messages start on their way."""
        queue = self._offline.get(s.user)
        if not queue:
            return []
        s.mailbox = deque(queue)
        return self.next_stored(s)

    def next_stored(self, s: Session) -> list[Step]:
        """The next chunk of ``s``'s stored messages, oldest first, then WhenWritable if more wait
        (or, once the last is out, the pongs that waited for it)."""
        queue = self._offline.get(s.user, _NO_QUEUE)
        mailbox = s.mailbox
        frames: list[Frame] = []
        size = 0
        while mailbox and size < MAILBOX_CHUNK:
            mid = mailbox.popleft()
            stored = queue.get(mid)
            if stored is None:   # acknowledged meanwhile
                continue
            sender, _, wire, sent, _ = stored
            frame = {"type": _MESSAGE, "from": sender, "id": mid}
            if sent is not None:
                frame["sent"] = sent
            frames.append(frame)
            size += _FRAME_OVERHEAD + wire_size(sender) + wire
        self._counts.messages_delivered_from_storage += len(frames)
        effects: list[Step] = [SendStored(s.id, tuple(frames))] if frames else []
        if mailbox:
            effects.append(WhenWritable(s.id))
            return effects
        s.mailbox = None
        if s.pongs and s.history is None:   # (a history on its way sends them after its last frame)
            effects += [Send((s.id,), _PONG)] * s.pongs
            s.pongs = 0
        return effects

    # -- commands ----------------------------------------------------------------

    @command(FrameType.PING, activity=False)
    def ping(self, s: Session, now: float) -> list[Step]:
        """Answer in order: the pong follows every answer to the frames before it (and any store commit),
        and the whole mailbox and history: while stored messages or a history are on their way, it goes out
        after the last."""
        if s.mailbox or s.history is not None:
            s.pongs += 1
            return []
        return reply(s.id, _PONG)

    @command(FrameType.ACK, valid("ids", "a list of integers",
                                  lambda ids: type(ids) is list and all(type(i) is int for i in ids)))
    def ack(self, s: Session, now: float, ids: list[int]) -> list[Step]:
        queue = self._offline.get(s.user)
        if not queue:
            return []
        gone = tuple(dict.fromkeys(i for i in ids if i in queue))   # (an id given twice is forgotten once)
        for mid in gone:
            self._unkeep(s.user, queue, mid, now)
        if not queue:
            del self._offline[s.user]
        return [ForgetMessages(gone)] if gone else []
