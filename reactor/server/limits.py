"""Per-user limits: a token bucket for what reaches others or the disk, and a quota on the bytes kept for others.

Limits are per user, not per connection: logging in again resets nothing. A
token bucket (``rate`` tokens a second, at most ``burst`` saved) pays for what
reaches others or the disk: a message or broadcast costs one token per started
``RATE_UNIT`` bytes of its text on the wire, a startprivate, block or unblock
one; without the tokens it is refused with ``rate_limited`` (``retry``: whole
seconds until it would pass). A broadcast costs what a message does, whoever
hears it: what protects a reader is the bytes that reach it, the same for both.
And ``sender_quota`` caps the bytes a user has kept for others
(``STORED_OVERHEAD`` plus each text's UTF-8), freed as recipients acknowledge:
beyond it a message is refused with ``quota_exceeded``.
"""
from __future__ import annotations

import math

from ..ops.catalog import RefusedMessages
from ..protocol import ErrorCode
from .effects import Send, Step, error

__all__ = ["RATE", "BURST", "RATE_UNIT", "SENDER_QUOTA", "STORED_OVERHEAD", "Limits", "wire_size", "wire_bytes",
           "cost", "stored_size"]

RATE = 5.0                  # tokens a user earns per second (the sustained rate of messages)
BURST = 20                  # tokens a user can save up (the messages it may send at once)
RATE_UNIT = 4096            # bytes of text on the wire one token pays for: a bigger message costs more
SENDER_QUOTA = 1 << 20      # bytes a user may have kept for others, all recipients together
STORED_OVERHEAD = 64        # bytes a kept message counts besides its text's UTF-8, so tiny ones are not free


def wire_size(text: str) -> int:
    """About the bytes of ``text`` in a frame (see ``wire_bytes``)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def wire_bytes(size: int, chars: int) -> int:
    """About the bytes in a frame of a text of ``size`` UTF-8 bytes and ``chars`` characters: its UTF-8, since
    frames leave as UTF-8 (``reactor.framing.encode``), JSON escaping only a quote, a backslash or a tab (one
    byte more each), which this leaves out. (Before text left as UTF-8, each non-ASCII character was a 6-byte
    ``\\uXXXX`` escape, and ``chars`` counted.)"""
    return size


def cost(text: str) -> int:
    """The tokens a message of ``text`` costs: one per started ``RATE_UNIT`` bytes on the wire, at least one."""
    return max(1, -(-wire_size(text) // RATE_UNIT))


def stored_size(size: int) -> int:
    """What a kept message of ``size`` UTF-8 bytes counts against its sender's quota."""
    return STORED_OVERHEAD + size


class Limits:
    """Each user's token bucket and the bytes it has kept for others.

    ``rate`` None: no rate limit; ``sender_quota`` None: no quota. ``checks_quota`` False: the quota is
    counted and checked elsewhere (a cluster node: the engine does), ``over_quota`` never says so here.
    ``refused``: where a message or broadcast refused for want of tokens is counted (``rate_limited``)."""

    def __init__(self, rate: float | None = RATE, burst: int = BURST, sender_quota: int | None = SENDER_QUOTA,
                 checks_quota: bool = True, refused: RefusedMessages | None = None) -> None:
        self.rate = rate
        self._refused = refused if refused is not None else RefusedMessages()
        self.burst = burst
        self.sender_quota = sender_quota
        self._checks_quota = checks_quota
        self._buckets: dict[str, tuple[float, float]] = {}   # user -> (tokens, when counted)
        self._kept_by: dict[str, int] = {}                   # sender -> bytes kept for others (quota count)

    def spend(self, conn: int, user: str, cost: int, command: str, now: float) -> list[Step]:
        """Take ``cost`` tokens from ``user``'s bucket: [] if it had them, else the refusal to ``conn``
        (nothing taken)."""
        rate = self.rate
        if rate is None:
            return []
        burst = self.burst
        tokens, when = self._buckets.get(user, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        cost = min(cost, burst)   # a low burst must not forbid the biggest messages for good
        if tokens < cost:
            self._buckets[user] = (tokens, now)
            retry = max(1, math.ceil((cost - tokens) / rate))
            if command == "message" or command == "broadcast":
                self._refused.rate_limited += 1
            return [Send((conn,), error(ErrorCode.RATE_LIMITED, command=command, retry=retry))]
        self._buckets[user] = (tokens - cost, now)
        return []

    def kept_by(self, sender: str) -> int:
        """The bytes ``sender`` has kept for others, as its quota counts them."""
        return self._kept_by.get(sender, 0)

    def over_quota(self, sender: str, size: int) -> bool:
        """Whether keeping ``size`` more bytes (a ``stored_size``) for others would take ``sender`` over its quota."""
        quota = self.sender_quota
        return self._checks_quota and quota is not None and self._kept_by.get(sender, 0) + size > quota

    def charge(self, sender: str, size: int) -> None:
        """``sender`` keeps ``size`` more bytes for others."""
        self._kept_by[sender] = self._kept_by.get(sender, 0) + size

    def refund(self, sender: str, size: int) -> None:
        """``size`` of the bytes ``sender`` kept for others are freed."""
        left = self._kept_by.get(sender, 0) - size
        if left > 0:
            self._kept_by[sender] = left
        else:
            self._kept_by.pop(sender, None)
