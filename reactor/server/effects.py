"""What the server's rules ask their host to do: the effect types, each a frozen record the host carries out.

The host carries out the effects of one event in order:

- ``Send``: one frame to one or many connections (encode it once);
  ``SendBatch``: several frames, in order, to each of many connections;
  ``SendStored``: stored messages to one connection, in order, each frame
  without its ``text``: the host reads the texts from its store (the logic
  keeps only what it needs to know of a stored message: sender, sizes, time);
- ``Close``: close a connection once what was sent to it is flushed;
- ``SetTimer`` / ``CancelTimer``: (re)arm or drop a named timer; when it
  comes due the host calls ``timer_fired(key, now)``;
- ``KeepMessage``, ``ForgetMessages``, ``AddBlock``, ``RemoveBlock`` (a
  ``StoreChange``): a durable change; the ``Send``s after it must wait until it
  is stored. Its ``confirm`` (a ``Send``, or None) is the reply that says it is
  kept: sent in its place once stored; if the store cannot keep it (full),
  the host calls ``not_stored(change, now)`` instead, which undoes it and
  answers for it;
- ``Remember``, ``NoteSession``: history (``reactor/server/history.py``): a
  message or broadcast, a session's start or end, written with the turn's
  changes; nothing waits for them (a live message is not confirmed by its
  history), and what the durability cannot keep of them is lost;
- ``ReadHistory``: read a user's history; the host answers with
  ``history_read(conn, request, rows, now)``;
- ``ForgetHistory`` (a ``StoreChange``): a user forgets its copy of a conversation;
- ``WhenWritable``: once this connection has room for more output (what was
  sent to it before has mostly left), call ``writable(conn, now)``;
- ``LoggedIn``: this connection is a user's now, no longer a stranger's (it
  comes before the welcome): the host lifts the limits it keeps on strangers;
- ``LoginFailed``: a login attempt on this connection failed (an unknown
  name, a wrong password, a locked account, too many errors): the host
  counts these per source address and logs the counts, not each attempt;
- ``CheckPassword``: check this password against this hash (an account
  whose password field is a scrypt hash, ``reactor/server/passwords.py``): slow, so
  the host has it checked off the loop and calls ``password_checked(conn, ok,
  now)`` with the answer (``ok`` None: it could not be checked);
- ``HashPassword``: make a hash field of this new password, off the loop too;
  the host answers ``password_hashed(conn, field, now)`` (None: it could not);
- ``SetPassword``: write this account's new password field into the accounts
  file (``reactor/server/accounts_file.py``), if its line still holds the
  password checked; the host answers ``password_written(conn, user, field,
  refusal, now)`` (``refusal`` None: the file holds it now).

A cluster node's rules (``reactor/cluster/rules.py``) return six more, the
``ClusterEffect``s: ``ClaimLogin``, ``CountPassword``, ``ReleaseLogin``, ``Relay``, ``RelayMessage`` and
``Publish``.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any

from ..protocol import ByeReason, ErrorCode, Frame, FrameType
from ..timer_effects import CancelTimer, SetTimer

if TYPE_CHECKING:
    from .sessions import Session

__all__ = ["Send", "SendBatch", "SendStored", "Close", "SetTimer", "CancelTimer", "KeepMessage", "ForgetMessages",
           "AddBlock", "RemoveBlock", "ForgetHistory", "Remember", "NoteSession", "ReadHistory",
           "WhenWritable", "LoggedIn", "LoginFailed", "CheckPassword", "HashPassword", "SetPassword", "StoreChange",
           "STORE_CHANGES", "HistoryNote", "HistoryRow",
           "ServerEffect", "SERVER_EFFECTS", "ClaimLogin", "CountPassword", "ReleaseLogin", "Relay", "RelayMessage",
           "Publish", "ClusterEffect", "CLUSTER_EFFECTS", "PresenceNote", "Step", "error", "reply", "bye"]


# The frames the rules build name their type (and a bye its reason) by the protocol's words, as plain strs
# (``FrameType.WELCOME.value``): a frame is then the same whether built here or decoded, and the frames of the
# hot path take the str from a module constant made once (a lookup of an enum member costs ~1,000 instructions).
_ERROR = FrameType.ERROR.value


def error(code: ErrorCode, **fields: Any) -> Frame:
    """An ``error`` frame with ``code`` and ``fields``."""
    frame: Frame = {"type": _ERROR, "code": code}
    frame.update(fields)
    return frame


def bye(reason: ByeReason, **fields: Any) -> Frame:
    """A ``bye`` frame: the server closes the connection, for ``reason`` (and ``fields``: an operator's ``text``)."""
    frame: Frame = {"type": FrameType.BYE.value, "reason": reason.value}
    frame.update(fields)
    return frame


@dataclass(frozen=True, slots=True)
class Send:
    """One frame to one or many connections: the host encodes it once."""
    conns: tuple[int, ...]
    frame: Frame


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Several frames, in order, to each of these connections: encoded once, one write each."""
    conns: tuple[int, ...]
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class SendStored:
    """Stored messages to this connection, in order: each frame is whole but for its ``text``, which the host
    reads from its store by the frame's ``id`` (the store sees the changes it has not committed yet)."""
    conn: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close this connection once what was sent to it is flushed."""
    conn: int


@dataclass(frozen=True, slots=True)
class KeepMessage:
    """A durable change: keep message ``id`` from ``sender`` for ``to`` (``sent``: wall-clock seconds, or None).
    ``confirm``, as in each store change: the reply sent, in this place, once the change is stored. ``ref``: the
    id the sender's client gave the message (or None), kept with it so that the message is not kept twice.
    ``handed_here``: see ``Mail.refused``. ``relayed``: a cluster node keeps a message another node relayed to
    it (its ref is known to the engine as this very message's, so it is kept, not taken for a repeat)."""
    id: int
    to: str
    sender: str
    text: str
    sent: float | None = None
    confirm: Send | None = None
    ref: str | None = None
    # Its recipient, if online here, is handed it by this process's mail (so once handed, a refusal comes too
    # late: it stands confirmed); False: a cluster node's retry, which reaches anyone only once the engine kept it.
    handed_here: bool = True
    relayed: bool = False


@dataclass(frozen=True, slots=True)
class ForgetMessages:
    """A durable change: forget the kept messages ``ids`` (acknowledged by their recipient)."""
    ids: tuple[int, ...]
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class AddBlock:
    """A durable change: ``blocker`` blocks ``blocked``."""
    blocker: str
    blocked: str
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class RemoveBlock:
    """A durable change: ``blocker`` no longer blocks ``blocked``."""
    blocker: str
    blocked: str
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class ForgetHistory:
    """A durable change: ``owner`` forgets its copy of its history with ``peer`` (None: its broadcasts), up to
    the last message kept so far."""
    owner: str
    peer: str | None
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class Remember:
    """History: ``sender`` sent ``text`` to ``to`` (None: a broadcast, which those in ``hidden``, blocking the
    sender then, did not get) at ``sent`` (wall-clock seconds, or None). Written with the turn's changes;
    nothing waits for it."""
    sender: str
    to: str | None
    text: str
    sent: float | None = None
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoteSession:
    """History: ``user`` logged in (``online``) or out here at ``at`` (wall-clock seconds): the broadcasts it
    got are those sent while it was logged in. Nothing waits for it."""
    user: str
    online: bool
    at: float | None


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Read the last ``count`` messages of ``owner``'s history with ``peer`` (None: its broadcasts, sent or
    got), newest first; the host answers with ``history_read(conn, self, rows, now)``, each row (sender, text,
    sent)."""
    conn: int
    owner: str
    peer: str | None
    count: int


@dataclass(frozen=True, slots=True)
class WhenWritable:
    """Call ``writable(conn, now)`` once this connection has room for more output."""
    conn: int


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """This connection has logged in: it is no stranger any more."""
    conn: int


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """A failed login attempt on this connection; ``reason`` says which kind, in a few words."""
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Check ``password`` against the hash field ``hashed`` off the loop; answer with ``password_checked``."""
    conn: int
    hashed: str
    password: str = dataclass_field(repr=False)   # never in a log line


@dataclass(frozen=True, slots=True)
class HashPassword:
    """Make a hash field of the new ``password`` the user on ``conn`` chose, off the loop; answer with
    ``password_hashed``."""
    conn: int
    password: str = dataclass_field(repr=False)   # never in a log line


@dataclass(frozen=True, slots=True)
class SetPassword:
    """Write ``field`` as ``user``'s password in the accounts file if its line still holds ``expected`` (the
    password the user's current one was checked against); answer with ``password_written`` for ``conn``."""
    conn: int
    user: str
    field: str
    expected: str = dataclass_field(repr=False)   # (a plain password, for an account that had one)


@dataclass(frozen=True, slots=True)
class ClaimLogin:
    """Cluster mode: the password given for ``user`` on ``conn`` (None: gone since) was right (``ok``) or
    wrong; the engine decides the rest for every node at once (the count of wrong ones, the lockout, the one
    login per user) and the host answers with ``login_decided``."""
    conn: int | None
    user: str
    ok: bool


@dataclass(frozen=True, slots=True)
class CountPassword:
    """Cluster mode: the current password ``user`` gave on ``conn`` to change it was right (``ok``) or wrong; the
    engine counts it as a login's for every node (a wrong one toward the lockout, a right one ends the count).
    A wrong one is answered with ``password_counted``; a right one needs no answer."""
    conn: int
    user: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ReleaseLogin:
    """Cluster mode: ``user`` logged out of this node: free its login, stamp its logout, tell the other nodes."""
    user: str


@dataclass(frozen=True, slots=True)
class Relay:
    """Cluster mode: ``event`` for the node ``node``, about one of its users (see reactor/cluster/rules.py)."""
    node: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RelayMessage:
    """Cluster mode: message ``id`` from ``sender`` for ``to``, a user logged in on another node (as this one
    knows): the engine hands it to the node ``to`` is logged in on if that node's lease is live, else keeps it
    for ``to``'s next login; the host answers with ``relay_answered``. ``origin``: the node whose user
    ``sender`` is, to be told what became of it (None: this one, which sends it for the first time: the engine
    drops it, ``again``, if it knows its ``ref`` already). ``ref``: the id the sender's client gave it, or None."""
    id: int
    to: str
    sender: str
    text: str
    sent: float | None = None
    origin: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """Cluster mode: ``event`` for every other node (a broadcast)."""
    event: dict[str, Any]


# What only a cluster node's logic returns besides.
ClusterEffect = ClaimLogin | CountPassword | ReleaseLogin | Relay | RelayMessage | Publish
CLUSTER_EFFECTS: tuple[type[ClusterEffect], ...] = (ClaimLogin, CountPassword, ReleaseLogin, Relay, RelayMessage,
                                                    Publish)
StoreChange = KeepMessage | ForgetMessages | AddBlock | RemoveBlock | ForgetHistory   # durable; the store takes these
STORE_CHANGES: tuple[type[StoreChange], ...] = (KeepMessage, ForgetMessages, AddBlock, RemoveBlock, ForgetHistory)
HistoryNote = Remember | NoteSession   # history the durability writes with the turn's changes, unwaited for
HistoryRow = tuple[str, str, "float | None"]   # a message of a history as read: sender, text, sent
ServerEffect = (Send | SendBatch | SendStored | Close | SetTimer | CancelTimer | KeepMessage | ForgetMessages
                | AddBlock | RemoveBlock | ForgetHistory | Remember | NoteSession | ReadHistory | WhenWritable
                | LoggedIn | LoginFailed | CheckPassword | HashPassword | SetPassword)   # what ChatServer returns
SERVER_EFFECTS: tuple[type[ServerEffect], ...] = (Send, SendBatch, SendStored, Close, SetTimer, CancelTimer,
                                                  *STORE_CHANGES, Remember, NoteSession, ReadHistory, WhenWritable,
                                                  LoggedIn, LoginFailed, CheckPassword, HashPassword, SetPassword)


@dataclass(frozen=True, slots=True)
class PresenceNote:
    """Internal, never returned: ``user`` came (``conn``: its session) or went here. ``hidden``: the users it
    had blocked then, who are not told. ``Presence.settle`` (``reactor/server/presence.py``) logs it and tells
    it in its place."""
    conn: Session | None
    user: str
    online: bool
    hidden: frozenset[str]


Step = ServerEffect | ClusterEffect | PresenceNote   # what the parts gather, before ``settle`` tells the notes


def reply(conn: int, frame: Frame) -> list[Step]:
    """``frame`` to ``conn`` alone, as the answer to its frame."""
    return [Send((conn,), frame)]
