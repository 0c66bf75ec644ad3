"""A stand-in chat server for the operator's tools, until the hosts carry them: the real loop, the metrics
endpoint and the admin socket over a fake chat (``FakeChat``: users, accounts, locks, the counts).

``python -m tests.ops_harness [--users N] [--metrics HOST:PORT] [--admin PATH]`` prints ``metrics HOST PORT``
(with --metrics) then ``ready``, and takes lines on stdin that stand for what users do: ``login NAME``
(a user comes online: counted as a login), ``logout NAME``, ``relay N`` (N messages relayed), ``fail N``
(N wrong passwords). SIGTERM or the end of stdin stops it.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

from reactor.loop import EventLoop
from reactor.ops.admin import AdminServer, WhoRow
from reactor.ops.catalog import chat_registry, loop_turns


class FakeChat:
    """An ``AdminHost`` over a dict of users online, with the counts a host keeps."""

    def __init__(self, users=0, registry=None, node=None):
        self.registry = registry or chat_registry(node)
        self.counts = self.registry.counts
        self.node = node
        self.accounts = {f"user{i}" for i in range(max(users, 10))} | {"alice", "bob"}
        self.online = {}
        self.locked = {}
        self.kicked = []
        self.notices = []
        self.reloads = 0
        self.reload_error = None
        self.fail = None          # an exception every command raises, for a test
        self.who_calls = 0
        for i in range(users):
            self.login(f"user{i}", since=time.time() - 60 - i)

    def login(self, user, since=None):
        self.accounts.add(user)
        self.online[user] = WhoRow(user, f"127.0.0.{1 + len(self.online) % 200}", since or time.time(), 0.0,
                                   len(self.online) % 2 == 0, self.node)
        self.counts.logins_succeeded += 1

    def provide_sources(self, loop=None):
        """The scrape-time figures, as a host would give them."""
        sources = {"users_online": lambda: len(self.online), "connections": lambda: {"user": len(self.online)},
                   "ready": lambda: True, "stored_messages": lambda: 0, "stored_bytes": lambda: 0,
                   "bytes_received": lambda: 0, "bytes_sent": lambda: 0, "password_checks_pending": lambda: 0,
                   "password_helper_restarts": lambda: 0}
        if loop is not None and loop.turn_stats is not None:
            sources["loop_turns"] = lambda: loop_turns(loop.turn_stats)
        for source, callback in sources.items():
            if source in self.registry.sources:
                self.registry.provide(source, callback)

    def _check(self):
        if self.fail is not None:
            raise self.fail

    # -- AdminHost ---------------------------------------------------------

    def who(self):
        self._check()
        self.who_calls += 1
        return list(self.online.values())

    def kick(self, user, reason):
        self._check()
        if user not in self.online:
            return False
        del self.online[user]
        self.kicked.append((user, reason))
        return True

    def lock(self, user, seconds):
        self._check()
        if user not in self.accounts:
            return False
        self.locked[user] = seconds
        self.online.pop(user, None)
        self.counts.lockouts.operator += 1
        return True

    def unlock(self, user):
        self._check()
        return self.locked.pop(user, None) is not None

    def notice(self, text):
        self._check()
        self.notices.append(text)
        return len(self.online)

    def reload(self, done):
        self._check()
        self.reloads += 1
        done(self.reload_error)

    def stats(self):
        self._check()
        return self.registry.samples()


class HarnessProcess:
    """``python -m tests.ops_harness`` as a child process (measured by coverage when the suite is)."""

    def __init__(self, tmp_path: pathlib.Path, *args: str):
        from tests.support import ROOT, coverage_env
        self.log_path = tmp_path / "harness.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.ops_harness", *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=coverage_env(), bufsize=0)   # (unbuffered: select sees every line)
        self.metrics_address = None
        while (line := self.readline()) != "ready":
            word, *rest = line.split()
            assert word == "metrics", line + self.log()
            self.metrics_address = (rest[0], int(rest[1]))

    def readline(self, timeout=20.0) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the harness printed nothing\n" + self.log()
        line = self.proc.stdout.readline().decode().strip()
        assert line, "the harness ended\n" + self.log()
        return line

    def tell(self, line: str) -> None:
        """One line of what users do (``login NAME``, ``relay N``...), once the harness has done it."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        assert self.readline() == f"done {line}", self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self._log.close()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--metrics")
    parser.add_argument("--admin")
    args = parser.parse_args(argv)
    loop = EventLoop(turn_stats=True)
    chat = FakeChat(args.users)
    chat.provide_sources(loop)
    if args.metrics:
        from reactor.ops.http import serve_metrics
        host, _, port = args.metrics.rpartition(":")
        endpoint = serve_metrics(loop, host, int(port), chat.registry.render, lambda: None)
        print("metrics", *endpoint.address[:2], flush=True)
    admin = AdminServer(loop, args.admin, chat, chat.counts.admin_commands) if args.admin else None
    pending = b""

    def on_stdin():
        nonlocal pending
        data = os.read(0, 65536)
        if not data:
            loop.stop()
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            word, _, arg = line.decode().partition(" ")
            if word == "login":
                chat.login(arg)
            elif word == "logout":
                chat.online.pop(arg, None)
            elif word == "relay":
                chat.counts.messages_relayed += int(arg)
            elif word == "fail":
                chat.counts.logins_failed.wrong_password += int(arg)
            print("done", line.decode(), flush=True)

    loop.add_reader(0, on_stdin)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    print("ready", flush=True)
    try:
        loop.run()
    finally:
        if admin is not None:
            admin.close()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
