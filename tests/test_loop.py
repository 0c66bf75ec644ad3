"""The event loop: timers, call_soon, stop, file events, signals, failing callbacks."""
import os
import signal
import socket
import time

import pytest

from reactor.loop import MAX_SELECT_TIMEOUT, EventLoop, NamedTimers
from tests.support import FakeClock, NoWaitSelector, run_until

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


def test_timers_fire_in_deadline_order(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    loop.call_at(1003, fired.append, "c")
    loop.call_at(1001, fired.append, "a")
    loop.call_at(1002, fired.append, "b")
    clock.now = 1002.5
    loop.run_once(timeout=0)
    assert fired == ["a", "b"]
    clock.now = 1003
    loop.run_once(timeout=0)
    assert fired == ["a", "b", "c"]


def test_timer_is_not_early(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    loop.call_later(1.0, fired.append, 1)
    clock.now = 1000.999999
    loop.run_once(timeout=0)
    assert fired == []
    clock.now = 1001.0
    loop.run_once(timeout=0)
    assert fired == [1]


def test_equal_deadlines_keep_scheduling_order(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    for i in range(50):
        loop.call_at(1001, fired.append, i)
    clock.now = 1001
    loop.run_once(timeout=0)
    assert fired == list(range(50))


def test_cancelled_timer_does_not_run(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    h = loop.call_later(1, fired.append, "x")
    loop.call_later(2, fired.append, "y")
    h.cancel()
    h.cancel()  # twice is harmless
    clock.now = 1005
    loop.run_once(timeout=0)
    assert fired == ["y"]
    assert loop.pending_timers == 0


def test_cancel_after_firing_is_harmless(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    h = loop.call_later(1, fired.append, "x")
    clock.now = 1001
    loop.run_once(timeout=0)
    h.cancel()
    assert fired == ["x"]
    assert loop.cancelled_timers == 0 and loop.pending_timers == 0   # it had left the heap: nothing to count


def test_heap_compacts_when_cancelled_timers_pile_up(loop):
    handles = [loop.call_later(100 + i, lambda: None) for i in range(1000)]
    for h in handles[:600]:
        h.cancel()
    assert loop.pending_timers < 1000  # rebuilt, not left to surface
    assert loop.pending_timers >= 400
    assert loop.pending_timers - loop.cancelled_timers == 400   # the live ones, counted right


def test_cancel_during_timer_phase_with_compaction(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    later = [loop.call_at(1010 + i, fired.append, i) for i in range(300)]

    def cancel_all():
        for h in later[:250]:
            h.cancel()

    loop.call_at(1001, cancel_all)
    loop.call_at(1001, fired.append, "same-tick")
    clock.now = 2000
    loop.run_once(timeout=0)
    assert fired == ["same-tick"] + list(range(250, 300))


def test_timer_scheduled_from_a_callback(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []

    def first():
        fired.append("first")
        loop.call_later(0, fired.append, "second")  # due now: runs next iteration, not in this one

    loop.call_at(1000, first)
    loop.run_once(timeout=0)
    assert fired == ["first"]
    loop.run_once(timeout=0)
    assert fired == ["first", "second"]


def test_call_soon_runs_in_order_and_new_ones_wait(loop):
    fired = []

    def a():
        fired.append("a")
        loop.call_soon(fired.append, "c")

    loop.call_soon(a)
    loop.call_soon(fired.append, "b")
    h = loop.call_soon(fired.append, "cancelled")
    h.cancel()
    loop.run_once(timeout=0)
    assert fired == ["a", "b"]
    loop.run_once(timeout=0)
    assert fired == ["a", "b", "c"]


def test_stop_from_a_callback_ends_run(loop):
    fired = []
    loop.call_soon(fired.append, 1)
    loop.call_later(0.01, loop.stop)
    loop.call_later(10, fired.append, "never")
    loop.run()
    assert fired == [1]


def test_a_raising_callback_is_logged_and_the_loop_goes_on(loop, caplog):
    fired = []

    def boom():
        raise RuntimeError("boom")

    loop.call_soon(boom)
    loop.call_soon(fired.append, "after")
    loop.run_once(timeout=0)
    assert fired == ["after"]
    assert "boom" in caplog.text


def test_raising_file_callbacks_are_logged_and_the_others_still_run(loop, caplog):
    """A reader that raises does not keep its fd's writer from running, nor a writer the next fd's events."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    b.send(b"x")
    d.send(b"y")
    ran = []

    def boom(what):
        def callback():
            ran.append(what)
            raise RuntimeError(f"boom {what}")
        return callback

    loop.add_reader(a, boom("reader"))
    loop.add_writer(a, boom("writer"))
    loop.add_reader(c, lambda: ran.append(c.recv(1)))
    loop.run_once(timeout=0)
    assert sorted(map(str, ran)) == ["b'y'", "reader", "writer"]
    assert "boom reader" in caplog.text and "boom writer" in caplog.text
    for sock in (a, c):
        loop.remove_reader(sock)
    loop.remove_writer(a)
    for sock in (a, b, c, d):
        sock.close()


def test_before_sleep_hook_runs_each_iteration(loop):
    calls = []
    loop.add_before_sleep(lambda: calls.append(1))
    loop.run_once(timeout=0)
    loop.run_once(timeout=0)
    assert calls == [1, 1]


def test_readers_and_writers_on_a_socketpair(loop):
    a, b = socket.socketpair()
    got = []
    loop.add_reader(b, lambda: got.append(b.recv(100)))
    writable = []
    loop.add_writer(a, lambda: writable.append(1))
    run_until(loop, lambda: writable)
    loop.remove_writer(a)
    a.send(b"hello")
    run_until(loop, lambda: got)
    assert got == [b"hello"]
    loop.remove_reader(b)
    loop.remove_reader(b)  # removing twice is harmless
    a.send(b"more")
    loop.run_once(timeout=0.01)
    assert got == [b"hello"]
    a.close()
    b.close()


def test_reader_and_writer_on_the_same_fd(loop):
    a, b = socket.socketpair()
    events = []
    loop.add_reader(a, lambda: events.append(("r", a.recv(10))))
    loop.add_writer(a, lambda: events.append("w"))
    b.send(b"x")
    run_until(loop, lambda: any(isinstance(e, tuple) for e in events))
    loop.remove_writer(a)
    n = len(events)
    b.send(b"y")
    run_until(loop, lambda: ("r", b"y") in events)
    assert "w" not in events[n:]
    loop.remove_reader(a)
    a.close()
    b.close()


def test_callback_removing_another_ready_fd_is_safe(loop):
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    got = []

    def first():
        got.append("first")
        loop.remove_reader(b2)

    def second():
        got.append("second")

    loop.add_reader(b1, first)
    loop.add_reader(b2, second)
    a1.send(b"x")
    a2.send(b"x")
    loop.run_once(timeout=1)
    # whichever runs first, the removed one must not run afterwards in the same batch
    assert got in (["first"], ["second", "first"])
    loop.remove_reader(b1)
    for s in (a1, b1, a2, b2):
        s.close()


def test_pipe_reader(loop):
    r, w = os.pipe()
    got = []
    loop.add_reader(r, lambda: got.append(os.read(r, 100)))
    os.write(w, b"line\n")
    run_until(loop, lambda: got)
    assert got == [b"line\n"]
    loop.remove_reader(r)
    os.close(r)
    os.close(w)


def test_a_file_the_selector_refuses_leaves_no_trace(loop, tmp_path):
    path = tmp_path / "plain-file"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    stale = []
    with pytest.raises(PermissionError):          # epoll cannot watch a regular file
        loop.add_reader(fd, lambda: stale.append(True))
    os.close(fd)
    a, b = socket.socketpair()                    # takes the same descriptor number
    assert a.fileno() == fd
    written = []
    loop.add_writer(a, lambda: written.append(True))
    b.send(b"x")
    run_until(loop, lambda: written)
    loop.run_once(timeout=0.05)
    assert stale == []                            # the refused reader is not called for the new file
    loop.remove_writer(a)
    a.close()
    b.close()


def test_signal_arrives_as_a_callback(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.append("usr1"))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        run_until(loop, lambda: got)
        assert got == ["usr1"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_sigterm_stops_the_loop(loop):
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)
    guard = loop.call_later(5, pytest.fail, "SIGTERM did not stop the loop")
    loop.run()
    guard.cancel()


def test_named_timers_replace_cancel_and_clear(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    timers = NamedTimers(loop, fired.append)
    timers.set("a", 1001)
    timers.set("a", 1003)          # replaces, never fires twice
    timers.set("b", 1002)
    timers.set("c", 1002)
    timers.cancel("c")
    timers.cancel("never set")
    clock.now = 1002.5
    loop.run_once(timeout=0)
    assert fired == [["b"]] and len(timers) == 1
    clock.now = 1003
    loop.run_once(timeout=0)
    assert fired == [["b"], ["a"]] and len(timers) == 0
    timers.set("d", 1004)
    timers.clear()
    clock.now = 1005
    loop.run_once(timeout=0)
    assert fired == [["b"], ["a"]] and len(timers) == 0


def test_named_timers_due_together_fire_together_in_deadline_order(loop):
    clock = FakeClock()
    loop.time = clock
    fired = []
    timers = NamedTimers(loop, fired.append)
    for i in range(5):
        timers.set(("idle", i), 1001.0 - i / 10)
    timers.set("later", 1010)
    timers.set("earlier still", 1000.5)   # arms the loop timer earlier
    clock.now = 1001
    loop.run_once(timeout=0)
    assert fired == [["earlier still", ("idle", 4), ("idle", 3), ("idle", 2), ("idle", 1), ("idle", 0)]]
    assert loop.pending_timers >= 1 and len(timers) == 1
    clock.now = 1010
    loop.run_once(timeout=0)
    assert fired[-1] == ["later"]


def test_named_timers_keep_their_heap_small_under_churn(loop):
    timers = NamedTimers(loop, lambda keys: None)
    for i in range(10_000):
        timers.set("busy", 2000.0 + i)     # one key re-armed again and again
    assert len(timers) == 1 and timers.pending < 200


@pytest.mark.parametrize("far", [30 * 24 * 3600, 1e12])
def test_a_far_deadline_never_overflows_the_wait(loop, far):
    """select() takes at most ~24.8 days (a 32-bit count of ms); the wait is clamped to a day as in asyncio."""
    a, b = socket.socketpair()
    got = []
    loop.add_reader(b, lambda: got.append(b.recv(10)))
    a.send(b"x")                         # ready at once: the clamped wait returns immediately
    loop.call_later(far, got.append, "far")
    loop.run_once()                      # the old loop raised OverflowError: timeout is too large
    assert got == [b"x"]
    a.send(b"y")
    loop.run_once(timeout=far)           # a caller's long cap is clamped too
    assert got == [b"x", b"y"]
    loop.remove_reader(b)
    a.close()
    b.close()


def test_the_wait_is_at_most_a_day():
    selector = NoWaitSelector()
    loop = EventLoop(selector)
    loop.call_later(30 * 24 * 3600, lambda: None)
    loop.run_once()
    loop.close()
    assert selector.waits == [MAX_SELECT_TIMEOUT] and MAX_SELECT_TIMEOUT == 24 * 3600


def test_turn_stats_measure_each_turn_between_waits():
    """A turn is the work between two waits: here a ready callback that takes 6 ms, then one that takes none."""
    loop = EventLoop(turn_stats=True)
    loop.call_soon(time.sleep, 0.006)
    loop.run_once(timeout=0)   # the first wait ends, the 6 ms callback runs
    loop.call_soon(lambda: None)
    loop.run_once(timeout=0)   # ... its turn is counted at the next wait
    loop.run_once(timeout=0)
    stats = loop.turn_stats
    loop.close()
    assert stats is not None and stats.turns == 2
    assert stats.longest >= 0.006 and stats.longest_cpu < stats.longest   # a sleep takes no CPU time
    bands = stats.summary()["bands"]
    assert sum(bands.values()) == 2 and bands["<=10ms"] + bands["<=50ms"] + bands[">50ms"] >= 1
    summary = stats.summary()
    assert summary["max_ms"] == stats.longest * 1e3


def test_no_turn_stats_unless_asked(loop):
    loop.call_soon(lambda: None)
    loop.run_once(timeout=0)
    assert loop.turn_stats is None
