"""JSON-lines framing: the codec without I/O, then ``JsonLines`` on a stream over real sockets (frames handed
on, bad lines, a handler's bugs, the fair share of frames per turn, ``max_frame`` on a live stream)."""
import json
import selectors
import socket

import pytest

from reactor import framing
from reactor.framing import BadFrame, FrameDecoder, JsonLines, decode, encode
from reactor.protocol import FrameType
from reactor.stream import Stream
from tests.support import Recorder, run_until

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)

# -- the codec --------------------------------------------------------------

# Frames whose bytes orjson (the fast build's, reactor/fastjson.py) would write otherwise than json: each must
# come out as the standard library writes it, on both builds (make test-compiled runs this with orjson).
AWKWARD_FRAMES = [
    {"n": 2 ** 64}, {"n": -(2 ** 63) - 1}, {"n": 10 ** 400}, {"n": 2 ** 63 - 1, "m": -(2 ** 63)},
    {"x": 1e-7}, {"x": 1e16}, {"x": 1e22}, {"x": 123456789012345680.0}, {"x": 0.1}, {"x": -0.0}, {"x": 5e-324},
    {"t": "é😀"}, {"t": "\x1b[2J\x7f\u2028\x85"}, {"t": "a\nb\tc\\d\"e/"}, {"t": "\ud800"}, {1: "an int key"},
    {"type": FrameType.MESSAGE, "list": [1, "two", None, True, [{"deep": []}]], "tuple": (1, 2)},
    {"deep": json.loads("[" * 40 + "]" * 40)}, {"t": "Йода", "k\udfff": "a key's lone surrogate"},
]


def standard(frame):
    """``frame`` as the standard library writes it: UTF-8; all ASCII escapes where text has a lone surrogate."""
    try:
        return (json.dumps(frame, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(frame, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")


@pytest.mark.parametrize("frame", AWKWARD_FRAMES, ids=range(len(AWKWARD_FRAMES)))
def test_a_frame_is_written_as_the_standard_library_writes_it(frame):
    assert encode(frame) == standard(frame)


def test_every_character_but_a_surrogate_is_written_as_the_standard_library_writes_it():
    for start in range(0, 0x110000, 512):
        text = "".join(chr(c) for c in range(start, start + 512) if not 0xD800 <= c <= 0xDFFF)
        frame = {"type": "message", "text": text, text[:4]: start}
        assert encode(frame) == standard(frame), hex(start)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), object()])
def test_a_value_json_has_not_is_refused_as_the_standard_library_refuses_it(value):
    with pytest.raises((ValueError, TypeError)) as refused:
        encode({"x": value})
    with pytest.raises(refused.type):
        json.dumps({"x": value}, allow_nan=False)
    assert encode({"x": 1}) == b'{"x":1}\n'   # (and the encoder goes on)


# Lines orjson would read otherwise than json: the same frames (an int stays an int), or the same BadFrame.
AWKWARD_LINES = [
    (b'{"n":18446744073709551616}', {"n": 2 ** 64}),
    (b'{"n":-9223372036854775809}', {"n": -(2 ** 63) - 1}),
    (b'{"n":123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
    (b'{"n":18446744073709551615,"m":-9223372036854775808}', {"n": 2 ** 64 - 1, "m": -(2 ** 63)}),
    (b'{"x":1E5,"y":1e-7,"z":-0.0}', {"x": 100000.0, "y": 1e-7, "z": -0.0}),
    (b'{"x":1e400}', {"x": float("inf")}),
    (b'{"a":1,"a":2,"b":3}', {"a": 2, "b": 3}),
    (b' {"t":"\\u00e9\\ud83d\\ude00"}\r', {"t": "é😀"}),
    (b'{"x":NaN}', "invalid JSON"), (b'{"x":Infinity}', "invalid JSON"),
    (b'{"t":"\\ud800"}', "invalid Unicode: a lone surrogate escape"),
    (b'{"t":"a\x01b"}', "invalid JSON"), (b'{"t":"\xff"}', "invalid UTF-8"),
    (b'\xef\xbb\xbf{"t":"bom"}', "invalid JSON"), (b'[1,2]', "frame is not a JSON object"),
    (b'{"d":' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid JSON"),
    (b'{"d":' + b"[" * 60 + b"]" * 60 + b"}", {"d": json.loads("[" * 60 + "]" * 60)}),
]


@pytest.mark.parametrize(("line", "expected"), AWKWARD_LINES, ids=range(len(AWKWARD_LINES)))
def test_a_line_is_read_as_the_standard_library_reads_it(line, expected):
    frame = decode(line)
    if isinstance(expected, str):
        assert isinstance(frame, BadFrame) and frame.detail == expected
    else:
        assert frame == expected
        assert [type(v) for v in frame.values()] == [type(v) for v in expected.values()]   # (an int is no float)


def test_encode_is_one_utf8_line():
    data = encode({"type": "message", "text": "héllo\nworld"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"type": "message", "text": "héllo\nworld"}
    assert "héllo".encode() in data   # not escaped: a Cyrillic name is not six times longer on the wire
    assert len(encode({"names": ["Пользователь"]})) == len('{"names":[""]}\n') + 2 * 12


def test_a_lone_surrogate_leaves_escaped_and_the_other_side_refuses_it_not_fatally():
    data = encode({"type": "message", "text": "a\ud800b", "from": "Йода"})
    assert data == b'{"type":"message","text":"a\\ud800b","from":"\\u0419\\u043e\\u0434\\u0430"}\n'
    bad = decode(data[:-1])
    assert isinstance(bad, BadFrame) and not bad.fatal


@pytest.mark.parametrize("frame", [
    {"type": "message", "from": "bob", "text": "the quick brown fox"},
    {"type": "x", "t": "h\u00e9\u2028\U0001F600\"\\\n\x00", "n": -1, "f": 1.5e300, "b": [True, False, None]},
    {"nested": {"a": [{"b": []}, {}]}, "": ""},
])
def test_encode_is_what_the_json_module_writes(frame):
    """The prebuilt C encoder (framing._encode) writes the very bytes json.dumps would, as UTF-8."""
    expected = json.dumps(frame, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n"
    assert encode(frame) == expected.encode("utf-8")


def test_encode_refuses_what_json_refuses_and_goes_on():
    loop_frame: dict = {"type": "x"}
    loop_frame["self"] = loop_frame
    for bad, error in (({"x": float("nan")}, ValueError), (loop_frame, ValueError), ({"x": object()}, TypeError)):
        with pytest.raises(error):
            encode(bad)
    shared = {"k": 1}
    assert encode({"a": shared, "b": shared}) == b'{"a":{"k":1},"b":{"k":1}}\n'   # no stale circular marks


@pytest.mark.parametrize("line,frame", [
    (b' {"a":1}', {"a": 1}),                 # JSON whitespace before (the scanner alone cannot start there) ...
    (b'{"a":1} \t\r', {"a": 1}),             # ... and after
    (b'\t{"a":[1, {"b" : 2}]}\r', {"a": [1, {"b": 2}]}),
])
def test_decoder_takes_json_whitespace_around_a_frame(line, frame):
    assert FrameDecoder().feed(line + b"\n") == [frame]


@pytest.mark.parametrize("line", [b'{"a":1}x', b'{"a":1} {"b":2}', b'{"a":1}}', b"", b"\x0c{}"])
def test_decoder_refuses_extra_data_and_non_json_whitespace(line):
    bad = decode(line)
    assert isinstance(bad, BadFrame) and bad.detail == "invalid JSON" and not bad.fatal


def test_decoder_one_frame_over_many_chunks():
    d = FrameDecoder()
    data = encode({"type": "x", "n": 1})
    out = []
    for i in range(len(data)):
        out += d.feed(data[i:i + 1])
    assert out == [{"type": "x", "n": 1}]


def test_decoder_many_frames_in_one_chunk_and_blank_lines():
    d = FrameDecoder()
    data = b"".join(encode({"i": i}) for i in range(100)) + b"\n\n"
    assert d.feed(data) == [{"i": i} for i in range(100)]


def test_decoder_split_utf8_sequence():
    d = FrameDecoder()
    line = '{"t":"é€"}\n'.encode()
    cut = line.index(b"\xe2") + 1
    assert d.feed(line[:cut]) == []
    assert d.feed(line[cut:]) == [{"t": "é€"}]


@pytest.mark.parametrize("line,detail", [
    (b"\xff\xfe{}", "invalid UTF-8"),
    (b"{not json", "invalid JSON"),
    (b"[1,2]", "frame is not a JSON object"),
    (b"NaN", "invalid JSON"),
    (b'{"x": Infinity}', "invalid JSON"),
    (b"[" * 20000 + b"]" * 20000, "invalid JSON"),  # nesting too deep for the parser
])
def test_decoder_reports_bad_lines_and_goes_on(line, detail):
    d = FrameDecoder()
    out = d.feed(line + b"\n" + encode({"ok": 1}))
    assert isinstance(out[0], BadFrame) and out[0].detail == detail and not out[0].fatal
    assert out[1] == {"ok": 1}


@pytest.mark.parametrize("line", [
    rb'{"type":"message","text":"\ud800"}',                 # a lone high surrogate
    rb'{"type":"message","text":"a\uDFFFb"}',               # a lone low one, upper-case hex
    rb'{"type":"message","text":"\ude00\ud83d"}',          # a pair in the wrong order
    rb'{"type":"message","\ud800":"x"}',                    # in a key
    rb'{"type":"x","ids":[1,{"deep":["ok","\udbff"]}]}',   # deep in lists and objects
])
def test_decoder_rejects_lone_surrogates_anywhere_and_goes_on(line):
    out = FrameDecoder().feed(line + b"\n" + encode({"ok": 1}))
    assert isinstance(out[0], BadFrame) and not out[0].fatal
    assert out[0].detail == "invalid Unicode: a lone surrogate escape"
    assert out[1] == {"ok": 1}


@pytest.mark.parametrize("line,frame", [
    (rb'{"t":"\ud83d\ude00"}', {"t": "\U0001F600"}),     # a valid pair is one character
    (rb'{"t":"\uD83D\uDE00 \u00e9"}', {"t": "\U0001F600 \u00e9"}),
    (rb'{"t":"\\ud800"}', {"t": "\\ud800"}),              # an escaped backslash: plain text
])
def test_decoder_keeps_valid_text_with_escapes(line, frame):
    assert FrameDecoder().feed(line + b"\n") == [frame]


def test_decoder_over_long_line_is_fatal_within_a_chunk():
    d = FrameDecoder(max_frame=10)
    out = d.feed(encode({"a": 1}) + b"x" * 11 + b"\n" + encode({"b": 2}))
    assert out[0] == {"a": 1}
    assert isinstance(out[1], BadFrame) and out[1].fatal
    assert len(out) == 2
    assert d.feed(encode({"c": 3})) == []


def test_decoder_over_long_partial_line_is_fatal_without_newline():
    d = FrameDecoder(max_frame=100)
    assert d.feed(b"x" * 60) == []
    out = d.feed(b"x" * 60)
    assert len(out) == 1 and out[0].fatal


def test_a_tls_hello_on_a_plaintext_stream_is_fatal_at_once_though_it_holds_no_line_end():
    """A TLS client's hello would wait for a line end that may never come: told at once, its client can say
    the port does not speak TLS (reactor/tls.py)."""
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(11, 200))   # no \n in it
    d = FrameDecoder(max_frame=1024)
    out = d.feed(hello)
    assert len(out) == 1 and out[0].fatal and "TLS" in out[0].detail
    assert d.feed(encode({"a": 1})) == []
    d = FrameDecoder(max_frame=1024)
    out = d.feed(b"\x16\x03\x01 with\na line end")          # its first line is a bad frame, as any garbage
    assert len(out) == 1 and not out[0].fatal
    d = FrameDecoder(max_frame=1024)
    assert d.feed(b'{"a": "') == [] and not d.feed(b'\x16"}\n')[0].fatal   # 0x16 within a line: only a bad one


# -- JsonLines on a stream -------------------------------------------------

def test_stream_receives_frames_split_and_batched(loop, pair):
    s, raw, rec = pair
    data = b"".join(encode({"i": i}) for i in range(1000))
    for i in range(0, len(data), 777):
        raw.sendall(data[i:i + 777])
    run_until(loop, lambda: len(rec.frames) == 1000)
    assert rec.frames == [{"i": i} for i in range(1000)]


def test_over_long_frame_reports_then_closes(loop, pair):
    s, raw, rec = pair
    raw.sendall(encode({"ok": 1}) + b"x" * (framing.MAX_FRAME + 10))
    run_until(loop, lambda: rec.lost)
    assert rec.frames == [{"ok": 1}]
    assert rec.errors == [f"frame longer than {framing.MAX_FRAME} bytes"]
    assert rec.lost == [rec.errors[0]]


def test_owner_reply_to_a_fatal_frame_is_flushed_before_close(loop):
    a, b = socket.socketpair()

    class Replier(Recorder):
        def frame_error(self, stream, detail):
            super().frame_error(stream, detail)
            stream.write(encode({"type": "error", "detail": detail}))

    rec = Replier()
    Stream(loop, a, JsonLines(rec, max_frame=10))
    b.sendall(b"y" * 50)
    run_until(loop, lambda: rec.lost)
    b.settimeout(2)
    assert json.loads(b.recv(1000))["type"] == "error"
    assert b.recv(1000) == b""  # then closed
    b.close()


def test_bad_utf8_and_json_reach_the_owner_and_the_stream_goes_on(loop, pair):
    s, raw, rec = pair
    raw.sendall(b"\xc3\x28\n{oops\n" + encode({"fine": True}))
    run_until(loop, lambda: rec.frames)
    assert rec.errors == ["invalid UTF-8", "invalid JSON"]
    assert rec.frames == [{"fine": True}]
    assert not s.closed


def test_a_handler_that_raises_does_not_lose_the_frames_after(loop, caplog):
    class Buggy(Recorder):
        def frame_received(self, stream, frame):
            if frame.get("boom"):
                raise RuntimeError("bug")
            super().frame_received(stream, frame)

        def frame_error(self, stream, detail):
            raise RuntimeError("bug in the error path")

    a, raw = socket.socketpair()
    buggy = Buggy()
    s = Stream(loop, a, JsonLines(buggy))
    raw.sendall(encode({"i": 1}) + encode({"boom": True}) + b"{oops\n" + encode({"i": 2}))
    run_until(loop, lambda: len(buggy.frames) == 2)
    assert buggy.frames == [{"i": 1}, {"i": 2}]
    assert not s.closed
    assert [r.message for r in caplog.records].count(
        f"stream {s.peer_address}: handler failed on a frame; going on with the next") == 2
    s.abort()
    raw.close()


# -- fair shares and limits that change -----------------------------------------

def test_one_turn_handles_at_most_frames_per_turn_and_the_rest_follow_without_new_bytes(loop):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    order = []

    class Noting(Recorder):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def frame_received(self, stream, frame):
            super().frame_received(stream, frame)
            order.append(self.name)

    hot, calm = Noting("hot"), Noting("calm")
    Stream(loop, a, JsonLines(hot, frames_per_turn=10))
    Stream(loop, c, JsonLines(calm, frames_per_turn=10))
    b.sendall(b"".join(encode({"n": i}) for i in range(35)))   # one read: 35 frames
    d.sendall(encode({"n": 0}))
    loop.run_once(timeout=1.0)
    assert len(hot.frames) <= 20   # its read's turn, and at most one ready-queue turn
    run_until(loop, lambda: len(hot.frames) == 35)   # nothing more arrives: the rest are handled anyway
    assert hot.frames == [{"n": i} for i in range(35)]   # in order
    assert calm.frames == [{"n": 0}] and order.index("calm") <= 20   # not behind all of hot's frames
    b.sendall(encode({"n": 35}))   # reading again once the backlog is done
    run_until(loop, lambda: len(hot.frames) == 36)
    for sock in (a, b, c, d):
        sock.close()


def test_the_socket_is_not_read_while_a_backlog_waits_and_is_read_again_once_it_is_handled(loop):
    a, b = socket.socketpair()
    rec = Recorder()
    Stream(loop, a, JsonLines(rec, frames_per_turn=10))
    for total in (35, 70):   # the second backlog: the stream is back where it began
        b.sendall(b"".join(encode({"n": i}) for i in range(35)))   # one read: 35 frames
        loop.run_once(timeout=1.0)
        assert len(rec.frames) < total and loop.watched(a) == 0
        run_until(loop, lambda total=total: len(rec.frames) == total)
        assert loop.watched(a) == selectors.EVENT_READ
    assert rec.frames == [{"n": i} for i in range(35)] * 2 and not rec.lost
    b.close()


def test_a_backlog_ends_with_the_stream_when_a_frame_closes_it(loop):
    a, b = socket.socketpair()

    class Closer(Recorder):
        def frame_received(self, stream, frame):
            super().frame_received(stream, frame)
            if frame.get("n") == 12:
                stream.close()

    rec = Closer()
    Stream(loop, a, JsonLines(rec, frames_per_turn=5))
    b.sendall(b"".join(encode({"n": i}) for i in range(30)))
    run_until(loop, lambda: rec.lost)
    for _ in range(5):
        loop.run_once(timeout=0.01)
    assert [f["n"] for f in rec.frames] == list(range(13))
    b.close()


def test_limits_can_be_raised_on_a_live_stream(loop, pair):
    a, b = socket.socketpair()
    rec = Recorder()
    s = Stream(loop, a, JsonLines(rec, max_frame=100), read_size=16)
    b.sendall(encode({"t": "x" * 50}))   # under 100 bytes, read 16 at a time
    run_until(loop, lambda: rec.frames)
    s.set_limits(max_output=1 << 20, read_size=4096)
    s.protocol.max_frame = 1000
    assert s.protocol.max_frame == 1000
    b.sendall(encode({"t": "y" * 500}))
    run_until(loop, lambda: len(rec.frames) == 2)
    s.set_limits(max_output=1 << 20, read_size=4096)
    s.protocol.max_frame = 100
    b.sendall(encode({"t": "z" * 500}))
    run_until(loop, lambda: rec.lost)
    assert rec.errors == ["frame longer than 100 bytes"]
    b.close()
