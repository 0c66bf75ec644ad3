"""Private chats in TLS mode: end to end encrypted between the two clients, each pinned to the certificate
the server relayed with the token. First the client and server logic with injected frames; then the real
server host and two real client hosts on one loop, with a relay between the peers: one that only records
(it sees no private text and no token), one that terminates TLS with a certificate of its own, and a server
that relays a certificate that is not the peer's (both refused, on both sides, with an Error line)."""
import base64
import dataclasses
import socket
import ssl
import threading

import pytest
import trustme

from reactor.client.effects import ClosePeer, ConnectPeer, Print, SetTimer, ToPeer, ToServer
from reactor.client.host import ClientHost
from reactor.client.peer_certs import (
    NoUsableCertificate,
    PeerIdentity,
    decode_certificate,
    encode_certificate,
    fingerprint,
)
from reactor.client.rules import ChatClient
from reactor.server.host import ServerHost
from reactor.server.rules import ChatServer
from tests.support import (
    ACCOUNTS,
    PONG,
    ClientProcess,
    RecordingProxy,
    TLSWireClient,
    World,
    ask,
    logged_in,
    run_until,
    tls_server,
)


@pytest.fixture(scope="module")
def ids():
    """A session identity for hans, yoda and a relay."""
    return {name: PeerIdentity.generate() for name in ("hans", "yoda", "relay")}


def cert_of(identity):
    return encode_certificate(identity.certificate)


# -- the certificate and its contexts -------------------------------------------

def test_a_session_certificate_is_fresh_short_lived_and_its_fingerprint_is_sha256_of_der(ids):
    der = ids["hans"].certificate
    assert ids["hans"].certificate != ids["yoda"].certificate
    assert len(fingerprint(der).split(":")) == 32
    assert decode_certificate(encode_certificate(der)) == der
    assert len(encode_certificate(der)) < 1024 - 100   # the listen frame, before login, fits in 1 KiB
    for bad in (None, 5, "", "not base64!", "A" * 3000):
        assert decode_certificate(bad) is None
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 86400 + 300


def handshake_in_memory(server_ctx, client_ctx):
    """A TLS handshake between the two contexts over memory buffers; the SSLError that ended it, or None."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    client = client_ctx.wrap_bio(client_in, client_out)
    done = set()
    for _ in range(10):
        for name, session in (("client", client), ("server", server)):
            try:
                session.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return exc
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if done == {"client", "server"}:
            return None
    raise AssertionError("the handshake went on and on")


def test_a_listener_context_trusts_each_genuine_certificate_whatever_junk_is_expected_beside_it(ids):
    """Junk among the certificates expected is left out on its own: yoda's genuine one is still trusted
    (trusted together, the junk failed the whole context and so every peer)."""
    yoda_side = ids["yoda"].context([ids["hans"].certificate], server_side=False)
    for trusted in ([b"junk!", ids["yoda"].certificate], [ids["yoda"].certificate, b"junk!", b"\x30\x03abc"]):
        assert handshake_in_memory(ids["hans"].context(trusted, server_side=True), yoda_side) is None
    relay_side = ids["relay"].context([ids["hans"].certificate], server_side=False)
    failure = handshake_in_memory(ids["hans"].context([b"junk!", ids["yoda"].certificate], server_side=True),
                                  relay_side)
    assert failure is not None   # and nobody else is


def test_a_context_with_only_junk_to_trust_is_refused_and_one_with_nothing_trusts_nobody(ids):
    with pytest.raises(NoUsableCertificate):
        ids["hans"].context([b"junk!"], server_side=True)
    yoda_side = ids["yoda"].context([ids["hans"].certificate], server_side=False)
    assert handshake_in_memory(ids["hans"].context([], server_side=True), yoda_side) is not None


# -- the client logic ---------------------------------------------------------

def test_in_tls_mode_listen_tells_the_server_the_certificate(ids):
    c = ChatClient(certificate=ids["yoda"].certificate)
    assert c.listening("10.0.0.1", 4000, 0) == [
        ToServer({"type": "listen", "host": "10.0.0.1", "port": 4000, "cert": cert_of(ids["yoda"])})]
    assert ChatClient().listening("10.0.0.1", 4000, 0) == [
        ToServer({"type": "listen", "host": "10.0.0.1", "port": 4000})]


def connect_frame(cert=None, token="T"):
    frame = {"type": "private_connect", "user": "hans", "host": "10.0.0.2", "port": 9000, "token": token}
    if cert is not None:
        frame["cert"] = cert
    return frame


def expect_frame(cert=None, token="T"):
    frame = {"type": "private_expect", "user": "hans", "token": token}
    if cert is not None:
        frame["cert"] = cert
    return frame


@pytest.mark.parametrize("cert", [None, "not base64!", 42])
def test_in_tls_mode_no_private_chat_opens_with_a_client_that_has_no_certificate(ids, cert):
    """No silent fallback to plaintext: neither side connects or lets itself be connected to."""
    c = logged_in("yoda", certificate=ids["yoda"].certificate)
    ask(c)
    refusal = Print("Error. Cannot start private messaging with hans: their client does not encrypt private chats")
    assert c.server_frame(connect_frame(cert), 1) == [refusal]
    assert c.server_frame(expect_frame(cert), 1) == [refusal]   # no private_ready: hans never learns where we are
    assert c.expected_certificates() == []


def test_in_plaintext_mode_relayed_certificates_are_ignored(ids):
    c = logged_in("yoda")
    ask(c)
    assert c.server_frame(connect_frame(cert_of(ids["hans"])), 1) == [ConnectPeer("hans", "10.0.0.2", 9000)]


def test_the_token_goes_only_to_the_certificate_the_server_relayed(ids):
    c = logged_in("yoda", certificate=ids["yoda"].certificate)
    ask(c)
    assert c.server_frame(connect_frame(cert_of(ids["hans"])), 1) == [
        ConnectPeer("hans", "10.0.0.2", 9000, ids["hans"].certificate)]
    assert c.peer_connected(1, "hans", 1, ids["relay"].certificate) == [   # no peer_hello: the token stays
        ClosePeer(1), Print("Error. Cannot reach hans for private messaging: "
                            "the peer's certificate is not the one the server relayed")]
    ask(c)
    c.server_frame(connect_frame(cert_of(ids["hans"])), 1)
    assert c.peer_connected(2, "hans", 1, ids["hans"].certificate) == [
        ToPeer(2, {"type": "peer_hello", "user": "yoda", "token": "T"}), SetTimer(("peer", 2), 11)]


def test_the_accepting_side_trusts_the_relayed_certificates_and_wants_the_token_from_that_one(ids):
    c = logged_in("yoda", certificate=ids["yoda"].certificate)
    c.server_frame({"type": "private_request", "from": "hans"}, 1)
    c.line("y", 1)
    c.server_frame(PONG, 1)
    assert c.server_frame(expect_frame(cert_of(ids["hans"])), 1) == [
        SetTimer(("expect", "hans"), 31), ToServer({"type": "private_ready", "user": "hans", "token": "T"})]
    assert c.expected_certificates() == [ids["hans"].certificate]
    c.peer_accepted(1, 1, ids["relay"].certificate)   # the right token, from another certificate
    assert c.peer_frame(1, {"type": "peer_hello", "user": "hans", "token": "T"}, 1)[-1] == Print(
        "Error. Refused a private connection from hans: its certificate is not the one the server relayed")
    assert c.peer_refused("TLS: peer did not return a certificate", 1) == [
        Print("Error. Refused a private connection: TLS: peer did not return a certificate")]
    c.peer_accepted(2, 1, ids["hans"].certificate)
    assert c.peer_frame(2, {"type": "peer_hello", "user": "hans", "token": "T"}, 1)[-1] == Print(
        "Start private messaging with hans")
    assert c.expected_certificates() == []
    assert c.peer_refused("anything", 1) == []   # nobody expected: a stranger's failures are not shown


# -- the server relays each client's certificate with the token ---------------------

def test_the_server_relays_each_side_certificate_with_the_token():
    w = World()
    w.login("hans", listen=False)
    w.login("yoda", listen=False)
    for user in ("hans", "yoda"):
        assert w.send(user, {"type": "listen", "port": 4000, "cert": f"{user}-cert"}) == []
    w.send("hans", {"type": "startprivate", "user": "yoda"})
    assert w.to(w.send("yoda", {"type": "private_answer", "user": "hans", "accept": True}), "yoda") == [
        {"type": "private_expect", "user": "hans", "token": "token1", "cert": "hans-cert"}]
    assert w.to(w.send("yoda", {"type": "private_ready", "user": "hans", "token": "token1"}), "hans") == [
        {"type": "private_connect", "user": "yoda", "host": "10.0.0.1", "port": 4000, "token": "token1",
         "cert": "yoda-cert"}]


def test_the_server_refuses_a_certificate_field_that_is_not_a_short_string():
    w = World()
    w.login("hans", listen=False)
    for cert in (5, "A" * 2049):
        reply = w.to(w.send("hans", {"type": "listen", "port": 4000, "cert": cert}), "hans")
        assert reply[0]["code"] == "bad_frame"


# -- the real hosts on one loop -----------------------------------------------------

class ScriptConsole:
    """A console the test types into and reads from."""

    def __init__(self):
        self.lines = []
        self.on_line = None   # the host's, once it started the console

    def start(self, loop, on_line, on_eof, on_interrupt=None):
        self.on_line = on_line

    def type(self, text):
        self.on_line(text)

    def print(self, text):
        self.lines.extend(text.split("\n"))

    def prompt(self, text, secret, remember=False):
        pass

    def close(self):
        pass

    def shows(self, needle):
        return any(needle in line for line in self.lines)


class RewritingServer(ChatServer):
    """The server's rules, but every frame of a type in ``rewrites`` (type -> a function of the frame giving
    the fields to overwrite) is rewritten on its way out; ``tokens``: every private-chat token it sent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrites = {}
        self.tokens = set()

    def received(self, conn, frame, now):
        return [self.rewritten(effect) for effect in super().received(conn, frame, now)]

    def rewritten(self, effect):
        frame = getattr(effect, "frame", None)
        if type(frame) is not dict:
            return effect
        if "token" in frame:
            self.tokens.add(frame["token"])
        rewrite = self.rewrites.get(frame.get("type"))
        return effect if rewrite is None else dataclasses.replace(effect, frame={**frame, **rewrite(frame)})


class Chat:
    """An in-process TLS server and two TLS clients, hans and yoda, on ``loop``; with ``connect_via``, yoda's
    client reaches hans's listener at ``connect_via(its port)`` on 127.0.0.1 instead (the server says so)."""

    def __init__(self, loop, ids, connect_via=None):
        authority = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(server_ctx)
        self.loop = loop
        self.logic = RewritingServer(dict(ACCOUNTS), 10.0, 600.0)
        self.server = ServerHost(loop, self.logic, tls=server_ctx)
        self.server.serve("127.0.0.1", 0)
        self.consoles, self.hosts = {}, {}
        for user in ("hans", "yoda"):
            client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            authority.configure_trust(client_ctx)
            console = self.consoles[user] = ScriptConsole()
            host = self.hosts[user] = ClientHost(loop, ChatClient(certificate=ids[user].certificate), console,
                                                 client_ctx, ids[user])
            host.start("127.0.0.1", self.server.address[1])
            run_until(loop, lambda c=console: c.on_line is not None)
            console.type(user)
            console.type(ACCOUNTS[user])
            self.wait(user, "Welcome to the greatest messaging application ever!")
        if connect_via is not None:   # yoda's client reaches hans's listener through a relay
            self.logic.rewrites["private_connect"] = lambda frame: {"host": "127.0.0.1",
                                                                    "port": connect_via(frame["port"])}

    def wait(self, user, needle):
        run_until(self.loop, lambda: self.consoles[user].shows(needle))

    def server_rewrites(self, kind, **fields):
        """Play a hostile server: every ``kind`` frame it sends has ``fields`` overwritten."""
        self.logic.rewrites[kind] = lambda frame: fields

    def start_private(self):
        self.consoles["yoda"].type("startprivate hans")
        self.wait("hans", "yoda would like to start private messaging. Accept? (y/n)")
        self.consoles["hans"].type("y")

    def close(self):
        """The server shuts down, and so the clients exit: run until the connections are closed."""
        self.server.shutdown()
        self.loop.run()


SECRET = "the rebels hide on Hoth"


def test_a_relay_between_the_peers_sees_no_private_text_or_token(loop, ids):
    relays = []

    def via(port):
        relays.append(RecordingProxy("127.0.0.1", port))
        return relays[-1].port

    chat = Chat(loop, ids, connect_via=via)
    try:
        chat.start_private()
        chat.wait("yoda", "Start private messaging with hans")
        chat.wait("hans", "Start private messaging with yoda")
        chat.consoles["yoda"].type(f"private hans {SECRET}")
        chat.wait("hans", f"yoda(private): {SECRET}")
        chat.consoles["hans"].type("private yoda copy that")
        chat.wait("yoda", "hans(private): copy that")
        (relay,) = relays
        upstream, downstream = relay.recorded()
        wire = upstream + b"|" + downstream
        assert len(upstream) > 100 and len(downstream) > 100
        assert len(chat.logic.tokens) == 1   # the one chat's, in private_expect and private_connect alike
        (token,) = chat.logic.tokens
        for secret in (SECRET, "copy that", token, "peer_hello", "peer_welcome", "private", '"type"'):
            assert secret.encode() not in wire, secret
    finally:
        chat.close()
        for relay in relays:
            relay.close()


class TLSRelay:
    """A man in the middle between the peers: it terminates each side's TLS with a certificate of its own
    (test-side threads), and would pass on whatever it could decrypt."""

    def __init__(self, identity, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors = []
        self.server_ctx = identity.context([], server_side=True)
        self.server_ctx.verify_mode = ssl.CERT_NONE     # it takes any client (asks for no certificate)
        self.client_ctx = identity.context([], server_side=False)
        self.client_ctx.verify_mode = ssl.CERT_NONE     # and trusts any peer
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            sock, _ = self.listener.accept()
            with sock, self.server_ctx.wrap_socket(sock, server_side=True) as inner:
                inner.recv(1)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(f"from the client: {exc}")
        try:
            with socket.create_connection(self.target) as sock, self.client_ctx.wrap_socket(sock) as outer:
                outer.sendall(b'{"type":"peer_hello","user":"yoda","token":"guessed"}\n')
                outer.recv(1)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(f"to the listener: {exc}")

    def close(self):
        self.listener.close()


def test_a_relay_with_its_own_certificate_is_refused_on_both_sides(loop, ids):
    relays = []

    def via(port):
        relays.append(TLSRelay(ids["relay"], port))
        return relays[-1].port

    chat = Chat(loop, ids, connect_via=via)
    try:
        chat.start_private()
        chat.wait("yoda", "Error. Cannot reach hans for private messaging: its certificate is not the one the "
                          "server relayed (certificate verify failed: ")
        chat.wait("hans", "Error. Refused a private connection: its certificate is not the one the server "
                          "relayed (certificate verify failed: ")
        assert not chat.consoles["hans"].shows("Start private messaging")
        assert not chat.consoles["yoda"].shows("Start private messaging")
    finally:
        chat.close()
        for relay in relays:
            relay.close()


def test_a_server_that_relays_another_certificate_gets_the_chat_refused(loop, ids):
    """A hostile server (or anyone who could rewrite its frames) swaps hans's certificate for the relay's."""
    chat = Chat(loop, ids)
    chat.server_rewrites("private_connect", cert=cert_of(ids["relay"]))
    try:
        chat.start_private()
        chat.wait("yoda", "Error. Cannot reach hans for private messaging: its certificate is not the one the "
                          "server relayed (certificate verify failed: ")
        chat.wait("hans", "Error. Refused a private connection: ")
        assert not chat.consoles["hans"].shows("Start private messaging")
    finally:
        chat.close()


@pytest.mark.parametrize("frame, user, shown", [
    ("private_connect", "yoda", "Error. Cannot reach hans for private messaging: "
                                "the server relayed a certificate that cannot be used"),
    ("private_expect", "hans", "Error. Refused a private connection: "
                               "the server relayed a certificate that cannot be used"),
])
def test_a_relayed_certificate_that_is_no_certificate_is_refused_and_harms_nothing(loop, ids, frame, user, shown):
    chat = Chat(loop, ids)
    chat.server_rewrites(frame, cert=base64.b64encode(b"no certificate at all").decode())
    try:
        chat.start_private()
        chat.wait(user, shown)
        for name in ("hans", "yoda"):
            assert not chat.consoles[name].shows("Start private messaging")
        chat.consoles["yoda"].type("message hans still here")   # both clients carry on
        chat.wait("hans", "yoda: still here")
    finally:
        chat.close()


def test_a_swapped_token_is_refused(loop, ids):
    """The peer is the right one, but the token is not: the chat does not open."""
    chat = Chat(loop, ids)
    chat.server_rewrites("private_connect", token=base64.urlsafe_b64encode(b"a token of my own").decode())
    try:
        chat.start_private()
        chat.wait("yoda", "Error. hans did not accept the private connection")
        assert not chat.consoles["hans"].shows("Start private messaging")
    finally:
        chat.close()


@pytest.mark.e2e
def test_e2e_the_real_clients_in_tls_mode_chat_privately(tmp_path, certs):
    """``--ca`` makes the client's session certificate: the private chat opens and carries text both ways."""
    server = tls_server(tmp_path, certs["good"])
    clients = []
    try:
        for user in ("hans", "yoda"):
            clients.append(ClientProcess("127.0.0.1", server.port, extra=("--ca", str(certs["ca"]))))
            clients[-1].login(user)
        hans, yoda = clients
        yoda.type("startprivate hans")
        hans.expect("yoda would like to start private messaging. Accept? (y/n)")
        hans.type("y")
        yoda.expect("Start private messaging with hans")
        hans.expect("Start private messaging with yoda")
        yoda.type(f"private hans {SECRET}")
        hans.expect(f"yoda(private): {SECRET}")
        hans.type("private yoda copy that")
        yoda.expect("hans(private): copy that")
        for client in clients:
            client.end_input()
            assert client.wait() == 0
    finally:
        for client in clients:
            client.kill()
        assert server.stop() == 0


@pytest.mark.e2e
def test_e2e_a_junk_certificate_pending_does_not_touch_another_users_private_chat(tmp_path, certs):
    """vader's client (a script) relays 5 bytes as its certificate and asks hans; hans accepts, so his client
    expects vader's junk; yoda's genuine private chat with hans opens meanwhile (it was reset by hans's client,
    whose listener trusted all its expected certificates in one load that the junk failed)."""
    server = tls_server(tmp_path, certs["good"])
    clients = []
    vader = None
    try:
        for user in ("hans", "yoda"):
            clients.append(ClientProcess("127.0.0.1", server.port, extra=("--ca", str(certs["ca"]))))
            clients[-1].login(user)
        hans, yoda = clients
        vader = TLSWireClient("127.0.0.1", server.port, ssl.create_default_context(cafile=str(certs["ca"])))
        vader.login("vader", listen=False)
        vader.send({"type": "listen", "host": "127.0.0.1", "port": 9, "cert": base64.b64encode(b"junk!").decode()})
        vader.send({"type": "startprivate", "user": "hans"})
        hans.expect("vader would like to start private messaging. Accept? (y/n)")
        hans.type("y")
        assert vader.until("private_connect")["user"] == "hans"   # hans's client now expects vader's junk
        yoda.type("startprivate hans")
        hans.expect("yoda would like to start private messaging. Accept? (y/n)")
        hans.type("y")
        yoda.expect("Start private messaging with hans")
        hans.expect("Start private messaging with yoda")
        yoda.type(f"private hans {SECRET}")
        hans.expect(f"yoda(private): {SECRET}")
        for client in clients:
            client.end_input()
            assert client.wait() == 0
        assert "Connection reset" not in yoda.text() + hans.text()
    finally:
        if vader is not None:
            vader.close()
        for client in clients:
            client.kill()
        assert server.stop() == 0
