"""The bench runner: ``python -m tests.bench.run [--quick] [--profile] [--only PARTS] [--repeat N]``.

Part A times the reactor beside asyncio in this process (``micro``). Part B
starts each server under test as its own process (``hosts``, or miniircd) and
drives it with load generator processes (``loadgen``) over loopback, one fresh
server per session; by default the server is pinned to the first core and the
generators to the others:

* chat session, 1,000 clients: login storm and RSS, broadcast fan-out;
* peers (``--repeat`` rounds): 500 pairs relaying messages, and latency at a
  fixed offered load, on each peer: the reactor, miniircd (an IRC server on
  ``select``, relaying PRIVMSG), the same chat logic on uvloop, on asyncio
  (both writing once per connection per loop pass, as the reactor does) and
  on threads, and the raw relay (no chat logic) as a ceiling;
* capacity sessions at 5,000 (and 10,000) clients: login storm and RSS;
* timeout session, 1,000 clients: all go idle at once with a short timeout.

Every figure is a median of repeats or of measuring periods; the peers' ratios
are taken within each round, then their median is printed with its spread.
Progress goes to stderr, the table to stdout, plots (PNG) to ``--plots``.
``--profile`` also runs the reactor server under cProfile during the relay
workload and prints where its time goes.

The reactor runs twice, side by side: ``reactor`` on the pure-Python modules
and ``reactor-fast`` on the fast build (``make fast``; left out, with a note,
when there is none); the other hosts run the pure-Python rules. The load
generators run on the fast build when there is one (the same for every host in
a run: the ratios are taken within it). ``--hosts`` picks the hosts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import micro, plots
from .common import (
    machine_cpu_seconds,
    percentile,
    process_cpu_seconds,
    raise_open_files_limit,
    rss_kib,
    write_accounts,
)
from .loadgen import GeneratorError, LoadGenerators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT_HOSTS = ("reactor", "reactor-fast", "asyncio", "uvloop", "threaded")
PEERS = ("reactor", "reactor-fast", "miniircd", "uvloop", "asyncio", "threaded", "relay")  # the relay comparison
ALL_HOSTS = PEERS
FAST = "reactor-fast"   # the reactor on the fast build: compared with the pure-Python one and with the peers
PARTS = ("micro", "chat", "peers", "capacity", "timeout", "store")  # what --only may pick
LABELS = {"reactor": "reactor", FAST: "fast", "miniircd": "miniircd", "asyncio": "asyncio", "uvloop": "uvloop",
          "threaded": "threaded", "relay": "raw relay"}
PROTOCOL = {"relay": "relay", "miniircd": "irc"}  # the load generator's protocol; "chat" for the others
GENERATOR_BUSY = 0.8         # generator CPU (share of the cores it has) above which it may be what is measured
SESSION_CLIENTS = 1_000
OFFERED_RATE = 5_000         # messages/s in the latency workload
LOGIN_CONCURRENCY = 200      # logins in flight per generator process
# miniircd listens with a backlog of 5: more connects at once than that are dropped and retried by TCP
# after 1, 2, 4... s, so its clients register a few at a time (its login time is not a figure).
IRC_LOGIN_CONCURRENCY = 4
# In the timeout session the server's login deadline is the short idle timeout: a host that needs
# milliseconds per login (presence to everyone online) must not keep 400 logins queued past it.
TIMEOUT_LOGIN_CONCURRENCY = 10
WINDOW = 4                   # messages in flight each way per pair in the throughput workload


@dataclass
class Settings:
    quick: bool
    generators: int = 2
    repeat: int = 3                    # rounds of the peers comparison
    pin: bool = True                   # server on the first core, generators on the others
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
        return cls(quick=True, repeat=1, capacities=(1_000, 5_000), threaded_max=1_000, storm_cap=8.0, fanouts=7,
                   latency_warmup=0.5, latency_time=2.0, throughput_warmup=0.5, throughput_periods=5,
                   throughput_period=0.4, idle_timeout=1.0)


# -- processes -----------------------------------------------------------------


def fast_build_current() -> bool:
    """Whether the fast build is there and matches the sources (``make fast``)."""
    from reactor import fastbuild
    return fastbuild.current()


def child_env(build: str | None = None) -> dict:
    """The environment of a server or generator process on ``build`` (REACTOR_BUILD; None: the generators')."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COVERAGE_PROCESS_START", None)  # never measure the bench under coverage
    env["REACTOR_BUILD"] = build or ("fast" if fast_build_current() else "pure")
    return env


def free_port() -> int:
    """A loopback port nobody listens on now (for a server that cannot be told to pick one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_accepting(proc: subprocess.Popen, port: int, within: float) -> bool:
    """Poll until something accepts on ``port`` (True) or ``proc`` exits or time runs out (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` running the child (and every thread it starts) on ``cpus`` only."""
    return None if not cpus else lambda: os.sched_setaffinity(0, cpus)


class Server:
    """One server under test in its own process; its output goes to a log file in ``workdir``.

    ``kind`` is one of ``hosts.KINDS``, or ``miniircd`` (the IRC server from the bench dependencies,
    listening on loopback only, no daemon, no log file, no channel state).
    """

    def __init__(self, kind: str, workdir: str, credentials: str, *, timeout: float = 600.0,
                 profile: str | None = None, cpus: set[int] | None = None, options: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.turn_stats: str | None = None   # the reactor host's loop turn figures, one JSON line per period
        self.log_path = os.path.join(workdir, f"{kind}-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "wb")
        if kind == "miniircd":
            self._start_miniircd(cpus)
        else:
            command = [sys.executable, "-m", "tests.bench.hosts", kind, "--credentials", credentials,
                       "--timeout", str(timeout)]
            if profile:
                command += ["--profile", profile]
            command += options
            if kind in ("reactor", FAST):
                self.turn_stats = os.path.join(workdir, f"turns-{time.monotonic_ns()}.jsonl")
                command += ["--turn-stats", self.turn_stats]
            self.proc = subprocess.Popen(command, cwd=ROOT, env=child_env("fast" if kind == FAST else "pure"),
                                         stdout=subprocess.PIPE,
                                         stderr=self._log, preexec_fn=pinned(cpus))
            ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)
            line = self.proc.stdout.readline().decode() if ready else ""
            if not line.startswith("listening "):
                self.stop()
                raise RuntimeError(f"{kind} host did not start: {line!r}\n{self.log_tail()}")
            self.port = int(line.split()[1])
        self.pid = self.proc.pid

    def _start_miniircd(self, cpus: set[int] | None) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "miniircd", "--listen", "127.0.0.1", "--ports", str(self.port)]
        if os.getuid() == 0:
            command += ["--setuid", "root"]  # it refuses to run as root without saying so
        self.proc = subprocess.Popen(command, cwd=ROOT, env=child_env("pure"), stdout=self._log, stderr=self._log,
                                     preexec_fn=pinned(cpus))
        if not wait_accepting(self.proc, self.port, 15.0):
            self.stop()
            raise RuntimeError(f"miniircd did not start (is it installed? make bench installs it)\n"
                               f"{self.log_tail()}")

    def rss(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def settled_rss(self, within: float = 10.0) -> int:
        """The RSS (KiB) once the server is idle: no CPU time used for 0.3 s (the storm's last frames sent and
        freed), and the same reading twice in a row; or the last reading after ``within`` s."""
        deadline = time.monotonic() + within
        cpu, rss = self.cpu_seconds(), self.rss()
        while True:
            time.sleep(0.3)
            cpu_now, rss_now = self.cpu_seconds(), self.rss()
            if (cpu_now == cpu and rss_now == rss) or time.monotonic() > deadline:
                return rss_now
            cpu, rss = cpu_now, rss_now

    def measuring(self, on: bool) -> None:
        """Begin (SIGUSR1) or end (SIGUSR2) a measured period of the reactor host: its profiler, if started
        with ``profile``, runs during it, and its loop's turns are measured (``turns``)."""
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)
        time.sleep(0.05)  # the host takes the signal on its next loop iteration

    def turns(self) -> dict | None:
        """The loop turn figures of the last measured period (``reactor.loop.TurnStats.summary``), if any."""
        if self.turn_stats is None or not os.path.exists(self.turn_stats):
            return None
        with open(self.turn_stats) as lines:
            last = lines.read().splitlines()[-1:]
        return json.loads(last[0]) if last else None

    def log_tail(self, lines: int = 15) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def stop(self) -> str | None:
        """SIGTERM (the reactor host writes its profile then), SIGKILL if it lingers.

        Returns what was unclean about the ending, if anything: an exit status other than 0 (miniircd
        has no SIGTERM handler: its ending by the signal is its clean ending), or lines in its log.
        """
        trouble = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                trouble.append("did not stop within 10 s of SIGTERM")
        clean = (0, -signal.SIGTERM) if self.kind == "miniircd" else (0,)
        if self.proc.returncode not in clean:
            trouble.append(f"exit status {self.proc.returncode}")
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        with open(self.log_path, errors="replace") as log:
            lines = log.read().splitlines()
        if lines:
            trouble.append(f"{len(lines)} lines in its log, the last: {lines[-1][:160]!r}")
        return "; ".join(trouble) or None


@dataclass
class Bench:
    settings: Settings
    workdir: str
    credentials: str
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # figure -> host -> value
    notes: list[str] = field(default_factory=list)
    rounds: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # the peers' rounds, as ``figures``
    spread: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # figure -> host -> (min, max)
    ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # figure -> host -> one per round
    fast_ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # the same, of the fast build
    hosts: tuple[str, ...] = ALL_HOSTS   # the hosts this run measures (--hosts)
    samples: dict[str, list[float]] = field(default_factory=dict)  # host -> latency samples (s), all rounds
    turn_bands: dict[str, list[dict]] = field(default_factory=dict)  # host -> its loop turn figures, per latency run
    started: float = field(default_factory=time.monotonic)
    in_round: bool = False

    def of(self, kinds: tuple[str, ...]) -> list[str]:
        """Those of ``kinds`` this run measures."""
        return [kind for kind in kinds if kind in self.hosts]

    def put(self, figure: str, host: str, value: Any) -> None:
        target = self.rounds[-1] if self.in_round else self.figures
        target.setdefault(figure, {})[host] = value

    def say(self, text: str) -> None:
        """Progress, on stderr: the table alone goes to stdout."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def cpus(self) -> tuple[set[int] | None, set[int] | None]:
        """(server's, generators') cores when pinning: the first core for the server, the rest for the generators."""
        cores = sorted(os.sched_getaffinity(0))
        if not self.settings.pin or len(cores) < 2:
            return None, None
        return {cores[0]}, set(cores[1:])

    def session(self, kind: str, clients: int, body: Callable[[Server, LoadGenerators], None], *,
                title: str, timeout: float = 600.0, profile: str | None = None,
                server_options: tuple[str, ...] = ()) -> None:
        """A fresh server of ``kind`` and generators for ``clients`` users; ``body`` runs the workloads."""
        started = time.monotonic()
        self.say(f"start: {title}")
        server_cpus, generator_cpus = self.cpus()
        server = Server(kind, self.workdir, self.credentials, timeout=timeout, profile=profile, cpus=server_cpus,
                        options=server_options)
        generators = None
        outcome = "done"
        try:
            generators = LoadGenerators(self.settings.generators, server.port, clients,
                                        protocol=PROTOCOL.get(kind, "chat"), cpus=generator_cpus,
                                        cwd=ROOT, env=child_env())
            body(server, generators)
        except (GeneratorError, RuntimeError) as exc:
            self.notes.append(f"{LABELS[kind]}, {clients} clients: failed: {exc}")
            outcome = "FAILED"
            tail = server.log_tail().strip()
            self.say(f"failed: {title}: {exc}" + (f"\n{tail}" if tail else ""))
        finally:
            trouble = server.stop()  # first, so the server side holds the TIME_WAITs, not the client ports
            if trouble:
                self.notes.append(f"{LABELS[kind]} host did not end cleanly ({title}): {trouble}")
            if generators is not None:
                generators.close()
            self.say(f"{outcome}: {title} ({time.monotonic() - started:.1f}s)")

    # -- workloads -----------------------------------------------------

    def login_storm(self, server: Server, gens: LoadGenerators, clients: int, cap: float, *,
                    concurrency: int = LOGIN_CONCURRENCY) -> dict:
        """Log ``clients`` in at once; the time until all are welcomed and until every presence notice is in."""
        before = server.rss()
        cpu_before, gen_before, machine_before = server.cpu_seconds(), sum(gens.cpu_seconds()), machine_cpu_seconds()
        replies = gens.command("login", wait=cap + 30.0, concurrency=concurrency, within=cap)
        ok = sum(r["ok"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        start = min(r["first"] for r in replies)
        welcomed = max(r["last"] for r in replies) - start
        result = {"ok": ok, "failed": failed, "welcomed_s": welcomed, "settled_s": None, "rss_before": before,
                  "errors": [e for r in replies for e in r["errors"]][:3]}
        if server.kind in PROTOCOL:  # no presence notices to wait for
            return result
        expected = ok * (ok - 1) // 2  # everyone hears of everyone who logged in after them
        deadline = start + cap
        last_count, last_change = -1, time.monotonic()
        while True:
            count = sum(r["lines"] for r in gens.command("lines"))
            now = time.monotonic()
            if count >= expected:
                result["settled_s"] = now - start
                # who did the work: on a machine with fewer cores than processes, the sum is what bounds the time
                result["server_cpu_s"] = server.cpu_seconds() - cpu_before
                result["generators_cpu_s"] = sum(gens.cpu_seconds()) - gen_before
                # the rest of the machine's busy time: the kernel's loopback work, and any other process
                # (on a shared machine, the storm's time may be theirs)
                result["other_cpu_s"] = (machine_cpu_seconds() - machine_before - result["server_cpu_s"]
                                         - result["generators_cpu_s"])
                break
            if count != last_count:
                last_count, last_change = count, now
            if now > deadline or now - last_change > 3.0:
                result["presence"] = f"{count} of {expected} presence notices"
                break
            time.sleep(0.02)
        result["rss_after"] = server.settled_rss()
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
            self.put(f"login storm @{tag}: server CPU (s)", kind, storm["server_cpu_s"])
            self.put(f"login storm @{tag}: generators' CPU (s)", kind, storm["generators_cpu_s"])
            self.put(f"login storm @{tag}: other CPU (s)", kind, storm["other_cpu_s"])
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
        if server.turn_stats:
            server.measuring(True)
        replies = gens.command("latency", rate=OFFERED_RATE / len(gens.pids), warmup=s.latency_warmup,
                               duration=s.latency_time)
        if server.turn_stats:
            server.measuring(False)
            turns = server.turns()
            if turns:
                self.put("longest loop turn @5k msg/s, 1k clients (ms)", server.kind, turns["max_ms"])
                self.put("longest loop turn @5k msg/s, 1k clients: CPU (ms)", server.kind, turns["max_cpu_ms"])
                self.turn_bands.setdefault(server.kind, []).append(turns)
        samples = sorted(x for r in replies for x in r["samples"])
        self.samples.setdefault(server.kind, []).extend(samples)
        lost = sum(r["sent"] - r["received"] for r in replies)
        if lost:
            self.notes.append(f"{LABELS[server.kind]}: {lost} latency messages not delivered")
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
            self.put(f"latency @5k msg/s, 1k clients: {name} (ms)", server.kind, percentile(samples, q) * 1e3)

    def throughput(self, server: Server, gens: LoadGenerators) -> None:
        s = self.settings
        cpu_before, gen_before, started = server.cpu_seconds(), gens.cpu_seconds(), time.monotonic()
        replies = gens.command("throughput", window=WINDOW, warmup=s.throughput_warmup,
                               periods=s.throughput_periods, period=s.throughput_period)
        wall = time.monotonic() - started
        cpu = (server.cpu_seconds() - cpu_before) / wall
        gen_cpu = sum(after - before for before, after in zip(gen_before, gens.cpu_seconds(), strict=True)) / wall
        _, generator_cpus = self.cpus()
        gen_cores = min(len(gens.pids), len(generator_cpus) if generator_cpus else os.cpu_count() or 1)
        rates = [sum(period) for period in zip(*(r["rates"] for r in replies), strict=False)]
        if not all(r["drained"] for r in replies):
            self.notes.append(f"{LABELS[server.kind]}: relay workload did not drain")
        rate = sorted(rates)[len(rates) // 2]
        self.put("relay throughput, 500 pairs (msg/s)", server.kind, rate)
        self.put("server CPU during relay (%)", server.kind, cpu * 100)
        if cpu > 0:  # what a core buys, whatever share of one the server got on a busy machine
            self.put("relay per server CPU-second (msg)", server.kind, rate / cpu)
        self.put("generator CPU during relay (% of its cores)", server.kind, gen_cpu / gen_cores * 100)
        if gen_cpu / gen_cores > GENERATOR_BUSY:
            self.notes.append(f"{LABELS[server.kind]}: the load generators used {gen_cpu * 100:.0f}% of a core "
                              f"({gen_cores} core(s) for {len(gens.pids)} processes): the figure may be the "
                              f"generator's; try --generators N (and --no-pin)")

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
        self.session(kind, SESSION_CLIENTS, body, title=f"{LABELS[kind]}, {SESSION_CLIENTS} clients: login storm, "
                                                        f"fan-out")

    def peer_session(self, kind: str, round_no: int) -> None:
        """One peer in one round: 1,000 clients log in (register, pair up), then latency and relay throughput."""
        concurrency = IRC_LOGIN_CONCURRENCY if PROTOCOL.get(kind) == "irc" else LOGIN_CONCURRENCY

        def body(server: Server, gens: LoadGenerators) -> None:
            storm = self.login_storm(server, gens, SESSION_CLIENTS, 60.0, concurrency=concurrency)
            if storm["ok"] < SESSION_CLIENTS:
                raise RuntimeError(f"only {storm['ok']} of {SESSION_CLIENTS} in: {storm['errors']}")
            self.latency(server, gens)
            self.throughput(server, gens)
        self.session(kind, SESSION_CLIENTS, body, title=f"peers round {round_no} of {self.settings.repeat}: "
                                                        f"{LABELS[kind]}, 500 pairs: latency, relay")

    def peers(self) -> None:
        """``repeat`` rounds of every peer; then medians with their spread, and the ratios taken in each round."""
        self.in_round = True
        for round_no in range(1, self.settings.repeat + 1):
            self.rounds.append({})
            for kind in PEERS:
                if kind in self.hosts:
                    self.peer_session(kind, round_no)
        self.in_round = False
        for figure in {f for one in self.rounds for f in one}:
            row = next((r for r in rows_for(self) if r.figure == figure), Row(figure))
            for host in PEERS:
                values = [one[figure][host] for one in self.rounds if host in one.get(figure, {})]
                if not values:
                    continue
                self.put(figure, host, statistics.median(values))
                self.spread.setdefault(figure, {})[host] = (min(values), max(values))
                for ours, ratios in (("reactor", self.ratios), (FAST, self.fast_ratios)):
                    if host == ours:
                        continue
                    per_round = [advantage(row, one[figure].get(ours), one[figure].get(host))
                                 for one in self.rounds if figure in one]
                    per_round = [r for r in per_round if r is not None]
                    if per_round:
                        ratios.setdefault(figure, {})[host] = per_round

    def capacity_session(self, kind: str, clients: int) -> None:
        def body(server: Server, gens: LoadGenerators) -> None:
            self.record_capacity(kind, clients, self.login_storm(server, gens, clients, self.settings.storm_cap))
        self.session(kind, clients, body, title=f"{LABELS[kind]}, {clients} clients: login storm "
                                                f"(cut off after {self.settings.storm_cap:.0f}s)")

    def timeout_session(self, kind: str) -> None:
        timeout = self.settings.idle_timeout

        def body(server: Server, gens: LoadGenerators) -> None:
            gens.command("keepalive", period=timeout / 3)  # nobody times out while the others log in
            storm = self.login_storm(server, gens, SESSION_CLIENTS, 120.0, concurrency=TIMEOUT_LOGIN_CONCURRENCY)
            if storm["ok"] < SESSION_CLIENTS:
                raise RuntimeError(f"only {storm['ok']} of {SESSION_CLIENTS} logged in: {storm['errors']}")
            self.idle_timeout(server, gens, timeout)
        self.session(kind, SESSION_CLIENTS, body, timeout=timeout,
                     title=f"{LABELS[kind]}, {SESSION_CLIENTS} clients idle at once, timeout {timeout:g}s")

    def profile_sessions(self) -> list[tuple[str, str]]:
        """The reactor server under cProfile: (title, stats file) for the relay and the timeout workloads.

        The login storm before each is not profiled: the server profiles only between SIGUSR1 and SIGUSR2.
        """
        s = self.settings
        relay_path = os.path.join(self.workdir, "reactor-relay.prof")

        def relay(server: Server, gens: LoadGenerators) -> None:
            self.login_storm(server, gens, SESSION_CLIENTS, 120.0)
            server.measuring(True)
            replies = gens.command("throughput", window=WINDOW, warmup=s.throughput_warmup,
                                   periods=s.throughput_periods, period=s.throughput_period)
            server.measuring(False)
            rates = sorted(sum(period) for period in zip(*(r["rates"] for r in replies), strict=False))
            self.notes.append(f"reactor relay under the profiler: {rates[len(rates) // 2]:,.0f} msg/s")
        self.session("reactor", SESSION_CLIENTS, relay, profile=relay_path,
                     title="reactor under cProfile: relay workload")

        timeout_path = os.path.join(self.workdir, "reactor-timeout.prof")

        def timeout(server: Server, gens: LoadGenerators) -> None:
            gens.command("keepalive", period=s.idle_timeout / 3)
            self.login_storm(server, gens, SESSION_CLIENTS, 120.0, concurrency=TIMEOUT_LOGIN_CONCURRENCY)
            server.measuring(True)
            replies = gens.command("idle_timeout", wait=s.idle_timeout + 60.0, timeout=s.idle_timeout,
                                   within=s.idle_timeout + 30.0)
            server.measuring(False)
            late = sorted(x for r in replies for x in r["late"])
            if late:
                self.notes.append(f"reactor timeouts under the profiler: median {percentile(late, 0.5) * 1e3:.0f} ms"
                                  f" late, last {late[-1] * 1e3:.0f} ms late")
        self.session("reactor", SESSION_CLIENTS, timeout, timeout=s.idle_timeout, profile=timeout_path,
                     title="reactor under cProfile: 1,000 idle timeouts at once")
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
            Row(f"login storm @{tag}: server CPU (s)"),
            Row(f"login storm @{tag}: generators' CPU (s)"),
            Row(f"login storm @{tag}: other CPU (s)"),
            Row(f"RSS per idle client @{tag} (KiB)", "<= 8", check=lambda v: v <= 8),
        ]
    rows += [
        Row("relay throughput, 500 pairs (msg/s)", ">= 50,000", True, lambda v: v >= 50_000,
            {"asyncio": 1.5, "threaded": 3.0, "relay": 0.5}),
        Row("server CPU during relay (%)"),
        Row("relay per server CPU-second (msg)", higher_is_better=True),
        Row("generator CPU during relay (% of its cores)"),
        Row("latency @5k msg/s, 1k clients: p50 (ms)"),
        Row("latency @5k msg/s, 1k clients: p99 (ms)", "<= 2", check=lambda v: v <= 2),
        Row("latency @5k msg/s, 1k clients: p99.9 (ms)"),
        Row("longest loop turn @5k msg/s, 1k clients (ms)", "<= 5", check=lambda v: v <= 5),
        Row("longest loop turn @5k msg/s, 1k clients: CPU (ms)", "<= 5", check=lambda v: v <= 5),
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
    hosts = bench.of(ALL_HOSTS)
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
            per_round = bench.ratios.get(row.figure, {}).get(host)
            adv = statistics.median(per_round) if per_round else advantage(row, ours, values.get(host))
            text = "-" if adv is None else f"{adv:.2f}x"
            wanted = row.ratio_goals.get(host)
            if adv is not None and wanted is not None:
                text += f" {'ok' if adv >= wanted else 'MISS'}>={wanted:g}"
            ratios.append(f"{text:>15}")
        print(f"{row.figure:<50} {row.goal:>10} {met:>4} " + " ".join(f"{fmt(values.get(h)):>10}" for h in hosts)
              + " | " + " ".join(ratios))
    print("ratios: how many times better the reactor is (rates: ours/theirs; times and memory: theirs/ours);"
          " '>=x' is the goal")
    if bench.rounds:
        print(f"relay, latency and CPU rows: medians of {len(bench.rounds)} round(s), their ratios the median of the"
              f" ratios taken within each round")


def print_peers(bench: Bench) -> None:
    """The relay comparison: each peer's median with its spread, and the reactor's advantage in each round."""
    figure = "relay throughput, 500 pairs (msg/s)"
    values = bench.figures.get(figure)
    if not values:
        return
    rounds = len(bench.rounds)
    print(f"\nrelay, 500 pairs, {WINDOW} messages in flight each way per pair, {rounds} round(s): "
          f"median [min-max]; 'reactor is' = median of the ratios within each round [min-max]")
    head = (f"{'peer':<10} {'msg/s':>10} {'[min-max]':>21} {'reactor is':>10} {'[min-max]':>15} {'fast is':>8} "
            f"{'[min-max]':>15} {'server CPU':>10} {'msg/CPU-s':>10} {'reactor is':>10} {'fast is':>8} {'gen CPU':>8} "
            f"{'p99 ms':>8}")
    print(head)
    print("-" * len(head))
    for host in PEERS:
        if host not in values:
            continue
        low, high = bench.spread.get(figure, {}).get(host, (values[host], values[host]))
        per_round = bench.ratios.get(figure, {}).get(host)
        ratio = f"{statistics.median(per_round):.2f}x" if per_round else "-"
        ratio_spread = f"[{min(per_round):.2f}-{max(per_round):.2f}]" if per_round else ""
        cpu = bench.figures.get("server CPU during relay (%)", {}).get(host)
        gen = bench.figures.get("generator CPU during relay (% of its cores)", {}).get(host)
        p99 = bench.figures.get("latency @5k msg/s, 1k clients: p99 (ms)", {}).get(host)
        per_cpu = bench.figures.get("relay per server CPU-second (msg)", {}).get(host)
        cpu_ratios = bench.ratios.get("relay per server CPU-second (msg)", {}).get(host)
        cpu_ratio = f"{statistics.median(cpu_ratios):.2f}x" if cpu_ratios else "-"
        fast_round = bench.fast_ratios.get(figure, {}).get(host)
        fast = f"{statistics.median(fast_round):.2f}x" if fast_round else "-"
        fast_spread = f"[{min(fast_round):.2f}-{max(fast_round):.2f}]" if fast_round else ""
        fast_cpu = bench.fast_ratios.get("relay per server CPU-second (msg)", {}).get(host)
        fast_cpu_ratio = f"{statistics.median(fast_cpu):.2f}x" if fast_cpu else "-"
        print(f"{LABELS[host]:<10} {values[host]:>10,.0f} {f'[{low:,.0f}-{high:,.0f}]':>21} {ratio:>10} "
              f"{ratio_spread:>15} {fast:>8} {fast_spread:>15} {fmt(cpu) + '%':>10} {fmt(per_cpu):>10} "
              f"{cpu_ratio:>10} {fast_cpu_ratio:>8} {fmt(gen) + '%':>8} {fmt(p99):>8}")
    print("peers: miniircd 2.3 relays PRIVMSG (IRC, select, no threads); uvloop and asyncio host the same ChatServer"
          " as the reactor, writing once per connection per loop pass; threaded: a thread per connection;"
          " raw relay: bytes forwarded with no chat logic (the ceiling)")


def print_fast(bench: Bench) -> None:
    """The two builds side by side on every figure both have, and the fast build's goals: relay at least 1.5x
    miniircd's (the median of the ratios within each round), and no figure worse than the pure-Python build's."""
    if FAST not in bench.hosts or "reactor" not in bench.hosts:
        return
    rows = {row.figure: row for row in rows_for(bench)}
    print("\nthe two builds: pure Python ('reactor') and compiled ('fast', make fast); 'fast is' = how many times"
          " better (per round for the peers' figures)")
    head = f"{'figure':<52} {'reactor':>10} {'fast':>10} {'fast is':>8}  {'vs miniircd':>11} {'vs uvloop':>10}"
    print(head)
    print("-" * len(head))
    worse = []
    for figure, values in bench.figures.items():
        if not isinstance(values.get("reactor"), (int, float)) or not isinstance(values.get(FAST), (int, float)):
            continue
        row = rows.get(figure, Row(figure))
        per_round = bench.fast_ratios.get(figure, {}).get("reactor")
        gain = statistics.median(per_round) if per_round else advantage(row, values[FAST], values["reactor"])
        if (figure.startswith(("A: ", "generator", "server CPU during", "clients logged in"))
                or "CPU (s)" in figure and "server" not in figure):
            gain_text = "-"   # (not a figure of the server's speed: its share of a core, the generators', a count)
        else:
            gain_text = "-" if gain is None else f"{gain:.2f}x"
            if gain is not None and gain < 0.95:   # (5%: below that, the machine's noise)
                worse.append(f"{figure} ({gain:.2f}x)")
        versus = []
        for peer in ("miniircd", "uvloop"):
            ratios = bench.fast_ratios.get(figure, {}).get(peer)
            adv = statistics.median(ratios) if ratios else advantage(row, values[FAST], values.get(peer))
            versus.append("-" if adv is None else f"{adv:.2f}x")
        print(f"{figure:<52} {fmt(values['reactor']):>10} {fmt(values[FAST]):>10} {gain_text:>8}  {versus[0]:>11} "
              f"{versus[1]:>10}")
    relay = bench.fast_ratios.get("relay throughput, 500 pairs (msg/s)", {}).get("miniircd")
    if relay:
        print(f"goal: fast relay >= 1.5x miniircd: {'ok' if statistics.median(relay) >= 1.5 else 'MISS'} "
              f"(median {statistics.median(relay):.2f}x of {len(relay)} round(s), [{min(relay):.2f}-{max(relay):.2f}])")
    verdict = "ok" if not worse else "MISS: " + "; ".join(worse)
    print(f"goal: fast not below pure Python on any server figure: {verdict}")


def print_turns(bench: Bench) -> None:
    """The reactor loop's turns during each latency run: the longest, and how many fell in each band."""
    for host, runs in bench.turn_bands.items():
        print(f"\n{LABELS[host]} loop turns during the latency workload ({OFFERED_RATE:,} msg/s), per run:")
        for turns in runs:
            bands = ", ".join(f"{label} {count}" for label, count in turns["bands"].items() if count)
            print(f"  {turns['turns']:,} turns, {turns['busy_ms']:,.0f} ms busy, longest {turns['max_ms']:.2f} ms"
                  f" ({turns['max_cpu_ms']:.2f} ms of CPU time); {bands}")


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
    parser.add_argument("--repeat", type=int, metavar="N", help="rounds of the peers comparison (default: 3, quick: 1)")
    parser.add_argument("--hosts", metavar="HOSTS", default=",".join(ALL_HOSTS),
                        help=f"comma-separated subset of {','.join(ALL_HOSTS)} (default: all)")
    parser.add_argument("--generators", type=int, metavar="N", default=2, help="load generator processes (default: 2)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server to the first core and the generators to the others")
    parser.add_argument("--plots", metavar="DIR", default=os.path.join(ROOT, "bench-results"),
                        help="where the PNG plots go (default: bench-results/)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if not only <= set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(only - set(PARTS)))}")
    hosts = tuple(args.hosts.split(","))
    if not set(hosts) <= set(ALL_HOSTS):
        parser.error(f"--hosts: unknown host(s) {', '.join(sorted(set(hosts) - set(ALL_HOSTS)))}")
    fast = fast_build_current()
    raise_open_files_limit()
    settings = Settings.make(args.quick)
    settings.generators, settings.pin = max(1, args.generators), args.pin
    if args.repeat is not None:
        settings.repeat = max(1, args.repeat)
    started = time.monotonic()
    print(f"bench ({'quick' if args.quick else 'full'}): {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}, loopback only; "
          f"{settings.generators} load generator processes; "
          f"{'server pinned to one core, generators to the others' if settings.pin else 'not pinned'}; "
          f"generators on the {'fast' if fast else 'pure-Python'} build; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, max(settings.capacities))
        bench = Bench(settings, workdir, credentials, hosts=hosts if fast else tuple(h for h in hosts if h != FAST))
        if FAST in hosts and not fast:
            bench.notes.append("the fast build was left out: there is none, or it is stale (make fast builds it)")

        if "micro" in only:
            bench.say("start: part A: timers and streams, reactor beside asyncio")
            part_started = time.monotonic()
            figures = micro.run(args.quick)
            for host in ("reactor", "asyncio"):
                bench.put("A: timer schedule+cancel, 100k pending (us/op)", host, figures["timer_us"][host])
                bench.put("A: Stream frames/s, 1 TCP conn, 100k each way", host, figures["stream_fps"][host])
            bench.say(f"done: part A ({time.monotonic() - part_started:.1f}s)")

        if "chat" in only:
            for kind in bench.of(CHAT_HOSTS):
                bench.chat_session(kind)
        if "peers" in only:
            bench.peers()
        if "capacity" in only:
            for clients in settings.capacities[1:]:
                for kind in bench.of(CHAT_HOSTS):
                    if kind == "threaded" and clients > settings.threaded_max:
                        bench.notes.append(f"threaded host skipped at {clients} clients"
                                           f"{' in quick mode' if args.quick else ''}")
                        continue
                    bench.capacity_session(kind, clients)
        if "timeout" in only:
            for kind in bench.of(CHAT_HOSTS):
                bench.timeout_session(kind)
        profiles = bench.profile_sessions() if args.profile else []

        print_table(bench)
        print_peers(bench)
        print_fast(bench)
        print_turns(bench)
        for note in bench.notes:
            print(f"note: {note}")
        written = plots.write(bench, args.plots, LABELS, PEERS)
        if written:
            print(f"plots: {', '.join(os.path.relpath(path) for path in written)}")
        for title, path in profiles:
            print_profile(title, path)
    if "store" in only:
        run_store_bench(args.quick)
    print(f"\nbench took {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
