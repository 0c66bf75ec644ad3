"""The client's ``password`` command (sans-I/O): three secret prompts, the two new passwords compared here, one
frame to the server, and the next line held until its answer; giving up, and every answer in words."""
import pytest

from reactor.client.effects import Exit, Print, Prompt, SetTimer, ToServer
from reactor.client.rules import HELP
from tests.support import NONCE, PING, PONG, frames, logged_in

ACTIVITY = ToServer({"type": "activity"})
CURRENT = Prompt("Current password: ", secret=True)
NEW = Prompt("New password: ", secret=True)
AGAIN = Prompt("New password again: ", secret=True)
COMMAND = Prompt("", remember=True)
CHANGE = {"type": "change_password", "current": "wise@!man", "new": "new*secret"}


def asked(c):
    """``password`` typed and the three passwords given; what the last line did."""
    assert c.line("password", 1) == [CURRENT, ACTIVITY]
    assert c.line("wise@!man", 1) == [NEW, ACTIVITY]
    assert c.line("new*secret", 1) == [AGAIN, ACTIVITY]
    return c.line("  new*secret ", 1)


def test_the_three_passwords_are_asked_in_secret_and_sent_in_one_frame_whose_answer_the_next_line_waits_for():
    c = logged_in()
    assert asked(c) == [ToServer(CHANGE), COMMAND]   # no ping: the answer itself lets the next line go
    assert c.line("whoelse", 2) == []                 # waits
    assert c.server_frame({"type": "password_changed"}, 3) == [
        Print("Password changed"), ToServer({"type": "whoelse"}), ToServer(PING)]


def test_new_passwords_that_differ_are_not_sent():
    c = logged_in()
    c.line("password", 1)
    c.line("wise@!man", 1)
    c.line("new*secret", 1)
    assert c.line("new*secrets", 1) == [Print("Error. The new passwords differ; your password was not changed"),
                                        COMMAND, ACTIVITY]
    assert frames(c.line("whoelse", 1)) == [{"type": "whoelse"}, PING]   # a command again


@pytest.mark.parametrize("at", [0, 1, 2])
def test_an_empty_line_at_any_of_the_prompts_gives_up(at):
    c = logged_in()
    c.line("password", 1)
    for _ in range(at):
        c.line("something", 1)
    assert c.line("  ", 1) == [Print("Password not changed"), COMMAND, ACTIVITY]
    assert frames(c.line("whoelse", 1)) == [{"type": "whoelse"}, PING]


def test_ctrl_c_at_a_password_prompt_gives_up_and_on_the_command_line_says_how_to_quit():
    c = logged_in()
    c.line("password", 1)
    c.line("wise@!man", 1)
    assert c.ctrl_c(True, 1) == [Print("Password not changed"), COMMAND]
    assert c.ctrl_c(True, 1) == [Print("To quit, type logout or press Ctrl-D")]


@pytest.mark.parametrize("error, words", [
    ({"code": "wrong_password"}, "Error. Wrong password; your password was not changed"),
    ({"code": "password_refused", "detail": "a password needs at least 8 characters"},
     "Error. That password cannot be used: a password needs at least 8 characters"),
    ({"code": "password_unchangeable"}, "Error. Passwords cannot be changed on this server"),
    ({"code": "password_not_changed", "retry": 7}, "Error. Your password was not changed; try again later (in 7 s)"),
    ({"code": "password_not_changed"}, "Error. Your password was not changed; try again later"),
    ({"code": "account_changed"}, "Error. Your account was changed meanwhile; your password was not changed"),
    ({"code": "bad_frame", "detail": "unknown frame type 'change_password'"},   # an older server
     "Error. Bad request: unknown frame type 'change_password'"),
])
def test_each_refusal_is_said_and_lets_the_next_line_go(error, words):
    c = logged_in()
    asked(c)
    c.line("whoelse", 2)
    assert c.server_frame({"type": "error", **error}, 3) == [Print(words), ToServer({"type": "whoelse"}),
                                                             ToServer(PING)]


def test_an_error_that_answers_something_else_does_not_let_the_next_line_go():
    """(cluster mode: the fate of an earlier message may come late)"""
    c = logged_in()
    asked(c)
    c.line("whoelse", 2)
    assert c.server_frame({"type": "error", "code": "queue_full", "user": "hans"}, 3) == [
        Print("Error. hans has too many messages waiting; yours was not kept")]
    assert frames(c.server_frame({"type": "password_changed"}, 3)) == [{"type": "whoelse"}, PING]


# -- beside the outbox (reactor/client/outbox.py): a message the server could not keep goes again meanwhile ---------

REF = f"{NONCE}.1"
LATE_STORE_FULL = {"type": "error", "code": "store_full", "command": "message", "user": "hans", "ref": REF}
WAITS = Print("Message to hans not confirmed yet; trying again in 1 s")
RETRY = ToServer({"type": "message", "to": "hans", "text": "hi", "ref": REF, "retry": True})


def sent_to_hans(c):
    """A message to hans taken at its pong (cluster mode: hans is on another node, whose answer may come late)."""
    assert frames(c.line("message hans hi", 1)) == [{"type": "message", "to": "hans", "text": "hi", "ref": REF}, PING]
    assert c.server_frame(PONG, 1) == []


def test_a_message_goes_again_while_a_password_prompt_is_up_and_the_password_typed_meanwhile_waits_hidden():
    c = logged_in()
    sent_to_hans(c)
    assert c.line("password", 1) == [CURRENT, ACTIVITY]
    assert c.server_frame(LATE_STORE_FULL, 1.2) == [WAITS, SetTimer(("retry", REF), 2.2)]
    assert c.line("wise@!man", 1.3) == [Prompt("", secret=True)]   # waits for the message, not echoed
    assert c.timer_fired(("retry", REF), 2.2) == [RETRY, ToServer(PING)]
    assert c.server_frame(PONG, 2.3) == [Print("Message to hans sent"), NEW, ACTIVITY]   # the dialogue goes on
    assert c.line("new*secret", 2.4) == [AGAIN, ACTIVITY]
    assert c.line("new*secret", 2.4) == [ToServer(CHANGE), COMMAND]


@pytest.mark.parametrize("answer, words", [({"type": "password_changed"}, "Password changed"),
                                           ({"type": "error", "code": "wrong_password"},
                                            "Error. Wrong password; your password was not changed")])
def test_a_message_that_must_go_again_while_the_change_is_answered_goes_at_its_answer_and_the_lines_wait_for_it(
        answer, words):
    c = logged_in()
    sent_to_hans(c)
    asked(c)
    assert c.server_frame(LATE_STORE_FULL, 1.2) == [WAITS]   # no timer yet: its ping would be a second one out
    assert c.line("whoelse", 1.3) == []
    assert c.server_frame(answer, 1.5) == [Print(words), SetTimer(("retry", REF), 2.5)]   # whoelse still waits
    assert c.timer_fired(("retry", REF), 2.5) == [RETRY, ToServer(PING)]
    assert c.server_frame(PONG, 2.6) == [Print("Message to hans sent"), ToServer({"type": "whoelse"}),
                                         ToServer(PING)]


def test_the_third_wrong_password_ends_the_client_as_at_a_login():
    c = logged_in()
    asked(c)
    effects = c.server_frame({"type": "error", "code": "account_blocked", "retry": 30}, 3)
    assert Print("Invalid Password. Your account has been blocked. Please try again later (in 30 s)") in effects
    assert effects[-1] == Exit(1)


def test_what_is_typed_ahead_after_a_password_command_is_hidden():
    """Typed while the last command's answer is awaited: the lines after ``password`` are passwords."""
    c = logged_in()
    assert frames(c.line("whoelse", 1)) == [{"type": "whoelse"}, PING]
    assert c.line("message hans hi", 1) == []
    assert c.line("password", 1) == [Prompt("", secret=True)]
    assert c.line("wise@!man", 1) == []
    effects = c.server_frame({"type": "users", "names": []}, 2) + c.server_frame(PONG, 2)
    assert frames(effects) == [{"type": "message", "to": "hans", "text": "hi", "ref": "n0nce.1"}, PING]
    assert c.server_frame(PONG, 2) == [CURRENT, ACTIVITY, NEW, ACTIVITY]   # the dialogue takes the typed-ahead line


def test_help_lists_the_command():
    assert "  password                  change your password (asked for without echo)" in HELP.splitlines()
    c = logged_in()
    assert c.line("password now", 1) == [Print("Error. Usage: password"), ACTIVITY]
