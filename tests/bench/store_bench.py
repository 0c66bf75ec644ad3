"""Figures for the state store: messages kept per second by group size and sync level, a 1,000-message login, a burst.

Run alone with ``python -m tests.bench.store_bench [--quick]``; the team's bench
runner calls ``run(quick)``, which returns a dict of figures.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from reactor.server.effects import KeepMessage
from reactor.server.store import Store

DRAIN = 1000  # messages waiting at the login we time


def store_rate(folder: str, synchronous: str, group: int, total: int) -> dict:
    """Keep ``total`` offline messages, committing every ``group`` of them, as the host does per loop iteration."""
    path = ":memory:" if synchronous == "memory" else os.path.join(folder, f"rate-{synchronous}-{group}.db")
    store = Store.open(path, synchronous if synchronous != "memory" else "FULL")
    text = "x" * 60
    start = time.perf_counter()
    for i in range(1, total + 1):
        store.apply(KeepMessage(i, "yoda", "hans", text))
        if i % group == 0:
            store.commit()
    store.commit()
    elapsed = time.perf_counter() - start
    commits = store.commits
    store.close()
    return {"messages": total, "group": group, "commits": commits,
            "messages_per_s": round(total / elapsed), "commits_per_s": round(commits / elapsed)}


def load_time(folder: str, count: int) -> dict:
    """Open and load a state file holding ``count`` offline messages (the cost of a restart)."""
    path = os.path.join(folder, f"load-{count}.db")
    store = Store.open(path, "NORMAL")
    for i in range(1, count + 1):
        store.apply(KeepMessage(i, "yoda" if i % 2 else "leia", "hans", "x" * 60))
    store.close()
    start = time.perf_counter()
    store = Store.open(path)
    blocks, offline = store.load()
    elapsed = time.perf_counter() - start
    store.close()
    assert len(offline) == count
    return {"messages": count, "open_and_load_ms": round(elapsed * 1000, 1)}


def drain_login(folder: str, synchronous: str = "FULL", waiting: int = DRAIN) -> dict:
    """The real server: a user logs in to ``waiting`` stored messages, then acknowledges them all."""
    import pathlib

    from tests.support import NO_LIMITS, ServerProcess  # test helpers, not product code

    work = pathlib.Path(folder) / f"drain-{synchronous}"
    work.mkdir()
    state = str(work / "state.db")
    store = Store.open(state)
    for i in range(1, waiting + 1):
        store.apply(KeepMessage(i, "yoda", "hans", f"message {i} " + "x" * 50))
    store.close()
    server = ServerProcess(work, extra=("--state", state, "--synchronous", synchronous, "--log-level", "WARNING",
                                        *NO_LIMITS))   # one sender stands for many here
    try:
        client = server.client(timeout=30.0)
        client.send({"type": "username", "username": "yoda"})
        client.expect("username_ok")
        start = time.perf_counter()
        client.send({"type": "password", "password": "wise@!man"})
        client.expect("welcome")
        ids = []
        while len(ids) < waiting:
            frame = client.recv()
            if frame.get("type") == "message" and "id" in frame:
                ids.append(frame["id"])
        delivered = time.perf_counter() - start
        start = time.perf_counter()
        # One write for both frames (no Nagle delay between them); the
        # whoelse reply waits for the ack's commit.
        client.send_raw(json.dumps({"type": "ack", "ids": ids}).encode() + b'\n{"type": "whoelse"}\n')
        client.until("users")
        acked = time.perf_counter() - start
        client.close()
    finally:
        server.stop()
    store = Store.open(state)
    left = len(store.load()[1])
    store.close()
    assert left == 0, left
    return {"waiting": waiting, "synchronous": synchronous, "login_to_last_message_ms": round(delivered * 1000, 1),
            "ack_all_committed_ms": round(acked * 1000, 1)}


def server_burst(folder: str, state: str, synchronous: str = "FULL", per_user: int = 900) -> dict:
    """The real server: one sender pipelines messages to four offline users; time until every one is confirmed."""
    import pathlib

    from tests.support import NO_LIMITS, ServerProcess

    work = pathlib.Path(folder) / f"burst-{synchronous}-{state.strip(':')}"
    work.mkdir()
    if state != ":memory:":
        state = str(work / state)
    server = ServerProcess(work, extra=("--state", state, "--synchronous", synchronous, "--log-level", "WARNING",
                                        *NO_LIMITS))   # one sender stands for many here
    try:
        client = server.client(timeout=30.0)
        client.login("hans")
        users = ("yoda", "luke", "leia", "vader")
        data = b"".join(json.dumps({"type": "message", "to": users[i % 4], "text": f"burst {i} " + "x" * 50}).encode()
                        + b"\n" for i in range(per_user * 4))
        start = time.perf_counter()
        client.send_raw(data)
        for _ in range(per_user * 4):
            client.expect("stored")
        elapsed = time.perf_counter() - start
        client.close()
    finally:
        server.stop()
    return {"state": "file" if state != ":memory:" else ":memory:", "synchronous": synchronous,
            "messages": per_user * 4, "confirmed_per_s": round(per_user * 4 / elapsed)}


def run(quick: bool = False) -> dict:
    folder = tempfile.mkdtemp(prefix="store-bench-")
    try:
        figures: dict = {"store_rate": {}}
        for synchronous in ("FULL", "NORMAL", "memory"):
            for group in (1, 100):
                if group == 1:
                    total = {"FULL": 200, "NORMAL": 2000, "memory": 5000}[synchronous]
                else:
                    total = 5000 if quick else 50000
                if not quick and group == 1:
                    total *= 5
                figures["store_rate"][f"{synchronous}/{group}"] = store_rate(folder, synchronous, group, total)
        figures["load"] = [load_time(folder, n) for n in ((1000, 10000) if quick else (1000, 100000))]
        try:
            figures["drain_login"] = [drain_login(folder, s) for s in ("FULL", "NORMAL")]
            figures["server_burst"] = [server_burst(folder, "state.db", "FULL"),
                                       server_burst(folder, "state.db", "NORMAL"), server_burst(folder, ":memory:")]
        except ImportError as exc:  # pragma: no cover - no chat logic yet
            figures["drain_login"] = f"skipped: {exc}"
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv[1:]), indent=2))
