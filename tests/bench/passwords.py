"""What password guessing costs everyone else: a bystander's round trip while connections guess passwords.

    python -m tests.bench.passwords [--attackers N] [--seconds S] [--rounds R]

Starts ``server_main.py`` (block_duration 0.001 s, so a locked account opens again at once and the guessing
never stops) three ways: no attackers; ``attackers`` connections guessing wrong passwords as fast as they
can for accounts with plain passwords; the same for accounts with scrypt hashes (the defaults: 16 MiB,
tens of ms a check, done by the verifier process). Each attacker guesses its own account: on
``invalid_password`` it guesses again at once, on ``account_blocked`` (the third) it connects again, on
``try_again`` (the verifier has too many checks waiting) it sends the guess again.

Meanwhile two logged-in users (plain accounts) play ping-pong: one message in flight, each answered at once;
a round trip is from a message's sending to the arrival of its answer. The generator shares the machine (2
cores here) with the server and its verifier: figures are for side by side comparison.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from reactor.framing import JsonLines, encode
from reactor.loop import EventLoop
from reactor.server.passwords import hash_password
from reactor.stream import Stream
from tests.bench.common import UNLIMITED, BenchUser, run_until, start_server


class Bystander(BenchUser):
    """A logged-in user; ``a`` sends, ``b`` answers, ``a`` times the round trip and sends the next."""

    def __init__(self, bench: Bench, name: str, partner: str, starts: bool) -> None:
        self.bench, self.name, self.partner, self.starts = bench, name, partner, starts
        self.ready = False
        self.sent = 0.0
        self.stream = Stream(bench.loop, socket.create_connection(("127.0.0.1", bench.port)), JsonLines(self))
        self.stream.write(encode({"type": "hello", "version": 1}))

    def ping(self) -> None:
        self.sent = time.perf_counter()
        self.stream.write(encode({"type": "message", "to": self.partner, "text": "ping"}))

    def frame_received(self, stream: Stream, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "message" and self.starts:
            self.bench.round_trip(time.perf_counter() - self.sent)
            self.ping()
        elif kind == "message":
            stream.write(encode({"type": "message", "to": self.partner, "text": "pong"}))
        else:
            self.log_in(stream, kind)


class Attacker:
    """Guesses wrong passwords for its account as fast as the server answers, connecting again when closed."""

    def __init__(self, bench: Bench, account: str) -> None:
        self.bench, self.account = bench, account
        self.connect()

    def connect(self) -> None:
        self.stream = Stream(self.bench.loop, socket.create_connection(("127.0.0.1", self.bench.port)),
                             JsonLines(self))
        self.stream.write(encode({"type": "hello", "version": 1}))

    def guess(self) -> None:
        self.stream.write(encode({"type": "password", "password": "wrong-guess"}))

    def frame_received(self, stream: Stream, frame: dict) -> None:
        kind, code = frame.get("type"), frame.get("code")
        if kind == "hello":
            stream.write(encode({"type": "username", "username": self.account}))
        elif kind == "username_ok":
            self.guess()
        elif code in ("invalid_password", "try_again"):
            self.bench.answered(code)
            self.guess()
        elif code in ("account_blocked", "account_locked"):
            self.bench.answered(code)

    def frame_error(self, stream: Stream, detail: str) -> None:
        raise RuntimeError(f"{self.account}: bad frame {detail}")

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if not self.bench.stopping:
            self.connect()


class Bench:
    def __init__(self, port: int, attackers: int) -> None:
        self.loop = EventLoop()
        self.port = port
        self.stopping = False
        self.counting = False
        self.trips: list[float] = []
        self.answers: dict[str, int] = {}
        self.a = Bystander(self, "a", "b", True)
        self.b = Bystander(self, "b", "a", False)
        run_until(self.loop, lambda: self.a.ready and self.b.ready, 30.0)
        self.attackers = [Attacker(self, f"t{i}") for i in range(attackers)]

    def round_trip(self, seconds: float) -> None:
        if self.counting:
            self.trips.append(seconds)

    def answered(self, code: str) -> None:
        if self.counting:
            self.answers[code] = self.answers.get(code, 0) + 1

    def measure(self, seconds: float) -> dict:
        self.a.ping()
        warm = time.monotonic() + 1.0
        run_until(self.loop, lambda: time.monotonic() > warm, 10.0)
        self.counting = True
        end = time.monotonic() + seconds
        run_until(self.loop, lambda: time.monotonic() > end, seconds + 10.0)
        self.counting = False
        trips = sorted(self.trips)
        guesses = self.answers.get("invalid_password", 0) + self.answers.get("account_blocked", 0)
        p99 = trips[min(len(trips) - 1, len(trips) * 99 // 100)]
        return {"p50_ms": trips[len(trips) // 2] * 1000, "p99_ms": p99 * 1000,
                "max_ms": trips[-1] * 1000, "trips_per_s": len(trips) / seconds, "guesses_per_s": guesses / seconds,
                "try_again_per_s": self.answers.get("try_again", 0) / seconds}

    def close(self) -> None:
        self.stopping = True
        for client in [self.a, self.b, *self.attackers]:
            client.stream.abort()
        self.loop.run_once(timeout=0)
        self.loop.close()


def serve(workdir: str, credentials: str) -> tuple[subprocess.Popen, int]:
    """block_duration 0.001 s: a locked account opens again at once and the guessing never stops."""
    return start_server(workdir, credentials, "0.001", *UNLIMITED)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.passwords", description=__doc__.split("\n")[0])
    parser.add_argument("--attackers", type=int, default=20, help="connections guessing passwords (default 20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds each measurement counts (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three (default 3); medians shown")
    args = parser.parse_args(argv)
    hashed = hash_password("not-the-guess")   # one hash for every attacked account: the cost is the same
    kinds = {"no attackers": (0, None), "plain accounts": (args.attackers, False),
             "hashed accounts": (args.attackers, True)}
    rounds: dict[str, list[dict]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as workdir:
        for round_no in range(args.rounds):
            order = list(kinds.items()) if round_no % 2 == 0 else list(kinds.items())[::-1]
            for name, (attackers, use_hash) in order:
                credentials = os.path.join(workdir, "credentials.txt")
                with open(credentials, "w") as out:
                    out.write("a pw-a\nb pw-b\n")
                    out.writelines(f"t{i} {hashed if use_hash else 'not-the-guess'}\n" for i in range(args.attackers))
                proc, port = serve(workdir, credentials)
                try:
                    bench = Bench(port, attackers)
                    try:
                        rounds[name].append(bench.measure(args.seconds))
                    finally:
                        bench.close()
                finally:
                    proc.terminate()
                    proc.wait(10)
    print(f"a bystander's round trip while {args.attackers} connections guess wrong passwords as fast as they can "
          f"(median of {args.rounds} rounds of {args.seconds:g} s)")
    print(f"{'':18}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'trips/s':>9}{'guesses/s':>11}{'try_again/s':>13}")
    for name, runs in rounds.items():
        f = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"{name:18}{f['p50_ms']:>8.2f}{f['p99_ms']:>8.2f}{f['max_ms']:>8.1f}{f['trips_per_s']:>9.0f}"
              f"{f['guesses_per_s']:>11.0f}{f['try_again_per_s']:>13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
