"""The client's side of the private-chat handshake: who asked whom, the tickets peers must present, the open chats.

``PrivateChats`` owns every piece of a private chat's state and returns effects,
as ``ChatClient`` does; it takes the frames from the server that concern private
chats (``@on_frame``, reactor/client/frames.py), and the client hands it the
peer events.

A peer is connected to only in answer to a ``private_connect`` for a user
this client asked (``startprivate``), only at a numeric IP address (a name is
never resolved: that would stall the loop, and the server sends the address
it saw), and never at the server's own address. A peer that connects to us
must present, in time, the token of a ``private_expect`` still good.

In TLS mode (``certificate``: this client's per-session certificate, DER) a
private chat is end to end encrypted: the ``listen`` frame gives the server the
certificate, ``private_expect`` and ``private_connect`` bring the other
client's (``cert``), and the host speaks TLS to the peer, trusting exactly that
certificate (``reactor.client.peer_certs``). The SHA-256 fingerprint of the
certificate each peer presented (``accepted``/``connected``) is checked against
the relayed one, and no private chat opens with a client that has no
certificate: there is no plaintext fallback. A TLS-mode client that cannot make
its certificate (``unavailable``: why) has no private chats at all: it does not
listen for peers (the server tells those who ask that it cannot accept) and
refuses ``startprivate`` with the reason.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from ..protocol import Frame, FrameType
from ..timer_effects import CancelTimer, SetTimer
from .effects import ClientEffect, ClosePeer, ConnectPeer, Print, ToPeer, ToServer
from .frames import on_frame
from .peer_certs import decode_certificate, encode_certificate, fingerprint
from .words import FRAME_WORDS, SAY, Words, hanging

__all__ = ["PrivateChats", "IPAddress", "peer_ip"]

log = logging.getLogger(__name__)

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
REQUEST_WORDS = FRAME_WORDS[FrameType.PRIVATE_REQUEST]


def peer_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None if it is not one."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _same_certificate(peer: int, user: str, expected: bytes | None, presented: bytes | None) -> bool:
    """Whether ``peer``, claiming to be ``user``, presented the certificate expected (by SHA-256
    fingerprint; it is logged when not); no certificate expected (plaintext mode): it must present none either."""
    if expected is None or presented is None:
        same = expected is None and presented is None
    else:
        same = secrets.compare_digest(fingerprint(expected), fingerprint(presented))
    if not same:
        shown = "no certificate" if presented is None else f"a certificate with fingerprint {fingerprint(presented)}"
        log.warning("peer %d claiming to be %s presented %s", peer, user, shown)
    return same


class _Peer:
    """One peer connection; ``user`` is set once the other side is known, ``chat`` (the same user)
    once both agreed and the private chat is open."""

    __slots__ = ("id", "user", "token", "chat", "certificate")

    def __init__(self, peer: int, user: str | None = None, token: str | None = None,
                 certificate: bytes | None = None) -> None:
        self.id = peer
        self.user = user
        self.token = token   # the token we presented (connecting side)
        self.chat: str | None = None
        self.certificate = certificate   # the certificate it presented (TLS mode), DER


@dataclass(frozen=True, slots=True)
class _Ticket:
    """What makes a peer connection the right one: the chat's token and, in TLS mode, the other
    client's certificate (DER) as the server relayed it."""
    token: str
    certificate: bytes | None


class PrivateChats:
    """The private chats of one client, from the request to the end of the chat."""

    def __init__(self, *, token_ttl: float, peer_hello_timeout: float, certificate: bytes | None,
                 unavailable: str | None = None) -> None:
        self._certificate = certificate
        self.unavailable = unavailable             # why this client has no private chats, or None
        self._token_ttl = token_ttl
        self._peer_hello_timeout = peer_hello_timeout
        self._questions: deque[str] = deque()      # users asking us for a private chat, oldest first
        self._expected: dict[str, _Ticket] = {}    # requester -> what its client will present
        self._connecting: dict[str, _Ticket] = {}  # target -> what we present and expect, while we connect to it
        self._requested: set[str] = set()          # users we asked for a private chat, until it starts or ends
        self._server: tuple[IPAddress, int] | None = None   # the server's (IP address, port): never a peer's
        self._peers: dict[int, _Peer] = {}
        self._chats: dict[str, _Peer] = {}         # user -> the open private chat with them

    # -- views --------------------------------------------------------------

    def expected_certificates(self) -> list[bytes]:
        """The certificates (DER) of the clients we expect on our peer listener."""
        return [ticket.certificate for ticket in self._expected.values() if ticket.certificate is not None]

    def chats(self) -> list[str]:
        """The users with an open private chat, sorted."""
        return sorted(self._chats)

    def chatting(self, user: str) -> bool:
        """Whether a private chat with ``user`` is open."""
        return user in self._chats

    def has_question(self) -> bool:
        """Whether someone's request waits for the user's ``y`` or ``n``."""
        return bool(self._questions)

    # -- the server ---------------------------------------------------------

    def server_at(self, host: str, port: int) -> None:
        """The server is at ``host:port`` (its IP address): no peer is ever looked for there."""
        ip = peer_ip(host)
        self._server = None if ip is None else (ip, port)

    def listen_frame(self, host: str, port: int) -> Frame:
        """What tells the server where our peer listener is (in TLS mode, with our certificate)."""
        frame: Frame = {"type": FrameType.LISTEN, "host": host, "port": port}
        if self._certificate is not None:
            frame["cert"] = encode_certificate(self._certificate)
        return frame

    # -- requests -----------------------------------------------------------

    def start(self, user: str) -> list[ClientEffect]:
        """The user asks ``user`` for a private chat (``startprivate``)."""
        if self.unavailable is not None:
            return [Print("Error. " + SAY("no_private_chats", {"reason": self.unavailable}))]
        if user in self._chats:
            return [Print(SAY("already_chatting", {"user": user}))]
        if user in self._connecting:
            return [Print(SAY("already_starting", {"user": user}))]
        self._requested.add(user)
        return [ToServer({"type": FrameType.STARTPRIVATE, "user": user})]

    def request_ended(self, user: str) -> None:
        """The server refused our request to ``user``: it is no longer open."""
        self._requested.discard(user)

    @on_frame(FrameType.PRIVATE_REQUEST)
    def _on_private_request(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """``from`` asks us: a question the next ``y`` or ``n`` answers, oldest first."""
        sender = frame.get("from")
        if type(sender) is not str:
            return []
        if sender not in self._questions:
            self._questions.append(sender)
        return [Print(say("ask", frame))]

    def answer(self, accept: bool) -> list[ClientEffect]:
        """The oldest request is answered."""
        user = self._questions.popleft()
        return [ToServer({"type": FrameType.PRIVATE_ANSWER, "user": user, "accept": accept}),
                Print(REQUEST_WORDS("accepted" if accept else "declined", {"from": user}))]

    @on_frame(FrameType.PRIVATE_EXPECT)
    def _on_private_expect(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """We accepted ``user``'s request: their client will present ``token``."""
        user, token = frame.get("user"), frame.get("token")
        if type(user) is not str or type(token) is not str:
            return []
        certificate = self._their_certificate(frame)
        if self._certificate is not None and certificate is None:
            return [Print(SAY("unencrypted_peer", {"user": user}))]
        self._expected[user] = _Ticket(token, certificate)
        return [SetTimer(("expect", user), now + self._token_ttl),
                ToServer({"type": FrameType.PRIVATE_READY, "user": user, "token": token})]

    @on_frame(FrameType.PRIVATE_CONNECT)
    def _on_private_connect(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """``user`` accepted our request: connect to their client at ``host:port``, presenting ``token``."""
        user, host, port, token = (frame.get(k) for k in ("user", "host", "port", "token"))
        if type(user) is not str or type(host) is not str or type(port) is not int or type(token) is not str:
            return []
        if user not in self._requested or user in self._chats or user in self._connecting:
            log.info("private_connect for %s, whom we did not ask (or are connecting to already): ignored", user)
            return []
        self._requested.discard(user)
        ip = peer_ip(host)
        if ip is None:
            return [Print(SAY("host_name", {"user": user, "host": host}))]
        if ip.is_unspecified or ip.is_multicast or not 0 < port < 65536 or self._is_server(ip, port):
            return [Print(SAY("not_their_address", {"user": user, "host": host, "port": port}))]
        certificate = self._their_certificate(frame)
        if self._certificate is not None and certificate is None:
            return [Print(SAY("unencrypted_peer", {"user": user}))]
        self._connecting[user] = _Ticket(token, certificate)
        return [ConnectPeer(user, str(ip), port, certificate)]

    def _their_certificate(self, frame: Frame) -> bytes | None:
        """The other client's certificate in a frame from the server; in plaintext mode, none."""
        return None if self._certificate is None else decode_certificate(frame.get("cert"))

    def _is_server(self, ip: IPAddress, port: int) -> bool:
        """Whether ``ip:port`` is the server's own address (a loopback one: any loopback address
        with its port, as all of them reach a server bound on every address)."""
        if self._server is None:
            return False
        server_ip, server_port = self._server
        return port == server_port and (ip == server_ip or ip.is_loopback and server_ip.is_loopback)

    @on_frame(FrameType.PRIVATE_CANCELLED)
    def _on_private_cancelled(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """The request between us and ``user`` was cancelled."""
        user = frame.get("user")
        if type(user) is not str:
            return []
        self._requested.discard(user)
        if user in self._questions:
            self._questions.remove(user)
        effects: list[ClientEffect] = []
        if self._expected.pop(user, None) is not None:
            effects.append(CancelTimer(("expect", user)))
        effects.append(Print(say("cancelled", frame)))
        return effects

    @on_frame(FrameType.BLOCKED)
    def _on_blocked(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """The user blocked ``user``: that ends any private chat with them, open or still being set up."""
        user = frame.get("user")
        if type(user) is not str:
            return []
        effects: list[ClientEffect] = [Print(say("blocked", frame))]
        self._requested.discard(user)
        if user in self._chats:
            effects += self.stop(user)
        self._connecting.pop(user, None)
        if self._expected.pop(user, None) is not None:
            effects.append(CancelTimer(("expect", user)))
        for p in [p for p in self._peers.values() if p.user == user]:
            del self._peers[p.id]
            effects += [ClosePeer(p.id), CancelTimer(("peer", p.id))]
        return effects

    def ticket_expired(self, user: str) -> None:
        """``user``'s client never came: its token is no longer good."""
        self._expected.pop(user, None)

    # -- the chats ------------------------------------------------------------

    def send(self, user: str, text: str) -> list[ClientEffect]:
        """``text`` to ``user``'s client, over the open chat."""
        return [ToPeer(self._chats[user].id, {"type": FrameType.PRIVATE, "text": text})]

    def stop(self, user: str) -> list[ClientEffect]:
        """End the open chat with ``user``."""
        p = self._chats.pop(user)
        del self._peers[p.id]
        return [ClosePeer(p.id), Print(SAY("stopped", {"user": user}))]

    def close_all(self) -> list[ClientEffect]:
        """End every chat (in the order of their users' names) and close every other peer connection."""
        effects: list[ClientEffect] = []
        for user in sorted(self._chats):
            effects += self.stop(user)
        for peer in list(self._peers):
            effects.append(ClosePeer(peer))
        self._peers.clear()
        return effects

    # -- peer connections ---------------------------------------------------

    def accepted(self, peer: int, now: float, certificate: bytes | None) -> list[ClientEffect]:
        """Someone connected to our peer listener: they must present a token in time."""
        self._peers[peer] = _Peer(peer, certificate=certificate)
        return [SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def refused(self, reason: str) -> list[ClientEffect]:
        """A connection to our peer listener failed its TLS handshake: said only while we expect someone."""
        if not self._expected:
            return []
        return [Print(SAY("refused_peer", {"reason": reason}))]

    def connected(self, peer: int, user: str, now: float, certificate: bytes | None, me: str | None,
                  active: bool) -> list[ClientEffect]:
        """Our connection to ``user``'s client is up: present the token, if it is their certificate
        (and we, ``me``, are still logged in: ``active``)."""
        ticket = self._connecting.pop(user, None)
        if ticket is None or not active:
            return [ClosePeer(peer)]
        if not _same_certificate(peer, user, ticket.certificate, certificate):
            return [ClosePeer(peer), Print(SAY("unreachable_certificate", {"user": user}))]
        self._peers[peer] = _Peer(peer, user, ticket.token, certificate)
        return [ToPeer(peer, {"type": FrameType.PEER_HELLO, "user": me, "token": ticket.token}),
                SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def failed(self, user: str, reason: str) -> list[ClientEffect]:
        """We could not connect to ``user``'s client."""
        if self._connecting.pop(user, None) is None:
            return []
        return [Print(SAY("unreachable", {"user": user, "reason": reason}))]

    def frame(self, peer: int, frame: Frame, me: str | None, stamp: str) -> list[ClientEffect]:
        """A frame from a peer (its strings made visible, a private text's line breaks kept): the handshake's,
        or a private text, shown after ``stamp`` with its lines after the first indented."""
        p = self._peers.get(peer)
        if p is None:
            return []
        kind = frame.get("type")
        if p.chat is not None:
            text = frame.get("text") if kind == FrameType.PRIVATE else None
            if type(text) is not str:
                return []
            return [Print(hanging(stamp + SAY("private_text", {"user": p.chat, "text": text}), text))]
        if p.user is None and kind == FrameType.PEER_HELLO:
            return self._peer_hello(p, frame, me)
        if (p.token is not None and p.user is not None and kind == FrameType.PEER_WELCOME
                and frame.get("user") == p.user):
            return self._open_chat(p, p.user)
        return self._drop_peer(p, SAY("peer_broke_handshake"))

    def bad_frame(self, peer: int, detail: str) -> list[ClientEffect]:
        p = self._peers.get(peer)
        return [] if p is None else self._drop_peer(p, SAY("peer_bad_frame", {"detail": detail}))

    def closed(self, peer: int) -> list[ClientEffect]:
        """A peer connection closed from the other side (or broke)."""
        p = self._peers.get(peer)
        if p is None:
            return []
        return self._forget_peer(p, SAY("not_accepted", {"user": p.user}))

    def hello_overdue(self, peer: int) -> list[ClientEffect]:
        """A peer connection did not finish its hello in time."""
        p = self._peers.get(peer)
        if p is None or p.chat is not None:
            return []
        return self._drop_peer(p, SAY("peer_silent"))

    def _peer_hello(self, p: _Peer, frame: Frame, me: str | None) -> list[ClientEffect]:
        user, token = frame.get("user"), frame.get("token")
        expected = self._expected.get(user) if type(user) is str else None
        if (type(user) is not str or expected is None or type(token) is not str or user in self._chats
                or not secrets.compare_digest(token.encode("utf-8", "surrogatepass"), expected.token.encode())):
            log.info("peer %d: no valid token, dropped", p.id)
            del self._peers[p.id]
            return [CancelTimer(("peer", p.id)), ClosePeer(p.id)]
        if not _same_certificate(p.id, user, expected.certificate, p.certificate):
            del self._peers[p.id]
            return [CancelTimer(("peer", p.id)), ClosePeer(p.id), Print(SAY("refused_certificate", {"user": user}))]
        del self._expected[user]
        p.user = user
        return [CancelTimer(("expect", user)), ToPeer(p.id, {"type": FrameType.PEER_WELCOME, "user": me}),
                *self._open_chat(p, user)]

    def _open_chat(self, p: _Peer, user: str) -> list[ClientEffect]:
        p.chat = user
        self._chats[user] = p
        return [CancelTimer(("peer", p.id)), Print(SAY("started", {"user": user}))]

    def _drop_peer(self, p: _Peer, why: str) -> list[ClientEffect]:
        """Close a peer connection ourselves, saying what ended (the host will not report it)."""
        log.info("peer %d (%s) %s: closing", p.id, p.user, why)
        return [ClosePeer(p.id), *self._forget_peer(p, SAY("not_started", {"user": p.user, "why": why}))]

    def _forget_peer(self, p: _Peer, not_started: str) -> list[ClientEffect]:
        """A peer connection is gone: its chat stops, or, on the side that connected (it holds the
        token), the user hears ``not_started``."""
        del self._peers[p.id]
        effects: list[ClientEffect] = [CancelTimer(("peer", p.id))]
        if p.chat is not None:
            del self._chats[p.chat]
            effects.append(Print(SAY("stopped", {"user": p.chat})))
        elif p.token is not None:
            effects.append(Print(not_started))
        return effects
