"""History and away in the logic (a World with an injected clock) and in the SQLite store: what is noted, how a read
goes out, what the store keeps, caps, forgets, trims and upgrades."""
import json
import sqlite3
from datetime import datetime

import pytest

from reactor.client.effects import Print
from reactor.framing import MAX_FRAME, encode
from reactor.protocol import MAX_HISTORY
from reactor.server.durability import StoreDurability
from reactor.server.effects import (
    ForgetHistory,
    ForgetMessages,
    KeepMessage,
    NoteSession,
    ReadHistory,
    Remember,
    Send,
    WhenWritable,
)
from reactor.server.history import HISTORY_CHUNK, history_frames
from reactor.server.pages import users_frames
from reactor.server.store import SCHEMA_VERSION, Store
from tests.support import EMOJI, PING, PONG, World, big_mailbox, error, frames, logged_in, msg, of_type, opened

WALL = 1_764_000_000.0


def world(**kw):
    w = World(history=True, wall_offset=WALL, rate=None, **kw)
    for user in ("hans", "yoda", "vader"):
        w.login(user)
    return w


def test_a_relayed_message_is_sent_first_and_noted_after_it_and_nothing_waits_for_it():
    w = world()
    effects = w.send("hans", msg("yoda", "hi"), now=5.0)
    assert effects == [Send((w.conn["yoda"],), {"type": "message", "from": "hans", "text": "hi"}),
                       Remember("hans", "yoda", "hi", WALL + 5.0)]
    plain = World(rate=None)   # (no history: the relay as it was)
    plain.login("hans")
    plain.login("yoda")
    assert len(plain.send("hans", msg("yoda", "hi"))) == 1


def test_a_broadcast_is_noted_once_with_who_blocked_its_sender_and_sessions_are_noted():
    w = world()
    w.send("vader", {"type": "block", "user": "hans"})
    effects = w.send("hans", {"type": "broadcast", "text": "all"}, now=2.0)
    assert of_type(effects, Remember) == [Remember("hans", None, "all", WALL + 2.0, ("vader",))]
    conn = w.connect(now=3.0)
    w.username(conn, "luke", now=3.0)
    assert of_type(w.password(conn, "jedi*knight", now=3.0), NoteSession) == [NoteSession("luke", True, WALL + 3.0)]
    assert of_type(w.send(conn, {"type": "logout"}, now=4.0), NoteSession) == [NoteSession("luke", False, WALL + 4.0)]


def test_history_asks_the_host_and_its_answer_goes_out_a_frame_a_writable_then_the_pong():
    w = world()
    yoda = w.conn["yoda"]
    assert w.send("yoda", {"type": "history", "user": "hans", "n": 3}) == [ReadHistory(yoda, "yoda", "hans", 3)]
    assert w.send("yoda", {"type": "ping"}) == []   # the pong waits for the history
    assert w.send("yoda", {"type": "history", "broadcast": True}) == []   # after the one on its way
    rows = [("hans", "x" * 30_000, WALL + 2), ("yoda", "y" * 30_000, WALL + 1)]   # newest first
    effects = w.s.history_read(yoda, ReadHistory(yoda, "yoda", "hans", 3), rows, 0.0)
    assert effects == [Send((yoda,), {"type": "history", "user": "hans", "messages": [
        {"from": "yoda", "text": "y" * 30_000, "sent": WALL + 1}]}), WhenWritable(yoda)]
    effects = w.s.writable(yoda, 0.0)
    assert effects == [Send((yoda,), {"type": "history", "user": "hans", "messages": [
        {"from": "hans", "text": "x" * 30_000, "sent": WALL + 2}]}), WhenWritable(yoda)]
    assert w.s.writable(yoda, 0.0) == [ReadHistory(yoda, "yoda", None, 20)]   # the next read, in its turn
    effects = w.s.history_read(yoda, ReadHistory(yoda, "yoda", None, 20), [], 0.0)
    assert effects == [Send((yoda,), {"type": "history", "broadcast": True, "messages": []}),
                       Send((yoda,), {"type": "pong"})]
    assert w.send("yoda", {"type": "ping"}) == [Send((yoda,), {"type": "pong"})]


def test_history_frames_hold_at_most_a_chunk_each_and_one_long_message_fits_the_frame_limit():
    rows = [("hans", "\U0001F600" * 4096, WALL)] * 3 + [("hans", "short", None)] * 200
    frames = history_frames(ReadHistory(1, "yoda", "hans", MAX_HISTORY), rows)
    sizes = [len(json.dumps(frame)) for frame in frames]
    assert max(sizes) < MAX_FRAME
    assert all(len(json.dumps(f["messages"])) <= HISTORY_CHUNK for f in frames if len(f["messages"]) > 1)
    assert [m["text"] for f in frames for m in f["messages"]] == [r[1] for r in reversed(rows)]


def test_bad_history_and_forget_get_an_error_each():
    w = world()
    hans = w.conn["hans"]
    for frame, answer in (
            ({"type": "history", "user": "nobody"}, error("invalid_user")),
            ({"type": "history", "user": "hans"}, error("self", command="history")),
            ({"type": "history"}, error("bad_argument", detail="history needs a user, or broadcast: true")),
            ({"type": "history", "user": "yoda", "n": 501},
             error("bad_argument", detail="history shows from 1 to 500 messages")),
            ({"type": "history", "user": "yoda", "n": True},
             error("bad_argument", detail="history shows from 1 to 500 messages")),
            ({"type": "forget", "user": "hans"}, error("self", command="forget"))):
        assert w.send("hans", frame) == [Send((hans,), answer)], frame
    off = World()
    off.login("hans")
    assert off.send("hans", {"type": "history", "user": "yoda"}) == [
        Send((off.conn["hans"],), error("history_off"))]
    [change] = w.send("hans", {"type": "forget", "user": "yoda"})
    assert change == ForgetHistory("hans", "yoda", Send((hans,), {"type": "forgotten", "user": "yoda"}))
    assert w.s.not_stored(change, 0.0) == [Send((hans,), error("store_full", command="forget", user="yoda"))]


def test_away_answers_once_a_period_a_refused_message_gets_no_answer_and_a_logout_ends_it():
    w = world()
    hans, yoda = w.conn["hans"], w.conn["yoda"]
    assert w.send("yoda", {"type": "away", "text": " lunch "}) == [Send((yoda,), {"type": "away", "text": "lunch"})]
    reply = Send((hans,), {"type": "away_reply", "user": "yoda", "text": "lunch"})
    assert w.send("hans", msg("yoda", "1"))[-1] == reply
    assert reply not in w.send("hans", msg("yoda", "2"))
    assert w.to(w.send("hans", {"type": "whoelse"}), "hans") == [
        {"type": "users", "names": ["vader", "yoda"], "away": ["yoda"]}]
    w.send("yoda", {"type": "block", "user": "vader"})
    assert w.send("vader", msg("yoda", "3")) == [Send((w.conn["vader"],), error("blocked_by_recipient",
                                                                                 user="yoda"))]
    w.send("yoda", {"type": "logout"})
    assert "yoda" not in w.s.away.texts
    assert w.send("hans", {"type": "back"}) == [Send((hans,), error("not_away"))]


@pytest.mark.parametrize("retry", [True, None], ids=["retry", "same-frame"])
def test_a_message_sent_again_with_its_ref_is_noted_for_the_history_once(retry):
    """A kept message's history is written with its KeepMessage (in the store's one transaction), a relayed
    one's is its Remember: a repeat of its ref (a retry, or the same frame again) is answered with neither,
    whether the message waits for its recipient offline or behind a mailbox on its way, or (a retry) was shown
    and acknowledged."""
    w, _ = big_mailbox(30, EMOJI * 4096, history=True, wall_offset=WALL, rate=None)
    w.login("hans")
    hans = w.conn["hans"]

    def send(to, ref, again=True):
        frame = {"type": "message", "to": to, "text": "once", "ref": ref}
        return w.send("hans", {**frame, "retry": retry} if again and retry is not None else frame, 1.0)

    [kept] = send("luke", "r.1", again=False)   # luke offline: kept
    assert type(kept) is KeepMessage and kept.ref == "r.1"
    assert send("luke", "r.1") == [Send((hans,), {"type": "stored", "to": "luke", "ref": "r.1"})]
    w.login("yoda")   # its mailbox on its way: a message to it is kept behind
    [behind] = send("yoda", "r.2", again=False)
    assert type(behind) is KeepMessage and behind.ref == "r.2"
    assert send("yoda", "r.2") == []   # taken: the pong says so
    w.login("luke", now=2.0)
    assert w.send("luke", {"type": "ack", "ids": [kept.id]}, 2.0) == [
        ForgetMessages((kept.id,)), Send((hans,), {"type": "read", "by": "luke", "refs": ["r.1"]})]
    # Shown and acknowledged: a retry is remembered, not relayed (nor noted) again. (The same frame again is a
    # new message to a user online: the relay checks no ref.)
    assert w.send("hans", {"type": "message", "to": "luke", "text": "once", "ref": "r.1", "retry": True}, 3.0) == []
    assert of_type(send("leia", "r.3", again=False), KeepMessage) and send("leia", "r.3") == [
        Send((hans,), {"type": "stored", "to": "leia", "ref": "r.3"})]


@pytest.mark.parametrize("every", [2, 1], ids=["half-away", "all-away"])
def test_a_long_whoelse_with_users_away_comes_in_pages_within_the_limit_each_marking_its_own(every):
    """10,000 Cyrillic names, some away: each page lists its own away, a name away counting twice toward its page,
    so no frame is over the limit; the client shows the whole answer once, those away marked."""
    names = sorted(f"Пользователь{i:05d}" for i in range(10_000))
    away = names[::every]
    pages = users_frames(names, away)
    assert len(pages) > 1 and max(len(encode(page)) for page in pages) <= MAX_FRAME
    assert [n for page in pages for n in page["names"]] == names
    assert [n for page in pages for n in page.get("away", [])] == away
    assert [page.get("more") for page in pages] == [True] * (len(pages) - 1) + [None]
    assert users_frames(names[:3], names[1:2]) == [{"type": "users", "names": names[:3], "away": names[1:2]}]
    c = logged_in("yoda")
    shown = [effect.text for page in pages for effect in c.server_frame(page, 1.0) if type(effect) is Print]
    marked = set(away)
    assert shown == ["\n".join(f"{n} (away)" if n in marked else n for n in names)]


def test_the_store_keeps_both_sides_caps_each_writer_forgets_and_trims(tmp_path):
    store, conn = opened(str(tmp_path / "state.db"), history_cap=16)
    store.remember([NoteSession("yoda", True, 10.0)])
    store.remember([Remember("hans", "yoda", f"m{i}", 20.0 + i) for i in range(20)])
    store.apply(KeepMessage(1, "yoda", "hans", "kept", 50.0))   # kept for later: in the history with it
    store.remember([Remember("yoda", "hans", "back", 60.0), Remember("hans", None, "all", 61.0, ("vader",))])
    store.commit()
    # hans wrote 22: past its cap and the slack (16 + 1), the oldest went.
    mine = store.history("hans", "yoda", 500)
    assert mine[0] == ("yoda", "back", 60.0) and mine[1] == ("hans", "kept", 50.0)
    # (16 of its own kept: the broadcast, and 15 to yoda, the newest)
    assert [r[1] for r in mine if r[0] == "hans"] == ["kept", *(f"m{i}" for i in range(19, 5, -1))]
    assert store.history("yoda", "hans", 2) == [("yoda", "back", 60.0), ("hans", "kept", 50.0)]
    assert store.history("yoda", None, 5) == [("hans", "all", 61.0)]   # logged in since 10
    assert store.history("vader", None, 5) == []   # it blocked hans (and was never logged in)
    assert store.history("hans", None, 5) == [("hans", "all", 61.0)]
    store.apply(ForgetHistory("hans", "yoda"))
    store.commit()
    assert store.history("hans", "yoda", 5) == [] and len(store.history("yoda", "hans", 500)) == len(mine)
    store.apply(ForgetHistory("yoda", "hans"))   # both forgot: the rows go
    store.commit()
    assert conn.execute("SELECT count(*) FROM history WHERE recipient != ''").fetchone() == (0,)
    store.remember([Remember("luke", "leia", "old", 5.0), Remember("luke", "leia", "new", 500.0)])
    assert store.trim_history(100.0) == 2   # the broadcast (61) and luke's old one
    store.commit()
    assert store.history("leia", "luke", 5) == [("luke", "new", 500.0)]
    store.close()


def test_history_alone_is_committed_without_a_sync_and_a_turn_with_changes_synced_whole(tmp_path):
    store, conn = opened(str(tmp_path / "state.db"))   # synchronous FULL, the default
    said = []
    conn.set_trace_callback(lambda statement: said.append(statement.split(" (")[0]))

    def levels_at_commit():   # the synchronous level of each COMMIT said (1 NORMAL, 2 FULL)
        level, found = 2, []
        for statement in said:
            if statement.startswith("PRAGMA synchronous"):
                level = 1 if statement.endswith("NORMAL") else 2
            elif statement == "COMMIT":
                found.append(level)
        return found

    store.remember([Remember("hans", "yoda", "live", 1.0)])   # a turn that only relayed: no sync
    store.commit()
    assert levels_at_commit() == [1]
    said.clear()
    store.remember([Remember("hans", "yoda", "live", 2.0)], changes=True)   # history, then a change: one
    store.apply(KeepMessage(1, "vader", "hans", "kept", 2.0))                 # transaction, synced
    store.remember([Remember("yoda", "hans", "after", 2.5)])
    store.commit()
    assert levels_at_commit() == [2] and said.count("BEGIN") == 1
    said.clear()
    store.remember([Remember("hans", "yoda", "read first", 3.0)])   # (written for a read) then a change: the
    store.apply(ForgetMessages((1,)))                               # history committed as it is, the change synced
    store.commit()
    assert levels_at_commit() == [1, 2]
    assert [text for _, text, _ in store.history("yoda", "hans", 9)] == ["read first", "after", "live", "live"]
    assert store.history("vader", "hans", 9) == [("hans", "kept", 2.0)] and store.load()[1] == []
    store.close()


def test_the_durability_writes_a_turns_history_before_its_change_in_the_changes_synced_transaction(tmp_path):
    store, conn = opened(str(tmp_path / "state.db"))
    answered = []
    durability = StoreDurability(store, lambda upto, refused: answered.append((upto, refused)))
    durability.remember(Remember("hans", "yoda", "live", 1.0))
    durability.end_turn()
    assert store.commits == 1 and conn.execute("PRAGMA synchronous").fetchone() == (1,)   # NORMAL: no sync
    durability.remember(Remember("hans", "yoda", "live again", 2.0))
    durability.write(1, KeepMessage(1, "vader", "hans", "kept", 2.0))
    durability.end_turn()
    assert store.commits == 2 and answered == [(1, [])]   # one transaction, committed under FULL
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)
    assert [text for _, text, _ in store.history("yoda", "hans", 5)] == ["live again", "live"]
    store.close()


def test_a_version_1_state_file_is_upgraded_with_its_messages_and_blocks(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE offline (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
                              text TEXT NOT NULL, sent REAL);
        CREATE TABLE blocks (blocker TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY (blocker, blocked));
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO offline VALUES (7, 'yoda', 'hans', 'kept in version 1', 1.0);
        INSERT INTO blocks VALUES ('yoda', 'vader');
    """)
    conn.commit()
    conn.close()
    store = Store.open(str(path))   # version 2: the history, and kept messages' refs
    assert store.load() == ([("yoda", "vader")], [(7, "yoda", "hans", 17, 17, 1.0, None)])
    store.remember([Remember("hans", "yoda", "new", 2.0)])
    store.apply(KeepMessage(8, "yoda", "hans", "kept with its ref", 3.0, ref="abc.1"))   # (in its history too)
    store.commit()
    assert store.history("yoda", "hans", 5) == [("hans", "kept with its ref", 3.0), ("hans", "new", 2.0)]
    store.close()
    store = Store.open(str(path))   # (opened again: nothing more to upgrade)
    assert [row[6] for row in store.load()[1]] == [None, "abc.1"]
    assert len(store.history("hans", "yoda", 5)) == 2
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


def test_a_version_2_state_file_is_upgraded_its_history_indexed_by_sender_and_read_as_before(tmp_path):
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE offline (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
                              text TEXT NOT NULL, sent REAL, ref TEXT);
        CREATE TABLE blocks (blocker TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY (blocker, blocked));
        CREATE TABLE history (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,
                              text TEXT NOT NULL, sent REAL, hidden TEXT);
        CREATE INDEX history_pair ON history (sender, recipient, id);
        CREATE INDEX history_broadcasts ON history (id) WHERE recipient = '';
        CREATE TABLE sessions (user TEXT NOT NULL, start REAL NOT NULL, end REAL);
        CREATE INDEX sessions_user ON sessions (user, start);
        CREATE TABLE forgotten (owner TEXT NOT NULL, peer TEXT NOT NULL, upto INTEGER NOT NULL,
                                PRIMARY KEY (owner, peer)) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', '2');
        INSERT INTO offline VALUES (7, 'yoda', 'hans', 'kept in version 2', 1.0, 'abc.1');
        INSERT INTO history (sender, recipient, text, sent) VALUES ('hans', 'yoda', 'said in version 2', 1.0),
                                                                   ('yoda', 'hans', 'answered', 2.0);
    """)
    conn.commit()
    conn.close()
    store = Store.open(str(path), history_cap=2)
    assert store.load() == ([], [(7, "yoda", "hans", 17, 17, 1.0, "abc.1")])
    store.remember([Remember("hans", "yoda", "new", 3.0), Remember("hans", "yoda", "newer", 4.0)])
    store.commit()
    # hans wrote 3: past its cap and the slack (2 + 1)? Not yet; with one more its oldest goes, in order.
    assert store.history("yoda", "hans", 5) == [("hans", "newer", 4.0), ("hans", "new", 3.0),
                                                ("yoda", "answered", 2.0), ("hans", "said in version 2", 1.0)]
    store.remember([Remember("hans", "yoda", "newest", 5.0)])
    store.commit()
    assert [text for _, text, _ in store.history("hans", "yoda", 5)] == ["newest", "newer", "answered"]
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                           " AND tbl_name = 'history'")} == {"history_sender", "history_broadcasts"}
    conn.close()


# -- the client ------------------------------------------------------------------------------------------------

def test_the_client_asks_for_a_history_shows_it_stamped_and_visible_and_refuses_a_bad_count():
    c = logged_in("yoda")
    assert frames(c.line("history vader 5", 1.0)) == [{"type": "history", "n": 5, "user": "vader"}, PING]
    c.server_frame(PONG, 1.0)
    assert frames(c.line("history broadcast", 1.0)) == [{"type": "history", "n": 20, "broadcast": True}, PING]
    c.server_frame(PONG, 1.0)
    for bad in ("0", "501", "ten"):
        assert [e.text for e in c.line(f"history vader {bad}", 1.0) if type(e) is Print] == [
            f"Error. history shows from 1 to 500 messages, not {bad!r}"]
    when = datetime(2026, 11, 24, 14, 3).timestamp()
    shown = c.server_frame({"type": "history", "user": "vader", "messages": [
        {"from": "vader", "text": "join me\x1b[2J", "sent": when}, {"from": "yoda", "text": "no\nnever"}]}, 2.0)
    assert [e.text for e in shown if type(e) is Print] == [
        "[Nov 24 14:03] vader: join me^[[2J\nyoda: no\n      never"]
    assert [e.text for e in c.server_frame({"type": "history", "user": "vader", "messages": []}, 2.0)] == [
        "No history with vader"]
    assert [e.text for e in c.server_frame({"type": "users", "names": ["hans", "vader"], "away": ["vader"]}, 2.0)
            ] == ["hans\nvader (away)"]
    assert [e.text for e in c.server_frame({"type": "away_reply", "user": "vader", "text": "busy"}, 2.0)] == [
        "vader is away: busy"]
    assert frames(c.line("away gone fishing", 3.0)) == [{"type": "away", "text": "gone fishing"}, PING]


def test_the_client_shows_the_answers_to_forget_away_and_back_in_their_words():
    c = logged_in("yoda")
    answers = ({"type": "forgotten", "user": "vader\x1b[2J"}, {"type": "forgotten", "broadcast": True},
               {"type": "away"}, {"type": "away", "text": "gone fishing"}, {"type": "back"},
               {"type": "history", "broadcast": True, "messages": []}, {"type": "away_reply", "user": "luke"})
    shown = [[e.text for e in c.server_frame(frame, 1.0) if type(e) is Print] for frame in answers]
    assert shown == [["Your history with vader^[[2J is forgotten"], ["Your broadcast history is forgotten"],
                     ["You are away"], ["You are away: gone fishing"], ["You are back"],
                     ["No broadcasts in your history"], ["luke is away"]]
    assert c.server_frame({"type": "away_reply"}, 1.0) == []   # no user: nothing to say
