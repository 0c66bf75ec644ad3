"""A single-threaded event loop: file readiness and timers, driven by one selector.

Two kinds of event, as in Redis's ae.c: a file object becoming readable or
writable, and a timer coming due. Timers live in a heap with lazy cancellation
(a cancelled handle stays in the heap until it surfaces, and the heap is
rebuilt when cancelled handles outnumber live ones, as asyncio does).
Signals arrive through ``signal.set_wakeup_fd`` and run as ordinary callbacks.

One iteration: before-sleep hooks, wait for files (until the next timer, at
most a day), dispatch file events, run due timers, run the callbacks queued by
``call_soon`` so far. Every callback runs on this one thread, one at a time;
an exception in one is logged and the loop goes on.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

log = logging.getLogger(__name__)

_COMPACT_MIN = 100  # cancelled timers tolerated in the heap before it may be rebuilt
_CATCH_UP_ROUNDS = 4  # NamedTimers: rounds of newly due keys handled before I/O gets its turn
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
MAX_SELECT_TIMEOUT = 24 * 3600  # seconds; select() overflows past ~24.8 days (asyncio clamps the same way)


class Handle:
    """A callback queued by ``call_soon``; ``cancel()`` keeps it from running."""

    __slots__ = ("callback", "args", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHandle(Handle):
    """A callback due at ``when`` (loop time); ``cancel()`` removes it lazily."""

    __slots__ = ("when", "_loop")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...], loop: EventLoop) -> None:
        super().__init__(callback, args)
        self.when = when
        self._loop: EventLoop | None = loop  # None once it has left the heap

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._loop is not None:
                self._loop._timer_cancelled()


class _FileEvents:
    """The reader and writer callbacks registered for one file descriptor, and the mask watched."""

    __slots__ = ("reader", "writer", "mask")

    def __init__(self) -> None:
        self.reader: Callable[[], Any] | None = None
        self.writer: Callable[[], Any] | None = None
        self.mask = 0


class TurnStats:
    """How long the loop's turns took: the longest, and how many fell in each band of ``BOUNDS``.

    A turn is the loop's work between two waits: the file events, timers and ready
    callbacks after one ``select`` returns, and the before-sleep hooks ahead of the
    next, on ``time.perf_counter`` (the bands too); ``longest_cpu`` is the most CPU time one turn took
    (``time.thread_time``: what the turn's own work cost, not blurred by the process waiting for a core).
    The wait itself is not counted.
    """

    # seconds: the upper bounds of the bands (a ClassVar: compiled, a class constant is otherwise per instance)
    BOUNDS: ClassVar[tuple[float, ...]] = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)

    def __init__(self) -> None:
        self.turns = 0
        self.busy = 0.0        # seconds, all turns together
        self.longest = 0.0     # seconds
        self.longest_cpu = 0.0  # seconds of CPU time
        self.bands = [0] * (len(self.BOUNDS) + 1)   # the last: longer than the last bound

    def record(self, seconds: float, cpu_seconds: float) -> None:
        self.turns += 1
        self.busy += seconds
        if seconds > self.longest:
            self.longest = seconds
        if cpu_seconds > self.longest_cpu:
            self.longest_cpu = cpu_seconds
        self.bands[bisect.bisect_left(self.BOUNDS, seconds)] += 1

    def summary(self) -> dict[str, Any]:
        """The figures as plain data (milliseconds), for a report."""
        labels = [f"<={bound * 1e3:g}ms" for bound in self.BOUNDS] + [f">{self.BOUNDS[-1] * 1e3:g}ms"]
        return {"turns": self.turns, "max_ms": self.longest * 1e3, "max_cpu_ms": self.longest_cpu * 1e3,
                "busy_ms": self.busy * 1e3,
                "bands": dict(zip(labels, self.bands, strict=True))}


class EventLoop:
    """Runs file-event and timer callbacks on the calling thread until stopped.

    With ``turn_stats``, ``turn_stats`` (a ``TurnStats``) measures each turn; without, nothing is timed.
    """

    def __init__(self, selector: selectors.BaseSelector | None = None, *, turn_stats: bool = False) -> None:
        self._selector = selector or selectors.DefaultSelector()
        self._ready: deque[Handle] = deque()
        self._files: dict[int, _FileEvents] = {}
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._cancelled_timers = 0
        self._seq = itertools.count()
        self._before_sleep: list[Callable[[], Any]] = []
        self._stopping = False
        self._signals: dict[int, tuple[Callable[[], Any], Any]] = {}
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self.time = time.monotonic
        self.turn_stats = TurnStats() if turn_stats else None
        self._woke = 0.0       # (with turn_stats) when the last wait ended: perf_counter time, 0: none yet
        self._woke_cpu = 0.0   # ... and the thread's CPU time then

    # -- file events ---------------------------------------------------

    def add_reader(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is readable (replaces any reader)."""
        self._set(fileobj, callback, writer=False)

    def add_writer(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is writable (replaces any writer)."""
        self._set(fileobj, callback, writer=True)

    def watched(self, fileobj: Any) -> int:
        """The events watched for ``fileobj``: a mask of ``selectors.EVENT_READ``/``EVENT_WRITE``, 0 for none."""
        events = self._files.get(fileobj if isinstance(fileobj, int) else fileobj.fileno())
        return 0 if events is None else events.mask

    def remove_reader(self, fileobj: Any) -> None:
        self._set(fileobj, None, writer=False)

    def remove_writer(self, fileobj: Any) -> None:
        self._set(fileobj, None, writer=True)

    def _set(self, fileobj: Any, callback: Callable[[], Any] | None, writer: bool) -> None:
        # Our own fd map: the selector's get_key raises a KeyError that formats repr(fileobj)
        # (two system calls for a socket) for every removal from a stream that is not watched.
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        events = self._files.get(fd)
        if events is None:
            if callback is None:
                return
            events = self._files[fd] = _FileEvents()
        if writer:
            events.writer = callback
        else:
            events.reader = callback
        mask = (selectors.EVENT_READ if events.reader else 0) | (selectors.EVENT_WRITE if events.writer else 0)
        if mask == events.mask:
            return
        if mask == 0:
            del self._files[fd]
            self._selector.unregister(fd)
        elif events.mask == 0:
            try:
                self._selector.register(fd, mask, events)
            except Exception:  # a file epoll refuses (EPERM), a bad fd: leave no trace of it
                del self._files[fd]
                raise
        else:
            self._selector.modify(fd, mask, events)
        events.mask = mask

    # -- time events ---------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` in this iteration's ready phase, in call order."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once ``delay`` seconds have passed."""
        return self.call_at(self.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once the loop time reaches ``when``.

        Timers due at the same time run in the order they were scheduled.
        """
        handle = TimerHandle(when, callback, args, self)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        if self._cancelled_timers > _COMPACT_MIN and self._cancelled_timers * 2 > len(self._timers):
            live = []
            for entry in self._timers:
                if entry[2].cancelled:
                    entry[2]._loop = None
                else:
                    live.append(entry)
            heapq.heapify(live)
            self._timers[:] = live  # in place: run_once may hold the list
            self._cancelled_timers = 0

    def add_before_sleep(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` at the start of every iteration, before waiting for events."""
        self._before_sleep.append(callback)

    # -- signals -------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` as an ordinary loop callback when ``signum`` arrives.

        The process-level handler does nothing; the C-level handler writes
        the signal number to a socket the loop watches.
        """
        if self._wakeup is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
            self._wakeup = (rsock, wsock)
            self.add_reader(rsock, self._read_signals)
        previous = signal.signal(signum, _ignore_signal)
        self._signals[signum] = (callback, previous)

    def remove_signal_handler(self, signum: int) -> None:
        callback, previous = self._signals.pop(signum)
        signal.signal(signum, previous)

    def _read_signals(self) -> None:
        if self._wakeup is None:
            return
        try:
            data = self._wakeup[0].recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            entry = self._signals.get(signum)
            if entry is not None:
                self._ready.append(Handle(entry[0], ()))

    # -- running -------------------------------------------------------

    def stop(self) -> None:
        """Make ``run()`` return once the current iteration is over."""
        self._stopping = True

    def run(self) -> None:
        """Run iterations until ``stop()`` is called."""
        self._stopping = False
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._stopping = False

    def run_once(self, timeout: float | None = None) -> None:
        """One iteration; ``timeout`` caps the wait (``None``: until the next timer)."""
        for hook in self._before_sleep:
            _call(hook, ())
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)[2]._loop = None
            self._cancelled_timers -= 1
        if self._ready or self._stopping:
            timeout = 0
        elif timers:
            wait = max(0.0, timers[0][0] - self.time())
            timeout = wait if timeout is None else min(timeout, wait)
        if timeout is not None:
            timeout = min(timeout, MAX_SELECT_TIMEOUT)  # a far timer: wake up once a day, do not overflow

        stats = self.turn_stats
        if stats is not None:
            if self._woke:
                stats.record(time.perf_counter() - self._woke, time.thread_time() - self._woke_cpu)
            events_ready = self._selector.select(timeout)
            self._woke, self._woke_cpu = time.perf_counter(), time.thread_time()
        else:
            events_ready = self._selector.select(timeout)
        for key, mask in events_ready:
            # _call's work spelled out: one Python call less per file event (110 -> 47 ns; ~9 us per relayed message).
            events = key.data
            if mask & _READ:
                callback = events.reader
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("callback %r raised", callback)
            if mask & _WRITE:
                callback = events.writer
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("callback %r raised", callback)

        if timers and timers[0][0] <= (now := self.time()):
            # Take every due timer off the heap first: one scheduled by these
            # callbacks waits for the next iteration, so I/O is never starved.
            due: list[TimerHandle] = []
            while timers and timers[0][0] <= now:
                handle = heapq.heappop(timers)[2]
                handle._loop = None
                if handle.cancelled:
                    self._cancelled_timers -= 1
                else:
                    due.append(handle)
            for handle in due:
                if not handle.cancelled:
                    _call(handle.callback, handle.args)

        ready = self._ready
        for _ in range(len(ready)):
            queued = ready.popleft()
            if not queued.cancelled:
                _call(queued.callback, queued.args)

    def close(self) -> None:
        """Release the selector and restore signal handlers."""
        for signum in list(self._signals):
            self.remove_signal_handler(signum)
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None
        self._selector.close()

    @property
    def pending_timers(self) -> int:
        """Timers in the heap, cancelled ones included (for tests and figures)."""
        return len(self._timers)

    @property
    def cancelled_timers(self) -> int:
        """Cancelled timers still in the heap (for tests and figures)."""
        return self._cancelled_timers


class NamedTimers:
    """Timers addressed by a key, each key armed at most once; keys due together fire together.

    What the hosts need for the SetTimer/CancelTimer effects. The keys live in a
    heap of their own behind a single loop timer for the earliest deadline, so
    the thousand deadlines one iteration reaches come to ``on_fire`` as one list,
    in deadline order, during the loop's timer phase. Replaced and cancelled
    entries are skipped when they surface, and the heap is rebuilt when they
    pile up.

    The invariant: whenever a live key exists, the loop timer is armed no later
    than the earliest live deadline. ``set`` keeps it by arming earlier; while
    ``_fire`` runs ``on_fire`` (which may set, cancel or clear) nothing is armed,
    and ``_fire`` arms the earliest deadline left when it is done, even if
    ``on_fire`` raised.
    """

    def __init__(self, loop: EventLoop, on_fire: Callable[[list[Any]], Any]) -> None:
        self._loop = loop
        self._on_fire = on_fire
        self._when: dict[Any, float] = {}               # key -> its deadline
        self._heap: list[tuple[float, int, Any]] = []   # (deadline, seq, key); stale ones included
        self._seq = itertools.count()
        self._armed: TimerHandle | None = None          # the loop timer for the earliest deadline
        self._firing = False                            # in _fire: it arms the loop timer at the end

    def __len__(self) -> int:
        return len(self._when)

    @property
    def pending(self) -> int:
        """Entries in the heap, replaced and cancelled ones included (for tests and figures)."""
        return len(self._heap)

    def set(self, key: Any, when: float) -> None:
        """Fire ``key`` at ``when`` (loop time), replacing the deadline it had."""
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        if len(self._heap) > 2 * len(self._when) + _COMPACT_MIN:
            self._heap = [(w, next(self._seq), k) for k, w in self._when.items()]
            heapq.heapify(self._heap)
        if not self._firing and (self._armed is None or when < self._armed.when):
            self._arm(when)

    def cancel(self, key: Any) -> None:
        self._when.pop(key, None)

    def clear(self) -> None:
        self._when.clear()
        self._heap.clear()
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed = None
        self._firing = True
        try:
            for _ in range(_CATCH_UP_ROUNDS):  # deadlines reached while the last ones were handled join them
                due = self._take_due(self._loop.time())
                if not due:
                    break
                self._on_fire(due)
        finally:
            self._firing = False
            heap, when_of = self._heap, self._when
            while heap and when_of.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)
            if heap:
                self._arm(heap[0][0])

    def _take_due(self, now: float) -> list[Any]:
        heap, when_of = self._heap, self._when
        due = []
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if when_of.get(key) == when:
                del when_of[key]
                due.append(key)
        return due


def _call(callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("callback %r raised", callback)


def _ignore_signal(signum: int, frame: Any) -> None:
    """The process-level handler: the wakeup fd already carries the signal."""
