"""One durability interface for both hosts: where the logic's store changes go, and what a stored message whose
text cannot be found comes to.

The logic's ``StoreChange``s must be kept before what it said after them goes
out (a sender's ``stored`` means the message is on disk). The host numbers the
changes in order, holds what follows each in its one queue (``ServerHost``),
and hands the change to its ``Durability``:

- the single process: ``StoreDurability``, a store (SQLite, or
  ``MemoryStore``) written in one transaction per loop turn and committed
  before the loop sleeps (a group commit): the turn's changes are answered then;
- a cluster node: the engine, one script per change, answered in order as its
  replies come (``EngineDurability``, ``reactor/cluster/keeping.py``).

A durability answers through the ``Answered`` callback it was given:
``answered(upto, refused)``: every change up to number ``upto`` is answered, and
``refused`` lists those not kept, each with why (``store_full``; on a cluster
also ``queue_full`` or ``quota_exceeded``). The logic's ``not_stored`` answers
for each of those in place of its confirmation; what waited goes out.

History (``Remember``, ``NoteSession``) goes to the durability too, but
nothing waits for it: a relayed message is sent at once, and its history is
written with the turn's changes (``remember``: the store buffers the turn's and
writes them in a few statements before anything else of the turn, and commits them
with it, in the changes' transaction when it has any; a turn of history alone
the store commits without waiting for the disk; the engine sends them in one
script). A read (``read_history``) sees
everything written before it. ``trim_history`` drops what is older than the
history is kept.

Stored messages (``SendStored``) get their texts from the durability where the
effect is carried out (``texts``). A message whose text it has not is left out
and logged (``with_texts``), on either host: sent with an empty or made-up
text it would be shown and acknowledged, and so lost for good; left out, it
stays kept (on a cluster node its next login reads it from the engine again).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..ops.metrics import Observer
from ..protocol import ErrorCode, Frame
from .effects import HistoryNote, HistoryRow, KeepMessage, ReadHistory, StoreChange
from .store import HISTORY_TRIM_BATCH, StoreFull

__all__ = ["Durability", "Answered", "HistoryAnswer", "TransactionalStore", "StoreDurability", "with_texts"]

log = logging.getLogger(__name__)

Answered = Callable[[int, list[tuple[StoreChange, ErrorCode]]], None]   # (upto, refused): see the docstring
HistoryAnswer = Callable[[list[HistoryRow]], None]   # a history read: its rows, newest first


class Durability(Protocol):
    """Where a host keeps the logic's store changes (see the module's docstring)."""

    def write(self, number: int, change: StoreChange) -> None:
        """Keep change number ``number`` (numbered from 1, in order); answer for it, in order, through
        ``Answered``."""

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        """The texts of the kept messages ``ids`` that it has (the changes not answered yet included)."""
        ...

    def end_turn(self) -> None:
        """The loop is about to sleep."""

    def remember(self, note: HistoryNote) -> None:
        """Write this history with the turn's changes; nothing waits for it."""

    def read_history(self, request: ReadHistory, answer: HistoryAnswer) -> None:
        """Read the history ``request`` asks for (everything written before it included); ``answer`` its rows."""

    def trim_history(self, before: float) -> bool:
        """Drop (some of) the history sent before ``before`` (wall-clock seconds); whether more of it is left
        for the next turn."""
        ...


class TransactionalStore(Protocol):
    """Durable state: ``apply`` takes store changes, ``commit`` makes them durable; either raises
    ``StoreFull`` (the open transaction rolled back) when there is no room. ``texts`` reads kept messages;
    ``remember``, ``history`` and ``trim_history`` write, read and trim the history (``remember``'s ``changes``:
    store changes follow in the same transaction, whose commit they wait for; history alone nothing waits for, and
    a store may commit it without waiting for the disk)."""

    def apply(self, change: StoreChange) -> None: ...
    def commit(self) -> None: ...
    def texts(self, ids: Iterable[int]) -> dict[int, str]: ...
    def remember(self, notes: list[HistoryNote], changes: bool = False) -> None: ...
    def history(self, owner: str, peer: str | None, count: int) -> list[HistoryRow]: ...
    def trim_history(self, before: float) -> int: ...


def with_texts(frames: tuple[Frame, ...], texts: dict[int, str]) -> list[Frame]:
    """A ``SendStored``'s frames with their texts, by id; one whose text is missing is left out (logged)."""
    whole = []
    for frame in frames:
        text = texts.get(frame["id"])
        if text is None:
            log.error("stored message %d has no text in the store: not sent", frame["id"])
            continue
        whole.append({**frame, "text": text})
    return whole


class StoreDurability:
    """A store as a host's durability: the changes of a loop turn go into one transaction, committed by
    ``end_turn`` (before the loop sleeps), which answers for them all.

    A turn the store cannot keep because it is full (``StoreFull``: the store rolled the transaction back)
    is not a reason to stop: its messages are refused (the logic's ``not_stored`` answers in place of their
    confirmation), and its other changes, acknowledgements that free room and blocks, are tried again in a
    transaction of their own. The next turn stores again.

    The texts of the messages the turn keeps are held here until its commit (``texts`` gives them: even a
    turn the store rolled back gives the messages the host has already handed on); older ones the store reads.
    So the texts of waiting messages are on disk, not in memory.

    ``commits`` (a histogram, ``observe(seconds)``) is told how long each turn's commit took."""

    def __init__(self, store: TransactionalStore, answered: Answered, commits: Observer | None = None) -> None:
        self.store = store
        self._answered = answered
        self._commits = commits
        self._turn: list[StoreChange] = []    # the changes of the open transaction
        self._kept: dict[int, str] = {}       # the texts of the messages it adds, by id, until its commit
        self._full = False                    # the store refused this turn's transaction
        self._last = 0                        # the number of the last change written
        self._notes: list[HistoryNote] = []   # history not yet written into the transaction

    def write(self, number: int, change: StoreChange) -> None:
        """Into the store's open transaction (``end_turn`` ends it), after the history before it."""
        self._last = number
        if type(change) is KeepMessage:
            self._kept[change.id] = change.text
        self._turn.append(change)
        if self._notes:
            self._write_notes(changes=True)
        if not self._full:
            try:
                self.store.apply(change)
            except StoreFull:
                self._full = True

    def remember(self, note: HistoryNote) -> None:
        """Buffered until the turn's next change, read or commit: written then in one statement. (A relayed
        message's cost, callgrind: see docs/performance.md.)"""
        self._notes.append(note)

    def _write_notes(self, changes: bool = False) -> None:
        """The buffered history into the open transaction (``changes``: a store change follows it there); no room
        rolls the turn back, as a change would."""
        notes, self._notes = self._notes, []
        if self._full:
            return
        try:
            self.store.remember(notes, changes)
        except StoreFull:
            self._full = True

    def read_history(self, request: ReadHistory, answer: HistoryAnswer) -> None:
        """Read from the store at once (its open transaction included)."""
        if self._notes:
            self._write_notes()
        answer(self.store.history(request.owner, request.peer, request.count))

    def trim_history(self, before: float) -> bool:
        """A batch into the open transaction: whether it was a whole one (more may be left)."""
        if self._notes:
            self._write_notes()
        if self._full:
            return False
        try:
            return self.store.trim_history(before) >= HISTORY_TRIM_BATCH
        except StoreFull:
            self._full = True
            return False

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        """This turn's from what it keeps, the others' from the store."""
        kept = self._kept
        ids = list(ids)
        texts = self.store.texts([i for i in ids if i not in kept])
        if kept:
            texts.update((i, kept[i]) for i in ids if i in kept)
        return texts

    def end_turn(self) -> None:
        """Make this turn's changes durable, then answer for them (those refused last first: the logic undoes
        them in the reverse order it made them)."""
        if self._notes:
            self._write_notes()
        if not self._turn:   # the history alone, if any (nothing waits for it); nothing open: a no-op
            if not self._full:
                try:
                    self.store.commit()
                except StoreFull:
                    log.warning("the store is full: this turn's history is not kept")
            self._full = False
            return
        started = time.perf_counter()
        refused = self._store_turn()
        if self._commits is not None:
            self._commits.observe(time.perf_counter() - started)
        self._full = False
        self._turn = []
        self._kept = {}
        self._answered(self._last, [(change, ErrorCode.STORE_FULL) for change in reversed(refused)])

    def _store_turn(self) -> list[StoreChange]:
        """Commit this turn's changes; those the store had no room for, in order."""
        store = self.store
        if not self._full:
            try:
                store.commit()
                return []
            except StoreFull:
                pass
        others = [change for change in self._turn if type(change) is not KeepMessage]
        try:
            for change in others:
                store.apply(change)
            store.commit()
            kept = True
        except StoreFull:
            kept = False
        log.warning("the store is full: %d messages refused; %d other changes %s",
                    len(self._turn) - len(others), len(others), "kept" if kept else "refused too")
        return [change for change in self._turn if type(change) is KeepMessage or not kept]
