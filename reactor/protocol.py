"""The wire protocol's constants, in one place for both sides: versions, limits, frame types, error codes, bye reasons.

``reactor/PROTOCOL.md`` says what each frame and code means. The names here are
``StrEnum`` members: each is the very string on the wire (``FrameType.PING ==
"ping"``, and it encodes as ``"ping"``), so a frame built with them or with the
plain string is the same frame, and a table keyed by them is found by the plain
string a peer sent.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["Frame", "PROTOCOL_VERSION", "PROTOCOL_VERSIONS", "MAX_TEXT", "MAX_CERT", "MAX_REF", "MAX_USERNAME",
           "MAX_AWAY", "HISTORY_COUNT", "MAX_HISTORY", "FrameType", "ErrorCode", "ByeReason", "CLIENT_FRAMES",
           "LOGIN_FRAMES"]

Frame = dict[str, Any]         # one decoded frame: a JSON object

PROTOCOL_VERSION = 3          # the newest version spoken (3: the welcome is followed by who else is online)
PROTOCOL_VERSIONS = (1, 2, 3)  # the versions spoken (2: a presence frame may list several users)
MAX_TEXT = 4096               # characters in one message or broadcast text, as the server enforces by default
MAX_CERT = 2048               # characters of a client's private-chat certificate (base64 DER; about 430 in use)
MAX_REF = 64                  # characters of a message's ``ref``, the id its sender's client gave it (14 in use)
# Characters in a user name, at most: 256 bytes of UTF-8 even beyond the BMP, so a name always fits in a
# frame with room to spare, a page of names holds over a hundred of them (reactor/server/pages.py), and a
# client that escapes every character (12 bytes beyond the BMP) still says its name in the 1 KiB a client
# may send before it logs in.
MAX_USERNAME = 64
MAX_AWAY = 200                # characters of an away text
HISTORY_COUNT = 20            # messages a history shows when it is not told how many
MAX_HISTORY = 500             # ... and at most


class FrameType(StrEnum):
    """Every frame's ``type``: client to server, server to client, and peer to peer."""

    # client -> server: the handshake and login
    HELLO = "hello"                   # also server -> client, the answer
    USERNAME = "username"
    PASSWORD = "password"
    LISTEN = "listen"
    # client -> server: the commands (after welcome)
    MESSAGE = "message"               # also server -> client, a message delivered
    BROADCAST = "broadcast"
    WHOELSE = "whoelse"
    WHOELSESINCE = "whoelsesince"
    BLOCK = "block"
    UNBLOCK = "unblock"
    LOGOUT = "logout"
    ACTIVITY = "activity"
    PING = "ping"
    ACK = "ack"
    STARTPRIVATE = "startprivate"
    PRIVATE_ANSWER = "private_answer"
    PRIVATE_READY = "private_ready"
    HISTORY = "history"               # also server -> client, the messages kept (a frame within MAX_FRAME each)
    FORGET = "forget"
    AWAY = "away"                     # also server -> client, the answer
    BACK = "back"                     # also server -> client, the answer
    CHANGE_PASSWORD = "change_password"
    # server -> client
    USERNAME_OK = "username_ok"
    WELCOME = "welcome"
    ERROR = "error"
    STORED = "stored"
    DELIVERED = "delivered"           # cluster mode: a message relayed to another node was taken there
    BROADCAST_PARTIAL = "broadcast_partial"
    USERS = "users"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    BYE = "bye"
    PONG = "pong"
    PRESENCE = "presence"
    ONLINE = "online"                 # (version 3) who else is online, right after the welcome
    PRIVATE_REQUEST = "private_request"
    PRIVATE_EXPECT = "private_expect"
    PRIVATE_CONNECT = "private_connect"
    PRIVATE_CANCELLED = "private_cancelled"
    NOTICE = "notice"                 # the operator's words to every user
    FORGOTTEN = "forgotten"           # the answer to forget
    AWAY_REPLY = "away_reply"         # a message's recipient is away: its words, once per sender per away period
    PASSWORD_CHANGED = "password_changed"
    # peer <-> peer
    PEER_HELLO = "peer_hello"
    PEER_WELCOME = "peer_welcome"
    PRIVATE = "private"


# What a client sends before it logs in.
LOGIN_FRAMES = frozenset({FrameType.HELLO, FrameType.USERNAME, FrameType.PASSWORD})
CLIENT_FRAMES = LOGIN_FRAMES | {
    FrameType.LISTEN, FrameType.MESSAGE, FrameType.BROADCAST, FrameType.WHOELSE, FrameType.WHOELSESINCE,
    FrameType.BLOCK, FrameType.UNBLOCK, FrameType.LOGOUT, FrameType.ACTIVITY, FrameType.PING, FrameType.ACK,
    FrameType.STARTPRIVATE, FrameType.PRIVATE_ANSWER, FrameType.PRIVATE_READY, FrameType.HISTORY,
    FrameType.FORGET, FrameType.AWAY, FrameType.BACK, FrameType.CHANGE_PASSWORD}   # what a client sends the server


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame from the server."""

    # the handshake and login
    BUSY = "busy"
    TLS_REQUIRED = "tls_required"
    VERSION = "version"
    INVALID_USERNAME = "invalid_username"
    INVALID_PASSWORD = "invalid_password"
    TRY_AGAIN = "try_again"                   # the password could not be checked: give it again
    CLUSTER_UNAVAILABLE = "cluster_unavailable"   # cluster mode: the node is out of touch with the cluster now
    ALREADY_LOGGED_IN = "already_logged_in"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_BLOCKED = "account_blocked"
    LOGIN_TIMEOUT = "login_timeout"
    NOT_LOGGED_IN = "not_logged_in"
    BAD_FRAME = "bad_frame"
    # the commands
    INVALID_USER = "invalid_user"
    SELF = "self"
    CONTROL_CHARACTERS = "control_characters"
    TEXT_TOO_LONG = "text_too_long"
    BLOCKED_BY_RECIPIENT = "blocked_by_recipient"
    QUEUE_FULL = "queue_full"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    STORE_FULL = "store_full"
    BAD_ARGUMENT = "bad_argument"
    ALREADY_BLOCKED = "already_blocked"
    NOT_BLOCKED = "not_blocked"
    OFFLINE = "offline"
    PRIVATE_BLOCKED = "private_blocked"
    PRIVATE_PENDING = "private_pending"
    PRIVATE_UNAVAILABLE = "private_unavailable"
    PRIVATE_DECLINED = "private_declined"
    NO_REQUEST = "no_request"
    NOT_AWAY = "not_away"                     # back, when not away
    HISTORY_OFF = "history_off"               # history or forget on a server that keeps none (--history-days 0)
    # changing one's password
    WRONG_PASSWORD = "wrong_password"                 # the current password given is wrong (it counts)
    PASSWORD_REFUSED = "password_refused"             # the new one will not do: ``detail`` says why
    PASSWORD_UNCHANGEABLE = "password_unchangeable"   # not on this server (turned off, or its file is not writable)
    PASSWORD_NOT_CHANGED = "password_not_changed"     # not now (the account is locked, the server cannot hash...)
    ACCOUNT_CHANGED = "account_changed"               # the operator changed the account meanwhile


class ByeReason(StrEnum):
    """The ``reason`` of a ``bye`` frame from the server."""

    LOGOUT = "logout"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    ACCOUNT_REMOVED = "account_removed"
    CUT_OFF = "cut_off"               # cluster mode: the node lost touch with the cluster (or the login moved)
    OPERATOR = "operator"             # the operator ended the session (kick, lock); a ``text`` may say why
