"""What recording costs: the real server's relay with and without ``--record``, side by side, the journal's bytes
per message, and how fast that journal replays.

    python -m tests.bench.record [--pairs N] [--rounds R] [--periods P] [--period S] [--generators G]

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
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from reactor.journal.replay import ServerReplay, open_journal
from tests.bench.common import UNLIMITED, process_cpu_seconds, start_server, write_accounts
from tests.bench.loadgen import GeneratorError, LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WINDOW = 4


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
            replies = gens.command("throughput", window=WINDOW, warmup=args.warmup, periods=args.periods,
                                   period=args.period)
            wall = time.monotonic() - started
            cpu = (process_cpu_seconds(proc.pid) - cpu_before) / wall
            rates = [sum(period) for period in zip(*(r["rates"] for r in replies), strict=False)]
        finally:
            gens.close()
    finally:
        proc.terminate()
        proc.wait(30)
    rate = statistics.median(rates)
    return {"msgs_per_s": rate, "cpu": cpu, "per_cpu_second": rate / cpu if cpu else float("nan")}


def journal_figures(path: str) -> dict:
    """The journal's bytes, its relay lines' bytes each, and how fast it replays here."""
    size = os.path.getsize(path)
    relay_lines = relay_bytes = 0
    with open(path, "rb") as lines:
        for line in lines:
            if line.startswith(b"[") and b',"M",' in line[:24]:
                relay_lines += 1
                relay_bytes += len(line)
    journal = open_journal(path)
    replay = ServerReplay(journal.header)
    count = 0
    first = last = None
    started = time.perf_counter()
    for event in journal.events():
        replay.apply(event)
        count += 1
        first = event.now if first is None else first
        last = event.now
    took = time.perf_counter() - started
    return {"bytes": size, "relayed": relay_lines, "bytes_per_message": size / max(1, relay_lines),
            "relay_line_bytes": relay_bytes / max(1, relay_lines), "events": count, "replay_s": took,
            "events_per_s": count / took, "span_s": (last or 0) - (first or 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.record", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="pairs of users (default 500: 1,000 users)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both (default 3)")
    parser.add_argument("--periods", type=int, default=5, help="measuring periods per relay (default 5)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds per period (default 1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the first period (default 1)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    args = parser.parse_args(argv)
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
                      f"server CPU {this[kind]['cpu']:.0%}", file=sys.stderr)
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
          f"{figures['bytes_per_message']:.1f} bytes per message in all, {figures['relay_line_bytes']:.1f} "
          "per relay line")
    print(f"replay of that journal: {figures['events']:,} events in {figures['replay_s']:.2f} s "
          f"({figures['events_per_s']:,.0f} events/s; {figures['span_s'] / figures['replay_s']:.1f} times the "
          "speed it was recorded at, a flood)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
