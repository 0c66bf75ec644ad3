"""Non-blocking streams over real sockets on the loop: the transport alone (bytes to a protocol of any kind), and
its writes, pacing, closing and failures with JSON lines (``JsonLines``) as its protocol; listeners and connects."""
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from reactor import stream as stream_mod
from reactor.framing import FrameDecoder, JsonLines, encode
from reactor.stream import PEER_CLOSED, UNOWNED, Connector, Stream, Traffic, describe_os_error, listen
from tests.support import FlakySocket, Recorder, run_until

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)

# -- writing, pacing and closing -------------------------------------------------

def test_stream_sends_coalesce_into_one_flush(loop, pair):
    s, raw, rec = pair
    for i in range(10):
        s.write(encode({"i": i}))
    assert s.buffered > 0
    run_until(loop, lambda: s.buffered == 0)
    got = b""
    while got.count(b"\n") < 10:
        got += raw.recv(4096)
    assert [json.loads(x) for x in got.splitlines()] == [{"i": i} for i in range(10)]


def test_a_stream_counts_the_bytes_it_reads_and_sends_into_its_owners_traffic_or_the_unowned(loop):
    owned, raw = socket.socketpair()
    other, other_raw = socket.socketpair()
    traffic = Traffic()
    rec = Recorder()
    counted = Stream(loop, owned, JsonLines(rec), traffic=traffic)
    uncounted = Stream(loop, other, JsonLines(Recorder()))
    before = (UNOWNED.received, UNOWNED.sent)
    counted.write(b'{"a":1}\n')
    raw.sendall(b'{"b":2}\n{"c":3}\n')
    run_until(loop, lambda: len(rec.frames) == 2 and counted.buffered == 0)
    assert (traffic.received, traffic.sent) == (16, 8)
    uncounted.write(b"xyz\n")
    other_raw.sendall(b"{}\n")
    run_until(loop, lambda: UNOWNED.received == before[0] + 3 and uncounted.buffered == 0)
    assert UNOWNED.sent == before[1] + 4
    assert (traffic.received, traffic.sent) == (16, 8)   # (the other stream counts into the unowned alone)
    for end in (counted, uncounted):
        end.abort()
    raw.close()
    other_raw.close()


def test_partial_writes_keep_every_byte_in_order(loop):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec), max_output=64 << 20)
    frames = [{"i": i, "pad": "x" * (i % 300)} for i in range(3000)]
    for f in frames:
        s.write(encode(f))
    b.setblocking(False)
    got = bytearray()
    expected = b"".join(encode(f) for f in frames)
    loop.add_reader(b, lambda: got.extend(b.recv(1000)))  # a slow reader: 1000 bytes a wake-up
    run_until(loop, lambda: len(got) == len(expected), timeout=30)
    loop.remove_reader(b)
    assert bytes(got) == expected
    assert loop.watched(a) == selectors.EVENT_READ  # writability is no longer watched once drained
    s.abort()
    b.close()


def test_bytes_written_to_many_streams_arrive_whole_at_each_though_sent_in_parts(loop):
    """A stream keeps the bytes written to it rather than a copy (one presence frame to many streams is held
    once): sent in parts, with more written between the parts, every stream still sends all, in order."""
    shared = b"".join(encode({"i": i, "pad": "x" * 200}) for i in range(1000))   # ~220 KB: many sends
    later = encode({"type": "later"})
    ends = []
    for _ in range(3):
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        b.setblocking(False)
        ends.append((Stream(loop, a, JsonLines(Recorder()), max_output=64 << 20), b, bytearray()))
    for s, _, _ in ends:
        s.write(shared)
    loop.run_once(0)   # the first send of each takes only part of it
    assert all(0 < s.buffered < len(shared) for s, _, _ in ends)
    for s, _, _ in ends:
        s.write(later)
    for _, b, got in ends:
        loop.add_reader(b, lambda b=b, got=got: got.extend(b.recv(1000)))
    run_until(loop, lambda: all(len(got) == len(shared) + len(later) for _, _, got in ends), timeout=30)
    for s, b, got in ends:
        assert bytes(got) == shared + later
        loop.remove_reader(b)
        s.abort()
        b.close()


def test_a_buffer_changed_after_it_was_written_does_not_change_what_is_sent(loop, pair):
    s, raw, rec = pair
    data = bytearray(encode({"i": 1}))
    s.write(data)
    data[:] = encode({"i": 2})
    run_until(loop, lambda: s.buffered == 0)
    assert raw.recv(4096) == encode({"i": 1})


def test_peer_reset_is_reported_not_raised(loop):
    # A TCP reset needs TCP: a real loopback connection rather than the pair.
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    rec2 = Recorder()
    s2 = Stream(loop, conn, JsonLines(rec2))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    run_until(loop, lambda: rec2.lost)
    assert rec2.lost[0] and "reset" in rec2.lost[0].lower()
    s2.write(encode({"after": "close"}))  # writing to a dead stream is a no-op
    srv.close()


def test_peer_hang_up_flushes_pending_replies(loop, pair):
    s, raw, rec = pair
    s.write(encode({"reply": 1}))
    raw.shutdown(socket.SHUT_WR)
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["peer closed the connection"]
    raw.settimeout(2)
    assert json.loads(raw.recv(100)) == {"reply": 1}


def test_output_cap_cuts_off_a_peer_that_does_not_read(loop):
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec), max_output=100_000)
    blob = {"pad": "z" * 1000}
    for _ in range(100_000):
        s.write(encode(blob))
        if s.closed:
            break
        loop.run_once(timeout=0)
    run_until(loop, lambda: rec.lost)
    assert "not reading" in rec.lost[0]
    assert s.buffered == 0
    b.close()


def test_a_flush_that_raises_does_not_keep_the_other_streams_from_flushing(loop, caplog):
    """The streams written to in a turn are flushed by one loop callback; a bug in one flush is logged (here
    a socket whose send raises what no socket should)."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    broken = Stream(loop, FlakySocket(a, send=[RuntimeError("flush bug")]), JsonLines(Recorder()))
    good = Stream(loop, c, JsonLines(Recorder()))
    broken.write(encode({"n": 1}))
    good.write(encode({"n": 2}))
    loop.run_once(timeout=0)
    assert d.recv(100) == encode({"n": 2})
    assert "flush failed" in caplog.text and "flush bug" in caplog.text
    for s, peer in ((broken, b), (good, d)):
        s.abort()
        peer.close()


def paced(loop, max_output=1 << 20):
    """A Stream with small water marks whose peer reads nothing until told to."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.setblocking(False)
    rec = Recorder()
    return Stream(loop, a, JsonLines(rec), high_water=20_000, low_water=5_000, max_output=max_output), b, rec


def test_when_drained_under_high_water_is_answered_soon(loop):
    s, b, rec = paced(loop)
    calls = []
    s.write(b"x" * 19_000 + b"\n")
    s.when_drained(calls.append)
    assert calls == []                  # never from inside the call
    loop.run_once(timeout=0)
    assert calls == [s]
    loop.run_once(timeout=0)
    assert calls == [s]                 # once
    s.abort()
    b.close()


def test_when_drained_over_high_water_waits_for_low_water(loop):
    s, b, rec = paced(loop)
    calls = []
    s.write(b"y" * 200_000 + b"\n")
    s.when_drained(lambda stream: calls.append(stream.buffered))
    for _ in range(5):
        loop.run_once(timeout=0.01)
    assert calls == [] and s.buffered > 20_000   # the peer reads nothing: no room
    got = bytearray()
    while not calls:
        try:
            got += b.recv(65536)
        except BlockingIOError:
            pass
        loop.run_once(timeout=0.01)
    assert calls[0] <= 5_000
    s.abort()
    b.close()


def test_when_drained_is_not_answered_once_the_stream_closes(loop):
    s, b, rec = paced(loop)
    calls = []
    s.when_drained(calls.append)      # answered on the next turn ...
    s.close()                         # ... but the stream is closing by then
    s.when_drained(calls.append)      # and asking a closing stream is not answered at all
    s2, b2, _ = paced(loop)
    s2.write(b"z" * 100_000 + b"\n")
    s2.when_drained(calls.append)
    s2.abort()
    run_until(loop, lambda: rec.lost)
    for _ in range(3):
        loop.run_once(timeout=0)
    assert calls == []
    b.close()
    b2.close()


def test_paced_writes_stay_under_the_output_cap(loop):
    """An owner that writes only when told there is room never trips the not-reading cap."""
    s, b, rec = paced(loop, max_output=100_000)
    frames = [{"i": i, "pad": "p" * 3000} for i in range(300)]   # ~900 kB in all, 9x the cap
    pending = list(frames)

    def more(stream):
        while pending and stream.buffered < 20_000:
            stream.write(encode(pending.pop(0)))
        if pending:
            stream.when_drained(more)

    more(s)
    decoder = FrameDecoder()
    got = []

    def read():
        try:
            got.extend(decoder.feed(b.recv(1500)))   # a slow reader
        except BlockingIOError:
            pass

    loop.add_reader(b, read)
    run_until(loop, lambda: len(got) == len(frames) or rec.lost, timeout=30)
    loop.remove_reader(b)
    assert rec.lost == [] and got == frames
    s.abort()
    b.close()


def test_close_after_flush_and_connection_lost_once(loop, pair):
    s, raw, rec = pair
    s.write(encode({"bye": True}))
    s.close()
    s.close()
    s.write(encode({"ignored": True}))
    run_until(loop, lambda: rec.lost)
    loop.run_once(timeout=0)
    assert rec.lost == [None]
    raw.settimeout(2)
    data = b""
    while True:
        chunk = raw.recv(100)
        if not chunk:
            break
        data += chunk
    assert data == encode({"bye": True})


def test_abort_drops_pending_bytes(loop, pair):
    s, raw, rec = pair
    s.write(encode({"never": "sent"}))
    s.abort()
    run_until(loop, lambda: rec.lost)
    raw.settimeout(2)
    assert raw.recv(100) == b""


def test_closing_stream_that_never_flushes_is_aborted(loop, monkeypatch):
    monkeypatch.setattr(stream_mod, "CLOSE_TIMEOUT", 0.05)
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec))
    for _ in range(200):
        s.write(encode({"pad": "q" * 1000}))
    s.close()
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["close timed out"]
    b.close()


# -- the transport alone: bytes, whatever they mean ----------------------------

class Bytes:
    """A ``StreamProtocol`` of no framing: it records what its stream hands it, in order."""

    def __init__(self, on_eof=None):
        self.events = []
        self.on_eof = on_eof

    def data_received(self, stream, data):
        self.events.append(("data", data))

    def eof_received(self, stream):
        self.events.append(("eof",))
        if self.on_eof:
            self.on_eof(stream)

    def connection_lost(self, stream, reason):
        self.events.append(("lost", reason))

    def received(self):
        return b"".join(event[1] for event in self.events if event[0] == "data")


def test_a_stream_hands_its_protocol_the_bytes_read_then_the_end_then_the_loss(loop):
    """No lines, no JSON: the bytes as they came (newlines and all), the end of input, then the loss, once."""
    a, b = socket.socketpair()
    protocol = Bytes()
    s = Stream(loop, a, protocol)
    assert s.protocol is protocol
    b.sendall(b"\x00\xff no newline {")
    run_until(loop, lambda: protocol.received() == b"\x00\xff no newline {")
    b.sendall(b"\nmore\n")
    b.shutdown(socket.SHUT_WR)
    run_until(loop, lambda: "lost" in [event[0] for event in protocol.events])
    loop.run_once(timeout=0)
    assert protocol.received() == b"\x00\xff no newline {\nmore\n"
    assert [event for event in protocol.events if event[0] != "data"] == [("eof",), ("lost", PEER_CLOSED)]
    assert s.closed
    b.close()


def test_a_protocol_may_end_the_stream_at_the_end_of_input_in_words_of_its_own(loop):
    a, b = socket.socketpair()
    protocol = Bytes(on_eof=lambda stream: stream.close("the engine closed the connection"))
    Stream(loop, a, protocol)
    b.shutdown(socket.SHUT_WR)
    run_until(loop, lambda: "lost" in [event[0] for event in protocol.events])
    assert protocol.events == [("eof",), ("lost", "the engine closed the connection")]
    b.close()


def test_while_reading_is_paused_the_bytes_wait_in_the_kernel_and_come_once_resumed(loop):
    a, b = socket.socketpair()
    protocol = Bytes()
    s = Stream(loop, a, protocol)
    s.pause_reading()
    b.sendall(b"held back")
    for _ in range(3):
        loop.run_once(timeout=0.01)
    assert protocol.events == [] and loop.watched(a) == 0
    s.resume_reading()
    run_until(loop, lambda: protocol.received() == b"held back")
    s.close()
    s.resume_reading()   # a closed stream reads nothing more, asked or not
    assert loop.watched(a) == 0
    b.close()


def test_an_abort_for_a_reason_gives_the_protocol_that_reason(loop):
    """What a protocol does with bytes it cannot read (the engine's RESP reader on garbage)."""
    a, b = socket.socketpair()
    protocol = Bytes()
    s = Stream(loop, a, protocol)
    s.write(b"never sent")
    s.abort("protocol error: garbage")
    run_until(loop, lambda: protocol.events)
    assert protocol.events == [("lost", "protocol error: garbage")]
    b.settimeout(2)
    assert b.recv(100) == b""
    b.close()


def test_the_transport_knows_nothing_of_json_lines():
    """The connection layer's seam: reactor.stream and reactor.tls run without reactor.framing loaded."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, reactor.stream, reactor.tls; print(sorted(m for m in sys.modules if m.startswith('reactor')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['reactor',", "'reactor.builds',", "'reactor.compiled',", "'reactor.loop',",
                                  "'reactor.stream',", "'reactor.tls']"]   # (builds: the package's, which build runs)


# -- listen and connect -------------------------------------------------

def test_listen_accepts_many_and_connect_works(loop):
    accepted = []
    lst = listen(loop, "127.0.0.1", 0, accepted.append)
    port = lst.address[1]
    done = []
    for _ in range(20):
        Connector(loop, "127.0.0.1", port, lambda sock, err: done.append((sock, err)))
    run_until(loop, lambda: len(accepted) == 20 and len(done) == 20)
    assert all(err is None for _, err in done)
    for sock, _ in done:
        sock.close()
    for sock in accepted:
        sock.close()
    lst.close()


def test_connect_refused_is_a_clear_error(loop):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    done = []
    Connector(loop, "127.0.0.1", port, lambda sock, err: done.append((sock, err)))
    run_until(loop, lambda: done)
    assert done[0][0] is None and "refused" in done[0][1].lower()


def test_connect_bad_host_is_a_clear_error(loop):
    done = []
    Connector(loop, "no such host.invalid", 1, lambda sock, err: done.append((sock, err)))
    run_until(loop, lambda: done)
    assert done[0][0] is None and done[0][1]


def test_a_numeric_connect_never_looks_a_name_up(loop, monkeypatch):
    """For addresses from the network: a name fails at once, as no IP address, without a DNS query."""
    real, asked = socket.getaddrinfo, []

    def spy(host, *args, **kw):
        asked.append((host, kw.get("flags", 0)))
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    accepted = []
    lst = listen(loop, "127.0.0.1", 0, accepted.append)
    done = []
    Connector(loop, "localhost", lst.address[1], lambda sock, err: done.append((sock, err)), numeric=True)
    Connector(loop, "127.0.0.1", lst.address[1], lambda sock, err: done.append((sock, err)), numeric=True)
    run_until(loop, lambda: len(done) == 2 and accepted)
    assert asked == [("localhost", socket.AI_NUMERICHOST), ("127.0.0.1", socket.AI_NUMERICHOST)]
    failed, connected = sorted(done, key=lambda d: d[0] is not None)
    assert failed[0] is None and failed[1]
    assert connected[1] is None
    connected[0].close()
    accepted[0].close()
    lst.close()


def test_connect_timeout(loop):
    # A listener whose backlog is full: SYNs go unanswered, so connect hangs.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(srv.getsockname())
        fillers.append(f)
    done = []
    Connector(loop, "127.0.0.1", srv.getsockname()[1], lambda sock, err: done.append((sock, err)), timeout=0.2)
    run_until(loop, lambda: done)
    if done[0][0] is not None:  # the kernel accepted it after all; nothing to assert about timing
        done[0][0].close()
    else:
        assert done[0][1] == "timed out"
    for f in fillers:
        f.close()
    srv.close()


def test_connector_cancel(loop):
    srv = socket.create_server(("127.0.0.1", 0))
    done = []
    c = Connector(loop, "127.0.0.1", srv.getsockname()[1], lambda sock, err: done.append(err))
    c.cancel()
    loop.run_once(timeout=0.05)
    loop.run_once(timeout=0.05)
    assert done == []
    srv.close()


EMFILE_CHILD = textwrap.dedent("""
    import resource, socket, sys, time, logging
    sys.path.insert(0, sys.argv[1])
    from reactor.loop import EventLoop
    from reactor.stream import listen
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    loop = EventLoop()
    accepted = []
    lst = listen(loop, "127.0.0.1", 0, accepted.append, retry_delay=0.2)
    port = lst.address[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Leave room for exactly a few more descriptors.
    import os
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, hard))
    clients = []
    for _ in range(3):
        c = socket.socket(); c.connect(("127.0.0.1", port)); clients.append(c)
    # 3 client sockets use 3 fds; accepting needs 3 more, but only 3 are left: some accept hits EMFILE.
    start = time.process_time()
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        loop.run_once(timeout=0.05)
    cpu = time.process_time() - start
    paused = len(accepted)
    # Descriptors free again: the paused accepts resume and the rest get in.
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    accepted_before = paused
    accepted.clear()
    t_end = time.monotonic() + 20.0  # ends as soon as all three are in
    while time.monotonic() < t_end and accepted_before + len(accepted) < 3:
        loop.run_once(timeout=0.05)
    print(accepted_before, accepted_before + len(accepted), round(cpu, 3))
""")


@pytest.mark.e2e
def test_emfile_on_accept_pauses_and_recovers(tmp_path):
    script = tmp_path / "emfile_child.py"
    script.write_text(EMFILE_CHILD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, str(script), root], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    before, total, cpu = out.stdout.split()
    assert int(before) < 3            # ran out of descriptors...
    assert "Too many open files" in out.stderr  # ...said so...
    assert int(total) == 3            # ...and every client got in once descriptors were free
    assert float(cpu) < 0.5           # without spinning for the second it was paused


# -- the rarer failures, each reported and never raised ---------------------

def test_a_spurious_wakeup_reads_nothing_and_goes_on(loop):
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, FlakySocket(a, recv=[BlockingIOError()]), JsonLines(rec))
    b.sendall(b'{"n": 1}\n')
    loop.run_once(timeout=1)            # the recv that would block
    run_until(loop, lambda: rec.frames)
    assert rec.frames == [{"n": 1}] and rec.lost == []
    s.abort()
    b.close()


def test_a_send_to_a_vanished_peer_is_reported(loop, pair):
    s, raw, rec = pair
    raw.close()
    s.write(encode({"to": "nobody"}))
    run_until(loop, lambda: rec.lost)
    assert rec.lost[0] in ("peer closed the connection", "Broken pipe", "Connection reset by peer")
    s.write(encode({"after": "the end"}))       # a no-op, not an error


def test_a_send_error_is_reported(loop):
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec))
    b.shutdown(socket.SHUT_RD)          # the peer still sends nothing, but our sends now fail
    a.shutdown(socket.SHUT_WR)
    s.write(encode({"x": 1}))
    run_until(loop, lambda: rec.lost)
    assert rec.lost == ["Broken pipe"]
    b.close()


def test_abort_survives_a_socket_that_refuses_linger(loop):
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, FlakySocket(a, setsockopt=[OSError(22, "Invalid argument")]), JsonLines(rec))
    s.abort()
    s.abort()
    run_until(loop, lambda: rec.lost)
    assert rec.lost == [None] and s.closed
    b.close()


def test_a_stream_on_a_socket_without_a_peer_has_no_address(loop):
    rec = Recorder()
    s = Stream(loop, socket.socket(), JsonLines(rec))
    assert s.peer_address is None
    s.abort()


def test_accept_skips_an_aborted_client_and_pauses_when_out_of_descriptors(loop):
    server = socket.create_server(("127.0.0.1", 0))
    flaky = FlakySocket(server, accept=[ConnectionAbortedError(103, "Software caused connection abort"),
                                        OSError(24, "Too many open files")])
    accepted = []
    listener = stream_mod.Listener(loop, flaky, accepted.append, retry_delay=60)
    client = socket.create_connection(listener.address)
    loop.run_once(timeout=1)            # aborted one skipped, then EMFILE: accepting pauses
    assert accepted == [] and loop.pending_timers == 1   # the retry
    listener.close()                    # cancels the retry and closes the socket
    assert flaky.fileno() == -1
    client.close()


def test_connect_can_fail_at_once(loop):
    results = []
    Connector(loop, "255.255.255.255", 80, lambda sock, err: results.append((sock, err)), timeout=5)
    run_until(loop, lambda: results)
    sock, err = results[0]
    assert sock is None and err


def test_errors_are_described_in_words():
    assert describe_os_error(ConnectionResetError(104, "Connection reset by peer")) == "Connection reset by peer"
    assert describe_os_error(OSError("odd")) == "odd"
    assert describe_os_error(OSError()) == "OSError"


def test_abort_while_a_close_is_releasing_reports_once(loop, pair):
    s, raw, rec = pair
    s.write(encode({"last": "words"}))
    s.close()                           # the words go out now; the socket is released later this turn
    s.abort()
    run_until(loop, lambda: rec.lost)
    loop.run_once(timeout=0)
    assert rec.lost == [None]
    raw.settimeout(2)
    assert json.loads(raw.recv(100)) == {"last": "words"}
