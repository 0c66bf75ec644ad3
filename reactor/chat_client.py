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
"""
from __future__ import annotations

import ipaddress
import logging
import math
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from .text import CONTROL, visible
from .timer_effects import CancelTimer, SetTimer

__all__ = ["Print", "Prompt", "ToServer", "ToPeer", "ConnectPeer", "ClosePeer", "Listen", "SetTimer",
           "CancelTimer", "Exit", "ChatClient", "HELP"]

log = logging.getLogger("chat.client")

PROTOCOL_VERSION = 2   # 2: a presence frame may list several users
SERVER_VERSIONS = (1, 2)   # a server answering 1 speaks the same but for one user a presence frame
MAX_TEXT = 4096      # characters in one message, as the server enforces
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
    frame: dict


@dataclass(frozen=True, slots=True)
class ToPeer:
    peer: int
    frame: dict


@dataclass(frozen=True, slots=True)
class ConnectPeer:
    """Connect to ``user``'s client at ``host:port``; the host answers peer_connected or peer_failed."""
    user: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ClosePeer:
    peer: int


@dataclass(frozen=True, slots=True)
class Listen:
    """Start accepting peers on the address used to reach the server; the host answers ``listening``."""


@dataclass(frozen=True, slots=True)
class Exit:
    status: int


COMMANDS = {   # name: (usage, what it does)
    "message": ("message <user> <text>", "send <text> to <user> (kept until they log in)"),
    "broadcast": ("broadcast <text>", "send <text> to everyone online"),
    "whoelse": ("whoelse", "who else is online"),
    "whoelsesince": ("whoelsesince <seconds>", "who else was online in the last <seconds>"),
    "block": ("block <user>", "stop <user> reaching you"),
    "unblock": ("unblock <user>", "let <user> reach you again"),
    "startprivate": ("startprivate <user>", "ask <user> for a peer-to-peer chat"),
    "private": ("private <user> <text>", "send <text> straight to <user>'s client"),
    "stopprivate": ("stopprivate <user>", "end the peer-to-peer chat with <user>"),
    "logout": ("logout", "log out and exit"),
    "help": ("help [<command>]", "this list, or how to use one command"),
}
HELP = "Commands:\n" + "\n".join(f"  {usage:<26}{what}" for usage, what in COMMANDS.values())
USAGE = {name: usage for name, (usage, _) in COMMANDS.items()}
HINT = "Type help for commands"
USER_FIRST = frozenset({"message", "block", "unblock", "startprivate"})  # the first word is an online user
CHAT_FIRST = frozenset({"private", "stopprivate"})                       # ... a user with an open chat

# What the server's error codes mean, in README.md's words; {user}, {max}, {detail}, {version}, {retry}
# are the frame's fields.
ERRORS = {
    "bad_frame": "Error. Bad request: {detail}",
    "control_characters": "Error. A message cannot contain control characters",
    "not_logged_in": "Error. Not logged in",
    "invalid_user": "Error. Invalid user",
    "blocked_by_recipient": "Your message could not be delivered as the recipient has blocked you",
    "already_blocked": "Error. {user} is already blocked",
    "not_blocked": "Error. {user} was not blocked",
    "text_too_long": "Error. Message too long (at most {max} characters)",
    "queue_full": "Error. {user} has too many messages waiting; yours was not kept",
    "quota_exceeded": "Error. Too many of your messages wait for offline users; this one was not kept",
    "rate_limited": "Error. You are sending too fast; try again in {retry} s",
    "bad_argument": "Error. {detail}",
    "offline": "Error. {user} is offline",
    "private_blocked": "Error. Cannot start private messaging with {user}: you are blocked",
    "private_pending": "Error. A private messaging request with {user} is already open",
    "private_unavailable": "Error. {user} cannot accept private messaging right now",
    "private_declined": "Error. {user} declined private messaging",
    "no_request": "Error. No private messaging request from {user}",
}
STORE_FULL = {   # the server had no room to keep it, by command
    "message": "Error. The server cannot keep messages right now; {user} did not get yours",
    "block": "Error. The server cannot keep blocks right now; {user} is not blocked",
    "unblock": "Error. The server cannot keep blocks right now; {user} is still blocked",
}
SELF_ERRORS = {
    "message": "Error. Cannot message yourself",
    "block": "Error. Cannot block yourself",
    "startprivate": "Error. Cannot start private messaging with yourself",
}
# Errors that end the client, with its exit status.
FATAL = {
    "version": "Error. Server speaks protocol version {version}",
    "account_blocked": "Invalid Password. Your account has been blocked. Please try again later",
    "account_locked": "Your account is blocked due to multiple login failures. Please try again later",
    "login_timeout": "Error. Login timed out",
    "busy": "Error. Server busy, try again later",
    "tls_required": "Error. This server requires TLS; connect with --tls (and --ca FILE for a private CA)",
}
# How many words each command takes after its name.
ARITY = {"message": 2, "broadcast": 1, "whoelse": 0, "whoelsesince": 1, "block": 1, "unblock": 1,
         "logout": 0, "startprivate": 1, "private": 2, "stopprivate": 1, "help": 0}
OPTIONAL = {"help": 1}   # how many more words a command may take
TEXT_LAST = frozenset({"message", "broadcast", "private"})   # the last word is text: it keeps its spaces

# Errors that answer a startprivate and so end the request (private_pending does not: one is open).
ENDS_REQUEST = frozenset({"offline", "private_blocked", "private_unavailable", "private_declined"})

_CONNECTING, _USERNAME, _PASSWORD, _ACTIVE, _LEAVING, _DONE = range(6)


class _Fields(dict):
    """Format fields that show a missing one as '?' rather than fail."""

    def __missing__(self, key: str) -> str:
        return "?"


def _words(template: str, frame: dict) -> str:
    return template.format_map(_Fields({k: v for k, v in frame.items() if isinstance(v, (str, int, float))}))


def _shown_fields(frame: dict) -> dict:
    """``frame`` with the control characters made visible in its strings, and in the strings of its
    lists: all a handler shows (anything deeper is shown only as a ``repr``, which escapes them)."""
    return {key: visible(value) if type(value) is str
            else [visible(v) if type(v) is str else v for v in value] if type(value) is list
            else value
            for key, value in frame.items()}


def _peer_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None if it is not one."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _Peer:
    """One peer connection; ``user`` is set once the other side is known (and ``open`` once both agreed)."""

    __slots__ = ("id", "user", "token", "open")

    def __init__(self, peer: int, user: str | None = None, token: str | None = None) -> None:
        self.id = peer
        self.user = user
        self.token = token   # the token we presented (connecting side)
        self.open = False


class ChatClient:
    """Every client-side rule of the chat; one method per event, each returning effects in order."""

    def __init__(self, *, token_ttl: float = 30.0, peer_hello_timeout: float = 10.0, timestamps: bool = False,
                 wall_offset: float | None = None, tz: tzinfo | None = None) -> None:
        """``timestamps``: live messages show the time they came (it takes ``wall_offset``);
        stored messages always show when they were sent."""
        self._token_ttl = token_ttl
        self._peer_hello_timeout = peer_hello_timeout
        self._live_stamps = timestamps and wall_offset is not None
        self._wall_offset = wall_offset or 0.0
        self._tz = tz
        self._state = _CONNECTING
        self._waiting = True                       # a login step, or a pong, awaits the server's answer
        self._typed: deque[str] = deque()          # lines typed while waiting
        self._input_ended = False                  # standard input is done (acted on once _typed is)
        self._user: str | None = None
        self._claimed: str | None = None           # the name sent, awaiting its password
        self._shown: set[int] = set()              # ids of stored messages already shown
        self._unacked: list[int] = []
        self._questions: deque[str] = deque()      # users asking us for a private chat, oldest first
        self._expected: dict[str, str] = {}        # requester -> the token its client will present
        self._connecting: dict[str, str] = {}      # target -> token, while we connect to it
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
        if self._state != _ACTIVE:
            return []
        if len(words) == 1 or (len(words) == 2 and words[0] == "help"):
            choices: Any = ARITY
        elif len(words) == 2 and words[0] in USER_FIRST:
            choices = self._online
        elif len(words) == 2 and words[0] in CHAT_FIRST:
            choices = self._chats
        else:
            return []
        return sorted(choice for choice in choices if choice.startswith(word))

    # -- events from the host ------------------------------------------------

    def start(self, now: float, server: tuple[str, int] | None = None) -> list:
        """Connected to the server, at ``server`` (its IP address and port, if known): say hello."""
        if server is not None:
            ip = _peer_ip(server[0])
            self._server = None if ip is None else (ip, server[1])
        return [ToServer({"type": "hello", "version": PROTOCOL_VERSION}), Listen()]

    def line(self, text: str, now: float) -> list:
        """The user typed a line."""
        if self._state == _DONE or self._state == _LEAVING:
            return []
        if self._waiting:
            self._typed.append(text)
            return [Prompt("", secret=True)] if self._state in (_CONNECTING, _USERNAME, _PASSWORD) else []
        return self._take(text, now)

    def end_of_input(self, now: float) -> list:
        """Standard input ended (Ctrl-D, a closed pipe): log out and exit 0, once the lines
        typed before it have had their turn (a script may pipe a whole session and close)."""
        self._input_ended = True
        return self._drain(now)

    def interrupt(self, now: float) -> list:
        """A signal asked the client to stop: as the end of input."""
        return self._leave(now)

    def listening(self, host: str, port: int, now: float) -> list:
        """The peer listener is bound: tell the server where (it takes this before the login, too)."""
        if self._state == _DONE:
            return []
        return [ToServer({"type": "listen", "host": host, "port": port})]

    def server_frame(self, frame: Any, now: float) -> list:
        """One decoded frame from the server."""
        if self._state == _DONE:
            return []
        kind = frame.get("type") if type(frame) is dict else None
        if type(kind) is not str:
            return self.server_bad_frame("a frame without a type", now)
        frame = _shown_fields(frame)
        if kind == "error":
            effects = self._error(frame, now)
        else:
            handler = self._frames.get(kind)
            if handler is None:
                log.debug("ignoring a %.40r frame from the server", kind)
                return []
            effects = handler(self, frame, now)
        if not self._waiting and self._state != _DONE:
            effects += self._drain(now)
        return effects

    def server_bad_frame(self, detail: str, now: float) -> list:
        """The server sent something that is not a frame."""
        return [] if self._state == _DONE else [Print(f"Error. Bad frame from server: {detail}")]

    def server_lost(self, now: float) -> list:
        """The server connection closed without a goodbye."""
        if self._state == _DONE:
            return []
        return self._finish("Error. Connection to server lost", 1)

    def timer_fired(self, key: Any, now: float) -> list:
        if self._state == _DONE:
            return []
        kind = key[0]
        if kind == "ack":
            return self._acknowledge()
        if kind == "expect":           # the requester never came: its token is no longer good
            self._expected.pop(key[1], None)
            return []
        if kind == "peer":             # a peer connection that never finished its hello
            peer = self._peers.get(key[1])
            if peer is None or peer.open:
                return []
            return self._drop_peer(peer, "did not answer")
        if kind == "leave":            # the server never said goodbye
            return self._finish("Logged out", 0)
        return []

    # -- peers ------------------------------------------------------------

    def peer_accepted(self, peer: int, now: float) -> list:
        """Someone connected to our peer listener: they must present a token in time."""
        self._peers[peer] = _Peer(peer)
        return [SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def peer_connected(self, peer: int, user: str, now: float) -> list:
        """Our connection to ``user``'s client is up: present the token."""
        token = self._connecting.pop(user, None)
        if token is None or self._state != _ACTIVE:
            return [ClosePeer(peer)]
        self._peers[peer] = _Peer(peer, user, token)
        return [ToPeer(peer, {"type": "peer_hello", "user": self._user, "token": token}),
                SetTimer(("peer", peer), now + self._peer_hello_timeout)]

    def peer_failed(self, user: str, reason: str, now: float) -> list:
        """We could not connect to ``user``'s client."""
        if self._connecting.pop(user, None) is None:
            return []
        return [Print(f"Error. Cannot reach {user} for private messaging: {reason}")]

    def peer_frame(self, peer: int, frame: Any, now: float) -> list:
        p = self._peers.get(peer)
        if p is None:
            return []
        frame = _shown_fields(frame) if type(frame) is dict else {}
        kind = frame.get("type")
        if p.open:
            text = frame.get("text") if kind == "private" else None
            if type(text) is not str:
                return []
            return [Print(f"{self._live_stamp(now)}{p.user}(private): {text}")]
        if p.user is None and kind == "peer_hello":
            return self._peer_hello(p, frame)
        if p.token is not None and kind == "peer_welcome" and frame.get("user") == p.user:
            return self._open_chat(p)
        return self._drop_peer(p, "broke the handshake")

    def peer_bad_frame(self, peer: int, detail: str, now: float) -> list:
        p = self._peers.get(peer)
        return [] if p is None else self._drop_peer(p, f"sent a bad frame ({detail})")

    def peer_closed(self, peer: int, now: float) -> list:
        """A peer connection closed from the other side (or broke)."""
        p = self._peers.pop(peer, None)
        if p is None:
            return []
        effects: list = [CancelTimer(("peer", peer))]
        if p.open:
            del self._chats[p.user]
            effects.append(Print(f"Private messaging with {p.user} stopped"))
        elif p.token is not None:
            effects.append(Print(f"Error. {p.user} did not accept the private connection"))
        return effects

    def _peer_hello(self, p: _Peer, frame: dict) -> list:
        user, token = frame.get("user"), frame.get("token")
        expected = self._expected.get(user) if type(user) is str else None
        if (expected is None or type(token) is not str or user in self._chats
                or not secrets.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode())):
            log.info("peer %d: no valid token, dropped", p.id)
            del self._peers[p.id]
            return [CancelTimer(("peer", p.id)), ClosePeer(p.id)]
        del self._expected[user]
        p.user = user
        return [CancelTimer(("expect", user)), ToPeer(p.id, {"type": "peer_welcome", "user": self._user}),
                *self._open_chat(p)]

    def _open_chat(self, p: _Peer) -> list:
        p.open = True
        self._chats[p.user] = p
        return [CancelTimer(("peer", p.id)), Print(f"Start private messaging with {p.user}")]

    def _drop_peer(self, p: _Peer, why: str) -> list:
        """Close a peer connection ourselves, saying what ended (the host will not report it)."""
        log.info("peer %d (%s) %s: closing", p.id, p.user, why)
        self._peers.pop(p.id, None)
        effects: list = [ClosePeer(p.id), CancelTimer(("peer", p.id))]
        if p.open:
            del self._chats[p.user]
            effects.append(Print(f"Private messaging with {p.user} stopped"))
        elif p.token is not None:
            effects.append(Print(f"Error. Private messaging with {p.user} could not start: the peer {why}"))
        return effects

    def _stop_chat(self, user: str) -> list:
        p = self._chats.pop(user)
        del self._peers[p.id]
        return [ClosePeer(p.id), Print(f"Private messaging with {user} stopped")]

    # -- login ------------------------------------------------------------

    def _take(self, text: str, now: float) -> list:
        """Act on one typed line in the current state."""
        if self._state == _USERNAME:
            name = text.strip()
            if not name:
                return [Prompt("Username: ")]
            self._claimed, self._waiting = name, True
            return [ToServer({"type": "username", "username": name}), Prompt("", secret=True)]
        if self._state == _PASSWORD:
            self._waiting = True
            return [ToServer({"type": "password", "password": text.strip()}), Prompt("", secret=True)]
        return self._command(text, now)

    def _drain(self, now: float) -> list:
        """Run lines typed ahead, until one needs the server's answer first; then the end of input."""
        effects: list = []
        while self._typed and not self._waiting and self._state not in (_DONE, _LEAVING):
            effects += self._take(self._typed.popleft(), now)
        if self._input_ended and not self._typed and (not self._waiting or self._state == _CONNECTING):
            effects += self._leave(now)   # (an answer to what was typed is worth waiting for; hello is not)
        return effects

    def _ask(self, state: int, text: str, secret: bool = False) -> list:
        self._state, self._waiting = state, False
        return [Prompt(text, secret)]

    def _on_hello(self, frame: dict, now: float) -> list:
        version = frame.get("version")
        if type(version) is not int or version not in SERVER_VERSIONS:
            return self._finish(_words(FATAL["version"], frame), 1)
        return self._ask(_USERNAME, "Username: ")

    def _on_username_ok(self, frame: dict, now: float) -> list:
        return self._ask(_PASSWORD, "Password: ", secret=True)

    def _on_welcome(self, frame: dict, now: float) -> list:
        """Logged in. Typed lines wait for the pong: the stored messages come first, and are shown
        (and so acknowledged) before a typed ``logout`` can end the session."""
        self._user, self._claimed = self._claimed, None
        if type(frame.get("user")) is str:
            self._user = frame["user"]
        self._state, self._waiting = _ACTIVE, True
        # The command prompt first: a terminal whose output is piped echoes again before the welcome shows.
        return [Prompt("", remember=True), Print("Welcome to the greatest messaging application ever!"), Print(HINT),
                ToServer(PING)]

    def _on_pong(self, frame: dict, now: float) -> list:
        """Every answer to what was sent before the ping is in: the next typed line may go."""
        if self._state == _ACTIVE:
            self._waiting = False
        return []

    def _login_error(self, code: str, frame: dict) -> list | None:
        if code == "invalid_username":
            return [Print("Invalid Username. Please try again"), *self._ask(_USERNAME, "Username: ")]
        if code == "already_logged_in":
            return [Print(_words("Error. {user} is already logged in", frame)), *self._ask(_USERNAME, "Username: ")]
        if code == "invalid_password":
            return [Print("Invalid Password. Please try again"), *self._ask(_PASSWORD, "Password: ", secret=True)]
        return None

    # -- what the server says ------------------------------------------------

    def _error(self, frame: dict, now: float) -> list:
        code = frame.get("code")
        code = code if type(code) is str else "?"
        if code in FATAL:
            return self._finish(_words(FATAL[code], frame), 1)
        if code in ENDS_REQUEST and type(frame.get("user")) is str:
            self._requested.discard(frame["user"])
        if self._state in (_USERNAME, _PASSWORD):
            effects = self._login_error(code, frame)
            if effects is not None:
                return effects
        if code == "self":
            return [Print(SELF_ERRORS.get(frame.get("command"), "Error. Not with yourself"))]
        if code == "store_full":
            return [Print(_words(STORE_FULL.get(frame.get("command"), STORE_FULL["message"]), frame))]
        return [Print(_words(ERRORS.get(code, "Error. " + code), frame))]

    def _on_message(self, frame: dict, now: float) -> list:
        sender, text = frame.get("from"), frame.get("text")
        if type(sender) is not str or type(text) is not str:
            return []
        effects: list = []
        mid = frame.get("id")
        if type(mid) is int:           # a stored message: acknowledge it, show it once
            if self._state != _ACTIVE:
                return []              # logout is sent: no ack could precede it, so it waits for the next login
            if not self._unacked:
                effects.append(SetTimer(("ack",), now))   # one ack for the whole burst
            self._unacked.append(mid)
            if mid in self._shown:
                return effects
            self._shown.add(mid)
        stamp = self._sent_stamp(frame.get("sent")) if type(mid) is int else self._live_stamp(now)
        marker = "[broadcast] " if frame.get("broadcast") is True else ""
        effects.append(Print(f"{stamp}{marker}{sender}: {text}"))
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

    def _on_users(self, frame: dict, now: float) -> list:
        names = frame.get("names")
        if type(names) is not list:
            return []
        names = [n for n in names if type(n) is str]
        if self._asked and self._asked.popleft():   # the answer to whoelse: exactly who is online
            self._online = set(names)
        return [Print("\n".join(names) if names else "No other users online")]

    def _on_presence(self, frame: dict, now: float) -> list:
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
        went = "in" if online else "out"
        return [Print("\n".join(f"{user} logged {went}" for user in users))]

    def _on_blocked(self, frame: dict, now: float) -> list:
        """A block ends any private chat with that user, open or still being set up."""
        user = frame.get("user")
        if type(user) is not str:
            return []
        effects: list = [Print(f"{user} is blocked")]
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

    def _on_private_request(self, frame: dict, now: float) -> list:
        sender = frame.get("from")
        if type(sender) is not str:
            return []
        if sender not in self._questions:
            self._questions.append(sender)
        return [Print(f"{sender} would like to start private messaging. Accept? (y/n)")]

    def _on_private_expect(self, frame: dict, now: float) -> list:
        user, token = frame.get("user"), frame.get("token")
        if type(user) is not str or type(token) is not str:
            return []
        self._expected[user] = token
        return [SetTimer(("expect", user), now + self._token_ttl),
                ToServer({"type": "private_ready", "user": user, "token": token})]

    def _on_private_connect(self, frame: dict, now: float) -> list:
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
        self._connecting[user] = token
        return [ConnectPeer(user, str(ip), port)]

    def _is_server(self, ip: Any, port: int) -> bool:
        """Whether ``ip:port`` is the server's own address (a loopback one: any loopback address
        with its port, as all of them reach a server bound on every address)."""
        if self._server is None:
            return False
        server_ip, server_port = self._server
        return port == server_port and (ip == server_ip or ip.is_loopback and server_ip.is_loopback)

    def _on_private_cancelled(self, frame: dict, now: float) -> list:
        user = frame.get("user")
        if type(user) is not str:
            return []
        self._requested.discard(user)
        if user in self._questions:
            self._questions.remove(user)
        effects: list = []
        if self._expected.pop(user, None) is not None:
            effects.append(CancelTimer(("expect", user)))
        effects.append(Print(f"Private messaging request with {user} was cancelled"))
        return effects

    def _on_bye(self, frame: dict, now: float) -> list:
        reason = frame.get("reason")
        if reason == "timeout":
            return self._finish("You have been logged out due to inactivity", 0)
        if reason == "shutdown":
            return self._finish("Error. Server is shutting down", 1)
        if reason == "account_removed":
            return self._finish("Error. Your account was removed", 1)
        return self._finish("Logged out", 0)

    _frames = {
        "hello": _on_hello,
        "username_ok": _on_username_ok,
        "welcome": _on_welcome,
        "message": _on_message,
        "stored": lambda self, f, now: [Print(f"{f.get('to')} is offline; the message will be delivered "
                                              "when they log in")],
        "broadcast_partial": lambda self, f, now: [Print("Your message could not be delivered to some recipients")],
        "users": _on_users,
        "blocked": _on_blocked,
        "unblocked": lambda self, f, now: [Print(f"{f.get('user')} is unblocked")],
        "presence": _on_presence,
        "private_request": _on_private_request,
        "private_expect": _on_private_expect,
        "private_connect": _on_private_connect,
        "private_cancelled": _on_private_cancelled,
        "bye": _on_bye,
        "pong": _on_pong,
    }

    # -- commands -----------------------------------------------------------

    def _command(self, text: str, now: float) -> list:
        """A line typed while logged in. A command the server sees is followed by a ping, and the
        next line waits for its pong; lines the server does not see still count as activity."""
        effects = self._run(text.strip(), now)
        if self._state != _ACTIVE:
            return effects
        if any(type(e) is ToServer for e in effects):
            self._waiting = True
            effects.append(ToServer(PING))
        else:
            effects.append(ToServer({"type": "activity"}))
        return effects

    def _run(self, line: str, now: float) -> list:
        if not line:
            return []
        if self._questions and line.lower() in ("y", "n"):
            user, accept = self._questions.popleft(), line.lower() == "y"
            return [ToServer({"type": "private_answer", "user": user, "accept": accept}),
                    Print(f"{'Accepted' if accept else 'Declined'} private messaging with {user}")]
        name, _, rest = line.partition(" ")
        arity = ARITY.get(name)
        if arity is None:
            return [Print("Error. Invalid command")]
        args = rest.split(None, arity - 1) if name in TEXT_LAST else rest.split()
        if not arity <= len(args) <= arity + OPTIONAL.get(name, 0):
            return [Print(f"Error. Usage: {USAGE.get(name, name)}")]
        return getattr(self, "_do_" + name)(*args, now=now)

    def _do_message(self, user: str, text: str, now: float) -> list:
        if CONTROL.search(text):
            return [Print(ERRORS["control_characters"])]
        if len(text) > MAX_TEXT:
            return [Print(f"Error. Message too long (at most {MAX_TEXT} characters)")]
        return [ToServer({"type": "message", "to": user, "text": text})]

    def _do_broadcast(self, text: str, now: float) -> list:
        if CONTROL.search(text):
            return [Print(ERRORS["control_characters"])]
        if len(text) > MAX_TEXT:
            return [Print(f"Error. Message too long (at most {MAX_TEXT} characters)")]
        return [ToServer({"type": "broadcast", "text": text})]

    def _do_whoelse(self, now: float) -> list:
        self._asked.append(True)
        return [ToServer({"type": "whoelse"})]

    def _do_whoelsesince(self, seconds: str, now: float) -> list:
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

    def _do_block(self, user: str, now: float) -> list:
        return [ToServer({"type": "block", "user": user})]

    def _do_unblock(self, user: str, now: float) -> list:
        return [ToServer({"type": "unblock", "user": user})]

    def _do_logout(self, now: float) -> list:
        return self._leave(now)

    def _do_help(self, command: str | None = None, *, now: float) -> list:
        if command is None:
            return [Print(HELP)]
        if command not in COMMANDS:
            return [Print(f"Error. No command {command}. {HINT}")]
        usage, what = COMMANDS[command]
        return [Print(f"Usage: {usage}\n{what[0].upper()}{what[1:]}")]

    def _do_startprivate(self, user: str, now: float) -> list:
        if user in self._chats:
            return [Print(f"Error. Private messaging with {user} is already enabled")]
        if user in self._connecting:
            return [Print(f"Error. Private messaging with {user} is starting already")]
        self._requested.add(user)
        return [ToServer({"type": "startprivate", "user": user})]

    def _do_private(self, user: str, text: str, now: float) -> list:
        p = self._chats.get(user)
        if p is None:
            return [Print(f"Error. Private messaging to {user} not enabled")]
        if CONTROL.search(text):
            return [Print(ERRORS["control_characters"])]
        return [ToPeer(p.id, {"type": "private", "text": text})]

    def _do_stopprivate(self, user: str, now: float) -> list:
        if user not in self._chats:
            return [Print(f"Error. Private messaging to {user} not enabled")]
        return self._stop_chat(user)

    # -- ending -------------------------------------------------------------

    def _leave(self, now: float) -> list:
        """The user wants out: log out if logged in (exit once the server says bye), else exit now.
        Every stored message shown is acknowledged first: after the logout the server reads nothing."""
        if self._state == _ACTIVE:
            self._state = _LEAVING
            return [*self._acknowledge(), ToServer({"type": "logout"}), SetTimer(("leave",), now + LEAVE_GRACE)]
        if self._state == _LEAVING or self._state == _DONE:
            return []
        return self._finish(None, 0)

    def _acknowledge(self) -> list:
        """The ack of the stored messages shown since the last one (an ack timer still armed then finds none)."""
        ids, self._unacked = self._unacked, []
        return [ToServer({"type": "ack", "ids": ids})] if ids else []

    def _finish(self, words: str | None, status: int) -> list:
        """End every private chat, say ``words``, exit with ``status``."""
        effects: list = []
        for user in sorted(self._chats):
            effects += self._stop_chat(user)
        for peer in list(self._peers):
            effects.append(ClosePeer(peer))
        self._peers.clear()
        if words is not None:
            effects.append(Print(words))
        self._state, self._waiting = _DONE, False
        self._typed.clear()
        effects.append(Exit(status))
        return effects
