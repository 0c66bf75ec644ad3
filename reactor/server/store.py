"""Keeps the server's durable state, blocks, offline messages and history, in one SQLite file that survives restarts.

The texts of offline messages stay in the store: ``load`` gives what the logic
keeps of each (its sizes, not its text), and the host reads the texts with
``texts`` when it sends them. ``MemoryStore`` is the same interface in this
process alone, for a host without a state file (it keeps no history).

Version 2 of the schema adds a kept message's ``ref`` (the id its sender's
client gave it) and the history; version 3 indexes the history by sender and
id (``history_sender``) where version 2 did by sender, recipient and id; an
older file is upgraded when opened.

History: one row
per direct message or broadcast, written by its sender, whatever its
recipients (``history``: a broadcast's recipient is ``''`` and ``hidden``
names who blocked its sender then), the sessions (``sessions``: a broadcast
was got by those logged in when it was sent), and how far each user forgot
each conversation (``forgotten``: a user's copy ends there; once both sides
of a conversation forgot a message it is deleted). A user's history is bounded
by what it wrote: at most ``history_cap`` messages (a little more between
trims), the oldest dropped first, so nobody can push someone else's
conversations out by writing to them; ``trim_history`` drops what is older than
the history is kept, a batch at a time.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from .effects import (
    AddBlock,
    ForgetHistory,
    ForgetMessages,
    HistoryNote,
    HistoryRow,
    KeepMessage,
    NoteSession,
    Remember,
    RemoveBlock,
    StoreChange,
)
from .wal import inspect_wal, keep_copy

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3          # 3: the history's index by sender and id; 2: history and kept messages' refs (1: blocks
#                             and offline messages; upgraded at open)
HISTORY_CAP = 5000          # messages of its own a user's history keeps, at most (0: no history is written)
HISTORY_TRIM_BATCH = 500    # rows one trim_history deletes at most (a big backlog goes a batch a turn)
StoredRow = tuple[int, str, str, int, int, float | None, str | None]   # a kept message as load gives it (see there)
_IDS_PER_QUERY = 500   # ids read in one query (SQLite allows 999 parameters or more)
MEMORY = ":memory:"
_INSERT_ONE = "INSERT INTO history (sender, recipient, text, sent, hidden) VALUES (?, ?, ?, ?, ?)"
_ROWS_PER_INSERT = (64, 16, 4, 1)   # the sizes of the INSERTs a turn's plain history rows go in, largest first
_INSERT_PLAIN = {size: "INSERT INTO history (sender, recipient, text, sent) VALUES "
                 + ", ".join(["(?, ?, ?, ?)"] * size) for size in _ROWS_PER_INSERT}   # (in the order given)
SYNCHRONOUS = ("FULL", "NORMAL")

# A sender's history rows in the order they were written, with their recipients: a conversation is read from
# both sides' (from the newest back, the recipient read in the index: at most a user's cap of them), and the cap
# drops a sender's oldest in order. (Version 2 indexed (sender, recipient, id): the cap's trim sorted all of a
# sender's rows for its oldest, ~4,500 instructions a message for a sender at its cap, callgrind.)
_HISTORY_BY_SENDER = "CREATE INDEX history_sender ON history (sender, id, recipient)"
_HISTORY_SCHEMA = (   # the history, which version 2 adds (indexed as version 3 does)
    "CREATE TABLE history (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,"
    " text TEXT NOT NULL, sent REAL, hidden TEXT)",
    _HISTORY_BY_SENDER,
    "CREATE INDEX history_broadcasts ON history (id) WHERE recipient = ''",
    "CREATE TABLE sessions (user TEXT NOT NULL, start REAL NOT NULL, end REAL)",
    "CREATE INDEX sessions_user ON sessions (user, start)",
    "CREATE TABLE forgotten (owner TEXT NOT NULL, peer TEXT NOT NULL, upto INTEGER NOT NULL,"
    " PRIMARY KEY (owner, peer)) WITHOUT ROWID",
)
# What each older version needs to become the next: ``_UPGRADES[v]`` turns version v into v + 1. Version 2: a
# kept message's ref (the id its sender's client gave it), and the history (as version 3 has it); version 3: the
# history's index by sender (a version 1 file upgraded has it already).
_UPGRADES = {
    1: ("ALTER TABLE offline ADD COLUMN ref TEXT", *_HISTORY_SCHEMA),
    2: ("DROP INDEX IF EXISTS history_pair", _HISTORY_BY_SENDER.replace("INDEX", "INDEX IF NOT EXISTS", 1)),
}
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE offline (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,"
    " text TEXT NOT NULL, sent REAL, ref TEXT)",
    "CREATE TABLE blocks (blocker TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY (blocker, blocked))",
    *_HISTORY_SCHEMA,
)
# The last ``count`` messages between two users still in ``owner``'s copy (``upto``: forgotten up to there).
_DIRECT = ("SELECT id, sender, text, sent FROM"
           " (SELECT id, sender, text, sent FROM history WHERE sender = :owner AND recipient = :peer AND id > :upto"
           "  ORDER BY id DESC LIMIT :count)"
           " UNION ALL SELECT * FROM"
           " (SELECT id, sender, text, sent FROM history WHERE sender = :peer AND recipient = :owner AND id > :upto"
           "  ORDER BY id DESC LIMIT :count)"
           " ORDER BY id DESC LIMIT :count")
# The last ``count`` broadcasts ``owner`` sent, or got: sent by another while it was logged in (the session that
# began last before it had not ended), not hidden from it (it blocked the sender then).
_BROADCASTS = ("SELECT h.sender, h.text, h.sent FROM history h INDEXED BY history_broadcasts"
               " WHERE h.recipient = '' AND h.id > :upto AND (h.sender = :owner OR"
               " (instr(coalesce(h.hidden, ''), :tag) = 0 AND EXISTS (SELECT 1 FROM"
               "  (SELECT s.end FROM sessions s WHERE s.user = :owner AND s.start <= h.sent"
               "   ORDER BY s.start DESC LIMIT 1) WHERE end IS NULL OR end >= h.sent)))"
               " ORDER BY h.id DESC LIMIT :count")


class StoreError(Exception):
    """The state file cannot be used; the message says why, for a person."""


class StoreInUse(StoreError):
    """Another server has the state file open."""


class StoreFull(StoreError):
    """The disk (or the store's size cap) is full: this transaction was rolled back, the store still works."""


class Store:
    """Blocks and offline messages in SQLite: ``apply`` store changes, ``commit`` makes them durable.

    Everything applied since the last ``commit`` is one transaction, so the
    host commits once per loop iteration however many messages it stored
    (group commit). A file is opened in WAL mode and locked for this process
    alone: a second server on the same file is refused. A file of an older
    schema version is upgraded at open, in one transaction, after it was checked.
    A write that does not
    fit (SQLITE_FULL: the disk or ``max_bytes`` is full) rolls back the whole
    open transaction and raises ``StoreFull``; the store goes on working, so a
    later transaction is kept once there is room. After any other failed write
    the store is broken for good: every later call raises, so nothing that
    waited for a commit is ever confirmed on the strength of a lost one.

    At open, a write-ahead log left by a crash is read first as SQLite's
    recovery will read it (``reactor/server/wal.py``): if recovery is about to
    drop frames of it (a damaged frame and all after it, or a transaction never
    committed), the log says how many and a copy of it as found is kept beside
    the file (``<file>-wal.damaged-<when>``), since SQLite overwrites them.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, history_cap: int = HISTORY_CAP,
                 synchronous: str = "NORMAL") -> None:
        self._conn = conn
        self.path = path
        self.commits = 0         # transactions committed (for tests and figures)
        self._pending = False    # a transaction is open
        # ``synchronous`` FULL (a file's default) syncs the commits of store changes; history alone is committed
        # under NORMAL: no fsync (0.4-3 ms each here) for a turn that only relayed messages. The connection is
        # switched between the two outside transactions (SQLite allows it nowhere else), so an open transaction
        # of a connection at NORMAL holds history alone (``_begin_changes``). In WAL mode a later synced commit
        # syncs the log before it too: history is lost only with the OS, and never a confirmed change.
        self._relax = synchronous == "FULL" and path != MEMORY   # history alone is committed under NORMAL
        self._relaxed = False    # the connection is at NORMAL now (only while _relax)
        self._broken: str | None = None
        self.history_cap = history_cap   # messages of its own a user's history keeps (0: none written)
        # How many history rows each sender has (counted once at open): its oldest go past its cap.
        self._written: dict[str, int] = dict(conn.execute("SELECT sender, count(*) FROM history GROUP BY sender"))

    # -- opening -------------------------------------------------------

    @classmethod
    def open(cls, path: str, synchronous: str = "FULL", max_bytes: int | None = None, *,
             history_cap: int = HISTORY_CAP, connect: Callable[..., sqlite3.Connection] = sqlite3.connect) -> Store:
        """Open (or create) the state at ``path``; ``':memory:'`` keeps it only while the process runs.

        ``max_bytes`` caps the database (its write-ahead log comes on top):
        a change that would grow it further raises ``StoreFull``. ``history_cap``: the
        messages of its own each user's history keeps (0: no history is written). ``connect``
        makes the SQLite connection, as ``sqlite3.connect`` does (a test can
        hand in one that fails on cue, or keep it to look inside).
        """
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        if path == MEMORY:
            return cls._open(path, synchronous, max_bytes, connect, history_cap)
        _check_path(path)
        # What SQLite's recovery will drop from the write-ahead log, seen (and the log kept) before it reads it.
        wal = f"{path}-wal"
        try:
            report = inspect_wal(wal)
        except OSError as exc:
            raise StoreError(f"Cannot read the write-ahead log {wal}: {exc.strerror or exc}") from None
        try:
            copy = keep_copy(wal) if report is not None else None
        except OSError as exc:
            raise StoreError(f"Cannot keep a copy of the damaged write-ahead log {wal}: {exc.strerror or exc}; "
                             "copy it aside before starting again") from None
        try:
            store = cls._open(path, synchronous, max_bytes, connect, history_cap)
        except StoreInUse:   # the log is another server's, live: nothing was lost
            if copy is not None:
                os.unlink(copy)
            raise
        if report is not None:   # damage lost committed changes; an unfinished transaction was never confirmed
            log.log(logging.ERROR if report.transactions else logging.WARNING,
                    "State file %s: its write-ahead log held changes that were not applied: %s; "
                    "the log as found is kept in %s", path, report.describe(), copy)
        return store

    @classmethod
    def _open(cls, path: str, synchronous: str, max_bytes: int | None,
              connect: Callable[..., sqlite3.Connection], history_cap: int = HISTORY_CAP) -> Store:
        try:
            conn = connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as exc:
            raise _error(path, exc) from None
        try:
            if path != MEMORY:
                # One writer, and no shared-memory index: the lock is taken by
                # the first read below and held until close.
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            # Read and check what is there before changing a byte of it: the
            # journal mode of someone else's database is theirs to keep.
            conn.execute("BEGIN")
            version = _check_contents(conn, path)
            conn.execute("COMMIT")
            if path != MEMORY:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"Cannot use state file {path}: WAL journal mode refused ({mode})")
                conn.execute(f"PRAGMA synchronous = {synchronous}")
            if max_bytes is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
            if version is None:
                conn.execute("BEGIN IMMEDIATE")
                _create(conn)
                conn.execute("COMMIT")
            elif version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                _upgrade(conn, version)
                conn.execute("COMMIT")
                log.info("State file %s: upgraded from schema version %d to %d", path, version, SCHEMA_VERSION)
            # Sessions a crash or a shutdown left open ended, at the latest, when the last history was written.
            conn.execute("UPDATE sessions SET end = max(start, coalesce((SELECT max(sent) FROM history), start))"
                         " WHERE end IS NULL")
            store = cls(conn, path, history_cap, synchronous)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise _error(path, exc) from None
        return store

    # -- reading -------------------------------------------------------

    def load(self) -> tuple[list[tuple[str, str]], list[StoredRow]]:
        """What the logic keeps at start: blocks as (blocker, blocked); offline messages by id, without
        their texts, as (id, to, sender, size, chars, sent, ref).

        ``size``: the text's UTF-8 bytes; ``chars``: its characters (up to a NUL, if it has one);
        ``sent``: wall-clock seconds, or None for a message stored without; ``ref``: the id its sender's
        client gave it, or None.
        """
        self._check()
        try:
            rows = self._conn.execute("SELECT blocker, blocked FROM blocks")
            blocks: list[tuple[str, str]] = [(blocker, blocked) for blocker, blocked in rows]
            offline = self._conn.execute("SELECT id, recipient, sender, length(CAST(text AS BLOB)), length(text),"
                                         " sent, ref FROM offline ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise _error(self.path, exc) from None
        return blocks, offline

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        """The texts of those offline messages ``ids`` that are kept, by id; the open transaction's too."""
        self._check()
        ids = list(ids)
        found: dict[int, str] = {}
        try:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                some = ids[start:start + _IDS_PER_QUERY]
                found.update(self._conn.execute(
                    f"SELECT id, text FROM offline WHERE id IN ({', '.join('?' * len(some))})", some))
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from None
        return found

    # -- writing -------------------------------------------------------

    def apply(self, change: StoreChange) -> None:
        """Write one store change (``KeepMessage``, ``ForgetMessages``, ``AddBlock``, ``RemoveBlock``) into the
        open transaction (durable at the next ``commit``)."""
        self._check()
        write = self._writes.get(type(change))
        if write is None:
            raise StoreError(f"unknown state change {change!r}")
        try:
            if not self._pending or self._relaxed:
                self._begin_changes()
            write(self, change)
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def _begin_changes(self) -> None:
        """A transaction whose commit is synced as the store's ``synchronous`` says: the open one, unless it
        holds history alone under NORMAL: that one is committed as it is (nothing waits for it) first."""
        if self._pending:
            if not self._relaxed:
                return
            self._conn.execute("COMMIT")
            self._pending = False
            self.commits += 1
        if self._relaxed:
            self._conn.execute("PRAGMA synchronous = FULL")
            self._relaxed = False
        self._conn.execute("BEGIN")
        self._pending = True

    def _begin_history(self) -> None:
        """The open transaction, or one for history alone: under NORMAL if the store syncs its changes."""
        if self._relax and not self._relaxed:
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._relaxed = True
        self._conn.execute("BEGIN")
        self._pending = True

    def _keep(self, change: KeepMessage) -> None:
        self._conn.execute("INSERT INTO offline (id, recipient, sender, text, sent, ref) VALUES (?, ?, ?, ?, ?, ?)",
                           (change.id, change.to, change.sender, change.text, change.sent, change.ref))
        if not self.history_cap:
            return
        # Its history, in the same transaction: a message refused is in no history.
        if change.sent is not None:
            self._insert_plain([change.sender, change.to, change.text, change.sent])
        else:
            self._history([(change.sender, change.to, change.text, None, None)])

    def _forget(self, change: ForgetMessages) -> None:
        self._conn.executemany("DELETE FROM offline WHERE id = ?", [(i,) for i in change.ids])

    def _block(self, change: AddBlock) -> None:
        self._conn.execute("INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?, ?)",
                           (change.blocker, change.blocked))

    def _unblock(self, change: RemoveBlock) -> None:
        self._conn.execute("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (change.blocker, change.blocked))

    def _forget_history(self, change: ForgetHistory) -> None:
        """``owner``'s copy ends at the last message kept so far; what both sides forgot goes."""
        conn, owner, peer = self._conn, change.owner, change.peer or ""
        upto = conn.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0]
        conn.execute("INSERT OR REPLACE INTO forgotten (owner, peer, upto) VALUES (?, ?, ?)", (owner, peer, upto))
        if not peer:
            return
        row = conn.execute("SELECT upto FROM forgotten WHERE owner = ? AND peer = ?", (peer, owner)).fetchone()
        if row is not None:
            both = min(upto, row[0])
            gone = conn.execute("DELETE FROM history WHERE (sender = ? AND recipient = ? OR sender = ? AND"
                                " recipient = ?) AND id <= ? RETURNING sender",
                                (owner, peer, peer, owner, both)).fetchall()
            for (sender,) in gone:
                self._written[sender] -= 1

    _writes: dict[type, Callable[[Any, Any], None]] = {KeepMessage: _keep, ForgetMessages: _forget, AddBlock: _block,
                                     RemoveBlock: _unblock, ForgetHistory: _forget_history}   # change -> its write

    # -- history -------------------------------------------------------

    def remember(self, notes: list[HistoryNote], changes: bool = False) -> None:
        """Write history (messages and broadcasts, sessions begun and ended) into the open transaction, in order;
        ``changes``: store changes follow it in this transaction (it is synced as theirs is, ``_begin_changes``).

        A message as the relay notes it (a time, nobody hidden) goes in with the others beside it, several rows
        an INSERT (``_insert_plain``); one with ``hidden`` or without a time (tests) alone: binding None costs
        the sqlite3 module a failed adapter lookup, an AttributeError made and dropped, ~2,600 instructions."""
        self._check()
        try:
            if changes:
                if not self._pending or self._relaxed:
                    self._begin_changes()
            elif not self._pending:
                self._begin_history()
            plain: list[Any] = []   # the plain rows so far, flat: sender, recipient, text, sent, ...
            for note in notes:
                if type(note) is Remember:
                    if not note.hidden and note.sent is not None:
                        plain += (note.sender, note.to or "", note.text, note.sent)
                        continue
                    if plain:
                        self._insert_plain(plain)
                        plain = []
                    self._conn.execute(_INSERT_ONE, (note.sender, note.to or "", note.text, note.sent,
                                                     "\n" + "\n".join(note.hidden) + "\n" if note.hidden else None))
                    self._count_history([note.sender])
                    continue
                assert type(note) is NoteSession
                if plain:   # (in order: a broadcast before a login is not the login's)
                    self._insert_plain(plain)
                    plain = []
                self._conn.execute("UPDATE sessions SET end = ? WHERE user = ? AND end IS NULL", (note.at, note.user))
                if note.online:
                    self._conn.execute("INSERT INTO sessions (user, start) VALUES (?, ?)", (note.user, note.at))
            if plain:
                self._insert_plain(plain)
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def _insert_plain(self, plain: list[Any]) -> None:
        """Rows (flat: sender, recipient, text, sent, ...; none None), in order, up to ``_ROWS_PER_INSERT[0]`` an
        INSERT of that many ``VALUES`` (a few statement sizes, each prepared once): one sqlite3_step for them all,
        and the table and its indexes opened once. 20 rows a turn, callgrind: ~9,700 instructions a row where
        one ``executemany`` row a time (None for ``hidden`` bound) cost ~20,600."""
        execute, start, end = self._conn.execute, 0, len(plain)
        for size in _ROWS_PER_INSERT:
            width = 4 * size
            while end - start >= width:
                execute(_INSERT_PLAIN[size], plain[start:start + width])
                start += width
        self._count_history(plain[0::4])

    def _history(self, rows: list[tuple[str, str, str, float | None, str | None]]) -> None:
        """History rows (sender, recipient, text, sent, hidden)."""
        self._conn.executemany(_INSERT_ONE, rows)
        self._count_history([row[0] for row in rows])

    def _count_history(self, senders: list[str]) -> None:
        """Count the rows just written by each of ``senders``: a sender past its cap (and a little: the trim is
        done once per ``cap // 16`` rows) loses its oldest."""
        written, get = self._written, self._written.get
        for sender in senders:
            written[sender] = get(sender, 0) + 1
        cap = self.history_cap
        limit = cap + max(1, cap // 16)
        for sender in set(senders):
            n = written[sender]
            if n > limit:
                self._conn.execute("DELETE FROM history WHERE id IN (SELECT id FROM history WHERE sender = ?"
                                   " ORDER BY id LIMIT ?)", (sender, n - cap))
                written[sender] = cap

    def history(self, owner: str, peer: str | None, count: int) -> list[HistoryRow]:
        """The last ``count`` messages of ``owner``'s history with ``peer`` (None: the broadcasts it sent or got),
        newest first, as (sender, text, sent); the open transaction's too."""
        self._check()
        try:
            row = self._conn.execute("SELECT upto FROM forgotten WHERE owner = ? AND peer = ?",
                                     (owner, peer or "")).fetchone()
            upto = row[0] if row is not None else 0
            if peer is not None:
                return [(sender, text, sent) for _, sender, text, sent in self._conn.execute(
                    _DIRECT, {"owner": owner, "peer": peer, "upto": upto, "count": count})]
            return self._conn.execute(_BROADCASTS, {"owner": owner, "upto": upto, "count": count,
                                                    "tag": f"\n{owner}\n"}).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from None

    def trim_history(self, before: float, batch: int = HISTORY_TRIM_BATCH) -> int:
        """Delete (in the open transaction) up to ``batch`` of the oldest history rows sent before ``before``
        (wall-clock seconds), and the sessions that ended before it; how many rows went (``batch``: call again)."""
        self._check()
        try:
            if not self._pending:
                self._begin_history()
            gone = self._conn.execute(
                "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?) AND coalesce(sent, 0) < ?"
                " RETURNING sender", (batch, before)).fetchall()
            for (sender,) in gone:
                self._written[sender] -= 1
            self._conn.execute("DELETE FROM sessions WHERE end < ?", (before,))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return len(gone)

    def commit(self) -> None:
        """Make everything applied since the last commit durable, as one transaction."""
        self._check()
        if not self._pending:
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        self._pending = False
        self.commits += 1

    def close(self) -> None:
        """Commit what is pending (unless the store failed) and release the file."""
        if self._conn is None:
            return
        try:
            if self._pending and self._broken is None:
                self.commit()
        finally:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    @property
    def broken(self) -> str | None:
        """Why the store failed, or None while it works."""
        return self._broken

    def _check(self) -> None:
        if self._conn is None:
            raise StoreError(f"state file {self.path} is closed")
        if self._broken is not None:
            raise StoreError(self._broken)

    def _fail(self, exc: sqlite3.Error, doing: str = "write") -> StoreError:
        """Roll the open transaction back; unless it just did not fit, the store is broken from now on."""
        message = f"Cannot {doing} state file {self.path}: {exc}"
        full = getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        if not full:
            self._broken = message
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._broken = message  # not known to be rolled back: trust nothing after it
        self._pending = False
        if full and self._broken is None:
            return StoreFull(message)
        return StoreError(message)


class MemoryStore:
    """``Store``'s interface in this process alone, for a host without a state file: never full, and gone at
    exit. It keeps the texts of offline messages, as a state file does, so the logic need not; it keeps no
    history (``--state :memory:`` is a SQLite store in memory, which does)."""

    def __init__(self) -> None:
        self._offline: dict[int, tuple[str, str, str, float | None, str | None]] = {}   # id -> (to, sender,
        # text, sent, ref)
        self._blocks: set[tuple[str, str]] = set()

    def load(self) -> tuple[list[tuple[str, str]], list[StoredRow]]:
        """As ``Store.load``."""
        return sorted(self._blocks), [
            (mid, to, sender, len(text.encode("utf-8", "surrogatepass")), len(text), sent, ref)
            for mid, (to, sender, text, sent, ref) in sorted(self._offline.items())]

    def texts(self, ids: Iterable[int]) -> dict[int, str]:
        """As ``Store.texts``."""
        offline = self._offline
        return {mid: offline[mid][2] for mid in ids if mid in offline}

    def apply(self, change: StoreChange) -> None:
        """As ``Store.apply``; kept at once."""
        write = self._writes.get(type(change))
        if write is None:
            raise StoreError(f"unknown state change {change!r}")
        write(self, change)

    def _keep(self, change: KeepMessage) -> None:
        self._offline[change.id] = (change.to, change.sender, change.text, change.sent, change.ref)

    def _forget(self, change: ForgetMessages) -> None:
        for mid in change.ids:
            self._offline.pop(mid, None)

    def _block(self, change: AddBlock) -> None:
        self._blocks.add((change.blocker, change.blocked))

    def _unblock(self, change: RemoveBlock) -> None:
        self._blocks.discard((change.blocker, change.blocked))

    def _forget_history(self, change: ForgetHistory) -> None:
        """It keeps no history."""

    _writes: dict[type, Callable[[Any, Any], None]] = {KeepMessage: _keep, ForgetMessages: _forget, AddBlock: _block,
                                     RemoveBlock: _unblock, ForgetHistory: _forget_history}

    def commit(self) -> None:
        """Nothing to do: what was applied is kept already."""

    def remember(self, notes: list[HistoryNote], changes: bool = False) -> None:
        """It keeps no history."""

    def history(self, owner: str, peer: str | None, count: int) -> list[HistoryRow]:
        """It keeps no history: none."""
        return []

    def trim_history(self, before: float, batch: int = HISTORY_TRIM_BATCH) -> int:
        """It keeps no history: nothing to trim."""
        return 0


def _check_path(path: str) -> None:
    """Name the usual reasons a state file cannot be opened more clearly than SQLite does."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise StoreError(f"Cannot use state file {path}: it is a directory")
    if not os.path.isdir(folder):
        raise StoreError(f"Cannot create state file {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"Cannot use state file {path}: directory {folder} is not writable")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"Cannot use state file {path}: it is not readable and writable")


def _check_contents(conn: sqlite3.Connection, path: str) -> int | None:
    """The state file's schema version (None: the database is empty); raises StoreError unless it is empty or
    a sound state file of this version or an older one this server upgrades (a version newer than this
    server's, or unknown, among others).

    Reads only: a file that is refused is left as it was found.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(f"{path} is a database but not a chat state file (no meta table); "
                         "give --state another file")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    value = None if row is None else row[0]
    try:
        version = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StoreError(f"State file {path} has an unknown schema version {value!r}") from None
    if version > SCHEMA_VERSION:
        raise StoreError(f"State file {path} was written by a newer server (schema version {version}; "
                         f"this server reads version {SCHEMA_VERSION})")
    if version != SCHEMA_VERSION and version not in _UPGRADES:
        raise StoreError(f"State file {path} has an unknown schema version {version}")
    missing = {"offline", "blocks"} - tables
    if version >= 2:   # (the history's tables came with version 2)
        missing |= {"history", "sessions", "forgotten"} - tables
    if missing:
        raise StoreError(f"State file {path} is damaged: table {', '.join(sorted(missing))} missing")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(f"State file {path} is corrupt ({problems[0]}); move it aside to start afresh")
    return version


def _create(conn: sqlite3.Connection) -> None:
    """The schema, in an empty database."""
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """A sound state file of schema ``version`` brought to ``SCHEMA_VERSION``, one version at a time."""
    for step in range(version, SCHEMA_VERSION):
        for statement in _UPGRADES[step]:
            conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _error(path: str, exc: sqlite3.Error) -> StoreError:
    """A StoreError naming the file and what SQLite found."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or name.startswith("SQLITE_CORRUPT"):
        return StoreError(f"State file {path} is corrupt or not a database ({exc}); move it aside to start afresh")
    if name == "SQLITE_BUSY" or name.startswith("SQLITE_BUSY"):
        return StoreInUse(f"State file {path} is in use by another server")
    if name.startswith("SQLITE_READONLY"):
        return StoreError(f"Cannot write state file {path}: {exc}")
    if name.startswith("SQLITE_CANTOPEN"):
        return StoreError(f"Cannot open state file {path}: {exc}")
    return StoreError(f"Cannot use state file {path}: {exc}")
