"""The reactor's hot-path figures alone, fast: ``python -m tests.bench.hot [--storms 1000,5000,10000]``.

What ``tests.bench.run`` measures for the reactor host (login storms and RSS,
latency, relay throughput, 1,000 idle timeouts at once), without the other
hosts, for before/after comparisons while working on the hot paths.
``--parts profile`` runs the relay workload under cProfile and prints the top entries;
``--profile-storm N`` runs a storm of N logins under cProfile (figures taken under the
profiler are slower: only the shares count). Storms may be as big as the open-files
limit allows (the server holds one file per client): 50,000 needs a hard limit above
that, which ``raise_open_files_limit`` sets where the process may (CAP_SYS_RESOURCE).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tracemalloc

from .common import raise_open_files_limit, write_accounts
from .run import SESSION_CLIENTS, TIMEOUT_LOGIN_CONCURRENCY, Bench, Settings, print_profile, print_turns

FILES_BESIDES_CLIENTS = 64   # the server's listener, selector, log, signal socket pair...


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hot")
    parser.add_argument("--storms", default="1000,5000,10000", help="login storm sizes (first: the chat session)")
    parser.add_argument("--parts", default="chat,storms,timeout", help="chat,storms,timeout,profile")
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds a storm may take before it is cut off")
    parser.add_argument("--profile-storm", type=int, metavar="N", help="a storm of N logins under cProfile")
    parser.add_argument("--memory", type=int, metavar="N",
                        help="a storm of N logins with the server under tracemalloc: its top allocations by line")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    storms = [int(n) for n in args.storms.split(",")]
    limit = raise_open_files_limit()
    too_big = [n for n in storms + [args.profile_storm or 0, args.memory or 0] if n + FILES_BESIDES_CLIENTS > limit]
    if too_big:
        parser.error(f"storms of {too_big} clients need more open files than the limit, {limit:,} "
                     f"(raising the hard limit needs CAP_SYS_RESOURCE)")
    settings = Settings.make(quick=True)
    settings.generators = args.generators
    settings.storm_cap = args.cap
    with tempfile.TemporaryDirectory(prefix="chat-hot-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, max(storms + [SESSION_CLIENTS]))
        bench = Bench(settings, workdir, credentials)
        if "chat" in parts:
            def chat(server, gens):
                capacity = bench.login_storm(server, gens, SESSION_CLIENTS, 60.0)
                bench.record_capacity("reactor", SESSION_CLIENTS, capacity)
                bench.latency(server, gens)
                bench.throughput(server, gens)
            bench.say("- chat session")
            bench.session("reactor", SESSION_CLIENTS, chat, title="chat session")
        if "storms" in parts:
            for clients in storms:
                bench.say(f"- storm {clients}")
                bench.session("reactor", clients, lambda server, gens, n=clients: bench.record_capacity(
                    "reactor", n, bench.login_storm(server, gens, n, settings.storm_cap)), title=f"storm {clients}")
        if "timeout" in parts:
            def idle(server, gens):
                gens.command("keepalive", period=settings.idle_timeout / 3)
                bench.login_storm(server, gens, SESSION_CLIENTS, 120.0, concurrency=TIMEOUT_LOGIN_CONCURRENCY)
                bench.idle_timeout(server, gens, settings.idle_timeout)
            bench.say("- timeout session")
            bench.session("reactor", SESSION_CLIENTS, idle, timeout=settings.idle_timeout, title="timeout session")
        profiles = []
        if "profile" in parts:
            profiles = bench.profile_sessions()[:1]
        if args.profile_storm:
            profiles.append(profile_storm(bench, args.profile_storm))
        for figure, values in bench.figures.items():
            value = values.get("reactor")
            print(f"{figure:<50} {value:,.3f}" if isinstance(value, (int, float)) else f"{figure:<50} {value}")
        print_turns(bench)
        for note in bench.notes:
            print(f"note: {note}")
        for title, path in profiles:
            print_profile(title, path)
        if args.memory:
            print_memory(bench, args.memory)
    return 0


def profile_storm(bench: Bench, clients: int) -> tuple[str, str]:
    """A login storm of ``clients``, all presence told, with the server under cProfile: (title, stats file)."""
    path = os.path.join(bench.workdir, "reactor-storm.prof")
    title = f"login storm of {clients:,}"

    def storm(server, gens):
        server.measuring(True)
        result = bench.login_storm(server, gens, clients, bench.settings.storm_cap)
        server.measuring(False)
        bench.notes.append(f"storm of {clients:,} under the profiler: all welcome {result['welcomed_s']:.2f} s, "
                           f"+ all presence {result['settled_s'] or float('nan'):.2f} s")
    bench.session("reactor", clients, storm, profile=path, title=f"reactor under cProfile: {title}")
    return title, path


def print_memory(bench: Bench, clients: int, top: int = 25) -> None:
    """A storm of ``clients`` with the server under tracemalloc; once all are in and idle, where its memory is."""
    path = os.path.join(bench.workdir, "reactor-storm.tracemalloc")
    bench.session("reactor", clients, lambda server, gens: bench.login_storm(server, gens, clients,
                                                                                bench.settings.storm_cap),
                  server_options=("--tracemalloc", path), title=f"reactor under tracemalloc: storm of {clients:,}")
    stats = tracemalloc.Snapshot.load(path).statistics("lineno")
    total = sum(stat.size for stat in stats)
    print(f"\nreactor server, {clients:,} idle clients, traced Python memory {total / 1024:,.0f} KiB "
          f"({total / 1024 / clients:.2f} KiB per client), top lines:")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size / clients:8.1f} B/client {stat.count / clients:6.2f} blocks/client  "
              f"{'/'.join(frame.filename.rsplit('/', 2)[-2:])}:{frame.lineno}")


if __name__ == "__main__":
    sys.exit(main())
