"""The timer effects both chat state machines return: arm a named timer, or drop it.

The logic cannot read a clock, so it names a deadline (in the clock of the
``now`` it was given) and the host calls back ``timer_fired(key, now)``.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)arm the timer ``key`` to fire at ``when``; replaces one with the same key."""
    key: Hashable
    when: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Drop the timer ``key`` if it is armed."""
    key: Hashable
