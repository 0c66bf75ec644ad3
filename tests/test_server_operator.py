"""The operator's view of a server on a real loop (``ServerOperator``): the metrics' figures as a scrape reads them,
readiness, and the admin commands carried out on the chat (who, kick, lock, unlock, notice, reload, stats)."""
import socket
import ssl
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.loop import EventLoop
from reactor.server.host import ServerHost, StopOnStoreFailure
from reactor.server.operator import ServerOperator
from reactor.server.reload import AccountsReload
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore, StoreError
from reactor.tls import server_context
from tests.support import ACCOUNTS, LoopPeer, login_peer, run_until, write_credentials

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


class Server:
    """A host, its rules and its operator on a loop of the test's (turns timed, as with --metrics)."""

    def __init__(self, tmp_path, **host_options):
        self.loop = EventLoop(turn_stats=True)
        self.logic = ChatServer(dict(ACCOUNTS), 10.0, 60.0, rate=None)
        self.store = StopOnStoreFailure(MemoryStore(), self.loop)
        self.host = ServerHost(self.loop, self.logic, self.store, **host_options)
        self.host.serve("127.0.0.1", 0)
        self.credentials = write_credentials(tmp_path)
        self.reload = AccountsReload(self.loop, self.credentials, self.host.accounts_changed, dict(ACCOUNTS))
        self.operator = ServerOperator(self.loop, self.host, self.logic, self.reload, store=self.store)
        self.peers = []

    def login(self, user):
        peer = login_peer(self.loop, self.host, user)
        self.peers.append(peer)
        return peer

    def figures(self):
        """The scrape's samples by name and labels (``prometheus_client``'s parser)."""
        families = text_string_to_metric_families(self.operator.metrics.render().decode())
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}

    def close(self):
        for peer in self.peers:
            peer.sock.close()
        self.loop.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def frames_of(loop, peer, kind, count=1):
    run_until(loop, lambda: sum(f["type"] == kind for f in peer.read()) >= count)
    return [f for f in peer.got if f["type"] == kind]


def closed(peer):
    try:
        return peer.sock.recv(1) == b""
    except BlockingIOError:
        return False


def test_who_lists_each_user_with_the_address_seen_since_when_idle_for_how_long_and_tls(server):
    before = time.time()
    server.login("yoda")
    server.login("luke")
    rows = sorted(server.operator.who())
    assert [(r.user, r.address, r.tls, r.node) for r in rows] == [("luke", "127.0.0.1", False, None),
                                                                   ("yoda", "127.0.0.1", False, None)]
    assert all(before - 1 <= r.since <= time.time() + 1 and 0 <= r.idle < 5 for r in rows)


def test_who_iterates_a_snapshot_so_a_logout_between_slices_changes_nothing(server):
    yoda = server.login("yoda")
    server.login("luke")
    rows = server.operator.who()
    yoda.send({"type": "logout"})
    frames_of(server.loop, yoda, "bye")
    assert sorted(r.user for r in rows) == ["luke", "yoda"]


def test_a_kick_ends_the_session_with_the_operators_words_and_the_others_hear_it_left(server):
    yoda, luke = server.login("yoda"), server.login("luke")
    assert server.operator.kick("yoda", "flooding") is True
    assert frames_of(server.loop, yoda, "bye") == [{"type": "bye", "reason": "operator", "text": "flooding"}]
    run_until(server.loop, lambda: closed(yoda))
    assert frames_of(server.loop, luke, "presence") == [{"type": "presence", "user": "yoda", "online": False}]
    assert server.operator.kick("yoda", None) is False   # not online any more
    assert server.operator.kick("nobody", None) is False
    assert server.operator.kick("luke", None) is True
    assert frames_of(server.loop, luke, "bye") == [{"type": "bye", "reason": "operator"}]


def test_a_lock_ends_the_session_refuses_logins_for_its_time_and_unlock_lifts_it(server):
    yoda = server.login("yoda")
    assert server.operator.lock("yoda", 60) is True
    assert frames_of(server.loop, yoda, "bye") == [{"type": "bye", "reason": "operator"}]
    again = LoopPeer(server.host)
    again.send({"type": "hello", "version": 1}, {"type": "username", "username": "yoda"})
    (locked,) = frames_of(server.loop, again, "error")
    assert locked["code"] == "account_locked" and 0 < locked["retry"] <= 60   # the seconds left of the lock
    again.sock.close()
    assert server.operator.lock("nobody", 60) is False
    assert server.logic.counts.lockouts.operator == 1
    assert server.operator.unlock("yoda") is True
    assert server.operator.unlock("yoda") is False   # not locked any more
    server.login("yoda")
    assert server.operator.lock("hans", 60) is True   # an account offline is locked all the same
    assert server.logic.is_locked("hans", server.loop.time())


def test_unlock_lifts_a_lockout_after_wrong_passwords_too(server):
    peer = LoopPeer(server.host)
    peer.send({"type": "hello", "version": 1})
    for _ in range(3):
        peer.send({"type": "username", "username": "vader"}, {"type": "password", "password": "wrong"})
    frames_of(server.loop, peer, "error", 3)
    assert server.logic.is_locked("vader", server.loop.time())
    assert server.operator.unlock("vader") is True
    server.login("vader")
    peer.sock.close()


def test_a_notice_reaches_every_user_online(server):
    yoda, luke = server.login("yoda"), server.login("luke")
    assert server.operator.notice("restarting at noon") == 2
    for peer in (yoda, luke):
        assert frames_of(server.loop, peer, "notice") == [{"type": "notice", "text": "restarting at noon"}]


def test_reload_is_sighups_and_tells_how_it_ended(server):
    told = []
    server.credentials.write_text(server.credentials.read_text() + "rey force*\n")
    server.operator.reload(told.append)
    run_until(server.loop, lambda: told)
    assert told == [None] and "rey" in server.logic.logins.accounts
    server.credentials.write_text("rey\n")   # no password: not a usable file
    server.operator.reload(told.append)
    run_until(server.loop, lambda: len(told) == 2)
    assert told[1] is not None and "rey" in server.logic.logins.accounts   # the old accounts stay


def test_the_scrape_reads_users_connections_bytes_and_the_rules_counts(server):
    yoda, luke = server.login("yoda"), server.login("luke")
    stranger = socket.create_connection(server.host.address[:2])
    run_until(server.loop, lambda: server.host.strangers == 1)
    yoda.send({"type": "message", "to": "luke", "text": "hello"}, {"type": "message", "to": "leia", "text": "kept"})
    frames_of(server.loop, luke, "message")
    frames_of(server.loop, yoda, "stored")
    figures = server.figures()
    assert figures[("chat_users_online", ())] == 2
    assert figures[("chat_connections", (("state", "stranger"),))] == 1
    assert figures[("chat_connections", (("state", "user"),))] == 2
    assert figures[("chat_messages_relayed_total", ())] == 1
    assert figures[("chat_messages_stored_total", ())] == 1
    assert (figures[("chat_stored_messages", ())], figures[("chat_stored_bytes", ())]) == (1, 4)
    assert figures[("chat_logins_succeeded_total", ())] == 2
    assert figures[("chat_bytes_received_total", ())] > 100 and figures[("chat_bytes_sent_total", ())] > 100
    assert figures[("chat_loop_turn_seconds_count", ())] > 0
    assert figures[("chat_store_commit_seconds_count", ())] >= 1
    assert figures[("chat_password_checks_pending", ())] == 0
    assert dict(server.operator.stats())["chat_users_online"] == 2
    stranger.close()


def test_connections_turned_away_are_counted_by_cap(tmp_path):
    server = Server(tmp_path, max_strangers=2, max_strangers_per_address=1)
    try:
        socks = [socket.create_connection(server.host.address[:2]) for _ in range(2)]
        run_until(server.loop, lambda: server.logic.counts.connections_refused.too_many_from_address == 1)
        assert server.logic.counts.connections_refused.too_many_strangers == 0
        for sock in socks:
            sock.close()
    finally:
        server.close()


def test_ready_until_the_store_fails_or_the_server_shuts_down(server):
    assert server.operator.ready() is None
    server.store.failure = StoreError("disk I/O error")
    assert server.operator.ready() == "the store failed: disk I/O error"
    server.store.failure = None
    server.host.shutdown()
    assert server.operator.ready() == "shutting down"


def test_tls_handshakes_and_their_failures_are_counted(tmp_path, certs):
    server = Server(tmp_path, tls=server_context(str(certs["good"]), str(certs["good"])))
    try:
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        raw = socket.create_connection(server.host.address[:2])
        raw.setblocking(False)
        secure = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)

        def handshake():
            try:
                secure.do_handshake()
                return True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
        run_until(server.loop, handshake)
        run_until(server.loop, lambda: server.logic.counts.tls_handshakes == 1)
        plaintext = socket.create_connection(server.host.address[:2])
        plaintext.sendall(b'{"type":"hello","version":1}\n')   # a plaintext client on the TLS port
        run_until(server.loop, lambda: server.logic.counts.tls_handshake_failures == 1)
        assert server.logic.counts.tls_handshakes == 1 and server.host.tls
        plaintext.close()
        secure.close()
    finally:
        server.close()
