"""Many people logging in to hashed accounts at once: how many are told ``try_again``, and how long it takes.

    python -m tests.bench.logins [--logins N] [--rounds R] [--retry-after S] [--password-helpers N]

Starts ``server_main.py`` with ``--logins`` accounts, each with a scrypt hash (the defaults: 16 MiB, about
30 ms a check here), then connects them all and has each send its username and right password as soon as it
may. A login told ``try_again`` (the server could not check its password: too many waiting) sends the password
again after ``--retry-after`` seconds (default at once), as a client that retries by itself would; the real
client does not retry, so each login told ``try_again`` at least once is one whose user would have had to type
the password again.

Prints, per round: the ``try_again`` answers in all, the logins told it at least once, and the seconds from the
first connection to the last welcome. ``--password-helpers`` is passed to the server when given (the server's
default: one helper process per core it may run on).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

from reactor.loop import EventLoop
from reactor.server.passwords import hash_password
from reactor.stream import Stream
from tests.bench.common import UNLIMITED, run_until, start_server

PASSWORD = "pw-hashed"


class Login:
    """One connection logging in as ``name``; it counts the try_again answers it got."""

    def __init__(self, bench: Bench, name: str) -> None:
        self.bench, self.name = bench, name
        self.try_again = 0
        self.welcome = False
        self.stream = Stream(bench.loop, socket.create_connection(("127.0.0.1", bench.port)), self)
        self.stream.send({"type": "hello", "version": 1})

    def frame_received(self, stream: Stream, frame: dict) -> None:
        kind, code = frame.get("type"), frame.get("code")
        if kind == "hello":
            stream.send({"type": "username", "username": self.name})
        elif kind == "username_ok":
            stream.send({"type": "password", "password": PASSWORD})
        elif code == "try_again":
            self.try_again += 1
            self.bench.loop.call_later(self.bench.retry_after, stream.send, {"type": "password", "password": PASSWORD})
        elif kind == "welcome":
            self.welcome = True
        elif kind == "error":
            raise RuntimeError(f"{self.name}: {frame}")

    def frame_error(self, stream: Stream, detail: str) -> None:
        raise RuntimeError(f"{self.name}: bad frame {detail}")

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if not self.bench.stopping:
            raise RuntimeError(f"{self.name}: connection lost: {reason}")


class Bench:
    def __init__(self, port: int, retry_after: float) -> None:
        self.loop = EventLoop()
        self.port = port
        self.retry_after = retry_after
        self.stopping = False
        self.logins: list[Login] = []

    def run(self, count: int) -> dict:
        start = time.perf_counter()
        self.logins = [Login(self, f"u{i}") for i in range(count)]
        run_until(self.loop, lambda: all(login.welcome for login in self.logins), 300.0)
        return {"try_again": sum(login.try_again for login in self.logins),
                "retyped": sum(login.try_again > 0 for login in self.logins),
                "seconds": time.perf_counter() - start}

    def close(self) -> None:
        self.stopping = True
        for login in self.logins:
            login.stream.abort()
        self.loop.run_once(timeout=0)
        self.loop.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.logins", description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="logins at once (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--retry-after", type=float, default=0.0, metavar="S",
                        help="seconds a login told try_again waits before it sends its password again (default 0)")
    parser.add_argument("--password-helpers", type=int, default=None, metavar="N",
                        help="passed to the server (default: the server's own default)")
    args = parser.parse_args(argv)
    hashed = hash_password(PASSWORD)   # one hash for every account: each check costs the same
    flags = list(UNLIMITED)
    if args.password_helpers is not None:
        flags += ["--password-helpers", str(args.password_helpers)]
    print(f"{args.logins} logins to hashed accounts at once, on {os.cpu_count()} cores "
          f"(a login told try_again sends its password again after {args.retry_after:g} s)")
    print(f"{'round':>5}{'try_again':>11}{'retyped':>9}{'seconds':>9}")
    with tempfile.TemporaryDirectory() as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        with open(credentials, "w") as out:
            out.writelines(f"u{i} {hashed}\n" for i in range(args.logins))
        for round_no in range(1, args.rounds + 1):
            proc, port = start_server(workdir, credentials, "10", *flags)
            try:
                bench = Bench(port, args.retry_after)
                try:
                    figures = bench.run(args.logins)
                finally:
                    bench.close()
            finally:
                proc.terminate()
                proc.wait(10)
            print(f"{round_no:>5}{figures['try_again']:>11}{figures['retyped']:>9}{figures['seconds']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
