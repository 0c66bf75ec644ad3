"""Fixtures shared by the test modules (helpers to import, such as ``run_until``, live in tests/support.py)."""
import pytest

from reactor.loop import EventLoop
from tests.redis_binary import EngineProcess
from tests.support import FakeClock, World


@pytest.fixture
def loop():
    """An event loop on the real clock, closed after the test."""
    lp = EventLoop()
    yield lp
    lp.close()


@pytest.fixture
def clock():
    """An injected clock at 1000.0 that moves only when the test sets ``clock.now``."""
    return FakeClock()


@pytest.fixture
def w():
    """A ``World``: the server's rules with the store that keeps their messages' texts (tests/support.py)."""
    return World()


@pytest.fixture
def engine():
    """A Valkey/Redis engine on a free loopback port (tests/redis_binary.py), stopped after the test."""
    process = EngineProcess().start()
    yield process
    process.stop()
