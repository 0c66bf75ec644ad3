"""The chat client's rules as a sans-I/O state machine: typed lines and frames go in, effects come out.

``ChatClient`` never touches a socket, the terminal or a clock. The host calls
one method per event with the current monotonic time ``now`` and carries out
the returned effects in order (reactor/client/effects.py). It is the one
façade over the client's parts, each owning its state: the words it shows
(``words``), the commands the user types (``commands``), the messages that
come, acknowledged and said shown (``inbox``), the messages sent and not
confirmed yet, tried again while the server cannot keep them (``outbox``), the
private-chat handshake (``private_chat``), the ``password`` dialogue
(``password_change``), the frames that list or report users and history, with
who is online (``reports``), what else is tried again by itself (``retries``: a
password the server could not check, a busy server, a script's command over
the rate limit) and the inactivity deadline with its warning (``idle``); the
session itself (the login, the order of typed lines and answers, the goodbye)
is kept here. When the session ends under the user (a timeout, a shutdown, a
lost server), what they were typing is shown so it can be copied
(``ShowDraft``).

Timers, by the first item of their key: ``ack`` (the stored messages shown) and ``shown`` (the live ones,
``inbox``), ``unread`` (a message not shown to its recipient in time, ``receipts``),
``idle`` (the inactivity warning), ``password``, ``reconnect`` and ``resend``
(``retries``), ``retry`` (a message that goes again, ``outbox``), ``expect``
and ``peer`` (private chats), ``leave`` (the server's goodbye overdue).

The host asks to ``Listen`` for peers from the start: the server learns the
address before the login completes, so no private request can overtake it.
The host does not report ``peer_closed`` for a peer the logic closed itself.

Lines typed before the server has answered wait their turn, so a script may
pipe its whole dialogue at once and read the answers in the order of its
commands: a login step waits for its answer; the welcome and every command
sent to the server are followed by a ``ping``, and the next line waits for the
``pong`` (the server answers in order, so the stored messages and every answer
to the command come before it). Stored messages shown are acknowledged before
any logout. From the moment a user name or password is sent until the server
answers it, what is typed is not echoed (it may be the password).

Each frame from the server is declared once, on the handler of the part that
takes it (``@on_frame`` with its ``FrameType``, reactor/client/frames.py: its
strings are made visible before the handler reads them); the words it shows
are its entry in ``words.FRAME_WORDS``, and each error code has one entry in
``words.ERRORS``. Wall-clock time comes only from the host (``wall_offset``,
reactor/client/inbox.py).
"""
from __future__ import annotations

import logging
from collections import deque
from datetime import tzinfo
from typing import Any

from ..protocol import PROTOCOL_VERSION, PROTOCOL_VERSIONS, ByeReason, ErrorCode, Frame, FrameType
from .commands import COMMANDS, HELP, Choices, Command, CommandLine, Param, text_limit
from .effects import (
    CancelTimer,
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
    State,
    ToPeer,
    ToServer,
)
from .frames import FRAMES, bind, on_frame, shown_fields
from .idle import IdleWatch
from .inbox import Inbox
from .outbox import Outbox, new_nonce
from .password_change import PasswordChange
from .private_chat import PrivateChats
from .receipts import Receipts
from .reports import Reports
from .retries import Retries
from .words import ERRORS, FRAME_WORDS, PASSWORD_PROMPT, QUIT_HINT, SAY, USERNAME_PROMPT, Words

__all__ = ["Print", "Prompt", "ToServer", "ToPeer", "ConnectPeer", "ClosePeer", "Listen", "Reconnect", "ShowDraft",
           "SetTimer", "CancelTimer", "Exit", "ClientEffect", "ChatClient", "State", "Command", "Param", "Choices",
           "COMMANDS", "HELP", "FRAMES", "ERRORS", "LEAVE_GRACE"]

log = logging.getLogger(__name__)

LEAVE_GRACE = 3.0    # seconds to wait for the server's goodbye after asking to log out
PING = {"type": FrameType.PING}
ACTIVITY = {"type": FrameType.ACTIVITY}
LOGIN_STEPS = (State.USERNAME, State.PASSWORD)
NOT_ACTIVITY = frozenset({FrameType.PING, FrameType.SHOWN})   # frames the server does not count as the user's doing
PROMPTS = {State.USERNAME: Prompt(USERNAME_PROMPT), State.PASSWORD: Prompt(PASSWORD_PROMPT, secret=True)}
BYE_REASONS = frozenset(ByeReason)
BYE_IN_ERROR = frozenset({ByeReason.SHUTDOWN, ByeReason.ACCOUNT_REMOVED, ByeReason.CUT_OFF,
                          ByeReason.OPERATOR})   # the client exits with status 1


class ChatClient:
    """Every client-side rule of the chat; one method per event, each returning effects in order."""

    def __init__(self, *, token_ttl: float = 30.0, peer_hello_timeout: float = 10.0, timestamps: bool = False,
                 wall_offset: float | None = None, tz: tzinfo | None = None,
                 certificate: bytes | None = None, scripted: bool = False,
                 no_private_chats: str | None = None, nonce: str | None = None,
                 receipts: str | None = None) -> None:
        """``timestamps``: live messages show the time they came (it takes ``wall_offset``);
        stored messages always show when they were sent. ``certificate``: TLS mode, private chats
        end to end encrypted (reactor/client/private_chat.py); ``no_private_chats``: why there are none (TLS
        mode that cannot make its certificate: no listening for peers). ``scripted``: the input is a script,
        not a person at a terminal (reactor/client/retries.py). ``nonce``: the first part of each message's
        ref (by default a random one, ``new_nonce``). ``receipts`` (reactor/client/receipts.py): ``"quiet"``, the
        client says which live messages it showed, and shows a line only for a message of the user's not shown
        in time; ``"every"``, every receipt too (``--receipts``); None, neither (a client as before receipts)."""
        self._private = PrivateChats(token_ttl=token_ttl, peer_hello_timeout=peer_hello_timeout,
                                     certificate=certificate, unavailable=no_private_chats)
        self._receipts = Receipts(every=receipts == "every") if receipts is not None else None
        self._outbox = Outbox(nonce if nonce is not None else new_nonce(), self._receipts)
        self._password = PasswordChange()
        self._inbox = Inbox(active=lambda: self._state == State.ACTIVE, receipts=self._receipts is not None,
                            live_stamps=timestamps and wall_offset is not None, wall_offset=wall_offset or 0.0, tz=tz)
        self._reports = Reports(self._inbox.sent_stamp)
        self._command_line = CommandLine(self._private, leave=self._leave, outbox=self._outbox,
                                         reports=self._reports, change_password=self._password.begin)
        self._state = State.CONNECTING
        self._waiting = True                       # a login step, or a pong, awaits the server's answer
        self._typed: deque[str] = deque()          # lines typed while waiting
        self._input_ended = False                  # standard input is done (acted on once _typed is)
        self._user: str | None = None
        self._claimed: str | None = None           # the name sent, awaiting its password
        self._retries = Retries(scripted)
        self._idle = IdleWatch()
        self._frames = bind(self, self._inbox, self._reports, self._private)   # frame type -> its rule
        assert self._frames.keys() == FRAMES.keys(), "each frame declared is taken by a part"

    @property
    def user(self) -> str | None:
        """The user logged in, or None."""
        return self._user

    @property
    def typed_ahead(self) -> int:
        """Lines typed that wait for the server's answer before they are taken."""
        return len(self._typed)

    def _done(self) -> bool:
        """The client has exited: events change nothing any more."""
        return self._state is State.DONE

    def expected_certificates(self) -> list[bytes]:
        """The certificates (DER) of the clients we expect on our peer listener: in TLS mode the host
        trusts these, and only these, on a connection it accepts (none: it closes it at once)."""
        return self._private.expected_certificates()

    def chats(self) -> list[str]:
        """The users with an open private chat, sorted."""
        return self._private.chats()

    def online_users(self) -> frozenset[str]:
        """The other users online, as far as the login, presence notices and ``whoelse`` have told."""
        return self._reports.online_users()

    def completions(self, before_cursor: str) -> list[str]:
        """Whole words that can replace the blank-separated word before the cursor: a command
        as the first word (or after ``help``), a user as the first word after a command."""
        if self._state != State.ACTIVE:
            return []
        return self._command_line.completions(before_cursor)

    def text_limit(self, line: str) -> int | None:
        """Where the command ``line`` being typed passes what can be sent (an offset into it), or None:
        the line editor shows the excess (``open_console(limit=...)``)."""
        return text_limit(line) if self._state == State.ACTIVE else None

    # -- events from the host ------------------------------------------------

    def start(self, now: float, server: tuple[str, int] | None = None) -> list[ClientEffect]:
        """Connected to the server, at ``server`` (its IP address and port, if known): say hello."""
        if server is not None:
            self._private.server_at(*server)
        self._retries.reconnecting = False
        hello = ToServer({"type": FrameType.HELLO, "version": PROTOCOL_VERSION})
        if self._receipts is not None:   # it says which live messages it shows
            hello.frame["receipts"] = True
        return [hello] if self._private.unavailable is not None else [hello, Listen()]

    def line(self, text: str, now: float) -> list[ClientEffect]:
        """The user typed a line."""
        if self._state in (State.DONE, State.LEAVING):
            return []
        if self._waiting:
            self._typed.append(text)
            hide = (self._state in (State.CONNECTING, *LOGIN_STEPS) or self._password.asking   # (a password, or
                    or text.strip() == "password")                                            # one next)
            return [Prompt("", secret=True)] if hide else []
        return self._noted(self._take(text, now), now)

    def end_of_input(self, now: float) -> list[ClientEffect]:
        """Standard input ended (Ctrl-D, a closed pipe): log out and exit 0, once the lines
        typed before it have had their turn (a script may pipe a whole session and close)."""
        self._input_ended = True
        return self._noted(self._drain(now), now)

    def interrupt(self, now: float) -> list[ClientEffect]:
        """A signal asked the client to stop: as the end of input."""
        return self._leave(now)

    def ctrl_c(self, was_empty: bool, now: float) -> list[ClientEffect]:
        """Ctrl-C in the line editor (it cleared the line): before the login it ends the client, as a
        signal does (at a prompt a typed ``logout`` would be a user name or a password); once logged in, on
        an empty line, it says how to quit."""
        if self._state in (State.CONNECTING, *LOGIN_STEPS):
            return self._leave(now)
        if self._state == State.ACTIVE and self._password.asking:
            return self._password.cancel()
        return [Print(QUIT_HINT)] if was_empty and self._state == State.ACTIVE else []

    def listening(self, host: str, port: int, now: float) -> list[ClientEffect]:
        """The peer listener is bound: tell the server where (it takes this before the login, too)."""
        if self._done():
            return []
        return [ToServer(self._private.listen_frame(host, port))]

    def server_frame(self, frame: Any, now: float) -> list[ClientEffect]:
        """One decoded frame from the server."""
        if self._done():
            return []
        kind = frame.get("type") if type(frame) is dict else None
        if type(kind) is not str:
            return self.server_bad_frame("a frame without a type", now)
        rule = self._frames.get(kind)
        if rule is None:
            log.debug("ignoring a %.40r frame from the server", kind)
            return []
        effects = rule.handler(shown_fields(frame, rule.lines), now, rule.words)
        if not self._waiting and not self._done():
            effects += self._drain(now)
        return self._noted(effects, now)

    def server_bad_frame(self, detail: str, now: float) -> list[ClientEffect]:
        """The server sent something that is not a frame."""
        return [] if self._done() else [Print(SAY("bad_frame", {"detail": detail}))]

    def server_lost(self, now: float) -> list[ClientEffect]:
        """The server connection closed without a goodbye (not lost when it was too busy: a new one comes)."""
        if self._done() or self._retries.reconnecting:
            return []
        return self._finish(SAY("server_lost"), 1, draft=self._state == State.ACTIVE)

    def timer_fired(self, key: Any, now: float) -> list[ClientEffect]:
        if self._done():
            return []
        return self._noted(self._timer_fired(key[0], key, now), now)

    def _timer_fired(self, kind: str, key: Any, now: float) -> list[ClientEffect]:
        if kind == "ack" or kind == "shown":
            return self._inbox.acknowledge()
        if kind == "unread":           # a message not shown in time (reactor/client/receipts.py)
            return self._receipts.due(key[1]) if self._state == State.ACTIVE and self._receipts is not None else []
        if kind == "idle":             # the warning before the inactivity logout (reactor/client/idle.py)
            return self._idle.due(now) if self._state == State.ACTIVE else []
        if kind == "password":         # the password the server could not check goes again
            return self._retries.password_due() if self._state == State.PASSWORD and self._waiting else []
        if kind == "reconnect":        # the server was too busy: try again
            return [Reconnect()] if self._state == State.CONNECTING else []
        if kind == "resend":           # a script's command refused for the rate limit goes again (a message
            if self._state != State.ACTIVE:   # with its ref: the outbox awaits its new answer)
                return []
            resent = self._retries.resend_due()
            for effect in resent:
                if type(effect) is ToServer:
                    self._outbox.sending(effect.frame)
            return [*resent, ToServer(PING)]
        if kind == "retry":            # a message the server could not keep goes again (reactor/client/outbox.py)
            effects = self._outbox.retry(key[1], now) if self._state == State.ACTIVE else None
            if effects is None:
                return []
            sent = [e.frame for e in effects if type(e) is ToServer]
            if sent:   # (refused for the rate limit, a script sends it again as it is)
                self._retries.command_sent(sent[-1])
                return [*effects, ToServer(PING)]
            self._waiting = self._lines_wait()   # taken meanwhile: the typed lines go, unless another waits
            return effects if self._waiting else effects + self._drain(now)
        if kind == "expect":           # the requester never came: its token is no longer good
            self._private.ticket_expired(key[1])
            return []
        if kind == "peer":             # a peer connection that never finished its hello
            return self._private.hello_overdue(key[1])
        if kind == "leave":            # the server never said goodbye
            return self._finish(FRAME_WORDS[FrameType.BYE](ByeReason.LOGOUT), 0)
        return []

    # -- peers (reactor/client/private_chat.py) ---------------------------------

    def peer_accepted(self, peer: int, now: float, certificate: bytes | None = None) -> list[ClientEffect]:
        """Someone connected to our peer listener (in TLS mode: the handshake is done, and ``certificate``
        is the one it presented): they must present a token in time."""
        return self._private.accepted(peer, now, certificate)

    def peer_refused(self, reason: str, now: float) -> list[ClientEffect]:
        """A connection to our peer listener failed its TLS handshake (say, a certificate other than
        the ones we expect) while we expected someone: nobody knows who it was."""
        return [] if self._done() else self._private.refused(reason)

    def peer_connected(self, peer: int, user: str, now: float,
                       certificate: bytes | None = None) -> list[ClientEffect]:
        """Our connection to ``user``'s client is up (in TLS mode: the handshake is done, and ``certificate``
        is the one it presented): present the token, if it is their certificate."""
        return self._private.connected(peer, user, now, certificate, self._user, self._state == State.ACTIVE)

    def peer_failed(self, user: str, reason: str, now: float) -> list[ClientEffect]:
        """We could not connect to ``user``'s client."""
        return self._private.failed(user, reason)

    def peer_frame(self, peer: int, frame: Any, now: float) -> list[ClientEffect]:
        if type(frame) is not dict:
            frame = {}
        frame = shown_fields(frame, "text" if frame.get("type") == FrameType.PRIVATE else None)
        return self._private.frame(peer, frame, self._user, self._inbox.live_stamp(now))

    def peer_bad_frame(self, peer: int, detail: str, now: float) -> list[ClientEffect]:
        return self._private.bad_frame(peer, detail)

    def peer_closed(self, peer: int, now: float) -> list[ClientEffect]:
        """A peer connection closed from the other side (or broke)."""
        return self._private.closed(peer)

    # -- login ------------------------------------------------------------

    def _take(self, text: str, now: float) -> list[ClientEffect]:
        """Act on one typed line in the current state."""
        if self._state == State.USERNAME:
            name = text.strip()
            if not name:
                return [PROMPTS[State.USERNAME]]
            self._claimed, self._waiting = name, True
            return [ToServer({"type": FrameType.USERNAME, "username": name}), Prompt("", secret=True)]
        if self._state == State.PASSWORD:
            self._waiting = True
            self._retries.password_sent(text.strip())
            return [ToServer({"type": FrameType.PASSWORD, "password": text.strip()}), Prompt("", secret=True)]
        if self._password.asking:   # one of the password command's passwords
            effects = self._password.take(text.strip())
            self._waiting = self._password.awaiting   # (its answer, not a pong, lets the next line go)
            return effects if self._waiting else [*effects, ToServer(ACTIVITY)]
        return self._command(text, now)

    def _noted(self, effects: list[ClientEffect], now: float) -> list[ClientEffect]:
        """``effects``, and the inactivity warning's timer if they send the server the user's activity (any
        frame but ``ping`` and ``shown``, as the server counts it)."""
        if self._state == State.ACTIVE and any(type(e) is ToServer and e.frame.get("type") not in NOT_ACTIVITY
                                               for e in effects):
            effects += self._idle.sent(now)
        return effects

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
        self._retries.password_answered()
        return [PROMPTS[step]]

    def _command(self, text: str, now: float) -> list[ClientEffect]:
        """A line typed while logged in (reactor/client/commands.py). A command the server sees is followed
        by a ping, and the next line waits for its pong; lines the server does not see still count as activity."""
        effects = self._command_line.run(text.strip(), now)
        if self._state != State.ACTIVE:
            return effects
        sent = [e.frame for e in effects if type(e) is ToServer]
        if sent:
            self._waiting = True
            self._retries.command_sent(sent[-1])
            effects.append(ToServer(PING))
        else:
            effects.append(ToServer(ACTIVITY))
        return effects

    # -- what the server says ------------------------------------------------

    @on_frame(FrameType.HELLO)
    def _on_hello(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        version = frame.get("version")
        if type(version) is not int or version not in PROTOCOL_VERSIONS:   # 1: one user a presence frame
            return self._finish(ERRORS[ErrorCode.VERSION].shown(frame), 1)
        self._idle.told(frame.get("timeout"))
        return self._ask(State.USERNAME)

    @on_frame(FrameType.USERNAME_OK)
    def _on_username_ok(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return self._ask(State.PASSWORD)

    @on_frame(FrameType.WELCOME)
    def _on_welcome(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Logged in. Typed lines wait for the pong: the stored messages come first, and are shown
        (and so acknowledged) before a typed ``logout`` can end the session."""
        self._user, self._claimed = self._claimed, None
        if type(frame.get("user")) is str:
            self._user = frame["user"]
        self._state, self._waiting = State.ACTIVE, True
        self._retries.password_answered()
        # The command prompt first: a terminal whose output is piped echoes again before the welcome shows.
        return [Prompt("", remember=True), Print(say("welcome")), Print(say("hint")), ToServer(PING),
                *self._idle.sent(now)]   # (the login began the inactivity count)

    @on_frame(FrameType.PONG)
    def _on_pong(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Every answer to what was sent before the ping is in: the next typed line may go, unless the command
        goes again, refused for the rate limit (then after its own pong), or a message the server could not keep
        goes again first (``outbox``)."""
        if not self._retries.pong_answers() or self._state != State.ACTIVE:
            return []
        effects = self._outbox.answered(now)
        self._waiting = self._lines_wait()
        return effects

    def _lines_wait(self) -> bool:
        """Once no pong is awaited: whether the typed lines still wait, for a message that goes again (``outbox``)
        or for the answer to the password change sent (``password_change``: it has no ping)."""
        return self._outbox.retrying() or self._password.awaiting

    def _password_answered(self, code: str | None, now: float) -> list[ClientEffect]:
        """A ``password_changed`` (``code`` None) or an error with ``code`` came: if it answers the password change
        sent, the typed lines go, unless a message goes again; its timer is set now (a ``store_full`` that came late
        meanwhile waited for this answer, as it waits for a pong: the client never has two pings out)."""
        if not self._password.answered(code):
            return []
        effects = self._outbox.arm(now)
        self._waiting = self._outbox.retrying()
        return effects

    @on_frame(FrameType.ERROR)
    def _on_error(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """In ``ERRORS``' words; a login step's error asks for the step again (at another time it is
        not understood), a fatal one ends the client."""
        if self._state == State.ACTIVE:
            waiting = self._outbox.refused(frame, now)   # (store_full: the message goes again)
            if waiting is not None:
                if not self._waiting:   # a late answer (cluster mode), no pong to come: its timer now (else the
                    waiting += self._outbox.arm(now)   # pong's, or the password change's answer's)
                    self._waiting = self._outbox.retrying()
                return waiting
        code = frame.get("code")
        code = code if type(code) is str else "?"
        answered = self._password_answered(code, now)   # (the typed lines may go: a message's timer, if one waits)
        retried = self._retried(code, frame, now)
        if retried is not None:
            return retried
        rule = ERRORS.get(code)
        if rule is None or rule.ask_again is not None and self._state not in LOGIN_STEPS:
            return [Print(SAY("unknown_error", {"code": code})), *answered]
        if rule.fatal:   # (at a login step the user may be typing a password: it must not reach the shell)
            return self._finish(rule.shown(frame), 1, drain=self._state in LOGIN_STEPS)
        if rule.ends_request and type(frame.get("user")) is str:
            self._private.request_ended(frame["user"])
        effects: list[ClientEffect] = [Print(rule.shown(frame)), *answered]
        if rule.ask_again is not None:
            effects += self._ask(rule.ask_again)
        return effects

    def _retried(self, code: str, frame: Frame, now: float) -> list[ClientEffect] | None:
        """What the client does itself about an error it may try again (reactor/client/retries.py); None:
        the error is shown."""
        if code == ErrorCode.TRY_AGAIN and self._state == State.PASSWORD and self._waiting:
            return self._retries.cannot_check(now)
        if code == ErrorCode.BUSY and self._state == State.CONNECTING:
            return self._retries.busy(now)
        if code == ErrorCode.RATE_LIMITED and self._state == State.ACTIVE:
            return self._retries.rate_limited(frame, now)
        return None

    @on_frame(FrameType.STORED)
    def _on_stored(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        self._outbox.stored(frame)
        return [Print(say("stored", frame))]

    @on_frame(FrameType.DELIVERED)
    def _on_delivered(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """A message relayed to another node of a cluster was taken there: shown as nothing, as a message
        delivered on the sender's own server is (what matters is the ``stored`` or error that may come instead);
        the outbox stops listening for its answer."""
        self._outbox.delivered(frame)
        return []

    @on_frame(FrameType.READ)
    def _on_read(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Receipts: the client of ``by`` showed these messages (quiet, unless one was said not shown yet, or
        ``--receipts``: reactor/client/receipts.py)."""
        return self._receipts.read(frame) if self._receipts is not None else []

    @on_frame(FrameType.BROADCAST_PARTIAL)
    def _on_broadcast_partial(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("partial"))]

    @on_frame(FrameType.UNBLOCKED)
    def _on_unblocked(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("unblocked", frame))]

    @on_frame(FrameType.BYE)
    def _on_bye(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        """Goodbye for the ``reason`` given (any other: logged out); the server ending it is an error."""
        reason = frame.get("reason")
        if type(reason) is not str or reason not in BYE_REASONS:
            reason = ByeReason.LOGOUT
        status = 1 if reason in BYE_IN_ERROR else 0
        draft = reason != ByeReason.LOGOUT and self._state == State.ACTIVE
        if reason == ByeReason.OPERATOR and type(frame.get("text")) is str and frame["text"]:
            return self._finish(say("operator_text", frame), status, draft=draft)   # (the operator's why, made visible)
        return self._finish(say(reason), status, draft=draft)

    @on_frame(FrameType.PASSWORD_CHANGED)
    def _on_password_changed(self, frame: Frame, now: float, say: Words) -> list[ClientEffect]:
        return [Print(say("changed")), *self._password_answered(None, now)]

    # -- ending -------------------------------------------------------------

    def _leave(self, now: float) -> list[ClientEffect]:
        """The user wants out: log out if logged in (exit once the server says bye), else exit now.
        Every stored message shown is acknowledged first: after the logout the server reads nothing."""
        if self._state == State.ACTIVE:
            self._state = State.LEAVING
            return [*self._inbox.acknowledge(), ToServer({"type": FrameType.LOGOUT}),
                    SetTimer(("leave",), now + LEAVE_GRACE)]
        if self._state in (State.LEAVING, State.DONE):
            return []
        return self._finish(None, 0)

    def _finish(self, words: str | None, status: int, drain: bool = False, draft: bool = False) -> list[ClientEffect]:
        """End every private chat, say ``words`` (after what is said of a message not confirmed), exit with
        ``status`` (1 for a script whose command finally failed, or a message never confirmed); ``drain``:
        dropping what is being typed; ``draft``: showing it, the session ended under it."""
        effects = [*self._private.close_all(), *self._outbox.abandoned()]
        if words is not None:
            effects.append(Print(words))
        if draft:
            effects.append(ShowDraft(SAY("draft")))
        self._state, self._waiting = State.DONE, False
        self._typed.clear()
        self._retries.password_answered()
        effects.append(Exit(1 if status == 0 and (self._retries.failed or self._outbox.failed) else status, drain))
        return effects
