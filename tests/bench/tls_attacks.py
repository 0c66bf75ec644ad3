"""Strangers attacking the real TLS server's handshake, and what honest TLS users see meanwhile.

``python -m tests.bench.tls_attacks [--server PATH/server_main.py]`` prints:

- half hellos: the server's RSS per stranger once 450 strangers (30 from each of
  15 loopback addresses) each sent a TLS record header and a handshake header
  declaring a ClientHello of 131,000 bytes, then nothing (9 bytes each); beside it
  the same for strangers that sent nothing, and for strangers that sent a whole
  ClientHello and then nothing (the server's answer sent, its own handshake state held);
- hello flood: two honest TLS users' round trip (yoda <-> hans) before any flood,
  then in turns with the flooder stopped (SIGSTOP) and flooding: one address (its
  own process) replaying a recorded ClientHello about 1,250 times a second, in
  bursts of 25 new connections; with the server's CPU time while flooded.

``--server`` runs another checkout's server (the old code, to compare). The
flooder is a child process (``python -m tests.bench.tls_attacks flood-hellos HOST
PORT RATE SOURCE [BURST]``) so the bystanders' clock is not its; the end-to-end tests use it too.
"""
from __future__ import annotations

import argparse
import os
import pathlib
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


def bench_flood(server_main: pathlib.Path, samples: int, rate: float, extra: Sequence[str] = (),
                rounds: int = 6) -> dict:
    """The bystanders' round trips quiet and flooded in turns (``rounds`` of each, the flooder stopped with
    SIGSTOP between), so the machine's own noise falls on both alike; the server's CPU while flooded."""
    with tempfile.TemporaryDirectory() as tmp:
        certs = Certificates(pathlib.Path(tmp))
        server = Server(server_main, pathlib.Path(tmp), ["--rate", "0", "--sender-quota", "0", *certs.flags(), *extra])
        try:
            yoda, hans = tls_pair(server, certs.client)
            round_trips(yoda, hans, 50)   # warm
            calm = round_trips(yoda, hans, samples // 3)   # before any flood (the old server was slow to calm down)
            flooder = start_flooder(server.host, server.port, rate)
            quiet: list[float] = []
            loud: list[float] = []
            cpu = flooded = measured = 0.0
            try:
                start = time.monotonic()
                flooder.stdout.readline()   # type: ignore[union-attr]   # a second of flood
                flooded += time.monotonic() - start
                for _ in range(rounds):
                    os.kill(flooder.pid, signal.SIGSTOP)
                    quiet += round_trips(yoda, hans, samples // rounds)
                    os.kill(flooder.pid, signal.SIGCONT)
                    used, start = process_cpu_seconds(server.proc.pid), time.monotonic()
                    loud += round_trips(yoda, hans, samples // rounds)
                    cpu += process_cpu_seconds(server.proc.pid) - used
                    measured += time.monotonic() - start
                flooded += measured
            finally:
                sent = stop_flooder(flooder)
            after = TLSWireClient(server.host, server.port, certs.client, timeout=30.0)   # a new user still gets in
            after.login("luke")
            after.close()
        finally:
            server.stop()
    quiet.sort()
    loud.sort()
    calm.sort()
    return {"calm_p99_ms": 1e3 * percentile(calm, 0.99),
            "quiet_p50_ms": 1e3 * percentile(quiet, 0.5), "quiet_p99_ms": 1e3 * percentile(quiet, 0.99),
            "p50_ms": 1e3 * percentile(loud, 0.5), "p99_ms": 1e3 * percentile(loud, 0.99),
            "max_ms": 1e3 * loud[-1], "server_cpu": cpu / measured, "flood_rate": sent / flooded,
            "samples": len(loud)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "flood-hellos":
        flood_hellos(argv[1], int(argv[2]), float(argv[3]), argv[4], *map(int, argv[5:6]))
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
              f"{flood['calm_p99_ms']:.2f} ms; between its bursts p50 "
              f"{flood['quiet_p50_ms']:.2f} ms p99 {flood['quiet_p99_ms']:.2f} ms; flooded ({flood['samples']} "
              f"samples) p50 {flood['p50_ms']:.2f} ms p99 {flood['p99_ms']:.2f} ms max {flood['max_ms']:.2f} ms; "
              f"server CPU {flood['server_cpu']:.0%} of a core; the flooder sent {flood['flood_rate']:.0f} hellos/s",
              flush=True)


if __name__ == "__main__":
    main()
