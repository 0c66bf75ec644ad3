"""A big chat against the real processes: 10,000 users with Cyrillic and CJK names, and nobody is cut off.

The crowd are the bench's load generators (tests/bench/loadgen.py: thousands of version 2 clients in two
processes, named ``Пользователь<k>`` and ``用户<k>号``); the last users are two real clients (client_main.py on
pipes) and a watcher that speaks version 3 from a socket and measures every line. ``whoelse`` shows all of
them, ``whoelsesince`` too, who else is online comes right after the watcher's welcome, and when the crowd
logs out at once every other user hears of each. The server once sent ``whoelse`` at 10,000 such users as one
frame of 520 KB, and the client hung up on it (``Bad frame from server: frame longer than 65536 bytes``).
"""
from __future__ import annotations

import os
import time

import pytest

from reactor.framing import MAX_FRAME
from tests.bench.common import UNLIMITED, password, user_name
from tests.bench.loadgen import LoadGenerators
from tests.support import ROOT, ClientProcess, ServerProcess, WireClient, coverage_env, wait_for

pytestmark = pytest.mark.e2e

USERS = 10_000
CROWD = USERS - 3   # the load generators' users: 0 .. CROWD - 1; then yoda, hans and the watcher
NAMES = "cyrillic-cjk"
STORM = 120.0       # seconds the crowd's logins (and their presence notices) may take on a loaded machine


def name(index):
    return user_name(index, NAMES)


def crowd_logs_in(port):
    """The crowd, logged in, every presence notice of its storm delivered; the load generators."""
    env = {k: v for k, v in coverage_env().items() if k != "COVERAGE_PROCESS_START"}   # test code: not measured
    gens = LoadGenerators(2, port, CROWD, cwd=str(ROOT), env=env, names=NAMES)
    try:
        replies = gens.command("login", wait=STORM + 30, concurrency=200, within=STORM)
        assert sum(r["ok"] for r in replies) == CROWD, [e for r in replies for e in r["errors"]]
        expected = CROWD * (CROWD - 1) // 2   # each hears of those who came after it
        wait_for(lambda: sum(r["lines"] for r in gens.command("lines")) >= expected, timeout=STORM,
                 interval=0.1, what="the storm's presence notices")
        assert sum(r["lost"] for r in gens.command("lines")) == 0
    except BaseException:
        gens.close()
        raise
    return gens


class Watcher(WireClient):
    """A version 3 client on a socket: what it is told, frame by frame, each line's length noted."""

    def __init__(self, server, index):
        super().__init__(server.host, server.port, hello=False)
        self.send({"type": "hello", "version": 3})
        assert self.recv() == {"type": "hello", "version": 3}
        self.login(name(index), password(index))

    def until_pong(self):
        """Every frame up to the answer to a ping sent now (the server answers in order)."""
        self.send({"type": "ping"})
        frames = []
        while (frame := self.recv()) != {"type": "pong"}:
            frames.append(frame)
        return frames


def lines_before_barrier(client):
    """What ``client`` showed up to the answer to a question asked now, line by line."""
    return [line for line in client.barrier().splitlines() if line]


def test_ten_thousand_cyrillic_and_cjk_users_see_each_other_and_a_mass_logout_reaches_everyone(tmp_path):
    accounts = {name(i): password(i) for i in range(USERS)}
    server = ServerProcess(tmp_path, timeout=600, accounts=accounts, extra=[*UNLIMITED, "--log-level", "WARNING"])
    gens, clients = None, []
    try:
        started = time.monotonic()
        gens = crowd_logs_in(server.port)
        stormed = time.monotonic()
        yoda, hans = (ClientProcess(server.host, server.port, cwd=tmp_path) for _ in range(2))
        clients += [yoda, hans]
        for index, client in ((CROWD, yoda), (CROWD + 1, hans)):
            client.login(name(index), password(index))
        watcher = Watcher(server, CROWD + 2)
        for client in clients:   # (what they showed of each other's logins)
            lines_before_barrier(client)
        everyone = set(accounts)
        crowd = {name(i) for i in range(CROWD)}

        told = watcher.until_pong()   # right after its welcome: who else is online, in pages
        assert {f["type"] for f in told} == {"online"} and len(told) > 1
        assert sorted(u for f in told for u in f["users"]) == sorted(everyone - {name(CROWD + 2)})

        yoda.type("whoelse")
        assert lines_before_barrier(yoda) == sorted(everyone - {name(CROWD)})
        watcher.send({"type": "whoelse"})
        pages = watcher.until_pong()
        assert [f.get("more") for f in pages] == [True] * (len(pages) - 1) + [None]
        assert [u for f in pages for u in f["names"]] == sorted(everyone - {name(CROWD + 2)})
        whoelse = (len(pages), watcher.longest)

        left = gens.command("logout", wait=STORM + 30, within=STORM)   # the crowd, all at once
        assert sum(r["left"] for r in left) == CROWD
        for client in (yoda, hans):
            gone = [line for line in lines_before_barrier(client) if line.endswith(" logged out")]
            assert sorted(gone) == sorted(f"{user} logged out" for user in crowd)
        notices = [f for f in watcher.until_pong() if f["type"] == "presence"]
        assert {f["online"] for f in notices} == {False} and len(notices) > 1
        assert sorted(u for f in notices for u in f["users"]) == sorted(crowd)

        hans.type("whoelsesince 600")
        assert lines_before_barrier(hans) == sorted(everyone - {name(CROWD + 1)})
        yoda.type("whoelse")
        assert lines_before_barrier(yoda) == sorted([name(CROWD + 1), name(CROWD + 2)])
        assert watcher.longest <= MAX_FRAME
        for client in (yoda, hans):
            client.type("logout")
            assert client.wait() == 0
            assert "Bad frame" not in client.text() and "Connection to server lost" not in client.text()
        print(f"\n{USERS:,} users: storm {stormed - started:.1f} s; whoelse in {whoelse[0]} frames, the longest "
              f"line {whoelse[1]:,} bytes; the mass logout in {len(notices)} presence frames; in all "
              f"{time.monotonic() - started:.1f} s (load generators' CPU {sum(gens.cpu_seconds()):.1f} s, "
              f"this machine's {os.cpu_count()} cores)")
    finally:
        for client in clients:
            client.kill()
        if gens is not None:
            gens.close()
        server.stop()
