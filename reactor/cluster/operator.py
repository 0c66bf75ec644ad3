"""The operator's view of a cluster node and its commands: as a single server's (``reactor/server/operator.py``),
but ``who`` lists the users of every node, ``kick``, ``lock`` and ``notice`` reach a user on whatever node serves
it, and the node is ready only while connected to the engine and holding its lease.

A kick of a user of another node is relayed to that node (``ClusterChatServer.kick``), a notice published to
all; a lock or unlock is the engine's (``ClusterHost.lock_everywhere``: every node hears it as a lockout), and a
locked user of another node is kicked there. The engine keeps the messages for offline users, for every node:
the stored-message gauges are not a node's to give (they are left out), the engine's own figures are.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

from ..loop import EventLoop
from ..ops.admin import WhoRow
from ..server.operator import ServerOperator
from ..server.reload import AccountsReload
from .host import ClusterHost
from .rules import ClusterChatServer

__all__ = ["ClusterOperator"]

NODE_ONLY = ("stored_messages", "stored_bytes")   # figures a node has only of its own users: left out


class ClusterOperator(ServerOperator):
    """``ServerOperator`` for one node of a cluster; its metrics are labelled with the node's id."""

    def __init__(self, loop: EventLoop, host: ClusterHost, logic: ClusterChatServer, reload: AccountsReload) -> None:
        self._node_host = host
        self._node_logic = logic
        super().__init__(loop, host, logic, reload, node=host.node)

    def figures(self) -> dict[str, Callable[[], Any]]:
        figures = super().figures()
        for source in NODE_ONLY:
            del figures[source]
        host, engine = self._node_host, self._node_host.engine
        figures.update(cluster_engine_connected=lambda: int(engine.up), cluster_commands_pending=lambda: engine.pending,
                       cluster_fenced=lambda: int(host.fenced))
        return figures

    def ready(self) -> str | None:
        """Ready: as a single server, and connected to the engine, holding a lease (not fenced)."""
        why = super().ready()
        host = self._node_host
        if why is None and not host.engine.up:
            why = "engine not connected"
        if why is None and host.fenced:
            why = "fenced: the node lost its lease and has not joined the cluster again"
        if why is None and not host.joined:
            why = "joining the cluster"
        return why

    def who(self) -> Iterator[WhoRow]:
        """This node's users as a single server lists them, then those of the other nodes: where they are (what
        else is known of them is their node's)."""
        elsewhere = list(self._node_logic.sessions.remote.values())
        return chain(super().who(), (WhoRow(r.user, None, None, None, None, r.node) for r in elsewhere))

    def lock(self, user: str, seconds: float) -> bool:
        """The engine's lockout first, then this node's view and the kick: a user kicked logs in again only
        after the engine has its lock."""
        if user not in self._node_logic.logins.accounts:
            return False
        self._node_host.lock_everywhere(user, seconds)
        return super().lock(user, seconds)

    def unlock(self, user: str) -> bool:
        if not super().unlock(user):
            return False
        self._node_host.lock_everywhere(user, 0)
        return True
