"""Fixtures shared by the test modules (helpers to import, such as ``run_until``, live in tests/support.py)."""
import datetime
import socket

import pytest
import trustme

from reactor.framing import JsonLines
from reactor.loop import EventLoop
from reactor.stream import Stream
from tests.redis_binary import EngineProcess
from tests.support import Cluster, FakeClock, Recorder, World


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


@pytest.fixture
def cluster(tmp_path, engine):
    """Three real nodes on ``engine``: a and b sharing one port, c on its own (``Cluster`` in tests/support.py)."""
    nodes = Cluster(tmp_path, engine)
    yield nodes
    nodes.stop()


@pytest.fixture
def pair(loop):
    """A Stream with JSON lines on one end of a socketpair (its frames to a Recorder), the raw socket on the other:
    (stream, raw socket, recorder)."""
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec))
    yield s, b, rec
    b.close()
    s.abort()


# -- TLS: certificates made fresh for each test module (trustme), so nothing in the repository expires --------

@pytest.fixture(scope="module")
def ca():
    """A certificate authority of the test module's own."""
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(tmp_path_factory, ca):
    """PEM files: the CA, a good server certificate and key, an expired one, one that expires in 5 days, one for
    another host, another CA."""
    folder = tmp_path_factory.mktemp("certs")
    now = datetime.datetime.now(datetime.UTC)
    paths = {"ca": folder / "ca.pem", "other_ca": folder / "other-ca.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    trustme.CA().cert_pem.write_to_path(str(paths["other_ca"]))
    for name, cert in (("good", ca.issue_cert("localhost", "127.0.0.1")),
                       ("expired", ca.issue_cert("localhost", "127.0.0.1", not_before=now - datetime.timedelta(days=30),
                                                 not_after=now - datetime.timedelta(days=1))),
                       ("soon", ca.issue_cert("localhost", "127.0.0.1", not_after=now + datetime.timedelta(days=5))),
                       ("other_host", ca.issue_cert("chat.example.org"))):
        paths[name] = folder / f"{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(paths[name]))
    return paths
