"""Hashed passwords in the logic (sans-I/O, fake clock): checked off the loop, one at a time per account,
with the lockout counted exactly as if every password were checked at once."""
import pytest

from reactor.server.effects import CheckPassword, Close, LoggedIn, Send
from reactor.server.passwords import hash_password, verify_password
from tests.support import ACCOUNTS, BLOCK, World, error, frames_to, unfailed

HASHED = {"vader": hash_password("sithlord**", log2_n=10), "hans": hash_password("falcon*solo", log2_n=10)}
BAD_WAIT = error("bad_frame", detail="wait for the answer to the password")


@pytest.fixture
def w():
    return World(accounts={**ACCOUNTS, **HASHED})   # vader and hans hashed, the others plain


def ask(w, user, password, now=0.0):
    """A new connection that names ``user`` and sends ``password``; (conn, the password frame's effects)."""
    conn = w.connect(now)
    w.username(conn, user, now)
    return conn, w.password(conn, password, now)


def checks(effects):
    return [e for e in effects if type(e) is CheckPassword]


def answer(w, check, now=0.0):
    """What a verifier says to ``check``, handed to the logic."""
    return w.s.password_checked(check.conn, verify_password(check.password, check.hashed), now)


def test_a_hashed_password_is_checked_off_the_logic_and_the_answer_logs_in():
    w = World(accounts={**ACCOUNTS, **HASHED})
    conn, effects = ask(w, "vader", "sithlord**")
    assert effects == [CheckPassword(conn, HASHED["vader"], "sithlord**")]   # nothing else until the answer
    assert "sithlord**" not in repr(effects[0])                               # a password is never in a log line
    welcome = answer(w, effects[0], 1.0)
    assert LoggedIn(conn) in welcome and frames_to(welcome, conn)[0] == {"type": "welcome", "user": "vader"}
    assert w.s.user_of(conn) == "vader"


def test_plain_and_hashed_accounts_side_by_side(w):
    conn, effects = ask(w, "yoda", "wise@!man")   # plain: compared at once
    assert checks(effects) == [] and frames_to(effects, conn)[0] == {"type": "welcome", "user": "yoda"}
    conn, effects = ask(w, "hans", "wrong")
    assert unfailed(answer(w, checks(effects)[0])) == [Send((conn,), error("invalid_password"))]
    again = w.password(conn, "falcon*solo")
    assert frames_to(answer(w, checks(again)[0]), conn)[0] == {"type": "welcome", "user": "hans"}
    assert w.s.online_users() == ["hans", "yoda"]


def test_while_its_password_is_checked_a_connection_may_only_say_listen(w):
    conn, effects = ask(w, "vader", "sithlord**")
    assert w.password(conn, "again") == [Send((conn,), BAD_WAIT)]
    assert w.username(conn, "yoda") == [Send((conn,), BAD_WAIT)]
    assert w.s.received(conn, {"type": "listen", "host": "x", "port": 4000}, 0.0) == []
    assert w.s.received(conn, {"type": "whoelse"}, 0.0) == [Send((conn,), error("not_logged_in"))]
    assert frames_to(answer(w, checks(effects)[0]), conn)[0] == {"type": "welcome", "user": "vader"}


def test_guesses_for_one_account_from_many_connections_are_checked_in_turn_and_lock_at_the_third(w):
    a, first = ask(w, "vader", "guess1")
    b, second = ask(w, "vader", "guess2")
    c, third = ask(w, "vader", "guess3")
    d, fourth = ask(w, "vader", "sithlord**")   # the right one, but after the lock
    assert len(checks(first)) == 1 and second == third == fourth == []   # one check at a time
    effects = answer(w, checks(first)[0])
    assert frames_to(effects, a) == [error("invalid_password")]
    assert checks(effects) == [CheckPassword(b, HASHED["vader"], "guess2")]
    effects = answer(w, checks(effects)[0])
    assert frames_to(effects, b) == [error("invalid_password")] and len(checks(effects)) == 1
    effects = answer(w, checks(effects)[0], 5.0)
    assert frames_to(effects, c) == [error("account_blocked", retry=BLOCK)] and Close(c) in effects
    assert frames_to(effects, d) == [error("account_locked", retry=BLOCK)] and Close(d) in effects   # never checked
    assert checks(effects) == [] and w.s.is_locked("vader", 5.0)


def test_a_right_password_in_the_queue_resets_the_count_as_it_would_at_once(w):
    a, first = ask(w, "vader", "guess1")
    b, _ = ask(w, "vader", "guess2")
    c, _ = ask(w, "vader", "sithlord**")
    e, _ = ask(w, "vader", "guess3")
    effects = answer(w, checks(first)[0])
    effects = answer(w, checks(effects)[0])
    effects = answer(w, checks(effects)[0])   # c logs in: the count starts anew
    assert frames_to(effects, c)[0] == {"type": "welcome", "user": "vader"}
    effects = answer(w, checks(effects)[0])   # e: one wrong, not the third
    assert frames_to(effects, e) == [error("invalid_password")] and not w.s.is_locked("vader", 0.0)


def test_a_wrong_password_counts_even_if_its_connection_left_before_the_answer(w):
    for _ in range(2):
        conn, effects = ask(w, "vader", "guess")
        w.s.disconnected(conn, 0.0)
        assert answer(w, checks(effects)[0]) == []
    conn, effects = ask(w, "vader", "guess")
    assert unfailed(answer(w, checks(effects)[0]))[:2] == [Send((conn,), error("account_blocked", retry=BLOCK)),
                                                           Close(conn)]


def test_answers_for_connections_that_left_lock_the_account_and_log_nobody_in(w):
    for _ in range(3):
        conn, effects = ask(w, "vader", "guess")
        w.s.disconnected(conn, 0.0)
        assert answer(w, checks(effects)[0]) == []
    assert w.s.is_locked("vader", 0.0)
    conn, effects = ask(w, "hans", "falcon*solo")
    w.s.disconnected(conn, 0.0)
    assert answer(w, checks(effects)[0]) == [] and w.s.online_users() == []


def test_a_password_waiting_its_turn_is_never_checked_if_its_connection_goes(w):
    a, first = ask(w, "vader", "guess1")
    b, _ = ask(w, "vader", "guess2")
    c, _ = ask(w, "vader", "guess3")
    w.s.disconnected(b, 0.0)
    effects = answer(w, checks(first)[0])
    assert [check.conn for check in checks(effects)] == [c]
    assert frames_to(answer(w, checks(effects)[0]), c) == [error("invalid_password")]   # the second, not the third


def test_a_password_that_cannot_be_checked_gets_try_again_and_counts_for_nothing(w):
    conn = w.connect()
    w.username(conn, "vader")
    for _ in range(12):   # more than the bad-frame budget and the lockout
        effects = w.password(conn, "sithlord**")
        assert w.s.password_checked(checks(effects)[0].conn, None, 0.0) == [Send((conn,), error("try_again"))]
    assert not w.s.is_locked("vader", 0.0)
    effects = w.password(conn, "sithlord**")
    assert frames_to(answer(w, checks(effects)[0]), conn)[0] == {"type": "welcome", "user": "vader"}


def test_an_account_changed_during_its_check_is_answered_as_it_is_now(w):
    conn, effects = ask(w, "vader", "newpass")
    new = hash_password("newpass", log2_n=10)
    w.s.accounts_changed({**ACCOUNTS, **HASHED, "vader": new}, 0.0)
    again = answer(w, checks(effects)[0])   # checked against the old hash: not the answer
    assert again == [CheckPassword(conn, new, "newpass")]
    assert frames_to(answer(w, again[0]), conn)[0] == {"type": "welcome", "user": "vader"}
    conn, effects = ask(w, "hans", "falcon*solo")
    w.s.accounts_changed({**ACCOUNTS, "vader": new}, 0.0)   # hans plain again, with the same password
    assert frames_to(answer(w, checks(effects)[0]), conn)[0] == {"type": "welcome", "user": "hans"}
    conn, effects = ask(w, "vader", "guess")
    w.s.accounts_changed(ACCOUNTS, 0.0)
    w.s.accounts_changed({k: v for k, v in ACCOUNTS.items() if k != "vader"}, 0.0)
    assert answer(w, checks(effects)[0]) == [Send((conn,), error("invalid_username"))]


def test_answers_after_shutdown_or_for_what_was_not_asked_do_nothing(w):
    conn, effects = ask(w, "vader", "sithlord**")
    assert w.s.password_checked(999, True, 0.0) == []
    w.s.shutdown(0.0)
    assert answer(w, checks(effects)[0]) == []


def test_the_login_deadline_ends_a_slow_check_and_its_wrong_answer_still_counts(w):
    conn, effects = ask(w, "vader", "guess")
    assert frames_to(w.s.timer_fired(("login", conn), 100.0), conn) == [error("login_timeout")]
    assert answer(w, checks(effects)[0], 100.0) == []
    for expected in (error("invalid_password"), error("account_blocked", retry=BLOCK)):   # the timed-out guess
        conn, effects = ask(w, "vader", "guess", 100.0)                                       # was the first of three
        assert frames_to(answer(w, checks(effects)[0], 100.0), conn) == [expected]
