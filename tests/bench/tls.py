"""What TLS costs: relay throughput and latency of the real server, plaintext and TLS side by side.

    python -m tests.bench.tls [--pairs N] [--window W] [--seconds S]

Starts ``server_main.py`` twice (plaintext, then with a throwaway certificate
made with trustme), logs in ``2 x pairs`` clients from this process (on the
product's own loop and streams: ``Stream`` or ``TLSStream``), and measures:

- throughput: each client keeps ``window`` messages in flight to its partner
  (every message received is answered with one), for ``seconds``;
- latency: one message in flight per client, for ``seconds``; a message's
  latency is from its sending to its arrival at the partner (one clock: both
  ends are here).

The generator shares the machine with the server: the figures are for side by
side comparison, not absolute capacity.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import trustme

from reactor.framing import JsonLines, encode
from reactor.loop import EventLoop
from reactor.stream import Stream
from reactor.tls import TLSStream
from tests.bench.common import UNLIMITED, BenchUser, run_until, start_server

TEXT = "the quick brown fox jumps over the lazy dog"


class Client(BenchUser):
    """One user: logs in, then answers every message from its partner with one back."""

    def __init__(self, bench: Run, name: str, partner: str) -> None:
        self.bench = bench
        self.name = name
        self.partner = partner
        self.stream: Stream | None = None
        self.ready = False

    def connect(self, port: int, context: ssl.SSLContext | None) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        loop = self.bench.loop
        if context is None:
            self.stream = Stream(loop, sock, JsonLines(self))
            self._hello(self.stream)
        else:
            self.stream = TLSStream(loop, sock, JsonLines(self), context=context, server_hostname="localhost",
                                    on_secure=self._hello)

    def _hello(self, stream: Stream) -> None:
        stream.write(encode({"type": "hello", "version": 1}))

    def send_message(self) -> None:
        assert self.stream is not None
        self.stream.write(encode({"type": "message", "to": self.partner, "text": f"{time.perf_counter():.9f} {TEXT}"}))

    def frame_received(self, stream: Stream, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.bench.arrived(float(frame["text"].split(" ", 1)[0]))
            if self.bench.answering:
                self.send_message()
        else:
            self.log_in(stream, kind)


class Run:
    """One server, ``pairs`` pairs of clients, and the two measurements."""

    def __init__(self, port: int, context: ssl.SSLContext | None, pairs: int) -> None:
        self.loop = EventLoop()
        self.stopping = False
        self.counting = False
        self.answering = True
        self.latencies: list[float] = []
        self.count = 0
        self.clients = []
        for p in range(pairs):
            a, b = f"u{2 * p}", f"u{2 * p + 1}"
            self.clients += [Client(self, a, b), Client(self, b, a)]
        for client in self.clients:
            client.connect(port, context)
        run_until(self.loop, lambda: all(c.ready for c in self.clients), 60.0)

    def arrived(self, sent: float) -> None:
        if self.counting:
            self.count += 1
            self.latencies.append(time.perf_counter() - sent)

    def measure(self, window: int, seconds: float) -> dict:
        """Start ``window`` messages per client, warm up a second, count for ``seconds``, let them drain."""
        for _ in range(window):
            for client in self.clients:
                client.send_message()
        warm = time.monotonic() + 1.0
        run_until(self.loop, lambda: time.monotonic() > warm, 10.0)
        self.count, self.latencies, self.counting = 0, [], True
        end = time.monotonic() + seconds
        run_until(self.loop, lambda: time.monotonic() > end, seconds + 10.0)
        self.counting = False
        result = {"msgs_per_s": self.count / seconds, "p50_ms": percentile(self.latencies, 50) * 1000,
                  "p99_ms": percentile(self.latencies, 99) * 1000}
        self.answering = False   # what is in flight drains
        quiet = time.monotonic() + 1.0
        run_until(self.loop, lambda: time.monotonic() > quiet, 10.0)
        self.answering = True
        return result

    def close(self) -> None:
        self.stopping = True
        for client in self.clients:
            assert client.stream is not None
            client.stream.abort()
        self.loop.run_once(timeout=0)
        self.loop.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def serve(workdir: str, credentials: str, tls_files: tuple[str, str] | None) -> tuple[subprocess.Popen, int]:
    extra = ["--tls-cert", tls_files[0], "--tls-key", tls_files[1]] if tls_files else []
    return start_server(workdir, credentials, "10", *UNLIMITED, *extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.tls", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=50, help="pairs of clients (default 50)")
    parser.add_argument("--window", type=int, default=16, help="messages in flight per client for throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds each measurement counts")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of both (default 3); each figure is the median over the rounds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        with open(credentials, "w") as out:
            out.writelines(f"u{i} pw-u{i}\n" for i in range(2 * args.pairs))
        cert = os.path.join(workdir, "server.pem")
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(cert)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        rounds: dict[str, list[dict]] = {"plaintext": [], "tls": []}
        kinds = [("plaintext", None, None), ("tls", (cert, cert), client_context)]
        for round_no in range(args.rounds):   # alternate which goes first: the machine's load drifts
            for name, files, context in (kinds if round_no % 2 == 0 else kinds[::-1]):
                proc, port = serve(workdir, credentials, files)
                try:
                    run = Run(port, context, args.pairs)
                    try:
                        rounds[name].append({"throughput": run.measure(args.window, args.seconds),
                                             "latency": run.measure(1, args.seconds)})
                    finally:
                        run.close()
                finally:
                    proc.terminate()
                    proc.wait(10)
    figures = {name: {mode: {key: statistics.median(r[mode][key] for r in runs) for key in runs[0][mode]}
                      for mode in runs[0]} for name, runs in rounds.items()}
    print(f"relay, {args.pairs} pairs, real server, generator in one process "
          f"(median of {args.rounds} rounds of {args.seconds:g} s each)")
    print(f"{'':12}{'msg/s (window ' + str(args.window) + ')':>22}{'p99 ms':>9}"
          f"{'msg/s (window 1)':>19}{'p50 ms':>9}{'p99 ms':>9}")
    for name, f in figures.items():
        t, lat = f["throughput"], f["latency"]
        print(f"{name:12}{t['msgs_per_s']:>22.0f}{t['p99_ms']:>9.2f}{lat['msgs_per_s']:>19.0f}"
              f"{lat['p50_ms']:>9.2f}{lat['p99_ms']:>9.2f}")
    plain, tls = figures["plaintext"]["throughput"], figures["tls"]["throughput"]
    print(f"TLS throughput: {tls['msgs_per_s'] / plain['msgs_per_s']:.0%} of plaintext")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"median": figures, "rounds": rounds}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
