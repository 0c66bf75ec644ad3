"""A replayed server journal as a timeline a person reads: one line per event, its time, who did what, and what the
server did about it.

    12:03:07.214 #7 yoda -> luke: message (sent)
    12:03:09.802 #9 yoda -> han: message (stored: han offline)
    12:03:10.011 #10 conn 4 (10.0.0.7): password for luke (error invalid_password to conn 4; login failed)

``ServerTimeline`` is told of each event before the rules take it (``before``:
who it comes from, as the rules know it then) and after (``line``), and keeps
the name of each connection's user, so a connection that has gone is still
named. ``involves(user)`` says whether an event concerns a user (``--user``).
"""
from __future__ import annotations

import datetime
from typing import Any

from .format import Event

__all__ = ["ServerTimeline", "clock"]

_QUIET = frozenset({"SetTimer", "CancelTimer", "WhenWritable"})   # left out of a line: the host's business


def clock(now: float, wall_offset: float | None, tz: datetime.tzinfo | None = None) -> str:
    """``now`` as the wall-clock time of day (milliseconds), or as seconds since the start without an offset."""
    if wall_offset is None:
        return f"{now:14.3f}"
    stamp = datetime.datetime.fromtimestamp(now + wall_offset, tz)
    return stamp.strftime("%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


class ServerTimeline:
    """Lines of a server's timeline (see the module's docstring)."""

    def __init__(self, rules: Any, wall_offset: float | None, tz: datetime.tzinfo | None = None) -> None:
        self._rules = rules
        self._wall_offset = wall_offset
        self._tz = tz
        self._names: dict[int, str] = {}       # conn -> its user, once it had one
        self._addresses: dict[int, str] = {}
        self._actor: str = ""
        self._claimed: str | None = None       # the account the actor's connection gave a name for
        self._users: set[str] = set()          # the users the event concerns

    def _who(self, conn: Any) -> str:
        if type(conn) is not int:
            return f"conn {conn!r}"
        user = self._rules.user_of(conn) or self._names.get(conn)
        if user is not None:
            return str(user)
        address = self._addresses.get(conn)
        return f"conn {conn}" + (f" ({address})" if address else "")

    def before(self, event: Event) -> None:
        """``event`` is about to be taken: who it comes from."""
        self._users = set()
        args = event.args
        if event.op in ("c", "r", "m", "M", "P", "b", "d", "w", "p") and args:
            conn = args[0]
            if event.op == "c" and type(conn) is int:
                self._addresses[conn] = str(args[1])
            self._actor = self._who(conn)
            user = self._rules.user_of(conn) if type(conn) is int else None
            if user is not None:
                self._users.add(user)
            c = self._rules.sessions.conns.get(conn) if type(conn) is int else None
            self._claimed = c.claimed if c is not None else None
            if self._claimed is not None:
                self._users.add(self._claimed)
        else:
            self._actor = ""

    def line(self, event: Event, effects: list[Any]) -> str:
        """The event's line, once the rules have taken it (its effects)."""
        what = self._what(event)
        done = self._summary(effects)
        for effect in effects:
            for conn in getattr(effect, "conns", ()) or (getattr(effect, "conn", None),):
                user = self._rules.user_of(conn) if type(conn) is int else None
                if user is not None and type(conn) is int:
                    self._names[conn] = user
        when = clock(event.now, self._wall_offset, self._tz)
        return f"{when} #{event.number} {what}" + (f" ({done})" if done else "")

    def involves(self, user: str) -> bool:
        """Whether the last event (``line``) concerned ``user``: from it, about it, or to it."""
        return user in self._users

    # -- words ------------------------------------------------------------------

    def _what(self, event: Event) -> str:
        op, a = event.op, event.args
        actor = self._actor
        if op == "m":
            self._users.add(str(a[1]))
            return f"{actor} -> {a[1]}: message"
        if op == "M":
            return f"{actor} -> {self._who(a[1])}: message"
        if op == "P":
            return f"{actor}: ping"
        if op == "r":
            return self._frame(actor, a[1])
        if op == "p":
            verdict = {True: "right", False: "wrong", None: "not checked"}.get(a[1], "?")
            return f"{actor}: password for {self._claimed or '?'} {verdict} (the checker's answer)"
        simple = {"c": "connected", "b": f"bad frame: {a[1] if len(a) > 1 else ''}", "d": "disconnected",
                  "w": "ready for more"}
        if op in simple:
            return f"{actor}: {simple[op]}"
        if op == "t":
            keys = [" ".join(str(part) for part in key) if type(key) is list else str(key) for key in a[0]]
            return "timers: " + ", ".join(keys)
        if op == "a":
            return f"accounts reloaded: {len(a[0])} accounts"
        if op == "n":
            change = a[0]
            return f"not stored ({a[1]}): {change[0]} {' '.join(str(v) for v in change[1:3])}"
        if op == "e":
            return "end of turn"
        if op == "s":
            return "shutdown"
        if op == "L":
            self._users.add(str(a[1]))
            return f"conn {a[0]}: the engine decided {a[1]}'s login: {a[2]}"
        names = {"i": "ids from", "X": "cluster lost", "R": "resync with the engine", "rl": "remote login",
                 "ro": "remote logout", "rb": "remote block", "rk": "remote lockout", "rB": "remote broadcast from",
                 "rr": "relayed", "rN": "remote notice", "ph": "new password hashed for conn",
                 "pw": "password written for conn", "pc": "wrong current password counted for conn",
                 "rP": "password changed on another node for", "rA": "remote away", "h": "history read for conn",
                 "ra": "the engine answered a relay", "rt": "sessions taken", "ok": "the operator kicked",
                 "oL": "the operator locked", "oU": "the operator unlocked", "oN": "the operator's notice"}
        if op in ("rl", "ro", "rk", "rB"):
            self._users.add(str(a[0]))
        shown = [str(v) for v in a if type(v) in (str, int, float, bool)]
        if op == "rr" and type(a[0]) is dict:
            shown = [f"{k}={v}" for k, v in a[0].items() if k in ("kind", "to", "from")]
            self._users.update(str(a[0][k]) for k in ("to", "from") if k in a[0])
        return f"{names.get(op, op)} {' '.join(shown)}".strip()

    def _frame(self, actor: str, frame: Any) -> str:
        if type(frame) is not dict:
            return f"{actor}: a frame that is no object"
        kind = frame.get("type")
        for key in ("to", "user", "username"):
            value = frame.get(key)
            if type(value) is str:
                self._users.add(value)
        if kind == "message":
            return f"{actor} -> {frame.get('to')}: message"
        if kind == "hello":
            return f"{actor}: hello (version {frame.get('version')!r})"
        if kind == "username":
            return f"{actor}: username {frame.get('username')}"
        if kind == "password":
            return f"{actor}: password" + (f" for {self._claimed}" if self._claimed else "")
        if kind == "listen":
            return f"{actor}: listens on port {frame.get('port')!r}" + (" (with a certificate)" if frame.get("cert")
                                                                         else "")
        if kind == "ack":
            ids = frame.get("ids")
            return f"{actor}: ack {len(ids) if type(ids) is list else '?'} stored"
        target = frame.get("user")
        if type(target) is str:
            extra = f" {'accept' if frame.get('accept') else 'decline'}" if kind == "private_answer" else ""
            return f"{actor}: {kind} {target}{extra}"
        return f"{actor}: {kind}"

    def _summary(self, effects: list[Any]) -> str:
        parts: list[str] = []
        for effect in effects:
            name = type(effect).__name__
            if name in _QUIET:
                continue
            if name == "Send":
                parts.append(self._send(effect.conns, effect.frame))
            elif name == "SendBatch":
                kinds = sorted({str(f.get("type")) for f in effect.frames})
                parts.append(f"{len(effect.frames)} frames ({', '.join(kinds)}) to {self._to(effect.conns)}")
            elif name == "SendStored":
                parts.append(f"{len(effect.frames)} stored to {self._to((effect.conn,))}")
            elif name == "Close":
                parts.append(f"closed {self._to((effect.conn,))}")
            elif name == "KeepMessage":
                self._users.update((effect.to, effect.sender))
                online = effect.to in self._rules.sessions.online
                parts.append(f"stored: {effect.to} {'busy with its mailbox' if online else 'offline'}")
            elif name == "ForgetMessages":
                parts.append(f"forgot {len(effect.ids)} stored")
            elif name in ("AddBlock", "RemoveBlock"):
                parts.append(f"{'block' if name == 'AddBlock' else 'unblock'} kept")
            elif name == "LoggedIn":
                parts.append("logged in")
            elif name == "LoginFailed":
                parts.append(f"login failed: {effect.reason}")
            elif name == "CheckPassword":
                parts.append("password sent to be checked")
            elif name == "ClaimLogin":
                parts.append(f"login claimed at the engine ({'right' if effect.ok else 'wrong'} password)")
            elif name == "ReleaseLogin":
                parts.append(f"login of {effect.user} released")
            elif name in ("Relay", "Publish"):
                kind = effect.event.get("kind")
                parts.append(f"relayed {kind} to node {effect.node}" if name == "Relay" else f"published {kind}")
            else:
                parts.append(name)
        return "; ".join(parts)

    def _to(self, conns: Any) -> str:
        names = [self._who(c) for c in conns]
        for conn in conns:
            user = self._rules.user_of(conn) if type(conn) is int else None
            if user is not None:
                self._users.add(user)
        if len(names) > 4:
            return f"{len(names)} connections"
        return ", ".join(names)

    def _send(self, conns: Any, frame: Any) -> str:
        kind = frame.get("type") if type(frame) is dict else "?"
        if kind == "error":
            kind = f"error {frame.get('code')}"
        elif kind == "presence":
            users = frame.get("users") or [frame.get("user")]
            kind = f"presence {frame.get('status', '')} {' '.join(str(u) for u in users if u)}".replace("  ", " ")
        elif kind == "message" and frame.get("broadcast"):
            kind = "broadcast"
        recipients = self._to(conns)
        if recipients == self._actor:
            return str(kind) if kind != "message" else "sent"
        return f"{kind} to {recipients}" if kind != "message" else f"sent to {recipients}"
