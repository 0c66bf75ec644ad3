"""The chat's rules on one node of a cluster, sans-I/O: ``ChatServer`` plus what the nodes tell each other.

Each node holds a view of the whole chat: its own users' sessions, and who is
logged in on which other node (``Remote`` parties in ``ChatServer.sessions``),
every block, every lockout and the last logout times. The engine (Valkey or Redis) holds the truth; the host
keeps the view in step from the engine's streams and resyncs it from the
engine after any gap (``resync``). What must be decided once for every node
is decided by the engine, atomically, and comes back as an event:

- a password's outcome (``ClaimLogin``): the count of wrong ones in a row,
  the lockout, and the one login per user; answered by ``login_decided``; a
  current password given to change it is counted alike (``CountPassword``,
  answered by ``password_counted``);
- a message for a user on no node is kept by the engine (``KeepMessage``),
  which checks the mailbox's cap and the sender's quota (``not_stored`` with why);
- a message for a user on another node (``RelayMessage``) goes to that node's
  inbox if its lease is live, else it is kept (``relay_answered``); the node
  that takes it says so to the sender's (``taken``), and a node that dies
  before taking it has it kept when its lease runs out (the engine says so
  to the sender's node, ``taken`` too). So a sender hears, for each such
  message, ``delivered``, ``stored`` or why not: nothing goes silently.
- a message's ``ref`` (the id its sender's client gave it) goes with it all
  the way: into the engine's record, the relayed event, each keep, each
  ``taken`` and the sender's answer. The engine remembers a ref while its
  message is kept (and ``REF_MEMORY`` after it was acknowledged), and a while
  after it relayed it to a live node; a message sent again (``retry``) goes
  through the engine (``resent``), which keeps it only if it knows not its ref.

The node reaches ``ChatServer`` through its public seam alone: the six hooks
a single process runs too (``claim_login``: the engine decides a password's
outcome, which ``Logins.conclude`` carries out as for one decided here;
``keep_away``: a message for a user not here is relayed or kept by the engine;
``resent``: a message sent again goes through the engine, which knows the refs
of the messages it kept or relayed; ``release_login``: a session's end frees
its login; ``count_password``: the engine counts a current password given to
change it; ``password_changed``: a user's new password is published for every
node), and the public methods
of its parts (``sessions``, ``presence``, ``logins``, ``mail``, ``privates``,
``blocks``, ``door``). A private-chat request from another node is checked
by ``PrivateChats.refusal``, as one from a user of this node.

Effects beyond ``ChatServer``'s: ``ClaimLogin``, ``CountPassword``, ``ReleaseLogin`` (a user
left this node), ``Relay`` (an event for one node), ``RelayMessage`` (a
message for a user of another node) and ``Publish`` (an event for all).
Events between nodes, as dicts (``kind``):

- to one node (``relayed``): ``message`` (to, from, text; id, sent, the
  sender's ``node``, and ``ref`` if it has one): deliver it, or have it kept if
  its user is gone, and tell the sender's node; ``taken`` (a ``list`` of to,
  from, how, and ref if it has one): what became of messages of users of this
  node (``delivered``, ``stored``, or a refusal's code);
  ``deliver`` (to, frame): send this frame to this user if it is still here;
  ``startprivate`` (from, to, cert): a private-chat request, which lives on
  its target's node; ``stored`` (to, id, from, size, chars, sent): the engine
  kept a message for a user of this node;
  ``kick`` (to, reason): the operator ends this user's session;
- to all (``remote_*``): a login, a logout, a block or unblock, a lockout,
  a broadcast, the operator's notice, a user's new password (``password``:
  user, field; every node's logins need it from now, and the host writes it
  into its own accounts file too, if that file does not hold it yet).

The node's standing in the cluster is the host's (``reactor/cluster/host.py``):
when it can no longer vouch for its logins it ends its sessions
(``cluster_lost``, bye ``cut_off``); when the engine lost its state and
another node took some of its users meanwhile, those end (``sessions_taken``).

A user's node is the one it logged in on; it alone talks to its connection.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..protocol import ByeReason, ErrorCode, FrameType
from ..server.commands import State
from ..server.effects import (
    ClaimLogin,
    Close,
    CountPassword,
    KeepMessage,
    Publish,
    Relay,
    RelayMessage,
    ReleaseLogin,
    Remember,
    Send,
    ServerEffect,
    Step,
    bye,
    error,
    reply,
)
from ..server.logins import LoginOutcome
from ..server.mail import stored_frame
from ..server.rules import ChatServer
from ..server.sessions import Conn, Remote, Session, route

__all__ = ["ClusterChatServer", "LoginOutcome", "StoredRecord"]

log = logging.getLogger(__name__)

StoredRecord = tuple[int, str, int, int, "float | None"]   # a kept message: id, sender, UTF-8 bytes, characters, sent
_MESSAGE = FrameType.MESSAGE.value   # (a plain str, as in reactor/server/chat.py: messages are the hot path)
_DELIVERED = "delivered"   # a relayed message's fate (``taken``): its node took it; else "stored" or a code
_STORED = "stored"


def _ref_of(item: dict[str, Any]) -> str | None:
    """The ``ref`` an event from another node names, if it is a string."""
    ref = item.get("ref")
    return ref if type(ref) is str else None


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
        mail = self.mail
        if to in self.sessions.remote:
            return [RelayMessage(mail.new_id(), to, s.user, text, mail.sent(now), ref=ref)]
        return [KeepMessage(mail.new_id(), to, s.user, text, mail.sent(now), Send((s.id,), stored_frame(to, ref)),
                            ref)]

    def resent(self, s: Session, to: str, text: str, cost: int, now: float, ref: str) -> list[Step] | None:
        """A message sent again goes through the engine, wherever ``to`` is: the engine alone knows whether an
        earlier sending was kept or relayed (a node may have been told "not kept" of a script that ran after
        all, once the engine came back). Its KEEP answers ``again`` for a ref it knows (a message kept, until
        ``REF_MEMORY`` after it was acknowledged; one relayed to a live node, for ``RELAYED_REF_MEMORY``):
        confirmed, and nothing kept; else it keeps the message, and its recipient, if online anywhere, gets it
        as a stored message through its node's inbox. Confirmed as a new message would be: ``stored`` while
        ``to`` is offline, else by the pong alone (a retry of a message relayed and delivered on another node
        is confirmed so, never delivered twice)."""
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

    def count_password(self, conn: int, user: str, ok: bool, now: float) -> list[Step]:
        """The engine counts it, for every node (a wrong one is answered with ``password_counted``)."""
        return [CountPassword(conn, user, ok)]

    def password_changed(self, user: str, field: str) -> list[Step]:
        """Every other node takes the new password too (``remote_password``; its host writes its own file)."""
        return [Publish({"kind": "password", "user": user, "field": field})]

    # -- the operator's commands: they reach a user on whatever node serves it ------------

    def kick(self, user: str, reason: str | None, now: float) -> list[ServerEffect]:
        """As ``ChatServer.kick`` for a user here; a user on another node is kicked by its node (relayed)."""
        elsewhere = self.sessions.remote.get(user)
        if elsewhere is not None:
            return self.presence.settle([Relay(elsewhere.node, {"kind": "kick", "to": user, "reason": reason})])
        return super().kick(user, reason, now)

    def notice(self, text: str, now: float) -> list[ServerEffect]:
        """As ``ChatServer.notice`` here, and published for the other nodes to tell theirs (``remote_notice``)."""
        return [*super().notice(text, now), *self.presence.settle([Publish({"kind": "notice", "text": text})])]

    def remote_notice(self, text: str, now: float) -> list[ServerEffect]:
        """The operator's notice, given on another node: every user here gets it."""
        return super().notice(text, now)

    # -- logins ------------------------------------------------------------

    def password_counted(self, conn: int, user: str, outcome: LoginOutcome, now: float, *,
                         until: float | None = None) -> list[ServerEffect]:
        """The engine's answer to ``CountPassword`` for a wrong current password: ``WRONG``, ``BLOCKED`` (locked
        until ``until``, the host's clock), ``LOCKED`` (it was: nothing counted) or ``UNAVAILABLE``."""
        self._lockout(user, outcome, until)
        return self.presence.settle(self.changes.counted(conn, user, outcome, now))

    def remote_password(self, user: str, field: str, now: float) -> list[ServerEffect]:
        """``user`` changed their password on another node: its logins here need ``field`` from now."""
        if not self.logins.set_password(user, field):
            log.warning("%s changed their password on another node, but has no account here", user)
        return []

    def _lockout(self, user: str, outcome: LoginOutcome, until: float | None) -> None:
        """The engine locked ``user`` (``BLOCKED``: just now, counted by this node, which heard the password that
        locked it) or found it locked, until ``until``: this node's view has it too."""
        if outcome in (LoginOutcome.BLOCKED, LoginOutcome.LOCKED) and until is not None:
            self.logins.lock(user, until)
        if outcome is LoginOutcome.BLOCKED:
            self.counts.lockouts.passwords += 1

    def login_decided(self, conn: int | None, user: str, outcome: LoginOutcome, now: float, *,
                      until: float | None = None, mailbox: Iterable[StoredRecord] = ()) -> list[ServerEffect]:
        """The engine's answer to ``ClaimLogin``: ``until`` (a lockout's end, on the host's clock) for
        BLOCKED and LOCKED; ``mailbox``: the messages kept for the user, for WELCOME."""
        c = self.sessions.conns.get(conn) if conn is not None else None
        if c is not None and (c.state is not State.CHECKING or c.claimed != user):
            c = None
        if outcome is LoginOutcome.WELCOME and (c is None or self.sessions.shut):
            return self.presence.settle([ReleaseLogin(user)])   # gone meanwhile: the login is not kept
        self._lockout(user, outcome, until)
        if c is None:
            return []
        if outcome is LoginOutcome.UNAVAILABLE:   # the engine was not reached, or would decide nothing now
            c.state = State.PASSWORD
            log.info("conn %d: no login decided for %s: out of touch with the cluster", c.id, user)
            return self.presence.settle(reply(c.id, error(ErrorCode.CLUSTER_UNAVAILABLE)))
        effects: list[Any] = []
        if outcome is LoginOutcome.WELCOME:
            stale = self.sessions.remote.get(user)
            if stale is not None:   # its old node's logout had not reached us: told before it starts, not to it
                effects += self.presence.settle(self._drop_remote(stale, now))
            self.mail.load(user, mailbox)
        elif outcome is LoginOutcome.BLOCKED:
            log.warning("conn %d: wrong password for %s: locked", c.id, user,
                        extra={"conn": c.id, "user": user, "reason": "locked"})
        return effects + self.presence.settle(self.logins.conclude(c, user, outcome, now))

    def cluster_lost(self, now: float) -> list[ServerEffect]:
        """This node can no longer vouch for its logins (it could not renew its lease in time, or another
        process took its id): end every session here (bye ``cut_off``), before another node may log the same
        users in. Their logins are freed by the engine (when the lease runs out, or when this node joins
        again)."""
        return self._cut_off(list(self.sessions.online.values()), "cluster lost", now)

    def sessions_taken(self, taken: dict[str, str], now: float) -> list[ServerEffect]:
        """The engine lost its state, and by the time this node claimed its sessions again other nodes had
        logged some of its users in (``taken``: user -> that node): those sessions end here (bye
        ``cut_off``); the users are the other nodes' now (nobody is told they left: they did not)."""
        online = self.sessions.online
        effects = self._cut_off([online[user] for user in taken if user in online], "logged in on another node", now)
        for user, node in taken.items():
            if user not in online:
                self.sessions.add_remote(user, node)
        return effects

    def _cut_off(self, here: list[Session], why: str, now: float) -> list[ServerEffect]:
        """End the sessions ``here`` (bye ``cut_off``) without freeing their logins: the engine does."""
        if not here:
            return []
        log.warning("%s: ending %d sessions", why, len(here))
        effects: list[Step] = [Send(tuple(s.id for s in here), bye(ByeReason.CUT_OFF))]
        for s in here:   # no ReleaseLogin (see above)
            effects += [Close(s.id), *self.door.forget(s.conn, now, why, announce=False, release=False)]
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
        self.away.left(user)
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
        """A broadcast from ``sender``, a user of another node: to everyone here who has not blocked it (but
        ``sender`` itself, logged in here since, before this node read the broadcast: the simulator's seed 5)."""
        blockers = self.blocks.blockers.get(sender)
        conns = tuple(s.id for name, s in self.sessions.online.items()
                      if name != sender and (not blockers or name not in blockers))
        if not conns:
            return []
        return self.presence.settle([Send(conns, {"type": _MESSAGE, "from": sender, "text": text, "broadcast": True})])

    def relayed(self, event: dict[str, Any], now: float) -> list[ServerEffect]:
        """An event another node sent this one (see the module's docstring); a malformed one is dropped."""
        try:
            kind = event["kind"]
            if kind == "message":
                origin, ref = event.get("node"), event.get("ref")
                effects = self._take_message(event["to"], event["from"], event["text"], now,
                                             None if origin is None else str(origin), event.get("sent"),
                                             ref if type(ref) is str else None)
            elif kind == "taken":
                effects = [step for item in event["list"]
                           for step in self._fate(item["to"], item["from"], str(item["how"]), _ref_of(item))]
            elif kind == "deliver":
                s = self.sessions.online.get(event["to"])
                effects = [] if s is None else [Send((s.id,), event["frame"])]
            elif kind == "startprivate":
                effects = self._remote_request(event["from"], event["to"], event.get("cert"))
            elif kind == "stored":
                effects = self._take_stored(event["to"], (int(event["id"]), event["from"], int(event["size"]),
                                                          int(event["chars"]), event.get("sent")))
            elif kind == "kick":
                reason = event.get("reason")
                return super().kick(event["to"], reason if type(reason) is str else None, now)
            else:
                raise KeyError(kind)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("a relayed event dropped (%s): %.200r", exc, event)
            return []
        return self.presence.settle(effects)

    def _take_message(self, to: str, sender: str, text: str, now: float, origin: str | None,
                      sent: Any, ref: str | None = None) -> list[Step]:
        """A message from ``sender``, a user of the node ``origin``, for ``to``: sent if it is here with no
        mailbox on its way, or kept behind its mailbox, and ``origin`` told it was delivered; if ``to`` left
        meanwhile, relayed again (to its node, or kept by the engine), and ``origin`` told what became of it.
        (A message without ``origin`` is kept here as it comes, its sender told nothing.) Its ``ref`` goes
        with it: kept with it, and named to its sender. Each keep or relay here carries the message on its way
        (``relayed``): its ref is known to the engine already, as this very message's, and is not taken for a
        repeat of it."""
        if self.blocks.blocks(to, sender):   # (blocked since its node looked)
            return self._tell(origin, to, sender, ErrorCode.BLOCKED_BY_RECIPIENT.value, ref)
        s = self.sessions.online.get(to)
        mail = self.mail
        if type(sent) is not float and type(sent) is not int:
            sent = mail.sent(now)
        if s is not None and not s.mailbox:
            self.counts.messages_relayed += 1   # (by the recipient's node: the sender's relayed it to this one)
            effects: list[Step] = [Send((s.id,), {"type": _MESSAGE, "from": sender, "text": text}),
                                   *self._tell(origin, to, sender, _DELIVERED, ref)]
            if self.history.keeps:   # (its node notes it: the node that delivers, or keeps, a message)
                effects.append(Remember(sender, to, text, sent))
            return effects + self._away_reply(origin, to, sender)
        mid = mail.new_id()
        if s is not None:
            mail.keep_behind(s, mid, sender, text, sent, ref)
            return [KeepMessage(mid, to, sender, text, sent, ref=ref, relayed=True),
                    *self._tell(origin, to, sender, _DELIVERED, ref), *self._away_reply(origin, to, sender)]
        if origin is None:
            return [KeepMessage(mid, to, sender, text, sent, ref=ref, relayed=True)]
        return [RelayMessage(mid, to, sender, text, sent, origin, ref)]

    def _away_reply(self, origin: str | None, to: str, sender: str) -> list[Step]:
        """``to`` (here) is away: its words for ``sender``, here or on its node ``origin``, once an away period."""
        answer = self.away.reply(to, sender)
        if answer is None:
            return []
        if origin is None:
            s = self.sessions.online.get(sender)
            return [] if s is None else [Send((s.id,), answer)]
        return [Relay(origin, {"kind": "deliver", "to": sender, "frame": answer})]

    def remote_away(self, user: str, text: str | None) -> None:
        """``user``, of another node, is away with ``text`` (None: back)."""
        self.away.remote(user, text)

    def relay_answered(self, relay: RelayMessage, answer: str, now: float) -> list[ServerEffect]:
        """The engine's answer to ``relay``: ``relayed`` (to the node of its recipient, which will say what
        became of it), ``kept`` (for the recipient's next login), or why not (``queue_full``,
        ``quota_exceeded``; ``store_full``: the engine could not be reached), or ``again`` (its ref is known:
        the message was taken before, and the sending that took it was answered). Its sender's node is told."""
        if answer == "relayed" or answer == "again":
            return []
        return self.presence.settle(self._tell(relay.origin, relay.to, relay.sender,
                                               _STORED if answer == "kept" else answer, relay.ref))

    def _tell(self, origin: str | None, to: str, sender: str, how: str, ref: str | None) -> list[Step]:
        """What became of ``sender``'s message ``ref`` to ``to``, for the sender: here (``origin`` None), or to
        its node."""
        if origin is None:
            return self._fate(to, sender, how, ref)
        item = {"to": to, "from": sender, "how": how}
        if ref is not None:
            item["ref"] = ref
        return [Relay(origin, {"kind": "taken", "list": [item]})]

    def _fate(self, to: str, sender: str, how: str, ref: str | None) -> list[Step]:
        """Tell ``sender``, if it is here, what became of its message to ``to``: ``delivered`` (taken by
        ``to``'s node), ``stored``, or the code of why it was not kept (``store_full`` for any other); each
        naming the message's ``ref``, if it has one (the answer comes after its pong: the client finds its
        message by it)."""
        s = self.sessions.online.get(sender)
        if s is None:
            return []
        frame: dict[str, Any]
        if how == _DELIVERED:
            frame = {"type": FrameType.DELIVERED.value, "to": to}
        elif how == _STORED:
            return [Send((s.id,), stored_frame(to, ref))]
        elif how == ErrorCode.QUEUE_FULL:
            frame = error(ErrorCode.QUEUE_FULL, user=to)
        elif how == ErrorCode.QUOTA_EXCEEDED:
            frame = error(ErrorCode.QUOTA_EXCEEDED, quota=self.limits.sender_quota)
        elif how == ErrorCode.BLOCKED_BY_RECIPIENT:
            frame = error(ErrorCode.BLOCKED_BY_RECIPIENT, user=to)
        else:
            frame = error(ErrorCode.STORE_FULL, command=FrameType.MESSAGE.value, user=to)
        if ref is not None:
            frame["ref"] = ref
        return [Send((s.id,), frame)]

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
               locks: dict[str, float], node: str, now: float, away: dict[str, str] | None = None
               ) -> list[ServerEffect]:
        """The engine's whole view, read at once (at start, and after any gap): ``online`` user -> node,
        the last logouts and lockouts' ends (the host's clock), every block, who is away. This node's view
        becomes it; its users hear of each login and logout it had missed. This node's own users are its own
        business."""
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
        if away is not None:
            self.away.reset(away)
        return self.presence.settle(effects)
