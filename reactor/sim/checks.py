"""The simulator's invariants: what must hold after every step of a run, at rest, and at its end.

``Checks`` sees every event the server's rules take and the effects they
return (through ``ObservedLogic``), every frame a client is given and what it
showed, and every frame a client sends. From those it keeps a ledger of the
messages (who sent each, what the server made of it, who was shown it), a
model of each account's wrong passwords and lockout, and the deadline of each
named timer. The first broken invariant raises ``Broken``:

- a message the server accepted is shown to its recipient exactly once, live
  or from storage, and never to anyone else; none is accepted while its
  recipient blocks its sender (a block its client was told of), and one the
  store refused is never shown. A stored message is shown again only to a
  session after one that could not acknowledge it (the server got no ``ack``
  for it, or could not keep its forgetting, and the session did not end with
  a logout);
- at rest, a user is logged in (as the servers say) exactly when one of its
  clients is, and each client's view of who is online is who is logged in
  (less those who ever blocked its user: they are hidden from it by design);
- an account locks at the third wrong password in a row, not before, and
  while locked turns every password away;
- no client gets a frame (other than the login's) before its welcome; no named
  timer fires after its deadline or is left unfired past it; no connection is
  cut off for output its server buffered past the limit;
- no frame is longer than its receiver takes: ``MAX_FRAME`` from the server,
  and from a client ``STRANGER_MAX_FRAME`` until its welcome;
- the rules and the loop never raise (the loop logs what a callback raised:
  any ERROR logged by ``reactor`` breaks the run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.effects import Print
from ..framing import MAX_FRAME
from ..server.commands import State
from ..server.effects import (
    AddBlock,
    CancelTimer,
    CheckPassword,
    ForgetMessages,
    KeepMessage,
    Send,
    SendBatch,
    SetTimer,
)
from ..server.host import STRANGER_MAX_FRAME

if TYPE_CHECKING:
    from .clients import SimClient

__all__ = ["Broken", "Checks", "ObservedLogic", "Message"]

EPSILON = 1e-6   # seconds: float rounding on the virtual clock
LOGIN_FRAMES = frozenset({"hello", "username_ok", "error", "bye", "welcome"})   # what may come before welcome
OUTCOMES = {"welcome": "welcome", "invalid_password": "wrong", "account_blocked": "blocked",
            "account_locked": "locked", "already_logged_in": "already", "try_again": "unavailable"}


class Broken(AssertionError):
    """An invariant broke: what, and at which step."""


@dataclass
class Message:
    """A message or broadcast (``to`` None) a client sent, and what became of it."""
    text: str
    sender: str
    to: str | None
    live: list[tuple[int, int]] = field(default_factory=list)   # (node, conn) it was sent to, live
    kept: set[int] = field(default_factory=set)                 # ids it was kept under
    refused: set[int] = field(default_factory=set)              # ... and those the store did not keep
    shown: list[tuple[int, str, int | None]] = field(default_factory=list)   # (client, user, id or None)


@dataclass
class Account:
    """What the model expects of an account's logins: wrong passwords in a row, the lockout's end."""
    failures: int = 0
    until: float | None = None


class Checks:
    """The invariants of one run (see the module's docstring)."""

    def __init__(self, passwords: dict[str, str], block_duration: float) -> None:
        self.passwords = passwords          # user -> its password in plain
        self.block_duration = block_duration
        self.messages: dict[str, Message] = {}
        self.clients: dict[tuple[int, int], SimClient] = {}   # (node, conn) -> the client on it
        self.by_address: dict[str, SimClient] = {}
        self.accounts = {user: Account() for user in passwords}
        self.attempts: dict[tuple[int, int], tuple[str, bool]] = {}   # (node, conn) -> its password: user, right
        self.claimed: dict[tuple[int, int], str] = {}                 # (node, conn) -> the name it gave
        self.checking: set[tuple[int, int]] = set()                   # passwords handed to the checker
        self.timers: dict[tuple[int, Any], float] = {}                # (node, key) -> its deadline
        self.blocks: set[tuple[str, str]] = set()     # (blocker, blocked) that the blocker's client was told of
        self.ever_blocked: set[tuple[str, str]] = set()   # (blocker, blocked) the server ever took
        self.acked: set[int] = set()                  # stored message ids the server got an ack for
        self.unforgotten: set[int] = set()            # ... whose forgetting the store or engine did not keep
        self.kept_text: dict[int, str] = {}           # stored message id -> its text
        self.step = 0
        self.broken: Broken | None = None

    def note(self, what: str) -> None:
        """An invariant broke where raising would not stop the run (a loop callback): ``settle`` raises it."""
        if self.broken is None:
            self.broken = Broken(f"step {self.step}: {what}")

    def fail(self, what: str) -> None:
        if self.broken is None:
            self.broken = Broken(f"step {self.step}: {what}")
        raise self.broken

    # -- from the clients -------------------------------------------------------------

    def to_server(self, client: SimClient, frame: dict[str, Any], size: int) -> None:
        limit = MAX_FRAME if client.welcomed else STRANGER_MAX_FRAME
        if size > limit:
            self.fail(f"{client} sent a frame of {size} bytes, over the {limit} the server takes: {frame['type']}")
        kind = frame.get("type")
        if kind == "message" or kind == "broadcast":
            text = frame["text"]
            if text not in self.messages and client.logic.user is not None:
                self.messages[text] = Message(text, client.logic.user, frame.get("to") if kind == "message" else None)
        elif kind == "unblock" and client.logic.user is not None:
            self.blocks.discard((client.logic.user, frame.get("user", "")))

    def before_frame(self, client: SimClient, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if not client.welcomed and kind not in LOGIN_FRAMES:
            self.fail(f"{client} got a {kind!r} frame before its welcome: {frame}")

    def after_frame(self, client: SimClient, frame: dict[str, Any], effects: list[Any]) -> None:
        kind = frame.get("type")
        user = client.logic.user
        if kind == "blocked" and user is not None:
            self.blocks.add((user, frame.get("user", "")))
        elif kind == "users" and not client.roster:
            client.roster = True
        elif kind == "message" and any(type(e) is Print for e in effects):
            self.shown(client, frame)

    def shown(self, client: SimClient, frame: dict[str, Any]) -> None:
        text, mid, user = frame.get("text"), frame.get("id"), client.logic.user
        message = self.messages.get(text) if type(text) is str else None
        if message is None:
            self.fail(f"{client} was shown a message nobody sent: {frame}")
            return
        assert user is not None
        text = message.text
        if frame.get("from") != message.sender:
            self.fail(f"{client} was shown {text[:20]!r} as from {frame.get('from')!r}; {message.sender} sent it")
        if message.to is not None and user != message.to:
            self.fail(f"{client}, {user}, was shown {message.sender}'s message {text[:20]!r} for {message.to}")
        if message.to is None and user == message.sender:
            self.fail(f"{client} was shown its own broadcast {text[:20]!r}")
        if type(mid) is int and mid in message.refused:
            self.fail(f"{client} was shown stored message {mid} ({text[:20]!r}), which the store did not keep")
        for number, who, earlier in message.shown:
            if who != user:
                continue
            if earlier is None or type(mid) is not int:
                self.fail(f"{client} was shown {text[:20]!r} again (live or stored), after client {number}")
            elif number == client.number:
                self.fail(f"{client} was shown stored message {mid} twice in one session")
            elif mid in self.unforgotten:
                continue   # its ack came, but could not be kept: the message stays, and comes again
            elif mid in self.acked:
                self.fail(f"{client} was shown stored message {mid} ({text[:20]!r}) again: the server had its ack"
                          f" from client {number}")
            elif self.client(number).bye == "logout":
                self.fail(f"{client} was shown stored message {mid} ({text[:20]!r}) again: client {number} showed"
                          f" it and logged out")
        message.shown.append((client.number, user, mid if type(mid) is int else None))

    def client(self, number: int) -> SimClient:
        for client in self.by_address.values():
            if client.number == number:
                return client
        raise KeyError(number)

    # -- from the server's rules ----------------------------------------------------------

    def before_event(self, node: int, logic: Any, name: str, args: tuple[Any, ...], now: float) -> None:
        if name == "connected":
            conn, _, address = args
            client = self.by_address.get(address)
            if client is not None:
                self.clients[(node, conn)] = client
        elif name == "received":
            conn, frame = args[0], args[1]
            kind = frame.get("type") if type(frame) is dict else None
            c = logic.sessions.conns.get(conn)
            if c is None:
                return
            if kind == "username" and type(frame.get("username")) is str:
                self.claimed[(node, conn)] = frame["username"]
            elif kind == "password" and c.state is State.PASSWORD and type(frame.get("password")) is str:
                self.attempts[(node, conn)] = (c.claimed, frame["password"] == self.passwords.get(c.claimed))
            elif kind == "ack" and c.session is not None and type(frame.get("ids")) is list:
                self.acked.update(i for i in frame["ids"] if type(i) is int)
        elif name == "password_checked" or name == "login_decided":
            conn = args[0]
            counted = args[1] is False if name == "password_checked" else args[2] in ("wrong", "blocked")
            self.checking.discard((node, conn))
            if conn not in logic.sessions.conns:
                attempt = self.attempts.pop((node, conn), None)
                if attempt is not None and counted:   # a wrong password counts, its connection gone or not
                    self.decide(attempt[0], attempt[1], None, now)

    def after_event(self, node: int, name: str, args: tuple[Any, ...], effects: list[Any], now: float) -> None:
        if name == "timers_fired":   # (checked once the rules took it: a journal of the run ends with it)
            for key in args[0]:
                when = self.timers.pop((node, key), None)
                if when is not None and now > when + EPSILON:
                    self.fail(f"node {node}: timer {key} fired at {now:.3f}, {now - when:.3f}s after its deadline")
        if name == "not_stored" and type(args[0]) is ForgetMessages:
            self.unforgotten.update(args[0].ids)   # (kept on disk: shown again after a restart, or on a cluster)
        if name == "not_stored" and type(args[0]) is KeepMessage:
            change = args[0]
            if change.confirm is None or change.confirm not in effects:
                message = self.messages[change.text]
                message.refused.add(change.id)
                if any(mid == change.id for _, _, mid in message.shown):
                    self.fail(f"stored message {change.id} was refused by the store after it was shown")
        for effect in effects:
            kind = type(effect)
            if kind is Send or kind is SendBatch:
                frames = (effect.frame,) if kind is Send else effect.frames
                for frame in frames:
                    self.sent(node, effect.conns, frame, now)
            elif kind is KeepMessage:
                kept = self.messages.get(effect.text)
                if kept is None:
                    self.fail(f"node {node} kept a message nobody sent: {effect.text[:40]!r}")
                    return
                kept.kept.add(effect.id)
                self.kept_text[effect.id] = effect.text
                if (effect.to, effect.sender) in self.blocks:
                    self.fail(f"{effect.sender}'s message {effect.text[:20]!r} kept for {effect.to}, who blocked it")
            elif kind is SetTimer:
                self.timers[(node, effect.key)] = effect.when
            elif kind is CancelTimer:
                self.timers.pop((node, effect.key), None)
            elif kind is AddBlock:
                self.ever_blocked.add((effect.blocker, effect.blocked))
            elif kind is CheckPassword:
                self.checking.add((node, effect.conn))

    def sent(self, node: int, conns: tuple[int, ...], frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "message" and "id" not in frame:
            message = self.messages.get(frame.get("text"))   # type: ignore[arg-type]
            if message is None:
                self.fail(f"node {node} sent a message nobody sent: {frame}")
                return
            for conn in conns:
                message.live.append((node, conn))
                self.check_blocks(message, conn, node)
            return
        if len(conns) != 1:
            return
        code = frame.get("code") if kind == "error" else kind
        outcome = OUTCOMES.get(code) if type(code) is str else None
        if outcome is None:
            return
        key = (node, conns[0])
        attempt = self.attempts.pop(key, None)
        if outcome == "unavailable":
            return
        if attempt is not None:
            self.decide(attempt[0], attempt[1], outcome, now)
        elif outcome == "locked":
            user = self.claimed.get(key)
            if user is not None:
                self.decide(user, True, "locked", now, locked_only=True)

    def check_blocks(self, message: Message, conn: int, node: int) -> None:
        client = self.clients.get((node, conn))
        user = client.logic.user if client is not None else None
        if user is not None and (user, message.sender) in self.blocks:
            self.fail(f"{message.sender}'s message {message.text[:20]!r} sent to {user}, who blocked it")

    def decide(self, user: str, right: bool, outcome: str | None, now: float, locked_only: bool = False) -> None:
        """A password for ``user`` was decided at ``now`` (``outcome``: as answered; None: its connection is gone)."""
        account = self.accounts.get(user)
        if account is None:
            return
        if account.until is not None and now >= account.until:
            account.until, account.failures = None, 0
        if account.until is not None:
            expected = "locked"
        elif locked_only:
            expected = "not locked"
        elif not right:
            account.failures += 1
            expected = "wrong"
            if account.failures >= 3:
                expected = "blocked"
                account.until, account.failures = now + self.block_duration, 0
        else:
            expected = "right"
        if outcome is None:
            return
        if expected == "right" and outcome in ("welcome", "already"):
            if outcome == "welcome":
                account.failures = 0
            return
        if outcome != expected:
            self.fail(f"a {'right' if right else 'wrong'} password for {user} was answered {outcome!r}; expected "
                      f"{expected!r} ({account.failures} wrong in a row, locked until {account.until})")

    # -- after a step, at rest, at the end ---------------------------------------------------

    def step_done(self, now: float) -> None:
        for (node, key), when in self.timers.items():
            if when < now - EPSILON:
                self.fail(f"node {node}: timer {key} due at {when:.3f} has not fired at {now:.3f}")

    def at_rest(self, clients: list[SimClient], online: set[str]) -> None:
        """Everyone's view of who is online (``online``: who is logged in, as the servers say), and the servers'
        own: a user is logged in exactly when one of its clients is."""
        logged_in = {client.logic.user for client in clients if client.active and client.logic.user is not None
                     and not client.link.reset}
        if online != logged_in:
            self.fail(f"at rest, the servers have {sorted(online)} logged in; the clients: {sorted(logged_in)}")
        for client in clients:
            user = client.logic.user
            if not client.active or not client.roster or user is None:
                continue
            hidden = {blocker for blocker, blocked in self.ever_blocked if blocked == user}
            view = set(client.logic.online_users()) - hidden
            truth = online - {user} - hidden
            if view != truth:
                self.fail(f"at rest, {client} sees {sorted(view)} online; logged in: {sorted(truth)} "
                          f"(hidden from it: {sorted(hidden)})")

    def delivered(self) -> None:
        """At the end: every message accepted was shown to its recipients."""
        for message in self.messages.values():
            for node, conn in message.live:
                client = self.clients.get((node, conn))
                if client is None or client.link.reset or client.exited is not None and client.bye is None:
                    continue   # lost with its connection, or the client left before it came: a live message
                if not any(number == client.number for number, _, _ in message.shown):
                    self.fail(f"{message.sender}'s message {message.text[:20]!r} was sent live to {client}, "
                              f"which never showed it")
            if message.kept - message.refused and not any(who == message.to for _, who, _ in message.shown):
                self.fail(f"{message.sender}'s message {message.text[:20]!r} for {message.to} was kept "
                          f"(ids {sorted(message.kept)}) and never shown")


class ObservedLogic:
    """The server's rules as their host sees them, with every event and its effects shown to ``Checks``
    (and to ``trace``, the run's record) on the way."""

    EVENTS = frozenset({"connected", "received", "bad_frame", "disconnected", "writable", "timers_fired",
                        "password_checked", "accounts_changed", "not_stored", "shutdown", "end_turn",
                        "login_decided", "remote_login", "remote_logout", "remote_block", "remote_locked",
                        "remote_broadcast", "relayed", "resync", "cluster_lost"})

    def __init__(self, logic: Any, node: int, checks: Checks, clock: Any, trace: Any) -> None:
        self.logic = logic
        self._node = node
        self._checks = checks
        self._clock = clock
        self._trace = trace

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.logic, name)
        if name not in self.EVENTS:
            return value

        def event(*args: Any, **kwargs: Any) -> Any:
            now = self._clock()
            self._checks.before_event(self._node, self.logic, name, args, now)
            effects = value(*args, **kwargs)
            self._trace(self._node, name, args, kwargs, effects, now)
            self._checks.after_event(self._node, name, args, effects, now)
            return effects
        return event


