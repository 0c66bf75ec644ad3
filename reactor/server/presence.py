"""Presence batching: who came and went, noted as the parts work, and told to everyone online in as few frames
as the order of the frames allows.

A part notes a login or logout (``note``) among the effects it returns; the
``settle`` of the event logs each note and tells it in its place. A host that
calls ``end_turn`` once a loop turn gets the changes of the turn together (up to
``TELL_AT`` of them: an event that brings them to ``TELL_AT`` tells them at once): one
frame per run of logins or logouts (protocol version 2; a page each when the
run does not fit in one frame: reactor/server/pages.py) or one frame per change
(version 1) for each user, except that a user's pending changes always go before
any other frame to it (so none comes after a later frame of the same user). A
host that never calls it gets them at once. Nobody is told of a user who had
blocked it then (``hidden``), nor of its own login.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from itertools import chain
from typing import Any, cast

from ..protocol import Frame, FrameType
from .blocks import NOBODY, Blocks
from .effects import STORE_CHANGES, PresenceNote, Send, SendBatch, SendStored, ServerEffect, Step
from .pages import PAGE_BYTES, page_bytes, pages
from .sessions import Session, Sessions

__all__ = ["Presence", "TELL_AT"]

_PRESENCE = FrameType.PRESENCE.value   # (a plain str: a storm of logins builds many of these frames)
_ONLINE = FrameType.ONLINE.value


_Change = tuple[str, bool, frozenset[str]]           # a logged note: user, online, hidden
# Changes that may wait for the end of the turn, at most: an event that logs the TELL_AT-th tells them at once.
# Each user who came or went in a turn is owed (and encoded alone) the changes logged after (or before) its
# own, so a turn of N changes costs N x N / 2 names besides what everyone else is told. 10,000 users (Cyrillic
# and CJK names) logging out at once, turns of thousands: 6.8-8.7 s of server CPU, while everyone else waited;
# told 1,000 at a time 2.1-2.3 s, most of it the notices every user still online is owed (n x n / 2 names, as
# in a login storm, whose 1.6-1.8 s stay as they were). 250 at a time: 1.9 s, but a storm's 2.8 s; 4,000: 2.7 s.
TELL_AT = 1000


class _Run:
    """A run of logins or logouts in the log, grown change by change: a version 2 frame's worth, or (too long
    for one frame) the pages' (reactor/server/pages.py), each cut as the run grows, by the bytes of its last."""

    __slots__ = ("first", "online", "users", "starts", "size")

    def __init__(self, first: int, online: bool) -> None:
        self.first = first           # the index in the log of its first change
        self.online = online
        self.users: list[str] = []
        self.starts = [0]            # the index in ``users`` where each page starts
        self.size = 0                # bytes in its last page, as pages count them

    def add(self, user: str) -> None:
        cost = page_bytes(user)
        if self.size and self.size + cost > PAGE_BYTES:
            self.starts.append(len(self.users))
            self.size = 0
        self.users.append(user)
        self.size += cost


def _presence_frames(changes: list[_Change], version: int) -> list[Frame]:
    """``changes`` as presence frames: one each in version 1; in version 2 one per run of logins or logouts
    (a page each, when the run does not fit in one)."""
    if version == 1:
        return [{"type": _PRESENCE, "user": user, "online": online} for user, online, _ in changes]
    frames: list[Frame] = []
    for user, online, _ in changes:
        if frames and frames[-1]["online"] is online:
            frames[-1]["users"].append(user)
        else:
            frames.append({"type": _PRESENCE, "users": [user], "online": online})
    return [{"type": _PRESENCE, "users": page, "online": frame["online"]}
            for frame in frames for page in pages(frame["users"])]


def _frames_from(runs: list[_Run], start: int) -> list[Frame]:
    """The version 2 frames of the changes from index ``start`` on: the runs from there, the first cut short.

    Those who came in one turn are each owed what came after them (one group each in ``_tell``): slices of
    the runs kept as the changes are logged, not lists built name by name per group. A storm of 10,000
    logins spent 2.8 of its server's 9.7 s building those lists (under cProfile; then 0.2 s in all of
    ``_tell``); and so does a mass logout, where each user leaving is told the logouts before its own: made
    afresh for each, the runs took 0.9 s of 2,500 logouts in one turn, their pages 2.1 s more. A group that
    starts inside a run gets the rest of the page it starts in, then the pages after it. (Each a copy: a run
    still grows, and a frame may be encoded later, once a store change before it is kept.)"""
    at = bisect.bisect_right(runs, start, key=lambda run: run.first) - 1   # the run holding change ``start``
    frames: list[Frame] = []
    skip = start - runs[at].first   # the changes of the first run already told
    for run in runs[at:]:
        users, starts = run.users, run.starts
        if len(starts) == 1:   # (the common case: the run is one page)
            frames.append({"type": _PRESENCE, "users": users[skip:], "online": run.online})
        else:
            for page_start, page_end in zip(starts, [*starts[1:], len(users)], strict=True):
                if page_end > skip:
                    frames.append({"type": _PRESENCE, "users": users[max(page_start, skip):page_end],
                                   "online": run.online})
        skip = 0
    return frames


def _send(conns: tuple[int, ...], frames: list[Frame]) -> Send | SendBatch:
    return Send(conns, frames[0]) if len(frames) == 1 else SendBatch(conns, tuple(frames))


class Presence:
    """The presence changes not yet told to everyone, and who has been told which."""

    def __init__(self, sessions: Sessions, blocks: Blocks) -> None:
        self._sessions = sessions
        self._blocks = blocks
        # Changes not yet told to everyone (see settle): (user, online, hidden), the last of `logged` logged so
        # far; _hidden: every name some of them hide from; _leaving: users logged out in this event, who may
        # still be owed changes before their bye.
        self._log: list[_Change] = []
        self._runs: list[_Run] = []   # the log's runs of logins or logouts, kept as it grows
        self.logged = 0
        self._hidden: set[str] = set()
        self._marked = False          # effects being built hold a PresenceNote
        self._turns = False           # the host calls end_turn: changes wait for the end of the turn
        self._leaving: dict[int, Session] = {}

    def note(self, user: str, online: bool, conn: Session | None = None) -> PresenceNote:
        """``user`` came (on ``conn``) or went: noted in the effects, told by ``settle``."""
        self._marked = True
        return PresenceNote(conn, user, online, self._blocks.hidden_from(user))

    def online(self, s: Session) -> list[Step]:
        """Version 3: who else is online as ``s`` logs in (but those who blocked it), in ``online`` frames, a
        page each; nothing when nobody is. Made before its own login is noted: from then on it is told the
        changes, so the two together are always who is online."""
        blockers = self._blocks.blockers.get(s.user, NOBODY)
        user = s.user
        sessions = self._sessions   # (online here, then on other nodes: not a set of both made first)
        names = [name for name in chain(sessions.online, sessions.remote) if name != user and name not in blockers]
        if not names:
            return []
        return [_send((s.id,), [{"type": _ONLINE, "users": page} for page in pages(names)])]

    def left(self, s: Session) -> None:
        """``s`` logged out in this event: it may still be owed changes before its bye."""
        self._leaving[s.id] = s

    def end_turn(self) -> list[ServerEffect]:
        """The host's loop turn is over: tell everyone what it is owed; from now on, changes wait for the turn's
        end (see the module's docstring)."""
        self._turns = True
        return self.tell_all()

    def settle(self, effects: list[Step]) -> list[ServerEffect]:
        """The effects of one event, its notes logged and told: in turns (``end_turn``), a user who is owed
        changes is told them before any other frame to it, so none comes after a later frame of the same user;
        otherwise everyone is told each run of changes before the next effect."""
        if not self._marked and not self._log:
            return cast(list[ServerEffect], effects)   # (no note is made without marking)
        self._marked = False
        out: list[Any] = []   # ServerEffects (and, on a cluster node, ClusterEffects)
        log = self._log
        for effect in effects:
            if isinstance(effect, PresenceNote):
                runs = self._runs
                if not runs or runs[-1].online is not effect.online:
                    runs.append(_Run(len(log), effect.online))
                runs[-1].add(effect.user)
                log.append((effect.user, effect.online, effect.hidden))
                self.logged += 1
                self._hidden |= effect.hidden
                if effect.conn is not None:   # it is not told of its own login
                    effect.conn.seen = self.logged
                continue
            if log:
                if not self._turns:
                    out += self.tell_all()
                    log = self._log
                elif isinstance(effect, (Send, SendBatch)):
                    out += self._catch_up(effect.conns)
                elif isinstance(effect, SendStored):
                    out += self._catch_up((effect.conn,))
                elif isinstance(effect, STORE_CHANGES) and effect.confirm is not None:
                    out += self._catch_up(effect.confirm.conns)
            out.append(effect)
        if log and not self._turns or len(log) >= TELL_AT:
            out += self.tell_all()
        self._leaving.clear()
        return out

    def tell_all(self) -> list[ServerEffect]:
        """Tell everyone online what it is owed, and empty the log."""
        if not self._log:
            return []
        effects = self._tell(self._sessions.online.values())
        self._log = []
        self._runs = []
        self._hidden = set()
        return effects

    def _catch_up(self, conns: tuple[int, ...]) -> list[ServerEffect]:
        """Tell those of ``conns`` who are owed changes (users online, or leaving in this event) what they are owed."""
        upto = self.logged
        get, leaving = self._sessions.conns.get, self._leaving
        owed = []
        for conn in conns:
            c = get(conn)
            s = c.session if c is not None else leaving.get(conn)
            if s is not None and s.seen < upto:
                owed.append(s)
        return self._tell(owed) if owed else []

    def _tell(self, sessions: Iterable[Session]) -> list[ServerEffect]:
        """Tell each of ``sessions`` the logged changes it has not been told, less those hidden from it.

        Those owed the same changes in the same version share one effect (encoded once)."""
        log, hidden, upto = self._log, self._hidden, self.logged
        base = upto - len(log)
        alike: dict[tuple[int, int], list[int]] = {}
        effects: list[ServerEffect] = []
        alone: list[ServerEffect] = []
        for s in sessions:
            seen = s.seen
            if seen >= upto:
                continue
            s.seen = upto
            start = seen - base if seen > base else 0
            if s.user in hidden:
                user = s.user
                frames = _presence_frames([change for change in log[start:] if user not in change[2]], s.version)
                if frames:
                    alone.append(_send((s.id,), frames))
            else:
                alike.setdefault((start, s.version), []).append(s.id)
        for (start, version), ids in alike.items():
            frames = _frames_from(self._runs, start) if version != 1 else _presence_frames(log[start:], version)
            effects.append(_send(tuple(ids), frames))
        return effects + alone
