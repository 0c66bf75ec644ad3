"""A message sent again is never kept or delivered twice, on the server's sans-I/O logic: a message's ``ref``
is remembered while it is kept and for ``REF_MEMORY`` after its acknowledgement; the state file keeps it across
a restart, and a state file of schema version 1 is upgraded. (The client's side: test_client_retries.py; a
cluster's: test_cluster_server.py; the real processes: test_resent_e2e.py and test_cluster_e2e.py.)"""
import sqlite3

import pytest

from reactor.server.effects import ForgetMessages, KeepMessage, Send
from reactor.server.mail import REF_MEMORY
from reactor.server.store import SCHEMA_VERSION, Store
from tests.support import EMOJI, World, big_mailbox, error


def ref_msg(to, text, ref, retry=None):
    frame = {"type": "message", "to": to, "text": text, "ref": ref}
    if retry is not None:
        frame["retry"] = retry
    return frame


def stored(to, ref=None):
    return {"type": "stored", "to": to} if ref is None else {"type": "stored", "to": to, "ref": ref}


# -- the server ----------------------------------------------------------------------------

def test_a_kept_message_holds_its_ref_and_stored_names_it(w):
    w.login("hans")
    hans = w.conn["hans"]
    assert w.send("hans", ref_msg("yoda", "hi", "abc.1")) == [
        KeepMessage(1, "yoda", "hans", "hi", confirm=Send((hans,), stored("yoda", "abc.1")), ref="abc.1")]
    assert w.store.load()[1] == [(1, "yoda", "hans", 2, 2, None, "abc.1")]


@pytest.mark.parametrize("retry", [True, False, None])
def test_a_kept_message_sent_again_is_confirmed_and_not_kept_twice(w, retry):
    w.login("hans")
    w.send("hans", ref_msg("yoda", "hi", "abc.1"))
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "abc.1", retry)), "hans") == [stored("yoda", "abc.1")]
    assert w.stored("yoda") == [(1, "hans", "hi")]
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "abc.2")), "hans") == [stored("yoda", "abc.2")]   # another
    assert len(w.stored("yoda")) == 2


def test_refs_are_the_senders_own(w):
    w.login("hans")
    w.login("luke")
    w.send("hans", ref_msg("yoda", "from hans", "same.1"))
    w.send("luke", ref_msg("yoda", "from luke", "same.1", retry=True))
    w.send("hans", ref_msg("leia", "to leia", "same.1", retry=True))   # (a ref is one message: to one user)
    assert [sender for _, sender, _ in w.stored("yoda")] == ["hans", "luke"]
    assert len(w.stored("leia")) == 1


def test_a_retry_reaches_its_recipient_online_once_whether_it_was_shown_or_acknowledged(w):
    w.login("hans")
    w.send("hans", ref_msg("yoda", "hi", "abc.1"))
    w.login("yoda", now=1.0)                                  # it is shown (stored, id 1), not yet acknowledged
    assert w.send("hans", ref_msg("yoda", "hi", "abc.1", True), 2.0) == []   # taken: the pong says so
    assert w.send("yoda", {"type": "ack", "ids": [1]}, 3.0) == [ForgetMessages((1,))]
    assert w.send("hans", ref_msg("yoda", "hi", "abc.1", True), 3.0 + REF_MEMORY - 1) == []
    # Remembered for REF_MEMORY after the acknowledgement; then a retry is taken as a new message.
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "abc.1", True), 3.0 + REF_MEMORY), "yoda") == [
        {"type": "message", "from": "hans", "text": "hi"}]


def test_only_a_retry_is_looked_up_on_the_way_to_a_user_online(w):
    """The relay of a first sending checks nothing (the hot path): a client sends a ref again only as a retry."""
    w.login("hans")
    w.send("hans", ref_msg("yoda", "hi", "abc.1"))
    w.login("yoda")
    assert w.to(w.send("hans", ref_msg("yoda", "new", "abc.2", True)), "yoda") == [
        {"type": "message", "from": "hans", "text": "new"}]   # a retry never kept goes as a new message
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "abc.1")), "yoda") == [
        {"type": "message", "from": "hans", "text": "hi"}]


def test_a_retry_of_a_message_the_store_refused_is_kept(w):
    w.login("hans")
    hans = w.conn["hans"]
    [change] = w.send("hans", ref_msg("yoda", "hi", "abc.1"))
    assert w.s.not_stored(change, 1.0) == [Send((hans,), error("store_full", command="message", user="yoda"))]
    w.store.apply(ForgetMessages((1,)))   # (what the store's rollback left)
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "abc.1", True), 2.0), "hans") == [stored("yoda", "abc.1")]
    assert w.stored("yoda") == [(2, "hans", "hi")]


def test_a_retry_behind_a_mailbox_on_its_way_is_not_kept_twice():
    w, texts = big_mailbox(30, EMOJI * 4096)
    w.login("hans")
    w.login("yoda")   # its mailbox is on its way: a message to it is kept behind
    assert w.send("hans", ref_msg("yoda", "behind", "abc.1")) == [
        KeepMessage(31, "yoda", "hans", "behind", ref="abc.1")]
    assert w.send("hans", ref_msg("yoda", "behind", "abc.1", True)) == []   # taken: the pong says so
    assert [text for _, _, text in w.stored("yoda")] == texts + ["behind"]


@pytest.mark.parametrize("field, value", [("ref", ""), ("ref", "x" * 65), ("ref", 7), ("ref", "a b\n"),
                                          ("ref", "é"), ("retry", "yes"), ("retry", 1)])
def test_a_bad_ref_or_retry_is_a_bad_frame(w, field, value):
    w.login("hans")
    frame = {**ref_msg("yoda", "hi", "abc.1"), field: value}
    assert w.to(w.send("hans", frame), "hans")[0]["code"] == "bad_frame"
    assert w.stored("yoda") == []


def test_a_ref_is_checked_where_it_is_used_not_on_the_relay_to_a_user_online(w):
    w.login("hans")
    w.login("yoda")
    assert w.to(w.send("hans", ref_msg("yoda", "hi", 7)), "yoda") == [{"type": "message", "from": "hans",
                                                                      "text": "hi"}]
    assert w.to(w.send("hans", ref_msg("yoda", "hi", 7, True)), "hans")[0]["code"] == "bad_frame"


def test_a_ref_of_64_printable_characters_will_do(w):
    w.login("hans")
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "~" * 64)), "hans") == [stored("yoda", "~" * 64)]


def test_a_kept_messages_ref_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.db")
    store = Store.open(path)
    store.apply(KeepMessage(1, "yoda", "hans", "hi", ref="abc.1"))
    store.commit()
    store.close()
    store = Store.open(path)
    assert store.load()[1] == [(1, "yoda", "hans", 2, 2, None, "abc.1")]
    store.close()


def test_a_server_started_with_a_kept_messages_ref_knows_it():
    w = World(offline=[(1, "yoda", "hans", "hi", None, None, "abc.1")])   # (as KeepMessage takes them)
    w.login("hans")
    assert w.send("hans", ref_msg("yoda", "hi", "abc.1", True)) == [Send((w.conn["hans"],), stored("yoda", "abc.1"))]
    assert w.s.stored("yoda") == [(1, "hans")]


def test_a_state_file_of_schema_version_1_is_upgraded_and_keeps_its_messages(tmp_path, caplog):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    for statement in ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                      "CREATE TABLE offline (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,"
                      " text TEXT NOT NULL, sent REAL)",
                      "CREATE TABLE blocks (blocker TEXT NOT NULL, blocked TEXT NOT NULL,"
                      " PRIMARY KEY (blocker, blocked))",
                      "INSERT INTO meta VALUES ('schema_version', '1')",
                      "INSERT INTO offline VALUES (4, 'yoda', 'hans', 'from version 1', 5.0)",
                      "INSERT INTO blocks VALUES ('yoda', 'vader')"):
        conn.execute(statement)
    conn.commit()
    conn.close()
    with caplog.at_level("INFO"):
        store = Store.open(str(path))
    assert f"upgraded from schema version 1 to {SCHEMA_VERSION}" in caplog.text
    assert store.load() == ([("yoda", "vader")], [(4, "yoda", "hans", 14, 14, 5.0, None)])
    store.apply(KeepMessage(5, "yoda", "hans", "new", ref="abc.1"))
    store.commit()
    store.close()
    store = Store.open(str(path))   # (opened again: nothing more to upgrade)
    assert [row[6] for row in store.load()[1]] == [None, "abc.1"]
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
