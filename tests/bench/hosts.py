"""Starts one server under test: ``python -m tests.bench.hosts KIND --credentials FILE [options]``.

KIND is ``reactor`` (reactor.server.host.ServerHost on reactor.loop.EventLoop),
``reactor-fast`` (the same on the fast build: ``make fast``, run with ``REACTOR_BUILD=fast``),
``asyncio`` (asyncio_host on the stdlib loop), ``uvloop`` (asyncio_host on
uvloop), ``threaded`` (threaded_host) or ``relay`` (raw_relay, no chat logic).
All but the relay host the same sans-I/O ``ChatServer``; none has a state
file (the texts of stored messages stay in a ``MemoryStore``), so the
comparison is the I/O alone. The host prints ``listening <port>`` on stdout
once it accepts, and stops on SIGTERM.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import signal
import sys
import tracemalloc

from .common import load_accounts, raise_open_files_limit

KINDS = ("reactor", "reactor-fast", "asyncio", "uvloop", "threaded", "relay")
# The build each kind must run on (REACTOR_BUILD, which the runner sets): the peers host the pure-Python rules.
BUILDS = {"reactor-fast": "fast"}


def announce(port: int) -> None:
    print(f"listening {port}", flush=True)


def serve_reactor(logic, port: int, profile: str | None, turn_stats: str | None, memory: str | None = None) -> None:
    from reactor.loop import EventLoop, TurnStats
    from reactor.server.host import ServerHost

    loop = EventLoop(turn_stats=turn_stats is not None)
    # The load generator logs thousands in at once from one address: no caps on strangers here.
    host = ServerHost(loop, logic, max_strangers=1 << 30, max_strangers_per_address=1 << 30)
    host.serve("127.0.0.1", port)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    announce(host.address[1])
    profiler = cProfile.Profile() if profile else None

    # The runner brackets the workload it wants measured with SIGUSR1 ... SIGUSR2: the profiler runs
    # between them, and the loop's turns are measured anew, their figures appended to ``turn_stats`` as a
    # JSON line at the end.
    def begin() -> None:
        if turn_stats:
            loop.turn_stats = TurnStats()
        if profiler:
            profiler.enable()

    def end() -> None:
        if profiler:
            profiler.disable()
        if turn_stats and loop.turn_stats is not None:
            with open(turn_stats, "a") as out:
                out.write(json.dumps(loop.turn_stats.summary()) + "\n")

    if profiler or turn_stats:
        loop.add_signal_handler(signal.SIGUSR1, begin)
        loop.add_signal_handler(signal.SIGUSR2, end)
    if memory:   # where the memory goes: every allocation from here on is traced, a snapshot is taken at the end
        tracemalloc.start()
    try:
        loop.run()
    finally:
        if memory:
            tracemalloc.take_snapshot().dump(memory)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        loop.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hosts")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--credentials", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--block", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", metavar="FILE", help="reactor only: write cProfile stats here at exit "
                        "(of the fast build: its Python-level calls only)")
    parser.add_argument("--tracemalloc", metavar="FILE",
                        help="reactor only: trace allocations; at SIGTERM, before the clients are let go, "
                             "dump a tracemalloc snapshot here")
    parser.add_argument("--turn-stats", metavar="FILE",
                        help="reactor only: measure the loop's turns; each SIGUSR1 ... SIGUSR2 period's figures are "
                             "appended here as a JSON line")
    args = parser.parse_args(argv)
    import reactor
    if reactor.BUILD != BUILDS.get(args.kind, "pure"):   # a figure must be the build it is labelled with
        parser.error(f"{args.kind} runs on the {BUILDS.get(args.kind, 'pure')} build, not {reactor.BUILD}: "
                     f"set REACTOR_BUILD (make fast builds the fast one)")
    raise_open_files_limit()
    if args.kind == "relay":
        from .raw_relay import serve
        serve(args.port, announce)
        return 0
    from reactor.server.rules import ChatServer
    # Each simulated user sends far more than a person would: no per-user rate or quota (the I/O is measured).
    logic = ChatServer(load_accounts(args.credentials), args.block, args.timeout, rate=None, sender_quota=None)
    if args.kind in ("reactor", "reactor-fast"):
        serve_reactor(logic, args.port, args.profile, args.turn_stats, args.tracemalloc)
    elif args.kind in ("asyncio", "uvloop"):
        from .asyncio_host import serve
        serve(logic, args.port, announce, use_uvloop=args.kind == "uvloop")
    else:
        from .threaded_host import serve
        serve(logic, args.port, announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
