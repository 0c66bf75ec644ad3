"""Private-chat brokering: the open requests between users, and the one-time tokens of the accepted ones.

A user asks another for a private chat (``startprivate``); the target accepts
or declines (``private_answer``). On acceptance the target gets a token
(``private_expect``), valid ``token_ttl`` seconds (timer ``("private",
requester, target)``); once its client listens for it (``private_ready``),
the requester is told where to connect (``private_connect``), with the token.
A request ends when either party leaves or blocks the other. In TLS mode each
party's certificate is relayed with the token, so each can check the other.

On a cluster a request lives on its target's node: the requester's node
relays the ask there (``reactor/cluster/rules.py``), whose checks are the very
ones here (``refusal``).
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ..protocol import ErrorCode, Frame, FrameType
from .blocks import Blocks
from .commands import command, string, typed
from .effects import CancelTimer, Relay, SetTimer, Step, error, reply
from .limits import Limits
from .sessions import Party, Session, Sessions, route, with_cert

__all__ = ["TOKEN_TTL", "Request", "PrivateChats", "new_token"]

log = logging.getLogger(__name__)

TOKEN_TTL = 30.0   # seconds an accepted request's token stays valid


def new_token() -> str:
    return secrets.token_urlsafe(16)


class Request:
    """An open private-chat request; ``token`` is set once the target accepted."""

    __slots__ = ("requester", "target", "token", "expires")

    def __init__(self, requester: str, target: str) -> None:
        self.requester = requester
        self.target = target
        self.token: str | None = None
        self.expires = 0.0


class PrivateChats:
    """The open requests, (requester, target) -> ``Request``; each party's ``requests`` lists its own."""

    def __init__(self, sessions: Sessions, blocks: Blocks, limits: Limits, accounts: Mapping[str, str], *,
                 token_ttl: float = TOKEN_TTL, token_factory: Callable[[], str] = new_token) -> None:
        self._sessions = sessions
        self._blocks = blocks
        self._limits = limits
        self._accounts = accounts
        self._token_ttl = float(token_ttl)
        self._token_factory = token_factory
        self._requests: dict[tuple[str, str], Request] = {}

    def refusal(self, requester: str, target: str, party: Party | None) -> Frame | None:
        """Why ``requester`` may not ask ``target`` (``party``: where it is; None: offline) for a private chat
        now; None if it may."""
        if self._blocks.blocks(target, requester):   # before `offline`: a blocked user learns no presence
            return error(ErrorCode.PRIVATE_BLOCKED, user=target)
        if party is None:
            return error(ErrorCode.OFFLINE, user=target)
        if (requester, target) in self._requests or (target, requester) in self._requests:
            return error(ErrorCode.PRIVATE_PENDING, user=target)
        if isinstance(party, Session) and party.conn.listen is None:
            return error(ErrorCode.PRIVATE_UNAVAILABLE, user=target)
        return None

    def open(self, requester: Party, target: Session) -> list[Step]:
        """Ask ``target`` whether it takes a private chat with ``requester`` (checked and paid for)."""
        key = (requester.user, target.user)
        self._requests[key] = Request(*key)
        for party in (requester, target):
            if party.requests is None:
                party.requests = set()
            party.requests.add(key)
        log.debug("private request %s -> %s", *key)
        return [route(target, {"type": FrameType.PRIVATE_REQUEST.value, "from": requester.user})]

    def cancel(self, req: Request, tell: tuple[str, ...], fired: bool = False) -> list[Step]:
        """Forget ``req``; each user in ``tell`` who is online gets private_cancelled naming the other."""
        key = (req.requester, req.target)
        del self._requests[key]
        where = self._sessions.where
        for name in key:
            party = where(name)
            if party is not None and party.requests:
                party.requests.discard(key)
        effects: list[Step] = []
        if req.token is not None and not fired:
            effects.append(CancelTimer(("private",) + key))
        for name in tell:
            party = where(name)
            if party is not None:
                other = req.target if name == req.requester else req.requester
                effects.append(route(party, {"type": FrameType.PRIVATE_CANCELLED.value, "user": other}))
        return effects

    def cancel_between(self, one: str, other: str) -> list[Step]:
        """End a request between ``one`` and ``other`` (either way), if there is one: both are told."""
        effects: list[Step] = []
        for key in ((one, other), (other, one)):
            req = self._requests.get(key)
            if req is not None:
                effects += self.cancel(req, key)
        return effects

    def leave(self, party: Party) -> list[Step]:
        """``party`` is leaving: its requests end, and the other party of each is told."""
        effects: list[Step] = []
        user = party.user
        for key in list(party.requests or ()):
            req = self._requests.get(key)
            if req is not None:
                effects += self.cancel(req, (req.target if req.requester == user else req.requester,))
        return effects

    def token_due(self, key: tuple[Any, ...], now: float) -> list[Step]:
        """The timer of an accepted request's token came due."""
        req = self._requests.get(key[1:])
        if req is None or req.token is None:
            return []
        if req.expires > now:
            return [SetTimer(key, req.expires)]
        log.info("private request %r -> %r: token expired", req.requester, req.target)
        return self.cancel(req, (req.requester, req.target), fired=True)

    def clear(self) -> None:
        """Every request ends, nobody told (the server shuts down)."""
        self._requests.clear()

    # -- commands ----------------------------------------------------------------

    @command(FrameType.STARTPRIVATE, string("user"))
    def startprivate(self, s: Session, now: float, user: str) -> list[Step]:
        if user not in self._accounts:
            return reply(s.id, error(ErrorCode.INVALID_USER))
        me = s.user
        if user == me:
            return reply(s.id, error(ErrorCode.SELF, command="startprivate"))
        party = self._sessions.where(user)
        refusal = self.refusal(me, user, party)
        if refusal is not None:
            return reply(s.id, refusal)
        refusal_of_cost = self._limits.spend(s.id, me, 1, "startprivate", now)
        if refusal_of_cost:
            return refusal_of_cost
        if not isinstance(party, Session):   # cluster mode: the request lives on the target's node, which answers
            assert party is not None
            return [Relay(party.node, {"kind": "startprivate", "from": me, "to": user, "cert": s.conn.cert})]
        return self.open(s, party)

    @command(FrameType.PRIVATE_ANSWER, string("user"), typed("accept", bool, "true or false"))
    def private_answer(self, s: Session, now: float, requester: str, accept: bool) -> list[Step]:
        me = s.user
        req = self._requests.get((requester, me))
        if req is None or req.token is not None:
            return reply(s.id, error(ErrorCode.NO_REQUEST, user=requester))
        party = self._sessions.where(requester)
        if not accept:
            log.debug("private request %s -> %s declined", requester, me)
            assert party is not None   # (a request ends when either party leaves)
            return self.cancel(req, ()) + [route(party, error(ErrorCode.PRIVATE_DECLINED, user=me))]
        req.token = self._token_factory()
        req.expires = now + self._token_ttl
        expect = {"type": FrameType.PRIVATE_EXPECT.value, "user": requester, "token": req.token}
        return [SetTimer(("private", requester, me), req.expires), route(s, with_cert(expect, party))]

    @command(FrameType.PRIVATE_READY, string("user"), string("token"))
    def private_ready(self, s: Session, now: float, requester: str, token: str) -> list[Step]:
        me = s.user
        req = self._requests.get((requester, me))
        if req is None or req.token is None or not secrets.compare_digest(
                token.encode("utf-8", "surrogatepass"), req.token.encode()):
            log.debug("conn %d: private_ready for no live token from %.40r", s.id, requester)
            return []   # stale (expired or cancelled, and told so) or bogus: nothing to do
        listen = s.conn.listen
        assert listen is not None   # (the request was made only to a user who said where it listens)
        host, port = listen
        log.debug("private request %s -> %s: connecting", requester, me)
        connect = {"type": FrameType.PRIVATE_CONNECT.value, "user": me, "host": host, "port": port, "token": token}
        party = self._sessions.where(requester)
        assert party is not None   # (a request ends when either party leaves)
        return self.cancel(req, (), fired=False) + [route(party, with_cert(connect, s))]
