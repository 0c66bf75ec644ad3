"""How fast a journal replays: an hour of a 1,000-user chat, recorded through the real recorder on virtual time,
then replayed (``reactor.journal.replay``), as ``reactor-chat-replay`` does without ``--print``.

    python -m tests.bench.replay [--users N] [--minutes M] [--every S] [--seed S] [--keep FILE]

The hour is made here, not on a live server (an hour of wall time is too long
for a bench): ``ChatServer`` behind a ``ServerRecorder``, driven as its host
would drive it: each user logs in (hello, username, password, listen), sends a
message every ``--every`` seconds on average (exponentially spaced) to another
user, each followed by the ``ping`` the client sends after every command; one
message in 50 is followed by a logout, and the user comes back two minutes
later on average (messages for it meanwhile are stored, and acknowledged once
shown); the host's timers fire when due, and each input is a loop turn of its
own (``end_turn`` after it). The figure: the hour's length over the replay's.
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import sys
import tempfile
import time
from typing import Any

from reactor.journal.format import quantize
from reactor.journal.replay import ServerReplay, open_journal
from reactor.journal.scrub import Scrubber
from reactor.journal.server import ServerRecorder, server_header
from reactor.journal.writer import JournalWriter
from reactor.server.effects import Close, SendStored, SetTimer, WhenWritable
from reactor.server.rules import ChatServer

TEXT = "the quick brown fox jumps over the lazy dog"


class Hour:
    """A recorded chat on virtual time (see the module's docstring)."""

    def __init__(self, path: str, users: int, every: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.every = every
        self.names = [f"user{i}" for i in range(users)]
        args = {"accounts": {name: f"pw-{name}" for name in self.names}, "block_duration": 60.0, "timeout": 300.0,
                "wall_offset": 1_780_000_000.0}
        scrubber = Scrubber()
        self.writer = JournalWriter(path, server_header(ChatServer, 0, args, scrubber, run="bench"))
        self.rules: Any = ServerRecorder(self.writer, scrubber).build(ChatServer, **args)
        self.queue: list[tuple[float, int, str, str]] = []
        self.seq = itertools.count()
        self.conns = itertools.count(1)
        self.conn_of: dict[str, int] = {}
        self.user_of: dict[int, str] = {}
        self.timers: dict[Any, float] = {}
        self.later: list[tuple[str, int]] = []   # (what, conn) the host does at the end of the turn
        self.events = 0

    def at(self, when: float, what: str, user: str) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), what, user))

    def run(self, seconds: float) -> None:
        for name in self.names:
            self.at(self.rng.uniform(0, 60), "login", name)
        while self.queue and self.queue[0][0] < seconds:
            now = quantize(self.queue[0][0])
            self.fire_timers(now)
            _, _, what, user = heapq.heappop(self.queue)
            getattr(self, what)(user, now)
            self.end_turn(now)
            if self.writer.lines and len(self.writer.lines) > 4096:
                self.writer.flush()
        self.writer.close()

    def take(self, effects: list[Any], now: float) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is SetTimer:
                self.timers[effect.key] = effect.when
            elif kind.__name__ == "CancelTimer":
                self.timers.pop(effect.key, None)
            elif kind is Close:
                self.later.append(("disconnected", effect.conn))
            elif kind is WhenWritable:
                self.later.append(("writable", effect.conn))
            elif kind is SendStored:   # the client shows them and acknowledges them (a frame of its own)
                self.later.append(("ack:" + ",".join(str(f["id"]) for f in effect.frames), effect.conn))

    def end_turn(self, now: float) -> None:
        while self.later:
            later, self.later = self.later, []
            for what, conn in later:
                if what == "disconnected":
                    user = self.user_of.pop(conn, None)
                    if user is not None and self.conn_of.get(user) == conn:
                        del self.conn_of[user]
                        self.at(now + self.rng.expovariate(1 / 120), "login", user)
                    self.take(self.rules.disconnected(conn, now), now)
                elif what == "writable":
                    self.take(self.rules.writable(conn, now), now)
                else:
                    ids = [int(i) for i in what[4:].split(",")]
                    self.take(self.rules.received(conn, {"type": "ack", "ids": ids}, now), now)
        self.take(self.rules.end_turn(now), now)

    def fire_timers(self, now: float) -> None:
        due = [key for key, when in self.timers.items() if when <= now]
        if due:
            for key in due:
                del self.timers[key]
            self.take(self.rules.timers_fired(due, now), now)
            self.end_turn(now)

    def login(self, user: str, now: float) -> None:
        if user in self.conn_of:
            return
        conn = next(self.conns)
        self.conn_of[user], self.user_of[conn] = conn, user
        rules = self.rules
        self.take(rules.connected(conn, now, "10.1.2.3"), now)
        for frame in ({"type": "hello", "version": 2}, {"type": "username", "username": user},
                      {"type": "password", "password": f"pw-{user}"}, {"type": "listen", "port": 40000},
                      {"type": "ping"}):
            self.take(rules.received(conn, frame, now), now)
        self.at(now + self.rng.expovariate(1 / self.every), "message", user)

    def message(self, user: str, now: float) -> None:
        conn = self.conn_of.get(user)
        if conn is None:
            return
        to = self.rng.choice(self.names)
        if to == user:
            to = self.names[(self.names.index(user) + 1) % len(self.names)]
        self.take(self.rules.received(conn, {"type": "message", "to": to, "text": f"{now:.6f} {TEXT}"}, now), now)
        self.take(self.rules.received(conn, {"type": "ping"}, now), now)
        if self.rng.random() < 1 / 50:
            self.at(now + 0.5, "logout", user)
        else:
            self.at(now + self.rng.expovariate(1 / self.every), "message", user)

    def logout(self, user: str, now: float) -> None:
        conn = self.conn_of.get(user)
        if conn is not None:
            self.take(self.rules.received(conn, {"type": "logout"}, now), now)


def replay(path: str) -> tuple[int, float, float]:
    """Events, the span they cover (s), and the seconds their replay took."""
    journal = open_journal(path)
    started = time.perf_counter()
    rules = ServerReplay(journal.header)
    count = 0
    first = last = 0.0
    for event in journal.events():
        rules.apply(event)
        if count == 0:
            first = event.now
        last = event.now
        count += 1
    return count, last - first, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.replay", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="users (default 1,000)")
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of chat (default 60)")
    parser.add_argument("--every", type=float, default=10.0,
                        help="seconds between a user's messages, on average (default 10: 100 messages/s in all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="FILE", help="write the journal here (and keep it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        path = args.keep or os.path.join(workdir, "hour.journal")
        started = time.perf_counter()
        hour = Hour(path, args.users, args.every, args.seed)
        hour.run(args.minutes * 60)
        made = time.perf_counter() - started
        size = os.path.getsize(path)
        count, span, took = replay(path)
    print(f"{args.minutes:g} minutes of {args.users:,} users (a message every {args.every:g} s each, and its ping): "
          f"{count:,} events, {size / 1e6:.1f} MB, recorded in {made:.1f} s")
    print(f"replayed in {took:.1f} s: {count / took:,.0f} events/s, {span / took:.0f} times real speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
