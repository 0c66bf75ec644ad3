"""Figures for the memory the offline mailboxes take: the server's resident size with big mailboxes waiting.

Run alone with ``python -m tests.bench.mailbox_memory``; prints a dict of figures. Two ways mailboxes fill:
``restart``: a state file holding ``USERS`` x ``PER_USER`` messages of ``TEXT`` characters, loaded at start;
``live``: one sender sends them all to offline users through a fresh server. Each figure is the server's
VmRSS once that is done, next to the same server with empty mailboxes; and ``drain_login``
(``store_bench``): a login to 1,000 stored messages, until the last arrives.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tempfile

from reactor.server.effects import KeepMessage
from reactor.server.store import Store

USERS = 300
PER_USER = 3
TEXT = 4000


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (Linux)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def accounts() -> dict[str, str]:
    names = {f"user{i:03d}": f"pw{i:03d}" for i in range(USERS)}
    names["sender"] = "sender-pw"
    return names


def _server(work: pathlib.Path, state: str):
    from tests.support import NO_LIMITS, ServerProcess  # test helpers, not product code
    return ServerProcess(work, extra=("--state", state, "--log-level", "WARNING", *NO_LIMITS), accounts=accounts())


def restart(folder: pathlib.Path) -> dict:
    """RSS of a server that loaded the mailboxes from its state file, and of one that loaded nothing."""
    work = folder / "restart"
    work.mkdir()
    empty = _server(work, str(work / "empty.db"))
    try:
        base = rss_kib(empty.proc.pid)
    finally:
        empty.stop()
    store = Store.open(str(work / "full.db"), "NORMAL")
    mid = 0
    for _n in range(PER_USER):
        for i in range(USERS):
            mid += 1
            store.apply(KeepMessage(mid, f"user{i:03d}", "sender", f"{mid:06d}" + "x" * (TEXT - 6)))
    store.close()
    full = _server(work, str(work / "full.db"))
    try:
        loaded = rss_kib(full.proc.pid)
        client = full.client(timeout=30.0)
        client.login("user000", "pw000", listen=False)
        texts = [client.until("message")["text"] for _ in range(PER_USER)]
        assert [t[:6] for t in texts] == [f"{1 + n * USERS:06d}" for n in range(PER_USER)], texts
        client.close()
    finally:
        full.stop()
    return {"messages": mid, "rss_empty_kib": base, "rss_loaded_kib": loaded, "growth_kib": loaded - base}


def live(folder: pathlib.Path) -> dict:
    """RSS of a fresh server before and after one sender stored every message (all confirmed)."""
    work = folder / "live"
    work.mkdir()
    server = _server(work, str(work / "state.db"))
    try:
        client = server.client(timeout=60.0)
        client.login("sender", "sender-pw", listen=False)
        before = rss_kib(server.proc.pid)
        data = b"".join(json.dumps({"type": "message", "to": f"user{i % USERS:03d}",
                                    "text": f"{i:06d}" + "x" * (TEXT - 6)}).encode() + b"\n"
                        for i in range(USERS * PER_USER))
        client.send_raw(data)
        for _ in range(USERS * PER_USER):
            client.expect("stored")
        after = rss_kib(server.proc.pid)
        client.close()
    finally:
        server.stop()
    return {"messages": USERS * PER_USER, "rss_before_kib": before, "rss_after_kib": after,
            "growth_kib": after - before}


def run() -> dict:
    from tests.bench.store_bench import drain_login
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mailbox-memory-"))
    try:
        drains = []
        for n in range(3):
            (folder / f"drain{n}").mkdir()
            drains.append(drain_login(str(folder / f"drain{n}"), "FULL")["login_to_last_message_ms"])
        return {"text_chars": TEXT, "restart": restart(folder), "live": live(folder),
                "drain_login_1000_ms": drains}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
