"""What a stranger's TLS handshake may cost the server: the first flight read by hand (``ClientHelloReader``), a
token bucket per source address (``AddressBuckets``), handshakes at once and per loop turn (``Handshakes``), and
a server-side ``TLSStream`` that holds only its hello's bytes until the limits let it go on."""
import socket
import ssl

import pytest

from reactor.framing import JsonLines
from reactor.handshakes import AddressBuckets, Handshakes
from reactor.tls import (
    ILLEGAL_PARAMETER,
    MAX_FIRST_FLIGHT,
    PROTOCOL_VERSION,
    RECORD_OVERFLOW,
    UNEXPECTED_MESSAGE,
    BadHello,
    ClientHelloReader,
    NotTLS,
    TLSLayer,
    TLSStream,
    alert_record,
)
from tests.bench.tls_attacks import client_hello, half_hello
from tests.support import PATIENCE, Recorder, run_until

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


@pytest.fixture(scope="module")
def contexts(ca):
    """(server context, client context) for a server certificate valid for localhost."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


@pytest.fixture(scope="module")
def hello(contexts):
    return client_hello(contexts[1])


def records(message: bytes, *sizes: int) -> bytes:
    """``message`` cut into handshake records of these sizes (the rest in the last)."""
    out, at = b"", 0
    for size in (*sizes, len(message)):
        part = message[at:at + size]
        if part:
            out += b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
        at += size
    return out


# -- ClientHelloReader: sans-I/O ------------------------------------------------------

def test_a_real_hello_is_given_back_whole_at_once_or_byte_by_byte(hello):
    assert ClientHelloReader().feed(hello) == hello
    reader = ClientHelloReader()
    assert [reader.feed(hello[i:i + 1]) for i in range(len(hello) - 1)] == [None] * (len(hello) - 1)
    assert reader.feed(hello[-1:]) == hello


def test_a_hello_in_several_records_and_what_came_after_it_are_given_back_together(hello):
    message = hello[5:]   # the handshake message of the one record
    split = records(message, 3, 100)   # its header cut too
    reader = ClientHelloReader()
    assert reader.feed(split[:-1]) is None
    assert reader.feed(split[-1:] + b"\x14\x03\x03\x00\x01\x01") == split + b"\x14\x03\x03\x00\x01\x01"


@pytest.mark.parametrize("data, alert, words", [
    (half_hello(131_000), ILLEGAL_PARAMETER, "a ClientHello of 131004 bytes, over"),
    (b"\x16\x03\x01\x40\x00", ILLEGAL_PARAMETER, f"a first flight over {MAX_FIRST_FLIGHT} bytes"),
    (b"\x16\x03\x01\x40\x01", RECORD_OVERFLOW, "a record of 16385 bytes"),
    (b"\x16\x03\x01\x00\x00", RECORD_OVERFLOW, "a record of 0 bytes"),
    (b"GET / HTTP/1.0\r\n\r\n", UNEXPECTED_MESSAGE, "not a TLS handshake"),
    (b"\x16\x02\x00\x00\x04", PROTOCOL_VERSION, "wrong version number"),
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x10", UNEXPECTED_MESSAGE, "not a ClientHello"),
    (records(b"\x01\x00\x00\x02ab" + b"\x02\x00"), UNEXPECTED_MESSAGE, "a record past the ClientHello"),
    (records(b"\x01\x00\x00\x03ab") + b"\x16\x03\x01\x00\x02", UNEXPECTED_MESSAGE, "a record past the ClientHello"),
])
def test_a_first_flight_no_real_client_sends_is_refused_at_its_headers(data, alert, words):
    """Refused as soon as the header that says so is here: nothing after it is waited for."""
    reader = ClientHelloReader()
    with pytest.raises(BadHello) as refused:
        reader.feed(data)
    assert refused.value.alert == alert and words in str(refused.value)


def test_a_stranger_sending_tiny_records_holds_no_more_than_the_limit():
    reader = ClientHelloReader()
    message = b"\x01" + (MAX_FIRST_FLIGHT - 200).to_bytes(3, "big") + b"x" * (MAX_FIRST_FLIGHT - 200)
    tiny = records(message, *([1] * 2000))
    fed = 0
    with pytest.raises(BadHello, match=f"a first flight over {MAX_FIRST_FLIGHT} bytes"):
        for i in range(0, len(tiny), 1000):
            fed += 1000
            assert reader.feed(tiny[i:i + 1000]) is None
    assert fed <= MAX_FIRST_FLIGHT + 1000   # refused by the read that passed the limit


def test_a_json_line_is_a_plaintext_client_and_a_lone_brace_later_is_not():
    with pytest.raises(NotTLS):
        ClientHelloReader().feed(b'{"type":"hello"}\n')
    reader = ClientHelloReader()
    assert reader.feed(b"\x16\x03") is None
    with pytest.raises(BadHello):
        reader.feed(b"\x01\x00\x04{\x00\x00\x00\x04")


def test_an_alert_record_is_a_fatal_plaintext_alert():
    assert alert_record(ILLEGAL_PARAMETER) == b"\x15\x03\x03\x00\x02\x02\x2f"


# -- AddressBuckets: sans-I/O ---------------------------------------------------------

def test_each_address_may_start_its_burst_then_its_rate():
    buckets = AddressBuckets(rate=10.0, burst=3)
    assert [buckets.take("10.0.0.1", 0.0) for _ in range(3)] == [True, True, True]
    assert buckets.take("10.0.0.2", 0.0)   # another address is not held back
    assert not buckets.take("10.0.0.1", 0.05)   # half a token (and the refusal cost one: -0.5)
    assert buckets.take("10.0.0.1", 0.2) and not buckets.take("10.0.0.1", 0.2)
    assert [buckets.take("10.0.0.1", 10.0) for _ in range(4)] == [True, True, True, False]   # never past burst


def test_an_address_asking_faster_than_its_rate_gets_nothing_past_its_burst_until_it_slows_down():
    buckets = AddressBuckets(rate=10.0, burst=4)
    assert sum(buckets.take("10.0.0.1", i / 1000) for i in range(1000)) == 4   # 1,000 a second: its burst alone
    assert buckets.take("10.0.0.2", 0.999)   # (another address is not held back)
    assert not buckets.take("10.0.0.1", 1.2)   # a pause of 0.2 s: still in debt (at most -burst)
    assert buckets.take("10.0.0.1", 2.0)   # a longer one: served again
    assert [buckets.take("10.0.0.1", 2.0 + i / 5) for i in range(1, 20)] == [True] * 19   # 5 a second: all


def test_a_rate_of_zero_is_no_limit():
    buckets = AddressBuckets(rate=0.0, burst=1)
    assert all(buckets.take("10.0.0.1", 0.0) for _ in range(100)) and len(buckets) == 0


def test_the_buckets_kept_are_bounded_full_ones_go_first_and_then_new_addresses_share_one():
    buckets = AddressBuckets(rate=1.0, burst=2, max_addresses=3)
    for address in ("a", "b", "c"):
        assert buckets.take(address, 0.0)
    assert buckets.take("d", 0.0) and len(buckets) == 3 + 1   # all in use: d draws on the shared bucket
    assert buckets.take("e", 0.0) and not buckets.take("f", 0.0)   # ... as e and f do: two tokens
    assert buckets.take("a", 0.0) and not buckets.take("a", 0.0)   # a still has its own
    assert buckets.take("g", 10.0) and len(buckets) == 1   # later: the full buckets are forgotten


# -- Handshakes on a loop ---------------------------------------------------------------

@pytest.fixture
def turns(loop, clock):
    loop.time = clock
    return loop


def started_log():
    log = []
    return log, (lambda name: (lambda: log.append(name)))


def test_a_turn_starts_at_most_per_turn_handshakes_and_the_rest_start_in_later_turns_in_order(turns):
    handshakes = Handshakes(turns, per_turn=2)
    log, start = started_log()
    turns.run_once(timeout=0)
    begun = [handshakes.begin(f"10.0.0.{i}", start(i)) for i in range(5)]
    assert [h.running for h in begun] == [True, True, False, False, False]
    assert handshakes.waiting == 3
    turns.run_once(timeout=0)
    assert log == [2, 3] and handshakes.running == 4
    turns.run_once(timeout=0)
    assert log == [2, 3, 4] and handshakes.waiting == 0


def test_at_most_so_many_run_at_once_per_address_and_in_all_and_an_end_frees_a_slot(turns):
    handshakes = Handshakes(turns, per_turn=100, at_once=3, at_once_per_address=2)
    log, start = started_log()
    begun = [handshakes.begin(address, start(n)) for n, address in enumerate(["a", "a", "a", "b", "c", "b"])]
    # a has two; the others queue behind a's third (first come, first served)
    assert [h.running for h in begun] == [True, True, False, False, False, False]
    handshakes.end(begun[0])   # a's third goes on, and b's first: three in all
    run_until(turns, lambda: len(log) == 2)
    assert log == [2, 3] and handshakes.running == 3 and handshakes.waiting == 2
    turns.run_once(timeout=0)
    assert log == [2, 3]   # a new turn starts none past the three
    handshakes.end(begun[1])   # c goes on
    run_until(turns, lambda: len(log) == 3)
    assert log == [2, 3, 4] and handshakes.waiting == 1
    handshakes.end(begun[2])   # b's second: b had one
    run_until(turns, lambda: len(log) == 4)
    assert log == [2, 3, 4, 5] and handshakes.waiting == 0 and handshakes.running == 3


def test_an_address_at_its_limit_does_not_hold_up_the_others_queued_behind_it(turns):
    handshakes = Handshakes(turns, per_turn=100, at_once_per_address=1)
    log, start = started_log()
    begun = [handshakes.begin(address, start(n)) for n, address in enumerate(["a", "a", "b"])]
    assert [h.running for h in begun] == [True, False, False]   # b queues behind a's second
    turns.run_once(timeout=0)
    assert log == [2] and handshakes.waiting == 1   # the next turn: b goes on, a's second still waits
    handshakes.end(begun[0])
    run_until(turns, lambda: len(log) == 2)
    assert log == [2, 1] and handshakes.waiting == 0


def test_a_waiting_handshake_that_ends_leaves_the_queue_and_ending_twice_is_harmless(turns):
    handshakes = Handshakes(turns, per_turn=1)
    log, start = started_log()
    first, second = handshakes.begin("a", start(1)), handshakes.begin("b", start(2))
    handshakes.end(second)
    handshakes.end(second)
    assert handshakes.waiting == 0
    turns.run_once(timeout=0)
    turns.run_once(timeout=0)
    assert log == [] and handshakes.running == 1
    handshakes.end(first)
    handshakes.end(first)
    assert handshakes.running == 0


def test_admit_draws_on_the_address_bucket_at_the_loop_time(turns, clock):
    handshakes = Handshakes(turns, rate=2.0, burst=2)
    assert [handshakes.admit("a") for _ in range(3)] == [True, True, False]
    clock.now += 1.0   # (the refusal cost a token too)
    assert handshakes.admit("a") and not handshakes.admit("a")


# -- a server's TLSStream with them ---------------------------------------------------------

def server_stream(loop, contexts, **options):
    a, b = socket.socketpair()
    rec = Recorder()
    stream = TLSStream(loop, a, JsonLines(rec), context=contexts[0], server_side=True, **options)
    b.settimeout(PATIENCE)
    return stream, rec, b


def read_all(sock) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_half_a_hello_declaring_131000_bytes_is_refused_at_once_with_an_alert(loop, contexts):
    stream, rec, b = server_stream(loop, contexts)
    b.sendall(half_hello(131_000))
    run_until(loop, lambda: rec.lost)
    assert rec.lost == [f"TLS: a ClientHello of 131004 bytes, over {MAX_FIRST_FLIGHT - 5}"]
    assert read_all(b) == alert_record(ILLEGAL_PARAMETER)
    b.close()


def test_a_hello_read_a_few_bytes_at_a_time_ends_in_a_handshake(loop, contexts):
    secure = []
    stream, rec, b = server_stream(loop, contexts, read_size=7, on_secure=secure.append)
    client = contexts[1].wrap_socket(b, server_hostname="localhost", do_handshake_on_connect=False)
    client.setblocking(False)
    done = []

    def step():
        try:
            client.do_handshake()
            done.append(True)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        return True

    run_until(loop, step)
    run_until(loop, lambda: secure)
    assert done and secure == [stream] and not rec.lost
    client.close()
    stream.abort()


def test_hellos_past_the_turn_limit_wait_for_a_later_turn_holding_only_their_bytes_then_go_on(loop, contexts, hello):
    handshakes = Handshakes(loop, per_turn=1)
    pairs = [server_stream(loop, contexts, handshakes=handshakes) for _ in range(3)]
    for _stream, _rec, b in pairs:
        b.sendall(hello)
    run_until(loop, lambda: handshakes.running + handshakes.waiting == 3)
    assert handshakes.running == 1 and handshakes.waiting == 2   # all read in one turn: one answered
    answers = []
    for _stream, _rec, b in pairs:   # each is answered (a ServerHello) in the end
        run_until(loop, lambda b=b: _readable(b))
        answers.append(b.recv(65536))
    assert all(answer[:1] == b"\x16" for answer in answers) and handshakes.waiting == 0
    for stream, _rec, b in pairs:
        stream.abort()
        b.close()
    assert handshakes.running == 0


def test_a_waiting_hello_whose_stream_closes_as_its_turn_comes_frees_its_slot(loop, contexts, hello):
    handshakes = Handshakes(loop, at_once=1)
    first, _rec, b1 = server_stream(loop, contexts, handshakes=handshakes)
    second, rec2, b2 = server_stream(loop, contexts, handshakes=handshakes)
    b1.sendall(hello)
    run_until(loop, lambda: handshakes.running == 1)
    b2.sendall(hello)
    run_until(loop, lambda: handshakes.waiting == 1)
    first.abort()   # the second's turn: its start is queued ...
    assert handshakes.running == 1 and handshakes.waiting == 0
    second.abort()   # ... and it is gone before it runs
    run_until(loop, lambda: rec2.lost)
    assert handshakes.running == 0
    b1.close()
    b2.close()


def test_a_session_not_yet_made_has_nothing_to_say_or_show(contexts):
    layer = TLSLayer(contexts[0], server_side=True)
    layer.close()
    assert layer.take() == b"" and layer.peer_certificate() is None and not layer.established


def test_a_hello_waiting_for_its_turn_is_cut_at_the_handshake_deadline_and_leaves_the_queue(loop, contexts, hello):
    handshakes = Handshakes(loop, at_once=1)
    first, _rec, b1 = server_stream(loop, contexts, handshakes=handshakes)
    second, rec2, b2 = server_stream(loop, contexts, handshakes=handshakes, handshake_timeout=0.2)
    b1.sendall(hello)
    run_until(loop, lambda: handshakes.running == 1)
    b2.sendall(hello)
    run_until(loop, lambda: handshakes.waiting == 1)
    run_until(loop, lambda: rec2.lost)
    assert rec2.lost == ["TLS handshake timed out"] and handshakes.waiting == 0 and handshakes.running == 1
    assert read_all(b2) == b""   # it was never answered
    first.abort()
    assert handshakes.running == 0
    b1.close()
    b2.close()


def _readable(sock) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


# -- the server's host and its flag -------------------------------------------------------

def test_the_handshake_rate_flag_defaults_to_ten_a_second_and_zero_turns_it_off(capsys):
    import server_main
    assert server_main.parse_args(["0", "1", "1"]).tls_handshake_rate == 10.0
    assert server_main.parse_args(["0", "1", "1", "--tls-handshake-rate", "0"]).tls_handshake_rate is None
    with pytest.raises(SystemExit) as exit_:
        server_main.parse_args(["0", "1", "1", "--tls-handshake-rate", "-1"])
    assert exit_.value.code == 2 and "--tls-handshake-rate" in capsys.readouterr().err


def answered_in_process(loop, host, hello, source="127.0.0.1") -> bool:
    """A ClientHello from ``source`` to the in-process ``host``: answered with a handshake record, or closed."""
    sock = socket.create_connection(host.address, source_address=(source, 0))
    sock.setblocking(False)
    got = []

    def reply():
        try:
            got.append(sock.recv(1))
        except BlockingIOError:
            return False
        except ConnectionResetError:
            got.append(b"")
        return True

    sock.sendall(hello)
    run_until(loop, reply)
    sock.close()
    run_until(loop, lambda: host.strangers == 0)   # gone: not counted against its address's cap of strangers
    return got == [b"\x16"]


@pytest.mark.parametrize("rate, answered", [(1.0, [True, True, False]), (None, [True, True, True])])
def test_the_host_closes_at_accept_a_connection_from_an_address_out_of_handshakes(loop, contexts, hello, rate,
                                                                                  answered):
    from reactor.server.host import ServerHost
    from reactor.server.rules import ChatServer
    from tests.support import ACCOUNTS
    host = ServerHost(loop, ChatServer(dict(ACCOUNTS), 10.0, 600.0), tls=contexts[0], max_strangers_per_address=2,
                      handshake_rate=rate)
    host.serve("127.0.0.1", 0)
    assert [answered_in_process(loop, host, hello) for _ in range(3)] == answered   # a burst of 2, then 1 a second
    assert answered_in_process(loop, host, hello, source="127.0.0.2")   # another address has its own
    host.shutdown()
    loop.run()
