"""The operator's HTTP endpoint on the event loop: ``GET /metrics``, ``/healthz`` and ``/readyz``, parsed by h11.

Prometheus scrapes ``/metrics`` (the text format, ``metrics()``), a load balancer asks ``/healthz`` (the
process answers: always 200) and ``/readyz`` (200, or 503 with the one line ``ready()`` gives as why not).
h11 is the ``metrics`` extra: this module is imported only when ``--metrics`` is given.

It is a listener like the chat port, and as wary: at most ``max_connections`` at once (more are closed
at accept, after a best-effort 503); a request's head at most ``max_request`` bytes (431), and no body;
a connection must complete each request within ``timeout`` seconds of its previous answer (or of its
accept), idle keep-alive time included, or it is closed; at most ``max_requests`` per connection. Any
method but GET is answered 405, any other path 404, a malformed request 400, and each of those closes the
connection. A connection's requests are handled one at a time, a pipelined one from a fresh loop
callback after the last is answered, and nothing is read from a connection while its answer waits to be
sent: a client that pipelines requests and reads nothing holds one answer and one read in memory. A scrape
costs a turn ~0.1 ms (h11, the render, the send; the longest of 200 at 10,000 users: ~0.4 ms CPU).
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import h11

from ..loop import EventLoop, TimerHandle
from ..stream import Listener, describe_os_error
from .metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 8      # Prometheus keeps one connection per target; a load balancer's probes, a few
MAX_REQUEST = 8192       # bytes of a request's head
MAX_REQUESTS = 1000      # requests on one connection before it is closed (keep-alive)
TIMEOUT = 10.0           # seconds a connection has to complete each request
RECV_SIZE = 8192         # bytes one read takes: what h11 may hold beyond one request's head
PATHS = ("/metrics", "/healthz", "/readyz")
_TEXT = "text/plain; charset=utf-8"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
         b"connection: close\r\n\r\ntoo many connections\n")


class MetricsEndpoint:
    """Serves the three paths on a listening socket; ``close`` stops it and its connections."""

    def __init__(self, loop: EventLoop, sock: socket.socket, metrics: Callable[[], bytes],
                 ready: Callable[[], str | None], *, max_connections: int = MAX_CONNECTIONS,
                 max_request: int = MAX_REQUEST, max_requests: int = MAX_REQUESTS, timeout: float = TIMEOUT) -> None:
        self.loop = loop
        self.metrics = metrics
        self.ready = ready
        self.max_connections = max_connections
        self.max_request = max_request
        self.max_requests = max_requests
        self.timeout = timeout
        self._connections: set[HttpConnection] = set()
        self._listener = Listener(loop, sock, self._accept)
        self.address = self._listener.address

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def buffered(self) -> int:
        """Bytes held for the connections: requests read and not yet handled, answers not yet sent."""
        return sum(c.held for c in self._connections)

    def _accept(self, sock: socket.socket) -> None:
        if len(self._connections) >= self.max_connections:
            try:
                sock.setblocking(False)
                sock.send(_BUSY)
            except OSError:
                pass
            sock.close()
            log.debug("metrics endpoint: a connection over the %d allowed, closed", self.max_connections)
            return
        try:
            self._connections.add(HttpConnection(self, sock))
        except OSError as exc:   # the peer is already gone
            log.debug("metrics endpoint: accept: %s", describe_os_error(exc))
            sock.close()

    def forget(self, connection: HttpConnection) -> None:
        self._connections.discard(connection)

    def answer(self, method: bytes, target: bytes) -> tuple[int, bytes, str]:
        """The status, body and content type for one request."""
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        if path not in PATHS:
            return 404, b"not found\n", _TEXT
        if method != b"GET":
            return 405, b"only GET\n", _TEXT
        if path == "/metrics":
            return 200, self.metrics(), CONTENT_TYPE
        if path == "/healthz":
            return 200, b"ok\n", _TEXT
        why = self.ready()
        if why is None:
            return 200, b"ready\n", _TEXT
        return 503, f"not ready: {' '.join(why.split())}\n".encode("utf-8", "replace"), _TEXT

    def close(self) -> None:
        self._listener.close()
        for connection in list(self._connections):
            connection.close()


class HttpConnection:
    """One client of the endpoint: h11's state, the answer being sent, and the deadline of the next request."""

    def __init__(self, endpoint: MetricsEndpoint, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self._sock = sock
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=endpoint.max_request)
        self.out = b""        # the answer not yet sent
        self._served = 0
        self._head = False    # the request being answered is a HEAD
        self._closed = False
        self._deadline: TimerHandle = self._loop.call_later(endpoint.timeout, self._timed_out)
        self._loop.add_reader(sock, self._on_readable)

    @property
    def held(self) -> int:
        """Bytes of requests read and not yet handled, and of the answer not yet sent."""
        return len(self._h11.trailing_data[0]) + len(self.out)

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("metrics endpoint: %s", describe_os_error(exc))
            self.close()
            return
        self._h11.receive_data(data)   # (b"": the peer is done sending)
        self._handle()

    def _handle(self) -> None:
        """Take h11's events up to the end of the next request, answering it; the next waits for another turn."""
        while not self._closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._respond(exc.error_status_hint, b"bad request\n", _TEXT, close=True)
                return
            if event is h11.NEED_DATA:
                self._loop.add_reader(self._sock, self._on_readable)
                return
            if event is h11.PAUSED:   # (our answer is still going out)
                return
            if isinstance(event, h11.Request):
                self._request(event)
            elif isinstance(event, h11.EndOfMessage):
                if self._h11.our_state is h11.DONE and not self.out:
                    self._next_cycle()   # (else the answer's last send starts it)
                return
            else:   # the body of a request refused for having one, or the peer gone
                self.close()

    def _request(self, request: h11.Request) -> None:
        self._served += 1
        self._head = request.method == b"HEAD"   # (refused, but its answer has a head alone all the same)
        if any(name in (b"content-length", b"transfer-encoding") and value != b"0" for name, value in request.headers):
            self._respond(400, b"a GET has no body\n", _TEXT, close=True)
            return
        try:
            status, body, content_type = self._endpoint.answer(request.method, request.target)
        except Exception:
            log.exception("metrics endpoint: answering %r failed", request.target[:100])
            status, body, content_type = 500, b"internal error\n", _TEXT
        close = (status >= 400 and status != 503) or self._served >= self._endpoint.max_requests
        self._respond(status, body, content_type, close=close)

    def _respond(self, status: int, body: bytes, content_type: str, *, close: bool) -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        if close:
            headers.append(("connection", "close"))
        if status == 405:
            headers.append(("allow", "GET"))
        try:
            response = h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
            parts = [self._h11.send(response), b"" if self._head else self._h11.send(h11.Data(data=body)),
                     self._h11.send(h11.EndOfMessage())]
        except h11.LocalProtocolError as exc:   # an answer h11 cannot send now: the connection is no good
            log.debug("metrics endpoint: %s", exc)
            self.close()
            return
        self.out = b"".join(part for part in parts if part)
        self._flush()

    def _next_cycle(self) -> None:
        """The request is read and answered: a new deadline for the next, which is handled from a fresh loop
        callback. The socket is read again only once h11 has no whole request left (``_handle``): a client
        that pipelines many requests in one send has them read a ``RECV_SIZE`` at a time, not all at once."""
        self._h11.start_next_cycle()
        self._deadline.cancel()
        self._deadline = self._loop.call_later(self._endpoint.timeout, self._timed_out)
        self._loop.remove_reader(self._sock)
        self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._handle()   # (a request read with the last one: pipelined)

    def _flush(self) -> None:
        if self._closed:
            return
        try:
            sent = self._sock.send(self.out) if self.out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            log.debug("metrics endpoint: %s", describe_os_error(exc))
            self.close()
            return
        self.out = self.out[sent:]
        if self.out:   # the peer reads slowly: read nothing more from it until the answer is out
            self._loop.remove_reader(self._sock)
            self._loop.add_writer(self._sock, self._flush)
            return
        self._loop.remove_writer(self._sock)
        if self._h11.our_state is h11.MUST_CLOSE or self._h11.our_state is h11.CLOSED:
            self.close()
        elif self._h11.their_state is h11.DONE:
            self._next_cycle()

    def _timed_out(self) -> None:
        log.debug("metrics endpoint: a connection took over %gs for a request; closed", self._endpoint.timeout)
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline.cancel()
        self._loop.remove_reader(self._sock)
        self._loop.remove_writer(self._sock)
        self._sock.close()
        self._endpoint.forget(self)


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 503: b"Service Unavailable"}


def serve_metrics(loop: EventLoop, host: str, port: int, metrics: Callable[[], bytes],
                  ready: Callable[[], str | None], **limits: Any) -> MetricsEndpoint:
    """Listen on ``host:port`` (port 0: the OS picks) and serve there; raises OSError if it cannot bind."""
    return MetricsEndpoint(loop, socket.create_server((host, port), backlog=64), metrics, ready, **limits)
