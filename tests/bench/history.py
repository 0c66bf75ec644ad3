"""What history costs: ``python -m tests.bench.history [--users N] [--instructions]``.

- a lookup of 500 messages among ``--users`` users, each with a history (the query, and the frames built from it),
  for a conversation and for the broadcasts;
- the bytes the state file keeps per message (its size over the rows written);
- with ``--instructions`` (valgrind): instructions per relayed message, history off (the relay as before) and on
  (a SQLite state file, committed each loop turn), counted by callgrind in an in-process relay (as
  ``tests.bench.metrics`` counts them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from reactor.server.effects import NoteSession, ReadHistory, Remember
from reactor.server.history import history_frames
from reactor.server.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = "the quick brown fox jumps over the lazy dog"


def lookups(users: int, per_user: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chat-history-") as scratch:
        path = os.path.join(scratch, "state.db")
        store = Store.open(path, "NORMAL", None)
        empty = os.path.getsize(path)
        wall = 1_764_000_000.0
        store.remember([NoteSession(f"u{i}", True, wall) for i in range(users)])
        rows = 0
        for i in range(users):   # each user writes per_user messages to its neighbour
            store.remember([Remember(f"u{i}", f"u{(i + 1) % users}", f"{TEXT} {n}", wall + n) for n in range(per_user)])
            rows += per_user
            if i % 1000 == 999:
                store.commit()
        store.remember([Remember("u0", "u1", f"{TEXT} more {n}", wall + 10_000 + n) for n in range(500)])
        store.remember([Remember(f"u{n % users}", None, f"{TEXT} all {n}", wall + 20_000 + n) for n in range(2000)])
        rows += 2500
        store.commit()
        store.close()
        size = os.path.getsize(path) - empty
        print(f"{users:,} users, {rows:,} history rows ({len(TEXT) + 4}-character texts): "
              f"{size / rows:,.0f} bytes per message in the state file")
        store = Store.open(path, "NORMAL", None)
        for peer, what in (("u1", "a conversation"), (None, "the broadcasts")):
            times = []
            for _ in range(20):
                started = time.perf_counter()
                found = store.history("u0", peer, 500)
                frames = history_frames(ReadHistory(1, "u0", peer, 500), found)
                times.append(time.perf_counter() - started)
            times.sort()
            print(f"  500 messages of {what}: {len(frames)} frames, query and frames {times[10] * 1000:.1f} ms "
                  f"(median of 20; {times[0] * 1000:.1f}-{times[-1] * 1000:.1f})")
        store.close()


def relay_in_process(messages: int, history: bool, state: str) -> None:
    """The instructions' driver: a ``ServerHost`` with a state file and two clients on real sockets."""
    import socket

    from reactor.loop import EventLoop
    from reactor.server.host import ServerHost
    from reactor.server.rules import ChatServer

    loop = EventLoop()
    logic = ChatServer({"u0": "p0", "u1": "p1"}, 10.0, 600.0, rate=None, sender_quota=None, history=history,
                       wall_offset=time.time())
    store = Store.open(state, "NORMAL", None, history_cap=5000 if history else 0)
    host = ServerHost(loop, logic, store)
    host.serve("127.0.0.1", 0)

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
    line = json.dumps({"type": "message", "to": "u1", "text": TEXT}).encode()
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
    loop.run_once(0)
    if logic.counts.messages_relayed != messages:
        raise RuntimeError(f"{logic.counts.messages_relayed} of {messages} relayed")
    store.close()


def instructions(messages: int, history: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="chat-cg-") as scratch:
        out = os.path.join(scratch, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-B", "-m",
                        "tests.bench.history", "--driver", str(messages), "on" if history else "off",
                        os.path.join(scratch, "state.db")],
                       cwd=ROOT, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT))
        with open(out) as counts:
            for line in counts:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind's output")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.history")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--per-user", type=int, default=50, help="messages each user wrote")
    parser.add_argument("--instructions", action="store_true", help="also callgrind's count per relayed message")
    parser.add_argument("--driver", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        relay_in_process(int(args.driver[0]), args.driver[1] == "on", args.driver[2])
        return 0
    lookups(args.users, args.per_user)
    if args.instructions:
        base, more = 1_000, 6_000
        for history in (False, True):
            per = (instructions(more, history) - instructions(base, history)) / (more - base)
            print(f"instructions per relayed message, history {'on' if history else 'off'}: {per:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
