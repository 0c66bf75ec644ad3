"""A user changes their own password, in the logic (sans-I/O, fake clock): the current one checked and counted as
a login's (three wrong in a row lock the account and end the session), the new one checked against the rule,
hashed and written off the logic's hands, and in force at once; each refusal answered clearly."""
import pytest

from reactor.protocol import ErrorCode
from reactor.server.effects import CheckPassword, Close, HashPassword, Send, SetPassword
from reactor.server.passwords import hash_password, verify_password
from tests.support import ACCOUNTS, BLOCK, World, error, frames_to

NEW = "new*secret"
HASHED = {"vader": hash_password("sithlord**", log2_n=10)}
CHANGED = {"type": "password_changed"}


@pytest.fixture
def w():
    w = World(accounts={**ACCOUNTS, **HASHED})   # vader hashed, the others plain
    w.login("yoda")
    return w


def change(w, current, new=NEW, user="yoda", now=0.0):
    return w.send(user, {"type": "change_password", "current": current, "new": new}, now)


def of(effects, kind):
    return [e for e in effects if type(e) is kind]


def through(w, effects, user="yoda", now=0.0, refusal=None):
    """Carry a change on as the host does (a check answered as a verifier would, the hash made, the file
    written, or refused with ``refusal``); the frames ``user`` got on the way, and the hash field written."""
    conn, got, field = w.conn[user], [], None
    while effects:
        got += frames_to(effects, conn)
        following = []
        for e in effects:
            if type(e) is CheckPassword:
                following += w.s.password_checked(e.conn, verify_password(e.password, e.hashed), now)
            elif type(e) is HashPassword:
                following += w.s.password_hashed(e.conn, hash_password(e.password, log2_n=10), now)
            elif type(e) is SetPassword:
                field = e.field
                following += w.s.password_written(e.conn, e.user, e.field, refusal, now)
        effects = following
    return got, field


def login(w, user, password, now=0.0):
    """A login of ``user`` with ``password`` on a new connection, checks answered; what it was told first (a
    welcomed connection is ``w.conn[user]`` from then on)."""
    conn = w.connect(now)
    named = frames_to(w.username(conn, user, now), conn)
    if named != [{"type": "username_ok"}]:
        return named[0]
    effects = w.password(conn, password, now)
    while (checks := of(effects, CheckPassword)):
        effects = w.s.password_checked(conn, verify_password(checks[0].password, checks[0].hashed), now)
    first = frames_to(effects, conn)[0]
    if first["type"] == "welcome":
        w.conn[user] = conn
    return first


def vader(w):
    """vader (a hashed account) logged in."""
    assert login(w, "vader", "sithlord**") == {"type": "welcome", "user": "vader"}


def test_a_plain_accounts_password_is_hashed_written_and_in_force_at_once(w):
    effects = change(w, "wise@!man")
    assert effects == [HashPassword(w.conn["yoda"], NEW)]           # the current one compared at once (plain)
    assert NEW not in repr(effects[0])                                # never in a log line
    [hashed] = w.s.password_hashed(w.conn["yoda"], hash_password(NEW, log2_n=10), 1.0)
    assert type(hashed) is SetPassword and hashed.expected == "wise@!man" and "wise" not in repr(hashed)
    assert w.s.logins.accounts["yoda"] == "wise@!man"                # not before the file holds it
    assert w.s.password_written(hashed.conn, "yoda", hashed.field, None, 1.0) == [Send((w.conn["yoda"],), CHANGED)]
    assert w.s.logins.accounts["yoda"] == hashed.field and verify_password(NEW, hashed.field)
    w.send("yoda", {"type": "logout"})
    assert login(w, "yoda", "wise@!man") == error("invalid_password")
    assert login(w, "yoda", NEW) == {"type": "welcome", "user": "yoda"}


def test_a_hashed_accounts_current_password_is_checked_off_the_logic(w):
    vader(w)
    effects = change(w, "sithlord**", user="vader")
    assert effects == [CheckPassword(w.conn["vader"], HASHED["vader"], "sithlord**")]
    got, field = through(w, effects, "vader")
    assert got == [CHANGED] and w.s.logins.accounts["vader"] == field != HASHED["vader"]


def test_three_wrong_current_passwords_lock_the_account_and_end_the_session_as_a_login(w):
    for _ in range(2):
        assert through(w, change(w, "guess"))[0] == [error("wrong_password")]
    effects = change(w, "guess", now=5.0)
    assert frames_to(effects, w.conn["yoda"]) == [error("account_blocked", retry=BLOCK)]
    assert Close(w.conn["yoda"]) in effects and w.s.online_users() == [] and w.s.is_locked("yoda", 5.0)
    assert login(w, "yoda", "wise@!man", 6.0) == error("account_locked", retry=9)


def test_wrong_passwords_at_login_and_at_a_change_count_together(w):
    for _ in range(2):
        assert login(w, "yoda", "guess") == error("invalid_password")
    effects = change(w, "guess")
    assert frames_to(effects, w.conn["yoda"]) == [error("account_blocked", retry=BLOCK)]


def test_the_right_current_password_ends_the_count(w):
    for _ in range(2):
        assert through(w, change(w, "guess"))[0] == [error("wrong_password")]
    assert through(w, change(w, "wise@!man"))[0] == [CHANGED]
    for _ in range(2):
        assert through(w, change(w, "guess"))[0] == [error("wrong_password")]   # two more: not locked
    assert not w.s.is_locked("yoda", 0.0)


def test_a_wrong_current_password_counts_even_if_its_session_left_before_the_answer(w):
    vader(w)
    effects = change(w, "guess", user="vader")
    w.send("vader", {"type": "logout"})
    assert through(w, effects, "vader")[0] == []   # nobody to tell, but ...
    for expected in (error("invalid_password"), error("account_blocked", retry=BLOCK)):
        assert login(w, "vader", "guess") == expected


@pytest.mark.parametrize("new, detail", [
    ("short", "a password needs at least 8 characters"),
    ("x" * 65, "a password may have at most 64 characters"),
    ("two words!", "a password cannot hold whitespace"),
    ("esc\x1b[31mape", "a password cannot hold control characters"),
    ("", "the password is empty"),
    ("yoda", "a password needs at least 8 characters"),
    ("YodaYoda", None),   # (not the user's name: yoda)
    ("wise@!man", "it is the current password"),
])
def test_a_new_password_that_will_not_do_is_refused_with_why_and_nothing_counts(w, new, detail):
    effects = change(w, "wise@!man" if detail != "it is the current password" else new, new=new)
    if detail is None:
        assert effects == [HashPassword(w.conn["yoda"], new)]
        return
    assert effects == [Send((w.conn["yoda"],), error("password_refused", detail=detail))]
    for _ in range(2):
        assert login(w, "yoda", "guess") == error("invalid_password")   # nothing counted: two more do not lock
    assert not w.s.is_locked("yoda", 0.0)


def test_changes_turned_off_are_refused_at_once():
    w = World(password_changes=False)
    w.login("yoda")
    assert change(w, "guess") == [Send((w.conn["yoda"],), error("password_unchangeable"))]
    assert change(w, "guess") == [Send((w.conn["yoda"],), error("password_unchangeable"))]
    assert change(w, "guess") == [Send((w.conn["yoda"],), error("password_unchangeable"))]   # nothing counted
    assert not w.s.is_locked("yoda", 0.0)


def test_a_locked_account_changes_nothing_and_counts_nothing(w):
    for _ in range(3):
        login(w, "yoda", "guess", 1.0)   # someone guesses at the login: locked (yoda's session goes on)
    assert w.s.is_locked("yoda", 1.0) and w.s.online_users() == ["yoda"]
    assert change(w, "wise@!man", now=2.0) == [Send((w.conn["yoda"],), error("password_not_changed", retry=9))]
    assert change(w, "guess", now=2.0) == [Send((w.conn["yoda"],), error("password_not_changed", retry=9))]
    assert through(w, change(w, "wise@!man", now=20.0), now=20.0)[0] == [CHANGED]   # after the lock


def test_a_lock_that_begins_during_the_check_stops_the_change_uncounted(w):
    vader(w)
    effects = change(w, "sithlord**", user="vader")
    for _ in range(3):
        login(w, "vader", "guess")
    assert through(w, effects, "vader")[0] == [error("password_not_changed", retry=BLOCK)]
    assert w.s.logins.accounts["vader"] == HASHED["vader"]


def test_what_the_helpers_cannot_do_is_answered_not_changed_and_counts_nothing(w):
    vader(w)
    conn = w.conn["vader"]
    change(w, "guess", user="vader")
    assert w.s.password_checked(conn, None, 0.0) == [Send((conn,), error("password_not_changed"))]
    assert change(w, "wise@!man") == [HashPassword(w.conn["yoda"], NEW)]
    assert w.s.password_hashed(w.conn["yoda"], None, 0.0) == [Send((w.conn["yoda"],), error("password_not_changed"))]
    assert w.s.logins.accounts["yoda"] == "wise@!man"
    for _ in range(2):
        assert login(w, "vader", "guess") == error("invalid_password")   # the one not checked did not count


def test_one_change_at_a_time_per_connection(w):
    first = change(w, "wise@!man")
    assert change(w, "wise@!man", new="other*secret") == [Send((w.conn["yoda"],), error("password_not_changed"))]
    assert through(w, first)[0] == [CHANGED]


@pytest.mark.parametrize("when", ["checked", "hashed"])
def test_an_account_the_operator_changed_meanwhile_is_left_as_the_operator_made_it(w, when):
    vader(w)
    effects = change(w, "sithlord**", user="vader")
    operator = hash_password("operator*set", log2_n=10)
    if when == "hashed":
        effects = w.s.password_checked(w.conn["vader"], True, 0.0)
        assert of(effects, HashPassword)
    w.s.accounts_changed({**ACCOUNTS, "vader": operator}, 0.0)   # a reload, with the operator's new line
    assert through(w, effects, "vader")[0] == [error("account_changed")]
    assert w.s.logins.accounts["vader"] == operator


@pytest.mark.parametrize("refusal", [ErrorCode.PASSWORD_UNCHANGEABLE, ErrorCode.ACCOUNT_CHANGED,
                                     ErrorCode.PASSWORD_NOT_CHANGED])
def test_a_file_that_was_not_written_changes_nothing(w, refusal):
    assert through(w, change(w, "wise@!man"), refusal=refusal)[0] == [error(refusal)]
    assert w.s.logins.accounts["yoda"] == "wise@!man"


def test_a_change_written_after_its_session_left_is_in_force_anyway(w):
    effects = change(w, "wise@!man")
    [hashed] = w.s.password_hashed(w.conn["yoda"], hash_password(NEW, log2_n=10), 0.0)
    w.send("yoda", {"type": "logout"})
    assert w.s.password_written(hashed.conn, "yoda", hashed.field, None, 0.0) == []   # nobody to tell
    assert w.s.logins.accounts["yoda"] == hashed.field and effects == [HashPassword(hashed.conn, NEW)]


def test_a_session_gone_before_the_hash_writes_nothing(w):
    conn = w.conn["yoda"]
    change(w, "wise@!man")
    w.send("yoda", {"type": "logout"})
    assert w.s.password_hashed(conn, hash_password(NEW, log2_n=10), 0.0) == []
    assert w.s.logins.accounts["yoda"] == "wise@!man"


def test_a_current_password_too_long_to_be_right_is_wrong_without_a_check(w):
    vader(w)
    effects = change(w, "x" * 1025, user="vader")
    assert effects == [Send((w.conn["vader"],), error("wrong_password"))]


def test_the_fields_must_be_strings_and_the_user_logged_in(w):
    conn = w.conn["yoda"]
    assert change(w, 5) == [Send((conn,), error("bad_frame", detail="'current' must be a string"))]
    stranger = w.connect()
    assert w.s.received(stranger, {"type": "change_password", "current": "a", "new": "b"}, 0.0) == [
        Send((stranger,), error("not_logged_in"))]


def test_a_login_waiting_on_the_old_hash_is_answered_against_the_new_one(w):
    vader(w)
    effects = change(w, "sithlord**", user="vader")
    stranger = w.connect()
    w.username(stranger, "vader")
    pending = of(w.password(stranger, NEW), CheckPassword)   # checked against the old hash ...
    got, field = through(w, effects, "vader")
    assert got == [CHANGED]
    again = w.s.password_checked(stranger, verify_password(NEW, pending[0].hashed), 0.0)
    assert again == [CheckPassword(stranger, field, NEW)]     # ... and again against the new one
