"""A bystander's round trip while one logged-in user floods 4,096-character broadcasts (a figure, not a test).

    python -m tests.bench.flood [--seconds 5] [--root DIR] [-- server flags...]

Starts the real server (``server_main.py`` in ``--root``, this checkout by
default, so an older checkout can be measured the same way), logs in a
flooder (its own process, writing broadcasts as fast as the socket takes them
and reading its replies) and a bystander that reads everything at full speed
and times ``whoelse`` round trips. Prints one JSON line: the round trips'
p50/p99/max in ms, whether the bystander was cut off, the broadcasts it heard
and the flooder's frames sent and refused.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNTS = {"hans": "falcon*solo", "yoda": "wise@!man"}


def connect(port: int, user: str) -> tuple[socket.socket, bytearray]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in (
        {"type": "hello", "version": 1}, {"type": "username", "username": user},
        {"type": "password", "password": ACCOUNTS[user]})))
    buffer = bytearray()
    while b'"welcome"' not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"{user} could not log in")
        buffer += chunk
    return sock, bytearray(buffer[buffer.index(b'"welcome"'):].split(b"\n", 1)[1])


def flood(port: int, seconds: float, results) -> None:
    """The flooder's process: write broadcasts for ``seconds``, count what comes back."""
    sock, _ = connect(port, "hans")
    batch = (json.dumps({"type": "broadcast", "text": "x" * 4096}).encode() + b"\n") * 16
    sent = refused = 0
    sock.setblocking(False)
    end = time.monotonic() + seconds
    pending = memoryview(batch)
    while time.monotonic() < end:
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    end = 0
                    break
                refused += data.count(b'"rate_limited"')
        except BlockingIOError:
            pass
        except OSError:
            break
        try:
            n = sock.send(pending)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        except OSError:
            break
        pending = pending[n:]
        if not pending:
            sent += 16
            pending = memoryview(batch)
    sock.close()
    results.put({"sent": sent, "refused": refused})


def bystander(port: int, seconds: float) -> dict:
    sock, buffer = connect(port, "yoda")
    sock.settimeout(10.0)
    trips: list[float] = []
    heard = 0
    cut_off = None
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t0 = time.monotonic()
        try:
            sock.sendall(b'{"type":"whoelse"}\n')
            while True:
                lines = buffer.split(b"\n")
                if any(b'"users"' in line for line in lines[:-1]):
                    heard += sum(b'"broadcast":true' in line for line in lines[:-1])
                    buffer = bytearray(lines[-1])
                    break
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionResetError("closed")
                buffer += chunk
        except OSError:
            cut_off = round(time.monotonic() - started, 2)
            break
        trips.append(time.monotonic() - t0)
    sock.close()
    trips.sort()
    ms = (lambda q: round(trips[min(len(trips) - 1, int(q * len(trips)))] * 1000, 2)) if trips else (lambda q: None)
    return {"round_trips": len(trips), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0),
            "mean_ms": round(statistics.fmean(trips) * 1000, 2) if trips else None,
            "cut_off_after_s": cut_off, "broadcasts_heard": heard}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--root", default=str(ROOT), help="checkout whose server_main.py runs")
    parser.add_argument("server_flags", nargs="*")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        creds = pathlib.Path(folder) / "credentials.txt"
        creds.write_text("".join(f"{u} {p}\n" for u, p in ACCOUNTS.items()))
        server = subprocess.Popen(
            [sys.executable, os.path.join(args.root, "server_main.py"), "0", "1", "600", "--credentials", str(creds),
             "--state", ":memory:", "--log-level", "WARNING", *args.server_flags],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
            results: multiprocessing.Queue = multiprocessing.Queue()
            flooder = multiprocessing.Process(target=flood, args=(port, args.seconds, results))
            figures = {}
            sock, _ = connect(port, "yoda")   # the bystander's first login is not timed
            sock.close()
            flooder.start()
            time.sleep(0.2)   # the flood is under way before the first round trip
            figures.update(bystander(port, args.seconds - 0.2))
            flooder.join(args.seconds + 10)
            figures.update({"flooder_" + k: v for k, v in results.get(timeout=10).items()})
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps({"root": args.root, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
