"""The server's operator options, ``--metrics HOST:PORT`` and ``--admin-socket PATH``, and opening what they ask for.

``server_main.py`` adds them to its parser (``add_arguments``) and, once its host listens, calls ``start``
with the host's registry, readiness and ``AdminHost``; ``OpsError`` says in words why one could not be
opened (the endpoint's port taken, h11 missing, a live server's admin socket), for ``Error. ...`` and
exit status 2. h11 is imported only here, only when ``--metrics`` is given.
"""
from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from typing import Any

from ..loop import EventLoop
from ..stream import describe_os_error
from .admin import AdminHost, AdminServer, AdminSocketError
from .metrics import Registry

READY_SOURCE = "ready"   # the catalog's chat_ready gauge: 1 while /readyz says 200


class OpsError(Exception):
    """What the operator asked for cannot be opened; the message says why, for a person."""


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:9100``) as (host, port); port 0: the OS picks."""
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if colon and host and port.isdigit() and 0 <= int(port) <= 65535:
        return host, int(port)
    raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", type=host_port, metavar="HOST:PORT",
                        help="serve Prometheus metrics at /metrics, and /healthz and /readyz, over HTTP on "
                             "HOST:PORT (needs the metrics extra: h11); keep it off the public network")
    parser.add_argument("--admin-socket", metavar="PATH",
                        help="take admin commands (reactor-chat-admin PATH COMMAND) on a Unix socket at PATH, "
                             "readable by this server's user only")


class Operations:
    """What ``start`` opened: the metrics endpoint and the admin socket (either may be None)."""

    def __init__(self, endpoint: Any, admin: AdminServer | None) -> None:
        self.endpoint = endpoint   # a reactor.ops.http.MetricsEndpoint (not named here: it needs h11)
        self.admin = admin

    def close(self) -> None:
        """At shutdown: stop both (the admin socket's file goes)."""
        if self.endpoint is not None:
            self.endpoint.close()
        if self.admin is not None:
            self.admin.close()


def start(loop: EventLoop, args: argparse.Namespace, registry: Registry, ready: Callable[[], str | None],
          admin_host: AdminHost) -> Operations:
    """Open what ``args`` ask for on ``loop``; raises OpsError (with nothing left open) if one cannot be."""
    endpoint = None
    if args.metrics is not None:
        host, port = args.metrics
        try:
            from .http import serve_metrics
        except ImportError as exc:
            raise OpsError(f"--metrics needs h11 (pip install 'reactor-chat[metrics]'): {exc}") from None
        try:
            endpoint = serve_metrics(loop, host, port, registry.render, ready)
        except OSError as exc:
            reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else describe_os_error(exc)
            raise OpsError(f"Cannot serve metrics on {host}:{port}: {reason}") from None
    if READY_SOURCE in registry.sources:
        registry.provide(READY_SOURCE, lambda: ready() is None)
    admin = None
    if args.admin_socket is not None:
        try:
            admin = AdminServer(loop, args.admin_socket, admin_host, registry.counts.admin_commands)
        except AdminSocketError as exc:
            if endpoint is not None:
                endpoint.close()
            raise OpsError(str(exc)) from None
    return Operations(endpoint, admin)
