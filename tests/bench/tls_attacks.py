"""Strangers attacking the real TLS server's handshake, and what honest TLS users see meanwhile.

``python -m tests.bench.tls_attacks [--server PATH/server_main.py]`` prints:

- half hellos: the server's RSS per stranger once 450 strangers (30 from each of
  15 loopback addresses) each sent a TLS record header and a handshake header
  declaring a ClientHello of 131,000 bytes, then nothing (9 bytes each); beside it
  the same for strangers that sent nothing, and for strangers that sent a whole
  ClientHello and then nothing (the server's answer sent, its own handshake state held);
- hello flood: two honest TLS users' round trip (yoda <-> hans) before any flood,
  then in turns (SIGSTOP, SIGCONT) while one address (its own process) replays a
  recorded ClientHello about 1,250 times a second, in bursts of 25 new
  connections, at a ``sink`` process (the control: what the flood costs the
  machine, the server unaware) and at the server; with the server's CPU time.

``--server`` runs another checkout's server (the old code, to compare). The
flooder is a child process (``python -m tests.bench.tls_attacks flood-hellos HOST
PORT RATE SOURCE [BURST]``) so the bystanders' clock is not its; the end-to-end tests use it too.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import trustme

from tests.bench.attacks import Server, round_trips, settled_rss
from tests.bench.common import percentile, process_cpu_seconds, raise_open_files_limit
from tests.support import ROOT, TLSWireClient

STRANGERS = 450
ADDRESSES = 15                      # 127.0.4.1 .. 127.0.4.15, 30 strangers each
DECLARED = 131_000                  # bytes of ClientHello a half hello declares
FLOOD_RATE = 1250                   # ClientHellos a second from the one flooding address
FLOOD_SOURCE = "127.0.5.1"
FLOOD_BURST = 25                    # ... connections at a time (a real flooder keeps many in flight)


def half_hello(declared: int = DECLARED) -> bytes:
    """A record header whose record holds only a handshake header: a ClientHello of ``declared`` bytes."""
    return b"\x16\x03\x01\x00\x04" + b"\x01" + declared.to_bytes(3, "big")


def client_hello(context: ssl.SSLContext | None = None) -> bytes:
    """What a TLS client (Python's, with OpenSSL's defaults) sends first."""
    context = context or ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        session.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# -- the flooder (a child process) ----------------------------------------------

def flood_hellos(host: str, port: int, rate: float, source: str, burst: int = FLOOD_BURST) -> None:
    """Replay one recorded ClientHello on new connections from ``source`` ``rate`` times a second (as near as the
    server lets it), ``burst`` connections at a time: connect them all, send the hello on each, close them; forever.
    Every second it writes the hellos sent so far to its standard output."""
    hello = client_hello()
    interval = burst / rate
    due = time.monotonic()
    sent, told = 0, time.monotonic() + 1.0
    while True:
        socks = []
        for _ in range(burst):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((source, 0))
            sock.connect_ex((host, port))
            socks.append(sock)
        for sock in socks:
            try:
                sock.setblocking(True)
                sock.settimeout(1.0)
                sock.sendall(hello)
                sent += 1
            except OSError:
                pass
            sock.close()
        if time.monotonic() > told:
            print(sent, flush=True)
            told += 1.0
        due += interval
        late = due - time.monotonic()
        if late > 0:
            time.sleep(late)
        elif late < -0.05:   # behind (the server was slow to accept, or this was stopped): no catching up
            due = time.monotonic()


def sink() -> None:
    """Accept connections on a loopback port (printed first) and close them, forever: a target for a flood
    that the server does not see, so its cost to the machine alone can be measured (the control)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.close()


def start_sink() -> tuple[subprocess.Popen, int]:
    """A ``sink`` process, and its port."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.bench.tls_attacks", "sink"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc, int(proc.stdout.readline())   # type: ignore[union-attr]


def start_flooder(host: str, port: int, rate: float = FLOOD_RATE, source: str = FLOOD_SOURCE,
                  burst: int = FLOOD_BURST) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.bench.tls_attacks", "flood-hellos", host, str(port),
                             str(rate), source, str(burst)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def stop_flooder(flooder: subprocess.Popen) -> int:
    """Stop it; the hellos it sent (as of its last count, once a second)."""
    flooder.kill()
    counts = flooder.communicate()[0].split()
    return int(counts[-1]) if counts else 0


# -- the server --------------------------------------------------------------------

class Certificates:
    """A throwaway CA and a server certificate for localhost and 127.0.0.1, in ``directory``."""

    def __init__(self, directory: pathlib.Path) -> None:
        ca = trustme.CA()
        self.pem = directory / "server.pem"
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(self.pem))
        self.client = ssl.create_default_context()
        ca.configure_trust(self.client)

    def flags(self) -> list[str]:
        return ["--tls-cert", str(self.pem), "--tls-key", str(self.pem)]


def tls_pair(server: Server, context: ssl.SSLContext) -> tuple[TLSWireClient, TLSWireClient]:
    yoda = TLSWireClient(server.host, server.port, context, timeout=30.0)
    yoda.login("yoda")
    hans = TLSWireClient(server.host, server.port, context, timeout=30.0)
    hans.login("hans")
    return yoda, hans


def bench_held(server_main: pathlib.Path, what: bytes | None) -> dict:
    """RSS per stranger with ``STRANGERS`` strangers each having sent ``what`` (None: a whole ClientHello)."""
    raise_open_files_limit()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Certificates(pathlib.Path(tmp))
        server = Server(server_main, pathlib.Path(tmp), certs.flags())
        socks = []
        try:
            yoda, hans = tls_pair(server, certs.client)   # the server has done a handshake and logins
            round_trips(yoda, hans, 20)
            idle = settled_rss(server.proc.pid)
            data = client_hello(certs.client) if what is None else what
            for i in range(STRANGERS):
                sock = socket.create_connection((server.host, server.port),
                                                source_address=(f"127.0.4.{i % ADDRESSES + 1}", 0))
                if data:
                    sock.sendall(data)
                socks.append(sock)
            rss = settled_rss(server.proc.pid)
            rt = round_trips(yoda, hans, 20)   # the users are still served
        finally:
            for sock in socks:
                sock.close()
            server.stop()
    return {"idle_mib": idle / 1024, "rss_mib": rss / 1024, "per_stranger_kib": (rss - idle) / STRANGERS,
            "then_p50_ms": 1e3 * percentile(rt, 0.5)}


class Flood:
    """The flooder aimed at the server, and another aimed at a ``sink`` (the control: the same flood, which the
    server never sees), run in turns: ``round`` measures the bystanders' round trips under each."""

    def __init__(self, host: str, port: int, rate: float = FLOOD_RATE) -> None:
        self.sink, sink_port = start_sink()
        self.at_server = start_flooder(host, port, rate)
        self.elsewhere = start_flooder("127.0.0.1", sink_port, rate)
        self.control: list[float] = []     # round trips while the flood went elsewhere
        self.flooded: list[float] = []     # ... while it went at the server
        self.seconds = 0.0                 # how long it went at the server (measured)

    def under_way(self, within: float = 20.0) -> bool:
        """Whether both flooders have flooded for a second."""
        for proc in (self.at_server, self.elsewhere):
            ready, _, _ = select.select([proc.stdout], [], [], within)
            if not ready or not proc.stdout.readline().strip():   # type: ignore[union-attr]
                return False
        return True

    def round(self, yoda: TLSWireClient, hans: TLSWireClient, samples: int, server_pid: int) -> float:
        """``samples`` round trips with the flood elsewhere, then as many with it at the server; the server's CPU
        seconds in the second part."""
        os.kill(self.at_server.pid, signal.SIGSTOP)
        os.kill(self.elsewhere.pid, signal.SIGCONT)
        self.control += round_trips(yoda, hans, samples)
        os.kill(self.elsewhere.pid, signal.SIGSTOP)
        os.kill(self.at_server.pid, signal.SIGCONT)
        used, start = process_cpu_seconds(server_pid), time.monotonic()
        self.flooded += round_trips(yoda, hans, samples)
        self.seconds += time.monotonic() - start
        return process_cpu_seconds(server_pid) - used

    def stop(self) -> int:
        """Stop all three; the hellos sent at the server."""
        for proc in (self.at_server, self.elsewhere):
            os.kill(proc.pid, signal.SIGCONT)
        stop_flooder(self.elsewhere)
        self.sink.kill()
        self.sink.wait()
        return stop_flooder(self.at_server)


def bench_flood(server_main: pathlib.Path, samples: int, rate: float, extra: Sequence[str] = (),
                rounds: int = 6) -> dict:
    """The bystanders' round trips before any flood, then in turns with the flood elsewhere and at the server
    (``Flood``: the machine's own noise, and the flood's cost to the machine, fall on both alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        certs = Certificates(pathlib.Path(tmp))
        server = Server(server_main, pathlib.Path(tmp), ["--rate", "0", "--sender-quota", "0", *certs.flags(), *extra])
        try:
            yoda, hans = tls_pair(server, certs.client)
            round_trips(yoda, hans, 50)   # warm
            calm = round_trips(yoda, hans, samples // 3)
            flood = Flood(server.host, server.port, rate)
            try:
                assert flood.under_way()
                cpu = sum(flood.round(yoda, hans, samples // rounds, server.proc.pid) for _ in range(rounds))
            finally:
                sent = flood.stop()
            after = TLSWireClient(server.host, server.port, certs.client, timeout=30.0)   # a new user still gets in
            after.login("luke")
            after.close()
        finally:
            server.stop()
    calm.sort()
    control, loud = sorted(flood.control), sorted(flood.flooded)
    return {"calm_p99_ms": 1e3 * percentile(calm, 0.99), "control_p50_ms": 1e3 * percentile(control, 0.5),
            "control_p90_ms": 1e3 * percentile(control, 0.9), "control_p99_ms": 1e3 * percentile(control, 0.99),
            "p50_ms": 1e3 * percentile(loud, 0.5), "p90_ms": 1e3 * percentile(loud, 0.9),
            "p99_ms": 1e3 * percentile(loud, 0.99), "max_ms": 1e3 * loud[-1], "server_cpu": cpu / flood.seconds,
            "flood_rate": sent / (flood.seconds + 1.0), "samples": len(loud)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "flood-hellos":
        flood_hellos(argv[1], int(argv[2]), float(argv[3]), argv[4], *map(int, argv[5:6]))
        return
    if argv and argv[0] == "sink":
        sink()
        return
    parser = argparse.ArgumentParser(prog="python -m tests.bench.tls_attacks")
    parser.add_argument("--server", type=pathlib.Path, default=ROOT / "server_main.py")
    parser.add_argument("--samples", type=int, default=1800)
    parser.add_argument("--rate", type=float, default=FLOOD_RATE)
    parser.add_argument("--only", choices=["held", "flood"])
    args = parser.parse_args(argv)
    if args.only != "flood":
        for name, what in (("nothing", b""), (f"half a hello declaring {DECLARED:,} bytes", half_hello()),
                           ("a whole ClientHello", None)):
            held = bench_held(args.server, what)
            print(f"{STRANGERS} TLS strangers from {ADDRESSES} addresses that sent {name}: server RSS "
                  f"{held['rss_mib']:.1f} MiB (idle {held['idle_mib']:.1f}): {held['per_stranger_kib']:.1f} KiB "
                  f"each; then a round trip p50 {held['then_p50_ms']:.2f} ms", flush=True)
    if args.only != "held":
        flood = bench_flood(args.server, args.samples, args.rate)
        print(f"one address replaying ClientHellos at {args.rate:g}/s: bystander round trip before the flood p99 "
              f"{flood['calm_p99_ms']:.2f} ms; with the flood at another process p50 "
              f"{flood['control_p50_ms']:.2f} p90 {flood['control_p90_ms']:.2f} p99 {flood['control_p99_ms']:.2f} ms; "
              f"at the server ({flood['samples']} samples) p50 {flood['p50_ms']:.2f} p90 {flood['p90_ms']:.2f} "
              f"p99 {flood['p99_ms']:.2f} ms "
              f"max {flood['max_ms']:.2f} ms; "
              f"server CPU {flood['server_cpu']:.0%} of a core; the flooder sent {flood['flood_rate']:.0f} hellos/s",
              flush=True)


if __name__ == "__main__":
    main()
