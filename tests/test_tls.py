"""TLS on the connection layer: TLSStream over real sockets on the loop, and the real server and client with TLS.

Certificates are made here (trustme), fresh for each run: nothing in the repository expires.
"""
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import tracemalloc

import pytest

from reactor import tls as tls_mod
from reactor.framing import JsonLines, encode
from reactor.server.host import TLS_REQUIRED
from reactor.stream import Traffic
from reactor.tls import TLSStream
from tests.support import (
    ACCOUNTS,
    PATIENCE,
    ROOT,
    ClientProcess,
    FlakySocket,
    Recorder,
    RecordingProxy,
    coverage_env,
    run_until,
    tls_server,
)

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


@pytest.fixture(scope="module")
def contexts(ca):
    """(server context, client context) for a server certificate valid for localhost and 127.0.0.1."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


class Secured(Recorder):
    def __init__(self):
        super().__init__()
        self.secure = []

    def on_secure(self, stream):
        self.secure.append(stream)


def tls_pair(loop, contexts, *, server_options=None, client_options=None, client_lines=None, sock_options=None,
             socks=None):
    """A server-side and a client-side TLSStream on the two ends of a socketpair (``socks`` if given), each with a
    Secured handler (the client's ``JsonLines`` made with ``client_lines``)."""
    a, b = socks or socket.socketpair()
    for sock in (a, b):
        for option, value in (sock_options or {}).items():
            sock.setsockopt(socket.SOL_SOCKET, option, value)
    server_ctx, client_ctx = contexts
    srv, cli = Secured(), Secured()
    server = TLSStream(loop, a, JsonLines(srv), context=server_ctx, server_side=True, on_secure=srv.on_secure,
                       **(server_options or {}))
    client = TLSStream(loop, b, JsonLines(cli, **(client_lines or {})), context=client_ctx, server_hostname="localhost",
                       on_secure=cli.on_secure, **(client_options or {}))
    return server, srv, client, cli


def client_hello(contexts) -> bytes:
    """What a TLS client sends first."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = contexts[1].wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        session.do_handshake()
    return outgoing.read()


def run_until_received(loop, sock) -> bytes:
    """Run the loop until the non-blocking ``sock`` has bytes to read; those bytes."""
    got = []

    def received():
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return False
        return True

    run_until(loop, received)
    return got[0]


# -- TLSStream on the loop ----------------------------------------------------

def test_handshake_then_frames_both_ways(loop, contexts):
    server, srv, client, cli = tls_pair(loop, contexts)
    client.write(encode({"type": "hello", "n": 1}))   # written before the handshake is done: it waits, then goes
    run_until(loop, lambda: srv.secure and cli.secure and srv.frames)
    assert srv.frames == [{"type": "hello", "n": 1}]
    server.write(encode({"type": "hello", "n": 2}))
    run_until(loop, lambda: cli.frames)
    assert cli.frames == [{"type": "hello", "n": 2}]
    server.abort()
    client.abort()


def test_a_tls_stream_counts_the_bytes_on_the_wire_and_says_when_it_is_secure(loop, contexts):
    traffic = Traffic()
    server, srv, client, cli = tls_pair(loop, contexts, server_options={"traffic": traffic})
    assert not server.secure
    client.write(encode({"type": "hello", "text": "x" * 1000}))
    run_until(loop, lambda: srv.frames)
    assert server.secure and client.secure
    assert traffic.received > 1000 and traffic.sent > 0   # the handshake, and the record sealing the frame
    server.abort()
    client.abort()


def test_on_secure_comes_before_the_frames_of_the_read_that_ends_the_handshake(loop, contexts):
    events = []

    class Ordered(Recorder):
        def frame_received(self, stream, frame):
            events.append(frame["n"])

    a, b = socket.socketpair()
    TLSStream(loop, a, JsonLines(Ordered()), context=contexts[0], server_side=True,
              on_secure=lambda s: events.append("secure"))
    client = TLSStream(loop, b, JsonLines(Recorder()), context=contexts[1], server_hostname="localhost")
    client.write(encode({"type": "hello", "n": 1}))   # sealed with the Finished: one read ends the handshake, brings it
    run_until(loop, lambda: 1 in events)
    assert events == ["secure", 1]


def test_big_frames_to_a_slow_reader_arrive_whole_and_in_order(loop, contexts):
    """Small socket buffers and a reader taking 700 wire bytes a read: partial records on the reading side,
    partial sends and writability waits on the writing side, paced by when_drained."""
    small = {socket.SO_SNDBUF: 4096, socket.SO_RCVBUF: 4096}
    server, srv, client, cli = tls_pair(loop, contexts, client_options={"read_size": 700}, sock_options=small)
    run_until(loop, lambda: srv.secure and cli.secure)
    frames = [{"type": "big", "n": n, "text": chr(ord("a") + n % 26) * 50_000} for n in range(40)]
    left = list(frames)

    def more(stream):
        while left and stream.buffered < 64 * 1024:
            stream.write(encode(left.pop(0)))
        if left:
            stream.when_drained(more)

    more(server)
    run_until(loop, lambda: len(cli.frames) == len(frames), timeout=PATIENCE)
    assert cli.frames == frames and not cli.lost and not srv.lost
    server.abort()
    client.abort()


def test_output_to_a_slow_reader_waits_in_one_buffer_appended_to_and_sent_from_in_place(loop, contexts):
    """The wire bytes a slow reader has not taken yet are not copied whole at each seal or partial send
    (a megabyte waiting would be copied once per send): a later seal appends to the very buffer that waits, and
    each send takes from its front. So while 1.7 MB wait, sealing one more frame and sending 100 kB in parts
    costs about what the reader holds of them, not megabytes (tracemalloc's peak)."""
    a, b = socket.socketpair()
    server, srv, client, cli = tls_pair(loop, contexts, socks=(a, b), server_options={"max_output": 8 << 20},
                                        client_lines={"max_frame": 4 << 20})
    run_until(loop, lambda: srv.secure and cli.secure)
    client.pause_reading()   # the client stops reading
    frames = [{"type": "fill", "text": "x" * 2_000_000}, {"type": "fill", "text": "y" * 1000}]
    tracemalloc.start()
    try:
        server.write(encode(frames[0]))
        run_until(loop, lambda: loop.watched(a) & selectors.EVENT_WRITE)   # the socket is full: the rest waits
        waiting = server.buffered
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        server.write(encode(frames[1]))   # sealed at the next writable event, behind the first's rest
        client.resume_reading()           # the client takes some: sends from the front of what waits
        run_until(loop, lambda: server.buffered < waiting - 100_000)
        client.pause_reading()
        more = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert waiting > 1_000_000 and more < 1_000_000, (waiting, more)   # (0.44 MB; a copy per seal: 3.8, per send: 2)
    client.resume_reading()   # the client reads again: everything arrives, in order
    run_until(loop, lambda: len(cli.frames) == 2, timeout=PATIENCE)
    assert cli.frames == frames and not srv.lost and not cli.lost
    server.abort()
    client.abort()


def test_every_frame_of_one_record_is_handled_without_more_bytes_coming(loop, contexts, monkeypatch):
    """200 frames sealed into one TLS record, then silence: the reader must take all the plaintext the
    record holds, not one read's worth, since the socket will not be readable again."""
    monkeypatch.setattr(tls_mod, "READ_CHUNK", 512)
    server, srv, client, cli = tls_pair(loop, contexts)
    run_until(loop, lambda: srv.secure and cli.secure)
    for n in range(200):
        client.write(encode({"type": "small", "n": n}))
    run_until(loop, lambda: len(srv.frames) == 200)
    assert srv.frames == [{"type": "small", "n": n} for n in range(200)]
    server.abort()
    client.abort()


def test_a_tls_stream_reads_past_a_wakeup_with_nothing_and_reports_a_reset(loop, contexts):
    a, b = socket.socketpair()
    flaky = FlakySocket(a, recv=[BlockingIOError()])   # the first wakeup finds nothing to read after all
    server, srv, client, cli = tls_pair(loop, contexts, socks=(flaky, b))
    run_until(loop, lambda: srv.secure and cli.secure)
    flaky.failures["recv"] = [ConnectionResetError(104, "Connection reset by peer")]
    client.write(encode({"type": "never", "read": True}))
    run_until(loop, lambda: srv.lost)
    assert srv.lost == ["Connection reset by peer"] and srv.frames == []
    client.abort()


def test_a_handshake_that_stalls_is_closed_at_the_deadline(loop, contexts):
    a, b = socket.socketpair()
    rec = Recorder()
    start = loop.time()   # the deadline runs from the stream's making (client_hello below takes milliseconds)
    server = TLSStream(loop, a, JsonLines(rec), context=contexts[0], server_side=True, handshake_timeout=0.2)
    b.sendall(client_hello(contexts)[:30])   # part of the hello, then nothing
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["TLS handshake timed out"] and loop.time() - start >= 0.2
    assert server.closed
    b.settimeout(PATIENCE)
    assert b.recv(100) == b""
    b.close()


def test_a_finished_handshake_is_not_cut_at_the_deadline(loop, contexts):
    server, srv, client, cli = tls_pair(loop, contexts, server_options={"handshake_timeout": 0.2},
                                        client_options={"handshake_timeout": 0.2})
    run_until(loop, lambda: srv.secure and cli.secure)
    deadline = loop.time() + 0.5
    run_until(loop, lambda: loop.time() > deadline)
    assert not srv.lost and not cli.lost
    client.write(encode({"type": "still", "here": True}))
    run_until(loop, lambda: srv.frames)
    server.abort()
    client.abort()


def test_a_plaintext_client_is_told_tls_is_required_and_closed(loop, contexts):
    a, b = socket.socketpair()
    rec = Recorder()
    TLSStream(loop, a, JsonLines(rec), context=contexts[0], server_side=True, plaintext_answer=TLS_REQUIRED)
    b.sendall(b'{"type":"hello","version":1}\n')
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["a plaintext client on the TLS port"]
    b.settimeout(PATIENCE)
    got = b""
    while chunk := b.recv(1000):
        got += chunk
    assert got == TLS_REQUIRED
    b.close()


def test_bytes_that_are_not_tls_fail_the_handshake(loop, contexts):
    a, b = socket.socketpair()
    rec = Recorder()
    TLSStream(loop, a, JsonLines(rec), context=contexts[0], server_side=True)
    b.sendall(b"GET / HTTP/1.0\r\n\r\n")
    run_until(loop, lambda: rec.lost)
    assert rec.lost[0].startswith("TLS: "), rec.lost
    b.close()


def test_a_tls_client_of_a_plaintext_server_fails_the_handshake_saying_so(loop, contexts):
    a, b = socket.socketpair()
    rec = Recorder()
    TLSStream(loop, a, JsonLines(rec), context=contexts[1], server_hostname="localhost")
    b.setblocking(False)
    hello = run_until_received(loop, b)
    assert hello[:1] == b"\x16"   # the client's hello: a TLS handshake record
    b.sendall(b'{"type":"error","code":"bad_frame"}\n')
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["the server does not speak TLS on this port"]   # (OpenSSL: "wrong version number")
    b.close()


def test_close_sends_the_last_frames_then_close_notify(loop, contexts):
    """The peer, a blocking TLS socket in a thread, reads the frame and then a clean TLS end (close_notify),
    not a bare end of TCP (with suppress_ragged_eofs off, that would raise)."""
    a, b = socket.socketpair()
    rec = Recorder()
    secured = []
    server = TLSStream(loop, a, JsonLines(rec), context=contexts[0], server_side=True, on_secure=secured.append)
    got = {}

    def peer():
        with contexts[1].wrap_socket(b, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
            sock.settimeout(PATIENCE)
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
                got["data"] = data
            except ssl.SSLError as exc:
                got["error"] = exc

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    run_until(loop, lambda: secured)
    server.write(encode({"type": "bye"}))
    server.close()
    run_until(loop, lambda: rec.lost and not thread.is_alive(), timeout=PATIENCE)
    assert got == {"data": b'{"type":"bye"}\n'}


def test_a_verification_failure_says_why(loop, contexts):
    """A client checking the name example.org against a certificate for localhost."""
    a, b = socket.socketpair()
    srv, cli = Recorder(), Recorder()
    TLSStream(loop, a, JsonLines(srv), context=contexts[0], server_side=True)
    TLSStream(loop, b, JsonLines(cli), context=contexts[1], server_hostname="example.org")
    run_until(loop, lambda: cli.lost and srv.lost)
    assert cli.lost == ["certificate verify failed: Hostname mismatch, certificate is not valid for 'example.org'."]
    assert srv.lost[0].startswith("TLS: "), srv.lost   # the client's alert


# -- the real server and client -------------------------------------------------

@pytest.mark.e2e
def test_e2e_a_relay_sees_no_password_message_or_frame_in_clear(tmp_path, certs):
    server = tls_server(tmp_path, certs["good"])
    proxy = RecordingProxy(server.host, server.port)
    clients = []
    try:
        for user in ("hans", "yoda"):
            client = ClientProcess("127.0.0.1", proxy.port, extra=("--ca", str(certs["ca"])))
            clients.append(client)
            client.login(user)
        hans, yoda = clients
        hans.type("message yoda the plans are hidden in R2")
        yoda.expect("hans: the plans are hidden in R2")
        yoda.type("message hans received, may the force be with you")
        hans.expect("yoda: received, may the force be with you")
        for client in clients:
            client.end_input()
            assert client.wait() == 0
        upstream, downstream = proxy.recorded()
        wire = upstream + b"|" + downstream
        assert len(upstream) > 100 and len(downstream) > 100
        for secret in (ACCOUNTS["hans"], ACCOUNTS["yoda"], "hans", "yoda", "plans are hidden", "force be with",
                       '"type"', "welcome", "password"):
            assert secret.encode() not in wire, secret
    finally:
        for client in clients:
            client.kill()
        proxy.close()
        assert server.stop() == 0


@pytest.mark.e2e
def test_e2e_a_plaintext_client_is_refused_and_the_server_serves_on(tmp_path, certs):
    server = tls_server(tmp_path, certs["good"])
    try:
        wire = server.client(hello=False)
        wire.send({"type": "hello", "version": 1})
        wire.expect("error", code="tls_required")
        wire.expect_closed()
        wire.close()
        plain = ClientProcess(server.host, server.port)
        try:
            plain.expect("Error. This server requires TLS; connect with --tls (and --ca FILE for a private CA)")
            assert plain.wait() == 1
        finally:
            plain.kill()
        client = ClientProcess(server.host, server.port, extra=("--ca", str(certs["ca"])))
        try:
            client.login("luke")
        finally:
            client.kill()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("cert, trusted, why", [
    ("expired", "ca", "certificate has expired"),
    ("other_host", "ca", "Hostname mismatch, certificate is not valid for 'localhost'."),
    ("good", "other_ca", "unable to get local issuer certificate"),
])
@pytest.mark.e2e
def test_e2e_the_client_refuses_a_server_it_cannot_verify(tmp_path, certs, cert, trusted, why):
    server = tls_server(tmp_path, certs[cert])
    try:
        client = ClientProcess("localhost", server.port, extra=("--ca", str(certs[trusted])))
        try:
            assert client.wait() == 1
            assert client.text().strip() == (f"Error. Cannot connect to server at localhost:{server.port}: "
                                             f"certificate verify failed: {why}")
        finally:
            client.kill()
    finally:
        assert server.stop() == 0


def run_main(script, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=coverage_env(),
                          capture_output=True, text=True, timeout=PATIENCE, stdin=subprocess.DEVNULL)


@pytest.mark.e2e
def test_server_tls_flags_go_together_and_unusable_files_are_refused(tmp_path, certs):
    half = run_main("server_main.py", "0", "1", "1", "--tls-cert", str(certs["good"]), cwd=tmp_path)
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    missing = run_main("server_main.py", "0", "1", "1", "--credentials", str(ROOT / "credentials.txt"),
                       "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.pem"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"Error. Cannot use the TLS certificate {tmp_path / 'nope.pem'}"), missing.stderr


@pytest.mark.e2e
def test_client_refuses_an_unusable_ca_file(tmp_path):
    result = run_main("client_main.py", "127.0.0.1", "9", "--ca", str(tmp_path / "nope.pem"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error. Cannot use the CA file {tmp_path / 'nope.pem'}"), result.stderr


def test_a_peer_that_reads_nothing_is_cut_off_past_max_output(loop, contexts):
    a, b = socket.socketpair()
    server, srv, client, cli = tls_pair(loop, contexts, server_options={"max_output": 100_000}, socks=(a, b))
    run_until(loop, lambda: srv.secure and cli.secure)
    loop.remove_reader(b)   # the client stops reading

    def more():
        if not srv.lost:
            server.write(encode({"type": "fill", "text": "x" * 10_000}))
            loop.call_soon(more)

    more()
    run_until(loop, lambda: srv.lost, timeout=PATIENCE)
    assert srv.lost == ["output buffer over 100000 bytes: peer not reading"]
    client.abort()
