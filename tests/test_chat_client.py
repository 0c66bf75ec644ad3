"""The client's logic, command by command, without sockets or sleeps: frames and lines in, effects out."""
from datetime import UTC, datetime, timedelta, timezone

import pytest

from reactor.client.commands import COMMANDS, HELP, Command, Param
from reactor.client.effects import (
    CancelTimer,
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
from reactor.client.retries import BUSY_WAITS
from reactor.client.rules import ChatClient
from reactor.client.words import COMMAND_HELP
from reactor.protocol import MAX_TEXT
from reactor.text import CONTROL
from tests.support import PING, PONG, ask, frames, logged_in

HIDDEN = Prompt("", secret=True)   # typing is not shown until the server answers a login step


def prints(effects):
    return [e.text for e in effects if type(e) is Print]


# -- logging in -----------------------------------------------------------

def test_login_dialogue():
    c = ChatClient()
    assert c.start(0) == [ToServer({"type": "hello", "version": 3}), Listen()]
    assert c.listening("127.0.0.1", 4242, 0) == [ToServer({"type": "listen", "host": "127.0.0.1", "port": 4242})]
    assert c.server_frame({"type": "hello", "version": 2}, 0) == [Prompt("Username: ")]
    assert c.line(" yoda ", 0) == [ToServer({"type": "username", "username": "yoda"}), HIDDEN]
    assert c.server_frame({"type": "username_ok"}, 0) == [Prompt("Password: ", secret=True)]
    assert c.line("wrong", 0) == [ToServer({"type": "password", "password": "wrong"}), HIDDEN]
    assert c.server_frame({"type": "error", "code": "invalid_password"}, 0) == [
        Print("Invalid Password. Please try again"), Prompt("Password: ", secret=True)]
    c.line("wise@!man", 0)
    assert c.server_frame({"type": "welcome", "user": "yoda"}, 0) == [
        Prompt("", remember=True), Print("Welcome to the greatest messaging application ever!"),
        Print("Type help for commands"), ToServer(PING)]
    assert c.user == "yoda"
    assert c.server_frame(PONG, 0) == []


def test_unknown_and_busy_names_ask_again():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    assert c.line("", 0) == [Prompt("Username: ")]
    c.line("nobody", 0)
    assert c.server_frame({"type": "error", "code": "invalid_username"}, 0) == [
        Print("Invalid Username. Please try again"), Prompt("Username: ")]
    c.line("hans", 0)
    assert c.server_frame({"type": "error", "code": "already_logged_in", "user": "hans"}, 0) == [
        Print("Error. hans is already logged in"), Prompt("Username: ")]


def test_a_cluster_node_out_of_touch_says_so_and_asks_for_the_password_again():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("yoda", 0)
    c.server_frame({"type": "username_ok"}, 0)
    c.line("wise@!man", 0)
    assert c.server_frame({"type": "error", "code": "cluster_unavailable"}, 0) == [
        Print("Error. The server is out of touch with the other servers of the chat and cannot log anyone in; "
              "try again in a few seconds"), Prompt("Password: ", secret=True)]


def test_a_session_a_cluster_node_cut_off_ends_saying_why():
    c = logged_in()
    assert c.server_frame({"type": "bye", "reason": "cut_off"}, 1) == [
        Print("Error. The server lost touch with the other servers of the chat; log in again"), DRAFT, Exit(1)]


def test_lines_typed_ahead_wait_for_each_answer():
    c = ChatClient()
    c.start(0)
    assert c.line("yoda", 0) == [HIDDEN]     # before the server's hello: what comes next may be secret
    assert c.line("wise@!man", 0) == [HIDDEN]
    assert c.line("whoelse", 0) == [HIDDEN]
    effects = c.server_frame({"type": "hello", "version": 2}, 0)
    assert frames(effects) == [{"type": "username", "username": "yoda"}]   # the password waits
    effects = c.server_frame({"type": "username_ok"}, 0)
    assert frames(effects) == [{"type": "password", "password": "wise@!man"}]
    effects = c.server_frame({"type": "welcome", "user": "yoda"}, 0)
    assert frames(effects) == [PING]                                      # the stored messages come first
    assert frames(c.server_frame(PONG, 0)) == [{"type": "whoelse"}, PING]


@pytest.mark.parametrize("code, fields, words", [
    ("account_blocked", {}, "Invalid Password. Your account has been blocked. Please try again later"),
    ("account_blocked", {"retry": 30}, "Invalid Password. Your account has been blocked. Please try again later "
                                       "(in 30 s)"),
    ("account_locked", {}, "Your account is blocked due to multiple login failures. Please try again later"),
    ("account_locked", {"retry": 9}, "Your account is blocked due to multiple login failures. Please try again "
                                     "later (in 9 s)"),
    ("account_locked", {"retry": "9"}, "Your account is blocked due to multiple login failures. Please try again "
                                       "later"),
    ("login_timeout", {}, "Error. Login timed out"),
])
def test_fatal_login_errors_exit_1_dropping_what_is_being_typed(code, fields, words):
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("vader", 0)
    c.line("typed ahead", 0)
    assert c.server_frame({"type": "error", "code": code, **fields}, 0) == [Print(words), Exit(1, drain=True)]
    assert c.line("more", 0) == [] and c.server_frame({"type": "username_ok"}, 0) == []


def test_a_busy_server_is_tried_again_with_backoff_then_the_client_gives_up_before_hello():
    c = ChatClient()
    c.start(0)
    now = 0
    for wait in BUSY_WAITS:                      # (reactor/client/retries.py; tests/test_client_patience.py)
        assert c.server_frame({"type": "error", "code": "busy"}, now) == [
            Print(f"Server busy; trying again in {wait} s"), SetTimer(("reconnect",), now + wait)]
        assert c.server_lost(now) == []
        now += wait
        assert c.timer_fired(("reconnect",), now) == [Reconnect()]
        assert c.start(now) == [ToServer({"type": "hello", "version": 3}), Listen()]
    assert c.server_frame({"type": "error", "code": "busy"}, now) == [Print("Error. Server busy, try again later"),
                                                                      Exit(1)]


def test_a_version_1_server_is_spoken_to_and_true_is_no_version():
    c = ChatClient()
    c.start(0)
    assert c.server_frame({"type": "hello", "version": 1}, 0) == [Prompt("Username: ")]
    c = ChatClient()
    c.start(0)
    assert c.server_frame({"type": "hello", "version": True}, 0)[-1] == Exit(1)


def test_another_protocol_version_is_refused():
    c = ChatClient()
    c.start(0)
    assert c.server_frame({"type": "hello", "version": 4}, 0) == [
        Print("Error. Server speaks protocol version 4"), Exit(1)]
    c = ChatClient()
    assert c.server_frame({"type": "error", "code": "version", "version": 7}, 0) == [
        Print("Error. Server speaks protocol version 7"), Exit(1)]


def test_a_piped_session_runs_to_its_end_before_the_end_of_input_logs_out():
    c = ChatClient()
    c.start(0)
    for line in ("yoda", "wise@!man", "whoelse"):
        c.line(line, 0)
    assert c.end_of_input(0) == []              # the lines come first
    c.server_frame({"type": "hello", "version": 2}, 0)
    assert c.server_frame({"type": "username_ok"}, 0) == [
        Prompt("Password: ", secret=True), ToServer({"type": "password", "password": "wise@!man"}), HIDDEN]
    assert c.server_frame({"type": "welcome", "user": "yoda"}, 1) == [
        Prompt("", remember=True), Print("Welcome to the greatest messaging application ever!"),
        Print("Type help for commands"), ToServer(PING)]
    assert c.server_frame(PONG, 1) == [ToServer({"type": "whoelse"}), ToServer(PING)]
    assert c.server_frame({"type": "users", "names": []}, 1) == [Print("No other users online")]
    assert c.server_frame(PONG, 1) == [ToServer({"type": "logout"}), SetTimer(("leave",), 4.0)]


def test_end_of_input_after_a_refused_name_exits_0():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("nobody", 0)
    assert c.end_of_input(0) == []              # the answer may still matter
    assert c.server_frame({"type": "error", "code": "invalid_username"}, 0)[-1] == Exit(0)


def test_end_of_input_before_login_exits_0():
    c = ChatClient()
    c.start(0)
    assert c.end_of_input(0) == [Exit(0)]
    assert c.end_of_input(0) == []


# -- commands -------------------------------------------------------------

@pytest.mark.parametrize("line, frame", [
    ("message hans Do or  do not", {"type": "message", "to": "hans", "text": "Do or  do not", "ref": "n0nce.1"}),
    ("broadcast there is no try", {"type": "broadcast", "text": "there is no try"}),
    ("whoelse", {"type": "whoelse"}),
    ("whoelsesince 60", {"type": "whoelsesince", "seconds": 60}),
    ("whoelsesince 2.5", {"type": "whoelsesince", "seconds": 2.5}),
    ("block hans", {"type": "block", "user": "hans"}),
    ("unblock hans", {"type": "unblock", "user": "hans"}),
    ("startprivate hans", {"type": "startprivate", "user": "hans"}),
    ("  whoelse  ", {"type": "whoelse"}),
])
def test_each_command_sends_its_frame_and_a_ping(line, frame):
    c = logged_in()
    assert c.line(line, 1) == [ToServer(frame), ToServer(PING)]


@pytest.mark.parametrize("line, words", [
    ("dance", "Error. Invalid command"),
    ("message", "Error. Usage: message <user> <text>"),
    ("message hans", "Error. Usage: message <user> <text>"),
    ("broadcast", "Error. Usage: broadcast <text>"),
    ("block", "Error. Usage: block <user>"),
    ("block hans solo", "Error. Usage: block <user>"),
    ("whoelse now", "Error. Usage: whoelse"),
    ("whoelsesince", "Error. Usage: whoelsesince <seconds>"),
    ("whoelsesince soon", "Error. whoelsesince needs a number of seconds, not 'soon'"),
    ("whoelsesince -5", "Error. whoelsesince needs seconds that are not negative"),
    ("whoelsesince nan", "Error. whoelsesince needs a finite number of seconds"),
    ("private hans hi", "Error. Private messaging to hans not enabled"),
    ("stopprivate hans", "Error. Private messaging to hans not enabled"),
    ("message hans " + "x" * (MAX_TEXT + 1), f"Error. Message too long (at most {MAX_TEXT} characters)"),
    ("broadcast " + "x" * (MAX_TEXT + 1), f"Error. Message too long (at most {MAX_TEXT} characters)"),
    ("y", "Error. Invalid command"),   # no question is open
])
def test_client_side_errors_still_count_as_activity(line, words):
    c = logged_in()
    assert c.line(line, 1) == [Print(words), ToServer({"type": "activity"})]


def test_help_and_empty_lines_are_activity_too():
    c = logged_in()
    assert c.line("help", 1) == [Print(HELP), ToServer({"type": "activity"})]
    assert "whoelsesince <seconds>" in HELP
    assert c.line("", 1) == [ToServer({"type": "activity"})]


@pytest.mark.parametrize("frame, words", [
    ({"type": "message", "from": "hans", "text": "hi"}, "hans: hi"),
    ({"type": "message", "from": "hans", "text": "all", "broadcast": True}, "[broadcast] hans: all"),
    ({"type": "stored", "to": "luke"}, "luke is offline; the message will be delivered when they log in"),
    ({"type": "broadcast_partial"}, "Your message could not be delivered to some recipients"),
    ({"type": "users", "names": []}, "No other users online"),
    ({"type": "users", "names": ["hans", "luke"]}, "hans\nluke"),
    ({"type": "blocked", "user": "hans"}, "hans is blocked"),
    ({"type": "unblocked", "user": "hans"}, "hans is unblocked"),
    ({"type": "presence", "user": "hans", "online": True}, "hans logged in"),
    ({"type": "presence", "user": "hans", "online": False}, "hans logged out"),
    ({"type": "presence", "users": ["hans", "luke"], "online": True}, "hans logged in\nluke logged in"),
    ({"type": "presence", "users": ["hans", "luke"], "online": False}, "hans logged out\nluke logged out"),
    ({"type": "private_request", "from": "hans"}, "hans would like to start private messaging. Accept? (y/n)"),
    ({"type": "error", "code": "invalid_user"}, "Error. Invalid user"),
    ({"type": "error", "code": "self", "command": "message"}, "Error. Cannot message yourself"),
    ({"type": "error", "code": "self", "command": "block"}, "Error. Cannot block yourself"),
    ({"type": "error", "code": "self", "command": "startprivate"},
     "Error. Cannot start private messaging with yourself"),
    ({"type": "error", "code": "blocked_by_recipient"},
     "Your message could not be delivered as the recipient has blocked you"),
    ({"type": "error", "code": "already_blocked", "user": "hans"}, "Error. hans is already blocked"),
    ({"type": "error", "code": "not_blocked", "user": "yoda"}, "Error. yoda was not blocked"),
    ({"type": "error", "code": "text_too_long", "max": 4096}, "Error. Message too long (at most 4096 characters)"),
    ({"type": "error", "code": "queue_full", "user": "luke"},
     "Error. luke has too many messages waiting; yours was not kept"),
    ({"type": "error", "code": "rate_limited", "command": "message", "retry": 3},
     "Error. You are sending too fast; try again in 3 s"),
    ({"type": "error", "code": "quota_exceeded", "quota": 1048576},
     "Error. Too many of your messages wait for offline users; this one was not kept"),
    ({"type": "error", "code": "bad_argument", "detail": "no"}, "Error. no"),
    ({"type": "error", "code": "offline", "user": "luke"}, "Error. luke is offline"),
    ({"type": "error", "code": "private_blocked", "user": "hans"},
     "Error. Cannot start private messaging with hans: you are blocked"),
    ({"type": "error", "code": "private_pending", "user": "hans"},
     "Error. A private messaging request with hans is already open"),
    ({"type": "error", "code": "private_unavailable", "user": "hans"},
     "Error. hans cannot accept private messaging right now"),
    ({"type": "error", "code": "private_declined", "user": "hans"}, "Error. hans declined private messaging"),
    ({"type": "error", "code": "no_request", "user": "hans"}, "Error. No private messaging request from hans"),
    ({"type": "error", "code": "bad_frame", "detail": "oops"}, "Error. Bad request: oops"),
    ({"type": "error", "code": "not_logged_in"}, "Error. Not logged in"),
    ({"type": "error", "code": "brand_new"}, "Error. brand_new"),
    ({"type": "error", "code": "offline"}, "Error. ? is offline"),
])
def test_server_frames_in_the_specs_words(frame, words):
    c = logged_in()
    assert prints(c.server_frame(frame, 1)) == [words]


def test_a_message_delivered_through_another_cluster_node_shows_nothing():
    c = logged_in()
    assert c.server_frame({"type": "delivered", "to": "luke"}, 1) == []


def test_odd_server_frames_are_ignored_or_reported():
    c = logged_in()
    assert c.server_frame({"type": "from_the_future"}, 1) == []
    assert c.server_frame({"type": "message", "from": 3}, 1) == []
    assert c.server_frame({"type": "users", "names": "x"}, 1) == []
    assert prints(c.server_frame({"no": "type"}, 1)) == ["Error. Bad frame from server: a frame without a type"]
    assert prints(c.server_bad_frame("invalid JSON", 1)) == ["Error. Bad frame from server: invalid JSON"]


def test_stored_messages_are_acknowledged_once_per_burst_and_shown_once():
    c = logged_in()
    first = c.server_frame({"type": "message", "from": "hans", "text": "one", "id": 7}, 5)
    assert first == [SetTimer(("ack",), 5), Print("hans: one")]
    assert c.server_frame({"type": "message", "from": "hans", "text": "two", "id": 8}, 5) == [Print("hans: two")]
    assert c.timer_fired(("ack",), 5) == [ToServer({"type": "ack", "ids": [7, 8]})]
    again = c.server_frame({"type": "message", "from": "hans", "text": "one", "id": 7}, 6)
    assert again == [SetTimer(("ack",), 6)]           # acknowledged again, not shown again
    assert c.timer_fired(("ack",), 6) == [ToServer({"type": "ack", "ids": [7]})]
    assert c.timer_fired(("ack",), 6) == []


def stored(mid, text="hi", sender="hans"):
    return {"type": "message", "from": sender, "text": text, "id": mid}


ACK_1_2 = ToServer({"type": "ack", "ids": [1, 2]})
LOGOUT = ToServer({"type": "logout"})


def logged_in_with_stored(now=1.0):
    """luke logged in, two stored messages shown, their ack timer not yet fired."""
    c = logged_in("luke", now)
    for mid in (1, 2):
        c.server_frame(stored(mid), now)
    return c


@pytest.mark.parametrize("end", ["logout", "end_of_input", "interrupt"])
def test_every_way_out_acknowledges_what_was_shown_before_the_logout(end):
    c = logged_in_with_stored()
    effects = {"logout": lambda: c.line("logout", 1), "end_of_input": lambda: c.end_of_input(1),
               "interrupt": lambda: c.interrupt(1)}[end]()
    assert effects == [ACK_1_2, LOGOUT, SetTimer(("leave",), 4.0)]
    assert c.timer_fired(("ack",), 1) == []               # nothing left to acknowledge twice


@pytest.mark.parametrize("script", [["logout"], ["whoelse", "logout"], ["whoelse"]])
def test_a_piped_session_shows_the_stored_messages_and_acknowledges_them_before_it_logs_out(script):
    c = ChatClient()
    c.start(0)
    for line in ["luke", "jedi*knight", *script]:
        c.line(line, 0)
    c.end_of_input(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.server_frame({"type": "username_ok"}, 0)
    effects = c.server_frame({"type": "welcome", "user": "luke"}, 0)
    assert frames(effects) == [PING]                      # no typed line goes before the stored messages
    effects = c.server_frame(stored(1, "one"), 0) + c.server_frame(stored(2, "two"), 0)
    assert prints(effects) == ["hans: one", "hans: two"]
    effects = c.server_frame(PONG, 0)                     # the ack timer has not fired yet
    if script[0] == "whoelse":
        assert frames(effects) == [{"type": "whoelse"}, PING]
        effects = c.server_frame({"type": "users", "names": []}, 0) + c.server_frame(PONG, 0)
    assert effects[-3:] == [ACK_1_2, LOGOUT, SetTimer(("leave",), 3.0)]


def test_a_stored_message_that_comes_after_the_logout_is_left_for_the_next_login():
    c = logged_in("luke", 1)
    c.server_frame(stored(1), 1)
    assert c.interrupt(1) == [ToServer({"type": "ack", "ids": [1]}), LOGOUT, SetTimer(("leave",), 4.0)]
    assert c.server_frame(stored(2), 1) == []             # not shown: it could no longer be acknowledged
    assert c.timer_fired(("ack",), 1) == []
    assert c.server_frame({"type": "message", "from": "hans", "text": "live"}, 1) == [Print("hans: live")]


def test_answers_come_in_the_order_of_the_commands():
    c = ChatClient()
    c.start(0)
    for line in ("yoda", "wise@!man", "whoelse", "bogus", "whoelsesince 5", "help"):
        c.line(line, 0)
    c.end_of_input(0)
    shown, sent = [], []
    for frame in ({"type": "hello", "version": 2}, {"type": "username_ok"}, {"type": "welcome", "user": "yoda"},
                  PONG, {"type": "users", "names": ["hans"]}, PONG,
                  {"type": "users", "names": ["hans", "luke"]}, PONG, {"type": "bye", "reason": "logout"}):
        effects = c.server_frame(frame, 0)
        shown += prints(effects)
        sent += frames(effects)
    assert shown == ["Welcome to the greatest messaging application ever!", "Type help for commands", "hans",
                     "Error. Invalid command",
                     "hans\nluke", HELP, "Logged out"]
    assert sent == [{"type": "username", "username": "yoda"}, {"type": "password", "password": "wise@!man"},
                    PING, {"type": "whoelse"}, PING, {"type": "activity"}, {"type": "whoelsesince", "seconds": 5},
                    PING, {"type": "activity"}, {"type": "logout"}]


def test_a_line_typed_before_the_pong_waits_for_it():
    c = logged_in()
    assert c.line("message hans hi", 1) == [ToServer({"type": "message", "to": "hans", "text": "hi", "ref": "n0nce.1"}),
                                            ToServer(PING)]   # no answer comes to this one: the pong says so
    assert c.line("help", 1) == []
    assert c.line("whoelse", 1) == []
    assert c.server_frame(PONG, 1) == [Print(HELP), ToServer({"type": "activity"}), ToServer({"type": "whoelse"}),
                                       ToServer(PING)]
    assert c.server_frame(PONG, 1) == []
    assert c.server_frame(PONG, 1) == []                 # a pong nobody waits for changes nothing


def test_a_pong_does_not_answer_a_login_step():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("yoda", 0)
    c.line("wise@!man", 0)
    assert c.server_frame(PONG, 0) == []                 # the password still waits for username_ok
# -- timestamps ------------------------------------------------------------

NOV_24_1403 = datetime(2025, 11, 24, 14, 3, 59, tzinfo=UTC).timestamp()


def test_a_stored_message_shows_when_it_was_sent_in_the_given_zone():
    c = logged_in(tz=UTC)
    frame = {"type": "message", "from": "vader", "text": "join me", "id": 1, "sent": NOV_24_1403}
    assert prints(c.server_frame(frame, 5)) == ["[Nov 24 14:03] vader: join me"]
    c = logged_in(tz=timezone(timedelta(hours=-15)))
    frame = {"type": "message", "from": "vader", "text": "all", "id": 2, "sent": NOV_24_1403, "broadcast": True}
    assert prints(c.server_frame(frame, 5)) == ["[Nov 23 23:03] [broadcast] vader: all"]


@pytest.mark.parametrize("sent", [None, "yesterday", True, 1e300, float("nan"), -1e20])
def test_a_stored_message_with_a_missing_or_absurd_time_shows_none(sent):
    c = logged_in(tz=UTC)
    frame = {"type": "message", "from": "vader", "text": "hi", "id": 1, "sent": sent}
    assert prints(c.server_frame(frame, 5)) == ["vader: hi"]


def test_live_messages_show_no_time_unless_asked():
    c = logged_in(tz=UTC, wall_offset=NOV_24_1403 - 100)
    assert prints(c.server_frame({"type": "message", "from": "hans", "text": "hi"}, 100)) == ["hans: hi"]
    c = logged_in(tz=UTC, wall_offset=NOV_24_1403 - 100, timestamps=True)
    assert prints(c.server_frame({"type": "message", "from": "hans", "text": "hi"}, 100)) == ["[14:03] hans: hi"]
    assert prints(c.server_frame({"type": "message", "from": "hans", "text": "later"}, 160)) == [
        "[14:04] hans: later"]                         # the host's monotonic now, turned into wall time
    frame = {"type": "message", "from": "vader", "text": "old", "id": 1, "sent": NOV_24_1403 - 86400}
    assert prints(c.server_frame(frame, 160)) == ["[Nov 23 14:03] vader: old"]


def test_live_private_messages_show_the_time_when_asked():
    c = logged_in(tz=UTC, wall_offset=NOV_24_1403 - 1, timestamps=True)
    open_as_target(c)
    assert prints(c.peer_frame(1, {"type": "private", "text": "psst"}, 1)) == ["[14:03] hans(private): psst"]


# -- completion and help ---------------------------------------------------------

def test_online_users_follow_presence_and_whoelse():
    c = logged_in()
    assert c.online_users() == frozenset()
    c.server_frame({"type": "presence", "user": "hans", "online": True}, 1)
    c.server_frame({"type": "presence", "user": "luke", "online": True}, 1)
    assert c.online_users() == {"hans", "luke"}
    c.server_frame({"type": "presence", "user": "hans", "online": False}, 1)
    assert c.online_users() == {"luke"}
    c.line("whoelse", 1)
    c.line("whoelsesince 60", 1)
    c.server_frame({"type": "users", "names": ["leia", "vader"]}, 1)        # whoelse: exactly these
    assert c.online_users() == {"leia", "vader"}
    c.server_frame({"type": "users", "names": ["hans", "leia", "vader"]}, 1)  # since: hans may be gone
    assert c.online_users() == {"leia", "vader"}
    c.server_frame({"type": "presence", "user": 7, "online": True}, 1)
    assert c.online_users() == {"leia", "vader"}
    c.server_frame({"type": "presence", "users": ["hans", 7, "luke"], "online": True}, 1)   # version 2: a list
    assert c.online_users() == {"hans", "leia", "luke", "vader"}
    c.server_frame({"type": "presence", "users": ["leia", "hans"], "online": False}, 1)
    assert c.online_users() == {"luke", "vader"}


def test_completion_of_commands_and_users():
    c = logged_in()
    for name in ("hans", "hera", "luke"):
        c.server_frame({"type": "presence", "user": name, "online": True}, 1)
    assert c.completions("") == sorted(COMMANDS)
    assert c.completions("who") == ["whoelse", "whoelsesince"]
    assert c.completions("st") == ["startprivate", "stopprivate"]
    assert c.completions("message h") == ["hans", "hera"]
    assert c.completions("block l") == ["luke"]
    assert c.completions("help bl") == ["block"]
    assert c.completions("message hans h") == []       # the text is the user's own
    assert c.completions("whoelsesince 1") == []
    assert c.completions("private h") == []            # only users with an open chat
    open_as_target(c)
    assert c.completions("private h") == ["hans"]


def test_no_completion_before_the_login():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    assert c.completions("he") == []


def test_help_for_one_command():
    c = logged_in()
    assert prints(c.line("help message", 1)) == [
        "Usage: message <user> <text>\nSend <text> to <user> (kept until they log in)"]
    assert prints(c.line("help whoelse", 1)) == ["Usage: whoelse\nWho else is online"]
    assert prints(c.line("help fly", 1)) == ["Error. No command fly. Type help for commands"]
    assert prints(c.line("help me now", 1)) == ["Error. Usage: help [<command>]"]
    assert all(f"  {name}" in HELP for name in COMMANDS)


def test_every_command_has_its_help_words_and_no_help_words_lack_a_command():
    assert list(COMMAND_HELP) == list(COMMANDS)   # in the order help lists them
    assert all(COMMANDS[name].does == does for name, does in COMMAND_HELP.items())


# -- login input -----------------------------------------------------------------

def test_typing_is_hidden_from_sending_a_name_until_the_answer():
    c = ChatClient()
    c.start(0)
    assert c.server_frame({"type": "hello", "version": 2}, 0) == [Prompt("Username: ")]   # not remembered
    assert c.line("yoda", 0)[-1] == HIDDEN            # a password typed ahead now is not shown
    assert c.line("wise@!man", 0) == [HIDDEN]         # queued as before
    assert c.server_frame({"type": "username_ok"}, 0) == [
        Prompt("Password: ", secret=True), ToServer({"type": "password", "password": "wise@!man"}), HIDDEN]
    effects = c.server_frame({"type": "welcome", "user": "yoda"}, 0)
    assert effects[0] == Prompt("", remember=True)     # only commands enter the history
    assert not any(type(e) is Prompt and e.remember for e in effects[1:])


def test_logout_waits_for_the_goodbye():
    c = logged_in()
    assert c.line("logout", 1) == [ToServer({"type": "logout"}), SetTimer(("leave",), 4.0)]
    assert c.line("whoelse", 1) == []      # leaving: nothing more is sent
    assert c.server_frame({"type": "bye", "reason": "logout"}, 1) == [Print("Logged out"), Exit(0)]


def test_logout_without_a_goodbye_exits_anyway():
    c = logged_in()
    c.end_of_input(1)
    assert c.interrupt(1) == []
    assert c.timer_fired(("leave",), 4) == [Print("Logged out"), Exit(0)]
    assert c.timer_fired(("leave",), 5) == []


DRAFT = ShowDraft("Not sent, as you left it:")   # the session ends under the user: what they typed is shown


@pytest.mark.parametrize("reason, shown, status", [
    ("timeout", [Print("You have been logged out due to inactivity"), DRAFT], 0),
    ("shutdown", [Print("Error. Server is shutting down"), DRAFT], 1),
    ("account_removed", [Print("Error. Your account was removed"), DRAFT], 1),
    ("operator", [Print("Error. You were disconnected by the operator"), DRAFT], 1),
    ("vacation", [Print("Logged out")], 0),        # a reason the client does not know, or no reason: logged out
    (["shutdown"], [Print("Logged out")], 0),
])
def test_goodbyes(reason, shown, status):
    c = logged_in()
    assert c.server_frame({"type": "bye", "reason": reason}, 1) == [*shown, Exit(status)]


@pytest.mark.parametrize("text, words", [("flooding the chat", "Error. You were disconnected by the operator: "
                                                               "flooding the chat"),
                                          ("", "Error. You were disconnected by the operator"),
                                          (7, "Error. You were disconnected by the operator")])
def test_the_operators_goodbye_says_why_when_it_has_a_text(text, words):
    c = logged_in()
    assert c.server_frame({"type": "bye", "reason": "operator", "text": text}, 1) == [Print(words), DRAFT, Exit(1)]


def test_the_operators_notice_is_shown_as_said_and_a_notice_without_a_text_is_not():
    c = logged_in()
    assert c.server_frame({"type": "notice", "text": "restarting at noon"}, 1) == [Print("[server] restarting at noon")]
    assert c.server_frame({"type": "notice", "text": ["x"]}, 1) == []


def test_server_lost_exits_1():
    c = logged_in()
    c.server_frame({"type": "message", "from": "hans", "text": "one", "id": 3}, 1)
    assert c.server_lost(1) == [Print("Error. Connection to server lost"), DRAFT, Exit(1)]   # none to ack to
    assert c.server_lost(1) == [] and c.server_frame({"type": "welcome"}, 1) == []


# -- private chat ---------------------------------------------------------

def connect(user="hans", token="T", port=1, host="10.0.0.2"):
    return {"type": "private_connect", "user": user, "host": host, "port": port, "token": token}


def open_as_requester(c, peer=1, now=1.0, asked=False):
    """yoda asks hans (unless ``asked``); the server says where hans listens; the peer connection completes."""
    if not asked:
        ask(c, now=now)
    assert c.server_frame({"type": "private_connect", "user": "hans", "host": "127.0.0.1", "port": 9000,
                           "token": "T"}, now) == [ConnectPeer("hans", "127.0.0.1", 9000)]
    assert c.peer_connected(peer, "hans", now) == [
        ToPeer(peer, {"type": "peer_hello", "user": "yoda", "token": "T"}), SetTimer(("peer", peer), now + 10)]
    return c.peer_frame(peer, {"type": "peer_welcome", "user": "hans"}, now)


def open_as_target(c, peer=1, now=1.0):
    """hans asks yoda, yoda says y, hans's client connects and presents the token."""
    c.server_frame({"type": "private_request", "from": "hans"}, now)
    assert c.line("y", now) == [ToServer({"type": "private_answer", "user": "hans", "accept": True}),
                                Print("Accepted private messaging with hans"), ToServer(PING)]
    assert c.server_frame({"type": "private_expect", "user": "hans", "token": "T"}, now) == [
        SetTimer(("expect", "hans"), now + 30), ToServer({"type": "private_ready", "user": "hans", "token": "T"})]
    assert c.server_frame(PONG, now) == []
    assert c.peer_accepted(peer, now) == [SetTimer(("peer", peer), now + 10)]
    return c.peer_frame(peer, {"type": "peer_hello", "user": "hans", "token": "T"}, now)


def test_requester_side_of_a_private_chat():
    c = logged_in("yoda")
    assert c.line("startprivate hans", 1) == [ToServer({"type": "startprivate", "user": "hans"}), ToServer(PING)]
    assert c.server_frame(PONG, 1) == []
    assert open_as_requester(c, asked=True) == [CancelTimer(("peer", 1)), Print("Start private messaging with hans")]
    assert c.chats() == ["hans"]
    assert c.line("private hans the plans", 2) == [ToPeer(1, {"type": "private", "text": "the plans"}),
                                                   ToServer({"type": "activity"})]
    assert c.peer_frame(1, {"type": "private", "text": "got them"}, 2) == [Print("hans(private): got them")]
    assert c.peer_frame(1, {"type": "private", "text": 5}, 2) == []
    assert prints(c.line("startprivate hans", 2)) == ["Error. Private messaging with hans is already enabled"]
    assert c.line("stopprivate hans", 3) == [ClosePeer(1), Print("Private messaging with hans stopped"),
                                             ToServer({"type": "activity"})]
    assert prints(c.line("private hans more", 3)) == ["Error. Private messaging to hans not enabled"]
    assert c.peer_closed(1, 3) == []       # the host does not report it, and if it did nothing happens


def test_target_side_of_a_private_chat():
    c = logged_in("yoda")
    assert open_as_target(c) == [CancelTimer(("expect", "hans")), ToPeer(1, {"type": "peer_welcome", "user": "yoda"}),
                                 CancelTimer(("peer", 1)), Print("Start private messaging with hans")]
    assert c.peer_closed(1, 5) == [CancelTimer(("peer", 1)), Print("Private messaging with hans stopped")]
    assert c.chats() == []


def test_questions_are_answered_oldest_first_while_commands_keep_working():
    c = logged_in("yoda")
    c.server_frame({"type": "private_request", "from": "hans"}, 1)
    c.server_frame({"type": "private_request", "from": "luke"}, 1)
    assert c.line("whoelse", 1) == [ToServer({"type": "whoelse"}), ToServer(PING)]
    c.server_frame(PONG, 1)
    assert c.line("N", 1) == [ToServer({"type": "private_answer", "user": "hans", "accept": False}),
                              Print("Declined private messaging with hans"), ToServer(PING)]   # whose request
    c.server_frame(PONG, 1)
    assert c.line("y", 1) == [ToServer({"type": "private_answer", "user": "luke", "accept": True}),
                              Print("Accepted private messaging with luke"), ToServer(PING)]
    c.server_frame(PONG, 1)
    assert prints(c.line("y", 1)) == ["Error. Invalid command"]


def test_a_cancelled_request_closes_its_question_and_token():
    c = logged_in("yoda")
    c.server_frame({"type": "private_request", "from": "hans"}, 1)
    assert c.server_frame({"type": "private_cancelled", "user": "hans"}, 1) == [
        Print("Private messaging request with hans was cancelled")]
    assert prints(c.line("y", 1)) == ["Error. Invalid command"]
    c.server_frame({"type": "private_expect", "user": "luke", "token": "L"}, 1)
    assert c.server_frame({"type": "private_cancelled", "user": "luke"}, 1) == [
        CancelTimer(("expect", "luke")), Print("Private messaging request with luke was cancelled")]
    c.peer_accepted(4, 1)
    assert c.peer_frame(4, {"type": "peer_hello", "user": "luke", "token": "L"}, 1) == [
        CancelTimer(("peer", 4)), ClosePeer(4)]


@pytest.mark.parametrize("hello", [
    {"type": "peer_hello", "user": "hans", "token": "forged"},
    {"type": "peer_hello", "user": "luke", "token": "T"},
    {"type": "peer_hello", "user": "hans"},
    {"type": "private", "text": "let me in"},
    ["not", "a", "frame"],
])
def test_a_peer_without_a_valid_token_is_dropped_silently(hello):
    c = logged_in("yoda")
    c.server_frame({"type": "private_expect", "user": "hans", "token": "T"}, 1)
    c.peer_accepted(2, 1)
    effects = c.peer_frame(2, hello, 1)
    assert ClosePeer(2) in effects and prints(effects) == []
    assert c.chats() == []


def test_a_token_is_good_once_and_until_it_expires():
    c = logged_in("yoda")
    open_as_target(c)
    c.peer_accepted(2, 2)
    assert ClosePeer(2) in c.peer_frame(2, {"type": "peer_hello", "user": "hans", "token": "T"}, 2)
    c.server_frame({"type": "private_expect", "user": "luke", "token": "L"}, 3)
    assert c.timer_fired(("expect", "luke"), 33) == []
    c.peer_accepted(3, 34)
    assert ClosePeer(3) in c.peer_frame(3, {"type": "peer_hello", "user": "luke", "token": "L"}, 34)


def test_a_silent_peer_is_dropped_at_its_deadline():
    c = logged_in("yoda")
    c.peer_accepted(5, 1)
    assert c.timer_fired(("peer", 5), 11) == [ClosePeer(5), CancelTimer(("peer", 5))]
    assert c.timer_fired(("peer", 5), 12) == []


def test_a_target_that_never_welcomes_is_reported():
    c = logged_in("yoda")
    ask(c)
    c.server_frame(connect(), 1)
    c.peer_connected(1, "hans", 1)
    assert prints(c.timer_fired(("peer", 1), 11)) == [
        "Error. Private messaging with hans could not start: the peer did not answer"]
    ask(c, now=12)
    c.server_frame(connect(token="U"), 12)
    c.peer_connected(2, "hans", 12)
    assert prints(c.peer_closed(2, 12)) == ["Error. hans did not accept the private connection"]


def test_connecting_to_a_peer_can_fail():
    c = logged_in("yoda")
    ask(c)
    assert c.server_frame(connect(), 1) == [ConnectPeer("hans", "10.0.0.2", 1)]
    assert prints(c.line("startprivate hans", 1)) == ["Error. Private messaging with hans is starting already"]
    assert c.server_frame(connect(), 1) == []
    assert c.peer_failed("hans", "Connection refused", 1) == [
        Print("Error. Cannot reach hans for private messaging: Connection refused")]
    assert c.peer_failed("hans", "again", 1) == []
    assert c.peer_connected(3, "hans", 1) == [ClosePeer(3)]   # nobody asked for this one any more
    assert c.server_frame({"type": "private_connect", "user": "hans", "port": "x"}, 1) == []


def test_blocking_the_other_side_ends_the_chat():
    c = logged_in("yoda")
    open_as_requester(c)
    assert c.server_frame({"type": "blocked", "user": "hans"}, 2) == [
        Print("hans is blocked"), ClosePeer(1), Print("Private messaging with hans stopped")]


def test_a_bad_peer_frame_ends_the_chat():
    c = logged_in("yoda")
    open_as_target(c)
    assert c.peer_bad_frame(1, "invalid JSON", 2) == [ClosePeer(1), CancelTimer(("peer", 1)),
                                                      Print("Private messaging with hans stopped")]
    assert c.peer_bad_frame(1, "again", 2) == []
    assert c.peer_frame(1, {"type": "private", "text": "x"}, 2) == []


def test_leaving_stops_every_chat_first():
    c = logged_in("yoda")
    open_as_requester(c, peer=1)
    c.peer_accepted(2, 1)                       # a stranger still saying nothing
    c.line("logout", 2)
    assert c.server_frame({"type": "bye", "reason": "logout"}, 2) == [
        ClosePeer(1), Print("Private messaging with hans stopped"), ClosePeer(2), Print("Logged out"), Exit(0)]


def test_events_after_exit_do_nothing():
    c = logged_in("yoda")
    c.server_frame({"type": "bye", "reason": "timeout"}, 1)
    assert c.line("whoelse", 2) == []
    assert c.timer_fired(("ack",), 2) == []
    assert c.server_bad_frame("x", 2) == []
    assert c.listening("h", 1, 2) == []
    assert c.peer_connected(1, "hans", 2) == [ClosePeer(1)]


def test_a_block_also_ends_a_chat_still_being_set_up():
    c = logged_in("yoda")
    ask(c)
    c.server_frame(connect(), 1)
    c.peer_connected(1, "hans", 1)                      # hello sent, no welcome yet
    c.server_frame({"type": "private_expect", "user": "luke", "token": "L"}, 1)
    ask(c, "leia")
    c.server_frame(connect("leia", "E", 2), 1)
    assert c.server_frame({"type": "blocked", "user": "hans"}, 2) == [
        Print("hans is blocked"), ClosePeer(1), CancelTimer(("peer", 1))]
    assert c.peer_frame(1, {"type": "peer_welcome", "user": "hans"}, 2) == []
    assert c.server_frame({"type": "blocked", "user": "luke"}, 2) == [
        Print("luke is blocked"), CancelTimer(("expect", "luke"))]
    c.peer_accepted(2, 2)
    assert ClosePeer(2) in c.peer_frame(2, {"type": "peer_hello", "user": "luke", "token": "L"}, 2)
    c.server_frame({"type": "blocked", "user": "leia"}, 2)
    assert c.peer_connected(3, "leia", 2) == [ClosePeer(3)]
    assert c.chats() == []


# -- text is never code ---------------------------------------------------

ESC_TEXT = "\x1b]0;pwned\x07\x1b[2J\x1bc\rWelcome to the greatest messaging application ever!\nhans: \x85\x7fpassword?"
ESC_SHOWN = "^[]0;pwned^G^[[2J^[c^MWelcome to the greatest messaging application ever!^Jhans: <U+0085>^?password?"
EVIL = "vader\x1b[2J\nyoda"
EVIL_SHOWN = "vader^[[2J^Jyoda"
# A message's text keeps its line breaks: the next line is indented under the sender (at most 16 columns).
ESC_LINES = ESC_SHOWN.replace("^J", "\n" + " " * 16)


def shows_no_control(effects):
    """Every Print is free of control characters but for the client's own line breaks."""
    for text in prints(effects):
        assert not CONTROL.search(text.replace("\n", "")), text
    return prints(effects)


@pytest.mark.parametrize("frame, words", [
    ({"type": "message", "from": EVIL, "text": ESC_TEXT}, f"{EVIL_SHOWN}: {ESC_LINES}"),
    ({"type": "message", "from": EVIL, "text": ESC_TEXT, "broadcast": True}, f"[broadcast] {EVIL_SHOWN}: {ESC_LINES}"),
    ({"type": "message", "from": EVIL, "text": ESC_TEXT, "id": 7}, f"{EVIL_SHOWN}: {ESC_LINES}"),
    ({"type": "presence", "user": EVIL, "online": True}, f"{EVIL_SHOWN} logged in"),
    ({"type": "stored", "to": EVIL}, f"{EVIL_SHOWN} is offline; the message will be delivered when they log in"),
    ({"type": "blocked", "user": EVIL}, f"{EVIL_SHOWN} is blocked"),
    ({"type": "unblocked", "user": EVIL}, f"{EVIL_SHOWN} is unblocked"),
    ({"type": "private_request", "from": EVIL}, f"{EVIL_SHOWN} would like to start private messaging. Accept? (y/n)"),
    ({"type": "private_cancelled", "user": EVIL}, f"Private messaging request with {EVIL_SHOWN} was cancelled"),
    ({"type": "notice", "text": ESC_TEXT}, f"[server] {ESC_SHOWN}"),
    ({"type": "bye", "reason": "operator", "text": EVIL},
     f"Error. You were disconnected by the operator: {EVIL_SHOWN}"),
    ({"type": "error", "code": "bad_frame", "detail": ESC_TEXT}, f"Error. Bad request: {ESC_SHOWN}"),
    ({"type": "error", "code": "bad_argument", "detail": ESC_TEXT}, f"Error. {ESC_SHOWN}"),
    ({"type": "error", "code": "offline", "user": EVIL}, f"Error. {EVIL_SHOWN} is offline"),
    ({"type": "error", "code": "self", "command": EVIL}, "Error. Not with yourself"),
    ({"type": "error", "code": ESC_TEXT}, f"Error. {ESC_SHOWN}"),
    ({"type": "error", "code": "rate_limited", "retry": ESC_TEXT}, f"Error. You are sending too fast; try again in "
                                                                    f"{ESC_SHOWN} s"),
])
def test_what_the_server_sends_is_shown_with_control_characters_visible(frame, words):
    c = logged_in("yoda")
    shown = shows_no_control(c.server_frame(frame, 1))
    assert shown[0] == words


def test_a_user_list_shows_each_name_on_its_own_line_made_visible():
    c = logged_in("yoda")
    c.line("whoelse", 1)
    assert shows_no_control(c.server_frame({"type": "users", "names": [EVIL, "luke", 5]}, 1)) == [
        f"{EVIL_SHOWN}\nluke"]
    assert c.online_users() == {EVIL_SHOWN, "luke"}   # completion never types a control character either


def test_fatal_words_and_login_errors_are_made_visible_too():
    c = ChatClient()
    c.start(0)
    assert shows_no_control(c.server_frame({"type": "hello", "version": "1\x1b[2J"}, 0)) == [
        "Error. Server speaks protocol version 1^[[2J"]
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("yoda", 0)
    assert shows_no_control(c.server_frame({"type": "error", "code": "already_logged_in", "user": EVIL}, 0)) == [
        f"Error. {EVIL_SHOWN} is already logged in"]


def test_a_peer_text_is_shown_made_visible():
    c = logged_in("yoda")
    open_as_requester(c)
    assert shows_no_control(c.peer_frame(1, {"type": "private", "text": ESC_TEXT}, 2)) == [
        "hans(private): " + ESC_SHOWN.replace("^J", "\n" + " " * len("hans(private): "))]


def test_the_client_keeps_its_own_line_breaks():
    c = logged_in("yoda")
    assert prints(c.line("help", 1)) == [HELP]
    assert "\n" in HELP


@pytest.mark.parametrize("line", ["message hans \x1b[2Jhi", "broadcast hi\rthere", "broadcast a\x85b",
                                  "message hans a\x7f", "private hans \x1b]0;pwned\x07"])
def test_text_with_control_characters_is_not_sent(line):
    c = logged_in("yoda")
    open_as_requester(c)
    effects = c.line(line, 2)
    assert prints(effects) == ["Error. A message cannot contain control characters"]
    assert not [e for e in effects if type(e) is ToPeer] and frames(effects) == [{"type": "activity"}]


def test_a_tab_is_text():
    c = logged_in("yoda")
    assert frames(c.line("broadcast a\tb", 1))[0] == {"type": "broadcast", "text": "a\tb"}


def test_the_servers_control_characters_error_has_the_spec_words():
    c = logged_in("yoda")
    assert prints(c.server_frame({"type": "error", "code": "control_characters"}, 1)) == [
        "Error. A message cannot contain control characters"]


# -- peer addresses -------------------------------------------------------

def test_a_private_connect_nobody_asked_for_is_ignored():
    c = logged_in("yoda")
    assert c.server_frame(connect(), 1) == []
    ask(c, "luke")
    assert c.server_frame(connect(), 1) == []                       # luke was asked, not hans
    assert c.server_frame(connect("luke"), 1) == [ConnectPeer("luke", "10.0.0.2", 1)]
    assert c.peer_failed("luke", "Connection refused", 1)
    assert c.server_frame(connect("luke"), 1) == []                 # one answer per request


@pytest.mark.parametrize("code", ["offline", "private_blocked", "private_unavailable", "private_declined"])
def test_a_refused_request_is_forgotten(code):
    c = logged_in("yoda")
    ask(c)
    c.server_frame({"type": "error", "code": code, "user": "hans"}, 1)
    assert c.server_frame(connect(), 1) == []


@pytest.mark.parametrize("frame", [{"type": "private_cancelled", "user": "hans"}, {"type": "blocked", "user": "hans"}])
def test_a_cancelled_request_is_forgotten(frame):
    c = logged_in("yoda")
    ask(c)
    c.server_frame(frame, 1)
    assert c.server_frame(connect(), 1) == []


def test_a_pending_request_stays_asked():
    c = logged_in("yoda")
    ask(c)
    ask(c)
    c.server_frame({"type": "error", "code": "private_pending", "user": "hans"}, 1)
    assert c.server_frame(connect(), 1) == [ConnectPeer("hans", "10.0.0.2", 1)]


@pytest.mark.parametrize("host", ["evil.example", "localhost", "", "10.0.0.2.example", "0x7f.1"])
def test_a_host_name_is_refused_never_resolved(host):
    c = logged_in("yoda")
    ask(c)
    effects = c.server_frame(connect(host=host), 1)
    assert not [e for e in effects if type(e) is ConnectPeer]
    assert prints(effects)[0].startswith("Error. Cannot reach hans for private messaging: the server named a host")


@pytest.mark.parametrize("host, port", [("192.0.2.1", 5000), ("::ffff:192.0.2.1", 5000), ("0.0.0.0", 9),
                                        ("::", 9), ("224.0.0.1", 9), ("10.0.0.2", 0), ("10.0.0.2", 70000)])
def test_the_servers_own_address_and_no_address_are_refused(host, port):
    c = logged_in("yoda", server=("192.0.2.1", 5000))
    ask(c)
    effects = c.server_frame(connect(host=host, port=port), 1)
    assert not [e for e in effects if type(e) is ConnectPeer]
    assert prints(effects) == [f"Error. Cannot reach hans for private messaging: {host} port {port} is not "
                               "an address of theirs"]


def test_on_loopback_any_loopback_address_with_the_servers_port_is_the_server():
    c = logged_in("yoda", server=("127.0.0.1", 5000))
    for host in ("127.0.0.2", "::ffff:127.0.0.1", "127.0.0.1"):
        ask(c)
        assert not [e for e in c.server_frame(connect(host=host, port=5000), 1) if type(e) is ConnectPeer]
    ask(c)
    assert c.server_frame(connect(host="127.0.0.2", port=5001), 1) == [ConnectPeer("hans", "127.0.0.2", 5001)]
    ask(c, "luke")
    assert c.server_frame(connect("luke", host="::ffff:10.1.2.3", port=5000), 1) == [
        ConnectPeer("luke", "10.1.2.3", 5000)]


@pytest.mark.parametrize("frame", [{"type": "blocked", "user": ["hans"]}, {"type": "private_cancelled", "user": {}},
                                   {"type": "private_request", "from": ["hans"]}])
def test_a_user_that_is_not_a_string_is_ignored(frame):
    c = logged_in("yoda")
    ask(c)
    assert c.server_frame(frame, 1) == []
    assert c.server_frame(connect(), 1) == [ConnectPeer("hans", "10.0.0.2", 1)]   # the request is still open


@pytest.mark.parametrize("frame, words", [
    ({"type": "error", "code": "a{b}{"}, "Error. a{b}{"),                               # no template, just a code
    ({"type": "error", "code": "self", "command": ["message"]}, "Error. Not with yourself"),
    ({"type": "error", "code": "store_full", "command": {}, "user": "hans"},
     "Error. The server cannot keep messages right now; hans did not get yours"),
])
def test_an_odd_error_code_or_command_is_shown_not_obeyed(frame, words):
    c = logged_in()
    assert prints(c.server_frame(frame, 1)) == [words]


def test_a_login_error_after_the_login_is_an_unknown_code():
    c = logged_in()
    assert c.server_frame({"type": "error", "code": "invalid_password"}, 1) == [Print("Error. invalid_password")]


@pytest.mark.parametrize("params", [(Param("text", text=True), Param("user")),
                                    (Param("a", optional=True), Param("b"))])
def test_a_command_that_could_not_be_parsed_is_refused_at_its_declaration(params):
    with pytest.raises(ValueError):
        Command("odd", params, "cannot be parsed", lambda client, *words, now: [])
