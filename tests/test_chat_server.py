"""The server's rules, one by one, on the sans-I/O logic with a fake clock (``now`` is just a number)."""
import dataclasses
import logging
import tracemalloc

import pytest

from reactor.framing import encode
from reactor.protocol import CLIENT_FRAMES
from reactor.server.door import MAX_LOGIN_TIME
from reactor.server.effects import (
    AddBlock,
    CancelTimer,
    Close,
    ForgetMessages,
    KeepMessage,
    LoggedIn,
    LoginFailed,
    RemoveBlock,
    Send,
    SendBatch,
    SetTimer,
    WhenWritable,
)
from reactor.server.mail import MAILBOX_CHUNK
from reactor.server.rules import ChatServer
from tests.support import (
    ACCOUNTS,
    BLOCK,
    EMOJI,
    TIMEOUT,
    World,
    big_mailbox,
    deliver_all,
    error,
    frames_to,
    msg,
    of_type,
    unfailed,
)

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)

HELLO = {"type": "hello", "version": 1}


# -- helpers -----------------------------------------------------------------

def stored_reply(conn, to):
    return Send((conn,), {"type": "stored", "to": to})


def row(keep):
    """A ``KeepMessage`` as the store keeps it: (id, to, sender, text, sent)."""
    assert type(keep) is KeepMessage
    return keep.id, keep.to, keep.sender, keep.text, keep.sent


# -- effects -------------------------------------------------------------------

def test_effects_are_frozen_and_slotted():
    for effect in (Send((1,), {}), Close(1), SetTimer("k", 1.0), CancelTimer("k"), AddBlock("a", "b")):
        assert not hasattr(effect, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(effect, dataclasses.fields(effect)[0].name, None)


# -- handshake -------------------------------------------------------------------

def test_connecting_arms_the_login_deadline(w):
    assert w.s.connected(7, 5.0, "10.0.0.7") == [SetTimer(("login", 7), 5.0 + TIMEOUT)]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_hello_versions_1_to_3_are_answered_in_kind_with_the_inactivity_timeout(w, version):
    conn = w.connect(hello=False)
    assert w.s.received(conn, {"type": "hello", "version": version, "extra": "ignored"}, 0.0) == [
        Send((conn,), {"type": "hello", "version": version, "timeout": TIMEOUT})]


@pytest.mark.parametrize("version", [4, 0, "1", 1.0, True, None, [1]])
def test_another_version_is_refused_and_closed(w, version):
    conn = w.connect(hello=False)
    frame = {"type": "hello"} if version is None else {"type": "hello", "version": version}
    effects = w.s.received(conn, frame, 1.0)
    assert effects == [Send((conn,), error("version", version=3)), Close(conn), CancelTimer(("login", conn))]
    assert w.s.received(conn, HELLO, 1.0) == []      # forgotten once closed
    assert w.s.disconnected(conn, 1.0) == []


def test_a_frame_before_hello_is_a_bad_frame_and_hello_still_works(w):
    conn = w.connect(hello=False)
    effects = w.s.received(conn, {"type": "username", "username": "hans"}, 0.0)
    assert effects == [Send((conn,), error("bad_frame", detail="the first frame must be hello"))]
    assert w.s.received(conn, HELLO, 0.0) == [Send((conn,), {**HELLO, "timeout": TIMEOUT})]


def test_a_second_hello_is_a_bad_frame(w):
    conn = w.connect()
    assert frames_to(w.s.received(conn, HELLO, 0.0), conn)[0]["code"] == "bad_frame"
    w.login("hans")
    assert w.send("hans", HELLO)[0].frame == error("bad_frame", detail="already logged in")


# -- login -------------------------------------------------------------------------

def test_login_succeeds_and_swaps_the_login_deadline_for_the_inactivity_one(w):
    conn = w.connect(now=1.0)
    assert w.username(conn, "hans", 2.0) == [Send((conn,), {"type": "username_ok"})]
    effects = w.password(conn, "falcon*solo", 3.0)
    assert effects == [CancelTimer(("login", conn)), SetTimer(("idle", conn), 3.0 + TIMEOUT), LoggedIn(conn),
                       Send((conn,), {"type": "welcome", "user": "hans"})]
    assert w.s.user_of(conn) == "hans"
    assert w.s.online_users() == ["hans"]


def test_unknown_username_asks_again(w):
    conn = w.connect()
    assert w.username(conn, "Hans") == [LoginFailed(conn, "unknown user name"),  # case-sensitive
                                        Send((conn,), error("invalid_username"))]
    assert w.username(conn, "hans") == [Send((conn,), {"type": "username_ok"})]


def test_wrong_password_asks_again(w):
    conn = w.connect()
    w.username(conn, "hans")
    assert w.password(conn, "nope") == [LoginFailed(conn, "wrong password"), Send((conn,), error("invalid_password"))]
    assert frames_to(w.password(conn, "falcon*solo"), conn) == [{"type": "welcome", "user": "hans"}]


def test_password_before_username_is_a_bad_frame(w):
    conn = w.connect()
    assert w.password(conn, "falcon*solo")[0].frame["code"] == "bad_frame"


def test_a_new_username_may_replace_the_first(w):
    conn = w.connect()
    w.username(conn, "hans")
    w.username(conn, "yoda")
    assert frames_to(w.password(conn, "wise@!man"), conn) == [{"type": "welcome", "user": "yoda"}]


def test_an_online_user_is_already_logged_in_only_after_its_right_password(w):
    w.login("hans")
    conn = w.connect()
    assert w.username(conn, "hans") == [Send((conn,), {"type": "username_ok"})]   # no hint at the name
    assert frames_to(w.password(conn, "wrong"), conn) == [error("invalid_password")]   # nor for a wrong password
    assert w.password(conn, "falcon*solo") == [Send((conn,), error("already_logged_in", user="hans"))]
    assert w.password(conn, "falcon*solo")[0].frame["code"] == "bad_frame"  # back at the username
    assert w.s.online_users() == ["hans"]


def test_a_wrong_password_for_an_online_user_still_counts_toward_the_lock(w):
    w.login("vader")
    conn = w.connect()
    w.username(conn, "vader")
    fail(w, conn)
    fail(w, conn)
    assert unfailed(fail(w, conn)) == [Send((conn,), error("account_blocked", retry=BLOCK)), Close(conn),
                                       CancelTimer(("login", conn))]
    assert w.s.is_locked("vader", 0.0) and w.s.online_users() == ["vader"]   # the session goes on


def test_already_logged_in_is_checked_again_at_the_password(w):
    conn = w.connect()
    w.username(conn, "hans")
    w.login("hans")  # another connection wins meanwhile
    assert w.password(conn, "falcon*solo") == [Send((conn,), error("already_logged_in", user="hans"))]
    assert w.password(conn, "falcon*solo")[0].frame["code"] == "bad_frame"  # back at the username


@pytest.mark.parametrize("frame", [{"type": "username"}, {"type": "username", "username": ["x"]},
                                   {"type": "username", "username": 5}])
def test_username_must_be_a_string(w, frame):
    conn = w.connect()
    assert w.s.received(conn, frame, 0.0)[0].frame == error("bad_frame", detail="'username' must be a string")


def test_password_must_be_a_string(w):
    conn = w.connect()
    w.username(conn, "hans")
    assert w.s.received(conn, {"type": "password", "password": None}, 0.0)[0].frame["code"] == "bad_frame"


@pytest.mark.parametrize("frame", [msg("yoda", "hi"), {"type": "whoelse"}, {"type": "logout"},
                                   {"type": "ack", "ids": []}, {"type": "ping"}])
def test_commands_before_welcome_are_not_logged_in(w, frame):
    conn = w.connect()
    assert w.s.received(conn, frame, 0.0) == [Send((conn,), error("not_logged_in"))]
    w.username(conn, "hans")
    assert w.s.received(conn, frame, 0.0) == [Send((conn,), error("not_logged_in"))]


def test_listen_is_taken_before_login_so_no_request_can_overtake_it(w):
    conn = w.connect()
    assert w.s.received(conn, {"type": "listen", "host": "10.0.0.9", "port": 4000}, 0.0) == []
    w.username(conn, "hans")
    w.s.received(conn, {"type": "password", "password": ACCOUNTS["hans"]}, 0.0)
    w.conn["hans"] = conn
    w.login("yoda")
    assert w.to(w.send("yoda", {"type": "startprivate", "user": "hans"}), "hans") == [
        {"type": "private_request", "from": "yoda"}]


def test_login_frames_after_welcome_are_bad_frames(w):
    w.login("hans")
    for frame in ({"type": "username", "username": "yoda"}, {"type": "password", "password": "x"}):
        assert w.send("hans", frame)[0].frame == error("bad_frame", detail="already logged in")


@pytest.mark.parametrize("kind", sorted(CLIENT_FRAMES))
def test_every_frame_a_client_may_send_has_its_handler(w, kind):
    """Each client frame type of the protocol is declared by one part of the rules (reactor/server/commands.py):
    none is answered as an unknown type, whatever its fields."""
    w.login("hans")
    answers = frames_to(w.send("hans", {"type": kind}), w.conn["hans"], w.store)
    assert not [f for f in answers if "unknown frame type" in f.get("detail", "")], answers


# -- lockout -------------------------------------------------------------------------

def fail(w, conn, now=0.0):
    return w.password(conn, "wrong", now)


def lock(w, user="vader", now=0.0):
    """Three wrong passwords for ``user``, across connections; returns the last effects."""
    for _ in range(2):
        conn = w.connect(now)
        w.username(conn, user, now)
        assert unfailed(fail(w, conn, now)) == [Send((conn,), error("invalid_password"))]
    conn = w.connect(now)
    w.username(conn, user, now)
    effects = fail(w, conn, now)
    assert effects == [LoginFailed(conn, "wrong password"), Send((conn,), error("account_blocked", retry=BLOCK)),
                       Close(conn), CancelTimer(("login", conn))]
    return effects


def test_three_wrong_passwords_across_connections_lock_the_account(w):
    lock(w, now=100.0)
    assert w.s.is_locked("vader", 100.0)
    assert not w.s.is_locked("hans", 100.0)


def test_three_wrong_passwords_on_one_connection_lock_too(w):
    conn = w.connect()
    w.username(conn, "vader")
    fail(w, conn)
    fail(w, conn)
    assert unfailed(fail(w, conn))[:2] == [Send((conn,), error("account_blocked", retry=BLOCK)), Close(conn)]


def test_the_lock_lasts_exactly_block_duration(w):
    lock(w, now=100.0)
    conn = w.connect(100.0 + BLOCK - 1e-6)
    effects = w.username(conn, "vader", 100.0 + BLOCK - 1e-6)
    assert effects == [LoginFailed(conn, "locked account"), Send((conn,), error("account_locked", retry=1)),
                       Close(conn), CancelTimer(("login", conn))]   # (a microsecond left: 1 s, rounded up)
    conn = w.connect(100.0 + BLOCK)
    assert w.username(conn, "vader", 100.0 + BLOCK) == [Send((conn,), {"type": "username_ok"})]
    assert frames_to(w.password(conn, "sithlord**", 100.0 + BLOCK), conn)[0]["type"] == "welcome"


def test_the_right_password_during_the_lock_is_refused(w):
    conn = w.connect(0.0)
    w.username(conn, "vader", 0.0)   # asked for the password before the lock began
    lock(w, now=1.0)
    effects = unfailed(w.password(conn, "sithlord**", 2.0))
    assert effects == [Send((conn,), error("account_locked", retry=BLOCK - 1)), Close(conn),
                       CancelTimer(("login", conn))]


def test_attempts_during_the_lock_do_not_extend_it(w):
    lock(w, now=0.0)
    for t, left in ((1.0, BLOCK - 1), (5.0, BLOCK - 5), (BLOCK - 0.001, 1)):   # it says how long is left
        conn = w.connect(t)
        assert unfailed(w.username(conn, "vader", t))[0].frame == error("account_locked", retry=left)
    conn = w.connect(BLOCK)
    assert w.username(conn, "vader", BLOCK) == [Send((conn,), {"type": "username_ok"})]


def test_the_count_starts_from_zero_after_the_lock(w):
    lock(w, now=0.0)
    conn = w.connect(BLOCK)
    w.username(conn, "vader", BLOCK)
    assert unfailed(fail(w, conn, BLOCK))[0].frame == error("invalid_password")
    assert unfailed(fail(w, conn, BLOCK))[0].frame == error("invalid_password")
    assert unfailed(fail(w, conn, BLOCK))[0].frame == error("account_blocked", retry=BLOCK)
    assert w.s.is_locked("vader", 2 * BLOCK - 0.001) and not w.s.is_locked("vader", 2 * BLOCK)


def test_a_good_login_resets_the_count(w):
    conn = w.connect()
    w.username(conn, "vader")
    fail(w, conn)
    fail(w, conn)
    w.password(conn, "sithlord**")
    w.conn["vader"] = conn
    w.send("vader", {"type": "logout"})
    conn = w.connect()
    w.username(conn, "vader")
    assert unfailed(fail(w, conn))[0].frame == error("invalid_password")
    assert unfailed(fail(w, conn))[0].frame == error("invalid_password")
    assert unfailed(fail(w, conn))[0].frame == error("account_blocked", retry=BLOCK)


def test_failures_count_per_account(w):
    conn = w.connect()
    for user in ("vader", "vader", "luke", "luke"):
        w.username(conn, user)
        assert unfailed(fail(w, conn))[0].frame == error("invalid_password")


# -- login deadline ---------------------------------------------------------------------

def test_login_times_out_exactly_at_its_deadline(w):
    conn = w.connect(now=2.0)
    key = ("login", conn)
    assert w.s.timer_fired(key, 2.0 + TIMEOUT) == [Send((conn,), error("login_timeout")), Close(conn)]
    assert w.s.received(conn, {"type": "username", "username": "hans"}, 70.0) == []


def test_login_deadline_is_not_moved_by_login_frames(w):
    conn = w.connect(now=0.0)
    w.username(conn, "hans", 30.0)
    fail(w, conn, 59.0)
    assert w.s.timer_fired(("login", conn), TIMEOUT)[0].frame == error("login_timeout")


@pytest.mark.parametrize("timeout, login_time", [(0.5, 0.5), (59.5, 59.5), (60.0, 60.0), (61.0, 60.0),
                                                 (365 * 24 * 3600, 60.0)])
def test_the_login_deadline_is_timeout_but_at_most_a_minute(timeout, login_time):
    w = World(timeout=timeout)
    conn = w.connect(now=5.0)
    key = ("login", conn)
    assert w.s.timer_fired(key, 5.0 + login_time - 0.001) == [SetTimer(key, 5.0 + login_time)]
    assert w.s.timer_fired(key, 5.0 + login_time) == [Send((conn,), error("login_timeout")), Close(conn)]
    assert MAX_LOGIN_TIME == 60.0


def test_the_idle_deadline_is_the_whole_timeout_even_past_a_minute():
    w = World(timeout=120.0)
    w.login("hans", now=1.0)
    conn = w.conn["hans"]
    assert w.s.timer_fired(("idle", conn), 61.0) == [SetTimer(("idle", conn), 121.0)]
    assert frames_to(w.s.timer_fired(("idle", conn), 121.0), conn) == [{"type": "bye", "reason": "timeout"}]


def test_an_early_login_timer_re_arms(w):
    conn = w.connect(now=0.0)
    assert w.s.timer_fired(("login", conn), TIMEOUT - 1) == [SetTimer(("login", conn), TIMEOUT)]


def test_login_timer_after_welcome_or_disconnect_does_nothing(w):
    w.login("hans")
    assert w.s.timer_fired(("login", w.conn["hans"]), TIMEOUT) == []
    conn = w.connect()
    assert w.s.disconnected(conn, 1.0) == [CancelTimer(("login", conn))]
    assert w.s.timer_fired(("login", conn), TIMEOUT) == []


def test_unknown_timer_keys_do_nothing(w):
    for key in ("idle", (), ("nope", 1), ("idle", 99), ("private", "a", "b")):
        assert w.s.timer_fired(key, 1.0) == []


# -- inactivity ------------------------------------------------------------------------------

def test_inactivity_logs_out_exactly_at_the_deadline(w):
    w.login("yoda", now=0.0)
    w.login("hans", now=5.0)
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    assert w.s.timer_fired(("idle", hans), 5.0 + TIMEOUT) == [
        Send((hans,), {"type": "bye", "reason": "timeout"}), Close(hans),
        Send((yoda,), {"type": "presence", "user": "hans", "online": False})]
    assert w.s.online_users() == ["yoda"]
    assert w.s.disconnected(hans, 66.0) == []


def test_users_timed_out_together_are_not_told_of_each_other(w):
    for user in ("yoda", "hans", "luke", "leia"):
        w.login(user, now=0.0)
    w.send("leia", {"type": "activity"}, 1.0)       # leia stays
    c = w.conn
    keys = [("idle", c["yoda"]), ("idle", c["hans"]), ("idle", c["luke"]), ("idle", c["leia"]), ("nope",)]
    assert w.s.timers_fired(keys, TIMEOUT) == [
        Send((c["yoda"], c["hans"], c["luke"]), {"type": "bye", "reason": "timeout"}),
        Close(c["yoda"]), Close(c["hans"]), Close(c["luke"]),
        SetTimer(("idle", c["leia"]), 1.0 + TIMEOUT),
        SendBatch((c["leia"],), ({"type": "presence", "user": "yoda", "online": False},
                                 {"type": "presence", "user": "hans", "online": False},
                                 {"type": "presence", "user": "luke", "online": False}))]
    assert w.s.online_users() == ["leia"]


def test_a_batch_of_timeouts_is_announced_without_what_blockers_hide(w):
    for user in ("yoda", "hans", "luke", "leia", "vader"):
        w.login(user, now=0.0)
    w.send("yoda", {"type": "block", "user": "leia"})
    w.send("luke", {"type": "block", "user": "leia"})
    w.send("leia", {"type": "activity"}, 1.0)
    w.send("vader", {"type": "activity"}, 1.0)
    c = w.conn
    def gone(user):
        return {"type": "presence", "user": user, "online": False}
    effects = w.s.timers_fired([("idle", c[u]) for u in ("yoda", "hans", "luke")], TIMEOUT)
    assert [e for e in effects if type(e) is SendBatch or type(e) is Send and e.frame["type"] == "presence"] == [
        SendBatch((c["vader"],), (gone("yoda"), gone("hans"), gone("luke"))),
        Send((c["leia"],), gone("hans"))]


def test_activity_costs_no_timer_effects_and_a_stale_timer_re_arms(w):
    w.login("hans", now=0.0)
    hans = w.conn["hans"]
    assert w.send("hans", {"type": "activity"}, 10.0) == []
    assert of_type(w.send("hans", {"type": "whoelse"}, 20.0), SetTimer) == []
    key = ("idle", hans)
    assert w.s.timer_fired(key, TIMEOUT) == [SetTimer(key, 20.0 + TIMEOUT)]   # not a logout
    assert w.s.timer_fired(key, 20.0 + TIMEOUT - 1e-6) == [SetTimer(key, 20.0 + TIMEOUT)]
    assert w.s.timer_fired(key, 20.0 + TIMEOUT)[0] == Send((hans,), {"type": "bye", "reason": "timeout"})


def test_a_ping_is_answered_after_the_answers_before_it_and_is_not_activity(w):
    w.login("hans", now=0.0)
    hans = w.conn["hans"]
    assert w.send("hans", msg("yoda", "kept"), 30.0) + w.send("hans", {"type": "ping"}, 30.0) == [
        KeepMessage(1, "yoda", "hans", "kept", confirm=Send((hans,), {"type": "stored", "to": "yoda"})),
        Send((hans,), {"type": "pong"})]
    assert w.send("hans", {"type": "ping"}, 50.0) == [Send((hans,), {"type": "pong"})]
    assert w.s.timer_fired(("idle", hans), TIMEOUT) == [SetTimer(("idle", hans), 30.0 + TIMEOUT)]
    assert w.s.timer_fired(("idle", hans), 30.0 + TIMEOUT)[0] == Send((hans,), {"type": "bye", "reason": "timeout"})


def test_any_other_frame_from_a_logged_in_user_is_activity(w):
    w.login("hans", now=0.0)
    hans = w.conn["hans"]
    w.send("hans", {"type": "bogus"}, 30.0)     # even a bad one
    assert w.s.timer_fired(("idle", hans), TIMEOUT) == [SetTimer(("idle", hans), 30.0 + TIMEOUT)]


def test_undecodable_lines_are_not_activity(w):
    w.login("hans", now=0.0)
    hans = w.conn["hans"]
    w.s.bad_frame(hans, "invalid JSON", 30.0)
    assert w.s.timer_fired(("idle", hans), TIMEOUT)[0].frame["reason"] == "timeout"


# -- logout and disconnect ---------------------------------------------------------------------

def test_logout_says_bye_closes_and_tells_the_others(w):
    w.login("yoda")
    w.login("hans")
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    assert w.send("hans", {"type": "logout"}, 3.0) == [
        Send((hans,), {"type": "bye", "reason": "logout"}), Close(hans), CancelTimer(("idle", hans)),
        Send((yoda,), {"type": "presence", "user": "hans", "online": False})]
    assert w.send("hans", {"type": "whoelse"}, 3.0) == []
    assert w.s.disconnected(hans, 3.0) == []
    w.login("hans", now=3.0)   # at once free to log in again


def test_disconnect_logs_out_and_never_sends_to_the_gone_connection(w):
    w.login("yoda")
    w.login("hans")
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    effects = w.s.disconnected(hans, 4.0)
    assert effects == [CancelTimer(("idle", hans)),
                       Send((yoda,), {"type": "presence", "user": "hans", "online": False})]
    assert w.s.user_of(hans) is None
    assert w.s.disconnected(hans, 4.0) == []


def test_presence_on_login_goes_to_all_other_online_users_only(w):
    w.login("yoda")
    w.login("luke")
    pending = w.connect()
    w.username(pending, "leia")          # not logged in: not told
    effects = w.login("hans")
    presence = [e for e in effects if type(e) is Send and e.frame["type"] == "presence"]
    assert presence == [Send((w.conn["yoda"], w.conn["luke"]), {"type": "presence", "user": "hans", "online": True})]


def test_nobody_to_tell_means_no_presence_send(w):
    effects = w.login("hans")
    assert [e for e in effects if type(e) is Send and e.frame["type"] == "presence"] == []
    assert w.send("hans", {"type": "logout"})[2:] == [CancelTimer(("idle", w.conn["hans"]))]


# -- whoelse / whoelsesince --------------------------------------------------------------------

def test_whoelse_lists_the_others_sorted(w):
    w.login("yoda")
    assert w.send("yoda", {"type": "whoelse"}) == [Send((w.conn["yoda"],), {"type": "users", "names": []})]
    for user in ("vader", "hans", "luke"):
        w.login(user)
    assert w.to(w.send("yoda", {"type": "whoelse"}), "yoda") == [{"type": "users", "names": ["hans", "luke", "vader"]}]


def test_whoelsesince_window_includes_its_boundary(w):
    w.login("yoda", now=0.0)
    w.login("hans", now=0.0)
    w.login("luke", now=0.0)
    w.login("leia", now=0.0)
    w.send("hans", {"type": "logout"}, 10.0)
    w.s.disconnected(w.conn["luke"], 20.0)
    def ask(seconds, now):
        return w.to(w.send("yoda", {"type": "whoelsesince", "seconds": seconds}, now), "yoda")[0]
    assert ask(15, 25.0) == {"type": "users", "names": ["hans", "leia", "luke"]}   # hans out at exactly 25-15
    assert ask(14.999, 25.0)["names"] == ["leia", "luke"]
    assert ask(5, 25.0)["names"] == ["leia", "luke"]
    assert ask(4.5, 25.0)["names"] == ["leia"]
    assert ask(0, 25.0)["names"] == ["leia"]
    assert ask(10 ** 400, 25.0)["names"] == ["hans", "leia", "luke"]   # huge, but a number


def test_whoelsesince_counts_a_user_online_again(w):
    w.login("yoda", now=0.0)
    w.login("hans", now=0.0)
    w.send("hans", {"type": "logout"}, 1.0)
    w.login("hans", now=2.0)
    reply = w.to(w.send("yoda", {"type": "whoelsesince", "seconds": 0}, 100.0), "yoda")
    assert reply == [{"type": "users", "names": ["hans"]}]


@pytest.mark.parametrize("seconds", ["5", True, False, None, [1], -1, -0.001, float("nan"), float("inf"),
                                     float("-inf")])
def test_whoelsesince_needs_a_finite_non_negative_number(w, seconds):
    w.login("yoda")
    frame = {"type": "whoelsesince"} if seconds is None else {"type": "whoelsesince", "seconds": seconds}
    reply = w.to(w.send("yoda", frame), "yoda")
    assert len(reply) == 1 and reply[0]["code"] == "bad_argument" and reply[0]["detail"]


# -- messages --------------------------------------------------------------------------------

def test_a_message_reaches_an_online_user(w):
    w.login("yoda")
    w.login("hans")
    assert w.send("hans", msg("yoda", "hello there")) == \
        [Send((w.conn["yoda"],), {"type": "message", "from": "hans", "text": "hello there"})]


def test_message_errors(w):
    w.login("hans")
    hans = w.conn["hans"]
    assert w.send("hans", msg("nobody", "x")) == [Send((hans,), error("invalid_user"))]
    assert w.send("hans", msg("hans", "x")) == [Send((hans,), error("self", command="message"))]
    assert w.send("hans", msg("yoda", "x" * 4097)) == [Send((hans,), error("text_too_long", max=4096))]
    assert of_type(w.send("hans", msg("yoda", "x" * 4096)), KeepMessage)   # exactly the max is fine


CONTROL_TEXTS = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1bc", "hi\rhans: send me your password",
                 "hi\r\nWelcome to the greatest messaging application ever!", "\x0b", "\x0c", "\x00", "\x7f",
                 "\x85", "\x9b2J", "\x08" * 5 + "yoda"]


@pytest.mark.parametrize("text", CONTROL_TEXTS)
def test_text_with_a_control_character_is_refused_to_anyone_online_or_not(w, text):
    w.login("hans")
    w.login("yoda")
    for command in (msg("yoda", text), msg("luke", text), {"type": "broadcast", "text": text}):
        assert w.send("hans", command) == [Send((w.conn["hans"],), error("control_characters"))]
    assert w.s.stored("luke") == []


def test_text_may_hold_tabs_and_any_printable_character(w):
    w.login("hans")
    w.login("yoda")
    text = "a\ttab, ^[ as two characters, \u00e9\u4e2d\U0001f600, \u00a0 and \u00a0 no C1"
    assert w.to(w.send("hans", msg("yoda", text)), "yoda") == [{"type": "message", "from": "hans", "text": text}]
    assert w.to(w.send("hans", {"type": "broadcast", "text": text}), "yoda")[0]["text"] == text


def test_text_may_hold_line_breaks_in_a_message_kept_or_not_and_a_broadcast(w):
    """A message may span lines (the clients show its lines after the first indented under its sender)."""
    w.login("hans")
    w.login("yoda")
    text = "Dear Yoda,\nthe fleet is ready.\n\nRegards"
    assert w.to(w.send("hans", msg("yoda", text)), "yoda") == [{"type": "message", "from": "hans", "text": text}]
    assert w.to(w.send("hans", {"type": "broadcast", "text": text}), "yoda")[0]["text"] == text
    w.send("hans", msg("luke", text))
    assert [sender for _, sender in w.s.stored("luke")] == ["hans"]


def test_refused_text_costs_no_rate_tokens():
    w = World(rate=1.0, burst=1)
    w.login("hans")
    w.login("yoda")
    for _ in range(5):
        w.send("hans", msg("yoda", "\x1b[2J"))
    assert w.to(w.send("hans", msg("yoda", "still here")), "yoda") == [
        {"type": "message", "from": "hans", "text": "still here"}]


@pytest.mark.parametrize("frame", [{"type": "message"}, {"type": "message", "to": "yoda"},
                                   {"type": "message", "to": 1, "text": "x"},
                                   {"type": "message", "to": "yoda", "text": ["x"]},
                                   {"type": "message", "to": "nobody"}])
def test_message_field_types_are_checked(w, frame):
    w.login("hans")
    assert w.to(w.send("hans", frame), "hans")[0]["code"] == "bad_frame"


def test_a_message_to_an_offline_user_is_kept_then_the_sender_is_told(w):
    w.login("hans")
    hans = w.conn["hans"]
    assert w.send("hans", msg("yoda", "first")) == [
        KeepMessage(1, "yoda", "hans", "first", confirm=stored_reply(hans, "yoda"))]
    assert w.send("hans", msg("yoda", "second")) == [
        KeepMessage(2, "yoda", "hans", "second", confirm=stored_reply(hans, "yoda"))]
    assert w.stored("yoda") == [(1, "hans", "first"), (2, "hans", "second")]


def test_stored_messages_follow_welcome_and_presence_oldest_first(w):
    w.login("hans")
    w.login("luke")
    w.send("hans", msg("yoda", "first"))
    w.send("luke", msg("yoda", "second"))
    w.send("hans", msg("yoda", "third"))
    effects = w.login("yoda")
    yoda = w.conn["yoda"]
    sends = w.sends(effects)
    assert sends[0] == Send((yoda,), {"type": "welcome", "user": "yoda"})
    assert sends[1].frame["type"] == "presence"
    assert [s.frame for s in sends[2:]] == [
        {"type": "message", "from": "hans", "text": "first", "id": 1},
        {"type": "message", "from": "luke", "text": "second", "id": 2},
        {"type": "message", "from": "hans", "text": "third", "id": 3}]
    assert all(s.conns == (yoda,) for s in sends[2:])


def test_stored_messages_carry_sent_when_the_host_gives_the_wall_clock():
    w = World(wall_offset=1_700_000_000.0)
    w.login("hans", now=5.0)
    assert row(w.send("hans", msg("yoda", "hi"), 7.5)[0]) == (1, "yoda", "hans", "hi", 1_700_000_007.5)
    stored = w.to(w.login("yoda", now=9.0), "yoda")[-1]
    assert stored == {"type": "message", "from": "hans", "text": "hi", "id": 1, "sent": 1_700_000_007.5}


def test_stored_messages_stay_until_acknowledged(w):
    w.login("hans")
    for text in "abc":
        w.send("hans", msg("yoda", text))
    w.login("yoda")
    assert w.send("yoda", {"type": "ack", "ids": [1, 3, 99]}) == [ForgetMessages((1, 3))]
    assert w.send("yoda", {"type": "ack", "ids": [1]}) == []   # already forgotten
    w.s.disconnected(w.conn["yoda"], 1.0)
    again = [f for f in w.to(w.login("yoda", now=2.0), "yoda") if f["type"] == "message"]
    assert again == [{"type": "message", "from": "hans", "text": "b", "id": 2}]
    assert w.send("yoda", {"type": "ack", "ids": [2]}) == [ForgetMessages((2,))]
    w.send("yoda", {"type": "logout"})
    assert [f for f in w.to(w.login("yoda"), "yoda") if f["type"] == "message"] == []


def test_a_user_cannot_acknowledge_someone_elses_messages(w):
    w.login("hans")
    w.send("hans", msg("yoda", "for yoda"))
    assert w.send("hans", {"type": "ack", "ids": [1]}) == []
    assert w.stored("yoda") == [(1, "hans", "for yoda")]


@pytest.mark.parametrize("ids", [None, 1, "1", [1, "2"], [True], [1.0], {"1": 1}])
def test_ack_ids_must_be_a_list_of_integers(w, ids):
    w.login("yoda")
    frame = {"type": "ack"} if ids is None else {"type": "ack", "ids": ids}
    assert w.to(w.send("yoda", frame), "yoda")[0]["code"] == "bad_frame"


def test_the_offline_queue_has_a_cap_per_recipient():
    w = World(queue_cap=2)
    w.login("hans")
    hans = w.conn["hans"]
    w.send("hans", msg("yoda", "1"))
    w.send("hans", msg("yoda", "2"))
    assert w.send("hans", msg("yoda", "3")) == [Send((hans,), error("queue_full", user="yoda"))]
    assert of_type(w.send("hans", msg("luke", "1")), KeepMessage)   # another box is not full
    w.login("yoda")
    w.send("yoda", {"type": "ack", "ids": [1]})
    w.send("yoda", {"type": "logout"})
    assert row(w.send("hans", msg("yoda", "3"))[0]) == (4, "yoda", "hans", "3", None)


def test_stored_messages_loaded_at_start_are_delivered_in_id_order_and_ids_go_on():
    w = World(offline=[(7, "yoda", "luke", "later"), (5, "yoda", "hans", "earlier"), (6, "leia", "hans", "x")])
    w.login("yoda")
    assert [f.get("id") for f in w.to(w.s.received(w.conn["yoda"], {"type": "whoelse"}, 0), "yoda")] == [None]
    w.send("yoda", {"type": "logout"})
    frames = [f for f in w.to(w.login("yoda"), "yoda") if f["type"] == "message"]
    assert [(f["id"], f["text"]) for f in frames] == [(5, "earlier"), (7, "later")]
    assert "sent" not in frames[0]
    w.send("yoda", {"type": "logout"})
    w.login("hans")
    assert row(w.send("hans", msg("luke", "new"))[0]) == (8, "luke", "hans", "new", None)


# -- a big mailbox, paced by its reader -----------------------------------------------------------

@pytest.mark.parametrize("count, text", [(30, EMOJI * 4096), (300, "x" * 4000), (1000, "short")])
def test_a_big_mailbox_goes_out_a_chunk_per_writable_oldest_first(count, text):
    w, texts = big_mailbox(count, text)
    chunks = deliver_all(w, w.login("yoda"))
    assert [f["text"] for chunk in chunks for f in chunk] == texts
    assert [f["id"] for chunk in chunks for f in chunk] == list(range(1, count + 1))
    for chunk in chunks:   # about one window each: at least one message, at most a message past the window
        size = sum(len(encode(f)) for f in chunk)
        assert chunk and size - len(encode(chunk[-1])) < MAILBOX_CHUNK * 1.1, size
    assert len(chunks) > 1
    assert w.s.writable(w.conn["yoda"], 0.0) == []   # nothing left to send


def test_the_logic_keeps_what_it_needs_of_a_stored_message_but_not_its_text():
    w = World(rate=None, sender_quota=None)
    w.login("hans")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):   # straight to the logic: nothing keeps the KeepMessage's text afterwards
            ChatServer.received(w.s, w.conn["hans"], msg("yoda", f"{i:04d}" + "x" * 3996), 0.0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 300 * 300, grown   # the texts alone are 300 x 4,000 bytes
    (first, *_, last) = w.s.stored("yoda")
    assert (first, last) == ((1, "hans"), (300, "hans"))


def test_welcome_and_presence_go_before_the_first_chunk():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("luke")
    effects = w.login("yoda")
    frames = w.to(effects, "yoda")
    assert frames[0] == {"type": "welcome", "user": "yoda"}
    assert [f["type"] for f in frames[1:]] == ["message"] * len(frames[1:])
    assert len(frames[1:]) < 30
    assert effects[-1] == WhenWritable(w.conn["yoda"])


def test_a_live_message_waits_behind_a_mailbox_still_on_its_way():
    w, texts = big_mailbox(30, EMOJI * 4096, wall_offset=1000.0)
    w.login("hans")
    first = w.login("yoda", now=1.0)
    assert w.send("hans", msg("yoda", "live"), 2.0) == [     # kept, not sent; hans is told nothing
        KeepMessage(31, "yoda", "hans", "live", 1002.0)]
    chunks = deliver_all(w, first)
    frames = [f for chunk in chunks for f in chunk]
    assert [f["text"] for f in frames] == texts + ["live"]
    assert frames[-1] == {"type": "message", "from": "hans", "text": "live", "id": 31, "sent": 1002.0}
    # once the mailbox is out, messages go straight through again
    assert w.send("hans", msg("yoda", "later")) == [Send((w.conn["yoda"],), {"type": "message", "from": "hans",
                                                                             "text": "later"})]


def test_a_pong_waits_for_the_whole_mailbox():
    w, texts = big_mailbox(30, EMOJI * 4096)
    first = w.login("yoda")
    conn = w.conn["yoda"]
    assert w.send("yoda", {"type": "ping"}) == []          # stored messages still on their way
    assert w.send("yoda", {"type": "ping"}) == []
    effects = first
    while WhenWritable(conn) in effects:
        effects = w.s.writable(conn, 0.0)
    assert frames_to(effects, conn, w.store)[-2:] == [{"type": "pong"}, {"type": "pong"}]   # after the last message
    assert w.send("yoda", {"type": "ping"}) == [Send((conn,), {"type": "pong"})]    # then at once again


def test_a_pong_owed_when_the_rest_of_a_mailbox_was_acknowledged_goes_out_at_the_next_writable():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("yoda")
    conn = w.conn["yoda"]
    w.send("yoda", {"type": "ping"})
    w.send("yoda", {"type": "ack", "ids": list(range(1, 31))})   # everything, before it was sent
    assert w.s.writable(conn, 0.0) == [Send((conn,), {"type": "pong"})]


def test_a_message_behind_a_full_mailbox_is_refused_as_queue_full():
    w, texts = big_mailbox(30, EMOJI * 4096, queue_cap=30)
    w.login("hans")
    w.login("yoda")
    assert w.send("hans", msg("yoda", "one too many")) == [
        Send((w.conn["hans"],), error("queue_full", user="yoda"))]


def test_broadcasts_and_notices_are_not_held_behind_the_mailbox():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("hans")
    w.login("yoda")
    effects = w.send("hans", {"type": "broadcast", "text": "all"})
    assert w.to(effects, "yoda") == [{"type": "message", "from": "hans", "text": "all", "broadcast": True}]


def test_acks_during_delivery_and_what_is_not_acked_comes_again():
    w, texts = big_mailbox(30, EMOJI * 4096)
    yoda_first = w.login("yoda")
    conn = w.conn["yoda"]
    shown = [f["id"] for f in w.to(yoda_first, "yoda") if f["type"] == "message"]
    assert w.send("yoda", {"type": "ack", "ids": shown + [30]}) == [ForgetMessages(tuple(shown + [30]))]
    rest = [f["id"] for chunk in deliver_all(w, w.s.writable(conn, 0.0)) for f in chunk]
    assert rest == list(range(len(shown) + 1, 30))   # 30 was acknowledged before it went: skipped
    w.send("yoda", {"type": "ack", "ids": rest[:5]})
    w.send("yoda", {"type": "logout"})
    again = deliver_all(w, w.login("yoda"))
    assert [f["id"] for chunk in again for f in chunk] == rest[5:]


def test_a_mailbox_cut_short_starts_again_at_the_next_login():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("yoda")
    conn = w.conn["yoda"]
    w.s.disconnected(conn, 1.0)
    assert w.s.writable(conn, 1.0) == []   # a late answer for a connection that is gone
    chunks = deliver_all(w, w.login("yoda"))
    assert [f["text"] for chunk in chunks for f in chunk] == texts


# -- broadcast ----------------------------------------------------------------------------------

def test_broadcast_is_one_send_to_every_other_online_user(w):
    for user in ("hans", "yoda", "luke", "leia"):
        w.login(user)
    pending = w.connect()
    w.username(pending, "vader")
    effects = w.send("yoda", {"type": "broadcast", "text": "all"})
    assert effects == [Send((w.conn["hans"], w.conn["luke"], w.conn["leia"]),
                            {"type": "message", "from": "yoda", "text": "all", "broadcast": True})]


def test_broadcast_alone_sends_nothing(w):
    w.login("hans")
    assert w.send("hans", {"type": "broadcast", "text": "anyone?"}) == []


def test_broadcast_errors(w):
    w.login("hans")
    assert w.to(w.send("hans", {"type": "broadcast", "text": "x" * 4097}), "hans") == \
        [error("text_too_long", max=4096)]
    assert w.to(w.send("hans", {"type": "broadcast"}), "hans")[0]["code"] == "bad_frame"


def test_max_text_is_configurable():
    w = World(max_text=3)
    w.login("hans")
    w.login("yoda")
    assert w.to(w.send("hans", msg("yoda", "abcd")), "hans") == [error("text_too_long", max=3)]
    assert w.to(w.send("hans", msg("yoda", "abc")), "yoda")[0]["text"] == "abc"


# -- blocking -------------------------------------------------------------------------------------

def test_block_and_unblock_replies_and_persist(w):
    w.login("yoda")
    yoda = w.conn["yoda"]
    assert w.send("yoda", {"type": "block", "user": "vader"}) == [
        AddBlock("yoda", "vader", Send((yoda,), {"type": "blocked", "user": "vader"}))]
    assert w.send("yoda", {"type": "unblock", "user": "vader"}) == [
        RemoveBlock("yoda", "vader", Send((yoda,), {"type": "unblocked", "user": "vader"}))]


def test_block_and_unblock_errors(w):
    w.login("yoda")
    w.send("yoda", {"type": "block", "user": "vader"})
    def reply(frame):
        return w.to(w.send("yoda", frame), "yoda")
    assert reply({"type": "block", "user": "nobody"}) == [error("invalid_user")]
    assert reply({"type": "block", "user": "yoda"}) == [error("self", command="block")]
    assert reply({"type": "block", "user": "vader"}) == [error("already_blocked", user="vader")]
    assert reply({"type": "unblock", "user": "nobody"}) == [error("invalid_user")]
    assert reply({"type": "unblock", "user": "hans"}) == [error("not_blocked", user="hans")]
    assert reply({"type": "unblock", "user": "yoda"}) == [error("not_blocked", user="yoda")]
    assert reply({"type": "block"})[0]["code"] == "bad_frame"
    assert reply({"type": "unblock", "user": 3})[0]["code"] == "bad_frame"
    w.send("yoda", {"type": "unblock", "user": "vader"})
    assert reply({"type": "unblock", "user": "vader"}) == [error("not_blocked", user="vader")]


def test_a_blocked_user_cannot_message_the_blocker_online_or_not(w):
    w.login("yoda")
    w.login("vader")
    w.send("yoda", {"type": "block", "user": "vader"})
    refused = [Send((w.conn["vader"],), error("blocked_by_recipient", user="yoda"))]
    assert w.send("vader", msg("yoda", "hi")) == refused
    w.send("yoda", {"type": "logout"})
    assert w.send("vader", msg("yoda", "hi")) == refused          # offline: not kept either
    assert w.stored("yoda") == []


def test_the_blocker_can_still_message_the_blocked(w):
    w.login("yoda")
    w.login("vader")
    w.send("yoda", {"type": "block", "user": "vader"})
    assert w.to(w.send("yoda", msg("vader", "hi")), "vader") == [{"type": "message", "from": "yoda", "text": "hi"}]


def test_broadcast_skips_blockers_and_tells_the_sender(w):
    for user in ("yoda", "hans", "luke", "vader"):
        w.login(user)
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("luke", {"type": "block", "user": "vader"})
    vader = w.conn["vader"]
    assert w.send("vader", {"type": "broadcast", "text": "hi"}) == [
        Send((w.conn["hans"],), {"type": "message", "from": "vader", "text": "hi", "broadcast": True}),
        Send((vader,), {"type": "broadcast_partial"})]
    w.send("hans", {"type": "logout"})
    assert w.send("vader", {"type": "broadcast", "text": "hi"}) == [Send((vader,), {"type": "broadcast_partial"})]


def test_a_blocker_offline_does_not_make_a_broadcast_partial(w):
    w.login("hans")
    w.login("vader")
    w.login("yoda")
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("yoda", {"type": "logout"})
    assert [e.frame["type"] for e in w.send("vader", {"type": "broadcast", "text": "x"})] == ["message"]


def test_presence_is_not_sent_to_users_the_subject_blocked(w):
    w.login("vader")
    w.login("hans")
    w.login("yoda")
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("yoda", {"type": "logout"})
    w.s.disconnected(w.conn["yoda"], 0.0)
    effects = w.login("yoda")
    presence = [e for e in effects if type(e) is Send and e.frame["type"] == "presence"]
    assert presence == [Send((w.conn["hans"],), {"type": "presence", "user": "yoda", "online": True})]
    out = w.send("yoda", {"type": "logout"})
    assert [e.conns for e in out if type(e) is Send and e.frame["type"] == "presence"] == [(w.conn["hans"],)]


def test_the_blocker_still_sees_the_blocked_users_presence(w):
    w.login("yoda")
    w.send("yoda", {"type": "block", "user": "vader"})
    assert w.to(w.login("vader"), "yoda") == [{"type": "presence", "user": "vader", "online": True}]
    assert w.to(w.send("vader", {"type": "logout"}), "yoda") == [{"type": "presence", "user": "vader", "online": False}]


def test_blockers_are_hidden_from_whoelse_and_whoelsesince(w):
    for user in ("yoda", "hans", "vader", "luke"):
        w.login(user, now=0.0)
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("luke", {"type": "block", "user": "vader"})
    w.send("luke", {"type": "logout"}, 1.0)
    assert w.to(w.send("vader", {"type": "whoelse"}), "vader") == [{"type": "users", "names": ["hans"]}]
    assert w.to(w.send("vader", {"type": "whoelsesince", "seconds": 100}, 2.0), "vader") == \
        [{"type": "users", "names": ["hans"]}]
    # the blocker still sees the blocked
    assert w.to(w.send("yoda", {"type": "whoelse"}), "yoda") == [{"type": "users", "names": ["hans", "vader"]}]


def test_blocks_last_across_logouts_and_can_be_loaded(w):
    w.login("yoda")
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("yoda", {"type": "logout"})
    w.login("yoda")
    w.login("vader")
    assert w.to(w.send("vader", msg("yoda", "x")), "vader")[0]["code"] == "blocked_by_recipient"
    loaded = World(blocks=[("yoda", "vader")])
    loaded.login("vader")
    assert loaded.to(loaded.send("vader", msg("yoda", "x")), "vader")[0]["code"] == "blocked_by_recipient"
    loaded.login("yoda")
    assert loaded.to(loaded.send("yoda", {"type": "block", "user": "vader"}), "yoda") == \
        [error("already_blocked", user="vader")]


def test_unblock_lets_messages_through_again(w):
    w.login("yoda")
    w.login("vader")
    w.send("yoda", {"type": "block", "user": "vader"})
    w.send("yoda", {"type": "unblock", "user": "vader"})
    assert w.to(w.send("vader", msg("yoda", "sorry")), "yoda")[0]["text"] == "sorry"
    assert w.to(w.send("vader", {"type": "whoelse"}), "vader") == [{"type": "users", "names": ["yoda"]}]


# -- private chat brokering ------------------------------------------------------------------------

def start(w, a="hans", b="yoda", now=0.0):
    return w.send(a, {"type": "startprivate", "user": b}, now)


def answer(w, b="yoda", a="hans", accept=True, now=0.0):
    return w.send(b, {"type": "private_answer", "user": a, "accept": accept}, now)


def ready(w, b="yoda", a="hans", token="token1", now=0.0):
    return w.send(b, {"type": "private_ready", "user": a, "token": token}, now)


@pytest.fixture
def pair(w):
    w.login("hans")
    w.login("yoda")
    return w


def test_private_consent_accepted_full_flow(pair):
    w = pair
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    assert start(w, now=1.0) == [Send((yoda,), {"type": "private_request", "from": "hans"})]
    assert answer(w, now=2.0) == [SetTimer(("private", "hans", "yoda"), 32.0),
                                  Send((yoda,), {"type": "private_expect", "user": "hans", "token": "token1"})]
    assert ready(w, now=3.0) == [
        CancelTimer(("private", "hans", "yoda")),
        Send((hans,), {"type": "private_connect", "user": "yoda", "host": "10.0.0.1", "port": 40000 + yoda,
                       "token": "token1"})]
    # the request is over for the server: a new one may start (either way)
    assert start(w, "yoda", "hans")[0].frame["type"] == "private_request"


def test_private_declined(pair):
    w = pair
    start(w)
    assert answer(w, accept=False) == [Send((w.conn["hans"],), error("private_declined", user="yoda"))]
    assert w.to(answer(w), "yoda") == [error("no_request", user="hans")]
    assert start(w)[0].frame["type"] == "private_request"


def test_answering_without_a_request(pair):
    w = pair
    assert w.to(answer(w), "yoda") == [error("no_request", user="hans")]
    start(w)
    assert w.to(answer(w, b="hans", a="yoda"), "hans") == [error("no_request", user="yoda")]  # wrong direction
    answer(w)
    assert w.to(answer(w), "yoda") == [error("no_request", user="hans")]  # answered already


@pytest.mark.parametrize("frame", [{"type": "private_answer", "user": "hans"},
                                   {"type": "private_answer", "user": "hans", "accept": 1},
                                   {"type": "private_answer", "user": None, "accept": True},
                                   {"type": "private_ready", "user": "hans"},
                                   {"type": "private_ready", "user": 1, "token": "t"},
                                   {"type": "startprivate"}, {"type": "startprivate", "user": ["yoda"]}])
def test_private_frames_field_types(pair, frame):
    assert pair.to(pair.send("yoda", frame), "yoda")[0]["code"] == "bad_frame"


def test_startprivate_refusals(w):
    w.login("hans")
    w.login("yoda", listen=False)
    w.login("vader")
    w.login("luke")
    def reply(a, b):
        return w.to(start(w, a, b), a)
    assert reply("hans", "nobody") == [error("invalid_user")]
    assert reply("hans", "hans") == [error("self", command="startprivate")]
    assert reply("hans", "leia") == [error("offline", user="leia")]
    assert reply("hans", "yoda") == [error("private_unavailable", user="yoda")]
    w.send("vader", {"type": "block", "user": "hans"})
    assert reply("hans", "vader") == [error("private_blocked", user="vader")]
    w.send("vader", {"type": "logout"})
    assert reply("hans", "vader") == [error("private_blocked", user="vader")]   # presence stays hidden
    start(w, "hans", "luke")
    assert reply("hans", "luke") == [error("private_pending", user="luke")]
    assert reply("luke", "hans") == [error("private_pending", user="hans")]


def test_a_pending_token_is_pending_too(pair):
    w = pair
    start(w)
    answer(w)
    assert w.to(start(w, "yoda", "hans"), "yoda") == [error("private_pending", user="hans")]


def test_the_requester_may_start_private_with_someone_it_blocked(pair):
    w = pair
    w.send("hans", {"type": "block", "user": "yoda"})
    assert start(w)[0].frame == {"type": "private_request", "from": "hans"}


def test_listen_port_is_checked_and_its_host_ignored(w):
    w.login("hans", listen=False)
    for frame in ({"type": "listen", "host": "h"}, {"type": "listen", "host": "h", "port": 0},
                  {"type": "listen", "host": "h", "port": 65536}, {"type": "listen", "host": "h", "port": True},
                  {"type": "listen", "host": "h", "port": "80"}):
        assert w.to(w.send("hans", frame), "hans")[0]["code"] == "bad_frame"
    for frame in ({"type": "listen", "host": "::1", "port": 65535}, {"type": "listen", "port": 80},
                  {"type": "listen", "host": 5, "port": 80}, {"type": "listen", "host": "h" * 256, "port": 80}):
        assert w.send("hans", frame) == []


def test_a_peer_address_is_the_one_the_server_saw_not_the_one_claimed(w):
    """vader claims to listen at a third party's address: hans's client is sent to vader's own
    address (where vader's connection comes from), with the port vader named."""
    w.login("hans", address="192.0.2.10")
    w.login("vader", listen=False, address="198.51.100.7")
    assert w.send("vader", {"type": "listen", "host": "192.0.2.99", "port": 22}) == []
    start(w, "hans", "vader")
    answer(w, "vader", "hans")
    assert w.to(ready(w, "vader", "hans"), "hans") == [
        {"type": "private_connect", "user": "vader", "host": "198.51.100.7", "port": 22, "token": "token1"}]


def test_the_token_expires_after_token_ttl(pair):
    w = pair
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    start(w, now=0.0)
    answer(w, now=5.0)
    key = ("private", "hans", "yoda")
    assert w.s.timer_fired(key, 34.0) == [SetTimer(key, 35.0)]   # early: re-armed
    assert w.s.timer_fired(key, 35.0) == [Send((hans,), {"type": "private_cancelled", "user": "yoda"}),
                                          Send((yoda,), {"type": "private_cancelled", "user": "hans"})]
    assert ready(w, now=36.0) == []             # too late: nothing
    assert w.s.timer_fired(key, 40.0) == []
    assert start(w)[0].frame["type"] == "private_request"


def test_token_ttl_and_factory_are_configurable():
    w = World(token_ttl=2.5, token_factory=lambda: "fixed")
    w.login("hans")
    w.login("yoda")
    start(w)
    assert answer(w, now=1.0) == [SetTimer(("private", "hans", "yoda"), 3.5),
                                  Send((w.conn["yoda"],), {"type": "private_expect", "user": "hans", "token": "fixed"})]


def test_ready_with_the_wrong_token_is_ignored(pair):
    w = pair
    start(w)
    assert ready(w) == []          # not accepted yet
    answer(w)
    assert ready(w, token="guess") == []
    assert ready(w, b="yoda", a="luke") == []
    assert w.to(ready(w), "hans")[0]["type"] == "private_connect"


def test_a_request_ends_when_the_target_goes(pair):
    w = pair
    start(w)
    effects = w.s.disconnected(w.conn["yoda"], 1.0)
    assert Send((w.conn["hans"],), {"type": "private_cancelled", "user": "yoda"}) in effects
    w.login("yoda")
    assert w.to(answer(w), "yoda") == [error("no_request", user="hans")]


def test_a_request_ends_when_the_target_goes_after_accepting(pair):
    w = pair
    start(w)
    answer(w)
    effects = w.send("yoda", {"type": "logout"})
    assert CancelTimer(("private", "hans", "yoda")) in effects
    assert Send((w.conn["hans"],), {"type": "private_cancelled", "user": "yoda"}) in effects
    assert w.s.timer_fired(("private", "hans", "yoda"), 100.0) == []


def test_a_request_ends_when_the_requester_goes(pair):
    w = pair
    start(w)
    yoda = w.conn["yoda"]
    effects = w.s.timer_fired(("idle", w.conn["hans"]), TIMEOUT)
    assert [e for e in effects if type(e) is Send and e.conns == (yoda,)] == [
        Send((yoda,), {"type": "private_cancelled", "user": "hans"}),
        Send((yoda,), {"type": "presence", "user": "hans", "online": False})]


@pytest.mark.parametrize("blocker,blocked", [("yoda", "hans"), ("hans", "yoda")])
@pytest.mark.parametrize("accepted", [False, True])
def test_a_block_cancels_an_open_request_for_both(pair, blocker, blocked, accepted):
    w = pair
    start(w)
    if accepted:
        answer(w)
    effects = w.send(blocker, {"type": "block", "user": blocked})
    expected = [AddBlock(blocker, blocked, Send((w.conn[blocker],), {"type": "blocked", "user": blocked}))]
    if accepted:
        expected.append(CancelTimer(("private", "hans", "yoda")))
    expected += [Send((w.conn["hans"],), {"type": "private_cancelled", "user": "yoda"}),
                 Send((w.conn["yoda"],), {"type": "private_cancelled", "user": "hans"})]
    assert effects == expected
    assert w.to(answer(w), "yoda") == [error("no_request", user="hans")]


def test_a_block_leaves_other_requests_alone(w):
    for user in ("hans", "yoda", "luke"):
        w.login(user)
    start(w, "hans", "yoda")
    start(w, "luke", "yoda")
    w.send("yoda", {"type": "block", "user": "hans"})
    assert w.to(answer(w, "yoda", "luke"), "yoda")[0]["type"] == "private_expect"


# -- bad frames ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [[], [1, 2], 5, 1.5, "hello", None, True])
def test_a_frame_that_is_not_an_object_is_a_bad_frame(w, value):
    conn = w.connect()
    assert w.s.received(conn, value, 0.0) == [Send((conn,), error("bad_frame", detail="a frame must be a JSON object"))]


@pytest.mark.parametrize("frame", [{}, {"type": 5}, {"type": None}, {"type": ["message"]}, {"type": {"a": 1}}])
def test_a_frame_without_a_string_type_is_a_bad_frame(w, frame):
    w.login("hans")
    assert w.to(w.send("hans", frame), "hans") == [error("bad_frame", detail="a frame needs a string 'type'")]


def test_an_unknown_type_is_a_bad_frame_at_every_stage(w):
    conn = w.connect(hello=False)
    assert w.s.received(conn, {"type": "bogus"}, 0)[0].frame["detail"] == "the first frame must be hello"
    w.s.received(conn, HELLO, 0)
    assert w.s.received(conn, {"type": "bogus"}, 0)[0].frame == error("bad_frame", detail="unknown frame type 'bogus'")
    w.login("hans")
    assert w.to(w.send("hans", {"type": "bogus"}), "hans") == [error("bad_frame", detail="unknown frame type 'bogus'")]
    detail = w.to(w.send("hans", {"type": "x" * 60000}), "hans")[0]["detail"]
    assert len(detail) < 100


def test_undecodable_lines_get_bad_frame_with_the_framing_detail(w):
    conn = w.connect(hello=False)
    assert w.s.bad_frame(conn, "invalid UTF-8", 0.0) == [Send((conn,), error("bad_frame", detail="invalid UTF-8"))]
    assert w.s.bad_frame(999, "invalid JSON", 0.0) == []


def test_the_tenth_bad_frame_closes_the_connection(w):
    conn = w.connect(hello=False)
    for i in range(9):
        effects = w.s.bad_frame(conn, "invalid JSON", 0.0) if i % 2 else w.s.received(conn, [], 0.0)
        assert of_type(effects, Close) == []
    assert w.s.received(conn, HELLO, 0.0) == [Send((conn,), {**HELLO, "timeout": TIMEOUT})]   # good frames do
    # not reset the count
    assert unfailed(w.s.bad_frame(conn, "invalid JSON", 0.0)) == [
        Send((conn,), error("bad_frame", detail="invalid JSON")), Close(conn), CancelTimer(("login", conn))]
    assert w.s.received(conn, HELLO, 0.0) == []


def test_too_many_bad_frames_log_a_user_out():
    w = World(max_bad_frames=2)
    w.login("yoda")
    w.login("hans")
    hans = w.conn["hans"]
    w.send("hans", {"type": "bogus"})
    assert w.send("hans", {"type": "bogus"}) == [
        Send((hans,), error("bad_frame", detail="unknown frame type 'bogus'")), Close(hans),
        CancelTimer(("idle", hans)), Send((w.conn["yoda"],), {"type": "presence", "user": "hans", "online": False})]


@pytest.mark.parametrize("refused", [{"type": "whoelse"}, {"type": "username", "username": "nobody"},
                                     {"type": "password", "password": "wrong"}])
def test_refusals_before_login_count_toward_the_bad_frame_budget(refused):
    w = World(max_bad_frames=3)
    conn = w.connect()
    if refused["type"] == "password":
        w.username(conn, "hans")
    answer = unfailed(w.s.received(conn, refused, 0.0))
    assert [e.frame["code"] for e in answer] in (["not_logged_in"], ["invalid_username"], ["invalid_password"])
    assert unfailed(w.s.bad_frame(conn, "invalid JSON", 0.0)) == [
        Send((conn,), error("bad_frame", detail="invalid JSON"))]
    effects = w.s.received(conn, refused, 0.0)
    assert unfailed(effects) == answer + [Close(conn), CancelTimer(("login", conn))]
    assert LoginFailed(conn, "closed after too many errors") in effects
    assert w.s.received(conn, refused, 0.0) == []   # forgotten


def test_events_for_unknown_connections_are_ignored(w):
    assert w.s.received(42, HELLO, 0.0) == []
    assert w.s.disconnected(42, 0.0) == []


# -- shutdown --------------------------------------------------------------------------------------------

def test_shutdown_says_bye_to_every_connection_and_closes_each(w):
    w.login("hans")
    w.login("yoda")
    anonymous = w.connect()
    w.send("hans", {"type": "startprivate", "user": "yoda"})
    conns = (w.conn["hans"], w.conn["yoda"], anonymous)
    assert w.s.shutdown(10.0) == [Send(conns, {"type": "bye", "reason": "shutdown"}),
                                  Close(conns[0]), Close(conns[1]), Close(conns[2])]
    assert w.s.online_users() == []
    assert w.s.shutdown(10.0) == []
    for conn in conns:
        assert w.s.received(conn, {"type": "whoelse"}, 11.0) == []
        assert w.s.disconnected(conn, 11.0) == []
        assert w.s.timer_fired(("idle", conn), 100.0) == []
    assert w.s.timer_fired(("private", "hans", "yoda"), 100.0) == []
    assert w.s.connected(99, 11.0, "10.0.0.9") == [Send((99,), {"type": "bye", "reason": "shutdown"}), Close(99)]


def test_shutdown_with_no_connections(w):
    assert w.s.shutdown(0.0) == []


# The loggers of the server's rules: its modules but the host and the store (reactor/server/).
RULES_LOGGERS = {f"reactor.server.{module}" for module in (
    "rules", "chat", "door", "logins", "mail", "presence", "privates", "sessions", "limits", "blocks")}


# -- logging ------------------------------------------------------------------------------------------------

def test_logins_failures_lockouts_and_logouts_are_logged_without_passwords(caplog):
    caplog.set_level(logging.DEBUG, logger="reactor.server")
    w = World()
    conn = w.connect()
    w.username(conn, "not-a-user-but-a-password")
    w.username(conn, "vader")
    for wrong in ("guess1", "guess2", "guess3"):
        w.password(conn, wrong)
    w.login("hans")
    w.send("hans", {"type": "logout"})
    text = caplog.text
    assert caplog.records and all(r.name in RULES_LOGGERS for r in caplog.records)
    assert "hans logged in" in text and "hans logged out (logout)" in text
    assert "wrong password for vader" in text and "locked" in text
    for secret in ("guess1", "guess2", "guess3", "falcon*solo", "not-a-user-but-a-password"):
        assert secret not in text


# -- presence in turns (protocol version 2) --------------------------------------

def got(effects, conn):
    """Every frame ``effects`` send to ``conn``, batches included, in order."""
    frames = []
    for e in effects:
        if type(e) is Send and conn in e.conns:
            frames.append(e.frame)
        elif type(e) is SendBatch and conn in e.conns:
            frames += e.frames
    return frames


def came(*users, online=True):
    return {"type": "presence", "users": list(users), "online": online}


def v1(user, online=True):
    return {"type": "presence", "user": user, "online": online}


def in_turns(**kw):
    w = World(**kw)
    assert w.s.end_turn(0.0) == []   # the host ends turns from now on
    return w


def test_without_turns_a_v2_user_hears_of_each_login_at_once_in_a_list():
    w = World()
    w.login("yoda", version=2)
    assert w.to(w.login("hans"), "yoda") == [came("hans")]


def test_in_turns_the_logins_of_a_turn_reach_a_v2_user_in_one_frame_and_a_v1_user_one_frame_each():
    w = in_turns()
    w.login("yoda", version=2)
    w.login("luke")
    w.s.end_turn(0.0)
    effects = w.login("hans") + w.login("leia", version=2)
    assert got(effects, w.conn["yoda"]) == got(effects, w.conn["luke"]) == []   # nothing before the turn ends
    effects = w.s.end_turn(0.0)
    assert got(effects, w.conn["yoda"]) == [came("hans", "leia")]
    assert got(effects, w.conn["luke"]) == [v1("hans"), v1("leia")]
    assert got(effects, w.conn["hans"]) == [v1("leia")]     # it came after hans
    assert got(effects, w.conn["leia"]) == []
    assert [e for e in effects if w.conn["yoda"] in e.conns] == [Send((w.conn["yoda"],), came("hans", "leia"))]
    assert w.s.end_turn(0.0) == []


def test_in_turns_logins_and_logouts_keep_their_order_in_runs():
    w = in_turns()
    w.login("yoda", version=2)
    w.login("vader")
    w.s.end_turn(0.0)
    w.login("hans")
    w.login("luke")
    w.send("hans", {"type": "logout"})
    w.login("leia")
    effects = w.s.end_turn(0.0)
    assert got(effects, w.conn["yoda"]) == [came("hans", "luke"), came("hans", online=False), came("leia")]
    assert got(effects, w.conn["vader"]) == [v1("hans"), v1("luke"), v1("hans", False), v1("leia")]


def test_in_turns_each_v2_user_who_came_in_the_turn_hears_what_came_after_it_in_runs():
    w = in_turns()
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    for user in ("hans", "luke", "leia"):
        w.login(user, version=2)
    w.send("luke", {"type": "logout"})
    w.login("vader", version=2)
    effects = w.s.end_turn(0.0)
    gone = came("luke", online=False)
    assert got(effects, w.conn["yoda"]) == [came("hans", "luke", "leia"), gone, came("vader")]
    assert got(effects, w.conn["hans"]) == [came("luke", "leia"), gone, came("vader")]
    assert got(effects, w.conn["leia"]) == [gone, came("vader")]
    assert got(effects, w.conn["vader"]) == []


def test_in_turns_a_pending_notice_goes_before_any_later_frame_to_its_recipient():
    w = in_turns()
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    w.login("hans")
    assert got(w.send("hans", msg("yoda", "hi")), w.conn["yoda"]) == [
        came("hans"), {"type": "message", "from": "hans", "text": "hi"}]
    assert got(w.send("hans", {"type": "logout"}), w.conn["yoda"]) == []
    assert got(w.s.end_turn(0.0), w.conn["yoda"]) == [came("hans", online=False)]


def test_in_turns_a_reply_to_the_recipient_itself_waits_for_its_notices():
    w = in_turns()
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    w.login("hans")
    assert got(w.send("yoda", {"type": "whoelse"}), w.conn["yoda"]) == [
        came("hans"), {"type": "users", "names": ["hans"]}]
    assert got(w.s.end_turn(0.0), w.conn["yoda"]) == []


def test_in_turns_a_user_leaving_is_told_what_it_is_owed_before_its_bye():
    w = in_turns(timeout=10.0)
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    w.login("hans", now=5.0)
    assert got(w.send("yoda", {"type": "logout"}, 5.0), w.conn["yoda"]) == [
        came("hans"), {"type": "bye", "reason": "logout"}]
    w.login("yoda", now=6.0, version=2)
    w.s.end_turn(6.0)
    w.login("luke", now=6.0)
    effects = w.s.timers_fired([("idle", w.conn["yoda"]), ("idle", w.conn["hans"])], 20.0)
    assert got(effects, w.conn["yoda"]) == [came("luke"), {"type": "bye", "reason": "timeout"}]


def test_in_turns_a_user_is_not_told_of_logins_by_users_who_blocked_it():
    w = in_turns()
    for user in ("yoda", "vader"):
        w.login(user, version=2)
    w.login("hans")
    w.send("hans", {"type": "block", "user": "yoda"})
    w.send("hans", {"type": "logout"})
    w.s.end_turn(0.0)
    w.login("hans")
    w.login("luke")
    w.send("hans", {"type": "unblock", "user": "yoda"})   # too late for the login it hid
    effects = w.s.end_turn(0.0)
    assert got(effects, w.conn["yoda"]) == [came("luke")]
    assert got(effects, w.conn["vader"]) == [came("hans", "luke")]


def test_shutdown_tells_the_turns_notices_before_the_bye():
    w = in_turns()
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    w.login("hans")
    assert got(w.s.shutdown(0.0), w.conn["yoda"]) == [came("hans"), {"type": "bye", "reason": "shutdown"}]


def test_in_turns_a_pending_notice_goes_before_the_stored_messages_sent_after_it():
    w, texts = big_mailbox(30, EMOJI * 4096)
    assert w.s.end_turn(0.0) == []
    w.login("yoda", version=2)
    w.s.end_turn(0.0)
    w.login("leia")
    w.send("leia", msg("yoda", "hi, just in"))          # stored behind yoda's mailbox on its way
    frames = w.to(w.s.writable(w.conn["yoda"], 0.0), "yoda")
    assert frames[0] == came("leia")                    # before the stored messages, her own among them
    assert got(w.s.end_turn(0.0), w.conn["yoda"]) == []   # told once
