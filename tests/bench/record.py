"""What recording costs: the real server's relay with and without ``--record``, side by side, the journal's bytes
per message, and how fast that journal replays.

    python -m tests.bench.record [--pairs N] [--rounds R] [--periods P] [--period S] [--generators G]
    python -m tests.bench.record --instructions [--messages N]

Each round starts ``server_main.py`` twice (alternating which goes first: the
machine's load drifts), without and with ``--record`` (the journal in a
temporary directory, texts as placeholders), logs ``2 x pairs`` users in from
the bench's load generators (``tests.bench.loadgen``, each pair keeping 4
messages in flight each way, as ``make bench``'s relay), and counts the
messages relayed per second over ``periods`` periods, and the server's CPU.
Figures are medians over the rounds; the ratio is taken within each round.
The recorded journal is then replayed in this process (``ServerReplay``):
its events per second. (A relay flood is no hour of a chat: how fast an hour
of 1,000 users replays is ``tests.bench.replay``'s figure.)

``--instructions`` counts instead what one relayed message costs the server,
in instructions (valgrind's callgrind: the same on a busy machine as on a
quiet one), with and without ``--record``: 100 clients (50 pairs, 4 messages
in flight each way) relay ``N`` and then ``5 N`` messages through a server
under callgrind; the difference of the two totals over ``4 N`` is the cost of
one message, start-up and logins left out.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from reactor.framing import JsonLines, encode
from reactor.journal.replay import ServerReplay, open_journal
from reactor.loop import EventLoop
from reactor.stream import Stream
from tests.bench.common import UNLIMITED, BenchUser, process_cpu_seconds, run_until, start_server, write_accounts
from tests.bench.loadgen import GeneratorError, LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WINDOW = 4


def user_and_system(pid: int) -> tuple[float, float]:
    """The user and the system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def relay(workdir: str, credentials: str, users: int, journal: str | None, args: argparse.Namespace) -> dict:
    """One server (recording to ``journal``, or not): log everyone in, then the relay's msg/s and CPU."""
    flags = [*UNLIMITED, *(("--record", journal) if journal else ())]
    proc, port = start_server(workdir, credentials, "10", *flags)
    try:
        gens = LoadGenerators(args.generators, port, users, cwd=ROOT)
        try:
            replies = gens.command("login", wait=120.0, concurrency=200, within=60.0)
            ok = sum(r["ok"] for r in replies)
            if ok < users:
                raise GeneratorError(f"only {ok} of {users} logged in")
            expected = users * (users - 1) // 2   # every presence notice in before the relay starts
            deadline = time.monotonic() + 60
            while sum(r["lines"] for r in gens.command("lines")) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            cpu_before, started = process_cpu_seconds(proc.pid), time.monotonic()
            user_before, system_before = user_and_system(proc.pid)
            replies = gens.command("throughput", window=WINDOW, warmup=args.warmup, periods=args.periods,
                                   period=args.period)
            wall = time.monotonic() - started
            cpu = (process_cpu_seconds(proc.pid) - cpu_before) / wall
            user, system = user_and_system(proc.pid)
            system_share = (system - system_before) / max(1e-9, user - user_before + system - system_before)
            rates = [sum(period) for period in zip(*(r["rates"] for r in replies), strict=False)]
        finally:
            gens.close()
    finally:
        proc.terminate()
        proc.wait(30)
    rate = statistics.median(rates)
    return {"msgs_per_s": rate, "cpu": cpu, "per_cpu_second": rate / cpu if cpu else float("nan"),
            "system_share": system_share}


def journal_figures(path: str) -> dict:
    """The journal's bytes, its relayed messages, and how fast it replays here."""
    size = os.path.getsize(path)
    journal = open_journal(path)
    replay = ServerReplay(journal.header)
    count = relayed = 0
    first = last = None
    started = time.perf_counter()
    for event in journal.events():
        replay.apply(event)
        count += 1
        relayed += event.op == "M"
        first = event.now if first is None else first
        last = event.now
    took = time.perf_counter() - started
    return {"bytes": size, "relayed": relayed, "bytes_per_message": size / max(1, relayed), "events": count,
            "replay_s": took, "events_per_s": count / took, "span_s": (last or 0) - (first or 0)}


class Pair(BenchUser):
    """One of two users who answer each other's every message with one, until ``left`` runs out."""

    def __init__(self, bench: Instructions, name: str, partner: str) -> None:
        self.bench, self.name, self.partner, self.ready = bench, name, partner, False
        sock = socket.create_connection(("127.0.0.1", bench.port))
        self.stream = Stream(bench.loop, sock, JsonLines(self))
        self.stream.write(encode({"type": "hello", "version": 2}))
        self.message = encode({"type": "message", "to": partner, "text": "the quick brown fox jumps over the dog"})

    def frame_received(self, stream: Stream, frame: dict) -> None:
        if frame.get("type") == "message":
            self.bench.relayed += 1
            if self.bench.left > 0:
                self.bench.left -= 1
                stream.write(self.message)
        elif not self.log_in(stream, frame.get("type")) and frame.get("type") not in ("presence", "pong"):
            raise RuntimeError(f"{self.name}: {frame}")


class Instructions:
    """A server under callgrind, 50 pairs of users relaying ``messages``: the server's instructions in all."""

    def __init__(self, workdir: str, credentials: str, messages: int, record: bool) -> None:
        out = os.path.join(workdir, "callgrind.out")
        flags = [*UNLIMITED, *(("--record", os.path.join(workdir, "cg.journal")) if record else ())]
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             os.path.join(ROOT, "server_main.py"), "0", "10", "600", "--credentials", credentials, "--state",
             ":memory:", "--log-level", "ERROR", *flags], cwd=workdir, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()   # type: ignore[union-attr]
        if not line.startswith("Server listening on "):
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.loop = EventLoop()
        self.stopping = False
        self.relayed = 0
        self.left = messages
        users = [Pair(self, f"user{2 * p + k}", f"user{2 * p + 1 - k}") for p in range(50) for k in (0, 1)]
        run_until(self.loop, lambda: all(u.ready for u in users), 300.0)
        for user in users:
            for _ in range(WINDOW):
                self.left -= 1
                user.stream.write(user.message)
        run_until(self.loop, lambda: self.relayed >= messages, 600.0)
        self.stopping = True
        for user in users:
            user.stream.close()
        self.loop.run_once(timeout=0.1)
        self.loop.close()
        self.proc.terminate()
        self.proc.wait(120)
        with open(out) as totals:
            self.total = int(re.search(r"^summary: (\d+)", totals.read(), re.MULTILINE)[1])   # type: ignore[index]


def instructions(messages: int) -> dict[str, Any]:
    """Instructions per relayed message in the server, without and with recording."""
    per: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        with open(credentials, "w") as out:   # (BenchUser's passwords)
            out.writelines(f"user{i} pw-user{i}\n" for i in range(100))
        for kind, record in (("without", False), ("with", True)):
            small = Instructions(workdir, credentials, messages, record).total
            large = Instructions(workdir, credentials, 5 * messages, record).total
            per[kind] = (large - small) / (4 * messages)
            print(f"{kind:>7} --record: {per[kind]:,.0f} instructions per relayed message", file=sys.stderr)
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.record", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="pairs of users (default 500: 1,000 users)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both (default 3)")
    parser.add_argument("--periods", type=int, default=5, help="measuring periods per relay (default 5)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds per period (default 1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the first period (default 1)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the server's instructions per relayed message instead (needs valgrind)")
    parser.add_argument("--messages", type=int, default=5000, help="with --instructions: N (default 5,000)")
    args = parser.parse_args(argv)
    if args.instructions:
        if shutil.which("valgrind") is None:
            parser.error("--instructions needs valgrind")
        per = instructions(args.messages)
        print(f"a relayed message costs the server {per['without']:,.0f} instructions, {per['with']:,.0f} with "
              f"--record: {per['with'] - per['without']:,.0f} more; relay with recording at "
              f"{per['without'] / per['with']:.0%} of without, by instructions (callgrind)")
        return 0
    users = 2 * args.pairs
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    ratios, cpu_ratios = [], []
    journal = None
    with tempfile.TemporaryDirectory() as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, users)
        for round_no in range(args.rounds):
            order = ["without", "with"] if round_no % 2 == 0 else ["with", "without"]
            this: dict[str, dict] = {}
            for kind in order:
                path = os.path.join(workdir, f"round{round_no}.journal") if kind == "with" else None
                this[kind] = relay(workdir, credentials, users, path, args)
                runs[kind].append(this[kind])
                print(f"round {round_no + 1} {kind:>7} --record: {this[kind]['msgs_per_s']:9,.0f} msg/s, "
                      f"server CPU {this[kind]['cpu']:.0%} ({this[kind]['system_share']:.0%} of it in the kernel)",
                      file=sys.stderr)
                if path is not None:
                    journal = path
            ratios.append(this["with"]["msgs_per_s"] / this["without"]["msgs_per_s"])
            cpu_ratios.append(this["with"]["per_cpu_second"] / this["without"]["per_cpu_second"])
        assert journal is not None
        figures = journal_figures(journal)
    print(f"relay, {args.pairs} pairs (the real server, {args.generators} load generators; median of {args.rounds} "
          f"rounds of {args.periods} x {args.period:g} s)")
    for kind in ("without", "with"):
        rate = statistics.median(r["msgs_per_s"] for r in runs[kind])
        per_cpu = statistics.median(r["per_cpu_second"] for r in runs[kind])
        print(f"  {kind:>7} --record: {rate:10,.0f} msg/s   {per_cpu:10,.0f} msg per server CPU-second")
    print(f"relay with recording: {statistics.median(ratios):.0%} of without (per server CPU-second: "
          f"{statistics.median(cpu_ratios):.0%}; rounds: {', '.join(f'{r:.0%}' for r in ratios)})")
    print(f"journal: {figures['bytes'] / 1e6:.1f} MB for {figures['relayed']:,} messages relayed: "
          f"{figures['bytes_per_message']:.1f} bytes per message")
    print(f"replay of that journal: {figures['events']:,} events in {figures['replay_s']:.2f} s "
          f"({figures['events_per_s']:,.0f} events/s; {figures['span_s'] / figures['replay_s']:.1f} times the "
          "speed it was recorded at, a flood)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
