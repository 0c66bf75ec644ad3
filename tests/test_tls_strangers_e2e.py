"""Strangers attacking the real TLS server's handshake while honest TLS users talk.

Half a ClientHello declaring 131,000 bytes is refused at its header (it held 148 KiB until the handshake
deadline); strangers that send a whole hello and then nothing hold the TLS library's state only a few at once
per address; one address replaying ClientHellos gets few handshakes (every one of them was answered, and a
user's round trip suffered for it). Other machines are played by other loopback addresses (127.x.y.z).
"""
import socket
import ssl

import pytest

from reactor.tls import ILLEGAL_PARAMETER, alert_record
from tests.bench.attacks import round_trips, settled_rss
from tests.bench.common import percentile
from tests.bench.tls_attacks import FLOOD_SOURCE, Flood, client_hello, half_hello
from tests.support import PATIENCE, TLSWireClient, tls_server

pytestmark = [pytest.mark.e2e, pytest.mark.compiled]   # starts the real server; again on the compiled build

STRANGERS, ADDRESSES = 450, 15


@pytest.fixture
def server(tmp_path, certs):
    srv = tls_server(tmp_path, certs["good"], extra=("--rate", "0", "--sender-quota", "0"))
    yield srv
    srv.stop()


@pytest.fixture
def context(certs):
    return ssl.create_default_context(cafile=str(certs["ca"]))


def user(server, context, name):
    client = TLSWireClient(server.host, server.port, context)
    client.login(name)
    return client


def alive(client) -> bool:
    """The server still answers this user (a ping's pong, after whatever was on its way)."""
    client.send({"type": "ping"})
    return client.until("pong")["type"] == "pong"


def strangers_sending(server, data: bytes) -> list[socket.socket]:
    """``STRANGERS`` connections from ``ADDRESSES`` loopback addresses, each having sent ``data``."""
    socks = []
    for i in range(STRANGERS):
        sock = socket.create_connection((server.host, server.port), timeout=PATIENCE,
                                        source_address=(f"127.0.4.{i % ADDRESSES + 1}", 0))
        sock.sendall(data)
        socks.append(sock)
    return socks


def answer(sock: socket.socket) -> bytes:
    """All the server sends until it closes (a reset ends it too)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_450_half_hellos_declaring_131000_bytes_are_refused_at_once_and_pin_no_memory(server, context):
    yoda = user(server, context, "yoda")   # a handshake and a login done: the server's own buffers are made
    idle = settled_rss(server.proc.pid)
    socks = strangers_sending(server, half_hello(131_000))
    try:
        per_stranger = (settled_rss(server.proc.pid) - idle) / STRANGERS
        assert per_stranger < 32, f"{per_stranger:.1f} KiB each"   # KiB; it was 148
        assert {answer(sock) for sock in socks} == {alert_record(ILLEGAL_PARAMETER)}   # each told, and closed
    finally:
        for sock in socks:
            sock.close()
    assert alive(yoda)
    assert user(server, context, "hans").user == "hans"


def test_450_strangers_stalling_after_a_whole_hello_hold_little_and_users_still_log_in(server, context):
    yoda = user(server, context, "yoda")
    idle = settled_rss(server.proc.pid)
    socks = strangers_sending(server, client_hello(context))
    try:
        per_stranger = (settled_rss(server.proc.pid) - idle) / STRANGERS
        assert per_stranger < 16, f"{per_stranger:.1f} KiB each"   # KiB; it was 41: the library's state, each
        assert user(server, context, "hans").user == "hans"   # a handshake from elsewhere still goes on
        assert alive(yoda)
    finally:
        for sock in socks:
            sock.close()


def answered(server, source: str, hello: bytes) -> bool:
    """Whether a ClientHello from ``source`` is answered with a handshake record (not closed unanswered)."""
    with socket.create_connection((server.host, server.port), timeout=PATIENCE, source_address=(source, 0)) as sock:
        try:
            sock.sendall(hello)
            return sock.recv(1) == b"\x16"   # (the server would wait for the rest of the handshake)
        except ConnectionResetError:
            return False


def p(times: list[float], fraction: float) -> float:
    return percentile(sorted(times), fraction)


def test_one_address_replaying_hellos_gets_few_handshakes_and_users_keep_their_pace(server, context):
    """The bystanders' round trips with the flood at the server against the same flood at another process (the
    control: what it costs the machine, shared with the tests of other helpers), in turns. The figures of the
    issue (p99 within 2x of quiet) are the bench's (tests/bench/tls_attacks.py); here p90 within 2x, and p99
    within 2x give or take 5 ms of the scheduler (the old server: p90 14-17 ms, p99 21-35 ms on a loaded machine)."""
    yoda, hans = user(server, context, "yoda"), user(server, context, "hans")
    round_trips(yoda, hans, 50)   # warm
    flood = Flood(server.host, server.port)   # about 1,250 hellos a second from one address
    try:
        assert flood.under_way(PATIENCE)
        for _ in range(6):
            flood.round(yoda, hans, 50, server.proc.pid)
        hello = client_hello(context)
        probes = [answered(server, FLOOD_SOURCE, hello) for _ in range(20)]
        assert sum(probes) <= 3, probes   # the flooder took its address's tokens (all 20 were answered)
        assert answered(server, "127.0.5.2", hello)   # another address is answered
        control, flooded = flood.control, flood.flooded
        assert p(flooded, 0.9) <= 2 * p(control, 0.9) + 0.0005, (p(control, 0.9), p(flooded, 0.9))
        assert p(flooded, 0.99) <= 2 * p(control, 0.99) + 0.005, (p(control, 0.99), p(flooded, 0.99))
    finally:
        sent = flood.stop()
    assert sent > 1000   # it did flood
    assert alive(yoda) and alive(hans)
