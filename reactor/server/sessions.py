"""Connections and sessions: who is connected, who is logged in (here, or on another node of a cluster), and when
each user last logged out; where a user lives and how a frame reaches it.

``Sessions`` is the directory both kinds of server use: the single process
has only sessions of its own (``Session``); a cluster node also lists the users
logged in on other nodes (``Remote``, kept up to date by
``reactor/cluster/rules.py``). ``where`` and ``route`` answer "where does this
user live" and "how does this frame reach it" for either.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..protocol import PROTOCOL_VERSION, Frame
from .commands import State
from .effects import Relay, Send

if TYPE_CHECKING:
    from .history import Reading

__all__ = ["Conn", "Session", "Remote", "Party", "Sessions", "route", "with_cert"]


class Conn:
    """One connection: its login progress and, once logged in, its ``session``."""

    __slots__ = ("id", "address", "state", "claimed", "bad", "deadline", "listen", "cert", "version", "session")

    def __init__(self, conn: int, address: str, deadline: float) -> None:
        self.id = conn
        self.address = address                # the host the connection comes from, as the host saw it
        self.state = State.HELLO
        self.claimed: str | None = None      # the account named by `username`, awaiting its password
        self.bad = 0                          # bad frames so far
        self.deadline = deadline              # login deadline
        self.listen: tuple[str, int] | None = None   # where the client accepts peers: its address, its port
        self.cert: str | None = None          # its private-chat certificate (TLS mode), relayed to its peers
        self.version = PROTOCOL_VERSION       # the protocol version its hello said
        self.session: Session | None = None   # set once logged in


class Session:
    """The logged-in part of a connection: whose it is and what it is owed."""

    __slots__ = ("conn", "id", "user", "since", "last_active", "requests", "mailbox", "pongs", "version", "seen",
                 "history")

    def __init__(self, conn: Conn, user: str, now: float, seen: int) -> None:
        self.conn = conn
        self.id = conn.id                     # its connection's number
        self.user = user
        self.since = now                      # when it logged in (for the operator's who)
        self.last_active = now
        # Made when first needed (the mailbox dropped once sent): most sessions never have either, and an
        # empty set and deque cost 216 + 760 bytes. An idle user's Python objects (tracemalloc, 10,000 users):
        # 2.99 -> 1.98 KiB.
        self.requests: set[tuple[str, str]] | None = None   # open private requests it is part of
        self.mailbox: deque[int] | None = None   # ids of the stored messages still to send, oldest first
        self.pongs = 0                        # pings answered once the mailbox is out
        self.version = conn.version           # the protocol version its hello said
        self.seen = seen                      # presence changes logged before this one it has been told of
        self.history: Reading | None = None   # its history reads on their way (reactor/server/history.py)


class Remote:
    """A user logged in on another node of the cluster: which, and the private requests it is part of here."""

    __slots__ = ("user", "node", "cert", "requests")

    def __init__(self, user: str, node: str) -> None:
        self.user = user
        self.node = node
        self.cert: str | None = None          # its private-chat certificate, as its last startprivate relayed it
        self.requests: set[tuple[str, str]] | None = None


Party = Session | Remote   # a user online anywhere


def route(party: Party, frame: Frame) -> Send | Relay:
    """``frame`` to ``party``: sent here, or relayed to its node (cluster mode)."""
    if isinstance(party, Session):
        return Send((party.id,), frame)
    return Relay(party.node, {"kind": "deliver", "to": party.user, "frame": frame})


def with_cert(frame: Frame, party: Party | None) -> Frame:
    """``frame`` with ``party``'s private-chat certificate (TLS mode), if it has one."""
    cert = party.conn.cert if isinstance(party, Session) else party.cert if party is not None else None
    if cert is not None:
        frame["cert"] = cert
    return frame


class Sessions:
    """Every connection, every user online, and the last logout of each user who has logged out.

    The other parts read ``conns``, ``online`` and ``remote`` (the hot path looks users up there) and change
    them only through these methods."""

    def __init__(self) -> None:
        self.conns: dict[int, Conn] = {}
        self.online: dict[str, Session] = {}       # user -> its session
        self.remote: dict[str, Remote] = {}        # cluster mode: user -> where it is logged in, on another node
        self._last_logout: dict[str, float] = {}
        self.shut = False                          # shut down: every event is ignored

    def user_of(self, conn: int) -> str | None:
        """The user logged in on ``conn``, or None."""
        c = self.conns.get(conn)
        return c.session.user if c is not None and c.session is not None else None

    def where(self, user: str) -> Party | None:
        """``user``'s session here, or where it is on another node, or None if it is offline."""
        return self.online.get(user) or self.remote.get(user)

    def names(self) -> set[str]:
        """Every user online, here or on another node."""
        return self.online.keys() | self.remote.keys()

    def since(self, cutoff: float) -> set[str]:
        """Every user online, or who logged out at ``cutoff`` or later."""
        names = self.names()
        names.update(name for name, t in self._last_logout.items() if t >= cutoff)
        return names

    def connect(self, conn: int, address: str, deadline: float) -> Conn:
        c = self.conns[conn] = Conn(conn, address, deadline)
        return c

    def begin(self, c: Conn, user: str, now: float, seen: int) -> Session:
        """``c`` is ``user``'s session from ``now`` (told of the presence changes before number ``seen``)."""
        s = Session(c, user, now, seen)
        c.state, c.claimed, c.session = State.ACTIVE, None, s
        self.online[user] = s
        return s

    def drop(self, c: Conn) -> None:
        """Forget the connection ``c`` (its session, if it has one, ends with ``end``)."""
        del self.conns[c.id]

    def end(self, s: Session, now: float) -> None:
        """``s``'s user logged out here at ``now``."""
        del self.online[s.user]
        self._last_logout[s.user] = now

    def add_remote(self, user: str, node: str) -> Remote:
        """Cluster mode: ``user`` is logged in on ``node``."""
        party = self.remote[user] = Remote(user, node)
        return party

    def drop_remote(self, user: str, at: float) -> None:
        """Cluster mode: ``user``, logged in on another node, logged out of it at ``at``."""
        del self.remote[user]
        self._last_logout[user] = at

    def logged_out(self, user: str, at: float, keep_later: bool = False) -> None:
        """``user`` logged out at ``at`` elsewhere (on another node); ``keep_later``: unless a later logout
        is known."""
        if keep_later:
            at = max(at, self._last_logout.get(user, at))
        self._last_logout[user] = at

    def shutdown(self, now: float) -> tuple[int, ...]:
        """Every connection is closed: its users logged out at ``now``; the connections it had."""
        conns = tuple(self.conns)
        for user in self.online:
            self._last_logout[user] = now
        self.shut = True
        self.conns.clear()
        self.online.clear()
        return conns
