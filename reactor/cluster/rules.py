"""The chat's rules on one node of a cluster, sans-I/O: ``ChatServer`` plus what the nodes tell each other.

Each node holds a view of the whole chat: its own users' sessions, and who is
logged in on which other node (``Remote`` parties in ``ChatServer.sessions``),
every block, every lockout and the last logout times. The engine (Valkey or Redis) holds the truth; the host
keeps the view in step from the engine's streams and resyncs it from the
engine after any gap (``resync``). What must be decided once for every node
is decided by the engine, atomically, and comes back as an event:

- a password's outcome (``ClaimLogin``): the count of wrong ones in a row,
  the lockout, and the one login per user; answered by ``login_decided``;
- a message for a user on no node is kept by the engine (``KeepMessage``),
  which checks the mailbox's cap and the sender's quota (``not_stored`` with why).

The node reaches ``ChatServer`` through its public seam alone: the four hooks
a single process runs too (``claim_login``: the engine decides a password's
outcome, which ``Logins.conclude`` carries out as for one decided here;
``keep_away``: a message for a user not here is relayed or kept by the engine;
``resent``: a message sent again goes through the engine, which knows the refs
of the messages it kept; ``release_login``: a session's end frees its login), and the public methods
of its parts (``sessions``, ``presence``, ``logins``, ``mail``, ``privates``,
``blocks``, ``door``). A private-chat request from another node is checked
by ``PrivateChats.refusal``, as one from a user of this node.

Effects beyond ``ChatServer``'s: ``ClaimLogin``, ``ReleaseLogin`` (a user
left this node), ``Relay`` (an event for one node) and ``Publish`` (an
event for all). Events between nodes, as dicts (``kind``):

- to one node (``relayed``): ``message`` (to, from, text, ref if it has one):
  deliver it, or keep it if its user is gone; ``deliver`` (to, frame): send this frame to
  this user if it is still here; ``startprivate`` (from, to, cert): a
  private-chat request, which lives on its target's node; ``stored`` (to, id,
  from, size, chars, sent): the engine kept a message for a user of this node;
- to all (``remote_*``): a login, a logout, a block or unblock, a lockout,
  a broadcast.

A user's node is the one it logged in on; it alone talks to its connection.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..protocol import ByeReason, FrameType
from ..server.commands import State
from ..server.effects import (
    ClaimLogin,
    Close,
    KeepMessage,
    Relay,
    ReleaseLogin,
    Send,
    ServerEffect,
    Step,
    bye,
)
from ..server.logins import LoginOutcome
from ..server.mail import stored_frame
from ..server.rules import ChatServer
from ..server.sessions import Conn, Remote, Session, route

__all__ = ["ClusterChatServer", "LoginOutcome", "StoredRecord"]

log = logging.getLogger(__name__)

StoredRecord = tuple[int, str, int, int, "float | None"]   # a kept message: id, sender, UTF-8 bytes, characters, sent
_MESSAGE = FrameType.MESSAGE.value   # (a plain str, as in reactor/server/chat.py: messages are the hot path)


class ClusterChatServer(ChatServer):
    """``ChatServer`` on one node of a cluster (see the module's docstring)."""

    KEEPS_ALL = False   # a message for a user on no node is kept by the engine, which checks the quota

    def __init__(self, accounts: dict[str, str], block_duration: float, timeout: float, *, first_id: int,
                 **options: Any) -> None:
        """``first_id``: the first id this node gives a kept message (ids are unique across the cluster:
        the host takes a range from the engine). ``sender_quota`` is the engine's to check."""
        super().__init__(accounts, block_duration, timeout, **options)
        self.mail.take_ids(first_id)

    def take_ids(self, first: int) -> None:
        """Number kept messages from ``first`` on (a range of ids the engine gave this node alone)."""
        self.mail.take_ids(first)

    @property
    def quota(self) -> int | None:
        """The bytes a sender may have kept for others (the engine checks it)."""
        return self.limits.sender_quota

    # -- the hooks: what the engine decides for every node --------------------------

    def claim_login(self, c: Conn | None, user: str, ok: bool, now: float) -> list[Step]:
        """The engine decides the rest (``login_decided``): the connection waits, as for a hashed password."""
        if c is None and ok:
            return []
        if c is not None:
            c.state = State.CHECKING
        return [ClaimLogin(c.id if c is not None else None, user, ok)]

    def keep_away(self, s: Session, to: str, text: str, cost: int, now: float, ref: str | None = None
                  ) -> list[Step]:
        """A message (paid for here) to ``to``, who is not on this node: relayed to its node, or kept by the
        engine (which checks its mailbox's cap and the sender's quota, and that no message with its ``ref`` is
        kept already) and then confirmed."""
        refusal = self.limits.spend(s.id, s.user, cost, "message", now)
        if refusal:
            return refusal
        elsewhere = self.sessions.remote.get(to)
        if elsewhere is not None:
            event = {"kind": "message", "to": to, "from": s.user, "text": text}
            if ref is not None:
                event["ref"] = ref
            return [Relay(elsewhere.node, event)]
        mail = self.mail
        return [KeepMessage(mail.new_id(), to, s.user, text, mail.sent(now), Send((s.id,), stored_frame(to, ref)),
                            ref)]

    def resent(self, s: Session, to: str, text: str, cost: int, now: float, ref: str) -> list[Step] | None:
        """A message sent again goes through the engine, wherever ``to`` is: the engine alone knows whether an
        earlier sending was kept (a node may have been told "not kept" of a script that ran after all, once the
        engine came back). Its KEEP answers ``again`` for a ref it keeps (until ``REF_MEMORY`` after the message
        was acknowledged): confirmed, and nothing kept; else it keeps the message, and its recipient, if online
        anywhere, gets it as a stored message through its node's inbox. Confirmed as a new message would be:
        ``stored`` while ``to`` is offline, else by the pong alone."""
        again = self.mail.again(s, to, ref, now)   # (kept behind a mailbox on its way here, say)
        if again is not None:
            return again
        refusal = self.limits.spend(s.id, s.user, cost, "message", now)
        if refusal:
            return refusal
        confirm = None if self.sessions.where(to) is not None else Send((s.id,), stored_frame(to, ref))
        mail = self.mail
        return [KeepMessage(mail.new_id(), to, s.user, text, mail.sent(now), confirm, ref, handed_here=False)]

    def release_login(self, s: Session) -> list[Step]:
        """What is left of its mailbox stays in the engine; the engine frees its login and tells the nodes."""
        self.mail.drop(s.user)
        return [ReleaseLogin(s.user)]

    # -- logins ------------------------------------------------------------

    def login_decided(self, conn: int | None, user: str, outcome: LoginOutcome, now: float, *,
                      until: float | None = None, mailbox: Iterable[StoredRecord] = ()) -> list[ServerEffect]:
        """The engine's answer to ``ClaimLogin``: ``until`` (a lockout's end, on the host's clock) for
        BLOCKED and LOCKED; ``mailbox``: the messages kept for the user, for WELCOME."""
        c = self.sessions.conns.get(conn) if conn is not None else None
        if c is not None and (c.state is not State.CHECKING or c.claimed != user):
            c = None
        if outcome is LoginOutcome.WELCOME and (c is None or self.sessions.shut):
            return self.presence.settle([ReleaseLogin(user)])   # gone meanwhile: the login is not kept
        if outcome in (LoginOutcome.BLOCKED, LoginOutcome.LOCKED) and until is not None:
            self.logins.lock(user, until)
        if c is None:
            return []
        effects: list[Any] = []
        if outcome is LoginOutcome.WELCOME:
            stale = self.sessions.remote.get(user)
            if stale is not None:   # its old node's logout had not reached us: told before it starts, not to it
                effects += self.presence.settle(self._drop_remote(stale, now))
            self.mail.load(user, mailbox)
        elif outcome is LoginOutcome.BLOCKED:
            log.warning("conn %d: wrong password for %s: locked", c.id, user)
        return effects + self.presence.settle(self.logins.conclude(c, user, outcome, now))

    def cluster_lost(self, now: float) -> list[ServerEffect]:
        """This node can no longer vouch for its logins (it could not renew its lease in time): end every
        session here (bye ``shutdown``), before another node may log the same users in. Their logins are
        freed by the engine (when the lease runs out, or when this node joins again)."""
        here = list(self.sessions.online.values())
        if not here:
            return []
        log.warning("cluster lost: ending %d sessions", len(here))
        effects: list[Step] = [Send(tuple(s.id for s in here), bye(ByeReason.SHUTDOWN))]
        for s in here:   # no ReleaseLogin: the engine frees them (see above)
            effects += [Close(s.id), *self.door.forget(s.conn, now, "cluster lost", announce=False, release=False)]
            self.mail.drop(s.user)
        return self.presence.settle(effects)

    # -- what the other nodes tell -------------------------------------------

    def remote_login(self, user: str, node: str, now: float) -> list[ServerEffect]:
        """``user`` logged in on ``node``."""
        if user in self.sessions.online:   # (only if this node lost its lease and does not know yet)
            log.warning("%s logged in on %s but is here", user, node)
            return []
        known = self.sessions.remote.get(user)
        if known is not None:   # it left its old node, which died before saying so
            known.node = node
            return []
        self.sessions.add_remote(user, node)
        return self.presence.settle([self.presence.note(user, True)])

    def remote_logout(self, user: str, node: str, at: float, now: float) -> list[ServerEffect]:
        """``user`` logged out of ``node`` at ``at`` (or its node died)."""
        known = self.sessions.remote.get(user)
        if known is None or known.node != node:
            if user not in self.sessions.online:
                self.sessions.logged_out(user, at, keep_later=True)
            return []
        return self.presence.settle(self._drop_remote(known, at))

    def _drop_remote(self, known: Remote, at: float) -> list[Step]:
        """``known`` is gone: its requests here end (its peer is told) and everyone here hears it left."""
        user = known.user
        self.sessions.drop_remote(user, at)
        return [*self.privates.leave(known), self.presence.note(user, False)]

    def remote_block(self, blocker: str, blocked: str, on: bool, now: float) -> list[ServerEffect]:
        """``blocker`` blocked (``on``) or unblocked ``blocked`` on another node."""
        self.blocks.set(blocker, blocked, on)
        return self.presence.settle(self.privates.cancel_between(blocker, blocked) if on else [])

    def remote_locked(self, user: str, until: float, now: float) -> list[ServerEffect]:
        """``user``'s account was locked until ``until`` (the host's clock) on another node."""
        self.logins.lock(user, until)
        return []

    def remote_broadcast(self, sender: str, text: str, now: float) -> list[ServerEffect]:
        """A broadcast from ``sender``, a user of another node: to everyone here who has not blocked it."""
        blockers = self.blocks.blockers.get(sender)
        conns = tuple(s.id for name, s in self.sessions.online.items() if not blockers or name not in blockers)
        if not conns:
            return []
        return self.presence.settle([Send(conns, {"type": _MESSAGE, "from": sender, "text": text, "broadcast": True})])

    def relayed(self, event: dict[str, Any], now: float) -> list[ServerEffect]:
        """An event another node sent this one (see the module's docstring); a malformed one is dropped."""
        try:
            kind = event["kind"]
            if kind == "message":
                ref = event.get("ref")
                effects = self._take_message(event["to"], event["from"], event["text"], now,
                                             ref if type(ref) is str else None)
            elif kind == "deliver":
                s = self.sessions.online.get(event["to"])
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
        return self.presence.settle(effects)

    def _take_message(self, to: str, sender: str, text: str, now: float, ref: str | None) -> list[Step]:
        """A message from another node for ``to``: sent if it is here with no mailbox on its way, else kept
        (behind its mailbox, or for its next login: it left meanwhile), with its ``ref``. Its sender was
        promised nothing."""
        s = self.sessions.online.get(to)
        if s is not None and not s.mailbox:
            return [Send((s.id,), {"type": _MESSAGE, "from": sender, "text": text})]
        if self.blocks.blocks(to, sender):
            return []
        mid = self.mail.new_id()
        sent = self.mail.sent(now)
        if s is not None:
            self.mail.keep_behind(s, mid, sender, text, sent, ref)
        return [KeepMessage(mid, to, sender, text, sent, ref=ref)]

    def _take_stored(self, to: str, record: StoredRecord) -> list[Step]:
        """The engine kept a message for ``to``, who is here (it logged in meanwhile): deliver it as stored."""
        s = self.sessions.online.get(to)
        return [] if s is None else self.mail.arrived(s, *record)

    def _remote_request(self, requester: str, target: str, cert: Any) -> list[Step]:
        """A private-chat request from a user of another node to one of this node's: it lives here, checked as
        one from a user of this node is."""
        party = self.sessions.remote.get(requester)
        if party is None:   # it left meanwhile
            return []
        party.cert = cert if type(cert) is str else None
        s = self.sessions.online.get(target)
        refusal = self.privates.refusal(requester, target, s)
        if refusal is not None:
            return [route(party, refusal)]
        assert s is not None
        return self.privates.open(party, s)

    # -- the engine's answers and views ------------------------------------------

    def resync(self, online: dict[str, str], last_logout: dict[str, float], blocks: Iterable[tuple[str, str]],
               locks: dict[str, float], node: str, now: float) -> list[ServerEffect]:
        """The engine's whole view, read at once (at start, and after any gap): ``online`` user -> node,
        the last logouts and lockouts' ends (the host's clock), every block. This node's view becomes it;
        its users hear of each login and logout it had missed. This node's own users are its own business."""
        sessions = self.sessions
        for user, at in last_logout.items():
            sessions.logged_out(user, at)
        effects: list[Step] = []
        for user, known in list(sessions.remote.items()):
            if online.get(user) != known.node:
                effects += self._drop_remote(known, last_logout.get(user, now))
        for user, where in online.items():
            if where == node or user in sessions.online:
                continue
            there = sessions.remote.get(user)
            if there is None:
                sessions.add_remote(user, where)
                effects.append(self.presence.note(user, True))
            else:
                there.node = where
        self.blocks.reset(blocks)
        self.logins.reset(locks)
        return self.presence.settle(effects)
