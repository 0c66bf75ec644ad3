"""A big chat against the real processes: thousands of users with Cyrillic and CJK names, and nobody cut off.

The crowd are the bench's load generators (tests/bench/loadgen.py: thousands of version 2 clients in two
processes, named ``Пользователь<k>`` and ``用户<k>号``); the last three users are two real clients
(client_main.py on pipes) and a watcher that speaks version 3 from a socket and measures every line it gets.
``whoelse`` shows all of them, ``whoelsesince`` too, who else is online comes right after the watcher's
welcome, and when the crowd logs out at once every other user hears of each: at 10,000 users on one server,
and at 4,000 on a cluster of two nodes (the crowd on one, the others on the other). The server once sent
``whoelse`` at 10,000 such users as one frame of 520 KB, and the client hung up on it (``Bad frame from
server: frame longer than 65536 bytes``), as on every presence frame of a mass logout.
"""
from __future__ import annotations

import time

import pytest

from reactor.framing import MAX_FRAME
from tests.bench.common import UNLIMITED, password, user_name
from tests.bench.loadgen import LoadGenerators
from tests.support import ROOT, ClientProcess, ServerProcess, WireClient, cluster_login, coverage_env, logout, wait_for

pytestmark = pytest.mark.e2e   # (the servers are not measured by coverage: they would take twice as long)

NAMES = "cyrillic-cjk"
STORM = 120.0   # seconds the crowd's logins (and their presence notices) may take on a loaded machine


def name(index):
    return user_name(index, NAMES)


def accounts(users):
    return {name(i): password(i) for i in range(users)}


def crowd_logs_in(port, crowd):
    """``crowd`` users (0 .. crowd - 1) logged in to the server on ``port``, every presence notice of their
    storm delivered; the load generators."""
    gens = LoadGenerators(2, port, crowd, cwd=str(ROOT), env=coverage_env(measured=False), names=NAMES)
    try:
        replies = gens.command("login", wait=STORM + 30, concurrency=200, within=STORM)
        assert sum(r["ok"] for r in replies) == crowd, [e for r in replies for e in r["errors"]]
        expected = crowd * (crowd - 1) // 2   # each hears of those who came after it
        wait_for(lambda: sum(r["lines"] for r in gens.command("lines")) >= expected, timeout=STORM,
                 interval=0.1, what="the storm's presence notices")
        assert sum(r["lost"] for r in gens.command("lines")) == 0
    except BaseException:
        gens.close()
        raise
    return gens


class Watcher(WireClient):
    """A version 3 client on a socket: what it is told, frame by frame, the longest line noted."""

    def __init__(self, server, index):
        super().__init__(server.host, server.port, hello=False)
        self.send({"type": "hello", "version": 3})
        hello = self.recv()
        assert (hello["type"], hello["version"]) == ("hello", 3), hello
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


def gathered(ask, enough, what):
    """What ``ask()`` answers, gathered until ``enough(all of it)`` (a node hears of another's users through
    the engine: later than that node's own users hear)."""
    got = []
    wait_for(lambda: got.extend(ask()) or enough(got), interval=0.05, what=what)
    return got


def big_chat(crowd_server, server, users):
    """The crowd (all but the last three of ``users``) on ``crowd_server``, the real clients and the watcher
    on ``server``: everyone sees everyone, and a mass logout of the crowd reaches the others. Figures."""
    crowd = users - 3
    yoda, hans, watcher = crowd, crowd + 1, crowd + 2   # their indexes
    everyone = set(accounts(users))
    crowds = {name(i) for i in range(crowd)}
    gens, clients = None, []
    try:
        started = time.monotonic()
        gens = crowd_logs_in(crowd_server.port, crowd)
        stormed = time.monotonic()
        clients = [ClientProcess(server.host, server.port) for _ in range(2)]
        for index, client in zip((yoda, hans), clients, strict=True):
            client.login(name(index), password(index))
        lines_before_barrier(clients[0])   # (what it showed of hans's login)
        others = sorted(everyone - {name(yoda)} - {name(watcher)})

        def whoelse():   # (on a cluster, asked again until this node has heard of every login on the other)
            clients[0].type("whoelse")
            shown = lines_before_barrier(clients[0])
            assert set(shown) <= set(others) and len(shown) == len(set(shown)), "not the users online"
            return shown == others
        wait_for(whoelse, interval=0.05, what="whoelse showing everyone")

        watching = Watcher(server, watcher)
        told = watching.until_pong()   # right after its welcome: who else is online, in pages
        assert {f["type"] for f in told} == {"online"} and len(told) > 1
        assert sorted(u for f in told for u in f["users"]) == sorted(everyone - {name(watcher)})
        for client in clients:   # (what they showed of the watcher's login)
            lines_before_barrier(client)
        watching.send({"type": "whoelse"})
        pages = watching.until_pong()
        assert [f.get("more") for f in pages] == [True] * (len(pages) - 1) + [None]
        assert [u for f in pages for u in f["names"]] == sorted(everyone - {name(watcher)})
        figures = {"whoelse frames": len(pages), "longest line": watching.longest}

        left = gens.command("logout", wait=STORM + 30, within=STORM)   # the crowd, all at once
        assert sum(r["left"] for r in left) == crowd
        for client in clients:
            gone = gathered(lambda client=client: [line for line in lines_before_barrier(client)
                                                   if line.endswith(" logged out")],
                            lambda got: len(got) >= crowd, "the logouts shown")
            assert sorted(gone) == sorted(f"{user} logged out" for user in crowds)
        notices = gathered(lambda: [f for f in watching.until_pong() if f["type"] == "presence"],
                           lambda got: sum(len(f["users"]) for f in got) >= crowd, "the logouts told")
        assert {f["online"] for f in notices} == {False} and len(notices) > 1
        assert sorted(u for f in notices for u in f["users"]) == sorted(crowds)
        figures["logout frames"] = len(notices)

        clients[1].type("whoelsesince 600")
        assert lines_before_barrier(clients[1]) == sorted(everyone - {name(hans)})
        clients[0].type("whoelse")
        assert lines_before_barrier(clients[0]) == sorted([name(hans), name(watcher)])
        assert watching.longest <= MAX_FRAME
        for client in clients:
            client.type("logout")
            assert client.wait() == 0
            assert "Bad frame" not in client.text() and "Connection to server lost" not in client.text()
        figures.update(storm=f"{stormed - started:.1f} s", all=f"{time.monotonic() - started:.1f} s")
        return figures
    finally:
        for client in clients:
            client.kill()
        if gens is not None:
            gens.close()


def test_ten_thousand_cyrillic_and_cjk_users_see_each_other_and_a_mass_logout_reaches_everyone(tmp_path):
    server = ServerProcess(tmp_path, timeout=600, accounts=accounts(10_000), measured=False,
                           extra=[*UNLIMITED, "--log-level", "WARNING"])
    try:
        figures = big_chat(server, server, 10_000)
    finally:
        server.stop()
    print(f"\n10,000 users, one server: {figures}")


def test_on_a_cluster_the_users_of_one_node_see_a_crowd_on_another_and_hear_it_leave(tmp_path, engine):
    nodes = []
    try:
        for node in ("a", "b"):
            directory = tmp_path / node
            directory.mkdir()
            nodes.append(ServerProcess(directory, timeout=600, accounts=accounts(4_000), measured=False, extra=[
                *UNLIMITED, "--log-level", "INFO", "--cluster", f"redis://127.0.0.1:{engine.port}",
                "--node-id", node]))
        for node in nodes:   # a login before its node joined would be told try_again
            wait_for(lambda node=node: " joined (epoch" in node.log(), what="the node joined")
        # A new engine decides no login for a lease (it cannot tell "new" from "lost its state"): hans logs in
        # once it does, and out again, before the crowd comes.
        probe = WireClient(nodes[1].host, nodes[1].port)
        cluster_login(probe, name(3_998), password(3_998))
        logout(probe)
        figures = big_chat(nodes[0], nodes[1], 4_000)
    finally:
        for node in nodes:
            node.stop()
    print(f"\n4,000 users, two nodes: {figures}")
