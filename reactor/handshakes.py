"""What a TLS server's handshakes may cost it: how many start per source address, how many run at once, how many
start in one loop turn.

A server's costly part of a TLS handshake is its answer to the ClientHello (a key exchange and a signature: the
turn that answers one takes 0.3 ms here with an EC P-256 key, more with RSA), and from then until the handshake
is done the TLS library holds about 45 KiB for it (a 17 KiB read buffer, a 21 KiB message buffer, the session:
measured by RSS with 1,000 of them). Before that a stranger holds only the bytes of its hello, which
``reactor.tls`` reads by hand (``ClientHelloReader``). So ``Handshakes``, one per server, lets a handshake go
on past its hello only:

- while the source address has a token left (``AddressBuckets``: ``rate`` a second, at most ``burst`` at
  once, and a refusal costs one too): a connection from an address without one is refused at accept
  (``admit``), before any work, so one address replaying ClientHellos costs the server an accept and a close
  each (9 us), not a handshake: at 1,250 a second, 4% of a core where it was 25%;
- while fewer than ``at_once`` handshakes run, fewer than ``at_once_per_address`` from its address: the
  library's 45 KiB is held by that many strangers at most, whatever the others do (450 strangers from 15
  addresses that each sent a whole hello and then nothing: 40 KiB of RSS each before, 2.3 after);
- while fewer than ``per_turn`` started in this loop turn: a turn answers that many hellos at most (1.2 ms),
  so the users' frames between turns are not held up by a crowd of handshakes.

A handshake that may not start yet waits, holding only its hello, and starts in a later turn (those that came
first, first, as far as the limits per address allow); it is still bound by its stream's handshake deadline.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from .loop import EventLoop

HANDSHAKE_RATE = 10.0        # handshakes a second each source address may start, sustained
HANDSHAKE_BURST = 32         # ... and at once (as many as the strangers one address may have: reactor.server.host)
HANDSHAKES_AT_ONCE = 64      # handshakes past the client's hello at once, in all (45 KiB each: 2.9 MiB)
HANDSHAKES_AT_ONCE_PER_ADDRESS = 4   # ... from one source address
HANDSHAKES_PER_TURN = 4      # handshakes started in one loop turn (0.3 ms each)
MAX_ADDRESSES = 4096         # addresses whose buckets are told apart; past that, new ones share one
SHARED = ""                  # the bucket they share


class AddressBuckets:
    """A token bucket per source address: ``rate`` tokens a second, at most ``burst``; sans-I/O (the time is given).

    A refusal costs a token too, down to ``-burst``: an address that keeps asking faster than ``rate`` gets
    nothing at all until it slows down (a flooder's 1,250 hellos a second got 10 handshakes a second through
    before, 0.4 ms each, and those turns were most of what a bystander's p99 lost), while one that asks now
    and then gets what it asks.

    At most ``max_addresses`` buckets are kept: a full bucket says nothing an absent one does not, so those
    go first; if all are in use, a new address draws on one bucket shared by all such.
    """

    __slots__ = ("_rate", "_burst", "_max", "_buckets")

    def __init__(self, rate: float, burst: int, max_addresses: int = MAX_ADDRESSES) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}   # address -> (tokens, when counted)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> bool:
        """Take a token from ``address``'s bucket; False if it has none left (``rate`` 0: always True)."""
        if not self._rate:
            return True
        buckets = self._buckets
        entry = buckets.get(address)
        if entry is None:
            if len(buckets) >= self._max:
                self._forget_full(now)
                if len(buckets) >= self._max:
                    address = SHARED
                    entry = buckets.get(SHARED)
        tokens = self._burst if entry is None else min(self._burst, entry[0] + (now - entry[1]) * self._rate)
        buckets[address] = (max(tokens - 1.0, -self._burst), now)
        return tokens >= 1.0

    def _forget_full(self, now: float) -> None:
        rate, burst = self._rate, self._burst
        full = [address for address, (tokens, when) in self._buckets.items() if tokens + (now - when) * rate >= burst]
        for address in full:
            del self._buckets[address]


class Handshake:
    """One stream's handshake as ``Handshakes`` sees it: its source address, and how to start it if it waits."""

    __slots__ = ("address", "start", "running", "over")

    def __init__(self, address: str, start: Callable[[], Any]) -> None:
        self.address = address
        self.start = start
        self.running = False   # past its hello: holds a slot
        self.over = False


class Handshakes:
    """The limits on one server's TLS handshakes (see the module's docstring), on ``loop``."""

    def __init__(self, loop: EventLoop, *, rate: float | None = HANDSHAKE_RATE, burst: int = HANDSHAKE_BURST,
                 at_once: int = HANDSHAKES_AT_ONCE, at_once_per_address: int = HANDSHAKES_AT_ONCE_PER_ADDRESS,
                 per_turn: int = HANDSHAKES_PER_TURN, max_addresses: int = MAX_ADDRESSES) -> None:
        self._loop = loop
        self._buckets = AddressBuckets(rate or 0.0, burst, max_addresses)
        self._at_once = at_once
        self._per_address = at_once_per_address
        self._per_turn = per_turn
        self._running: Counter[str] = Counter()   # address -> its handshakes past the hello
        self._running_total = 0
        self._waiting: deque[Handshake] = deque()
        self._started = 0                          # handshakes started in this turn
        loop.add_before_sleep(self._new_turn)

    @property
    def running(self) -> int:
        """Handshakes past the client's hello now."""
        return self._running_total

    @property
    def waiting(self) -> int:
        """Handshakes whose hello is whole, waiting for their turn."""
        return len(self._waiting)

    def admit(self, address: str) -> bool:
        """May a new connection from ``address`` start a handshake (a token from its bucket)?"""
        return self._buckets.take(address, self._loop.time())

    def begin(self, address: str, start: Callable[[], Any]) -> Handshake:
        """A handshake from ``address`` has its whole hello: the result's ``running`` says whether it may go on
        now; if not, ``start()`` is called once it may (from a fresh loop callback, with its slot taken)."""
        handshake = Handshake(address, start)
        if not self._waiting and self._may_start(address):
            self._take_slot(handshake)
        else:
            self._waiting.append(handshake)
        return handshake

    def end(self, handshake: Handshake) -> None:
        """The handshake is over (done, failed, or its stream gone): its slot, or its place in the queue, frees."""
        if handshake.over:
            return
        handshake.over = True
        if handshake.running:
            address = handshake.address
            left = self._running[address] - 1
            if left:
                self._running[address] = left
            else:
                del self._running[address]
            self._running_total -= 1
            if self._waiting:
                self._start_waiting()
        else:
            self._waiting.remove(handshake)

    def _may_start(self, address: str) -> bool:
        return (self._started < self._per_turn and self._running_total < self._at_once
                and self._running[address] < self._per_address)

    def _take_slot(self, handshake: Handshake) -> None:
        handshake.running = True
        self._running[handshake.address] += 1
        self._running_total += 1
        self._started += 1

    def _new_turn(self) -> None:
        self._started = 0
        if self._waiting:
            self._start_waiting()

    def _start_waiting(self) -> None:
        """Start the waiting handshakes that may start, first come first, skipping addresses at their limit."""
        if self._started >= self._per_turn or self._running_total >= self._at_once:
            return
        waiting = self._waiting
        kept: deque[Handshake] = deque()
        while waiting and self._started < self._per_turn and self._running_total < self._at_once:
            handshake = waiting.popleft()
            if self._running[handshake.address] < self._per_address:
                self._take_slot(handshake)
                self._loop.call_soon(handshake.start)
            else:
                kept.append(handshake)
        kept.extend(waiting)
        self._waiting = kept
