"""JSON-lines framing: one JSON object per UTF-8 line; ``JsonLines``, the protocol that hands a stream's lines on.

``encode``, ``decode`` and ``FrameDecoder`` cut and join lines without I/O. Text
leaves as UTF-8 (JSON escapes only the quote, the backslash and control
characters, so no raw newline is ever inside a line), not as ``\\uXXXX``
escapes, which made a Cyrillic name six times longer. A decoded frame holds
only valid Unicode: a line whose strings (keys or values) keep a lone
surrogate escape (``\\ud800``) is a BadFrame, not fatal.

``JsonLines`` is a stream's protocol object (``reactor.stream.StreamProtocol``):
it cuts the bytes a ``Stream`` (or a ``TLSStream``) reads into frames and hands
each to its handler (a ``FrameHandler``) with the stream, which is what the
handler writes to. A line longer than ``max_frame`` ends the stream (it may
change on a live stream: the server keeps it small until a login).

Fair shares: one read's frames are handled at most ``frames_per_turn`` a turn.
The lines read but not yet handled wait here (at most one ``read_size`` of
them), the stream's reading is paused meanwhile, and the rest are handled from
the loop's ready queue, ``frames_per_turn`` a turn, so a client that streams
frames delays the others by one turn's work, not a whole read's. A handler
that raises on one frame is logged, and the frames after it are still handled.
"""
from __future__ import annotations

import json
import logging
import re
from _json import make_encoder
from json.encoder import encode_basestring, encode_basestring_ascii
from json.scanner import make_scanner
from typing import TYPE_CHECKING, Any, Final, Protocol

from . import fastjson

if TYPE_CHECKING:
    from .stream import Stream

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024  # bytes in one frame, newline excluded
FRAMES_PER_TURN = 32    # frames handled per read (or ready-queue turn) before the other streams' turn


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
# The C encoder and scanner behind those two, made once. ``JSONEncoder.encode`` makes a new C encoder for
# every call (``iterencode``), and ``JSONDecoder.decode`` runs two whitespace regexes around the scanner;
# calling them directly takes a frame's encoding from 1.7 to 1.0 us and its decoding from 1.3 to 0.55 us
# (a 90-byte message frame, CPython 3.11), the same bytes and the same frames. Leaving text as UTF-8 costs
# ASCII nothing (a relayed message: 12,722 -> 12,602 instructions, callgrind; about 0.8 us either way), and a
# Cyrillic message 14,844 -> 15,511 for 349 -> 149 bytes on the wire (docs/performance.md).
_markers: dict[int, Any] = {}   # what the encoder is inside of, to refuse a circular frame as JSONEncoder does
_encode = make_encoder(_markers, _encoder.default, encode_basestring, None, _encoder.key_separator,
                       _encoder.item_separator, False, False, False)
# Text holding a lone surrogate (no character: UTF-8 cannot carry it) leaves as JSON's ASCII escapes, as all
# text did before: the same bytes as ever, which the other side refuses as a BadFrame, not fatal.
_encode_ascii = make_encoder(_markers, _encoder.default, encode_basestring_ascii, None, _encoder.key_separator,
                             _encoder.item_separator, False, False, False)
_scan = make_scanner(_decoder)   # type: ignore[arg-type]  # (typeshed wants a make_scanner; it reads the hooks)
_TLS_HANDSHAKE = 0x16   # the first byte of a TLS handshake record
_BACKSLASH = ord("\\")   # an int: `in` a bytes line is a memchr, far cheaper than a bytes needle
_SURROGATE = re.compile(r"[\ud800-\udfff]")   # left in a decoded str only by a lone \udXXX escape
FAST_JSON: Final = fastjson.ENABLED   # the fast build with orjson: it writes the frames it writes as json would


def encode(frame: dict[str, Any]) -> bytes:
    """The bytes of one frame, newline included: UTF-8, one line (JSON escapes newlines inside strings)."""
    if FAST_JSON:
        fast = fastjson.encode(frame)
        if fast is not None:
            return fast
    try:
        line = "".join(_encode(frame, 0)) + "\n"
    except BaseException:   # (a value JSON has not, NaN, a circular frame) the encoder may leave markers behind
        _markers.clear()
        raise
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: escaped, as ASCII
        return ("".join(_encode_ascii(frame, 0)) + "\n").encode("ascii")


class BadFrame:
    """A line that is not a frame; ``fatal`` when the stream cannot go on (too long)."""

    __slots__ = ("detail", "fatal")

    def __init__(self, detail: str, fatal: bool = False) -> None:
        self.detail = detail
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"BadFrame({self.detail!r}, fatal={self.fatal})"


class FrameDecoder:
    """Splits a byte stream into lines and decodes each into a frame (a dict) or a BadFrame.

    Many frames may arrive in one chunk and one frame over many chunks. A line
    longer than ``max_frame`` bytes is fatal: the decoder yields a fatal
    BadFrame and then nothing more. So is an unfinished line that starts as a
    TLS handshake record (byte 0x16, which no JSON line starts with): a TLS
    client's hello holds no line end, and would wait for an answer until a
    deadline; told at once, it says the port does not speak TLS. Blank lines are skipped. ``split`` leaves
    the lines undecoded (``decode`` each when its turn comes); ``feed`` decodes
    them all at once. The bytes held between calls (an unfinished line) are
    never more than ``max_frame``, which ``max_frame`` may change at any time.
    """

    __slots__ = ("_buffer", "max_frame", "_dead")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame
        self._dead = False

    def feed(self, data: bytes) -> list[dict[str, Any] | BadFrame]:
        return [item if isinstance(item, BadFrame) else decode(item) for item in self.split(data)]

    def split(self, data: bytes) -> list[bytes | BadFrame]:
        """The complete lines in ``data`` (and what came before it), not yet decoded; a fatal
        BadFrame last if a line is too long."""
        if self._dead:
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            end = buffer.rfind(b"\n")
            if end < 0:
                return self._too_long([]) if len(buffer) > self.max_frame else []
            lines = bytes(buffer[:end]).split(b"\n")
            del buffer[: end + 1]
        else:
            lines = data.split(b"\n")
            tail = lines.pop()
            if tail:
                if tail[0] == _TLS_HANDSHAKE:   # (only an unfinished line is looked at: no cost to whole lines;
                    return self._fatal([], "a TLS handshake: this port speaks plaintext")   # the read's are dropped)
                buffer += tail
        out: list[bytes | BadFrame] = []
        limit = self.max_frame
        for line in lines:
            if len(line) > limit:
                return self._too_long(out)
            if line:
                out.append(line)
        if len(buffer) > limit:
            return self._too_long(out)
        return out

    def _too_long(self, out: list[bytes | BadFrame]) -> list[bytes | BadFrame]:
        return self._fatal(out, f"frame longer than {self.max_frame} bytes")

    def _fatal(self, out: list[bytes | BadFrame], detail: str) -> list[bytes | BadFrame]:
        self._dead = True
        self._buffer.clear()
        out.append(BadFrame(detail, fatal=True))
        return out


def decode(line: bytes) -> dict[str, Any] | BadFrame:
    """One line (no newline) as a frame, or a BadFrame saying why not."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return BadFrame("invalid UTF-8")
    try:
        try:
            frame, end = _scan(text, 0)   # the scanner alone (see _scan) ...
        except StopIteration:             # (no JSON value right at the start)
            end = -1
        if end != len(text):              # ... else the whole decoder: whitespace around, extra data, errors
            frame = _decoder.decode(text)
    except (ValueError, RecursionError):
        return BadFrame("invalid JSON")
    if type(frame) is not dict:
        return BadFrame("frame is not a JSON object")
    if _BACKSLASH in line and (b"\\ud" in line or b"\\uD" in line) and _has_lone_surrogate(frame):
        return BadFrame("invalid Unicode: a lone surrogate escape")
    return frame


def _has_lone_surrogate(frame: dict[str, Any]) -> bool:
    """Whether any string in ``frame``, key or value at any depth, holds a lone surrogate.

    JSON allows ``"\\ud800"`` but it is no character: such text cannot be
    encoded, stored or shown. (A valid pair decodes to one character.)
    """
    pending: list[Any] = [frame]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif kind is dict:
            pending += item
            pending += item.values()
        elif kind is list:
            pending += item
    return False


class FrameHandler(Protocol):
    """The application's side of a JSON-lines stream: its frames, the lines that are none, its end."""

    def frame_received(self, stream: Stream[JsonLines], frame: dict[str, Any]) -> None: ...
    def frame_error(self, stream: Stream[JsonLines], detail: str) -> None: ...
    def connection_lost(self, stream: Stream[JsonLines], reason: str | None) -> None: ...


class JsonLines:
    """A stream's protocol for JSON lines: frames in, to ``handler`` (see the module's docstring).

    One per stream (it holds that stream's unfinished line and its frames still to handle); many may share
    one handler, which tells their streams apart by the stream it is given."""

    __slots__ = ("_handler", "_decoder", "_per_turn", "_lines", "_next_line")

    def __init__(self, handler: FrameHandler, *, max_frame: int = MAX_FRAME,
                 frames_per_turn: int = FRAMES_PER_TURN) -> None:
        self._handler = handler
        self._decoder = FrameDecoder(max_frame)
        self._per_turn = frames_per_turn
        self._lines: list[bytes | BadFrame] = []    # read, not yet handled: raw lines, maybe a fatal BadFrame last
        self._next_line = 0       # the index in _lines of the next to handle; above 0: the stream's reading paused

    @property
    def max_frame(self) -> int:
        """The longest line taken, in bytes (newline excluded); a longer one ends the stream."""
        return self._decoder.max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._decoder.max_frame = value

    def data_received(self, stream: Stream[JsonLines], data: bytes) -> None:
        """Bytes read: split them into lines and handle what this turn allows."""
        self._lines = self._decoder.split(data)
        self._handle_lines(stream)

    def eof_received(self, stream: Stream[JsonLines]) -> None:
        """(An unfinished last line is dropped with the stream.)"""

    def connection_lost(self, stream: Stream[JsonLines], reason: str | None) -> None:
        self._lines = []
        self._handler.connection_lost(stream, reason)

    def _handle_lines(self, stream: Stream[JsonLines]) -> None:
        """Handle up to ``frames_per_turn`` of the lines read; leave the rest for the next turn."""
        handler = self._handler
        received = handler.frame_received
        lines = self._lines
        start = self._next_line
        end = min(len(lines), start + self._per_turn)
        for line in lines if start == 0 and end == len(lines) else lines[start:end]:
            if stream.closed:
                return
            item = decode(line) if isinstance(line, bytes) else line
            if isinstance(item, BadFrame):
                try:
                    handler.frame_error(stream, item.detail)
                except Exception:  # a bug in the owner: the frames after this one are still handled
                    log.exception("stream %s: handler failed on a frame; going on with the next", stream.peer_address)
                if item.fatal:
                    stream.close(item.detail)
                continue
            try:
                received(stream, item)
            except Exception:
                log.exception("stream %s: handler failed on a frame; going on with the next", stream.peer_address)
        if stream.closed:
            return
        if end < len(lines):
            if start == 0:   # lines left for the next turns: read no more until they are handled
                stream.pause_reading()
            self._next_line = end
            stream.loop.call_soon(self._next_turn, stream)
            return
        self._lines = []
        if start:
            self._next_line = 0
            stream.resume_reading()

    def _next_turn(self, stream: Stream[JsonLines]) -> None:
        if not stream.closed:
            self._handle_lines(stream)
