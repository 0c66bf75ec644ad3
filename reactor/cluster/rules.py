"""The chat's rules on one node of a cluster, sans-I/O: ``ChatServer`` plus what the nodes tell each other.

Each node holds a view of the whole chat: its own users' sessions, and who is
logged in on which other node (``_Remote``), every block, every lockout and
the last logout times. The engine (Valkey or Redis) holds the truth; the host
keeps the view in step from the engine's streams and resyncs it from the
engine after any gap (``resync``). What must be decided once for every node
is decided by the engine, atomically, and comes back as an event:

- a password's outcome (``ClaimLogin``): the count of wrong ones in a row,
  the lockout, and the one login per user; answered by ``login_decided``;
- a message for a user on no node is kept by the engine (``KeepMessage``),
  which checks the mailbox's cap and the sender's quota (``kept_refused``).

Effects beyond ``ChatServer``'s: ``ClaimLogin``, ``ReleaseLogin`` (a user
left this node), ``Relay`` (an event for one node) and ``Publish`` (an
event for all). Events between nodes, as dicts (``kind``):

- to one node (``relayed``): ``message`` (to, from, text): deliver it, or
  keep it if its user is gone; ``deliver`` (to, frame): send this frame to
  this user if it is still here; ``startprivate`` (from, to, cert): a
  private-chat request, which lives on its target's node; ``stored`` (to, id,
  from, size, chars, sent): the engine kept a message for a user of this node;
- to all (``remote_*``): a login, a logout, a block or unblock, a lockout,
  a broadcast.

A user's node is the one it logged in on; it alone talks to its connection.
"""
from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from ..protocol import ErrorCode, Frame
from ..server.rules import (
    ChatServer,
    ClaimLogin,
    Close,
    KeepMessage,
    LoginFailed,
    ReleaseLogin,
    Send,
    ServerEffect,
    _Conn,
    _Effect,
    _error,
    _Remote,
    _State,
    _wire_bytes,
)

__all__ = ["ClusterChatServer", "LoginOutcome", "StoredRecord"]

log = logging.getLogger(__name__)

StoredRecord = tuple[int, str, int, int, "float | None"]   # a kept message: id, sender, UTF-8 bytes, characters, sent


class LoginOutcome(StrEnum):
    """What the engine decided about a password (``login_decided``)."""

    WELCOME = "welcome"          # right, and the user was logged in nowhere: it is ours now
    WRONG = "wrong"              # wrong, counted
    BLOCKED = "blocked"          # wrong, and the count reached the limit: locked from now
    LOCKED = "locked"            # the account is locked
    ALREADY = "already"          # right, but the user is logged in (on a live node)
    UNAVAILABLE = "unavailable"  # the engine could not be asked: nothing counted


class ClusterChatServer(ChatServer):
    """``ChatServer`` on one node of a cluster (see the module's docstring)."""

    KEEPS_ALL = False   # a message for a user on no node is kept by the engine, not here

    def __init__(self, accounts: dict[str, str], block_duration: float, timeout: float, *, first_id: int,
                 **options: Any) -> None:
        """``first_id``: the first id this node gives a kept message (ids are unique across the cluster:
        the host takes a range from the engine). ``sender_quota`` is the engine's to check."""
        self._quota = options.pop("sender_quota", None)
        super().__init__(accounts, block_duration, timeout, sender_quota=None, **options)
        self._next_id = first_id

    def take_ids(self, first: int) -> None:
        """Number kept messages from ``first`` on (a range of ids the engine gave this node alone)."""
        self._next_id = max(self._next_id, first)

    @property
    def quota(self) -> int | None:
        """The bytes a sender may have kept for others (the engine checks it)."""
        return self._quota

    # -- logins ------------------------------------------------------------

    def _password_result(self, c: _Conn | None, user: str, ok: bool, now: float) -> list[_Effect]:
        """The engine decides the rest (``login_decided``): the connection waits, as for a hashed password."""
        if c is None and ok:
            return []
        if c is not None:
            c.state = _State.CHECKING
        return [ClaimLogin(c.id if c is not None else None, user, ok)]

    def login_decided(self, conn: int | None, user: str, outcome: LoginOutcome, now: float, *,
                      until: float | None = None, mailbox: Iterable[StoredRecord] = ()) -> list[ServerEffect]:
        """The engine's answer to ``ClaimLogin``: ``until`` (a lockout's end, on the host's clock) for
        BLOCKED and LOCKED; ``mailbox``: the messages kept for the user, for WELCOME."""
        c = self._conns.get(conn) if conn is not None else None
        if c is not None and (c.state is not _State.CHECKING or c.claimed != user):
            c = None
        if outcome is LoginOutcome.WELCOME and (c is None or self._shut):
            return self._settle([ReleaseLogin(user)])   # gone meanwhile: the login is not kept
        if outcome in (LoginOutcome.BLOCKED, LoginOutcome.LOCKED) and until is not None:
            self._locked_until[user] = until
        if c is None:
            return []
        effects: list[_Effect]
        if outcome is LoginOutcome.WELCOME:
            effects = []
            stale = self._remote.get(user)
            if stale is not None:   # its old node's logout had not reached us: told before it starts, not to it
                effects += self._settle(self._drop_remote(stale, now))
            queue = {mid: (sys.intern(sender), size, _wire_bytes(size, chars), sent)
                     for mid, sender, size, chars, sent in sorted(mailbox)}
            if queue:
                self._offline[user] = queue
            effects += self._welcome(c, user, now)
        elif outcome is LoginOutcome.WRONG:
            c.state = _State.PASSWORD
            effects = [LoginFailed(c.id, "wrong password"), *self._refuse(c, _error(ErrorCode.INVALID_PASSWORD), now)]
        elif outcome is LoginOutcome.BLOCKED:
            log.warning("conn %d: wrong password for %s: locked", c.id, user)
            effects = [LoginFailed(c.id, "wrong password"),
                       *self._close(c, _error(ErrorCode.ACCOUNT_BLOCKED), now, "account blocked")]
        elif outcome is LoginOutcome.LOCKED:
            effects = self._locked_out(c, user, now)
        elif outcome is LoginOutcome.ALREADY:
            c.state, c.claimed = _State.LOGIN, None
            log.info("conn %d: %s is already logged in", c.id, user)
            effects = self._reply(c, _error(ErrorCode.ALREADY_LOGGED_IN, user=user))
        else:
            effects = self._cannot_check(c)
        return self._settle(effects)

    def _forget(self, c: _Conn, now: float, why: str, fired: bool = False, announce: bool = True) -> list[_Effect]:
        s = c.session
        effects = super()._forget(c, now, why, fired, announce)
        if s is not None:
            self._offline.pop(s.user, None)   # what is left of its mailbox stays in the engine
            effects.append(ReleaseLogin(s.user))
        return effects

    def cluster_lost(self, now: float) -> list[ServerEffect]:
        """This node can no longer vouch for its logins (it could not renew its lease in time): end every
        session here (bye ``shutdown``), before another node may log the same users in. Their logins are
        freed by the engine (when the lease runs out, or when this node joins again)."""
        here = list(self._online.values())
        if not here:
            return []
        log.warning("cluster lost: ending %d sessions", len(here))
        effects: list[_Effect] = [Send(tuple(s.id for s in here), {"type": "bye", "reason": "shutdown"})]
        for s in here:   # ChatServer's _forget: no ReleaseLogin, the engine frees them (see above)
            effects += [Close(s.id), *ChatServer._forget(self, s.conn, now, "cluster lost", announce=False)]
            self._offline.pop(s.user, None)
        return self._settle(effects)

    # -- what the other nodes tell -------------------------------------------

    def remote_login(self, user: str, node: str, now: float) -> list[ServerEffect]:
        """``user`` logged in on ``node``."""
        if user in self._online:   # (only if this node lost its lease and does not know yet)
            log.warning("%s logged in on %s but is here", user, node)
            return []
        known = self._remote.get(user)
        if known is not None:   # it left its old node, which died before saying so
            known.node = node
            return []
        self._remote[user] = _Remote(user, node)
        return self._settle([self._presence(user, True)])

    def remote_logout(self, user: str, node: str, at: float, now: float) -> list[ServerEffect]:
        """``user`` logged out of ``node`` at ``at`` (or its node died)."""
        known = self._remote.get(user)
        if known is None or known.node != node:
            if user not in self._online:
                self._last_logout[user] = max(at, self._last_logout.get(user, at))
            return []
        return self._settle(self._drop_remote(known, at))

    def _drop_remote(self, known: _Remote, at: float) -> list[_Effect]:
        """``known`` is gone: its requests here end (its peer is told) and everyone here hears it left."""
        user = known.user
        del self._remote[user]
        self._last_logout[user] = at
        effects: list[_Effect] = []
        for key in list(known.requests or ()):
            req = self._requests.get(key)
            if req is not None:
                effects += self._cancel(req, (req.target if req.requester == user else req.requester,))
        effects.append(self._presence(user, False))
        return effects

    def remote_block(self, blocker: str, blocked: str, on: bool, now: float) -> list[ServerEffect]:
        """``blocker`` blocked (``on``) or unblocked ``blocked`` on another node."""
        self._set_block(blocker, blocked, on)
        effects: list[_Effect] = []
        if on:
            for key in ((blocker, blocked), (blocked, blocker)):
                req = self._requests.get(key)
                if req is not None:
                    effects += self._cancel(req, key)
        return self._settle(effects)

    def remote_locked(self, user: str, until: float, now: float) -> list[ServerEffect]:
        """``user``'s account was locked until ``until`` (the host's clock) on another node."""
        self._locked_until[user] = until
        return []

    def remote_broadcast(self, sender: str, text: str, now: float) -> list[ServerEffect]:
        """A broadcast from ``sender``, a user of another node: to everyone here who has not blocked it."""
        blockers = self._blockers.get(sender)
        conns = tuple(s.id for name, s in self._online.items() if not blockers or name not in blockers)
        if not conns:
            return []
        return self._settle([Send(conns, {"type": "message", "from": sender, "text": text, "broadcast": True})])

    def relayed(self, event: dict[str, Any], now: float) -> list[ServerEffect]:
        """An event another node sent this one (see the module's docstring); a malformed one is dropped."""
        try:
            kind = event["kind"]
            if kind == "message":
                effects = self._take_message(event["to"], event["from"], event["text"], now)
            elif kind == "deliver":
                s = self._online.get(event["to"])
                effects = [] if s is None else [Send((s.id,), event["frame"])]
            elif kind == "startprivate":
                effects = self._remote_request(event["from"], event["to"], event.get("cert"))
            elif kind == "stored":
                effects = self._take_stored(event["to"], (int(event["id"]), event["from"], int(event["size"]),
                                                          int(event["chars"]), event.get("sent")))
            else:
                raise KeyError(kind)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("a relayed event dropped (%s): %.200r", exc, event)
            return []
        return self._settle(effects)

    def _take_message(self, to: str, sender: str, text: str, now: float) -> list[_Effect]:
        """A message from another node for ``to``: sent if it is here with no mailbox on its way, else kept
        (behind its mailbox, or for its next login: it left meanwhile). Its sender was promised nothing."""
        s = self._online.get(to)
        if s is not None and not s.mailbox:
            return [Send((s.id,), {"type": "message", "from": sender, "text": text})]
        if sender in self._blocks.get(to, ()):
            return []
        mid = self._next_id
        self._next_id += 1
        sent = self._sent(now)
        if s is not None:
            utf8 = len(text.encode("utf-8", "surrogatepass"))
            self._offline.setdefault(to, {})[mid] = (sys.intern(sender), utf8, _wire_bytes(utf8, len(text)), sent)
            assert s.mailbox is not None
            s.mailbox.append(mid)
        return [KeepMessage(mid, to, sender, text, sent)]

    def _take_stored(self, to: str, record: StoredRecord) -> list[_Effect]:
        """The engine kept a message for ``to``, who is here (it logged in meanwhile): deliver it as stored."""
        s = self._online.get(to)
        mid, sender, size, chars, sent = record
        queue = self._offline.setdefault(to, {}) if s is not None else None
        if s is None or queue is None or mid in queue:
            return []
        queue[mid] = (sys.intern(sender), size, _wire_bytes(size, chars), sent)
        if s.mailbox:
            s.mailbox.append(mid)
            return []
        s.mailbox = deque([mid])
        return self._next_stored(s)

    def _remote_request(self, requester: str, target: str, cert: Any) -> list[_Effect]:
        """A private-chat request from a user of another node to one of this node's: it lives here."""
        party = self._remote.get(requester)
        if party is None:   # it left meanwhile
            return []
        party.cert = cert if type(cert) is str else None
        s = self._online.get(target)
        if s is None:
            return [self._to(party, _error(ErrorCode.OFFLINE, user=target))]
        if requester in self._blocks.get(target, ()):
            return [self._to(party, _error(ErrorCode.PRIVATE_BLOCKED, user=target))]
        if (requester, target) in self._requests or (target, requester) in self._requests:
            return [self._to(party, _error(ErrorCode.PRIVATE_PENDING, user=target))]
        if s.conn.listen is None:
            return [self._to(party, _error(ErrorCode.PRIVATE_UNAVAILABLE, user=target))]
        return self._open_request(party, s)

    # -- the engine's answers and views ------------------------------------------

    def kept_refused(self, change: KeepMessage, code: ErrorCode, now: float) -> list[ServerEffect]:
        """The engine did not keep ``change``: ``code`` says why (``queue_full``, ``quota_exceeded``, or
        ``store_full``: it could not be reached)."""
        refusal: Frame
        if code is ErrorCode.QUEUE_FULL:
            refusal = _error(code, user=change.to)
        elif code is ErrorCode.QUOTA_EXCEEDED:
            refusal = _error(code, quota=self._quota)
        else:
            refusal = _error(ErrorCode.STORE_FULL, command="message", user=change.to)
        return self._settle(self._not_stored(change, refusal))

    def resync(self, online: dict[str, str], last_logout: dict[str, float], blocks: Iterable[tuple[str, str]],
               locks: dict[str, float], node: str, now: float) -> list[ServerEffect]:
        """The engine's whole view, read at once (at start, and after any gap): ``online`` user -> node,
        the last logouts and lockouts' ends (the host's clock), every block. This node's view becomes it;
        its users hear of each login and logout it had missed. This node's own users are its own business."""
        self._last_logout.update(last_logout)
        effects: list[_Effect] = []
        for user, known in list(self._remote.items()):
            if online.get(user) != known.node:
                effects += self._drop_remote(known, last_logout.get(user, now))
        for user, where in online.items():
            if where == node or user in self._online:
                continue
            there = self._remote.get(user)
            if there is None:
                self._remote[user] = _Remote(user, where)
                effects.append(self._presence(user, True))
            else:
                there.node = where
        self._blocks.clear()
        self._blockers.clear()
        for blocker, blocked in blocks:
            self._set_block(blocker, blocked, True)
        self._locked_until = dict(locks)
        self._failures.clear()
        return self._settle(effects)
