"""The client's logic where people and scripts wait or give up: Ctrl-C at a prompt, a locked account, the warning
before the inactivity logout and the draft kept after it, and the retries of a login the server could not take at
once (busy, try_again) or of a command over the rate limit."""
import pytest

from reactor.client.effects import Exit, Print, Prompt, Reconnect, SetTimer, ShowDraft, ToServer
from reactor.client.retries import RESENDS
from reactor.client.rules import ChatClient
from reactor.client.words import QUIT_HINT
from tests.support import NONCE, PONG, frames, logged_in

HIDDEN = Prompt("", secret=True)


def prints(effects):
    return [e.text for e in effects if type(e) is Print]


def at_username(**options):
    c = ChatClient(**options)
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    return c


def at_password(**options):
    c = at_username(**options)
    c.line("yoda", 0)
    c.server_frame({"type": "username_ok"}, 0)
    return c


# -- Ctrl-C ----------------------------------------------------------------------------------

@pytest.mark.parametrize("where", [ChatClient, at_username, at_password], ids=["connecting", "username", "password"])
@pytest.mark.parametrize("was_empty", [True, False])
def test_ctrl_c_before_the_login_ends_the_client_and_sends_nothing(where, was_empty):
    c = where()
    if where is ChatClient:
        c.start(0)
    assert c.ctrl_c(was_empty, 1) == [Exit(0)]
    assert c.line("logout", 1) == []          # (not sent as a password)


def test_ctrl_c_while_a_password_is_checked_ends_the_client_too():
    c = at_password()
    assert frames(c.line("wise@!man", 0)) == [{"type": "password", "password": "wise@!man"}]
    assert c.ctrl_c(True, 1) == [Exit(0)]


def test_ctrl_c_once_logged_in_says_how_to_quit_on_an_empty_line_only():
    c = logged_in("yoda")
    assert c.ctrl_c(True, 1) == [Print(QUIT_HINT)]
    assert c.ctrl_c(False, 1) == []
    assert frames(c.line("whoelse", 1)) == [{"type": "whoelse"}, {"type": "ping"}]   # still logged in
    c.server_frame(PONG, 1)
    c.line("logout", 2)
    assert c.ctrl_c(True, 2) == []            # leaving already


def test_the_quit_hint_is_the_clients_words():
    assert QUIT_HINT == "To quit, type logout or press Ctrl-D"


# -- a locked account ------------------------------------------------------------------------

def test_a_lock_told_at_the_user_name_says_how_long_and_drops_the_password_being_typed():
    c = at_username()
    c.line("vader", 0)
    c.line("falcon*solo", 0)                  # typed ahead of the answer
    effects = c.server_frame({"type": "error", "code": "account_locked", "retry": 7}, 0)
    assert effects == [Print("Your account is blocked due to multiple login failures. Please try again later "
                             "(in 7 s)"), Exit(1, drain=True)]
    assert ToServer({"type": "password", "password": "falcon*solo"}) not in effects


def test_a_fatal_error_once_logged_in_drops_nothing():
    c = logged_in("yoda")
    assert c.server_frame({"type": "bye", "reason": "shutdown"}, 1)[-1] == Exit(1)


# -- the inactivity warning, and the draft after the logout ------------------------------------

def logged_in_to(timeout, now=0.0, **options):
    """A client logged in to a server whose hello said its inactivity ``timeout``; its idle timer's effects."""
    c = ChatClient(**options)
    c.start(now)
    c.server_frame({"type": "hello", "version": 2, "timeout": timeout}, now)
    c.line("yoda", now)
    c.server_frame({"type": "username_ok"}, now)
    c.line("wise@!man", now)
    welcome = c.server_frame({"type": "welcome", "user": "yoda"}, now)
    c.server_frame(PONG, now)
    return c, [e for e in welcome if type(e) is SetTimer]


def test_the_warning_comes_10_s_before_the_inactivity_logout_once():
    c, armed = logged_in_to(300)
    assert armed == [SetTimer(("idle",), 290)]
    assert c.timer_fired(("idle",), 290) == [Print("You will be logged out in 10 s for inactivity")]
    assert c.timer_fired(("idle",), 295) == []                    # once: no timer is armed any more


def test_activity_moves_the_warning_and_typing_alone_does_not():
    c, _ = logged_in_to(300)
    assert frames(c.line("whoelse", 100)) == [{"type": "whoelse"}, {"type": "ping"}]   # no new timer for it
    c.server_frame(PONG, 100)
    assert c.timer_fired(("idle",), 290) == [SetTimer(("idle",), 390)]                # fired early: armed again
    assert c.timer_fired(("idle",), 390) == [Print("You will be logged out in 10 s for inactivity")]
    effects = c.line("help", 395)                               # a line the server does not see counts too
    assert ToServer({"type": "activity"}) in effects and SetTimer(("idle",), 685) in effects   # (warned: armed anew)
    assert SetTimer(("idle",), 686) not in c.line("whoelse", 396)    # armed already


def test_a_ping_is_no_activity_but_an_ack_is():
    c, _ = logged_in_to(300)
    c.server_frame({"type": "message", "from": "hans", "text": "kept", "id": 4}, 50)
    assert frames(c.timer_fired(("ack",), 50)) == [{"type": "ack", "ids": [4]}]
    assert c.timer_fired(("idle",), 290) == [SetTimer(("idle",), 340)]


@pytest.mark.parametrize("timeout, lead", [(20, 10), (19.9, 9), (4, 2), (3, 1), (2, 1)])
def test_a_short_timeout_warns_half_of_it_ahead_in_whole_seconds(timeout, lead):
    _, armed = logged_in_to(timeout)
    assert armed == [SetTimer(("idle",), timeout - lead)]


@pytest.mark.parametrize("timeout", [1.9, 0.5, 0, -5, "300", True, float("inf"), float("nan"), None])
def test_no_warning_for_a_timeout_too_short_or_unsaid(timeout):
    _, armed = logged_in_to(timeout)
    assert armed == []


def test_the_draft_is_shown_when_the_session_ends_under_the_user_not_at_a_logout():
    c, _ = logged_in_to(300)
    assert c.server_frame({"type": "bye", "reason": "timeout"}, 300) == [
        Print("You have been logged out due to inactivity"), ShowDraft("Not sent, as you left it:"), Exit(0)]
    c, _ = logged_in_to(300)
    c.line("logout", 1)
    assert c.server_frame({"type": "bye", "reason": "logout"}, 1) == [Print("Logged out"), Exit(0)]


# -- retries: a busy server, a password not checked yet, a script over the rate limit -------------

def test_a_busy_server_is_connected_to_again_and_the_lines_typed_meanwhile_wait():
    c = ChatClient()
    c.start(0)
    assert c.line("yoda", 0) == [HIDDEN]
    assert c.server_frame({"type": "error", "code": "busy"}, 0) == [
        Print("Server busy; trying again in 1 s"), SetTimer(("reconnect",), 1)]
    assert c.server_lost(0.1) == []                       # not lost: the client connects again
    assert c.timer_fired(("reconnect",), 1) == [Reconnect()]
    c.start(1)
    assert frames(c.server_frame({"type": "hello", "version": 2}, 1)) == [{"type": "username", "username": "yoda"}]
    assert c.server_frame({"type": "error", "code": "busy"}, 1) == [   # (only before the hello)
        Print("Error. Server busy, try again later"), Exit(1, drain=True)]


def test_the_connection_lost_after_a_busy_answer_before_the_next_try_is_no_loss_but_after_it_is():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "error", "code": "busy"}, 0)
    c.timer_fired(("reconnect",), 1)
    c.start(1)
    assert c.server_lost(2) == [Print("Error. Connection to server lost"), Exit(1)]


def scripted_client():
    c, _ = logged_in_to(300, scripted=True, nonce=NONCE)
    return c


def test_a_script_sends_a_command_refused_for_the_rate_limit_again_after_the_wait():
    c = scripted_client()
    message = {"type": "message", "to": "hans", "text": "hi", "ref": f"{NONCE}.1"}   # (a resend keeps its ref)
    assert frames(c.line("message hans hi", 1)) == [message, {"type": "ping"}]
    assert c.line("whoelse", 1) == []                     # waits for the message's answer
    assert c.server_frame({"type": "error", "code": "rate_limited", "command": "message", "retry": 2}, 1) == [
        Print("Sending too fast; trying again in 2 s"), SetTimer(("resend",), 3)]
    assert frames(c.server_frame(PONG, 1)) == []          # the next line still waits: the message goes first
    assert frames(c.timer_fired(("resend",), 3)) == [message, {"type": "ping"}]
    assert frames(c.server_frame(PONG, 3)) == [{"type": "whoelse"}, {"type": "ping"}]


def test_a_resend_due_before_the_refusals_pong_still_waits_for_its_own_pong():
    """A wait of 0 s: the command may go again before the pong that followed its refusal comes; that pong
    answers nothing, and the next line waits for the resent command's."""
    c = scripted_client()
    c.line("message hans hi", 1)
    c.line("whoelse", 1)
    c.server_frame({"type": "error", "code": "rate_limited", "command": "message", "retry": 0}, 1)
    assert frames(c.timer_fired(("resend",), 1)) == [
        {"type": "message", "to": "hans", "text": "hi", "ref": f"{NONCE}.1"}, {"type": "ping"}]
    assert frames(c.server_frame(PONG, 1)) == []          # the refusal's pong
    assert frames(c.server_frame(PONG, 1)) == [{"type": "whoelse"}, {"type": "ping"}]   # the message's


def test_a_script_whose_command_is_refused_after_every_resend_exits_1():
    c = scripted_client()
    c.line("broadcast hi", 1)
    refused = {"type": "error", "code": "rate_limited", "command": "broadcast", "retry": 1}
    for n in range(RESENDS):
        assert prints(c.server_frame(refused, 1 + n)) == ["Sending too fast; trying again in 1 s"]
        c.server_frame(PONG, 1 + n)
        c.timer_fired(("resend",), 2 + n)
    assert prints(c.server_frame(refused, 9)) == ["Error. You are sending too fast; try again in 1 s"]
    c.server_frame(PONG, 9)
    c.line("logout", 9)
    assert c.server_frame({"type": "bye", "reason": "logout"}, 9) == [Print("Logged out"), Exit(1)]


def test_a_script_whose_commands_went_through_in_the_end_exits_0():
    c = scripted_client()
    c.line("broadcast hi", 1)
    c.server_frame({"type": "error", "code": "rate_limited", "command": "broadcast", "retry": 1}, 1)
    c.server_frame(PONG, 1)
    c.timer_fired(("resend",), 2)
    c.server_frame(PONG, 2)
    assert c.end_of_input(2)[-2:] == [ToServer({"type": "logout"}), SetTimer(("leave",), 5)]
    assert c.server_frame({"type": "bye", "reason": "logout"}, 2)[-1] == Exit(0)


def test_a_person_at_a_terminal_is_told_and_decides():
    c, _ = logged_in_to(300)
    c.line("broadcast hi", 1)
    assert c.server_frame({"type": "error", "code": "rate_limited", "command": "broadcast", "retry": 1}, 1) == [
        Print("Error. You are sending too fast; try again in 1 s")]
    c.server_frame(PONG, 1)
    assert frames(c.line("whoelse", 1)) == [{"type": "whoelse"}, {"type": "ping"}]


@pytest.mark.parametrize("retry", ["1", -1, None, 1.5])
def test_a_script_shows_a_refusal_without_a_whole_wait(retry):
    c = scripted_client()
    c.line("broadcast hi", 1)
    assert prints(c.server_frame({"type": "error", "code": "rate_limited", "retry": retry}, 1))[0].startswith(
        "Error. You are sending too fast")
