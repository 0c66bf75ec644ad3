"""Cluster mode's scaling: 1, 2 and 4 nodes on one engine, against the single process on SQLite, in one run.

    python -m tests.bench.cluster [--clients N] [--rounds R] [--nodes 1,2,4]

Each configuration gets a fresh engine (``tests/redis_binary.py``: redis 7.0, append-only file synced on every
write, as the tests run it) and fresh real servers (``server_main.py``): the nodes share one port
(``--reuse-port``), so the kernel spreads the clients over them at random, and most pairs of partners are on
two different nodes (a message between them goes through the engine). The single process keeps its state
in an SQLite file with ``synchronous=FULL``. Per configuration, with the same load generators:

- a login storm of ``clients`` users (200 logins in flight per generator): until all are welcomed, and
  until every presence notice is delivered (each user hears of everyone who came after it);
- relay throughput: 500 pairs of partners, 4 messages in flight each way (msg/s delivered, median of the
  periods);
- latency at 2,000 msg/s offered over all clients: p50 and p99 of a message's trip;
- the CPU each process used meanwhile (servers, engine, generators), in % of one core.

This machine has 2 cores: 4 nodes, the engine and 2 generators share them, so more nodes cannot be faster
here; the figures show what the engine's round trips cost per message and per login, and that nothing
breaks. Figures go to stdout as a table, progress to stderr.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.redis_binary import EngineProcess, free_port

from .common import UNLIMITED, percentile, process_cpu_seconds, raise_open_files_limit, write_accounts
from .loadgen import LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATORS = 2
LOGINS_IN_FLIGHT = 200
WINDOW = 4
LATENCY_RATE = 2_000


def say(text: str) -> None:
    print(f"[cluster bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COVERAGE_PROCESS_START", None)
    return env


class Servers:
    """``nodes`` cluster nodes on one port (0: the single process on SQLite), and their engine."""

    def __init__(self, nodes: int, workdir: str, credentials: str) -> None:
        self.engine = EngineProcess().start() if nodes else None
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for k in range(max(nodes, 1)):
                flags: list[str] = [*UNLIMITED]
                if self.engine is not None:
                    flags += ["--cluster", f"redis://127.0.0.1:{self.engine.port}", "--node-id", f"n{k}",
                              "--reuse-port"]
                else:
                    flags += ["--state", os.path.join(workdir, f"chat-{time.monotonic_ns()}.db")]
                proc = subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "server_main.py"), str(self.port), "1", "600",
                     "--credentials", credentials, "--log-level", "ERROR", *flags],
                    cwd=workdir, stdout=subprocess.PIPE, env=child_env())
                self.procs.append(proc)
                line = proc.stdout.readline().decode()   # type: ignore[union-attr]
                if not line.startswith("Server listening on "):
                    raise RuntimeError(f"a server did not start: {line!r}")
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> tuple[float, float]:
        """(all servers', the engine's) CPU seconds so far."""
        servers = sum(process_cpu_seconds(proc.pid) for proc in self.procs)
        engine = 0.0
        if self.engine is not None and self.engine.process is not None:
            engine = process_cpu_seconds(self.engine.process.pid)
        return servers, engine

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.engine is not None:
            self.engine.stop()


def measure(nodes: int, clients: int, workdir: str, credentials: str) -> dict[str, Any]:
    """One configuration's figures (see the module's docstring)."""
    servers = Servers(nodes, workdir, credentials)
    gens = None
    figures: dict[str, Any] = {}
    try:
        # wait until every node has joined and the new engine settled (it decides no login for a lease, 4 s, after
        # the first node finds it without state): a login before that is refused (and retried by nobody)
        time.sleep(4.5 if nodes else 0.0)
        gens = LoadGenerators(GENERATORS, servers.port, clients, cwd=ROOT, env=child_env())
        started = time.monotonic()
        replies = gens.command("login", wait=150.0, concurrency=LOGINS_IN_FLIGHT, within=120.0)
        ok = sum(r["ok"] for r in replies)
        first = min(r["first"] for r in replies)
        figures["logged in"] = ok
        figures["storm: all welcome (s)"] = max(r["last"] for r in replies) - first
        if ok < clients:
            raise RuntimeError(f"{ok} of {clients} logged in: {[e for r in replies for e in r['errors']][:3]}")
        expected = ok * (ok - 1) // 2
        while sum(r["lines"] for r in gens.command("lines")) < expected:
            if time.monotonic() - started > 120.0:
                raise RuntimeError("presence notices did not all arrive within 120 s")
            time.sleep(0.02)
        figures["storm: + all presence (s)"] = time.monotonic() - first

        cpu0, wall0 = servers.cpu_seconds(), time.monotonic()
        gen0 = sum(gens.cpu_seconds())
        replies = gens.command("throughput", window=WINDOW, warmup=1.0, periods=8, period=0.5)
        wall = time.monotonic() - wall0
        cpu1 = servers.cpu_seconds()
        rates = [sum(period) for period in zip(*(r["rates"] for r in replies), strict=False)]
        figures["relay, 500 pairs (msg/s)"] = statistics.median(rates)
        figures["relay: servers' CPU (%)"] = (cpu1[0] - cpu0[0]) / wall * 100
        figures["relay: engine CPU (%)"] = (cpu1[1] - cpu0[1]) / wall * 100
        figures["relay: generators' CPU (%)"] = (sum(gens.cpu_seconds()) - gen0) / wall * 100

        replies = gens.command("latency", rate=LATENCY_RATE / GENERATORS, warmup=1.0, duration=4.0)
        samples = sorted(x for r in replies for x in r["samples"])
        figures["latency @2k msg/s: p50 (ms)"] = percentile(samples, 0.5) * 1e3
        figures["latency @2k msg/s: p99 (ms)"] = percentile(samples, 0.99) * 1e3
        lost = sum(r["sent"] - r["received"] for r in replies)
        if lost:
            figures["latency: messages lost"] = lost
    finally:
        servers.stop()
        if gens is not None:
            gens.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="each configuration this many times (medians)")
    parser.add_argument("--nodes", default="1,2,4", help="the cluster sizes, comma-separated")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    sizes = [0, *(int(n) for n in args.nodes.split(","))]
    label = {0: "single (SQLite)", **{n: f"{n} node{'s' if n > 1 else ''}" for n in sizes if n}}
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, args.clients)
        for round_no in range(args.rounds):
            for n in sizes:   # side by side in each round: the machine's noise hits all alike
                say(f"round {round_no + 1}/{args.rounds}: {label[n]}, {args.clients} clients")
                try:
                    results[n].append(measure(n, args.clients, workdir, credentials))
                except RuntimeError as exc:
                    say(f"{label[n]} failed: {exc}")
    names: list[str] = []
    for runs in results.values():
        for run in runs:
            names += [name for name in run if name not in names]
    print(f"\nCluster mode, {args.clients} clients, median of {args.rounds} rounds "
          f"(2 cores shared by servers, engine and generators)\n")
    print(f"| figure | {' | '.join(label[n] for n in sizes)} |")
    print(f"|---|{'---|' * len(sizes)}")
    for name in names:
        cells = []
        for n in sizes:
            values = [run[name] for run in results[n] if name in run]
            cells.append(f"{statistics.median(values):,.1f}" if values else "-")
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
