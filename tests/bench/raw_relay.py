"""The ceiling: a byte relay on raw epoll with no chat logic, just the I/O.

Each client first sends one line ``{"type":"relay","pair":N}``; the two
clients naming the same N are partners and both get ``{"type":"welcome"}``.
From then on every byte a client sends is forwarded to its partner unchanged
(so lines arrive as they were sent), buffered only while the partner's socket
is full. Bench code only.
"""
from __future__ import annotations

import json
import select
import signal
import socket
from collections.abc import Callable

from .common import LISTEN_BACKLOG

RECV_SIZE = 256 * 1024
WELCOME = b'{"type":"welcome"}\n'


class Peer:
    __slots__ = ("sock", "partner", "pending", "out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.partner: Peer | None = None
        self.pending = b""       # bytes before pairing
        self.out = bytearray()   # bytes the socket would not take yet


def serve(port: int, announce: Callable[[int], None]) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=LISTEN_BACKLOG)
    listener.setblocking(False)
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    stop_r, stop_w = socket.socketpair()
    stop_w.setblocking(False)
    signal.set_wakeup_fd(stop_w.fileno())
    signal.signal(signal.SIGTERM, lambda *_: None)
    epoll.register(stop_r.fileno(), select.EPOLLIN)
    peers: dict[int, Peer] = {}
    waiting: dict[int, Peer] = {}   # pair number -> the first of the two to arrive
    announce(listener.getsockname()[1])

    def send(peer: Peer, data: bytes) -> None:
        if not peer.out:
            try:
                sent = peer.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return
            if sent == len(data):
                return
            data = data[sent:]
            epoll.modify(peer.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
        peer.out += data

    def drop(fd: int) -> None:
        peer = peers.pop(fd)
        epoll.unregister(fd)
        peer.sock.close()

    def pair_up(peer: Peer, data: bytes) -> None:
        data = peer.pending + data
        end = data.find(b"\n")
        if end < 0:
            peer.pending = data
            return
        number = json.loads(data[:end])["pair"]
        rest = data[end + 1:]
        other = waiting.pop(number, None)
        if other is None:
            waiting[number] = peer
            peer.pending = rest
            return
        peer.partner, other.partner = other, peer
        send(peer, WELCOME)
        send(other, WELCOME)
        if other.pending:
            send(peer, other.pending)
        if rest:
            send(other, rest)

    while True:
        for fd, mask in epoll.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        sock, _addr = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    peers[sock.fileno()] = Peer(sock)
                    epoll.register(sock.fileno(), select.EPOLLIN)
                continue
            if fd == stop_r.fileno():
                return
            peer = peers.get(fd)
            if peer is None:
                continue
            if mask & select.EPOLLOUT:
                try:
                    sent = peer.sock.send(peer.out)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    drop(fd)
                    continue
                del peer.out[:sent]
                if not peer.out:
                    epoll.modify(fd, select.EPOLLIN)
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = peer.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    drop(fd)
                elif peer.partner is None:
                    pair_up(peer, data)
                elif peer.partner.sock.fileno() >= 0:
                    send(peer.partner, data)
