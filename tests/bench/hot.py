"""The reactor's hot-path figures alone, fast: ``python -m tests.bench.hot [--storms 1000,5000,10000]``.

What ``tests.bench.run`` measures for the reactor host (login storms and RSS,
latency, relay throughput, 1,000 idle timeouts at once), without the other
hosts, for before/after comparisons while working on the hot paths.
``--profile`` runs the relay workload under cProfile and prints the top entries.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from .common import raise_open_files_limit, write_accounts
from .run import SESSION_CLIENTS, TIMEOUT_LOGIN_CONCURRENCY, Bench, Settings, print_profile, print_turns


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hot")
    parser.add_argument("--storms", default="1000,5000,10000", help="login storm sizes (first: the chat session)")
    parser.add_argument("--parts", default="chat,storms,timeout", help="chat,storms,timeout,profile")
    parser.add_argument("--generators", type=int, default=2)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    storms = [int(n) for n in args.storms.split(",")]
    raise_open_files_limit()
    settings = Settings.make(quick=True)
    settings.generators = args.generators
    settings.storm_cap = 60.0
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
        for figure, values in bench.figures.items():
            value = values.get("reactor")
            print(f"{figure:<50} {value:,.3f}" if isinstance(value, (int, float)) else f"{figure:<50} {value}")
        print_turns(bench)
        for note in bench.notes:
            print(f"note: {note}")
        for title, path in profiles:
            print_profile(title, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
