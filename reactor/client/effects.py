"""What the client's rules return, for the host to carry out in order, and where a session stands.

The effects: ``Print`` a line for the user, ``Prompt`` for the next input
(``''``: a command; ``secret``: do not echo; ``remember``: the line may enter
the editor's history, which login input never does); ``ToServer`` a frame;
``ToPeer`` a frame to a peer connection (numbered by the host);
``ConnectPeer`` to a peer's address; ``ClosePeer``; ``Listen`` for peers (the
host answers with ``listening``); ``Reconnect`` to the server (the host calls
``start`` again once connected); ``ShowDraft``, what the user was typing, so it
can be copied; ``SetTimer`` / ``CancelTimer`` (the host
calls ``timer_fired(key, now)``); ``Exit`` with a status (and what is being typed
dropped first).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ..protocol import Frame
from ..timer_effects import CancelTimer, SetTimer

__all__ = ["Print", "Prompt", "ToServer", "ToPeer", "ConnectPeer", "ClosePeer", "Listen", "Reconnect",
           "ShowDraft", "SetTimer", "CancelTimer", "Exit", "ClientEffect", "State"]


@dataclass(frozen=True, slots=True)
class Print:
    """Show one line (it may hold newlines) to the user."""
    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """Ask for the next line with ``text`` (``''``: a command); ``secret``: do not echo it;
    ``remember``: the line may be kept in the input history."""
    text: str
    secret: bool = False
    remember: bool = False


@dataclass(frozen=True, slots=True)
class ToServer:
    frame: Frame


@dataclass(frozen=True, slots=True)
class ToPeer:
    peer: int
    frame: Frame


@dataclass(frozen=True, slots=True)
class ConnectPeer:
    """Connect to ``user``'s client at ``host:port`` (in TLS mode, over TLS, trusting only ``certificate``);
    the host answers peer_connected or peer_failed."""
    user: str
    host: str
    port: int
    certificate: bytes | None = None


@dataclass(frozen=True, slots=True)
class ClosePeer:
    peer: int


@dataclass(frozen=True, slots=True)
class Listen:
    """Start accepting peers on the address used to reach the server; the host answers ``listening``."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Connect to the server again (the old connection is over or ending): once connected, the host calls
    ``start`` again, and ``listening`` with the listener it has."""


@dataclass(frozen=True, slots=True)
class ShowDraft:
    """Show what is typed and not sent (if anything) after the line ``words``: the session ended under it."""
    words: str


@dataclass(frozen=True, slots=True)
class Exit:
    """Exit with ``status``; ``drain``: first read and drop what is being typed (the password typed ahead of a
    refused login must not reach the shell as a command)."""
    status: int
    drain: bool = False


ClientEffect: TypeAlias = (Print | Prompt | ToServer | ToPeer | ConnectPeer | ClosePeer | Listen | Reconnect
                           | ShowDraft | SetTimer | CancelTimer | Exit)


class State(Enum):
    """Where the client is in its session."""
    CONNECTING = "waiting for the server's hello"
    USERNAME = "asking for the user name"
    PASSWORD = "asking for the password"
    ACTIVE = "logged in"
    LEAVING = "logged out, waiting for the goodbye"
    DONE = "exited"
