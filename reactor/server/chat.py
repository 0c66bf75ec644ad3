"""The chat commands of a logged-in user: message, broadcast, who else (since), block and unblock, listen,
activity and logout. Each checks what it was given and asks the part that owns the state.

A message to a user online here with no stored messages on their way is sent
at once (the relay: the hot path); to one whose stored messages are on their
way, kept behind them; to anyone else, handed to the ``away`` hook: kept here
for its next login (``Mail.keep``), or on a cluster relayed to its node or kept
by the engine (``reactor/cluster/rules.py``).

A message may carry a ``ref``, the id its sender's client gave it; a client
sends a message again (``retry``) with the same ref when it was not confirmed.
Such a message goes first to the ``resent`` hook, which answers it if it was
kept before (here, ``Mail.again``; a cluster node asks the engine), so that
nothing is kept or delivered twice. Only a retry is asked about on the way to a
user online: the relay of a first sending checks nothing. A user online whose
client sends receipts is handed the message with its ref, which its session
remembers until the client says it showed it (``receipts.py``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..ops.catalog import ChatCounts
from ..protocol import MAX_CERT, MAX_REF, ByeReason, ErrorCode, Frame, FrameType
from ..text import TEXT_CONTROL
from .away import Away
from .blocks import NOBODY, Blocks
from .commands import LOGGED_IN, STRANGER, Field, command, seconds_problem, string, valid
from .door import Door
from .effects import AddBlock, KeepMessage, Publish, Remember, RemoveBlock, Send, SendBatch, Step, bye, error, reply
from .limits import Limits, cost
from .mail import Mail
from .pages import users_frames
from .privates import PrivateChats
from .receipts import GENERATION, hand
from .sessions import Conn, Session, Sessions

__all__ = ["ChatCommands", "AwayHook", "Resent"]

log = logging.getLogger(__name__)

AwayHook = Callable[[Session, str, str, int, float, "str | None"], list[Step]]   # not here: ChatServer.keep_away
Resent = Callable[[Session, str, str, int, float, str], "list[Step] | None"]   # sent again: ChatServer.resent
# Plain strs: an enum member in a frame costs a class attribute lookup (~1,000 instructions) per relayed message.
_MESSAGE = FrameType.MESSAGE.value
_CONTROL_CHARACTERS = error(ErrorCode.CONTROL_CHARACTERS)
# One precompiled search (about 0.3 us on a 100-character text), skipped for printable ASCII, the common case
# (two C string checks: tab and the line break, the control characters allowed, are not printable, so they go to
# the search).
_has_control = TEXT_CONTROL.search
# A message's optional fields, its ref and whether it is sent again, are read from the frame where they are
# used: the relay to a user online reads only ``retry``. The logic's part of a relayed message (callgrind):
# 24,170 instructions before refs; 27,660 with them declared as fields, checked before the handler; 24,870 so.
_OPTIONAL = ("ref", "retry")
_REF_DETAIL = f"'ref' must be a string of 1 to {MAX_REF} printable ASCII characters"


def _ref_problem(ref: Any) -> str | None:
    """What is wrong with a message's ``ref`` (given), if anything."""
    if type(ref) is str and 0 < len(ref) <= MAX_REF and ref.isascii() and ref.isprintable():
        return None
    return _REF_DETAIL


class ChatCommands:
    """What a user says once logged in; the state is its collaborators'."""

    def __init__(self, sessions: Sessions, blocks: Blocks, limits: Limits, mail: Mail, privates: PrivateChats,
                 door: Door, accounts: dict[str, str], *, max_text: int, away: AwayHook, resent: Resent,
                 counts: ChatCounts, absent: Away | None = None, remember: bool = False) -> None:
        """``away``: the hook for a message to a user not here; ``resent``: the hook for a message sent again;
        ``absent``: who is away (``reactor/server/away.py``); ``remember``: relayed messages and broadcasts are
        noted for the history (``Remember``)."""
        self._sessions = sessions
        self._blocks = blocks
        self._mail = mail
        self._privates = privates
        self._door = door
        self._max_text = max_text
        self._away = away
        self._resent = resent
        # What every message asks, held here: each lookup through another object costs the relay ~2%.
        self._accounts = accounts            # (changed in place by Logins.replace)
        self._online = sessions.online
        self._remote = sessions.remote
        self._blocking = blocks.blocking
        self._blockers = blocks.blockers
        self._spend = limits.spend
        self._counts = counts
        self._refused = counts.messages_refused
        self._absent = absent if absent is not None else Away(sessions)
        self._away_now = self._absent.texts   # who is away (changed in place): the relay asks it of every message
        self._remember = remember

    @command(FrameType.MESSAGE, string("to"), string("text"), optional=_OPTIONAL)
    def message(self, s: Session, now: float, to: str, text: str, frame: Frame) -> list[Step]:
        """A message: relayed (counted here: the hot path's one addition, a new int object each, ~270 of the
        relay's ~54,000 instructions), or kept, or refused (counted by the reason its sender hears;
        ``rate_limited`` by ``Limits``, the store's by ``Mail``). The optional ``ref`` and ``retry`` are read
        from ``frame`` and checked (a ``bad_frame`` if one will not do) where they are used: ``retry`` when it
        is given, ``ref`` where the message is kept or looked up, not on its relay."""
        if not (text.isascii() and text.isprintable()) and _has_control(text):
            self._refused.control_characters += 1
            return reply(s.id, _CONTROL_CHARACTERS)
        if to not in self._accounts:
            self._refused.invalid_user += 1
            return reply(s.id, error(ErrorCode.INVALID_USER))
        sender = s.user
        if to == sender:
            self._refused.other += 1
            return reply(s.id, error(ErrorCode.SELF, command="message"))
        if len(text) > self._max_text:
            self._refused.too_long += 1
            return reply(s.id, error(ErrorCode.TEXT_TOO_LONG, max=self._max_text))
        if sender in self._blocking.get(to, NOBODY):
            self._refused.blocked += 1
            return reply(s.id, error(ErrorCode.BLOCKED_BY_RECIPIENT, user=to))
        tokens = cost(text)
        retry = frame.get("retry")
        if retry is not None:
            if retry is not True and retry is not False:
                return self._door.bad(s.conn, "'retry' must be true or false", now)
            ref = frame.get("ref")
            if retry and ref is not None:   # sent again: answered here if it was taken before
                problem = _ref_problem(ref)
                if problem is not None:
                    return self._door.bad(s.conn, problem, now)
                again = self._resent(s, to, text, tokens, now, ref)
                if again is not None:
                    return again
        target = self._online.get(to)
        if target is not None:
            mailbox = target.mailbox
            if not mailbox:
                if target.unread is not None and "ref" in frame:   # (None: its client sends no receipts)
                    return self._hand(s, target, frame["ref"], text, tokens, now)
                refusal = self._spend(s.id, sender, tokens, "message", now)
                if refusal:
                    return refusal
                self._counts.messages_relayed += 1
                if not self._remember and not self._away_now:   # (the relay as it was: one Send)
                    return [Send((target.id,), {"type": _MESSAGE, "from": sender, "text": text})]
                if not self._away_now:   # with its history, as _noted would, two calls less (~700 instructions)
                    return [Send((target.id,), {"type": _MESSAGE, "from": sender, "text": text}),
                            Remember(sender, to, text, self._mail.sent(now))]
                return self._noted(s, to, sender, text, [Send((target.id,), {"type": _MESSAGE, "from": sender,
                                                                             "text": text})], now)
        ref = frame.get("ref")
        if ref is not None:   # to be kept, or relayed by a cluster node: with its ref
            problem = _ref_problem(ref)
            if problem is not None:
                return self._door.bad(s.conn, problem, now)
        if target is None:
            return self._away(s, to, text, tokens, now, ref)
        effects = self._mail.keep(s, to, text, tokens, now, mailbox, ref)   # (its history: with its KeepMessage)
        if not effects or type(effects[0]) is not KeepMessage:   # refused, or kept already (its ref: ``again``)
            return effects
        return self._away_reply(s, to, sender, effects)

    def _noted(self, s: Session, to: str, sender: str, text: str, effects: list[Step], now: float) -> list[Step]:
        """A live message's ``effects`` (its Send), then its history and ``to``'s away words for ``sender``."""
        if self._remember:   # (after the Send: the host sends it at once, whatever the history costs)
            effects.append(Remember(sender, to, text, self._mail.sent(now)))
        return self._away_reply(s, to, sender, effects)

    def _away_reply(self, s: Session, to: str, sender: str, effects: list[Step]) -> list[Step]:
        """``effects``, and ``to``'s away words for ``sender`` if it is away (once an away period)."""
        if self._away_now and to in self._away_now:
            answer = self._absent.reply(to, sender)
            if answer is not None:
                effects.append(Send((s.id,), answer))
        return effects

    def _hand(self, s: Session, target: Session, ref: Any, text: str, tokens: int, now: float) -> list[Step]:
        """``message``'s relay to ``target``, whose client sends receipts, of a frame that names a ``ref``: handed
        with it, and the ref remembered until the client says it showed it (``receipts.hand``, inline). Apart
        from the relay to a client without receipts, which reads no ref: that relay costs ~70 instructions more
        (callgrind), where reading the ref on its way too cost ~210. Here only what the server uses of the ref
        is checked, a string of at most ``MAX_REF`` characters (a dict key, sent on as JSON); its printable
        ASCII, checked where it is kept, cost ~700 more a message."""
        if ref is not None and not (type(ref) is str and 0 < len(ref) <= MAX_REF):
            return self._door.bad(s.conn, _REF_DETAIL, now)
        sender = s.user
        refusal = self._spend(s.id, sender, tokens, "message", now)
        if refusal:
            return refusal
        self._counts.messages_relayed += 1
        if ref is None:
            send = Send((target.id,), {"type": _MESSAGE, "from": sender, "text": text})
        else:
            unread = target.unread
            if unread is None or len(unread) >= GENERATION:   # (the newer half is full: receipts.hand)
                hand(target, ref, sender)
            elif target.unread_before is None or ref not in target.unread_before:
                unread.setdefault(ref, sender)
            send = Send((target.id,), {"type": _MESSAGE, "from": sender, "text": text, "ref": ref})
        if not self._remember and not self._away_now:
            return [send]
        if not self._away_now:   # with its history, as _noted would, two calls less
            return [send, Remember(sender, target.user, text, self._mail.sent(now))]
        return self._noted(s, target.user, sender, text, [send], now)   # (as any live message's)

    @command(FrameType.BROADCAST, string("text"))
    def broadcast(self, s: Session, now: float, text: str) -> list[Step]:
        if not (text.isascii() and text.isprintable()) and _has_control(text):
            self._refused.control_characters += 1
            return reply(s.id, _CONTROL_CHARACTERS)
        if len(text) > self._max_text:
            self._refused.too_long += 1
            return reply(s.id, error(ErrorCode.TEXT_TOO_LONG, max=self._max_text))
        sender = s.user
        refusal = self._spend(s.id, sender, cost(text), "broadcast", now)
        if refusal:
            return refusal
        self._counts.broadcasts += 1
        online = self._online
        blockers = self._blockers.get(sender)
        if blockers:
            conns = tuple(o.id for name, o in online.items() if o is not s and name not in blockers)
        else:
            conns = tuple(o.id for o in online.values() if o is not s)
        effects: list[Step] = []
        if conns:
            effects.append(Send(conns, {"type": _MESSAGE, "from": sender, "text": text, "broadcast": True}))
        if self._remote:   # cluster mode: the other nodes tell theirs
            effects.append(Publish({"kind": "broadcast", "from": sender, "text": text}))
        if self._remember:   # one row, whoever got it: those logged in then, but those who blocked the sender
            effects.append(Remember(sender, None, text, self._mail.sent(now), tuple(sorted(blockers or ()))))
        if len(conns) < len(online) - 1 or blockers and not blockers.isdisjoint(self._remote):
            # someone online blocked the sender
            effects.append(Send((s.id,), {"type": FrameType.BROADCAST_PARTIAL.value}))
        return effects

    def _others(self, me: str, names: Iterable[str]) -> list[str]:
        """``names`` without ``me`` and those who blocked ``me``, sorted."""
        blockers = self._blockers.get(me, NOBODY)
        return sorted(n for n in names if n != me and n not in blockers)

    def _users(self, s: Session, names: list[str], away: list[str] | None = None) -> list[Step]:
        """The answer listing ``names`` (and those of them ``away``): one ``users`` frame, or a page each when
        they do not fit in one."""
        frames = users_frames(names, away)
        return reply(s.id, frames[0]) if len(frames) == 1 else [SendBatch((s.id,), tuple(frames))]

    @command(FrameType.WHOELSE)
    def whoelse(self, s: Session, now: float) -> list[Step]:
        """The others online; those away listed again in ``away`` (when any is)."""
        names = self._sessions.names() if self._remote else self._online
        others = self._others(s.user, names)
        texts = self._away_now
        return self._users(s, others, [name for name in others if name in texts] if texts else None)

    @command(FrameType.WHOELSESINCE, Field("seconds", seconds_problem, ErrorCode.BAD_ARGUMENT))
    def whoelsesince(self, s: Session, now: float, seconds: int | float) -> list[Step]:   # (an int may not fit one)
        try:
            cutoff = now - seconds
        except OverflowError:   # an int too large for a float: the window covers everything
            cutoff = -math.inf
        return self._users(s, self._others(s.user, self._sessions.since(cutoff)))

    @command(FrameType.BLOCK, string("user"))
    def block(self, s: Session, now: float, user: str) -> list[Step]:
        if user not in self._accounts:
            return reply(s.id, error(ErrorCode.INVALID_USER))
        me = s.user
        if user == me:
            return reply(s.id, error(ErrorCode.SELF, command="block"))
        if self._blocks.blocks(me, user):
            return reply(s.id, error(ErrorCode.ALREADY_BLOCKED, user=user))
        refusal = self._spend(s.id, me, 1, "block", now)
        if refusal:
            return refusal
        self._blocks.set(me, user, True)
        log.info("%s blocked %s", me, user)
        effects: list[Step] = [AddBlock(me, user, Send((s.id,), {"type": FrameType.BLOCKED.value, "user": user}))]
        return effects + self._privates.cancel_between(me, user)

    @command(FrameType.UNBLOCK, string("user"))
    def unblock(self, s: Session, now: float, user: str) -> list[Step]:
        if user not in self._accounts:
            return reply(s.id, error(ErrorCode.INVALID_USER))
        me = s.user
        if not self._blocks.blocks(me, user):
            return reply(s.id, error(ErrorCode.NOT_BLOCKED, user=user))
        refusal = self._spend(s.id, me, 1, "unblock", now)
        if refusal:
            return refusal
        self._blocks.set(me, user, False)
        log.info("%s unblocked %s", me, user)
        return [RemoveBlock(me, user, Send((s.id,), {"type": FrameType.UNBLOCKED.value, "user": user}))]

    @command(FrameType.LOGOUT)
    def logout(self, s: Session, now: float) -> list[Step]:
        return self._door.close(s.conn, bye(ByeReason.LOGOUT), now, "logout")

    @command(FrameType.ACTIVITY)
    def activity(self, s: Session, now: float) -> list[Step]:
        return []   # received() has noted the activity

    @command(FrameType.LISTEN, valid("port", "an integer from 1 to 65535",
                                     lambda port: type(port) is int and 0 < port < 65536),
             valid("cert", f"a string of at most {MAX_CERT} characters",
                   lambda cert: cert is None or type(cert) is str and len(cert) <= MAX_CERT),
             states=STRANGER | LOGGED_IN)   # sent right after hello, so it is known before anyone can ask
    def listen(self, c: Conn, now: float, port: int, cert: str | None) -> list[Step]:
        """Only the port is the client's word: its peers connect to the address its connection comes
        from, so nobody can send another user's client (and its token) to a third party's address.
        A ``host`` field, which older clients send, is ignored. ``cert`` (TLS mode) is relayed as it
        is, with the token, to each client that is to connect to this one or to accept it."""
        c.listen = (c.address, port)
        c.cert = cert
        return []
