"""A cluster node's durability: each store change a script on the engine, and the texts of its users' kept
messages at hand.

The ``Durability`` of ``reactor/server/durability.py`` on the engine: a store
change is a script (``reactor/cluster/scripts.py``: KEEP, FORGET, BLOCK); its
reply answers for it, in order, and what the logic said after it waits in the
host's queue until then. With ``appendfsync always`` the engine syncs once per
turn of its own loop for all its clients: a group commit. The engine checks
what only it can count: the recipient's cap (``queue_full``) and the sender's
quota (``quota_exceeded``), both the logic's figures; and whether a message with
the same ref was kept or relayed already (``again``: nothing is kept, and it is
confirmed). A message relayed to this node on its way (``relayed``) is not asked
about: its ref is the engine's own record of it.

History: the turn's ``Remember``s go in one ``REMEMBER`` script at the turn's end
(or before the next change or read, so they keep their order); nothing waits
for it. A message kept for later is in the history by ``KEEP`` itself (once: a
repeat of its ref, ``again``, writes none), and the
sessions by ``LOGIN`` and ``LOGOUT``: ``NoteSession`` is nothing here. Reads are
``READH``, forgetting ``FORGETH``, trimming ``TRIMH`` (which also tells the
engine how long history is kept, and its cap, as ``JOIN`` does).

The texts of the messages kept for this node's users are cached here as they
come (kept here, read at login, or told through the inbox) and dropped when
their user leaves; ``texts`` answers from the cache alone, and a text it has not
is left out as on any host (``with_texts``): the next login reads it again.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..protocol import ErrorCode
from ..server.durability import Answered, HistoryAnswer
from ..server.effects import (
    AddBlock,
    ForgetHistory,
    ForgetMessages,
    HistoryNote,
    HistoryRow,
    KeepMessage,
    ReadHistory,
    Remember,
    RemoveBlock,
    StoreChange,
)
from ..server.limits import stored_size
from . import scripts
from .engine import EngineError, Reply
from .rules import ClusterChatServer

__all__ = ["EngineDurability", "message_record"]

log = logging.getLogger(__name__)

RunScript = Callable[[Any, list[Any], Callable[[Reply], Any]], None]   # (script, args, reply): on the engine


def message_record(to: str, sender: str, text: str, sent: float | None, ref: str | None) -> tuple[str, int]:
    """A message's record in the engine (JSON: to, from, text, sent, size, chars, cost, and ref if it has one),
    as KEEP and RELAY take it and a node reads it back, and its cost against its sender's quota."""
    size = len(text.encode("utf-8", "surrogatepass"))
    cost = stored_size(size)
    fields = {"to": to, "from": sender, "text": text, "sent": sent, "size": size, "chars": len(text), "cost": cost}
    if ref is not None:
        fields["ref"] = ref
    return json.dumps(fields), cost


HELD_NOTES = 10_000   # messages of history held while the engine is not up; more are not kept (and logged)
_NOTE_FIELDS = 5      # REMEMBER's arguments a message


class EngineDurability:
    """The engine as a node's durability (see the module's docstring)."""

    def __init__(self, run: RunScript, node: str, logic: ClusterChatServer, answered: Answered, *,
                 history_keep_ms: int = 0, history_cap: int = 0, up: Callable[[], bool] = lambda: True) -> None:
        """``history_keep_ms``: how long the engine keeps history (0: none); ``history_cap``: the messages of its
        own a user's history keeps; ``up``: whether the engine connection is up (history written while it is
        not waits for ``resume``)."""
        self._run = run
        self._up = up
        self._held: list[Any] = []                 # history written while the engine was not up (``resume``)
        self._node = node
        self._logic = logic
        self._answered = answered
        self._texts: dict[int, str] = {}           # texts of the kept messages of this node's users
        self._texts_of: dict[str, list[int]] = {}  # user -> the ids in _texts that are its
        self._notes: list[Any] = []                # the turn's history, as REMEMBER's arguments
        self.history_keep_ms = history_keep_ms
        self.history_cap = history_cap

    # -- history ---------------------------------------------------------------

    def remember(self, note: HistoryNote) -> None:
        """A message or broadcast for the turn's REMEMBER (a session: LOGIN and LOGOUT note it themselves)."""
        if type(note) is Remember:
            self._notes += (note.sender, note.to or "", note.text, "" if note.sent is None else note.sent,
                            "\n" + "\n".join(note.hidden) + "\n" if note.hidden else "")   # (_NOTE_FIELDS)

    def _write_notes(self) -> None:
        notes, self._notes = self._notes, []
        if not self._up():   # (a node delivers what its inbox brought while its command connection reconnects)
            if len(self._held) + len(notes) > HELD_NOTES * _NOTE_FIELDS:
                log.warning("history not kept: %d messages while the engine was away", len(notes) // _NOTE_FIELDS)
            else:
                self._held += notes
            return
        self._run(scripts.REMEMBER, notes, self._remembered)

    def resume(self) -> None:
        """The engine is up again: the history written meanwhile goes first."""
        if self._held:
            self._notes, self._held = self._held + self._notes, []
            self._write_notes()

    def _remembered(self, reply: Reply) -> None:
        if isinstance(reply, EngineError):
            log.warning("history not kept: %s", reply)

    def read_history(self, request: ReadHistory, answer: HistoryAnswer) -> None:
        """READH, after the history before it; its records as rows (a record that will not do is left out)."""
        if self._notes:
            self._write_notes()
        self._run(scripts.READH, [request.owner, request.peer or "", request.count],
                  lambda reply: answer(_rows(reply)))

    def trim_history(self, before: float) -> bool:
        """TRIMH (the engine's clock says what is too old), again while it drops whole batches."""
        def trimmed(reply: Reply) -> None:
            if reply == scripts.HISTORY_TRIM_BATCH:
                self.trim_history(before)
        self._run(scripts.TRIMH, [self.history_keep_ms, self.history_cap], trimmed)
        return False

    # -- store changes -------------------------------------------------------------

    def write(self, number: int, change: StoreChange) -> None:
        """A script on the engine; its reply answers for change ``number``."""
        args: list[Any]
        if self._notes:
            self._write_notes()
        if isinstance(change, ForgetHistory):
            script, args = scripts.FORGETH, [change.owner, change.peer or ""]
        elif isinstance(change, KeepMessage):
            if self._logic.here(change.to):
                self.cache(change.to, change.id, change.text)
            record, cost = message_record(change.to, change.sender, change.text, change.sent, change.ref)
            script, args = scripts.KEEP, [change.id, change.to, change.sender, record, cost, self._logic.queue_cap,
                                          self._logic.quota or 0, change.ref or "", int(not change.relayed)]
        elif isinstance(change, ForgetMessages):
            script, args = scripts.FORGET, list(change.ids)
            for mid in change.ids:
                self._texts.pop(mid, None)
        else:
            script, args = scripts.BLOCK, [change.blocker, change.blocked, int(type(change) is AddBlock), self._node]
        self._run(script, args, lambda reply: self._written(number, change, reply))

    def _written(self, number: int, change: StoreChange, reply: Reply) -> None:
        """The engine's reply to change ``number`` (replies come in order)."""
        refused: list[tuple[StoreChange, ErrorCode]] = []
        if isinstance(change, KeepMessage) and reply == "again":   # kept already: confirmed, and not kept twice
            log.info("message %s from %s to %s was kept already", change.ref, change.sender, change.to)
            self._texts.pop(change.id, None)
        elif isinstance(change, KeepMessage) and reply != "kept":
            code = ErrorCode.STORE_FULL
            if reply in (ErrorCode.QUEUE_FULL, ErrorCode.QUOTA_EXCEEDED):
                code = ErrorCode(reply)
            if isinstance(reply, EngineError):
                log.warning("message %d to %s not kept: %s", change.id, change.to, reply)
            refused.append((change, code))
        elif isinstance(change, (AddBlock, RemoveBlock, ForgetHistory)) and isinstance(reply, EngineError):
            refused.append((change, ErrorCode.STORE_FULL))
        elif isinstance(reply, EngineError):
            log.warning("%r not stored: %s", change, reply)
        self._answered(number, refused)

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        """The cached texts of ``ids``; one not cached is left out."""
        texts = self._texts
        return {mid: texts[mid] for mid in ids if mid in texts}

    def end_turn(self) -> None:
        """The turn's history in one script; nothing to commit: the engine connection writes the turn's scripts
        once, by itself."""
        if self._notes:
            self._write_notes()

    def cache(self, user: str, mid: int, text: str) -> None:
        """The text of message ``mid``, kept for ``user`` of this node."""
        if mid not in self._texts:
            self._texts[mid] = text
            self._texts_of.setdefault(user, []).append(mid)

    def release(self, user: str) -> None:
        """``user`` left this node: the texts of its messages go."""
        for mid in self._texts_of.pop(user, ()):
            self._texts.pop(mid, None)

    def clear(self) -> None:
        """Every user of this node left it."""
        self._texts.clear()
        self._texts_of.clear()


def _rows(reply: Reply) -> list[HistoryRow]:
    """READH's records as history rows (sender, text, sent); an error reads as no history (logged)."""
    if isinstance(reply, EngineError) or not isinstance(reply, list):
        log.warning("history not read: %s", reply)
        return []
    rows: list[HistoryRow] = []
    for record in reply:
        try:
            r = json.loads(record)
            sent = r.get("s")
            rows.append((str(r["f"]), str(r["x"]), float(sent) if type(sent) in (int, float) else None))
        except (TypeError, ValueError, KeyError):
            continue
    return rows
