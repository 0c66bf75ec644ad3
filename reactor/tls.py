"""TLS on the connection layer: a sans-I/O TLS session, and a ``Stream`` that speaks through one.

``TLSLayer`` is one end of a TLS session over memory buffers (``ssl.SSLObject``
on two ``ssl.MemoryBIO``): wire bytes go in and come out, plaintext goes in and
comes out, and it never touches a socket or the loop. So the socket under a
``TLSStream`` stays an ordinary non-blocking socket, read on readability and
written from the output buffer as any stream's: the TLS layer's "want read" and
"want write" become plain facts (no plaintext yet; wire bytes waiting in the
output buffer), and every read decrypts all that the bytes received complete,
so nothing stays decrypted inside the layer where the loop would not wake for it.
(Writing never waits for reading: both contexts refuse renegotiation, and a
TLS 1.3 key update is answered from ``receive``, whose output is sent too.)

``TLSStream`` is a ``Stream`` (a transport, see ``reactor.stream``) whose
``write`` takes plaintext and whose protocol is given plaintext: the same seam
as a plain stream's, so the protocol (``JsonLines``) does not know TLS is
there. What is written waits in a buffer of its own and is encrypted once per
flush (one TLS record for a turn's frames to one peer, not one per frame) into
the output buffer, which holds wire bytes. Before the handshake is done nothing
is encrypted; the handshake must be done within ``handshake_timeout`` seconds
or the stream fails. ``on_secure`` is called once it is done, before the
protocol is given the plaintext that came with the bytes that ended it (a peer
may send its first frame together with its last handshake message): a handler
hears of a secure stream before its first frame. Closing sends close_notify
after the last words; an abort does not.

A server-side stream reads the client's first flight by hand before the TLS
library sees a byte of it (``ClientHelloReader``, sans-I/O): its record and
handshake headers are checked as they come, and the library's session is made
only once the whole ClientHello is here. OpenSSL takes any ClientHello up to
128 KiB and makes room for the size a handshake header declares (a stranger that
sent 9 bytes declaring 131,000 held 153 KiB until the handshake deadline); a
hello longer than ``MAX_FIRST_FLIGHT`` is refused at its header, with an alert,
so a stranger holds at most that many bytes before its hello is whole. With
``handshakes`` (a server's ``reactor.handshakes.Handshakes``), a stream whose
hello is whole waits there, holding only those bytes, until the limits on
handshakes at once and per loop turn let it go on.

A plaintext client of a JSON-lines protocol speaks first: a server-side stream
whose first byte is ``{`` answers ``plaintext_answer`` (the owner's words, in
plaintext; none by default) and closes, so such a client shows an error
instead of waiting. Anything else that is not TLS fails the handshake and is
closed. A client-side stream whose first bytes from the server are no TLS
record (a plaintext server's answer) fails with ``NOT_A_TLS_SERVER``, words a
person understands, where OpenSSL would say "wrong version number".

``certificate_expiry`` reads when a certificate file's certificate expires, so
a server can warn of one that has expired or soon will.
"""
from __future__ import annotations

import datetime
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .compiled import mypyc_attr
from .loop import EventLoop, TimerHandle
from .stream import HIGH_WATER, LOW_WATER, MAX_OUTPUT, PEER_CLOSED, RECV_SIZE, P, Stream, Traffic, describe_os_error

if TYPE_CHECKING:   # (a server's, given to its streams: a client's streams never load it)
    from .handshakes import Handshake, Handshakes

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0   # seconds a TLS handshake may take before the stream fails
READ_CHUNK = 64 * 1024     # plaintext taken from the session per ``SSLObject.read``
VERIFY_FAILED = "certificate verify failed"   # how ``describe_error`` begins for a certificate refused
NOT_A_TLS_SERVER = "the server does not speak TLS on this port"
TLS_RECORDS = b"\x14\x15\x16\x17"   # the content types a TLS record begins with (a server's first: 0x16, 0x15)
# Bytes of a client's first flight (its ClientHello, record headers and all) a server takes. Real ones are far
# shorter: 517 bytes from Python's OpenSSL 3.0, about 1,800 from a browser with a post-quantum key share.
MAX_FIRST_FLIGHT = 8 * 1024
MAX_RECORD = 1 << 14          # bytes of plaintext one TLS record may carry
HANDSHAKE_RECORD = 22         # the content type of records that carry handshake messages
CLIENT_HELLO = 1              # the handshake message type of a ClientHello
# TLS alert descriptions a refused first flight is answered with (RFC 8446, 6.2)
UNEXPECTED_MESSAGE, RECORD_OVERFLOW, ILLEGAL_PARAMETER, PROTOCOL_VERSION = 10, 22, 47, 70


class TLSConfigError(Exception):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server's context: its certificate chain and key, TLS 1.2 at least, no renegotiation."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"Cannot use the TLS certificate {cert_file} with the key {key_file}: "
                             f"{describe_error(exc)}") from None
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The client's context: verifies the server's certificate and host name, against ``ca_file`` only
    if given, else against the system's CAs."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"Cannot use the CA file {ca_file}: {describe_error(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def describe_error(exc: BaseException) -> str:
    """A TLS failure in a few words: ``certificate verify failed: certificate has expired``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{VERIFY_FAILED}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or type(exc).__name__
        return "TLS: " + reason.lower().replace("_", " ")
    return describe_os_error(exc)


def source_address(peer: Any) -> str:
    """The host part of a stream's ``peer_address`` (the whole of it for a socket with no host part)."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


@mypyc_attr(native_class=False)   # (compiled, a subclass of ssl's exception stays a Python class)
class NotTLS(ssl.SSLError):
    """The peer spoke plaintext where a TLS handshake was due (a JSON line from a client, anything but a TLS
    record from a server); its message says which."""


def certificate_expiry(cert_file: str) -> datetime.datetime | None:
    """When the first certificate in the PEM file ``cert_file`` expires (its notAfter, in UTC), or None if it
    cannot be read. (The standard library loads a certificate chain but cannot say when it expires: the
    date is read from the certificate's DER, a few fields into it.)"""
    try:
        with open(cert_file, encoding="ascii", errors="replace") as f:
            text = f.read()
        begin = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
        return _not_after(ssl.PEM_cert_to_DER_cert(text[begin:end]))
    except (OSError, ValueError, IndexError):   # (UnicodeDecodeError is a ValueError)
        return None


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: its tag, where its value begins and where it ends."""
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(der[at:at + size], "big"), at + size
    if at + length > len(der):
        raise ValueError("a DER element longer than the certificate")
    return tag, at, at + length


def _not_after(der: bytes) -> datetime.datetime:
    """The notAfter of a DER certificate: Certificate { tbsCertificate { [0] version, serialNumber, signature,
    issuer, validity { notBefore, notAfter } ... } ... }."""
    _, at, _ = _element(der, 0)          # into the certificate
    _, at, _ = _element(der, at)         # into tbsCertificate
    tag, _, after = _element(der, at)
    if tag == 0xA0:                      # the version, when given
        at = after
    for _ in range(3):                   # serialNumber, signature, issuer
        at = _element(der, at)[2]
    _, at, _ = _element(der, at)         # into validity
    at = _element(der, at)[2]            # past notBefore
    tag, start, end = _element(der, at)
    layout = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"   # UTCTime, else GeneralizedTime
    return datetime.datetime.strptime(der[start:end].decode("ascii"), layout).replace(tzinfo=datetime.UTC)


class BadHello(Exception):
    """A first flight no real TLS client sends; ``alert``: the TLS alert description that says so."""

    def __init__(self, message: str, alert: int) -> None:
        super().__init__(message)
        self.alert = alert


def alert_record(description: int) -> bytes:
    """A fatal TLS alert in a plaintext record (what a server says before any keys are agreed)."""
    return bytes((21, 3, 3, 0, 2, 2, description))


class ClientHelloReader:
    """A TLS server's first flight read by hand, sans-I/O: the records that carry the client's ClientHello.

    ``feed`` takes the bytes as they come and gives them all back once they hold the whole hello (ending
    with its last record). Each header is checked when it is here, so nothing is waited for that would be
    refused: handshake records of TLS's major version, at most ``MAX_RECORD`` each; a first handshake message
    that is a ClientHello; all of it, record headers and all, within ``limit`` bytes.
    """

    __slots__ = ("_limit", "_buffer", "_parsed", "_header", "_seen", "_length")

    def __init__(self, limit: int = MAX_FIRST_FLIGHT) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._parsed = 0             # bytes of the buffer in whole records looked at
        self._header = bytearray()   # the hello's handshake header (4 bytes), as far as it came
        self._seen = 0               # bytes of the hello (its header included) in those records
        self._length: int | None = None   # the hello's whole length, its header included, once known

    def feed(self, data: bytes) -> bytes | None:
        """Take ``data``; all the bytes taken so far once they hold the whole ClientHello, else None.

        Raises ``NotTLS`` for a JSON line, ``BadHello`` for anything else no real client sends.
        """
        buffer = self._buffer
        if not buffer and data[:1] == b"{":
            raise NotTLS("a plaintext client")
        buffer += data
        while len(buffer) - self._parsed >= 5:
            start = self._parsed
            kind, major, size = buffer[start], buffer[start + 1], int.from_bytes(buffer[start + 3:start + 5], "big")
            if kind != HANDSHAKE_RECORD:
                raise BadHello("not a TLS handshake", UNEXPECTED_MESSAGE)
            if major != 3:
                raise BadHello("wrong version number", PROTOCOL_VERSION)
            if not 0 < size <= MAX_RECORD:
                raise BadHello(f"a record of {size} bytes", RECORD_OVERFLOW)
            end = start + 5 + size
            if end > self._limit:
                raise BadHello(f"a first flight over {self._limit} bytes", ILLEGAL_PARAMETER)
            if self._length is not None and self._seen + size > self._length:
                raise BadHello("a record past the ClientHello", UNEXPECTED_MESSAGE)
            if end > len(buffer):
                return None   # the rest of this record is to come
            self._hello_bytes(buffer[start + 5:end])
            self._parsed = end
            if self._seen == self._length:
                whole = bytes(buffer)
                buffer.clear()
                return whole
        return None

    def _hello_bytes(self, fragment: bytearray) -> None:
        """A record's payload: the next part of the hello."""
        if self._length is None:
            self._header += fragment[:4 - len(self._header)]
            if len(self._header) == 4:
                if self._header[0] != CLIENT_HELLO:
                    raise BadHello("the first handshake message is not a ClientHello", UNEXPECTED_MESSAGE)
                self._length = 4 + int.from_bytes(self._header[1:4], "big")
                if self._length + 5 > self._limit:
                    raise BadHello(f"a ClientHello of {self._length} bytes, over {self._limit - 5}",
                                   ILLEGAL_PARAMETER)
        self._seen += len(fragment)
        if self._length is not None and self._seen > self._length:
            raise BadHello("a record past the ClientHello", UNEXPECTED_MESSAGE)


class TLSLayer:
    """One end of a TLS session over memory buffers: no socket, no loop, no clock.

    The library's session is made when it is first needed (the first ``handshake`` or ``receive``): a server
    stream waiting for a client's hello holds none of it.
    """

    __slots__ = ("_context", "_server_hostname", "_incoming", "_outgoing", "_session", "server_side", "established",
                 "_fresh")

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None) -> None:
        self._context = context
        self._server_hostname = server_hostname
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._session: ssl.SSLObject | None = None
        self.server_side = server_side
        self.established = False
        self._fresh = True   # nothing received yet

    def _begin(self) -> ssl.SSLObject:
        if self._session is None:
            self._incoming = ssl.MemoryBIO()
            self._outgoing = ssl.MemoryBIO()
            self._session = self._context.wrap_bio(self._incoming, self._outgoing, server_side=self.server_side,
                                                   server_hostname=self._server_hostname)
        return self._session

    def handshake(self) -> bool:
        """Go on with the handshake as far as the bytes received allow; True once it is done.

        Raises ``ssl.SSLError`` (``SSLCertVerificationError`` among them) if it failed.
        """
        try:
            self._begin().do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True

    def receive(self, data: bytes) -> bytes:
        """Take wire bytes from the peer; return all the plaintext they complete (maybe none).

        Goes on with the handshake first while it is not done. After the peer's
        close_notify there is no more plaintext. Raises ``ssl.SSLError`` on
        anything that is not a good TLS record.
        """
        if self._fresh:   # a client's first bytes from the server: a plaintext server is told apart (a server's
            self._fresh = False   # first flight is read by hand: ClientHelloReader)
            if not self.server_side and data[:1] not in TLS_RECORDS:
                raise NotTLS(NOT_A_TLS_SERVER)
        session = self._begin()
        assert self._incoming is not None
        self._incoming.write(data)
        if not self.established and not self.handshake():
            return b""
        chunks = []
        while True:   # until the session holds no whole record: the loop would not wake for those bytes
            try:
                chunk = session.read(READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def encrypt(self, data: bytes | bytearray) -> None:
        """Seal plaintext into records (the handshake must be done); ``take`` gives them."""
        session = self._begin()
        view = memoryview(data)
        while view:   # SSLObject.write may take less than all
            # (a call in a slice's bound is made twice by mypyc 2.4's code: the fast build would seal it twice)
            taken = session.write(view)
            view = view[taken:]

    def close(self) -> None:
        """Say close_notify (best effort: whatever the peer does, nothing more is read)."""
        if self._session is None:
            return
        try:
            self._session.unwrap()
        except ssl.SSLError:   # SSLWantReadError: the peer's close_notify is not awaited
            pass

    def take(self) -> bytes:
        """The wire bytes produced so far, to send in order."""
        return b"" if self._outgoing is None else self._outgoing.read()

    def peer_certificate(self) -> bytes | None:
        """The certificate the peer presented (DER), once the handshake is done; None if it presented none."""
        if not self.established or self._session is None:
            return None
        return self._session.getpeercert(binary_form=True)


class TLSStream(Stream[P]):
    """A ``Stream`` over TLS (see the module's docstring); the same API, plaintext in and out."""

    __slots__ = ("_tls", "_plain", "_handshake_timer", "_on_secure", "_plaintext_answer", "_hello", "_handshakes",
                 "_handshake", "_flight")

    def __init__(self, loop: EventLoop, sock: socket.socket, protocol: P, *,
                 context: ssl.SSLContext, server_side: bool = False, server_hostname: str | None = None,
                 on_secure: Callable[[TLSStream[P]], Any] | None = None, plaintext_answer: bytes = b"",
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, handshakes: Handshakes | None = None,
                 max_output: int = MAX_OUTPUT, high_water: int = HIGH_WATER, low_water: int = LOW_WATER,
                 read_size: int = RECV_SIZE, count_sends: bool = False, traffic: Traffic | None = None) -> None:
        self._tls = TLSLayer(context, server_side=server_side, server_hostname=server_hostname)
        self._plain = bytearray()   # written, not yet encrypted
        self._on_secure = on_secure
        self._plaintext_answer = plaintext_answer
        self._handshake_timer: TimerHandle | None = None
        # A server's: the client's hello, read by hand until it is whole; then its place with ``handshakes``
        # until the handshake is over, and the hello itself while it waits for its turn there.
        self._hello = ClientHelloReader() if server_side else None
        self._handshakes = handshakes if server_side else None
        self._handshake: Handshake | None = None
        self._flight = b""
        super().__init__(loop, sock, protocol, max_output=max_output, high_water=high_water, low_water=low_water,
                         read_size=read_size, count_sends=count_sends,
                         traffic=traffic)   # (named: compiled, ** passes none)
        self._handshake_timer = loop.call_later(handshake_timeout, self._fail, "TLS handshake timed out")
        if not server_side:   # the client speaks first: its hello goes out now
            self._advance(b"")

    @property
    def buffered(self) -> int:
        return len(self._out) + len(self._plain)

    def peer_certificate(self) -> bytes | None:
        """The certificate the peer presented (DER), once the handshake is done; None if it presented none."""
        return self._tls.peer_certificate()

    @property
    def secure(self) -> bool:
        """Whether the handshake is done."""
        return self._tls.established

    def write(self, data: bytes | bytearray) -> None:
        if self.closed:
            return
        self._plain += data
        if len(self._plain) + len(self._out) > self._max_output:
            self._fail(f"output buffer over {self._max_output} bytes: peer not reading")
        elif not self._flush_pending and not self._writing:
            self._flush_soon()

    def _flush(self) -> None:
        if self._plain and self._tls.established and not self._released:
            try:
                self._seal()
            except ssl.SSLError as exc:
                self._fail(describe_error(exc))
                return
        super()._flush()

    def _seal(self) -> None:
        """Encrypt the plaintext written so far into the output buffer."""
        self._tls.encrypt(self._plain)
        self._plain.clear()
        self._append(self._tls.take())

    def _on_readable(self) -> None:
        """As a plain stream's, but the wire bytes read go through the TLS layer, and the protocol is given the
        plaintext they complete. (An override, not a hook in ``Stream._on_readable``: a plain stream's read
        makes no call more for TLS's sake.)"""
        try:
            data = self._sock.recv(self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(describe_os_error(exc))
            return
        if not data:
            self._end_of_input()
            return
        self._traffic.received += len(data)
        plain = self._advance(data)
        if plain and not self.closed:
            self._protocol.data_received(self, plain)

    def _eof_reason(self) -> str:
        return PEER_CLOSED if self._tls.established else "connection closed during the TLS handshake"

    def _advance(self, data: bytes) -> bytes:
        """Give the TLS layer the bytes read (a server's first flight once it is whole: ``_read_hello``); send
        what it answers; the plaintext, if any."""
        tls = self._tls
        if self._hello is not None:
            data = self._read_hello(self._hello, data)
            if not data:
                return b""
        was_established = tls.established
        try:
            if data:
                plain = tls.receive(data)
            else:
                tls.handshake()
                plain = b""
        except NotTLS as not_tls:   # (its own name: compiled, one name holds one type in a function)
            self._append(self._plaintext_answer)
            self._close(not_tls.args[0])
            return b""
        except ssl.SSLError as exc:   # the alert that says why goes out before the close
            self._append(tls.take())
            self._close(describe_error(exc))
            return b""
        self._append(tls.take())   # handshake messages, key update answers
        if len(self._out) > self._max_output:   # a peer that asks for answers and reads none
            self._fail(f"output buffer over {self._max_output} bytes: peer not reading")
            return b""
        if tls.established and not was_established:
            self._handshake_over()
            if self._on_secure is not None:   # now: before the plaintext this read brought (_on_readable)
                try:
                    self._on_secure(self)
                except Exception:
                    log.exception("stream %s: on_secure raised", self.peer_address)
        if (self._out or self._plain and tls.established) and not self._flush_pending and not self._writing:
            self._flush_soon()
        return plain

    def _read_hello(self, hello: ClientHelloReader, data: bytes) -> bytes:
        """The client's first flight, by hand: once it is whole, its bytes for the TLS layer (b"" while the rest
        is to come, or it waits for its turn, or it was refused and the stream closes)."""
        try:
            flight = hello.feed(data)
        except NotTLS:
            self._append(self._plaintext_answer)
            self._close("a plaintext client on the TLS port")
            return b""
        except BadHello as exc:
            self._append(alert_record(exc.alert))
            self._close(f"TLS: {exc}")
            return b""
        if flight is None:
            return b""
        self._hello = None
        if self._handshakes is not None:
            self._handshake = self._handshakes.begin(source_address(self.peer_address), self._start_handshake)
            if not self._handshake.running:   # what the client sends next waits in the kernel meanwhile
                self._flight = flight
                self._loop.remove_reader(self._sock)
                return b""
        return flight

    def _start_handshake(self) -> None:
        """The hello that waited may go on (``Handshakes``, from a fresh loop callback)."""
        if self.closed:
            return
        flight, self._flight = self._flight, b""
        self._loop.add_reader(self._sock, self._on_readable)
        self._advance(flight)   # (a hello alone ends no handshake: no plaintext comes of it)

    def _handshake_over(self) -> None:
        """Done or failed: no deadline any more, and its slot with ``handshakes`` frees."""
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self._handshake is not None and self._handshakes is not None:
            self._handshakes.end(self._handshake)
            self._handshake = None

    def _close(self, reason: str | None) -> None:
        if not self.closed and self._tls.established:   # the last words, then close_notify
            try:
                self._seal()
                self._tls.close()
                self._append(self._tls.take())
            except ssl.SSLError as exc:   # the session is broken: what is already sealed still goes
                log.debug("stream %s: %s", self.peer_address, describe_error(exc))
        super()._close(reason)

    def _finish(self, reason: str | None) -> None:
        self._handshake_over()
        self._plain.clear()
        self._flight = b""
        super()._finish(reason)
