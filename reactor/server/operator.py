"""What the operator sees of a running server and does to it: the metrics' figures, readiness, and the admin
socket's commands (``reactor.ops.admin.AdminHost``), over the host's and the rules' public views.

``ServerOperator`` makes the server's registry (``reactor/ops/catalog.py``) on the rules' own counts and gives it
the figures read when Prometheus asks: each a length or a running total the server keeps anyway (users online,
strangers, bytes, what is kept for offline users), so a scrape costs the same at 10 users or 10,000. The
commands go to the rules (``ChatServer.kick``, ``lock``, ``unlock``, ``notice``), whose effects the host carries
out (``ServerHost.carry_out``); ``reload`` is SIGHUP's reload (``AccountsReload``), told how it ended.
A cluster node's (``reactor/cluster/operator.py``) reaches the users of every node.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ..loop import EventLoop
from ..ops.admin import WhoRow
from ..ops.catalog import chat_registry, loop_turns
from ..ops.metrics import Registry
from .host import ServerHost, StopOnStoreFailure
from .reload import AccountsReload
from .rules import ChatServer

__all__ = ["ServerOperator"]


class ServerOperator:
    """The operator's view of one server (``metrics``, ``ready``) and its ``AdminHost``."""

    def __init__(self, loop: EventLoop, host: ServerHost, logic: ChatServer, reload: AccountsReload, *,
                 store: StopOnStoreFailure | None = None, node: str | None = None) -> None:
        """``store``: the host's store, whose failure makes the server not ready; ``node``: a cluster node's id,
        which labels every series."""
        self._loop = loop
        self._host = host
        self._logic = logic
        self._reload = reload
        self._store = store
        self.node = node
        self._wall_offset = time.time() - loop.time()   # the loop's clock -> Unix time, for who's ``since``
        self.metrics: Registry = chat_registry(node, logic.counts)
        for source, callback in self.figures().items():
            if source in self.metrics.sources:
                self.metrics.provide(source, callback)

    def figures(self) -> dict[str, Callable[[], Any]]:
        """The callbacks of the metrics read at scrape time, by source (each O(1): no scrape walks the users)."""
        host, logic = self._host, self._logic
        online, mail, traffic, verifier = logic.sessions.online, logic.mail, host.traffic, host.verifier
        figures: dict[str, Callable[[], Any]] = {
            "users_online": lambda: len(online),
            "connections": lambda: {"stranger": host.strangers, "user": host.connections - host.strangers},
            "bytes_received": lambda: traffic.received,
            "bytes_sent": lambda: traffic.sent,
            "password_checks_pending": lambda: verifier.pending,
            "password_helper_restarts": lambda: verifier.restarts,
            "stored_messages": lambda: mail.kept,
            "stored_bytes": lambda: mail.kept_bytes,
        }
        stats = self._loop.turn_stats
        if stats is not None:
            figures["loop_turns"] = lambda: loop_turns(stats)
        return figures

    def ready(self) -> str | None:
        """None if the server is ready for new users, else why not (``/readyz``): its store open."""
        if self._host.stopping:
            return "shutting down"
        if self._store is not None and self._store.failure is not None:
            return f"the store failed: {self._store.failure}"
        return None

    # -- AdminHost ---------------------------------------------------------------

    def who(self) -> Iterator[WhoRow]:
        """The users logged in here, from a snapshot taken now (the rows are made a slice a turn)."""
        sessions = list(self._logic.sessions.online.values())
        now, offset, tls, node = self._loop.time(), self._wall_offset, self._host.tls, self.node
        return (WhoRow(s.user, s.conn.address, s.since + offset, max(0.0, now - s.last_active), tls, node)
                for s in sessions)

    def kick(self, user: str, reason: str | None) -> bool:
        if self._logic.sessions.where(user) is None:
            return False
        self._host.carry_out(self._logic.kick(user, reason, self._loop.time()))
        return True

    def lock(self, user: str, seconds: float) -> bool:
        if user not in self._logic.logins.accounts:
            return False
        now = self._loop.time()
        self._host.carry_out(self._logic.lock(user, now + seconds, now))
        return True

    def unlock(self, user: str) -> bool:
        return self._logic.unlock(user, self._loop.time())

    def notice(self, text: str) -> int:
        self._host.carry_out(self._logic.notice(text, self._loop.time()))
        return len(self._logic.sessions.names())

    def reload(self, done: Callable[[str | None], object]) -> None:
        self._reload.request(done)

    def stats(self) -> list[tuple[str, float]]:
        return self.metrics.samples()
