"""Hosts the sans-I/O chat client on the reactor: the server stream, the console, peers and timers.

One loop drives everything the client does: the connection to the server,
standard input (through a ``Console``), the listener for private-chat peers,
each peer connection, and every timer. The host numbers peer connections and
carries out the effects ``ChatClient`` returns.

With a ``PeerIdentity`` (TLS mode) every peer connection speaks TLS, presenting
this client's session certificate and trusting only the certificates the logic
expects (``reactor.client.peer_certs``): a connection we accept trusts those of the
clients we expect (none expected: it is closed at once), one we make trusts the
certificate relayed for that user. The logic hears of a peer connection only
once its handshake is done, with the certificate presented; a handshake that
fails is ``peer_failed`` (ours) or ``peer_refused`` (accepted).
"""
from __future__ import annotations

import itertools
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..framing import JsonLines, encode
from ..loop import EventLoop, NamedTimers
from ..protocol import Frame
from ..stream import Connector, Listener, Stream, listen
from ..tls import VERIFY_FAILED, TLSStream
from .rules import (
    CancelTimer,
    ChatClient,
    ClientEffect,
    ClosePeer,
    ConnectPeer,
    Exit,
    Listen,
    Print,
    Prompt,
    Reconnect,
    SetTimer,
    ShowDraft,
    ToPeer,
    ToServer,
)
from .words import SAY

if TYPE_CHECKING:   # imported by the caller, in TLS mode only
    from .peer_certs import PeerIdentity

log = logging.getLogger(__name__)

EXIT_GRACE = 1.0  # seconds to flush the last frames before exiting anyway
UNUSABLE_CERTIFICATE = SAY("unusable_certificate")


class Console(Protocol):
    """Where the user types and reads: a terminal with a line editor, or plain pipes."""

    def start(self, loop: EventLoop, on_line: Callable[[str], Any], on_eof: Callable[[], Any],
              on_interrupt: Callable[[bool], Any] | None = None) -> None: ...
    def print(self, text: str) -> None: ...
    def prompt(self, text: str, secret: bool, remember: bool) -> None: ...
    def draft(self) -> str: ...
    def close(self, drain: bool = False) -> None: ...


class _ServerLink:
    """Stream events from the server connection, into the client logic."""

    def __init__(self, host: ClientHost) -> None:
        self._host = host

    def frame_received(self, stream: Stream, frame: Frame) -> None:
        self._host._apply(self._host.logic.server_frame(frame, self._host.now()))

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._host._apply(self._host.logic.server_bad_frame(detail, self._host.now()))

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        self._host._server_gone(stream, reason)


class _PeerLink:
    """Stream events from peer connections (``stream.tag`` is the peer id), into the client logic."""

    def __init__(self, host: ClientHost) -> None:
        self._host = host

    def frame_received(self, stream: Stream, frame: Frame) -> None:
        self._host._apply(self._host.logic.peer_frame(stream.tag, frame, self._host.now()))

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._host._apply(self._host.logic.peer_bad_frame(stream.tag, detail, self._host.now()))

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        self._host._peer_gone(stream.tag, reason)


class ClientHost:
    """Runs one ``ChatClient`` against a server at ``host:port`` on ``loop``."""

    def __init__(self, loop: EventLoop, logic: ChatClient, console: Console,
                 tls: ssl.SSLContext | None = None, peer_identity: PeerIdentity | None = None) -> None:
        self.loop = loop
        self._tls = tls   # with a context, the server connection speaks TLS
        self._identity = peer_identity   # with one, peer connections speak TLS too
        self._securing: dict[int, str | None] = {}   # peer -> the user we connect to (None: accepted), until secure
        self._connecting: str | None = None   # "host:port" until the TLS handshake with the server is done
        self.logic = logic
        self.now = loop.time
        self.exit_status: int | None = None
        self._console = console
        self._interrupted_once = False
        self._server: Stream | None = None
        self._listener: Listener | None = None
        self._peers: dict[int, Stream] = {}
        self._peer_ids = itertools.count(1)
        self._connectors: set[Connector] = set()
        self._timers = NamedTimers(loop, self._fire)
        self._peer_link = _PeerLink(self)
        self._address: tuple[str, int, float] = ("", 0, 0.0)   # the server's host, port, and connect timeout
        self._console_started = False

    def start(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Connect to the server (and, with TLS, verify it); on failure print why and exit with status 1."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.loop.add_signal_handler(signum, self._interrupted)
        self._address = (host, port, timeout)
        self._connect()

    def _connect(self) -> None:
        host, port, timeout = self._address

        def connected(sock: socket.socket | None, error: str | None) -> None:
            self._connectors.discard(connector)
            if sock is None:
                self._cannot_connect(f"{host}:{port}", error)
                return
            if self.exit_status is not None:
                sock.close()
                return
            if self._tls is None:
                self._server = Stream(self.loop, sock, JsonLines(_ServerLink(self)))
                self._server_ready()
                return
            self._connecting = f"{host}:{port}"
            self._server = TLSStream(self.loop, sock, JsonLines(_ServerLink(self)), context=self._tls,
                                     server_hostname=host, on_secure=lambda stream: self._server_ready())

        connector = Connector(self.loop, host, port, connected, timeout=timeout)
        self._connectors.add(connector)

    def _reconnect(self) -> None:
        """Connect again (the server was too busy): the old connection, if still open, is dropped first."""
        if self._server is not None:
            old, self._server = self._server, None
            old.close()
        self._connect()

    def _server_ready(self) -> None:
        """Connected (and, with TLS, the handshake done): the console (once) and the logic start."""
        self._connecting = None
        if not self._console_started:
            self._console_started = True
            self._console.start(self.loop, self._line, self._end_of_input, self._ctrl_c)
        address = self._server.peer_address if self._server is not None else None
        self._apply(self.logic.start(self.now(), None if address is None else (address[0], address[1])))

    def _cannot_connect(self, address: str, reason: str | None) -> None:
        self._console.print(SAY("cannot_connect", {"address": address, "reason": str(reason)}))
        self._exit(1)

    # -- events into the logic -------------------------------------------

    def _line(self, text: str) -> None:
        self._apply(self.logic.line(text, self.now()))

    def _end_of_input(self) -> None:
        self._apply(self.logic.end_of_input(self.now()))

    def _ctrl_c(self, was_empty: bool) -> None:
        self._apply(self.logic.ctrl_c(was_empty, self.now()))

    def _interrupted(self) -> None:
        """SIGINT, SIGTERM or SIGHUP: log out and exit; a second one exits at once (status 1 if not
        already exiting), without waiting for the server's goodbye or the last frames to leave."""
        if not self._interrupted_once:
            self._interrupted_once = True
            self._apply(self.logic.interrupt(self.now()))
            return
        log.debug("a second signal: exiting at once")
        self._exit(1)
        self.loop.stop()

    def _server_gone(self, stream: Stream, reason: str | None) -> None:
        if stream is not self._server:   # (an old connection, dropped for a new one)
            return
        self._server = None
        address, self._connecting = self._connecting, None
        if self.exit_status is None and address is not None:   # the TLS handshake failed
            self._cannot_connect(address, reason)
        elif self.exit_status is None:
            log.debug("server connection lost: %s", reason)
            self._apply(self.logic.server_lost(self.now()))
        self._maybe_stop()

    def _peer_gone(self, peer: int, reason: str | None = None) -> None:
        known = self._peers.pop(peer, None) is not None
        securing = peer in self._securing
        user = self._securing.pop(peer, None)
        if known and self.exit_status is None:
            if not securing:
                self._apply(self.logic.peer_closed(peer, self.now()))
            else:   # the TLS handshake failed
                why = _peer_tls_failure(reason)
                self._apply(self.logic.peer_refused(why, self.now()) if user is None
                            else self.logic.peer_failed(user, why, self.now()))
        self._maybe_stop()

    def _accept_peer(self, sock: socket.socket) -> None:
        if self._identity is None:
            self._add_peer(sock, None)
            return
        trusted = self.logic.expected_certificates()
        context = self._peer_context(trusted, server_side=True) if trusted else None
        if context is None:   # nobody is expected (or nobody could pass): closed at once
            sock.close()
            if trusted:
                self._apply(self.logic.peer_refused(UNUSABLE_CERTIFICATE, self.now()))
            return
        self._add_peer(sock, None, context)

    def _peer_context(self, trusted: list[bytes], *, server_side: bool) -> ssl.SSLContext | None:
        """The TLS context of a peer connection trusting those of ``trusted`` that are certificates (each on its
        own: one peer's junk touches no other's); None if none is."""
        assert self._identity is not None
        try:
            return self._identity.context(trusted, server_side=server_side)
        except ssl.SSLError as exc:
            log.warning("cannot trust the certificates relayed: %s", exc)
            return None

    def _add_peer(self, sock: socket.socket, user: str | None, context: ssl.SSLContext | None = None) -> None:
        """A stream for a peer connection, to ``user`` (None: one we accepted), reported to the logic at
        once, or with ``context`` over TLS, once secure."""
        if self.exit_status is not None:
            sock.close()
            return
        peer = next(self._peer_ids)
        try:
            if context is None:
                stream = Stream(self.loop, sock, JsonLines(self._peer_link))
            else:
                stream = TLSStream(self.loop, sock, JsonLines(self._peer_link), context=context,
                                   server_side=user is None, on_secure=lambda stream: self._peer_secure(peer, stream))
        except OSError:
            sock.close()
            return
        stream.tag = peer
        self._peers[peer] = stream
        if context is None:
            self._peer_up(peer, user, None)
        else:
            self._securing[peer] = user

    def _peer_secure(self, peer: int, stream: Stream) -> None:
        """A peer's TLS handshake is done (``on_secure``, before its first frame): the logic hears of the
        connection, and the certificate presented."""
        if peer in self._securing and isinstance(stream, TLSStream):
            self._peer_up(peer, self._securing.pop(peer), stream.peer_certificate())

    def _peer_up(self, peer: int, user: str | None, certificate: bytes | None) -> None:
        if user is None:
            self._apply(self.logic.peer_accepted(peer, self.now(), certificate))
        else:
            self._apply(self.logic.peer_connected(peer, user, self.now(), certificate))

    def _connect_peer(self, user: str, host: str, port: int, certificate: bytes | None) -> None:
        def done(sock: socket.socket | None, error: str | None) -> None:
            self._connectors.discard(connector)
            if sock is None:
                self._apply(self.logic.peer_failed(user, error or "failed", self.now()))
                return
            if self._identity is None:
                self._add_peer(sock, user)
                return
            context = None if certificate is None else self._peer_context([certificate], server_side=False)
            if context is None:   # (the logic asks for no plaintext peer in TLS mode)
                sock.close()
                self._apply(self.logic.peer_failed(user, UNUSABLE_CERTIFICATE, self.now()))
                return
            self._add_peer(sock, user, context)

        connector = Connector(self.loop, host, port, done, numeric=True)   # a name would stall the loop
        self._connectors.add(connector)

    def _fire(self, keys: list[Any]) -> None:
        for key in keys:
            self._apply(self.logic.timer_fired(key, self.now()))

    # -- effects out of the logic ------------------------------------------

    def _apply(self, effects: list[ClientEffect]) -> None:
        """Carry out ``effects`` in order; one that fails is logged and the rest still run."""
        for effect in effects:
            try:
                carry_out = self.CARRY_OUT.get(type(effect))
                if carry_out is None:
                    raise TypeError(f"unknown effect {effect!r}")
                carry_out(self, effect)
            except Exception:
                log.exception("effect %r failed", effect)

    def _print(self, effect: Print) -> None:
        self._console.print(effect.text)

    def _prompt(self, effect: Prompt) -> None:
        self._console.prompt(effect.text, effect.secret, effect.remember)

    def _to_server(self, effect: ToServer) -> None:
        if self._server is not None:
            self._server.write(encode(effect.frame))

    def _to_peer(self, effect: ToPeer) -> None:
        stream = self._peers.get(effect.peer)
        if stream is not None:
            stream.write(encode(effect.frame))

    def _close_peer(self, effect: ClosePeer) -> None:
        stream = self._peers.pop(effect.peer, None)
        if stream is not None:
            stream.close()

    def _listen(self) -> None:
        if self._listener is not None:   # (connected again: the new connection is told where it is)
            host, port = self._listener.address[:2]
            self._apply(self.logic.listening(host, port, self.now()))
            return
        if self._server is None:
            return
        local_host = self._server.local_address[0]
        try:
            self._listener = listen(self.loop, local_host, 0, self._accept_peer, backlog=16)
        except OSError as exc:
            self._console.print(SAY("cannot_listen", {"reason": exc.strerror or str(exc)}))
            return
        host, port = self._listener.address[:2]
        self._apply(self.logic.listening(host, port, self.now()))

    def _show_draft(self, words: str) -> None:
        draft = self._console.draft()
        if draft.strip():
            self._console.print(f"{words}\n{draft}")

    def _exit(self, status: int, drain: bool = False) -> None:
        """Flush what is queued, close every connection, restore the console (``drain``: dropping what is being
        typed), stop the loop.

        The loop stops within ``EXIT_GRACE`` whatever happens here.
        """
        if self.exit_status is not None:
            return
        self.exit_status = status
        self.loop.call_later(EXIT_GRACE, self.loop.stop)
        if drain:
            self._console.close(drain=True)
        else:
            self._console.close()
        self._timers.clear()
        for connector in self._connectors:
            connector.cancel()
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            self._server.close()
        for stream in self._peers.values():
            stream.close()
        self._maybe_stop()

    def _maybe_stop(self) -> None:
        if self.exit_status is not None and self._server is None and not self._peers:
            self.loop.stop()

    # How each type of effect is carried out: every member of ``ClientEffect`` has its entry.
    CARRY_OUT: ClassVar[dict[type[Any], Callable[[ClientHost, Any], None]]] = {
        Print: _print,
        Prompt: _prompt,
        ToServer: _to_server,
        ToPeer: _to_peer,
        ConnectPeer: lambda host, effect: host._connect_peer(effect.user, effect.host, effect.port,
                                                             effect.certificate),
        ClosePeer: _close_peer,
        Listen: lambda host, effect: host._listen(),
        Reconnect: lambda host, effect: host._reconnect(),
        ShowDraft: lambda host, effect: host._show_draft(effect.words),
        SetTimer: lambda host, effect: host._timers.set(effect.key, effect.when),
        CancelTimer: lambda host, effect: host._timers.cancel(effect.key),
        Exit: lambda host, effect: host._exit(effect.status, effect.drain),
    }


def _peer_tls_failure(reason: str | None) -> str:
    """Why a peer's TLS handshake failed, in words: a certificate that fails verification is not the one
    the server relayed (the context trusts nothing else)."""
    reason = reason or SAY("handshake_failed")
    if reason.startswith(VERIFY_FAILED):
        return SAY("not_relayed_certificate", {"reason": reason})
    return reason
