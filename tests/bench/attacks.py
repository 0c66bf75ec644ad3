"""Strangers attacking a real server, and what an honest user sees meanwhile.

``python -m tests.bench.attacks [--server PATH/server_main.py]`` prints two figures:

- names: a bystander's round trip (yoda -> hans, a message) while 8 strangers
  stream unknown user names as fast as they can (reconnecting when closed);
- unfinished: the server's RSS once 1,500 strangers each hold an unfinished
  line of 63 KiB, or of 1000 bytes (from 50 loopback addresses, 30 each).

``--server`` runs another checkout's server (the old code, to compare). The
attackers are child processes (``python -m tests.bench.attacks flood-names HOST
PORT``) so the bystander's clock is not theirs. The end-to-end tests use them too.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tests.bench.common import percentile, raise_open_files_limit, rss_kib
from tests.support import ACCOUNTS, NO_LIMITS, ROOT, WireClient, write_credentials

NAME_FLOODERS = 8
STRANGERS = 1500
UNFINISHED = (63 * 1024, 1000)   # bytes of each stranger's unfinished line: under the old cap, under the new


# -- attackers (child processes) ------------------------------------------------

def flood_names(host: str, port: int) -> None:
    """Stream ``username`` frames of unknown names as fast as the socket takes them; reconnect when closed.
    Everything the server says is read and dropped (in a thread), so it never stops for a full buffer."""
    batch = b"".join(json.dumps({"type": "username", "username": f"nobody{i}"}).encode() + b"\n"
                     for i in range(2000))
    while True:
        try:
            sock = socket.create_connection((host, port))
        except OSError:
            time.sleep(0.01)
            continue
        threading.Thread(target=_drain, args=(sock,), daemon=True).start()
        try:
            sock.sendall(b'{"type":"hello","version":1}\n')
            while True:
                sock.sendall(batch)
        except OSError:
            sock.close()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def start_attackers(kind: str, host: str, port: int, count: int) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return [subprocess.Popen([sys.executable, "-m", "tests.bench.attacks", kind, host, str(port)],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def stop_attackers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


# -- the honest pair ----------------------------------------------------------

def honest_pair(host: str, port: int) -> tuple[WireClient, WireClient]:
    yoda = WireClient(host, port, timeout=30.0)
    yoda.login("yoda")
    hans = WireClient(host, port, timeout=30.0)
    hans.login("hans")
    return yoda, hans


def round_trip(sender: WireClient, receiver: WireClient, text: str) -> float:
    """Seconds from sending a message to its arrival at the other user."""
    start = time.perf_counter()
    sender.send({"type": "message", "to": receiver.user, "text": text})
    frame = receiver.until("message", text=text)
    assert frame["from"] == sender.user, frame
    return time.perf_counter() - start


def round_trips(a: WireClient, b: WireClient, count: int, pause: float = 0.005, within: float = 30.0) -> list[float]:
    """``count`` round trips, alternating directions, sorted; fewer if ``within`` seconds pass first."""
    times = []
    deadline = time.monotonic() + within
    for i in range(count):
        if time.monotonic() > deadline:
            break
        times.append(round_trip(a, b, f"rt{i}") if i % 2 == 0 else round_trip(b, a, f"rt{i}"))
        time.sleep(pause)
    return sorted(times)


# -- the server ----------------------------------------------------------------

class Server:
    def __init__(self, server_main: pathlib.Path, directory: pathlib.Path, extra: list[str] = ()) -> None:
        creds = write_credentials(directory, ACCOUNTS)
        self.proc = subprocess.Popen(
            [sys.executable, str(server_main), "0", "1", "300", "--credentials", str(creds), "--state", ":memory:",
             "--log-level", "WARNING", *extra],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("Server listening on "), line
        self.host, port = line.split()[-1].rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_names(server_main: pathlib.Path, samples: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(server_main, pathlib.Path(tmp), extra)   # the bystanders' pings pass the rate limit
        try:
            yoda, hans = honest_pair(server.host, server.port)
            quiet = round_trips(yoda, hans, 50)
            attackers = start_attackers("flood-names", server.host, server.port, NAME_FLOODERS)
            try:
                time.sleep(1.0)   # the flood is on
                loud = round_trips(yoda, hans, samples)
            finally:
                stop_attackers(attackers)
        finally:
            server.stop()
    return {"quiet_p50_ms": 1e3 * percentile(quiet, 0.5), "p50_ms": 1e3 * percentile(loud, 0.5),
            "p99_ms": 1e3 * percentile(loud, 0.99), "max_ms": 1e3 * loud[-1], "samples": len(loud)}


def bench_unfinished(server_main: pathlib.Path, size: int) -> dict:
    raise_open_files_limit()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(server_main, pathlib.Path(tmp))
        socks = []
        try:
            idle = rss_kib(server.proc.pid)
            line = b'{"type":"username","username":"' + b"x" * size
            for i in range(STRANGERS):
                sock = socket.create_connection((server.host, server.port),
                                                source_address=(f"127.0.3.{i % 50 + 1}", 0))
                try:
                    sock.sendall(line)
                except OSError:
                    pass
                socks.append(sock)
            rss = settled_rss(server.proc.pid)
            yoda, hans = honest_pair(server.host, server.port)   # and a login still works
            rt = round_trips(yoda, hans, 20)
        finally:
            for sock in socks:
                sock.close()
            server.stop()
    return {"idle_rss_mib": idle / 1024, "rss_mib": rss / 1024, "login_then_p50_ms": 1e3 * percentile(rt, 0.5)}


def settled_rss(pid: int) -> int:
    """The RSS once it has stopped growing for half a second (at most 20 s)."""
    last, deadline = rss_kib(pid), time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kib(pid)
        if now == last:
            break
        last = now
    return last


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "flood-names":
        flood_names(argv[1], int(argv[2]))
        return
    parser = argparse.ArgumentParser(prog="python -m tests.bench.attacks")
    parser.add_argument("--server", type=pathlib.Path, default=ROOT / "server_main.py")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--before-limits", action="store_true",
                        help="the --server given predates the per-user rate limit (it takes no --rate flag)")
    args = parser.parse_args(argv)
    names = bench_names(args.server, args.samples, [] if args.before_limits else list(NO_LIMITS))
    print(f"8 strangers flooding user names: bystander round trip quiet p50 {names['quiet_p50_ms']:.2f} ms; "
          f"flooded ({names['samples']} samples) p50 {names['p50_ms']:.2f} ms, p99 {names['p99_ms']:.2f} ms, "
          f"max {names['max_ms']:.2f} ms",
          flush=True)
    for size in UNFINISHED:
        held = bench_unfinished(args.server, size)
        print(f"{STRANGERS} strangers each holding an unfinished line of {size} bytes: server RSS "
              f"{held['rss_mib']:.1f} MiB (idle {held['idle_rss_mib']:.1f} MiB); then a login and round trip "
              f"p50 {held['login_then_p50_ms']:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
