"""The client's logic where people and scripts wait or give up: Ctrl-C at a prompt, a locked account, the warning
before the inactivity logout and the draft kept after it, and the retries of a login the server could not take at
once (busy, try_again) or of a command over the rate limit."""
import pytest

from reactor.client.effects import Exit, Print, Prompt, ToServer
from reactor.client.rules import ChatClient
from reactor.client.words import QUIT_HINT
from tests.support import PONG, frames, logged_in

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
