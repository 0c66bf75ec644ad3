"""What the operator's tools cost the real server: relay with metrics off and on, side by side, and a scrape of a
server with 10,000 users.

    python -m tests.bench.metrics [--rounds N] [--seconds S] [--show-seconds S] [--users N] [--scrapes N]
                                  [--instructions] [--only relay|show|scrapes|instructions]

1. Relay, 500 pairs (the peers' workload of ``tests.bench.run``: 1,000 load generator clients, 4 messages in
   flight each way per pair), on ``server_main.py`` itself: metrics off (no ``--metrics``) and on
   (``--metrics`` and ``--admin-socket``, the loop's turns timed, and a real Prometheus scraping it every
   second, 15 times as often as its default), alternating which goes first, ``--rounds`` rounds; the median
   msg/s and msg per server CPU-second of each, and their ratios within each round (goal: on >= 97% of off;
   where the generators cannot saturate the server's core, the CPU-second figure is the cost).
2. One more relay with metrics on, ``--show-seconds`` long (65: Prometheus's ``rate(...[1m])`` covers it):
   a scrape of the server's endpoint near its end and Prometheus's answer to
   ``rate(chat_messages_relayed_total[1m])`` then; after it, how long ``reactor-chat-admin who`` took on the
   1,000 users.
3. A server with ``--users`` (10,000) users logged in: ``--scrapes`` scrapes in a row, and the loop's turns
   while they were served, read from the server's own ``chat_loop_turn_seconds`` (goal: none over 5 ms);
   as many ``/healthz`` requests before them are the control (the same HTTP work without the render: on a
   shared machine a turn stretched by another process shows there too); then ``reactor-chat-admin who``
   on all of them.
4. With ``--instructions`` (or ``--only instructions``), where valgrind is installed: instructions per relayed
   message, metrics off and on, counted by callgrind in an in-process relay (the same on a busy machine as
   on a quiet one, where the wall-clock figures above are not).

The server is pinned to the first core and everything else to the others, as ``tests.bench.run`` does, and
runs at nice -10 where allowed (root): on a shared machine, other processes on its core stretch its turns less.
Prometheus comes from ``tests/prometheus.py`` (``make test`` fetches it); without it this process scrapes
every second instead and there is no rate query.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from .common import UNLIMITED, process_cpu_seconds, raise_open_files_limit, write_accounts
from .loadgen import LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN = os.path.join(os.path.dirname(sys.executable), "reactor-chat-admin")
PAIRS_CLIENTS = 1_000
WINDOW = 4
GOAL = 0.97                  # relay with metrics on, at least this share of relay without
STALL = 0.005                # seconds no loop turn may take while a scrape is served
SCRAPE_EVERY = 1.0           # seconds between Prometheus's scrapes (its default: 15 s, or 1 min)
SHOWN = ("chat_users_online", "chat_connections", "chat_messages_relayed_total", "chat_bytes_received_total",
         "chat_bytes_sent_total", "chat_logins_succeeded_total", "chat_loop_turn_seconds_bucket",
         "chat_loop_turn_seconds_count", "chat_ready")


def cores() -> tuple[set[int] | None, set[int] | None]:
    """(the server's, everything else's): the first core, and the others (None: one core, no pinning)."""
    available = sorted(os.sched_getaffinity(0))
    return (None, None) if len(available) < 2 else ({available[0]}, set(available[1:]))


def server_placement() -> None:
    """In the server's process before it runs: the first core, and (where allowed) a higher priority than
    the rest of a shared machine, so other processes on that core stretch its turns less."""
    server_cpus, _ = cores()
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)
    try:
        os.nice(-10)
    except PermissionError:
        pass


class Server:
    """``server_main.py`` with ``flags``, placed (``server_placement``); its chat port and metrics address."""

    def __init__(self, workdir: str, credentials: str, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "server_main.py"), "0", "60", "3600", "--credentials", credentials,
             "--state", ":memory:", "--log-level", "ERROR", *UNLIMITED, *flags], cwd=workdir,
            stdout=subprocess.PIPE, bufsize=0, preexec_fn=server_placement)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("Server listening on "):
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.metrics: str | None = None
        if "--metrics" in flags:
            self.metrics = self.proc.stdout.readline().decode().split()[-1]   # http://HOST:PORT/metrics

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def scrape(self) -> str:
        assert self.metrics is not None
        with urllib.request.urlopen(self.metrics, timeout=30) as answer:
            return str(answer.read().decode())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def generators(server: Server, clients: int) -> LoadGenerators:
    _, others = cores()
    return LoadGenerators(2, server.port, clients, cpus=others, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))


def log_in(gens: LoadGenerators, clients: int) -> None:
    replies = gens.command("login", wait=300.0, concurrency=200, within=240.0)
    ok = sum(r["ok"] for r in replies)
    if ok < clients:
        raise RuntimeError(f"only {ok} of {clients} logged in: {[e for r in replies for e in r['errors']][:3]}")


def relay(server: Server, gens: LoadGenerators, seconds: float, during: Callable[[], Any] | None = None) -> dict:
    """The peers' throughput workload; ``during()`` is called late in its measuring (the generators
    run on their own meanwhile)."""
    cpu, started = server.cpu_seconds(), time.monotonic()
    periods = max(2, int(seconds / 0.5))

    def late() -> None:
        if during is not None:
            time.sleep(1.0 + seconds * 0.95)   # the warm-up, then nearly all the periods
            during()
    replies = gens.command("throughput", window=WINDOW, warmup=1.0, periods=periods, period=0.5, meanwhile=late,
                           wait=seconds + 120.0)
    wall = time.monotonic() - started
    rates = sorted(sum(period) for period in zip(*(r["rates"] for r in replies), strict=False))
    return {"msgs_per_s": rates[len(rates) // 2], "server_cpu": (server.cpu_seconds() - cpu) / wall}


def timed_who(path: str, users: int) -> float:
    """``reactor-chat-admin PATH who`` (checked to list ``users``); the seconds it took, its start included."""
    started = time.perf_counter()
    out = subprocess.run([ADMIN, path, "who"], capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - started
    if out.returncode != 0 or not out.stdout.endswith(f"{users} users online.\n"):
        raise RuntimeError(f"who: {out.returncode} {out.stderr or out.stdout[-200:]}")
    return took


def scraped(prometheus: Any, within: float = 60.0) -> None:
    """Wait until ``prometheus`` has scraped its target (it takes up to 5 s to start scraping)."""
    deadline = time.monotonic() + within
    while not any(value == 1 for _, value in prometheus.query('up{job="chat"}')):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus did not scrape within {within:g} s")
        time.sleep(0.2)


def histogram(text: str, name: str) -> dict[str, float]:
    """A scrape's ``name`` histogram: its buckets by ``le``, and ``count``."""
    figures = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            figures[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            figures["count"] = float(line.rsplit(" ", 1)[1])
    return figures


def prometheus_maker() -> Callable[[str], Any] | None:
    """Starts a real Prometheus on a target (``HOST:PORT``), scraping every ``SCRAPE_EVERY``, placed on the
    cores that are not the server's, once it has scraped; None if there is no Prometheus here."""
    try:
        from tests.prometheus import PrometheusProcess, prometheus_binary
        prometheus_binary()
    except Exception as exc:   # noqa: BLE001 (no Prometheus here: this process scrapes instead)
        print(f"(no Prometheus: {exc}; scraping from this process instead)")
        return None

    def start(target: str) -> Any:
        prometheus = PrometheusProcess([target], interval=f"{SCRAPE_EVERY:g}s").start()
        _, others = cores()
        if others:
            os.sched_setaffinity(prometheus.process.pid, others)
        scraped(prometheus)
        return prometheus
    return start


class Session:
    """A server (with ``--metrics`` and ``--admin-socket`` when ``on``, and then a scraper: a real Prometheus,
    or a loop of this process's), its 1,000 load generator clients logged in."""

    def __init__(self, workdir: str, credentials: str, on: bool, prometheus: Callable[[str], Any] | None) -> None:
        self.socket_path = os.path.join(workdir, "admin.sock")
        flags = ("--metrics", "127.0.0.1:0", "--admin-socket", self.socket_path) if on else ()
        self.server = Server(workdir, credentials, *flags)
        self.prometheus: Any = None
        self.scraper: subprocess.Popen | None = None
        self.gens: LoadGenerators | None = None
        try:
            self.gens = generators(self.server, PAIRS_CLIENTS)
            log_in(self.gens, PAIRS_CLIENTS)
            if on and self.server.metrics:
                if prometheus is not None:
                    self.prometheus = prometheus(self.server.metrics.split("//", 1)[1].split("/", 1)[0])
                else:
                    self.scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, self.server.metrics,
                                                     str(SCRAPE_EVERY)], cwd=ROOT)
        except BaseException:
            self.close()
            raise

    def relay(self, seconds: float, during: Callable[[], Any] | None = None) -> dict:
        assert self.gens is not None
        return relay(self.server, self.gens, seconds, during)

    def close(self) -> None:
        if self.gens is not None:
            self.gens.close()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.scraper is not None:
            self.scraper.kill()
            self.scraper.wait()
        self.server.stop()


def part_relay(workdir: str, credentials: str, rounds: int, seconds: float) -> None:
    prometheus = prometheus_maker()
    results: dict[str, list[dict]] = {"off": [], "on": []}
    for round_no in range(rounds):
        for mode in (("off", "on") if round_no % 2 == 0 else ("on", "off")):
            session = Session(workdir, credentials, mode == "on", prometheus)
            try:
                result = session.relay(seconds)
            finally:
                session.close()
            results[mode].append(result)
            print(f"  round {round_no + 1}, metrics {mode}: {result['msgs_per_s']:,.0f} msg/s, "
                  f"server CPU {result['server_cpu'] * 100:.0f}%", file=sys.stderr, flush=True)
    pairs = list(zip(results["on"], results["off"], strict=True))
    ratios = [on["msgs_per_s"] / off["msgs_per_s"] for on, off in pairs]
    cpu_ratios = [(on["msgs_per_s"] / on["server_cpu"]) / (off["msgs_per_s"] / off["server_cpu"]) for on, off in pairs]
    print(f"\nrelay, 500 pairs, {WINDOW} in flight each way, real server (median of {rounds} rounds of {seconds:g} s)")
    print(f"{'':34}{'msg/s':>10}{'[min-max]':>22}{'server CPU':>12}{'msg/CPU-s':>11}")
    for mode, label in (("off", "metrics off"), ("on", f"metrics on, scraped every {SCRAPE_EVERY:g} s")):
        rates = [r["msgs_per_s"] for r in results[mode]]
        cpu = statistics.median(r["server_cpu"] for r in results[mode])
        per_cpu = statistics.median(r["msgs_per_s"] / max(r["server_cpu"], 1e-9) for r in results[mode])
        print(f"{label:34}{statistics.median(rates):>10,.0f}{f'[{min(rates):,.0f}-{max(rates):,.0f}]':>22}"
              f"{cpu * 100:>11.0f}%{per_cpu:>11,.0f}")
    for what, values in (("msg/s", ratios), ("msg per server CPU-second", cpu_ratios)):
        ratio = statistics.median(values)
        print(f"relay with metrics on, {what}: {ratio:.1%} of off (per round: {', '.join(f'{r:.1%}' for r in values)});"
              f" goal >= {GOAL:.0%}: {'ok' if ratio >= GOAL else 'MISS'}")


def part_show(workdir: str, credentials: str, seconds: float) -> None:
    """One relay with metrics on, long enough for Prometheus's ``rate(...[1m])`` to cover it: a scrape near its
    end, Prometheus's answer then; ``reactor-chat-admin who`` on the 1,000 users after it."""
    session = Session(workdir, credentials, True, prometheus_maker())
    shown: dict[str, Any] = {}

    def during() -> None:
        started = time.perf_counter()
        shown["scrape"] = session.server.scrape()
        shown["scrape_took"] = time.perf_counter() - started
        if session.prometheus is not None:
            shown["rate"] = session.prometheus.query("rate(chat_messages_relayed_total[1m])")
    try:
        result = session.relay(seconds, during)
        shown["who"] = timed_who(session.socket_path, PAIRS_CLIENTS)
    finally:
        session.close()
    print(f"\none scrape of the real server near the end of a {seconds:g} s relay with metrics on "
          f"({result['msgs_per_s']:,.0f} msg/s; the scrape's round trip {shown['scrape_took'] * 1e3:.0f} ms, "
          "behind the relay's loop turns), the chat's figures:")
    for line in shown["scrape"].splitlines():
        if line.split("{", 1)[0].split(" ", 1)[0] in SHOWN:
            print(f"  {line}")
    if "rate" in shown:
        print("Prometheus then: rate(chat_messages_relayed_total[1m]) = "
              + ", ".join(f"{value:,.0f}/s {labels}" for labels, value in shown["rate"]))
    print(f"reactor-chat-admin who on {PAIRS_CLIENTS:,} users: {shown['who'] * 1e3:.0f} ms "
          "(the command's interpreter start included)")


def part_scrapes(workdir: str, credentials: str, users: int, scrapes: int) -> None:
    socket_path = os.path.join(workdir, "admin.sock")
    server = Server(workdir, credentials, "--metrics", "127.0.0.1:0", "--admin-socket", socket_path)
    try:
        gens = generators(server, users)
        try:
            log_in(gens, users)
            time.sleep(2.0)   # the storm's presence notices out
            # The same number of /healthz requests first: the same HTTP work without the render, so a turn
            # stretched by the machine (another process on the server's core) shows there as well.
            control = turns_while(server, scrapes, "/healthz")
            measured = turns_while(server, scrapes, "/metrics")
            who = timed_who(socket_path, users)
        finally:
            gens.close()
    finally:
        server.stop()
    print(f"\n{users:,} users logged in: {scrapes} requests in a row of each path, one at a time")
    for path, (turns, longer, bands, took, size) in (("/healthz", control), ("/metrics", measured)):
        print(f"  {path:9} {size:>6,} bytes, {took / scrapes * 1e3:.2f} ms a round trip; loop turns meanwhile "
              f"{turns:.0f}, over {STALL * 1e3:g} ms: {longer:.0f}; cumulative by bound: "
              + ", ".join(f"<={le}s {n:.0f}" for le, n in bands.items()))
    verdict = "ok" if measured[1] <= control[1] else "MISS"
    print(f"scrapes of {users:,} users: turns over {STALL * 1e3:g} ms no more than with /healthz alone "
          f"(the machine's, not the scrape's): {verdict}")
    print(f"reactor-chat-admin who on {users:,} users: {who * 1e3:.0f} ms (its interpreter start included)")


def turns_while(server: Server, requests: int, path: str) -> tuple[float, float, dict[str, float], float, int]:
    """``requests`` GETs of ``path`` one at a time; the loop's turns meanwhile (by the server's own
    histogram): how many, how many over ``STALL``, the cumulative bands; the time they took; a body's size."""
    url = server.metrics.replace("/metrics", path) if server.metrics else ""
    before = histogram(server.scrape(), "chat_loop_turn_seconds")
    started = time.perf_counter()
    for _ in range(requests):
        with urllib.request.urlopen(url, timeout=30) as answer:
            size = len(answer.read())
    took = time.perf_counter() - started
    after = histogram(server.scrape(), "chat_loop_turn_seconds")
    turns = after["count"] - before["count"]
    bands = {le: after[le] - before[le] for le in after if le != "count"}
    return turns, turns - bands[str(STALL)], bands, took, size


def relay_in_process(messages: int, on: bool) -> None:
    """The instructions part's driver: a ``ServerHost`` on this process's loop and two clients on real sockets,
    ``messages`` relayed from one to the other, 50 a write; ``on``: the loop's turns timed and the registry
    rendered every 1,000 messages (a scrape per 20 ms at 50k msg/s: 20 times Prometheus every second)."""
    import json
    import socket

    from reactor.loop import EventLoop
    from reactor.server.host import ServerHost
    from reactor.server.operator import ServerOperator
    from reactor.server.reload import AccountsReload
    from reactor.server.rules import ChatServer

    loop = EventLoop(turn_stats=on)
    logic = ChatServer({"u0": "p0", "u1": "p1"}, 10.0, 600.0, rate=None, sender_quota=None)
    host = ServerHost(loop, logic)
    host.serve("127.0.0.1", 0)
    render = ServerOperator(loop, host, logic, AccountsReload(loop, os.devnull, host.accounts_changed)).metrics.render

    def client(user: str, password: str) -> socket.socket:
        sock = socket.create_connection(host.address[:2])
        sock.sendall(b"".join(json.dumps(frame).encode() + b"\n" for frame in (
            {"type": "hello", "version": 2}, {"type": "username", "username": user},
            {"type": "password", "password": password})))
        sock.setblocking(False)
        return sock

    sender, receiver = client("u0", "p0"), client("u1", "p1")
    while len(logic.sessions.online) < 2:
        loop.run_once(0.01)
    for _ in range(20):
        loop.run_once(0.001)
    for sock in (sender, receiver):
        try:
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
    line = json.dumps({"type": "message", "to": "u1", "text": "the quick brown fox jumps over the lazy dog"}).encode()
    sent = got = 0
    while sent < messages:
        sender.sendall((line + b"\n") * 50)
        sent += 50
        while got < sent:
            loop.run_once(0.01)
            try:
                got += receiver.recv(1 << 20).count(b"\n")
            except BlockingIOError:
                pass
        if on and sent % 1000 == 0:
            render()
    if logic.counts.messages_relayed != messages:
        raise RuntimeError(f"{logic.counts.messages_relayed} of {messages} relayed")


def instructions(messages: int, on: bool) -> int:
    """The instructions of a whole run of the driver, as callgrind counts them."""
    with tempfile.TemporaryDirectory(prefix="chat-cg-") as scratch:
        out = os.path.join(scratch, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-B", "-m",
                        "tests.bench.metrics", "--driver", str(messages), "on" if on else "off"],
                       cwd=ROOT, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT))
        with open(out) as counts:
            for line in counts:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind's output")


def part_instructions(base: int = 1_000, more: int = 6_000) -> None:
    """Instructions per relayed message (callgrind: the same on a busy machine as on a quiet one), metrics off
    and on: the difference of two runs of the in-process driver, ``more`` and ``base`` messages."""
    if shutil.which("valgrind") is None:
        print("\n(no valgrind: instructions per relayed message not measured)")
        return
    figures = {}
    for on in (False, True):
        figures[on] = (instructions(more, on) - instructions(base, on)) / (more - base)
        print(f"  instructions, metrics {'on' if on else 'off'}: {figures[on]:,.0f} a message", file=sys.stderr,
              flush=True)
    print(f"\ninstructions per relayed message (callgrind, server and its two clients in one process): metrics off "
          f"{figures[False]:,.0f}, on {figures[True]:,.0f} (turns timed, a scrape per 1,000 messages): relay with "
          f"metrics on {figures[False] / figures[True]:.1%} of off; goal >= {GOAL:.0%}: "
          f"{'ok' if figures[False] / figures[True] >= GOAL else 'MISS'}")


SCRAPER = """
import sys, time, urllib.request
while True:
    urllib.request.urlopen(sys.argv[1], timeout=10).read()
    time.sleep(float(sys.argv[2]))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.metrics", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of off and on (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds each relay is measured (default 5)")
    parser.add_argument("--users", type=int, default=10_000, help="users logged in for the scrapes (default 10,000)")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes in a row (default 200)")
    parser.add_argument("--show-seconds", type=float, default=65.0,
                        help="seconds of the relay whose scrape and rate are shown (default 65: rate[1m] covers it)")
    parser.add_argument("--only", choices=("relay", "show", "scrapes", "instructions"), help="one part alone")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per relayed message under callgrind (slow: minutes)")
    parser.add_argument("--driver", nargs=2, metavar=("MESSAGES", "on|off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:   # (the instructions part runs this under callgrind)
        relay_in_process(int(args.driver[0]), args.driver[1] == "on")
        return 0
    raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="chat-metrics-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, max(args.users, PAIRS_CLIENTS))
        if args.only in (None, "relay"):
            part_relay(workdir, credentials, args.rounds, args.seconds)
        if args.only in (None, "show"):
            part_show(workdir, credentials, args.show_seconds)
        if args.only in (None, "scrapes"):
            part_scrapes(workdir, credentials, args.users, args.scrapes)
        if args.only == "instructions" or args.only is None and args.instructions:
            part_instructions()
    return 0


if __name__ == "__main__":
    sys.exit(main())
