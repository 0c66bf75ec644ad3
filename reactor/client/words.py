"""Every sentence the client shows the user, in README.md's words, in one place.

The words answering the server (a frame's words by frame type, an error's by
error code, a goodbye's by reason) are the ones ``reactor/PROTOCOL.md`` section
5 tables, and ``tests/test_protocol_doc.py`` holds the two to each other; the
client's own words (its refusals, the private chats, the host's) and the help
text of each command follow. A template's ``{field}`` is filled in from the
fields given, a missing one shown as '?': a frame from the server never makes
the client fail to say something.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol import ByeReason, ErrorCode, Frame, FrameType
from ..text import LINE_BREAK
from .effects import State
from .graphemes import estimated_width

__all__ = ["fill", "hanging", "Words", "USERNAME_PROMPT", "PASSWORD_PROMPT", "CURRENT_PASSWORD_PROMPT",
           "NEW_PASSWORD_PROMPT", "NEW_PASSWORD_AGAIN_PROMPT", "HINT", "QUIT_HINT", "FRAME_WORDS", "ErrorRule",
           "ERRORS", "SAY", "COMMAND_HELP", "help_text"]


class _Fields(dict[str, Any]):
    """Format fields that show a missing one as '?' rather than fail."""

    def __missing__(self, key: str) -> str:
        return "?"


def fill(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with its ``{field}`` filled in from ``fields`` (strings and numbers only; '?' for the others)."""
    return template.format_map(_Fields({k: v for k, v in fields.items() if isinstance(v, (str, int, float))}))


MAX_INDENT = 16   # columns: a long name does not push a message's later lines off a narrow terminal


def hanging(shown: str, text: str) -> str:
    """``shown``, words that end with a message's ``text``, with every line of the text after the first
    indented to where the text began (at most ``MAX_INDENT`` columns, at least 2): so no line of a message
    starts at the margin, where it could pass for a line of its own."""
    if LINE_BREAK not in text:
        return shown
    head = shown[:len(shown) - len(text)] if shown.endswith(text) else ""
    indent = LINE_BREAK + " " * min(max(estimated_width(head), 2), MAX_INDENT)
    return shown.replace(LINE_BREAK, indent)


@dataclass(frozen=True, slots=True)
class Words:
    """Templates by name: ``words(name, fields)`` is that one filled in."""
    templates: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, name: str, fields: Mapping[str, Any] | None = None) -> str:
        return fill(self.templates[name], fields or {})


USERNAME_PROMPT = "Username: "
PASSWORD_PROMPT = "Password: "
CURRENT_PASSWORD_PROMPT = "Current password: "   # the password command's three (none echoed)
NEW_PASSWORD_PROMPT = "New password: "
NEW_PASSWORD_AGAIN_PROMPT = "New password again: "
HINT = "Type help for commands"
QUIT_HINT = "To quit, type logout or press Ctrl-D"   # the terminal console's answer to Ctrl-C


# -- what the server says -----------------------------------------------------

# The words each frame from the server shows, by name (frames that show nothing have none). The frame's
# handler (``@on_frame``, reactor/client/frames.py) picks the name and gives the fields.
FRAME_WORDS: dict[FrameType, Words] = {
    FrameType.USERNAME_OK: Words({"prompt": PASSWORD_PROMPT}),
    FrameType.WELCOME: Words({"welcome": "Welcome to the greatest messaging application ever!", "hint": HINT}),
    FrameType.MESSAGE: Words({"message": "{from}: {text}", "broadcast": "[broadcast] {from}: {text}"}),
    FrameType.STORED: Words({"stored": "{to} is offline; the message will be delivered when they log in"}),
    FrameType.READ: Words({"read": "Read by {user}: {start}"}),   # (reactor/client/receipts.py)
    FrameType.BROADCAST_PARTIAL: Words({"partial": "Your message could not be delivered to some recipients"}),
    FrameType.USERS: Words({"nobody": "No other users online", "away": "{user} (away)"}),
    FrameType.PRESENCE: Words({"online": "{user} logged in", "offline": "{user} logged out"}),
    FrameType.BLOCKED: Words({"blocked": "{user} is blocked"}),
    FrameType.UNBLOCKED: Words({"unblocked": "{user} is unblocked"}),
    FrameType.PRIVATE_REQUEST: Words({"ask": "{from} would like to start private messaging. Accept? (y/n)",
                                      "accepted": "Accepted private messaging with {from}",
                                      "declined": "Declined private messaging with {from}"}),
    FrameType.PRIVATE_CANCELLED: Words({"cancelled": "Private messaging request with {user} was cancelled"}),
    FrameType.NOTICE: Words({"notice": "[server] {text}"}),
    FrameType.HISTORY: Words({"message": "{from}: {text}", "broadcast": "[broadcast] {from}: {text}",
                              "none": "No history with {user}", "no_broadcasts": "No broadcasts in your history"}),
    FrameType.FORGOTTEN: Words({"forgotten": "Your history with {user} is forgotten",
                                "broadcasts": "Your broadcast history is forgotten"}),
    FrameType.AWAY: Words({"away": "You are away", "away_text": "You are away: {text}"}),
    FrameType.BACK: Words({"back": "You are back"}),
    FrameType.AWAY_REPLY: Words({"away": "{user} is away", "away_text": "{user} is away: {text}"}),
    FrameType.PASSWORD_CHANGED: Words({"changed": "Password changed"}),
    FrameType.BYE: Words({   # by the frame's reason (and the operator's, with its text)
        ByeReason.LOGOUT: "Logged out",
        ByeReason.TIMEOUT: "You have been logged out due to inactivity",
        ByeReason.SHUTDOWN: "Error. Server is shutting down",
        ByeReason.ACCOUNT_REMOVED: "Error. Your account was removed",
        ByeReason.CUT_OFF: "Error. The server lost touch with the other servers of the chat; log in again",
        ByeReason.OPERATOR: "Error. You were disconnected by the operator",
        "operator_text": "Error. You were disconnected by the operator: {text}"}),
}


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """What the client shows for one error code from the server (README.md's words; ``{user}``,
    ``{max}``, ``{detail}``, ``{version}``, ``{retry}`` are the frame's fields), and what follows."""
    words: str | None = None   # None: the first of ``by_command``'s (when the command is none of them)
    by_command: Mapping[str, str] = field(default_factory=dict)   # by the frame's ``command``, when it is one
    fatal: bool = False                # the client exits with status 1
    ask_again: State | None = None     # a login step's error: that step is asked again (else the code is unknown)
    ends_request: bool = False         # it answers a startprivate, which is no longer open
    lasts: str | None = None           # said after the words when the frame gives ``retry``, whole seconds

    def shown(self, frame: Frame) -> str:
        command = frame.get("command")
        by_command = self.by_command.get(command) if type(command) is str else None
        words = fill(by_command or self.words or next(iter(self.by_command.values())), frame)
        if self.lasts is not None and type(frame.get("retry")) is int:
            words += fill(self.lasts, frame)
        return words


LOCK_LASTS = " (in {retry} s)"   # how long a lock lasts, when the server says

ERRORS: dict[str, ErrorRule] = {   # keyed by ErrorCode (a str): every code the server sends
    ErrorCode.VERSION: ErrorRule("Error. Server speaks protocol version {version}", fatal=True),
    ErrorCode.BAD_FRAME: ErrorRule("Error. Bad request: {detail}"),
    ErrorCode.NOT_LOGGED_IN: ErrorRule("Error. Not logged in"),
    ErrorCode.INVALID_USERNAME: ErrorRule("Invalid Username. Please try again", ask_again=State.USERNAME),
    ErrorCode.ALREADY_LOGGED_IN: ErrorRule("Error. {user} is already logged in", ask_again=State.USERNAME),
    ErrorCode.INVALID_PASSWORD: ErrorRule("Invalid Password. Please try again", ask_again=State.PASSWORD),
    ErrorCode.TRY_AGAIN: ErrorRule(
        "Error. The server cannot check passwords right now; try again", ask_again=State.PASSWORD),
    ErrorCode.CLUSTER_UNAVAILABLE: ErrorRule(
        "Error. The server is out of touch with the other servers of the chat and cannot log anyone in; "
        "try again in a few seconds", ask_again=State.PASSWORD),
    ErrorCode.ACCOUNT_BLOCKED: ErrorRule("Invalid Password. Your account has been blocked. Please try again later",
                                         fatal=True, lasts=LOCK_LASTS),
    ErrorCode.ACCOUNT_LOCKED: ErrorRule(
        "Your account is blocked due to multiple login failures. Please try again later", fatal=True,
        lasts=LOCK_LASTS),
    ErrorCode.LOGIN_TIMEOUT: ErrorRule("Error. Login timed out", fatal=True),
    ErrorCode.BUSY: ErrorRule("Error. Server busy, try again later", fatal=True),
    ErrorCode.TLS_REQUIRED: ErrorRule(
        "Error. This server requires TLS; connect with --tls (and --ca FILE for a private CA)", fatal=True),
    ErrorCode.INVALID_USER: ErrorRule("Error. Invalid user"),
    ErrorCode.SELF: ErrorRule("Error. Not with yourself", by_command={
        FrameType.MESSAGE: "Error. Cannot message yourself",
        FrameType.BLOCK: "Error. Cannot block yourself",
        FrameType.STARTPRIVATE: "Error. Cannot start private messaging with yourself",
        FrameType.HISTORY: "Error. There is no history with yourself",
        FrameType.FORGET: "Error. There is no history with yourself to forget"}),
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
        FrameType.MESSAGE: "Error. The server cannot keep messages right now; {user} did not get yours",
        FrameType.BLOCK: "Error. The server cannot keep blocks right now; {user} is not blocked",
        FrameType.UNBLOCK: "Error. The server cannot keep blocks right now; {user} is still blocked",
        FrameType.FORGET: "Error. The server cannot keep changes right now; your history is not forgotten"}),
    ErrorCode.BAD_ARGUMENT: ErrorRule("Error. {detail}"),
    ErrorCode.OFFLINE: ErrorRule("Error. {user} is offline", ends_request=True),
    ErrorCode.PRIVATE_BLOCKED: ErrorRule("Error. Cannot start private messaging with {user}: you are blocked",
                                         ends_request=True),
    ErrorCode.PRIVATE_PENDING: ErrorRule("Error. A private messaging request with {user} is already open"),
    ErrorCode.PRIVATE_UNAVAILABLE: ErrorRule(
        "Error. {user} cannot accept private messaging right now", ends_request=True),
    ErrorCode.PRIVATE_DECLINED: ErrorRule("Error. {user} declined private messaging", ends_request=True),
    ErrorCode.NO_REQUEST: ErrorRule("Error. No private messaging request from {user}"),
    ErrorCode.NOT_AWAY: ErrorRule("Error. You are not away"),
    ErrorCode.HISTORY_OFF: ErrorRule("Error. This server keeps no history"),
    ErrorCode.WRONG_PASSWORD: ErrorRule("Error. Wrong password; your password was not changed"),
    ErrorCode.PASSWORD_REFUSED: ErrorRule("Error. That password cannot be used: {detail}"),
    ErrorCode.PASSWORD_UNCHANGEABLE: ErrorRule("Error. Passwords cannot be changed on this server"),
    ErrorCode.PASSWORD_NOT_CHANGED: ErrorRule("Error. Your password was not changed; try again later",
                                              lasts=LOCK_LASTS),
    ErrorCode.ACCOUNT_CHANGED: ErrorRule("Error. Your account was changed meanwhile; your password was not changed"),
}


# -- the client's own words ------------------------------------------------------

SAY = Words({
    # the session
    "unknown_error": "Error. {code}",   # an error code the client has no words for, or a login step's out of turn
    "bad_frame": "Error. Bad frame from server: {detail}",
    "server_lost": "Error. Connection to server lost",
    "checking": "Checking password...",                       # the server could not check it yet: it goes again
    "busy_retry": "Server busy; trying again in {seconds} s",
    "resending": "Sending too fast; trying again in {seconds} s",   # (a script's command over the rate limit)
    "idle_warning": "You will be logged out in {seconds} s for inactivity",
    "draft": "Not sent, as you left it:",                     # what was being typed when the session ended
    # the commands
    "invalid_command": "Error. Invalid command",
    "usage_error": "Error. Usage: {usage}",
    "usage": "Usage: {usage}\n{does}",
    "no_command": "Error. No command {name}. " + HINT,
    "not_seconds": "Error. whoelsesince needs a number of seconds, not {seconds!r}",
    "infinite_seconds": "Error. whoelsesince needs a finite number of seconds",
    "negative_seconds": "Error. whoelsesince needs seconds that are not negative",
    "already_chatting": "Error. Private messaging with {user} is already enabled",
    "already_starting": "Error. Private messaging with {user} is starting already",
    "not_chatting": "Error. Private messaging to {user} not enabled",
    "bad_count": "Error. history shows from 1 to {most} messages, not {count!r}",
    "away_too_long": "Error. Away text too long (at most {max} characters)",
    "away_control": "Error. Away text cannot contain control characters",
    "passwords_differ": "Error. The new passwords differ; your password was not changed",
    "password_kept": "Password not changed",                  # the password command given up
    # a message not confirmed (reactor/client/outbox.py)
    "waiting": "Message to {user} not confirmed yet; trying again in {seconds} s",
    "sent_after_all": "Message to {user} sent",
    "unconfirmed": "Error. Message to {user} not confirmed: the server cannot keep messages right now",
    "unconfirmed_at_exit": "Error. Message to {user} not confirmed",
    # a message not shown to its recipient in time (reactor/client/receipts.py)
    "unread": "Not yet read by {user}: {start}",
    # the private chats
    "no_private_chats": "Private chats are unavailable: {reason}",   # (TLS mode without its library)
    "unencrypted_peer": ("Error. Cannot start private messaging with {user}: "
                         "their client does not encrypt private chats"),
    "host_name": "Error. Cannot reach {user} for private messaging: the server named a host ({host}), "
                 "not an IP address",
    "not_their_address": "Error. Cannot reach {user} for private messaging: {host} port {port} is not "
                         "an address of theirs",
    "unreachable": "Error. Cannot reach {user} for private messaging: {reason}",
    "unreachable_certificate": ("Error. Cannot reach {user} for private messaging: "
                                "the peer's certificate is not the one the server relayed"),
    "refused_peer": "Error. Refused a private connection: {reason}",
    "refused_certificate": ("Error. Refused a private connection from {user}: "
                            "its certificate is not the one the server relayed"),
    "not_accepted": "Error. {user} did not accept the private connection",
    "not_started": "Error. Private messaging with {user} could not start: the peer {why}",
    "peer_silent": "did not answer",                   # the peer ... (not_started's why)
    "peer_broke_handshake": "broke the handshake",
    "peer_bad_frame": "sent a bad frame ({detail})",
    "started": "Start private messaging with {user}",
    "stopped": "Private messaging with {user} stopped",
    "private_text": "{user}(private): {text}",
    # the host
    "cannot_connect": "Error. Cannot connect to server at {address}: {reason}",
    "cannot_listen": "Error. Cannot listen for private messaging: {reason}",
    "unusable_certificate": "the server relayed a certificate that cannot be used",
    "handshake_failed": "the TLS handshake failed",
    "not_relayed_certificate": "its certificate is not the one the server relayed ({reason})",
})


# What each command does, for help, by its name: each command declared in reactor/client/commands.py has one.
COMMAND_HELP = {
    "message": "send <text> to <user> (kept until they log in)",
    "broadcast": "send <text> to everyone online",
    "whoelse": "who else is online",
    "whoelsesince": "who else was online in the last <seconds>",
    "block": "stop <user> reaching you",
    "unblock": "let <user> reach you again",
    "startprivate": "ask <user> for a peer-to-peer chat",
    "private": "send <text> straight to <user>'s client",
    "stopprivate": "end the peer-to-peer chat with <user>",
    "history": "the last [<n>] (20, at most 500) messages with <user>, or of broadcast",
    "forget": "delete your copy of your history with <user> (or broadcast)",
    "away": "tell those who message you that you are away",
    "back": "you are not away any more",
    "password": "change your password (asked for without echo)",
    "logout": "log out and exit",
    "help": "this list, or how to use one command",
}


def help_text(usages: Iterable[tuple[str, str]]) -> str:
    """The help list: a command's usage and what it does, a line each, in the order given."""
    return "Commands:\n" + "\n".join(f"  {usage:<26}{does}" for usage, does in usages)
