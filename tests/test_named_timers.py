"""NamedTimers: every live key fires at the first loop iteration at or after its deadline, whatever ``on_fire`` does."""
import random

import pytest

from reactor import loop as loop_module
from reactor.loop import EventLoop, NamedTimers
from tests.support import FakeClock, NoWaitSelector

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


@pytest.fixture
def loop(clock):
    lp = EventLoop()
    lp.time = clock
    yield lp
    lp.close()


def test_a_later_deadline_re_armed_inside_on_fire_does_not_hide_an_earlier_one(loop, clock):
    """The host's case: an active user's deadline comes, is moved later; an idle user's stays between."""
    fired = []

    def on_fire(keys):
        fired.append((clock.now, keys))
        if "active" in keys:
            timers.set("active", clock.now + 10)   # activity moved it: re-armed later

    timers = NamedTimers(loop, on_fire)
    timers.set("active", 1001)
    timers.set("idle", 1002)
    clock.now = 1001
    loop.run_once(timeout=0)
    clock.now = 1002
    loop.run_once(timeout=0)
    assert fired == [(1001, ["active"]), (1002, ["idle"])]


@pytest.mark.parametrize("change", ["cancel", "clear-then-set"])
def test_the_loop_timer_follows_the_earliest_live_key_after_on_fire_changes_things(loop, clock, change):
    fired = []

    def on_fire(keys):
        fired.append((clock.now, keys))
        if keys == ["first"]:
            if change == "cancel":
                timers.cancel("second")
            else:
                timers.clear()
                timers.set("later", 1050)
                timers.set("third", 1003)

    timers = NamedTimers(loop, on_fire)
    timers.set("first", 1001)
    timers.set("second", 1002)
    timers.set("third", 1003)
    for clock.now in (1001, 1002, 1003):
        loop.run_once(timeout=0)
    assert fired == [(1001, ["first"]), (1003, ["third"])]
    assert len(timers) == (0 if change == "cancel" else 1)


def test_a_raising_on_fire_does_not_hide_the_keys_left(loop, clock):
    fired = []

    def on_fire(keys):
        fired.append((clock.now, keys))
        if keys == ["boom"]:
            timers.set("after", 1005)
            raise RuntimeError("boom")

    timers = NamedTimers(loop, on_fire)
    timers.set("boom", 1001)
    timers.set("next", 1002)
    for clock.now in (1001, 1002, 1005):
        loop.run_once(timeout=0)
    assert fired == [(1001, ["boom"]), (1002, ["next"]), (1005, ["after"])]


def test_the_loop_waits_until_the_earliest_key(clock):
    """Nothing due: the selector is asked to wait exactly until the earliest live deadline."""
    selector = NoWaitSelector()
    waits = selector.waits
    loop = EventLoop(selector)
    loop.time = clock
    timers = NamedTimers(loop, lambda keys: timers.set("active", clock.now + 10) if "active" in keys else None)
    timers.set("active", 1001)
    timers.set("idle", 1004)
    clock.now = 1001
    loop.run_once()            # fires "active", moved to 1011
    loop.run_once()
    loop.close()
    assert waits[-1] == pytest.approx(3.0)    # until 1004, not 1011


# -- random interleavings against a model ------------------------------------------------

KEYS = [f"k{i}" for i in range(8)]


class Model:
    """The obviously correct timers: a dict of key -> deadline, and the rule each key must keep."""

    def __init__(self, seed, loop, clock):
        self.rng = random.Random(seed)
        self.clock = clock
        self.loop = loop
        self.deadline: dict = {}        # the live keys
        self.touched: set = set()       # keys set, cancelled or cleared during the current iteration
        self.in_iteration = False
        self.timers = NamedTimers(loop, self.on_fire)
        self.fired: list = []           # (now, key)
        self.errors: list = []          # what on_fire found wrong

    # the operations, applied to both
    def set(self, key, when):
        self.deadline[key] = when
        self.touched.add(key)
        self.timers.set(key, when)

    def cancel(self, key):
        self.deadline.pop(key, None)
        self.touched.add(key)
        self.timers.cancel(key)

    def clear(self):
        self.touched.update(self.deadline)
        self.deadline.clear()
        self.timers.clear()

    def random_op(self):
        rng, now = self.rng, self.clock.now
        roll = rng.random()
        key = rng.choice(KEYS)
        if roll < 0.55:
            when = rng.choice([now, now + rng.choice([0.5, 1, 2]), now + rng.uniform(-1, 5),
                               round(now) + rng.randint(0, 6)])   # equal deadlines, past ones, fresh ones
            self.set(key, when)
        elif roll < 0.9:
            self.cancel(key)
        elif roll < 0.95:
            self.clear()

    def on_fire(self, keys):
        try:
            self.check_fired(keys)
        except AssertionError as exc:   # the loop would only log it
            self.errors.append(exc)
        for _ in range(self.rng.choice([0, 0, 1, 2, 3])):   # the host re-arms, cancels, clears from here
            self.random_op()

    def check_fired(self, keys):
        assert self.in_iteration, "fired outside the loop's timer phase"
        now = self.clock.now
        deadlines = []
        for key in keys:
            assert key in self.deadline, f"{key} fired but it was cancelled, cleared or had fired already"
            assert self.deadline[key] <= now, f"{key} fired at {now}, early for {self.deadline[key]}"
            deadlines.append(self.deadline.pop(key))
            self.touched.add(key)
            self.fired.append((now, key))
        assert deadlines == sorted(deadlines), "keys due together come in deadline order"

    def iteration(self):
        """One loop iteration: every key that was live and due before it started must have fired in it."""
        now = self.clock.now
        due = {k for k, w in self.deadline.items() if w <= now}
        self.touched.clear()
        self.in_iteration = True
        self.loop.run_once(timeout=0)
        self.in_iteration = False
        assert not self.errors, self.errors[0]
        late = {k for k in due if k not in self.touched}   # neither fired nor changed by on_fire
        assert not late, f"at {now}: due keys {sorted(late)} did not fire"

    def advance(self):
        rng, now = self.rng, self.clock.now
        live = sorted(self.deadline.values())
        choices = [now + rng.uniform(0, 2), now + 1e-9]
        if live:
            choices += [live[0], max(now, live[0] - 1e-6), rng.choice(live)]
        self.clock.now = max(now, rng.choice(choices))


@pytest.mark.parametrize("seed", range(200))
def test_random_interleavings_fire_every_key_on_time_once(seed, monkeypatch):
    monkeypatch.setattr(loop_module, "_COMPACT_MIN", seed % 4)   # rebuild the heaps often too
    clock = FakeClock()
    loop = EventLoop()
    loop.time = clock
    model = Model(seed, loop, clock)
    try:
        for _ in range(120):
            for _ in range(model.rng.choice([0, 1, 1, 2, 4])):
                model.random_op()
            model.advance()
            model.iteration()
        assert len(model.timers) == len(model.deadline)
        clock.now += 100                      # the rest all come due: everything live fires
        model.iteration()
        assert model.fired                    # the test exercised firing
    finally:
        loop.close()
