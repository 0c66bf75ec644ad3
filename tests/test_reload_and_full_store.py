"""Two edges of the server's rules on the sans-I/O logic: the accounts file read again (SIGHUP), and a
store too full to keep a change (``not_stored``)."""
import logging

import pytest

from reactor.server.effects import AddBlock, Close, ForgetMessages, KeepMessage, RemoveBlock, Send, SendBatch
from tests.support import ACCOUNTS, EMOJI, World, big_mailbox, deliver_all, error, frames_to, msg, of_type


def login_with(w, user, password, now=0.0):
    """Try ``user``/``password`` on a new connection: (conn, the frames it got for the password)."""
    conn = w.connect(now)
    w.username(conn, user, now)
    return conn, frames_to(w.password(conn, password, now), conn)


# -- the accounts file read again ----------------------------------------------------------

def test_a_removed_account_is_logged_out_and_the_others_see_it_go(w):
    for user in ("hans", "yoda", "luke"):
        w.login(user)
    accounts = {u: p for u, p in ACCOUNTS.items() if u != "yoda"}
    effects = w.s.accounts_changed(accounts, 5.0)
    yoda = w.conn["yoda"]
    assert effects[:2] == [Send((yoda,), {"type": "bye", "reason": "account_removed"}), Close(yoda)]
    assert frames_to(effects, w.conn["hans"]) == [{"type": "presence", "user": "yoda", "online": False}]
    assert frames_to(effects, w.conn["luke"]) == [{"type": "presence", "user": "yoda", "online": False}]
    assert w.s.online_users() == ["hans", "luke"]
    assert w.s.received(yoda, {"type": "whoelse"}, 6.0) == []   # forgotten with its session
    assert w.to(w.send("hans", msg("yoda", "still there?")), "hans") == [error("invalid_user")]
    conn = w.connect()
    assert frames_to(w.username(conn, "yoda"), conn) == [error("invalid_username")]
    assert "yoda" in w.to(w.send("hans", {"type": "whoelsesince", "seconds": 10}, 6.0), "hans")[0]["names"]


def test_removed_accounts_leave_together_in_one_batch(w):
    for user in ("hans", "yoda", "luke", "leia"):
        w.login(user)
    effects = w.s.accounts_changed({"hans": ACCOUNTS["hans"], "luke": ACCOUNTS["luke"]}, 5.0)
    gone = (w.conn["leia"], w.conn["yoda"])
    assert effects[0] == Send(gone, {"type": "bye", "reason": "account_removed"})
    assert sorted(e.conn for e in of_type(effects, Close)) == sorted(gone)
    assert of_type(effects, SendBatch) == [SendBatch((w.conn["hans"], w.conn["luke"]), (
        {"type": "presence", "user": "leia", "online": False},
        {"type": "presence", "user": "yoda", "online": False}))]


def test_a_new_account_can_log_in(w):
    conn = w.connect()
    assert frames_to(w.username(conn, "rey"), conn) == [error("invalid_username")]
    assert w.s.accounts_changed({**ACCOUNTS, "rey": "scavenger"}, 1.0) == []
    conn, frames = login_with(w, "rey", "scavenger", 2.0)
    assert frames[0] == {"type": "welcome", "user": "rey"}


def test_a_changed_password_counts_from_the_next_login(w):
    w.login("hans")
    assert w.s.accounts_changed({**ACCOUNTS, "hans": "new*pw"}, 1.0) == []
    assert w.s.online_users() == ["hans"]   # the session goes on
    w.send("hans", {"type": "logout"})
    assert login_with(w, "hans", ACCOUNTS["hans"])[1] == [error("invalid_password")]
    assert login_with(w, "hans", "new*pw")[1][0] == {"type": "welcome", "user": "hans"}


def test_a_login_waiting_for_the_password_of_a_removed_name_fails_cleanly(w):
    conn = w.connect()
    w.username(conn, "yoda")
    w.s.accounts_changed({u: p for u, p in ACCOUNTS.items() if u != "yoda"}, 1.0)
    assert frames_to(w.password(conn, ACCOUNTS["yoda"], 2.0), conn) == [error("invalid_username")]
    assert w.s.online_users() == []
    # The connection is back at the user name, as after any unknown name.
    assert frames_to(w.username(conn, "hans", 3.0), conn) == [{"type": "username_ok"}]
    assert frames_to(w.password(conn, ACCOUNTS["hans"], 3.0), conn)[0]["type"] == "welcome"


def test_a_removed_account_takes_its_failures_and_lock_with_it(w):
    conn = w.connect()
    w.username(conn, "vader")
    for _ in range(3):
        w.password(conn, "wrong")
    assert w.s.is_locked("vader", 1.0)
    w.s.accounts_changed({u: p for u, p in ACCOUNTS.items() if u != "vader"}, 1.0)
    w.s.accounts_changed(dict(ACCOUNTS), 2.0)
    assert not w.s.is_locked("vader", 2.0)


def test_messages_kept_for_a_removed_account_wait_for_its_return(w):
    w.login("hans")
    w.send("hans", msg("yoda", "kept"))
    w.s.accounts_changed({u: p for u, p in ACCOUNTS.items() if u != "yoda"}, 1.0)
    w.s.accounts_changed(dict(ACCOUNTS), 2.0)
    assert [f["text"] for f in w.to(w.login("yoda", 3.0), "yoda") if f["type"] == "message"] == ["kept"]


def test_a_reload_after_shutdown_does_nothing(w):
    w.login("hans")
    w.s.shutdown(1.0)
    assert w.s.accounts_changed({}, 2.0) == []


def test_a_reload_logs_one_line_per_kind_of_change_without_passwords(caplog):
    caplog.set_level(logging.INFO, logger="reactor.server")
    w = World()
    accounts = {u: p for u, p in ACCOUNTS.items() if u not in ("yoda", "leia")}
    accounts.update({"hans": "changed*secret", "rey": "new*secret", "finn": "new*secret2"})
    w.s.accounts_changed(accounts, 1.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("accounts reloaded")]
    assert lines == ["accounts reloaded: 2 added", "accounts reloaded: 2 removed: leia, yoda",
                     "accounts reloaded: 1 with a new password"]
    assert "secret" not in caplog.text
    caplog.clear()
    w.s.accounts_changed(accounts, 2.0)
    assert [r.getMessage() for r in caplog.records] == ["accounts reloaded: no change"]


# -- a store with no room ------------------------------------------------------------------

def refused_message(w, to="yoda", text="lost"):
    """Hans stores a message for ``to`` that the store then cannot keep: the answer in place of ``stored``."""
    (change,) = of_type(w.send("hans", msg(to, text)), KeepMessage)
    return change, w.s.not_stored(change, 1.0)


def test_a_message_the_store_could_not_keep_is_refused_and_forgotten(w):
    w.login("hans")
    w.send("hans", msg("yoda", "kept"))
    change, answer = refused_message(w)
    assert answer == [Send((w.conn["hans"],), error("store_full", command="message", user="yoda"))]
    assert w.stored("yoda") == [(1, "hans", "kept")]
    frames = w.to(w.login("yoda", 2.0), "yoda")
    assert [f["text"] for f in frames if f["type"] == "message"] == ["kept"]


def test_a_refused_message_does_not_count_in_the_queue():
    w = World(queue_cap=2)
    w.login("hans")
    w.send("hans", msg("yoda", "1"))
    refused_message(w)
    assert of_type(w.send("hans", msg("yoda", "2")), KeepMessage)   # the refused one left room
    assert w.to(w.send("hans", msg("yoda", "3")), "hans") == [error("queue_full", user="yoda")]


def test_a_message_handed_over_at_a_login_meanwhile_is_confirmed_after_all(w):
    w.login("hans")
    (change,) = of_type(w.send("hans", msg("yoda", "just in time")), KeepMessage)
    frames = w.to(w.login("yoda"), "yoda")   # in the same turn: the message went out with the welcome
    assert [f["text"] for f in frames if f["type"] == "message"] == ["just in time"]
    assert w.s.not_stored(change, 1.0) == [change.confirm]
    assert w.stored("yoda") == []


def test_a_block_the_store_could_not_keep_is_undone(w):
    w.login("yoda")
    w.login("vader")
    (change,) = of_type(w.send("yoda", {"type": "block", "user": "vader"}), AddBlock)
    assert w.s.not_stored(change, 1.0) == [
        Send((w.conn["yoda"],), error("store_full", command="block", user="vader"))]
    assert w.to(w.send("vader", msg("yoda", "hello")), "yoda") == [{"type": "message", "from": "vader",
                                                                    "text": "hello"}]
    assert w.to(w.send("yoda", {"type": "unblock", "user": "vader"}), "yoda") == [error("not_blocked",
                                                                                        user="vader")]


def test_an_unblock_the_store_could_not_keep_is_undone(w):
    w.login("yoda")
    w.login("vader")
    w.send("yoda", {"type": "block", "user": "vader"})
    (change,) = of_type(w.send("yoda", {"type": "unblock", "user": "vader"}), RemoveBlock)
    assert w.s.not_stored(change, 1.0) == [
        Send((w.conn["yoda"],), error("store_full", command="unblock", user="vader"))]
    assert w.to(w.send("vader", msg("yoda", "hello")), "vader") == [error("blocked_by_recipient", user="yoda")]


def test_an_unrecorded_acknowledgement_changes_nothing_more(w):
    w.login("hans")
    w.send("hans", msg("yoda", "a"))
    w.login("yoda")
    (change,) = w.send("yoda", {"type": "ack", "ids": [1]})
    assert w.s.not_stored(change, 1.0) == []
    assert w.stored("yoda") == []


def test_refusals_undone_in_reverse_leave_the_blocks_as_they_were(w):
    """A block and its unblock in one refused turn: the host undoes the turn last change first."""
    w.login("yoda")
    block = of_type(w.send("yoda", {"type": "block", "user": "vader"}), AddBlock)[0]
    unblock = of_type(w.send("yoda", {"type": "unblock", "user": "vader"}), RemoveBlock)[0]
    w.s.not_stored(unblock, 1.0)
    w.s.not_stored(block, 1.0)
    w.login("vader")
    assert of_type(w.send("vader", msg("yoda", "hi")), Send)[0].frame["type"] == "message"


@pytest.mark.parametrize("change", [KeepMessage(9, "yoda", "hans", "x"), AddBlock("yoda", "vader"),
                                    RemoveBlock("yoda", "vader"), ForgetMessages((9,))])
def test_a_refused_change_without_a_confirmation_sends_nothing(w, change):
    assert w.s.not_stored(change, 1.0) == []


# -- what the client shows -----------------------------------------------------------------

@pytest.mark.parametrize("command, words", [
    ("message", "Error. The server cannot keep messages right now; hans did not get yours"),
    ("block", "Error. The server cannot keep blocks right now; hans is not blocked"),
    ("unblock", "Error. The server cannot keep blocks right now; hans is still blocked"),
])
def test_the_client_says_what_a_full_store_refused(command, words):
    from reactor.client.rules import Print
    from tests.support import logged_in
    c = logged_in()
    effects = c.server_frame(error("store_full", command=command, user="hans"), 1.0)
    assert [e.text for e in effects if type(e) is Print] == [words]


def test_a_message_behind_a_mailbox_on_its_way_is_refused_to_its_sender_and_never_sent():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("hans")
    first = w.login("yoda", now=1.0)
    (change,) = of_type(w.send("hans", msg("yoda", "lost behind"), 2.0), KeepMessage)
    assert change.confirm is None                 # nobody is told "stored" for a message to an online user
    assert w.s.not_stored(change, 2.0) == [Send((w.conn["hans"],), error("store_full", command="message",
                                                                          user="yoda"))]
    frames = [f for chunk in deliver_all(w, first) for f in chunk]
    assert [f["text"] for f in frames] == texts   # the mailbox goes on without it
