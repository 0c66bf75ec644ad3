"""The simulator (reactor/sim/): fixed seeds hold every invariant; the checks catch what they are there for; a
failing run is shrunk and written down; the same seed makes the same runs."""
import heapq
import json
import re
import subprocess
import sys

import pytest

from reactor import loop as loop_module
from reactor.client.effects import ToServer
from reactor.sim import clients as sim_clients
from reactor.sim.checks import Broken
from reactor.sim.journal import journals_available
from reactor.sim.runner import mode_of, run_seed
from reactor.sim.world import World
from tests.support import ROOT

pytestmark = pytest.mark.sim

# Seeds make test runs (make sim runs seeds without end): even ones the single process, odd ones a cluster.
SEEDS = range(24)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_fixed_seed_breaks_no_invariant(seed):
    outcome = run_seed(seed, nodes=mode_of(seed, "both"), runs=12)
    assert outcome.broken is None, "\n".join([outcome.broken, *outcome.shrunk])
    assert outcome.runs >= 12 and outcome.steps > 100


def test_the_same_seed_makes_the_same_runs():
    first, again = (run_seed(5, nodes=3, runs=6, shrink=False) for _ in range(2))
    assert (first.runs, first.steps) == (again.runs, again.steps)


# -- the checks catch what they are there for ------------------------------------------------


def login(world, user, prepare=None):
    """``user``'s new client, logged in (``prepare(client)`` first, before it has seen anything)."""
    client = world.connect(user)
    if prepare is not None:
        prepare(client)
    client.type(user, world.now)
    client.type(world.passwords[user], world.now)
    world.advance(0.1)
    return client


def test_a_world_carries_a_message_live_and_from_storage():
    world = World(1)
    ann, bob = login(world, "ann"), login(world, "bob")
    ann.type("message bob hello", world.now)
    ann.type("message cat later", world.now)
    world.advance(0.1)
    cat = login(world, "cat")
    shown = {text: [user for _, user, _ in message.shown] for text, message in world.checks.messages.items()}
    assert shown == {"hello": ["bob"], "later": ["cat"]}
    assert cat.active and bob.active
    world.finish()
    world.close()


def test_a_stored_message_shown_again_after_a_logout_breaks_the_run():
    """The client's bug that issue 22 names: the ack of what it showed sent after its logout (as before 190ce05),
    so the server, which reads nothing after a logout, keeps the message and shows it at the next login."""
    world = World(1)
    ann = login(world, "ann")
    ann.type("message bob kept", world.now)
    world.advance(0.1)

    def ack_after_logout(client):
        logic = client.logic
        timer_fired, line = logic.timer_fired, logic.line
        logic.timer_fired = lambda key, now: [] if key == ("ack",) else timer_fired(key, now)

        def typed(text, now):
            effects = line(text, now)
            acks = [e for e in effects if isinstance(e, ToServer) and e.frame.get("type") == "ack"]
            return [e for e in effects if e not in acks] + acks
        logic.line = typed

    bob = login(world, "bob", prepare=ack_after_logout)
    bob.type("logout", world.now)
    world.advance(0.1)
    assert bob.bye == "logout" and world.checks.broken is None
    with pytest.raises(Broken, match="shown stored message 1 .* again: client 2 showed it and logged out"):
        login(world, "bob")
    world.close()


def test_a_timer_hidden_by_a_later_one_breaks_the_run(monkeypatch):
    """NamedTimers as it was before 67c5c7d: a key re-armed later inside on_fire armed the loop timer for its
    own deadline, and the earlier deadlines in the heap waited for it."""

    class Hiding(loop_module.NamedTimers):
        def set(self, key, when):
            self._when[key] = when
            heapq.heappush(self._heap, (when, next(self._seq), key))
            if self._armed is None or when < self._armed.when:
                self._arm(when)

        def _fire(self):
            self._armed = None
            due = self._take_due(self._loop.time())
            if due:
                self._on_fire(due)
            heap, when_of = self._heap, self._when
            while heap and when_of.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)
            if heap and self._armed is None:
                self._arm(heap[0][0])

    monkeypatch.setattr("reactor.server.host.NamedTimers", Hiding)
    outcome = run_seed(0, runs=40, shrink=False)
    late = r"timer \(.*\) (fired at .*s after its deadline|due at .* has not fired at )"
    assert outcome.broken is not None and re.search(late, outcome.broken), outcome.broken
    assert outcome.found is not None and outcome.found[0] <= 40


def test_a_frame_over_the_limit_breaks_the_run(monkeypatch):
    """Three names of 64 characters (60 Cyrillic, 2 bytes each in UTF-8) are over 300 bytes of the roster a
    login brings."""
    monkeypatch.setattr(sim_clients, "MAX_FRAME", 300)
    world = World(1, names="long")
    for user in ("ann", "bob", "cat"):
        login(world, world.names[user])
    with pytest.raises(Broken, match=r"got a frame of [34]\d\d bytes from the server, over the 300 it accepts: "
                                     r"b'\{\"type\":\"online\""):
        login(world, world.names["dan"])
    world.close()


def test_a_failing_run_is_shrunk_and_written_down(monkeypatch, tmp_path):
    monkeypatch.setattr(sim_clients, "MAX_FRAME", 400)
    outcome = run_seed(0, runs=60, steps=25, journal_dir=str(tmp_path), names="long", sizes=("short",))
    assert outcome.broken is not None and "over the 400 it accepts" in outcome.broken
    assert 2 <= len(outcome.shrunk) <= 10 and outcome.found is not None
    lines = [json.loads(line) for line in (tmp_path / "seed-0.sim.jsonl").read_text().splitlines()]
    header, rest = lines[0], lines[1:]
    assert header["sim"] == "reactor-chat" and header["seed"] == 0 and "over the 400" in header["broken"]
    steps = [line for line in rest if "step" in line and not line["what"].startswith("the end")]
    events = [line for line in rest if "event" in line]
    assert len(steps) == len(outcome.shrunk) - 1   # (the first, start, is no step)
    assert events[-1]["event"] == header["failing"]["event"] and events[0]["op"] == "connected"
    if journals_available():
        journal = tmp_path / f"seed-0-node-{header['failing']['node']}.journal"
        assert journal.exists() and str(journal) in outcome.written


@pytest.mark.e2e
def test_the_command_runs_a_seed_and_sums_up():
    done = subprocess.run([sys.executable, "-m", "reactor.sim", "--seed", "2", "--runs", "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sim: 1 seeds, " in done.stdout and "seeds/s" in done.stdout and "0 broken" in done.stdout
