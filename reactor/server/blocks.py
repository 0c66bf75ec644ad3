"""Who blocked whom, indexed both ways: a blocker's list, and who blocked a user (asked on every message)."""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Blocks", "NOBODY"]

NOBODY: frozenset[str] = frozenset()   # read-only stand-in for an empty set of names


class Blocks:
    """Every block. The other parts read ``blocking`` and ``blockers`` (the hot path asks them) and change
    them only through ``set`` and ``reset``."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.blocking: dict[str, set[str]] = {}   # blocker -> the users it blocked
        self.blockers: dict[str, set[str]] = {}   # blocked -> the users who blocked it
        self.reset(pairs)

    def blocks(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked``."""
        return blocked in self.blocking.get(blocker, NOBODY)

    def hidden_from(self, user: str) -> frozenset[str]:
        """The users ``user`` blocked now, who are not told of its comings and goings."""
        blocked = self.blocking.get(user)
        return frozenset(blocked) if blocked else NOBODY

    def set(self, blocker: str, blocked: str, on: bool) -> None:
        """``blocker`` blocks ``blocked`` (``on``), or no longer does."""
        if on:
            self.blocking.setdefault(blocker, set()).add(blocked)
            self.blockers.setdefault(blocked, set()).add(blocker)
            return
        for index, key, member in ((self.blocking, blocker, blocked), (self.blockers, blocked, blocker)):
            names = index.get(key)
            if names is not None:
                names.discard(member)
                if not names:
                    del index[key]

    def reset(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Every block is one of ``pairs`` (blocker, blocked) now."""
        self.blocking.clear()
        self.blockers.clear()
        for blocker, blocked in pairs:
            self.set(blocker, blocked, True)
