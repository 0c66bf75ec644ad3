"""The chat server's metrics, declared once: each one's name, meaning, labels, and what feeds it.

``ChatCounts`` holds the counted ones: the hosts bump its attributes where the event happens
(``counts.messages_relayed += 1``; ``counts.messages_refused.rate_limited += 1``). The others are read at
scrape time from the callbacks the hosts provide by ``source`` name (``registry.provide("users_online",
...)``). A metric whose source is never provided is not served: cluster mode's, on a single server.
``docs/operating.md`` (Seeing inside a running server) says what each means to an operator.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..loop import TurnStats
from .metrics import OTHER, Histogram, LabelCounts, Metric, Registry

# Seconds: a commit is an fsync (a millisecond or so on an SSD, FULL synchronous); the engine's round trip
# is a loopback or LAN hop (a tenth of a millisecond to a few).
COMMIT_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROUND_TRIP_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class RefusedMessages(LabelCounts):
    """Messages and broadcasts refused, by the error code their sender heard (shortened)."""

    __slots__ = ("blocked", "rate_limited", "quota_exceeded", "queue_full", "too_long", "store_full",
                 "control_characters", "invalid_user", OTHER)
    blocked: int
    rate_limited: int
    quota_exceeded: int
    queue_full: int
    too_long: int
    store_full: int
    control_characters: int
    invalid_user: int
    other: int


class FailedLogins(LabelCounts):
    __slots__ = ("unknown_user", "wrong_password", "locked", "too_many_errors", OTHER)
    unknown_user: int
    wrong_password: int
    locked: int
    too_many_errors: int
    other: int


class Lockouts(LabelCounts):
    __slots__ = ("passwords", "operator", OTHER)
    passwords: int
    operator: int
    other: int


class RefusedConnections(LabelCounts):
    """Connections closed at accept: too many strangers in all, or from one address, or TLS handshakes from it."""

    __slots__ = ("too_many_strangers", "too_many_from_address", "too_many_handshakes", OTHER)
    too_many_strangers: int
    too_many_from_address: int
    too_many_handshakes: int
    other: int


class AdminCommands(LabelCounts):
    __slots__ = ("who", "kick", "lock", "unlock", "notice", "reload", "stats", OTHER)
    who: int
    kick: int
    lock: int
    unlock: int
    notice: int
    reload: int
    stats: int
    other: int


class ChatCounts:
    """What the hosts count as it happens: one slotted attribute each (see ``CHAT_METRICS`` for the meanings)."""

    __slots__ = ("messages_relayed", "messages_stored", "messages_delivered_from_storage", "messages_refused",
                 "broadcasts", "logins_succeeded", "logins_failed", "lockouts", "connections_refused",
                 "tls_handshakes", "tls_handshake_failures", "cluster_fencings", "admin_commands", "store_commit",
                 "engine_round_trip")

    def __init__(self) -> None:
        self.messages_relayed = 0
        self.messages_stored = 0
        self.messages_delivered_from_storage = 0
        self.messages_refused = RefusedMessages()
        self.broadcasts = 0
        self.logins_succeeded = 0
        self.logins_failed = FailedLogins()
        self.lockouts = Lockouts()
        self.connections_refused = RefusedConnections()
        self.tls_handshakes = 0
        self.tls_handshake_failures = 0
        self.cluster_fencings = 0
        self.admin_commands = AdminCommands()
        self.store_commit = Histogram(COMMIT_BOUNDS)
        self.engine_round_trip = Histogram(ROUND_TRIP_BOUNDS)


def _values(counts: type[LabelCounts]) -> tuple[str, ...]:
    return tuple(counts.__slots__)


CHAT_METRICS = (
    # who is on
    Metric("chat_users_online", "gauge", "Users logged in on this server (node).", source="users_online"),
    Metric("chat_connections", "gauge", "Open client connections: not logged in yet (stranger) or a user's.",
           source="connections", label="state", values=("stranger", "user")),
    Metric("chat_connections_refused_total", "counter",
           "Connections closed at accept with 'busy': too many strangers in all, or from one address.",
           counted="connections_refused", label="reason", values=_values(RefusedConnections)),
    # messages
    Metric("chat_messages_relayed_total", "counter",
           "Messages handed to an online recipient's connection (one per recipient; broadcasts not counted).",
           counted="messages_relayed"),
    Metric("chat_messages_stored_total", "counter", "Messages kept for an offline recipient.",
           counted="messages_stored"),
    Metric("chat_messages_delivered_from_storage_total", "counter",
           "Kept messages sent to their recipient once online.", counted="messages_delivered_from_storage"),
    Metric("chat_messages_refused_total", "counter", "Messages and broadcasts refused, by the reason the sender heard.",
           counted="messages_refused", label="reason", values=_values(RefusedMessages)),
    Metric("chat_broadcasts_total", "counter", "Broadcasts sent (once each, however many hear them).",
           counted="broadcasts"),
    Metric("chat_bytes_received_total", "counter", "Bytes read from client connections.", source="bytes_received"),
    Metric("chat_bytes_sent_total", "counter", "Bytes written to client connections.", source="bytes_sent"),
    # logins
    Metric("chat_logins_succeeded_total", "counter", "Logins that succeeded.", counted="logins_succeeded"),
    Metric("chat_logins_failed_total", "counter", "Login attempts that failed, by reason.",
           counted="logins_failed", label="reason", values=_values(FailedLogins)),
    Metric("chat_lockouts_total", "counter",
           "Accounts locked: after too many wrong passwords, or by the operator (admin lock).",
           counted="lockouts", label="cause", values=_values(Lockouts)),
    Metric("chat_password_checks_pending", "gauge", "Hashed-password checks waiting for the helper process.",
           source="password_checks_pending"),
    Metric("chat_password_helper_restarts_total", "counter", "Times the password-check helper process was restarted.",
           source="password_helper_restarts"),
    Metric("chat_tls_handshakes_total", "counter", "TLS handshakes completed.", counted="tls_handshakes"),
    Metric("chat_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.",
           counted="tls_handshake_failures"),
    # the store
    Metric("chat_stored_messages", "gauge", "Messages kept for offline recipients now.", source="stored_messages"),
    Metric("chat_stored_bytes", "gauge", "Bytes of the messages kept for offline recipients now.",
           source="stored_bytes"),
    Metric("chat_store_commit_seconds", "histogram", "How long each commit of the store took (one per loop turn).",
           counted="store_commit"),
    # the loop
    Metric("chat_loop_turn_seconds", "histogram",
           "How long the event loop's turns took (its work between two waits); a long one delays every user.",
           source="loop_turns"),
    # readiness and cluster mode
    Metric("chat_ready", "gauge", "1 if /readyz answers 200 (store open; in cluster mode engine up, not fenced).",
           source="ready"),
    Metric("chat_cluster_engine_connected", "gauge", "1 while the node is connected to the engine.",
           source="cluster_engine_connected"),
    Metric("chat_cluster_commands_pending", "gauge", "Commands sent to the engine and not yet answered.",
           source="cluster_commands_pending"),
    Metric("chat_cluster_engine_round_trip_seconds", "histogram", "Round trip of the engine's commands.",
           counted="engine_round_trip"),
    Metric("chat_cluster_fenced", "gauge", "1 while this node is fenced (it lost its lease and serves no one).",
           source="cluster_fenced"),
    Metric("chat_cluster_fencings_total", "counter", "Times this node was fenced.", counted="cluster_fencings"),
    # the operator
    Metric("chat_admin_commands_total", "counter", "Commands received on the admin socket.",
           counted="admin_commands", label="command", values=_values(AdminCommands)),
)


@dataclass(frozen=True)
class TurnHistogram:
    """The loop's ``TurnStats`` as a histogram (``HistogramData``)."""

    bounds: tuple[float, ...]
    buckets: list[int]
    sum: float
    count: int


def loop_turns(stats: TurnStats) -> TurnHistogram:
    """The figures of ``chat_loop_turn_seconds``, from a loop made with ``turn_stats=True``."""
    return TurnHistogram(stats.BOUNDS, stats.bands, stats.busy, stats.turns)


CLUSTER_ONLY = "chat_cluster_"   # the names of cluster mode's metrics begin so


def chat_registry(node: str | None = None, counts: ChatCounts | None = None) -> Registry:
    """The chat server's metrics on ``counts`` (the rules', ``ChatServer.counts``; by default fresh ones:
    ``registry.counts``). With a ``node`` (cluster mode), it labels every series; without, cluster mode's
    metrics are left out."""
    counts = counts if counts is not None else ChatCounts()
    if node:
        return Registry(CHAT_METRICS, counts, {"node": node})
    return Registry([m for m in CHAT_METRICS if not m.name.startswith(CLUSTER_ONLY)], counts)
