"""What reading 20,000 hashed accounts again (SIGHUP) costs everyone else: the loop's longest turn, and a
bystander's round trip while reloads are asked for.

    python -m tests.bench.reload [--accounts N] [--rounds R] [--only turns|server]

``turns`` (in this process, ``reactor.loop.TurnStats``): a ``ServerHost`` with ``--accounts`` hashed accounts
reads its file again ``--rounds`` times, each time with one account more or less, two ways: at once, in one
loop callback (``load_credentials`` and ``accounts_changed``: what SIGHUP did before), and a slice per turn
(``AccountsReload``: what it does now), the latter also with every hash new (as if every password changed:
none is known from the last reload). Prints the longest turn of each reload, median and worst.

``server`` (the real ``server_main.py``): two logged-in users (plain accounts) play ping-pong, one message in
flight, for 2 s with no reload and for 2 s while the bench sends the server a SIGHUP every 20 ms (100 in all);
prints their round trips (those begun in the 2 s, the last one's end awaited), p50 / p99 / max. The generator
shares the machine with the server.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time

from reactor.loop import EventLoop, TurnStats
from reactor.server.passwords import hash_password
from reactor.stream import Stream
from tests.bench.common import UNLIMITED, BenchUser, run_until, start_server

HASH = hash_password("pw", log2_n=10)   # parsing a hash costs the same whatever its scrypt cost


def write_file(path: str, accounts: int, extra: bool, new_hashes: bool = False) -> None:
    """``accounts`` accounts (``extra``: one more); with ``new_hashes``, each with a hash the last file did not
    have (a new salt), else the hashes are those of before."""
    hashed = hash_password("pw", log2_n=10) if new_hashes else HASH
    with open(path, "w") as out:
        out.write("a pw-a\nb pw-b\n")
        out.writelines(f"user{i} {hashed}\n" for i in range(accounts - 1 + extra))


def longest_turns(path: str, accounts: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each reload's longest loop turn, by way of reloading."""
    from reactor.server.credentials import load_credentials
    from reactor.server.host import ServerHost
    from reactor.server.reload import AccountsReload
    from reactor.server.rules import ChatServer

    write_file(path, accounts, False)
    loop = EventLoop(turn_stats=True)
    host = ServerHost(loop, ChatServer(load_credentials(path), 10.0, 600.0))
    sliced = AccountsReload(loop, path, host.accounts_changed, load_credentials(path))
    done: list[bool] = []

    def at_once() -> None:
        host.accounts_changed(load_credentials(path))
        done.append(True)

    figures: dict[str, list[float]] = {"at once": [], "a slice a turn": [], "... every hash new": []}
    try:
        for round_no in range(rounds):
            for way in figures if round_no % 2 == 0 else reversed(list(figures)):
                write_file(path, accounts, len(done) % 2 == 0, way != "a slice a turn")   # one account more or less
                for _ in range(3):
                    loop.run_once(timeout=0)
                loop.turn_stats = TurnStats()
                if way == "at once":
                    count = len(done)
                    loop.call_soon(at_once)
                    run_until(loop, lambda: len(done) > count, 30.0)   # noqa: B023 (run now)
                else:
                    sliced.request()
                    run_until(loop, lambda: not sliced.running, 30.0)
                    done.append(True)
                loop.run_once(timeout=0)   # (a turn is recorded when the next one begins)
                figures[way].append(loop.turn_stats.longest * 1e3)
    finally:
        loop.close()
    return figures


class Player(BenchUser):
    """A logged-in user; ``a`` sends, ``b`` answers, ``a`` times the round trip and sends the next."""

    def __init__(self, bench: PingPong, name: str, partner: str, starts: bool) -> None:
        self.bench, self.name, self.partner, self.starts = bench, name, partner, starts
        self.ready = False
        self.sent = 0.0
        self.stream = Stream(bench.loop, socket.create_connection(("127.0.0.1", bench.port)), self)
        self.stream.send({"type": "hello", "version": 1})

    def ping(self) -> None:
        self.sent = time.perf_counter()
        self.stream.send({"type": "message", "to": self.partner, "text": "ping"})

    def frame_received(self, stream: Stream, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "message" and self.starts:
            self.bench.trips.append(time.perf_counter() - self.sent)
            self.ping()
        elif kind == "message":
            stream.send({"type": "message", "to": self.partner, "text": "pong"})
        else:
            self.log_in(stream, kind)


class PingPong:
    def __init__(self, port: int) -> None:
        self.loop = EventLoop()
        self.port = port
        self.stopping = False
        self.trips: list[float] = []
        self.a = Player(self, "a", "b", True)
        self.b = Player(self, "b", "a", False)
        run_until(self.loop, lambda: self.a.ready and self.b.ready, 30.0)
        self.a.ping()

    def measure(self, seconds: float, server_pid: int | None) -> list[float]:
        """Round trips (ms) for ``seconds``; with ``server_pid``, a SIGHUP to it every 20 ms meanwhile."""
        warm = time.monotonic() + 0.5
        run_until(self.loop, lambda: time.monotonic() > warm, 10.0)
        self.trips = []
        start = self.loop.time()
        if server_pid is not None:
            for i in range(round(seconds / 0.02)):
                self.loop.call_at(start + i * 0.02, os.kill, server_pid, signal.SIGHUP)
        end = time.monotonic() + seconds
        run_until(self.loop, lambda: time.monotonic() > end, seconds + 10.0)
        count = len(self.trips)   # and the round trip under way then, however long the server holds it
        run_until(self.loop, lambda: len(self.trips) > count, 120.0)
        return [trip * 1e3 for trip in self.trips]

    def close(self) -> None:
        self.stopping = True
        for player in (self.a, self.b):
            player.stream.abort()
        self.loop.run_once(timeout=0)
        self.loop.close()


def round_trips(path: str, accounts: int) -> dict[str, list[float]]:
    write_file(path, accounts, False)
    proc, port = start_server(os.path.dirname(path), path, "10", *UNLIMITED)
    try:
        bench = PingPong(port)
        try:
            return {"no reload": bench.measure(2.0, None), "100 SIGHUPs in 2 s": bench.measure(2.0, proc.pid)}
        finally:
            bench.close()
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.reload", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000, help="hashed accounts (default 20,000)")
    parser.add_argument("--rounds", type=int, default=10, help="reloads each way (default 10)")
    parser.add_argument("--only", choices=["turns", "server"], help="one of the two measurements")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "credentials.txt")
        if args.only != "server":
            print(f"the loop's longest turn while a host reads {args.accounts:,} hashed accounts again "
                  f"({args.rounds} reloads each way)")
            print(f"{'':22}{'median ms':>10}{'worst ms':>10}")
            for way, turns in longest_turns(path, args.accounts, args.rounds).items():
                print(f"{way:22}{statistics.median(turns):>10.1f}{max(turns):>10.1f}")
        if args.only != "turns":
            print(f"a bystander's round trip, real server with {args.accounts:,} hashed accounts")
            print(f"{'':20}{'trips':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
            for name, trips in round_trips(path, args.accounts).items():
                trips.sort()
                p99 = trips[min(len(trips) - 1, len(trips) * 99 // 100)]
                print(f"{name:20}{len(trips):>7}{trips[len(trips) // 2]:>8.2f}{p99:>8.2f}{trips[-1]:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
