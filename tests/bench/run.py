"""The bench runner: ``python -m tests.bench.run [--quick] [--profile]`` prints one table of figures.

Part A times the reactor beside asyncio in this process (``micro``). Part B
starts each server under test as its own process (``hosts``) and drives it
with load generator processes (``loadgen``) over loopback, one fresh server
per session:

* chat session, 1,000 clients: login storm and RSS, broadcast fan-out,
  latency at a fixed offered load, then relay throughput;
* capacity sessions at 5,000 (and 10,000) clients: login storm and RSS;
* timeout session, 1,000 clients: all go idle at once with a short timeout;
* the raw relay (no chat logic) gets the throughput and latency workloads.

Every figure is a median of repeats or of measuring periods; ratios come from
runs in this one invocation. ``--profile`` also runs the reactor server under
cProfile during the relay workload and prints where its time goes.
"""
from __future__ import annotations

import argparse
import os
import platform
import pstats
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import micro
from .common import percentile, raise_open_files_limit, rss_kib, write_accounts
from .loadgen import GeneratorError, LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT_HOSTS = ("reactor", "asyncio", "threaded")
ALL_HOSTS = CHAT_HOSTS + ("relay",)
PARTS = ("micro", "chat", "relay", "capacity", "timeout", "store")  # what --only may pick
LABELS = {"reactor": "reactor", "asyncio": "asyncio", "threaded": "threaded", "relay": "raw relay"}
SESSION_CLIENTS = 1_000
OFFERED_RATE = 5_000         # messages/s in the latency workload
LOGIN_CONCURRENCY = 200      # logins in flight per generator process
# In the timeout session the server's login deadline is the short idle timeout: a host that needs
# milliseconds per login (presence to everyone online) must not keep 400 logins queued past it.
TIMEOUT_LOGIN_CONCURRENCY = 10
WINDOW = 4                   # messages in flight each way per pair in the throughput workload


@dataclass
class Settings:
    quick: bool
    generators: int = 2
    capacities: tuple[int, ...] = (1_000, 5_000, 10_000)
    threaded_max: int = 10_000         # the threaded host is skipped above this many clients
    storm_cap: float = 60.0            # seconds a capacity login storm may take before it is cut off
    fanouts: int = 15
    latency_warmup: float = 1.0
    latency_time: float = 5.0
    throughput_warmup: float = 1.0
    throughput_periods: int = 10
    throughput_period: float = 0.5
    idle_timeout: float = 2.0          # the server's inactivity timeout in the timeout session

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if not quick:
            return cls(quick=False)
        return cls(quick=True, capacities=(1_000, 5_000), threaded_max=1_000, storm_cap=8.0, fanouts=7,
                   latency_warmup=0.5, latency_time=2.0, throughput_warmup=0.5, throughput_periods=5,
                   throughput_period=0.4, idle_timeout=1.0)


# -- processes -----------------------------------------------------------------


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COVERAGE_PROCESS_START", None)  # never measure the bench under coverage
    return env


class Server:
    """One server under test in its own process; stderr goes to a log file in ``workdir``."""

    def __init__(self, kind: str, workdir: str, credentials: str, *, timeout: float = 600.0,
                 profile: str | None = None) -> None:
        self.kind = kind
        self.log_path = os.path.join(workdir, f"{kind}-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "tests.bench.hosts", kind, "--credentials", credentials,
                   "--timeout", str(timeout)]
        if profile:
            command += ["--profile", profile]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=self._log)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"{kind} host did not start: {line!r}\n{self.log_tail()}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid

    def rss(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def profiling(self, on: bool) -> None:
        """Start (SIGUSR1) or stop (SIGUSR2) the profiler of a host started with ``profile``."""
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)
        time.sleep(0.05)  # the host takes the signal on its next loop iteration

    def log_tail(self, lines: int = 15) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the reactor host writes its profile then), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


@dataclass
class Bench:
    settings: Settings
    workdir: str
    credentials: str
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # figure -> host -> value
    notes: list[str] = field(default_factory=list)

    def put(self, figure: str, host: str, value: Any) -> None:
        self.figures.setdefault(figure, {})[host] = value

    def say(self, text: str) -> None:
        print(text, flush=True)

    def session(self, kind: str, clients: int, body: Callable[[Server, LoadGenerators], None], *,
                timeout: float = 600.0, profile: str | None = None) -> None:
        """A fresh server of ``kind`` and generators for ``clients`` users; ``body`` runs the workloads."""
        started = time.monotonic()
        server = Server(kind, self.workdir, self.credentials, timeout=timeout, profile=profile)
        generators = None
        try:
            generators = LoadGenerators(self.settings.generators, server.port, clients, relay=kind == "relay",
                                        cwd=ROOT, env=child_env())
            body(server, generators)
        except (GeneratorError, RuntimeError) as exc:
            self.notes.append(f"{kind}, {clients} clients: failed: {exc}")
            self.say(f"  FAILED: {exc}\n{server.log_tail()}")
        finally:
            server.stop()  # first, so the server side holds the TIME_WAITs, not the client ports
            if generators is not None:
                generators.close()
            self.say(f"  ({time.monotonic() - started:.1f}s)")

    # -- workloads -----------------------------------------------------

    def login_storm(self, server: Server, gens: LoadGenerators, clients: int, cap: float, *,
                    concurrency: int = LOGIN_CONCURRENCY) -> dict:
        """Log ``clients`` in at once; the time until all are welcomed and until every presence notice is in."""
        before = server.rss()
        replies = gens.command("login", wait=cap + 30.0, concurrency=concurrency, within=cap)
        ok = sum(r["ok"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        start = min(r["first"] for r in replies)
        welcomed = max(r["last"] for r in replies) - start
        result = {"ok": ok, "failed": failed, "welcomed_s": welcomed, "settled_s": None, "rss_before": before,
                  "errors": [e for r in replies for e in r["errors"]][:3]}
        if server.kind == "relay":
            return result
        expected = ok * (ok - 1) // 2  # everyone hears of everyone who logged in after them
        deadline = start + cap
        last_count, last_change = -1, time.monotonic()
        while True:
            count = sum(r["lines"] for r in gens.command("lines"))
            now = time.monotonic()
            if count >= expected:
                result["settled_s"] = now - start
                break
            if count != last_count:
                last_count, last_change = count, now
            if now > deadline or now - last_change > 3.0:
                result["presence"] = f"{count} of {expected} presence notices"
                break
            time.sleep(0.02)
        time.sleep(0.2)  # let the server finish freeing what the storm used
        result["rss_after"] = server.rss()
        result["rss_per_client_kib"] = (result["rss_after"] - before) / max(ok, 1)
        return result

    def record_capacity(self, kind: str, clients: int, storm: dict) -> None:
        tag = f"{clients // 1000}k"
        if storm["ok"] < clients:
            why = storm["errors"][0] if storm["errors"] else "cut off"
            self.notes.append(f"{LABELS[kind]} @{tag}: {storm['ok']} of {clients} logged in "
                              f"within {self.settings.storm_cap:.0f}s ({why})")
            self.put(f"login storm @{tag}: all welcome (s)", kind, f">{self.settings.storm_cap:.0f} "
                     f"({storm['ok']} in)")
            self.put(f"clients logged in @{tag}", kind, storm["ok"])
            return
        self.put(f"clients logged in @{tag}", kind, storm["ok"])
        self.put(f"login storm @{tag}: all welcome (s)", kind, storm["welcomed_s"])
        if storm.get("settled_s") is not None:
            self.put(f"login storm @{tag}: + all presence (s)", kind, storm["settled_s"])
        else:
            self.notes.append(f"{LABELS[kind]} @{tag}: {storm.get('presence')}")
        self.put(f"RSS per idle client @{tag} (KiB)", kind, storm["rss_per_client_kib"])

    def fanout(self, server: Server, gens: LoadGenerators) -> None:
        times = []
        for k in range(self.settings.fanouts):
            replies = gens.command("fanout", per_worker=[{"send": i == 0} for i in range(len(gens.pids))],
                                   tag=f"fanout {k}", within=10.0)
            seen = sum(r["seen"] for r in replies)
            expected = sum(r["expected"] for r in replies)
            if seen < expected:
                raise RuntimeError(f"broadcast {k}: {seen} of {expected} recipients got it")
            times.append(max(r["last"] for r in replies) - replies[0]["sent_at"])
            time.sleep(0.05)
        self.put("broadcast to 999: last recipient (ms)", server.kind, sorted(times)[len(times) // 2] * 1e3)

    def latency(self, server: Server, gens: LoadGenerators) -> None:
        s = self.settings
        replies = gens.command("latency", rate=OFFERED_RATE / len(gens.pids), warmup=s.latency_warmup,
                               duration=s.latency_time)
        samples = sorted(x for r in replies for x in r["samples"])
        lost = sum(r["sent"] - r["received"] for r in replies)
        if lost:
            self.notes.append(f"{LABELS[server.kind]}: {lost} latency messages not delivered")
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
            self.put(f"latency @5k msg/s, 1k clients: {name} (ms)", server.kind, percentile(samples, q) * 1e3)

    def throughput(self, server: Server, gens: LoadGenerators) -> None:
        s = self.settings
        cpu_before, started = server.cpu_seconds(), time.monotonic()
        replies = gens.command("throughput", window=WINDOW, warmup=s.throughput_warmup,
                               periods=s.throughput_periods, period=s.throughput_period)
        cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        rates = [sum(period) for period in zip(*(r["rates"] for r in replies))]
        if not all(r["drained"] for r in replies):
            self.notes.append(f"{LABELS[server.kind]}: relay workload did not drain")
        self.put("relay throughput, 500 pairs (msg/s)", server.kind, sorted(rates)[len(rates) // 2])
        self.put("server CPU during relay (%)", server.kind, cpu * 100)

    def idle_timeout(self, server: Server, gens: LoadGenerators, timeout: float) -> None:
        replies = gens.command("idle_timeout", wait=timeout + 60.0, timeout=timeout, within=timeout + 30.0)
        late = sorted(x for r in replies for x in r["late"])
        missing = sum(r["missing"] for r in replies)
        if missing:
            self.notes.append(f"{LABELS[server.kind]}: {missing} idle clients never got their timeout")
        if late:
            # the first bye shows the timer itself; the rest wait behind the others' logout presence notices
            self.put("inactivity timeout, 1k at once: first late (ms)", server.kind, late[0] * 1e3)
            self.put("inactivity timeout, 1k at once: median late (ms)", server.kind, percentile(late, 0.5) * 1e3)
            self.put("inactivity timeout, 1k at once: last late (ms)", server.kind, late[-1] * 1e3)

    # -- sessions ------------------------------------------------------

    def chat_session(self, kind: str) -> None:
        def body(server: Server, gens: LoadGenerators) -> None:
            storm = self.login_storm(server, gens, SESSION_CLIENTS, 120.0)
            if storm["ok"] < SESSION_CLIENTS:
                raise RuntimeError(f"only {storm['ok']} of {SESSION_CLIENTS} logged in: {storm['errors']}")
            self.record_capacity(kind, SESSION_CLIENTS, storm)
            self.fanout(server, gens)
            self.latency(server, gens)
            self.throughput(server, gens)
        self.say(f"- {LABELS[kind]}: {SESSION_CLIENTS} clients: login storm, fan-out, latency, throughput")
        self.session(kind, SESSION_CLIENTS, body)

    def relay_session(self) -> None:
        def body(server: Server, gens: LoadGenerators) -> None:
            storm = self.login_storm(server, gens, SESSION_CLIENTS, 60.0)
            if storm["ok"] < SESSION_CLIENTS:
                raise RuntimeError(f"only {storm['ok']} of {SESSION_CLIENTS} paired: {storm['errors']}")
            self.latency(server, gens)
            self.throughput(server, gens)
        self.say(f"- raw relay: {SESSION_CLIENTS} clients: latency, throughput")
        self.session("relay", SESSION_CLIENTS, body)

    def capacity_session(self, kind: str, clients: int) -> None:
        def body(server: Server, gens: LoadGenerators) -> None:
            self.record_capacity(kind, clients, self.login_storm(server, gens, clients, self.settings.storm_cap))
        self.say(f"- {LABELS[kind]}: {clients} clients: login storm (cut off after {self.settings.storm_cap:.0f}s)")
        self.session(kind, clients, body)

    def timeout_session(self, kind: str) -> None:
        timeout = self.settings.idle_timeout

        def body(server: Server, gens: LoadGenerators) -> None:
            gens.command("keepalive", period=timeout / 3)  # nobody times out while the others log in
            storm = self.login_storm(server, gens, SESSION_CLIENTS, 120.0, concurrency=TIMEOUT_LOGIN_CONCURRENCY)
            if storm["ok"] < SESSION_CLIENTS:
                raise RuntimeError(f"only {storm['ok']} of {SESSION_CLIENTS} logged in: {storm['errors']}")
            self.idle_timeout(server, gens, timeout)
        self.say(f"- {LABELS[kind]}: {SESSION_CLIENTS} clients idle at once, timeout {timeout:g}s")
        self.session(kind, SESSION_CLIENTS, body, timeout=timeout)

    def profile_sessions(self) -> list[tuple[str, str]]:
        """The reactor server under cProfile: (title, stats file) for the relay and the timeout workloads.

        The login storm before each is not profiled: the server profiles only between SIGUSR1 and SIGUSR2.
        """
        s = self.settings
        relay_path = os.path.join(self.workdir, "reactor-relay.prof")

        def relay(server: Server, gens: LoadGenerators) -> None:
            self.login_storm(server, gens, SESSION_CLIENTS, 120.0)
            server.profiling(True)
            replies = gens.command("throughput", window=WINDOW, warmup=s.throughput_warmup,
                                   periods=s.throughput_periods, period=s.throughput_period)
            server.profiling(False)
            rates = sorted(sum(period) for period in zip(*(r["rates"] for r in replies)))
            self.say(f"  under the profiler: {rates[len(rates) // 2]:,.0f} msg/s")
        self.say("- reactor under cProfile: relay workload")
        self.session("reactor", SESSION_CLIENTS, relay, profile=relay_path)

        timeout_path = os.path.join(self.workdir, "reactor-timeout.prof")

        def timeout(server: Server, gens: LoadGenerators) -> None:
            gens.command("keepalive", period=s.idle_timeout / 3)
            self.login_storm(server, gens, SESSION_CLIENTS, 120.0, concurrency=TIMEOUT_LOGIN_CONCURRENCY)
            server.profiling(True)
            replies = gens.command("idle_timeout", wait=s.idle_timeout + 60.0, timeout=s.idle_timeout,
                                   within=s.idle_timeout + 30.0)
            server.profiling(False)
            late = sorted(x for r in replies for x in r["late"])
            if late:
                self.say(f"  under the profiler: median {percentile(late, 0.5) * 1e3:.0f} ms late, "
                         f"last {late[-1] * 1e3:.0f} ms late")
        self.say("- reactor under cProfile: 1,000 idle timeouts at once")
        self.session("reactor", SESSION_CLIENTS, timeout, timeout=s.idle_timeout, profile=timeout_path)
        return [("relay workload", relay_path), ("1,000 simultaneous idle timeouts", timeout_path)]


# -- the table -----------------------------------------------------------------

@dataclass
class Row:
    figure: str
    goal: str = ""
    higher_is_better: bool = False
    check: Callable[[float], bool] | None = None  # is the reactor's figure within the goal?
    ratio_goals: dict[str, float] = field(default_factory=dict)  # host -> the advantage the reactor must have


def rows_for(bench: Bench) -> list[Row]:
    s = bench.settings
    rows = [
        Row("A: timer schedule+cancel, 100k pending (us/op)"),
        Row("A: Stream frames/s, 1 TCP conn, 100k each way", higher_is_better=True),
    ]
    for clients in s.capacities:
        tag = f"{clients // 1000}k"
        if clients == 10_000:
            rows.append(Row(f"clients logged in @{tag}", "10,000", True, lambda v: v >= 10_000))
        rows += [
            Row(f"login storm @{tag}: all welcome (s)"),
            Row(f"login storm @{tag}: + all presence (s)"),
            Row(f"RSS per idle client @{tag} (KiB)", "<= 8", check=lambda v: v <= 8),
        ]
    rows += [
        Row("relay throughput, 500 pairs (msg/s)", ">= 50,000", True, lambda v: v >= 50_000,
            {"asyncio": 1.5, "threaded": 3.0, "relay": 0.5}),
        Row("server CPU during relay (%)"),
        Row("latency @5k msg/s, 1k clients: p50 (ms)"),
        Row("latency @5k msg/s, 1k clients: p99 (ms)", "<= 2", check=lambda v: v <= 2),
        Row("latency @5k msg/s, 1k clients: p99.9 (ms)"),
        Row("broadcast to 999: last recipient (ms)", "<= 20", check=lambda v: v <= 20),
        Row("inactivity timeout, 1k at once: first late (ms)"),
        Row("inactivity timeout, 1k at once: median late (ms)"),
        Row("inactivity timeout, 1k at once: last late (ms)", "<= 50", check=lambda v: v <= 50),
    ]
    return rows


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def advantage(row: Row, ours: Any, theirs: Any) -> float | None:
    """How many times better the reactor's figure is (> 1: ours is better)."""
    if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)) or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if row.higher_is_better else theirs / ours


def print_table(bench: Bench) -> None:
    hosts = list(ALL_HOSTS)
    others = [h for h in hosts if h != "reactor"]
    head = (f"{'figure':<50} {'goal':>10} {'met':>4} " + " ".join(f"{LABELS[h]:>10}" for h in hosts) + " | "
            + " ".join(f"{'vs ' + LABELS[h]:>15}" for h in others))
    print()
    print(head)
    print("-" * len(head))
    for row in rows_for(bench):
        values = bench.figures.get(row.figure)
        if not values:
            continue
        ours = values.get("reactor")
        met = ""
        if row.check is not None and isinstance(ours, (int, float)):
            met = "ok" if row.check(ours) else "MISS"
        ratios = []
        for host in others:
            adv = advantage(row, ours, values.get(host))
            text = "-" if adv is None else f"{adv:.2f}x"
            wanted = row.ratio_goals.get(host)
            if adv is not None and wanted is not None:
                text += f" {'ok' if adv >= wanted else 'MISS'}>={wanted:g}"
            ratios.append(f"{text:>15}")
        print(f"{row.figure:<50} {row.goal:>10} {met:>4} " + " ".join(f"{fmt(values.get(h)):>10}" for h in hosts)
              + " | " + " ".join(ratios))
    print("ratios: how many times better the reactor is (rates: ours/theirs; times and memory: theirs/ours);"
          " '>=x' is the goal")


def print_profile(title: str, path: str) -> None:
    print(f"\nreactor server, {title}, cProfile, top functions by own time:")
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(22)


def run_store_bench(quick: bool) -> None:
    try:
        from . import store_bench
    except ImportError:
        return
    print("\nstore (tests/bench/store_bench.py):")
    try:
        figures = store_bench.run(quick)
    except Exception as exc:  # another engineer's bench: report, do not stop the table
        print(f"  failed: {type(exc).__name__}: {exc}")
        return
    for name, value in figures.items():
        if isinstance(value, dict):
            for key, entry in value.items():
                print(f"  {name} {key}: {entry}")
        elif isinstance(value, list):
            for entry in value:
                print(f"  {name}: {entry}")
        else:
            print(f"  {name}: {value}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (under 90 s)")
    parser.add_argument("--profile", action="store_true", help="also profile the reactor server under load")
    parser.add_argument("--only", metavar="PARTS", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if not only <= set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(only - set(PARTS)))}")
    raise_open_files_limit()
    settings = Settings.make(args.quick)
    started = time.monotonic()
    print(f"bench ({'quick' if args.quick else 'full'}): {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}, loopback only", flush=True)
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, max(settings.capacities))
        bench = Bench(settings, workdir, credentials)

        if "micro" in only:
            bench.say("- part A: timers and streams, reactor beside asyncio")
            part_started = time.monotonic()
            figures = micro.run(args.quick)
            for host in ("reactor", "asyncio"):
                bench.put("A: timer schedule+cancel, 100k pending (us/op)", host, figures["timer_us"][host])
                bench.put("A: Stream frames/s, 1 TCP conn, 100k each way", host, figures["stream_fps"][host])
            bench.say(f"  ({time.monotonic() - part_started:.1f}s)")

        if "chat" in only:
            for kind in CHAT_HOSTS:
                bench.chat_session(kind)
        if "relay" in only:
            bench.relay_session()
        if "capacity" in only:
            for clients in settings.capacities[1:]:
                for kind in CHAT_HOSTS:
                    if kind == "threaded" and clients > settings.threaded_max:
                        bench.notes.append(f"threaded host skipped at {clients} clients"
                                           f"{' in quick mode' if args.quick else ''}")
                        continue
                    bench.capacity_session(kind, clients)
        if "timeout" in only:
            for kind in CHAT_HOSTS:
                bench.timeout_session(kind)
        profiles = bench.profile_sessions() if args.profile else []

        print_table(bench)
        for note in bench.notes:
            print(f"note: {note}")
        for title, path in profiles:
            print_profile(title, path)
    if "store" in only:
        run_store_bench(args.quick)
    print(f"\nbench took {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
