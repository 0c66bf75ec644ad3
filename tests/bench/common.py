"""Small helpers shared by the bench hosts, the load generator and the runner."""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from reactor.framing import encode
from reactor.server.durability import with_texts
from reactor.server.effects import (
    STORE_CHANGES,
    CheckPassword,
    HashPassword,
    LoggedIn,
    LoginFailed,
    NoteSession,
    ReadHistory,
    Remember,
    SendBatch,
    SendStored,
    SetPassword,
)
from reactor.server.store import MemoryStore

if TYPE_CHECKING:
    from reactor.loop import EventLoop
    from reactor.stream import Stream

LISTEN_BACKLOG = 1024  # every host listens with reactor.stream.listen's backlog
MAX_OUTPUT = 1 << 20   # bytes a host buffers for one peer before it gives up on it (as reactor.stream)


OPEN_FILES_WANTED = 1 << 17   # enough for 50,000 clients and their server in one process each, and more


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise RLIMIT_NOFILE: the hard limit too, up to ``wanted``, where allowed (root, within fs.nr_open),
    else the soft limit to the hard one; returns the new soft limit. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):   # not allowed to raise the hard limit: up to it, then
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy so far, all cores (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]   # user nice system [idle iowait] irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def load_accounts(path: str) -> dict[str, str]:
    """``<username> <password>`` lines, as the bench writes them."""
    accounts = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                name, password = line.split(" ", 1)
                accounts[name] = password
    return accounts


def write_accounts(path: str, count: int, names: str = "ascii") -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(f"{user_name(i, names)} {password(i)}\n" for i in range(count))


NAMES = ("ascii", "cyrillic-cjk")   # how the bench names its users (user_name)


def user_name(index: int, names: str = "ascii") -> str:
    """The name of the bench's user ``index``: ``user<index>``, or (``cyrillic-cjk``) ``Пользователь<index>``
    for an even index and ``用户<index>号`` for an odd one (28 and 12 bytes of UTF-8 at 10,000 users, escaped
    as JSON's ASCII once 76 and 18)."""
    if names == "ascii":
        return f"user{index}"
    if names == "cyrillic-cjk":
        return f"Пользователь{index}" if index % 2 == 0 else f"用户{index}号"
    raise ValueError(f"unknown names {names!r}")


def password(index: int) -> str:
    return f"pw{index}"


def decode_line(line: bytes) -> dict | str:
    """A frame (dict) or why the line is not one, as reactor.framing decides."""
    try:
        frame = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "invalid UTF-8"
    except (ValueError, RecursionError):
        return "invalid JSON"
    return frame if type(frame) is dict else "frame is not a JSON object"


def store_effect(store: MemoryStore, effect: Any, logic: Any = None, now: float = 0.0) -> list[Any]:
    """What the asyncio and threaded bench hosts do alike with an effect that is not I/O, and the effects
    that follow it: stored messages get their texts from ``store`` and store changes go to it (as the
    reactor host without a file); password checks (the bench's accounts are plain: none is ever hashed),
    password changes and the caps on strangers do not happen here. Any other effect is unknown: TypeError."""
    kind = type(effect)
    if kind is SendStored:
        texts = store.texts([frame["id"] for frame in effect.frames])
        return [SendBatch((effect.conn,), tuple(with_texts(effect.frames, texts)))]
    if kind in STORE_CHANGES:
        store.apply(effect)
        return [] if effect.confirm is None else [effect.confirm]
    if kind in (CheckPassword, HashPassword, SetPassword, LoggedIn, LoginFailed):
        return []
    if kind is Remember or kind is NoteSession:   # (a MemoryStore keeps no history)
        store.remember([effect])
        return []
    if kind is ReadHistory:
        if logic is None:
            return []
        return logic.history_read(effect.conn, effect, store.history(effect.owner, effect.peer, effect.count), now)
    raise TypeError(f"unknown effect {effect!r}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


# For the benches that measure the real server: no per-user limits or stranger caps get in the way of the load.
UNLIMITED = ("--rate", "0", "--sender-quota", "0", "--max-strangers", "4096", "--max-strangers-per-address", "4096")


def start_server(workdir: str, credentials: str, block: str, *flags: str) -> tuple[subprocess.Popen, int]:
    """``server_main.py`` on an OS-picked port with ``--state :memory:``, logging errors only, and the port."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(root, "server_main.py"), "0", block, "600", "--credentials", credentials,
         "--state", ":memory:", "--log-level", "ERROR", *flags], cwd=workdir, stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode()   # type: ignore[union-attr]
    if not line.startswith("Server listening on "):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def run_until(loop: EventLoop, done: Callable[[], bool], within: float) -> None:
    """Turn ``loop`` until ``done()``; RuntimeError if that takes over ``within`` seconds."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        loop.run_once(timeout=0.05)


class BenchUser:
    """A bench client on the product's own ``Stream`` that logs in as ``name`` with the password
    ``pw-<name>`` and is ``ready`` at the welcome; a bad frame, or its connection lost while the
    ``bench`` is not ``stopping``, fails the bench."""

    name: str
    bench: Any
    ready: bool

    def log_in(self, stream: Stream, kind: object) -> bool:
        """Answer a login frame of type ``kind`` (False: it is none)."""
        if kind == "hello":
            stream.write(encode({"type": "username", "username": self.name}))
        elif kind == "username_ok":
            stream.write(encode({"type": "password", "password": "pw-" + self.name}))
        elif kind == "welcome":
            self.ready = True
        else:
            return False
        return True

    def frame_error(self, stream: Stream, detail: str) -> None:
        raise RuntimeError(f"{self.name}: bad frame {detail}")

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if not self.bench.stopping:
            raise RuntimeError(f"{self.name}: connection lost: {reason}")
