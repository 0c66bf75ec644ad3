"""The chat client's rules as a sans-I/O state machine: typed lines and frames go in, effects come out.

``ChatClient`` never touches a socket, the terminal or a clock. The host calls
one method per event with the current monotonic time ``now`` and carries out
the returned effects in order:

- ``Print`` a line for the user, ``Prompt`` for the next input (``''``: a
  command; ``secret``: do not echo; ``remember``: the line may enter the
  editor's history, which login input never does);
- ``ToServer`` a frame; ``ToPeer`` a frame to a peer connection (numbered by
  the host); ``ConnectPeer`` to a peer's address; ``ClosePeer``;
- ``Listen`` for peers (the host answers with ``listening``), from the start:
  the server learns the address before the login completes, so no private
  request can overtake it;
- ``SetTimer`` / ``CancelTimer`` (the host calls ``timer_fired(key, now)``);
- ``Exit`` with a status.

The host does not report ``peer_closed`` for a peer the logic closed itself.

Lines typed before the server has answered wait their turn, so a script may
pipe its whole dialogue at once and read the answers in the order of its
commands: a login step waits for its answer; the welcome and every command
sent to the server are followed by a ``ping``, and the next line waits for the
``pong`` (the server answers in order, so the stored messages and every answer
to the command come before it). Stored messages shown are acknowledged before
any logout. From the moment a user name or password is sent until the server
answers it, what is typed is not echoed (it may be the password). The words
shown are README.md's; the table is in ``PROTOCOL.md`` section 5.

Each command is declared once, on its handler (``@command``: name, parameters,
what it does), and help, usage, arity and completion derive from that; each
server frame likewise (``@on_frame``: its type and the words it shows), and
each error code has one entry in ``ERRORS``.

Wall-clock time comes only from the host: ``wall_offset`` added to ``now``
(stored messages carry their own ``sent``); ``tz`` is the time zone shown
(None: the machine's local time).

Text is never code: every frame from the server or a peer has the control
characters in its strings made visible (``reactor.text.visible``) before any
handler reads it, so no text, user name or error detail reaches the terminal
or the pipe raw; the client's own words keep their newlines. Text holding a
control character is not sent (``message``, ``broadcast``, ``private``).

A peer is connected to only in answer to a ``private_connect`` for a user
this client asked (``startprivate``), only at a numeric IP address (a name is
never resolved: that would stall the loop, and the server sends the address
it saw), and never at the server's own address.

In TLS mode (``certificate``: this client's per-session certificate, DER) a
private chat is end to end encrypted: the ``listen`` frame gives the server the
certificate, ``private_expect`` and ``private_connect`` bring the other
client's (``cert``), and the host speaks TLS to the peer, trusting exactly that
certificate (``reactor.client.peer_certs``). The logic checks the SHA-256 fingerprint
of the certificate each peer presented (``peer_accepted``/``peer_connected``)
against the relayed one, and never opens a private chat with a client that has
no certificate: there is no plaintext fallback.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import Enum
from typing import Any, TypeAlias

from ..protocol import MAX_TEXT, PROTOCOL_VERSION, PROTOCOL_VERSIONS, ErrorCode, Frame
from ..text import CONTROL, visible
from ..timer_effects import CancelTimer, SetTimer
from .peer_certs import decode_certificate, encode_certificate, fingerprint

__all__ = ["Print", "Prompt", "ToServer", "ToPeer", "ConnectPeer", "ClosePeer", "Listen", "SetTimer",
           "CancelTimer", "Exit", "ClientEffect", "ChatClient", "State", "Command", "Param", "Choices", "COMMANDS",
           "HELP", "FRAMES", "ERRORS"]

log = logging.getLogger(__name__)

LEAVE_GRACE = 3.0    # seconds to wait for the server's goodbye after asking to log out
PING = {"type": "ping"}


# -- effects ----------------------------------------------------------------

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
class Exit:
    status: int


ClientEffect: TypeAlias = (Print | Prompt | ToServer | ToPeer | ConnectPeer | ClosePeer | Listen | SetTimer
                           | CancelTimer | Exit)


class State(Enum):
    """Where the client is in its session."""
    CONNECTING = "waiting for the server's hello"
    USERNAME = "asking for the user name"
    PASSWORD = "asking for the password"
    ACTIVE = "logged in"
    LEAVING = "logged out, waiting for the goodbye"
    DONE = "exited"


LOGIN_STEPS = (State.USERNAME, State.PASSWORD)
PROMPTS = {State.USERNAME: Prompt("Username: "), State.PASSWORD: Prompt("Password: ", secret=True)}
HINT = "Type help for commands"


# -- commands: each declared once, on its handler (``@command``) -----------------

class Choices(Enum):
    """What Tab completes a parameter with."""
    COMMAND = "a command"
    ONLINE_USER = "another user online"
    CHAT_USER = "a user with an open private chat"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a command: ``text`` takes the rest of the line, spaces and all (so only the
    last one may); an ``optional`` one may be left out (so only the last ones may)."""
    name: str
    text: bool = False
    optional: bool = False
    completes: Choices | None = None

    @property
    def usage(self) -> str:
        return f"[<{self.name}>]" if self.optional else f"<{self.name}>"


USER = Param("user", completes=Choices.ONLINE_USER)
CHAT_USER = Param("user", completes=Choices.CHAT_USER)
TEXT = Param("text", text=True)

CommandHandler: TypeAlias = Callable[..., "list[ClientEffect]"]


@dataclass(frozen=True, slots=True)
class Command:
    """A command the user types: its name, its parameters, what it does (for help) and its handler,
    called as ``handler(client, *words, now=now)``. Usage, help, arity and completion derive from it."""
    name: str
    params: tuple[Param, ...]
    does: str
    handler: CommandHandler

    def __post_init__(self) -> None:
        if any(p.text for p in self.params[:-1]):
            raise ValueError(f"{self.name}: only the last parameter may take the rest of the line")
        if any(p.optional and not later.optional for p, later in zip(self.params, self.params[1:], strict=False)):
            raise ValueError(f"{self.name}: only the last parameters may be optional")

    @property
    def usage(self) -> str:
        return " ".join([self.name, *(p.usage for p in self.params)])

    def words(self, rest: str) -> list[str] | None:
        """The parameters given in ``rest`` (the line after the name), or None if they do not fit."""
        takes_text = bool(self.params) and self.params[-1].text
        words = rest.split(None, len(self.params) - 1) if takes_text else rest.split()
        required = sum(not p.optional for p in self.params)
        return words if required <= len(words) <= len(self.params) else None


COMMANDS: dict[str, Command] = {}   # in the order help lists them: the order of their declarations


def command(name: str, *params: Param, does: str) -> Callable[[CommandHandler], CommandHandler]:
    """Declare the decorated method the handler of the command ``name``."""
    def declare(handler: CommandHandler) -> CommandHandler:
        COMMANDS[name] = Command(name, params, does, handler)
        return handler
    return declare


# -- frames from the server: each declared once, on its handler (``@on_frame``) -------

class _Fields(dict[str, Any]):
    """Format fields that show a missing one as '?' rather than fail."""

    def __missing__(self, key: str) -> str:
        return "?"


def _words(template: str, fields: Mapping[str, Any]) -> str:
    return template.format_map(_Fields({k: v for k, v in fields.items() if isinstance(v, (str, int, float))}))


@dataclass(frozen=True, slots=True)
class Words:
    """The words a frame's handler shows, in README.md's words, by name: ``{field}`` is filled in
    from the fields given ('?' when one is missing)."""
    templates: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, name: str, fields: Mapping[str, Any] | None = None) -> str:
        return _words(self.templates[name], fields or {})


FrameHandler: TypeAlias = Callable[["ChatClient", Frame, float, Words], "list[ClientEffect]"]


@dataclass(frozen=True, slots=True)
class FrameRule:
    """How the client takes one type of frame from the server: its handler is called with the
    frame (its strings made visible), ``now`` and its ``words``."""
    handler: FrameHandler
    words: Words


FRAMES: dict[str, FrameRule] = {}


def on_frame(kind: str, **words: str) -> Callable[[FrameHandler], FrameHandler]:
    """Declare the decorated method the handler of the server's ``kind`` frames; ``words``: what it shows."""
    def declare(handler: FrameHandler) -> FrameHandler:
        FRAMES[kind] = FrameRule(handler, Words(words))
        return handler
    return declare


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """What the client shows for one error code from the server (README.md's words; ``{user}``,
    ``{max}``, ``{detail}``, ``{version}``, ``{retry}`` are the frame's fields), and what follows."""
    words: str | None = None   # None: the first of ``by_command``'s (when the command is none of them)
    by_command: Mapping[str, str] = field(default_factory=dict)   # by the frame's ``command``, when it is one
    fatal: bool = False                # the client exits with status 1
    ask_again: State | None = None     # a login step's error: that step is asked again (else the code is unknown)
    ends_request: bool = False         # it answers a startprivate, which is no longer open

    def shown(self, frame: Frame) -> str:
        command = frame.get("command")
        by_command = self.by_command.get(command) if type(command) is str else None
        return _words(by_command or self.words or next(iter(self.by_command.values())), frame)


ERRORS: dict[str, ErrorRule] = {   # keyed by ErrorCode (a str): every code the server sends
    ErrorCode.VERSION: ErrorRule("Error. Server speaks protocol version {version}", fatal=True),
    ErrorCode.BAD_FRAME: ErrorRule("Error. Bad request: {detail}"),
    ErrorCode.NOT_LOGGED_IN: ErrorRule("Error. Not logged in"),
    ErrorCode.INVALID_USERNAME: ErrorRule("Invalid Username. Please try again", ask_again=State.USERNAME),
    ErrorCode.ALREADY_LOGGED_IN: ErrorRule("Error. {user} is already logged in", ask_again=State.USERNAME),
    ErrorCode.INVALID_PASSWORD: ErrorRule("Invalid Password. Please try again", ask_again=State.PASSWORD),
    ErrorCode.TRY_AGAIN: ErrorRule(
        "Error. The server cannot check passwords right now; try again", ask_again=State.PASSWORD),
    ErrorCode.ACCOUNT_BLOCKED: ErrorRule("Invalid Password. Your account has been blocked. Please try again later",
                                 fatal=True),
    ErrorCode.ACCOUNT_LOCKED: ErrorRule(
        "Your account is blocked due to multiple login failures. Please try again later", fatal=True),
    ErrorCode.LOGIN_TIMEOUT: ErrorRule("Error. Login timed out", fatal=True),
    ErrorCode.BUSY: ErrorRule("Error. Server busy, try again later", fatal=True),
    ErrorCode.TLS_REQUIRED: ErrorRule(
        "Error. This server requires TLS; connect with --tls (and --ca FILE for a private CA)", fatal=True),
    ErrorCode.INVALID_USER: ErrorRule("Error. Invalid user"),
    ErrorCode.SELF: ErrorRule("Error. Not with yourself", by_command={
        "message": "Error. Cannot message yourself",
        "block": "Error. Cannot block yourself",
        "startprivate": "Error. Cannot start private messaging with yourself"}),
    ErrorCode.BLOCKED_BY_RECIPIENT: ErrorRule("Your message could not be delivered as the recipient has blocked you"),
    ErrorCode.ALREADY_BLOCKED: ErrorRule("Error. {user} is already blocked"),
    ErrorCode.NOT_BLOCKED: ErrorRule("Error. {user} was not blocked"),
    ErrorCode.CONTROL_CHARACTERS: ErrorRule("Error. A message cannot contain control characters"),
    ErrorCode.TEXT_TOO_LONG: ErrorRule("Error. Message too long (at most {max} characters)"),
    ErrorCode.QUEUE_FULL: ErrorRule("Error. {user} has too many messages waiting; yours was not kept"),
    ErrorCode.QUOTA_EXCEEDED: ErrorRule(
        "Error. Too many of your messages wait for offline users; this one was not kept"),
    ErrorCode.RATE_LIMITED: ErrorRule("Error. You are sending too fast; try again in {retry} s"),
    ErrorCode.STORE_FULL: ErrorRule(by_command={   # the server had no room to keep it
        "message": "Error. The server cannot keep messages right now; {user} did not get yours",
        "block": "Error. The server cannot keep blocks right now; {user} is not blocked",
        "unblock": "Error. The server cannot keep blocks right now; {user} is still blocked"}),
    ErrorCode.BAD_ARGUMENT: ErrorRule("Error. {detail}"),
    ErrorCode.OFFLINE: ErrorRule("Error. {user} is offline", ends_request=True),
    ErrorCode.PRIVATE_BLOCKED: ErrorRule("Error. Cannot start private messaging with {user}: you are blocked",
                                 ends_request=True),
    ErrorCode.PRIVATE_PENDING: ErrorRule("Error. A private messaging request with {user} is already open"),
    ErrorCode.PRIVATE_UNAVAILABLE: ErrorRule(
        "Error. {user} cannot accept private messaging right now", ends_request=True),
    ErrorCode.PRIVATE_DECLINED: ErrorRule("Error. {user} declined private messaging", ends_request=True),
    ErrorCode.NO_REQUEST: ErrorRule("Error. No private messaging request from {user}"),
}


def _shown_fields(frame: Frame) -> Frame:
    """``frame`` with the control characters made visible in its strings, and in the strings of its
    lists: all a handler shows (anything deeper is shown only as a ``repr``, which escapes them)."""
    return {key: visible(value) if type(value) is str
            else [visible(v) if type(v) is str else v for v in value] if type(value) is list
            else value
            for key, value in frame.items()}


IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def _peer_ip(host: str) -> IPAddress | None:
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


class ChatClient:
    """Every client-side rule of the chat; one method per event, each returning effects in order."""

    def __init__(self, *, token_ttl: float = 30.0, peer_hello_timeout: float = 10.0, timestamps: bool = False,
                 wall_offset: float | None = None, tz: tzinfo | None = None,
                 certificate: bytes | None = None) -> None:
        """``timestamps``: live messages show the time they came (it takes ``wall_offset``);
        stored messages always show when they were sent. ``certificate``: TLS mode, private chats
        end to end encrypted (see the module's docstring)."""
        self._certificate = certificate
        self._token_ttl = token_ttl
        self._peer_hello_timeout = peer_hello_timeout
        self._live_stamps = timestamps and wall_offset is not None
        self._wall_offset = wall_offset or 0.0
        self._tz = tz
        self._state = State.CONNECTING
        self._waiting = True                       # a login step, or a pong, awaits the server's answer
        self._typed: deque[str] = deque()          # lines typed while waiting
        self._input_ended = False                  # standard input is done (acted on once _typed is)
        self._user: str | None = None
        self._claimed: str | None = None           # the name sent, awaiting its password
        self._shown: set[int] = set()              # ids of stored messages already shown
        self._unacked: list[int] = []
        self._questions: deque[str] = deque()      # users asking us for a private chat, oldest first
        self._expected: dict[str, _Ticket] = {}    # requester -> what its client will present
        self._connecting: dict[str, _Ticket] = {}  # target -> what we present and expect, while we connect to it
        self._requested: set[str] = set()          # users we asked for a private chat, until it starts or ends
        self._server: tuple[Any, int] | None = None   # the server's (IP address, port): never a peer's
        self._peers: dict[int, _Peer] = {}
        self._chats: dict[str, _Peer] = {}         # user -> the open private chat with them
        self._online: set[str] = set()             # other users online, as presence and whoelse told
        self._asked: deque[bool] = deque()         # users answers to come: True for whoelse, False for since

    @property
    def user(self) -> str | None:
        """The user logged in, or None."""
        return self._user

    def _done(self) -> bool:
        """The client has exited: events change nothing any more."""
        return self._state is State.DONE

    def expected_certificates(self) -> list[bytes]:
        """The certificates (DER) of the clients we expect on our peer listener: in TLS mode the host
        trusts these, and only these, on a connection it accepts (none: it closes it at once)."""
        return [ticket.certificate for ticket in self._expected.values() if ticket.certificate is not None]

    def chats(self) -> list[str]:
        """The users with an open private chat, sorted."""
        return sorted(self._chats)

    def online_users(self) -> frozenset[str]:
        """The other users online, as far as presence notices and ``whoelse`` have told."""
        return frozenset(self._online)

    def completions(self, before_cursor: str) -> list[str]:
        """Whole words that can replace the blank-separated word before the cursor: a command
        as the first word (or after ``help``), a user as the first word after a command."""
        words = before_cursor.split(" ")
        word = words[-1]
        if self._state != State.ACTIVE:
            return []
        if len(words) == 1:
            kind: Choices | None = Choices.COMMAND
        else:
            declared = COMMANDS.get(words[0])
            params = declared.params if declared is not None else ()
            kind = params[len(words) - 2].completes if len(words) - 2 < len(params) else None
        return sorted(choice for choice in self._choices(kind) if choice.startswith(word))

    def _choices(self, kind: Choices | None) -> Collection[str]:
        if kind is Choices.COMMAND:
            return COMMANDS
        if kind is Choices.ONLINE_USER:
            return self._online
        if kind is Choices.CHAT_USER:
            return self._chats
        return ()

    # -- events from the host ------------------------------------------------

    def start(self, now: float, server: tuple[str, int] | None = None) -> list[ClientEffect]:
        """Connected to the server, at ``server`` (its IP address and port, if known): say hello."""
        if server is not None:
            ip = _peer_ip(server[0])
            self._server = None if ip is None else (ip, server[1])
        return [ToServer({"type": "hello", "version": PROTOCOL_VERSION}), Listen()]

    def line(self, text: str, now: float) -> list[ClientEffect]:
        """The user typed a line."""
        if self._state in (State.DONE, State.LEAVING):
            return []
        if self._waiting:
            self._typed.append(text)
            return [Prompt("", secret=True)] if self._state in (State.CONNECTING, *LOGIN_STEPS) else []
        return self._take(text, now)

    def end_of_input(self, now: float) -> list[ClientEffect]:
        """Standard input ended (Ctrl-D, a closed pipe): log out and exit 0, once the lines
        typed before it have had their turn (a script may pipe a whole session and close)."""
        self._input_ended = True
        return self._drain(now)

    def interrupt(self, now: float) -> list[ClientEffect]:
        """A signal asked the client to stop: as the end of input."""
        return self._leave(now)

    def listening(self, host: str, port: int, now: float) -> list[ClientEffect]:
        """The peer listener is bound: tell the server where (it takes this before the login, too)."""
        if self._done():
            return []
        frame: Frame = {"type": "listen", "host": host, "port": port}
        if self._certificate is not None:
            frame["cert"] = encode_certificate(self._certificate)
        return [ToServer(frame)]

    def server_frame(self, frame: Any, now: float) -> list[ClientEffect]:
        """One decoded frame from the server."""
        if self._done():
            return []
        kind = frame.get("type") if type(frame) is dict else None
        if type(kind) is not str:
            return self.server_bad_frame("a frame without a type", now)
        rule = FRAMES.get(kind)
        if rule is None:
            log.debug("ignoring a %.40r frame from the server", kind)
            return []
        effects = rule.handler(self, _shown_fields(frame), now, rule.words)
        if not self._waiting and not self._done():
            effects += self._drain(now)
        return effects

    def server_bad_frame(self, detail: str, now: float) -> list[ClientEffect]:
        """The server sent something that is not a frame."""
        return [] if self._done() else [Print(f"Error. Bad frame from server: {detail}")]

    def server_lost(self, now: float) -> list[ClientEffect]:
        """The server connection closed without a goodbye."""
        if self._done():
            return []
        return self._finish("Error. Connection to server lost", 1)

    def timer_fired(self, key: Any, now: float) -> list[ClientEffect]:
        if self._done():
            return []
        kind = key[0]
        if kind == "ack":
            return self._acknowledge()
        if kind == "expect":           # the requester never came: its token is no longer good
            self._expected.pop(key[1], None)
            return []
        if kind == "peer":             # a peer connection that never finished its hello
            peer = self._peers.get(key[1])
            if peer is None or peer.chat is not None:
                return []
            return self._drop_peer(peer, "did not answer")
        if kind == "leave":            # the server never said goodbye
            return self._finish("Logged out", 0)
        return []

    # -- peers ------------------------------------------------------------

    def peer_accepted(self, peer: int, now: float, certificate: bytes | None = None) -> list[ClientEffect]:
        """Someone connected to our peer listener (in TLS mode: the handshake is done, and ``certificate``
        is the one it presented): they must present a token in time."""
        self._peers[peer] = _Peer(peer, certificate=certificate)
        return [SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def peer_refused(self, reason: str, now: float) -> list[ClientEffect]:
        """A connection to our peer listener failed its TLS handshake (say, a certificate other than
        the ones we expect) while we expected someone: nobody knows who it was."""
        if self._done() or not self._expected:
            return []
        return [Print(f"Error. Refused a private connection: {reason}")]

    def peer_connected(self, peer: int, user: str, now: float,
                       certificate: bytes | None = None) -> list[ClientEffect]:
        """Our connection to ``user``'s client is up (in TLS mode: the handshake is done, and ``certificate``
        is the one it presented): present the token, if it is their certificate."""
        ticket = self._connecting.pop(user, None)
        if ticket is None or self._state != State.ACTIVE:
            return [ClosePeer(peer)]
        if not _same_certificate(peer, user, ticket.certificate, certificate):
            return [ClosePeer(peer), Print(f"Error. Cannot reach {user} for private messaging: "
                                           "the peer's certificate is not the one the server relayed")]
        self._peers[peer] = _Peer(peer, user, ticket.token, certificate)
        return [ToPeer(peer, {"type": "peer_hello", "user": self._user, "token": ticket.token}),
                SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def peer_failed(self, user: str, reason: str, now: float) -> list[ClientEffect]:
        """We could not connect to ``user``'s client."""
        if self._connecting.pop(user, None) is None:
            return []
        return [Print(f"Error. Cannot reach {user} for private messaging: {reason}")]

    def peer_frame(self, peer: int, frame: Any, now: float) -> list[ClientEffect]:
        p = self._peers.get(peer)
        if p is None:
            return []
        frame = _shown_fields(frame) if type(frame) is dict else {}
        kind = frame.get("type")
        if p.chat is not None:
            text = frame.get("text") if kind == "private" else None
            if type(text) is not str:
                return []
            return [Print(f"{self._live_stamp(now)}{p.chat}(private): {text}")]
        if p.user is None and kind == "peer_hello":
            return self._peer_hello(p, frame)
        if p.token is not None and p.user is not None and kind == "peer_welcome" and frame.get("user") == p.user:
            return self._open_chat(p, p.user)
        return self._drop_peer(p, "broke the handshake")

    def peer_bad_frame(self, peer: int, detail: str, now: float) -> list[ClientEffect]:
        p = self._peers.get(peer)
        return [] if p is None else self._drop_peer(p, f"sent a bad frame ({detail})")

    def peer_closed(self, peer: int, now: float) -> list[ClientEffect]:
        """A peer connection closed from the other side (or broke)."""
        p = self._peers.get(peer)
        if p is None:
            return []
        return self._forget_peer(p, f"Error. {p.user} did not accept the private connection")

    def _peer_hello(self, p: _Peer, frame: Frame) -> list[ClientEffect]:
        user, token = frame.get("user"), frame.get("token")
        expected = self._expected.get(user) if type(user) is str else None
        if (type(user) is not str or expected is None or type(token) is not str or user in self._chats
                or not secrets.compare_digest(token.encode("utf-8", "surrogatepass"), expected.token.encode())):
            log.info("peer %d: no valid token, dropped", p.id)
            del self._peers[p.id]
            return [CancelTimer(("peer", p.id)), ClosePeer(p.id)]
        if not _same_certificate(p.id, user, expected.certificate, p.certificate):
            del self._peers[p.id]
            return [CancelTimer(("peer", p.id)), ClosePeer(p.id),
                    Print(f"Error. Refused a private connection from {user}: "
                          "its certificate is not the one the server relayed")]
        del self._expected[user]
        p.user = user
        return [CancelTimer(("expect", user)), ToPeer(p.id, {"type": "peer_welcome", "user": self._user}),
                *self._open_chat(p, user)]

    def _open_chat(self, p: _Peer, user: str) -> list[ClientEffect]:
        p.chat = user
        self._chats[user] = p
        return [CancelTimer(("peer", p.id)), Print(f"Start private messaging with {user}")]

    def _drop_peer(self, p: _Peer, why: str) -> list[ClientEffect]:
        """Close a peer connection ourselves, saying what ended (the host will not report it)."""
        log.info("peer %d (%s) %s: closing", p.id, p.user, why)
        return [ClosePeer(p.id),
                *self._forget_peer(p, f"Error. Private messaging with {p.user} could not start: the peer {why}")]

    def _forget_peer(self, p: _Peer, not_started: str) -> list[ClientEffect]:
        """A peer connection is gone: its chat stops, or, on the side that connected (it holds the
        token), the user hears ``not_started``."""
        del self._peers[p.id]
        effects: list[ClientEffect] = [CancelTimer(("peer", p.id))]
        if p.chat is not None:
            del self._chats[p.chat]
            effects.append(Print(f"Private messaging with {p.chat} stopped"))
        elif p.token is not None:
            effects.append(Print(not_started))
        return effects

    def _stop_chat(self, user: str) -> list[ClientEffect]:
        p = self._chats.pop(user)
        del self._peers[p.id]
        return [ClosePeer(p.id), Print(f"Private messaging with {user} stopped")]

    # -- login ------------------------------------------------------------

    def _take(self, text: str, now: float) -> list[ClientEffect]:
        """Act on one typed line in the current state."""
        if self._state == State.USERNAME:
            name = text.strip()
            if not name:
                return [PROMPTS[State.USERNAME]]
            self._claimed, self._waiting = name, True
            return [ToServer({"type": "username", "username": name}), Prompt("", secret=True)]
        if self._state == State.PASSWORD:
            self._waiting = True
            return [ToServer({"type": "password", "password": text.strip()}), Prompt("", secret=True)]
        return self._command(text, now)

    def _drain(self, now: float) -> list[ClientEffect]:
        """Run lines typed ahead, until one needs the server's answer first; then the end of input."""
        effects: list[ClientEffect] = []
        while self._typed and not self._waiting and self._state not in (State.DONE, State.LEAVING):
            effects += self._take(self._typed.popleft(), now)
        if self._input_ended and not self._typed and (not self._waiting or self._state == State.CONNECTING):
            effects += self._leave(now)   # (an answer to what was typed is worth waiting for; hello is not)
        return effects

    def _ask(self, step: State) -> list[ClientEffect]:
        """Ask for the login ``step``'s line."""
        self._state, self._waiting = step, False
        return [PROMPTS[step]]

    # -- what the server says ------------------------------------------------

    @on_frame("hello")
    def _on_hello(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        version = frame.get("version")
        if type(version) is not int or version not in PROTOCOL_VERSIONS:   # 1: one user a presence frame
            return self._finish(ERRORS["version"].shown(frame), 1)
        return self._ask(State.USERNAME)

    @on_frame("username_ok", prompt=PROMPTS[State.PASSWORD].text)
    def _on_username_ok(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return self._ask(State.PASSWORD)

    @on_frame("welcome", welcome="Welcome to the greatest messaging application ever!", hint=HINT)
    def _on_welcome(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Logged in. Typed lines wait for the pong: the stored messages come first, and are shown
        (and so acknowledged) before a typed ``logout`` can end the session."""
        self._user, self._claimed = self._claimed, None
        if type(frame.get("user")) is str:
            self._user = frame["user"]
        self._state, self._waiting = State.ACTIVE, True
        # The command prompt first: a terminal whose output is piped echoes again before the welcome shows.
        return [Prompt("", remember=True), Print(say("welcome")), Print(say("hint")), ToServer(PING)]

    @on_frame("pong")
    def _on_pong(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Every answer to what was sent before the ping is in: the next typed line may go."""
        if self._state == State.ACTIVE:
            self._waiting = False
        return []

    @on_frame("error")
    def _on_error(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """In ``ERRORS``' words; a login step's error asks for the step again (at another time it is
        not understood), a fatal one ends the client."""
        code = frame.get("code")
        code = code if type(code) is str else "?"
        rule = ERRORS.get(code)
        if rule is None or rule.ask_again is not None and self._state not in LOGIN_STEPS:
            return [Print("Error. " + code)]
        if rule.fatal:
            return self._finish(rule.shown(frame), 1)
        if rule.ends_request and type(frame.get("user")) is str:
            self._requested.discard(frame["user"])
        effects: list[ClientEffect] = [Print(rule.shown(frame))]
        if rule.ask_again is not None:
            effects += self._ask(rule.ask_again)
        return effects

    @on_frame("message", message="{from}: {text}", broadcast="[broadcast] {from}: {text}")
    def _on_message(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        sender, text = frame.get("from"), frame.get("text")
        if type(sender) is not str or type(text) is not str:
            return []
        effects: list[ClientEffect] = []
        mid = frame.get("id")
        if type(mid) is int:           # a stored message: acknowledge it, show it once
            if self._state != State.ACTIVE:
                return []              # logout is sent: no ack could precede it, so it waits for the next login
            if not self._unacked:
                effects.append(SetTimer(("ack",), now))   # one ack for the whole burst
            self._unacked.append(mid)
            if mid in self._shown:
                return effects
            self._shown.add(mid)
        stamp = self._sent_stamp(frame.get("sent")) if type(mid) is int else self._live_stamp(now)
        shown = say("broadcast" if frame.get("broadcast") is True else "message", {"from": sender, "text": text})
        effects.append(Print(stamp + shown))
        return effects

    def _sent_stamp(self, sent: Any) -> str:
        """``[Nov 24 14:03] `` for a stored message's ``sent``; nothing when it is missing or absurd."""
        if type(sent) not in (int, float):
            return ""
        try:
            when = datetime.fromtimestamp(sent, self._tz)
        except (OverflowError, OSError, ValueError):
            return ""
        return f"[{when:%b} {when.day} {when:%H:%M}] "

    def _live_stamp(self, now: float) -> str:
        """``[14:03] `` when the user asked for timestamps on live messages."""
        if not self._live_stamps:
            return ""
        return f"[{datetime.fromtimestamp(now + self._wall_offset, self._tz):%H:%M}] "

    @on_frame("stored", stored="{to} is offline; the message will be delivered when they log in")
    def _on_stored(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("stored", frame))]

    @on_frame("broadcast_partial", partial="Your message could not be delivered to some recipients")
    def _on_broadcast_partial(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("partial"))]

    @on_frame("users", nobody="No other users online")
    def _on_users(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """The names one a line (the answer to whoelse or whoelsesince)."""
        names = frame.get("names")
        if type(names) is not list:
            return []
        names = [n for n in names if type(n) is str]
        if self._asked and self._asked.popleft():   # the answer to whoelse: exactly who is online
            self._online = set(names)
        return [Print("\n".join(names) if names else say("nobody"))]

    @on_frame("presence", online="{user} logged in", offline="{user} logged out")
    def _on_presence(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """One line per user, whether the frame lists them (``users``) or names one (``user``)."""
        users, online = frame.get("users"), frame.get("online") is True
        if type(users) is not list:
            users = [frame.get("user")]
        if not users:
            return []
        note = self._online.add if online else self._online.discard
        for user in users:
            if type(user) is str:
                note(user)
        went = "online" if online else "offline"
        return [Print("\n".join(say(went, {"user": user}) for user in users))]

    @on_frame("blocked", blocked="{user} is blocked")
    def _on_blocked(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """A block ends any private chat with that user, open or still being set up."""
        user = frame.get("user")
        if type(user) is not str:
            return []
        effects: list[ClientEffect] = [Print(say("blocked", frame))]
        self._requested.discard(user)
        if user in self._chats:
            effects += self._stop_chat(user)
        self._connecting.pop(user, None)
        if self._expected.pop(user, None) is not None:
            effects.append(CancelTimer(("expect", user)))
        for p in [p for p in self._peers.values() if p.user == user]:
            del self._peers[p.id]
            effects += [ClosePeer(p.id), CancelTimer(("peer", p.id))]
        return effects

    @on_frame("unblocked", unblocked="{user} is unblocked")
    def _on_unblocked(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("unblocked", frame))]

    @on_frame("private_request", ask="{from} would like to start private messaging. Accept? (y/n)",
              accepted="Accepted private messaging with {from}", declined="Declined private messaging with {from}")
    def _on_private_request(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """A question the next ``y`` or ``n`` typed answers (``_answer``), oldest first."""
        sender = frame.get("from")
        if type(sender) is not str:
            return []
        if sender not in self._questions:
            self._questions.append(sender)
        return [Print(say("ask", frame))]

    @on_frame("private_expect")
    def _on_private_expect(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        user, token = frame.get("user"), frame.get("token")
        if type(user) is not str or type(token) is not str:
            return []
        certificate = self._their_certificate(frame)
        if self._certificate is not None and certificate is None:
            return [Print(f"Error. Cannot start private messaging with {user}: "
                          "their client does not encrypt private chats")]
        self._expected[user] = _Ticket(token, certificate)
        return [SetTimer(("expect", user), now + self._token_ttl),
                ToServer({"type": "private_ready", "user": user, "token": token})]

    @on_frame("private_connect")
    def _on_private_connect(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        user, host, port, token = (frame.get(k) for k in ("user", "host", "port", "token"))
        if type(user) is not str or type(host) is not str or type(port) is not int or type(token) is not str:
            return []
        if user not in self._requested or user in self._chats or user in self._connecting:
            log.info("private_connect for %s, whom we did not ask (or are connecting to already): ignored", user)
            return []
        self._requested.discard(user)
        ip = _peer_ip(host)
        if ip is None:
            return [Print(f"Error. Cannot reach {user} for private messaging: the server named a host ({host}), "
                          "not an IP address")]
        if ip.is_unspecified or ip.is_multicast or not 0 < port < 65536 or self._is_server(ip, port):
            return [Print(f"Error. Cannot reach {user} for private messaging: {host} port {port} is not "
                          "an address of theirs")]
        certificate = self._their_certificate(frame)
        if self._certificate is not None and certificate is None:
            return [Print(f"Error. Cannot start private messaging with {user}: "
                          "their client does not encrypt private chats")]
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

    @on_frame("private_cancelled", cancelled="Private messaging request with {user} was cancelled")
    def _on_private_cancelled(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
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

    @on_frame("bye", logout="Logged out", timeout="You have been logged out due to inactivity",
              shutdown="Error. Server is shutting down", account_removed="Error. Your account was removed")
    def _on_bye(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Goodbye for the ``reason`` given (any other: logged out); the server ending it is an error."""
        reason = frame.get("reason")
        if reason not in ("timeout", "shutdown", "account_removed"):
            reason = "logout"
        return self._finish(say(reason), 1 if reason in ("shutdown", "account_removed") else 0)

    # -- commands -----------------------------------------------------------

    def _command(self, text: str, now: float) -> list[ClientEffect]:
        """A line typed while logged in. A command the server sees is followed by a ping, and the
        next line waits for its pong; lines the server does not see still count as activity."""
        effects = self._run(text.strip(), now)
        if self._state != State.ACTIVE:
            return effects
        if any(type(e) is ToServer for e in effects):
            self._waiting = True
            effects.append(ToServer(PING))
        else:
            effects.append(ToServer({"type": "activity"}))
        return effects

    def _run(self, line: str, now: float) -> list[ClientEffect]:
        if not line:
            return []
        if self._questions and line.lower() in ("y", "n"):
            return self._answer(line.lower() == "y")
        name, _, rest = line.partition(" ")
        declared = COMMANDS.get(name)
        if declared is None:
            return [Print("Error. Invalid command")]
        words = declared.words(rest)
        if words is None:
            return [Print(f"Error. Usage: {declared.usage}")]
        return declared.handler(self, *words, now=now)

    def _answer(self, accept: bool) -> list[ClientEffect]:
        """The oldest private-chat request is answered."""
        user = self._questions.popleft()
        say = FRAMES["private_request"].words
        return [ToServer({"type": "private_answer", "user": user, "accept": accept}),
                Print(say("accepted" if accept else "declined", {"from": user}))]

    def _refuse_text(self, text: str, limit: bool = True) -> list[ClientEffect]:
        """Why ``text`` cannot be sent (control characters; with ``limit``, too long), or nothing."""
        if CONTROL.search(text):
            return [Print(ERRORS["control_characters"].shown({}))]
        if limit and len(text) > MAX_TEXT:
            return [Print(ERRORS["text_too_long"].shown({"max": MAX_TEXT}))]
        return []

    @command("message", USER, TEXT, does="send <text> to <user> (kept until they log in)")
    def _message(self, user: str, text: str, *, now: float) -> list[ClientEffect]:
        return self._refuse_text(text) or [ToServer({"type": "message", "to": user, "text": text})]

    @command("broadcast", TEXT, does="send <text> to everyone online")
    def _broadcast(self, text: str, *, now: float) -> list[ClientEffect]:
        return self._refuse_text(text) or [ToServer({"type": "broadcast", "text": text})]

    @command("whoelse", does="who else is online")
    def _whoelse(self, *, now: float) -> list[ClientEffect]:
        self._asked.append(True)
        return [ToServer({"type": "whoelse"})]

    @command("whoelsesince", Param("seconds"), does="who else was online in the last <seconds>")
    def _whoelsesince(self, seconds: str, *, now: float) -> list[ClientEffect]:
        try:
            value = float(seconds)
        except ValueError:
            return [Print(f"Error. whoelsesince needs a number of seconds, not {seconds!r}")]
        if not math.isfinite(value):
            return [Print("Error. whoelsesince needs a finite number of seconds")]
        if value < 0:
            return [Print("Error. whoelsesince needs seconds that are not negative")]
        number: int | float = int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
        self._asked.append(False)
        return [ToServer({"type": "whoelsesince", "seconds": number})]

    @command("block", USER, does="stop <user> reaching you")
    def _block(self, user: str, *, now: float) -> list[ClientEffect]:
        return [ToServer({"type": "block", "user": user})]

    @command("unblock", USER, does="let <user> reach you again")
    def _unblock(self, user: str, *, now: float) -> list[ClientEffect]:
        return [ToServer({"type": "unblock", "user": user})]

    @command("startprivate", USER, does="ask <user> for a peer-to-peer chat")
    def _startprivate(self, user: str, *, now: float) -> list[ClientEffect]:
        if user in self._chats:
            return [Print(f"Error. Private messaging with {user} is already enabled")]
        if user in self._connecting:
            return [Print(f"Error. Private messaging with {user} is starting already")]
        self._requested.add(user)
        return [ToServer({"type": "startprivate", "user": user})]

    @command("private", CHAT_USER, TEXT, does="send <text> straight to <user>'s client")
    def _private(self, user: str, text: str, *, now: float) -> list[ClientEffect]:
        p = self._chats.get(user)
        if p is None:
            return [Print(f"Error. Private messaging to {user} not enabled")]
        return self._refuse_text(text, limit=False) or [ToPeer(p.id, {"type": "private", "text": text})]

    @command("stopprivate", CHAT_USER, does="end the peer-to-peer chat with <user>")
    def _stopprivate(self, user: str, *, now: float) -> list[ClientEffect]:
        if user not in self._chats:
            return [Print(f"Error. Private messaging to {user} not enabled")]
        return self._stop_chat(user)

    @command("logout", does="log out and exit")
    def _logout(self, *, now: float) -> list[ClientEffect]:
        return self._leave(now)

    @command("help", Param("command", optional=True, completes=Choices.COMMAND),
             does="this list, or how to use one command")
    def _help(self, name: str | None = None, *, now: float) -> list[ClientEffect]:
        if name is None:
            return [Print(HELP)]
        declared = COMMANDS.get(name)
        if declared is None:
            return [Print(f"Error. No command {name}. {HINT}")]
        return [Print(f"Usage: {declared.usage}\n{declared.does[0].upper()}{declared.does[1:]}")]

    # -- ending -------------------------------------------------------------

    def _leave(self, now: float) -> list[ClientEffect]:
        """The user wants out: log out if logged in (exit once the server says bye), else exit now.
        Every stored message shown is acknowledged first: after the logout the server reads nothing."""
        if self._state == State.ACTIVE:
            self._state = State.LEAVING
            return [*self._acknowledge(), ToServer({"type": "logout"}), SetTimer(("leave",), now + LEAVE_GRACE)]
        if self._state in (State.LEAVING, State.DONE):
            return []
        return self._finish(None, 0)

    def _acknowledge(self) -> list[ClientEffect]:
        """The ack of the stored messages shown since the last one (an ack timer still armed then finds none)."""
        ids, self._unacked = self._unacked, []
        return [ToServer({"type": "ack", "ids": ids})] if ids else []

    def _finish(self, words: str | None, status: int) -> list[ClientEffect]:
        """End every private chat, say ``words``, exit with ``status``."""
        effects: list[ClientEffect] = []
        for user in sorted(self._chats):
            effects += self._stop_chat(user)
        for peer in list(self._peers):
            effects.append(ClosePeer(peer))
        self._peers.clear()
        if words is not None:
            effects.append(Print(words))
        self._state, self._waiting = State.DONE, False
        self._typed.clear()
        effects.append(Exit(status))
        return effects


HELP = "Commands:\n" + "\n".join(f"  {c.usage:<26}{c.does}" for c in COMMANDS.values())
