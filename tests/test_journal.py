"""Recording the server's rules and replaying the journal (reactor/journal/), sans-I/O: the rules driven by hand
behind a ``ServerRecorder``, the journal written to a file, replayed, and checked event by event."""
from __future__ import annotations

import ast
import base64
import inspect
import io
import json
import logging
import re
import struct

import pytest

from reactor.cluster.rules import ClusterChatServer, LoginOutcome
from reactor.journal import cli, scrub
from reactor.journal.format import Header, JournalError, quantize, read_events, read_header
from reactor.journal.replay import Departure, ServerReplay, open_journal
from reactor.journal.server import RECORDED, ServerRecorder, server_header
from reactor.journal.writer import JournalWriter
from reactor.protocol import ErrorCode
from reactor.server.effects import CheckPassword, KeepMessage, SendStored, SetTimer, WhenWritable
from reactor.server.passwords import hash_password
from reactor.server.rules import ChatServer
from reactor.text import CONTROL
from tests.support import ACCOUNTS, ROOT

KEPT = re.compile("[\x00-\x1f\x7f-\x9f]")   # control characters (reactor/text.py) and tab
TEXTS = ["the secret plans", "h\u00e9llo\tthere \U0001F600", "tab\tinside", "line\nbreak\x1b[2J", "",
         "\u65e5\u672c\u8a9e\u306e\u6587", "x" * 300, "a\u0301\u200d\U0001F468\u200d\U0001F469"]


@pytest.mark.parametrize("text", TEXTS)
def test_a_placeholder_keeps_what_the_rules_look_at_and_nothing_else(text):
    shown = scrub.placeholder(text)
    assert len(shown) == len(text)
    assert len(shown.encode("utf-8")) == len(text.encode("utf-8"))
    assert [(i, c) for i, c in enumerate(shown) if KEPT.match(c)] == \
        [(i, c) for i, c in enumerate(text) if KEPT.match(c)]   # control characters, tabs: in place
    assert shown.isascii() == text.isascii()
    assert (shown.isascii() and shown.isprintable()) == (text.isascii() and text.isprintable())   # the shortcut
    assert bool(CONTROL.search(shown)) == bool(CONTROL.search(text))   # the rules' verdict
    assert scrub.placeholder(shown) == shown   # a replay's texts render as the recording's did
    letters = {c for c in text if c.isalpha()}
    assert not letters or not letters <= set(shown) or text == shown


def test_stand_ins_decide_as_the_originals_and_give_nothing_away():
    s = scrub.Scrubber()
    assert s.password("yoda", "wise@!man") == s.account("yoda", "wise@!man")    # right stays right
    assert s.password("yoda", "wrong") != s.account("yoda", "wise@!man")        # wrong stays wrong
    assert s.password("luke", "wise@!man") != s.password("yoda", "wise@!man")   # per account
    assert "wise" not in s.password("yoda", "wise@!man")
    field = hash_password("pw", log2_n=10)
    made_up = s.account("hans", field)
    assert made_up.startswith(scrub.HASH_PREFIX) and field not in made_up
    assert s.secret("tok", "abc") == s.secret("tok", "abc") != s.secret("tok", "abd")
    assert s.secret("tok", s.secret("tok", "abc")) == s.secret("tok", "abc")   # a stand-in stays itself
    other = scrub.Scrubber()   # another recording: another key
    assert other.password("yoda", "wise@!man") != s.password("yoda", "wise@!man")


# -- a session recorded, then replayed --------------------------------------------------------------------


class Recorded:
    """A ``ChatServer`` (or cluster node) behind a recorder writing to ``path``, driven as a host would."""

    def __init__(self, path, cls=ChatServer, texts=False, **args):
        args.setdefault("accounts", dict(ACCOUNTS))
        args.setdefault("block_duration", 10.0)
        args.setdefault("timeout", 60.0)
        args.setdefault("wall_offset", 1_700_000_000.0)
        self.scrubber = scrub.Scrubber(texts=texts)
        self.writer = JournalWriter(path, server_header(cls, 0, args, self.scrubber, run="test"))
        self.s = ServerRecorder(self.writer, self.scrubber).build(cls, **args)
        self.path = path
        self.now = 1.0
        self.conns = {}
        self.effects = []   # every effect, in order
        self.timers = {}

    def __getattr__(self, name):
        return getattr(self.s, name)

    def call(self, method, *args, **kw):
        effects = getattr(self.s, method)(*args, **kw) or []   # (take_ids returns nothing)
        self.effects += effects
        for e in effects:
            if type(e) is SetTimer:
                self.timers[e.key] = e.when
        return effects

    def frame(self, conn, frame):
        return self.call("received", conn, frame, self.now)

    def login(self, user, password=None, conn=None):
        conn = conn or (max(self.conns.values(), default=0) + 1)
        self.call("connected", conn, self.now, "10.0.0.7")
        self.frame(conn, {"type": "hello", "version": 2})
        self.frame(conn, {"type": "username", "username": user})
        effects = self.frame(conn, {"type": "password", "password": password or ACCOUNTS[user]})
        self.conns[user] = conn
        return effects

    def say(self, user, frame):
        return self.frame(self.conns[user], frame)

    def turn(self, seconds=0.25):
        self.call("end_turn", self.now)
        self.now += seconds

    def close(self):
        self.writer.close()


def replayed(path):
    """Every event of the journal at ``path``, replayed: (events, effects of each)."""
    journal = open_journal(str(path))
    replay = ServerReplay(journal.header)
    events = list(journal.events())
    return replay, events, [replay.apply(event) for event in events]


NEW_PASSWORD = "N3w*Secret-of-hans"
NEW_FIELD = hash_password(NEW_PASSWORD, log2_n=10)


def change_password(r, user, current, new):
    """``user`` changes its password, each answer given as a host gives it: the check of the current one, the
    new one's hash, the file written."""
    conn = r.conns[user]
    effects = r.say(user, {"type": "change_password", "current": current, "new": new})
    kinds = {type(e).__name__: e for e in effects}
    assert "CheckPassword" in kinds
    effects = r.call("password_checked", conn, True, r.now)
    assert "HashPassword" in {type(e).__name__ for e in effects}
    effects = r.call("password_hashed", conn, NEW_FIELD, r.now)
    (written,) = [e for e in effects if type(e).__name__ == "SetPassword"]
    effects = r.call("password_written", conn, user, written.field, None, r.now)
    assert {"type": "password_changed"} in [getattr(e, "frame", None) for e in effects]


def session(tmp_path, texts=False):
    """A recorded session that gives every server input something to do; the journal's path, the recorder."""
    hashed = dict(ACCOUNTS, hans=hash_password(ACCOUNTS["hans"], log2_n=10))
    r = Recorded(tmp_path / "chat.journal", texts=texts, accounts=hashed, queue_cap=2, token_ttl=5.0)
    r.login("yoda")
    r.login("luke", "not-lukes")                 # wrong, then right on the same connection
    r.say("luke", {"type": "password", "password": ACCOUNTS["luke"]})
    r.login("vader", "guess1")
    r.say("vader", {"type": "password", "password": "guess2"})
    r.say("vader", {"type": "password", "password": "guess3"})   # locked
    r.turn()
    checking = r.login("hans")                   # a hashed account: checked off the rules
    assert [type(e) for e in checking] == [CheckPassword]
    r.call("password_checked", r.conns["hans"], True, r.now)
    change_password(r, "hans", ACCOUNTS["hans"], NEW_PASSWORD)
    r.login("nobody-typed-a-password", "x")
    r.turn()
    for text in TEXTS:
        r.say("yoda", {"type": "message", "to": "luke", "text": text})
    r.say("yoda", {"type": "message", "to": "leia", "text": "kept for leia"})
    r.say("yoda", {"type": "message", "to": "leia", "text": "kept again"})
    r.say("yoda", {"type": "message", "to": "leia", "text": "over the cap"})
    r.say("luke", {"type": "broadcast", "text": "to all of you"})
    r.say("luke", {"type": "block", "user": "yoda"})
    r.say("yoda", {"type": "message", "to": "luke", "text": "blocked"})
    r.say("luke", {"type": "unblock", "user": "yoda"})
    r.say("luke", {"type": "whoelse"})
    r.say("luke", {"type": "whoelsesince", "seconds": 30})
    r.turn()
    r.say("yoda", {"type": "listen", "port": 4000, "cert": "MIIB-yodas-certificate"})
    r.say("luke", {"type": "listen", "port": 4001, "cert": "MIIB-lukes-certificate"})
    r.say("yoda", {"type": "startprivate", "user": "luke"})
    answer = r.say("luke", {"type": "private_answer", "user": "yoda", "accept": True})
    token = next(e.frame["token"] for e in answer if getattr(e, "frame", {}).get("type") == "private_expect")
    r.say("luke", {"type": "private_ready", "user": "yoda", "token": "not-the-token"})
    r.say("luke", {"type": "private_ready", "user": "yoda", "token": token})
    r.say("yoda", {"type": "startprivate", "user": "luke"})
    r.say("luke", {"type": "private_answer", "user": "yoda", "accept": True})   # a second token, left to expire
    r.turn()
    r.now += 6.0
    r.call("timers_fired", [key for key, when in r.timers.items() if key[0] == "private" and when <= r.now], r.now)
    keep = next(e for e in r.effects if type(e) is KeepMessage)
    r.call("not_stored", keep, r.now, ErrorCode.STORE_FULL)
    r.call("bad_frame", r.conns["yoda"], "invalid JSON", r.now)
    for odd in ([1, 2], {"type": 7}, {"type": "no-such-frame-type" * 5}, {"type": "ack", "ids": "1"}):
        r.say("yoda", odd)
    r.login("leia")                              # her stored messages on their way
    stored = [e for e in r.effects if type(e) in (SendStored, WhenWritable) and e.conn == r.conns["leia"]]
    assert stored
    r.call("writable", r.conns["leia"], r.now)
    r.say("leia", {"type": "ack", "ids": [f["id"] for e in stored if type(e) is SendStored for f in e.frames]})
    r.say("leia", {"type": "ping"})
    r.turn()
    r.call("accounts_changed", {k: v for k, v in ACCOUNTS.items() if k != "leia"} | {"yoda": "new*pw"}, r.now)
    r.login("yoda", "new*pw", conn=40)          # already logged in: the new password is right
    r.now += 61.0
    r.call("timers_fired", sorted(k for k, when in r.timers.items() if k[0] == "idle" and when <= r.now), r.now)
    r.call("disconnected", r.conns["hans"], r.now)
    r.turn()
    r.call("shutdown", r.now)
    r.close()
    return r


def test_a_replay_gives_the_rules_the_same_inputs_and_gets_the_same_effects(tmp_path):
    r = session(tmp_path)
    replay, events, effects = replayed(r.path)
    assert len(events) > 60
    assert {e.op for e in events} >= {"c", "r", "M", "P", "m", "b", "d", "w", "t", "p", "a", "n", "e", "s"}
    assert sum(e for e in (len(x) for x in effects)) == len(r.effects)   # and each event's matched its digest
    assert replay.rules.online_users() == r.online_users() == []
    assert replay.rules.stored("leia") == r.stored("leia")
    assert replay.rules.is_locked("vader", r.now - 60) and r.is_locked("vader", r.now - 60)


def test_a_journal_holds_no_password_hash_token_certificate_or_text(tmp_path):
    r = session(tmp_path)
    journal = r.path.read_text()
    tokens = [e.frame["token"] for e in r.effects if "token" in getattr(e, "frame", {})]
    assert len(tokens) >= 2
    secrets = [*ACCOUNTS.values(), "not-lukes", "guess1", "guess2", "guess3", "new*pw", "not-the-token",
               "nobody-typed-a-password", "MIIB-yodas-certificate", "MIIB-lukes-certificate", *tokens,
               hash_password(ACCOUNTS["hans"], log2_n=10)[:20], "$scrypt$ln=", NEW_PASSWORD, NEW_FIELD[-20:],
               "secret plans", "kept for leia", "to all of you", "h\u00e9llo", "there", "inside", "break", "[2J"]
    found = [s for s in secrets if s in journal or json.dumps(s)[1:-1] in journal]
    assert found == []
    assert "yoda" in journal and "luke" in journal   # who talked to whom is in it


def test_texts_are_recorded_when_asked_and_still_replay(tmp_path):
    r = session(tmp_path, texts=True)
    journal = r.path.read_text()
    assert "the secret plans" in journal and "ACCOUNTS" not in journal
    assert ACCOUNTS["luke"] not in journal
    _, events, _ = replayed(r.path)
    assert read_header(io.StringIO(journal)).texts is True and len(events) > 60


def test_a_replay_that_departs_says_at_which_event_and_how(tmp_path):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.login("luke")
    r.say("yoda", {"type": "message", "to": "luke", "text": "hello"})
    r.say("yoda", {"type": "whoelse"})
    r.close()
    lines = r.path.read_text().splitlines()
    numbered = list(enumerate(lines[1:], start=1))
    number, line = next((n, x) for n, x in numbered if '"whoelse"' in x)
    event = json.loads(line)
    event[2] ^= 1   # another digest: as if the rules had answered otherwise
    lines[number] = json.dumps(event)
    r.path.write_text("\n".join(lines) + "\n")
    journal = open_journal(str(r.path))
    replay = ServerReplay(journal.header)
    with pytest.raises(Departure) as departure:
        for e in journal.events():
            replay.apply(e)
    assert departure.value.event.number == number
    assert "1 effect(s), as recorded, but not the same ones" in str(departure.value)
    assert departure.value.effects[0].frame == {"type": "users", "names": ["luke"]}


def test_a_changed_rule_departs_where_it_first_changes_something(tmp_path, monkeypatch):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.login("luke")
    for n in range(3):
        r.say("yoda", {"type": "message", "to": "luke", "text": f"message {n}"})
    r.say("luke", {"type": "block", "user": "yoda"})
    r.say("yoda", {"type": "message", "to": "luke", "text": "blocked now"})
    r.close()
    events = list(open_journal(str(r.path)).events())
    monkeypatch.setattr("reactor.server.blocks.Blocks.set", lambda self, blocker, blocked, on: None)   # a bug
    with pytest.raises(Departure) as departure:
        replayed(r.path)
    assert departure.value.event.number == len(events)   # the block is answered as ever; the message after it
    assert departure.value.event.op == "m" and departure.value.event.args[:2] == [r.conns["yoda"], "luke"]
    assert "1 effect(s), as recorded, but not the same ones" in departure.value.why
    assert departure.value.effects[0].frame["type"] == "message"   # relayed, where it was refused


def test_a_token_the_recording_drew_is_handed_back_and_one_too_many_departs(tmp_path):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.login("luke")
    r.say("yoda", {"type": "listen", "port": 4000})
    r.say("luke", {"type": "listen", "port": 4001})
    r.say("yoda", {"type": "startprivate", "user": "luke"})
    r.say("luke", {"type": "private_answer", "user": "yoda", "accept": True})
    r.close()
    text = r.path.read_text()
    assert text.count('["draw","tok-') == 1
    replayed(r.path)   # the token drawn again
    r.path.write_text(re.sub(r'\["draw","tok-[0-9a-f]+"\]\n', "", text))
    with pytest.raises(Departure, match="drew a token where the recording drew none"):
        replayed(r.path)


def test_a_cluster_node_replays_the_engines_answers_and_the_other_nodes_news(tmp_path):
    r = Recorded(tmp_path / "node", cls=ClusterChatServer, first_id=1 << 32, rate=None)
    r.call("take_ids", 7 << 32)
    r.call("resync", {"luke": "b"}, {"leia": 5.0}, [("luke", "vader")], {"hans": 100.0}, "a", r.now)
    conn = 1
    r.call("connected", conn, r.now, "10.0.0.1")
    r.frame(conn, {"type": "hello", "version": 2})
    r.frame(conn, {"type": "username", "username": "yoda"})
    r.frame(conn, {"type": "password", "password": ACCOUNTS["yoda"]})
    r.call("login_decided", conn, "yoda", LoginOutcome.WELCOME, r.now,
           mailbox=[(9, "luke", 5, 5, 1_700_000_000.5)])
    r.conns["yoda"] = conn
    r.say("yoda", {"type": "message", "to": "luke", "text": "to the other node"})
    r.say("yoda", {"type": "message", "to": "leia", "text": "kept by the engine"})
    keep = next(e for e in r.effects if type(e) is KeepMessage)
    r.call("not_stored", keep, r.now, ErrorCode.QUOTA_EXCEEDED)
    r.call("remote_login", "vader", "c", r.now)
    r.call("remote_broadcast", "vader", "from node c", r.now)
    r.call("relayed", {"kind": "message", "to": "yoda", "from": "luke", "text": "back from b"}, r.now)
    r.call("relayed", {"kind": "deliver", "to": "yoda", "frame": {"type": "private_expect", "user": "luke",
                                                                  "token": "tok-secret-one", "cert": "CERT"}}, r.now)
    r.call("remote_block", "vader", "yoda", True, r.now)
    r.call("remote_locked", "hans", r.now + 50, r.now)
    r.call("remote_logout", "vader", "c", r.now - 0.5, r.now)
    r.call("cluster_lost", r.now)
    r.close()
    journal = r.path.read_text()
    assert "tok-secret-one" not in journal and "CERT" not in journal and "back from b" not in journal
    replay, events, effects = replayed(r.path)
    assert [e.op for e in events if e.op not in ("r", "c", "M", "m", "e")] == [
        "i", "R", "L", "n", "rl", "rB", "rr", "rr", "rb", "rk", "ro", "X"]
    assert sum(map(len, effects)) == len(r.effects)
    assert replay.rules.is_locked("hans", r.now)


# -- the writer: turns, a full disk, rotation --------------------------------------------------------------


def test_a_full_disk_stops_the_recording_with_one_line_and_the_rules_go_on(caplog):
    header = Header(side="server", rules="ChatServer", t0=0, args={})
    writer = JournalWriter("/dev/full", header)
    recorder = ServerRecorder(writer, scrub.Scrubber())
    writer.on_stop = recorder.stopped
    s = recorder.build(ChatServer, dict(ACCOUNTS), 10.0, 60.0)
    with caplog.at_level(logging.ERROR, logger="reactor.journal.writer"):
        s.connected(1, 1.0, "10.0.0.1")
        writer.flush()
        writer.flush()
        s.received(1, {"type": "hello", "version": 2}, 1.1)
        writer.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "recording stopped after 0 events: journal /dev/full: cannot write to it (the disk is full); the chat goes on"]
    assert writer.stopped and not recorder.recording and writer.lines == []
    effects = s.received(1, {"type": "username", "username": "yoda"}, 1.2)
    assert [e.frame for e in effects] == [{"type": "username_ok"}]


def test_a_slow_write_stops_the_recording(tmp_path, monkeypatch, caplog):
    header = Header(side="server", rules="ChatServer", t0=0, args={})
    writer = JournalWriter(tmp_path / "j", header)
    clock = iter([0.0, 0.4])
    monkeypatch.setattr("reactor.journal.writer.time.monotonic", lambda: next(clock))
    writer.event("e", 1.0, 0)
    with caplog.at_level(logging.ERROR, logger="reactor.journal.writer"):
        writer.flush()
    assert writer.stopped
    assert "took 0.40 s (the disk is slow)" in caplog.text


def test_rotation_splits_the_journal_and_a_replay_reads_every_segment(tmp_path):
    r = Recorded(tmp_path / "chat.journal")
    r.writer = JournalWriter(r.path, r.writer.header, max_bytes=1024)   # (the same header, a rotating writer)
    r.s = ServerRecorder(r.writer, r.scrubber).build(ChatServer, accounts=dict(ACCOUNTS), block_duration=10.0,
                                                     timeout=60.0, wall_offset=1_700_000_000.0)
    r.login("yoda")
    r.login("luke")
    for n in range(100):
        r.say("yoda", {"type": "message", "to": "luke", "text": f"number {n}"})
        if n % 10 == 9:
            r.writer.flush()
    r.close()
    segments = sorted(tmp_path.glob("chat.journal.*"))
    assert len(segments) >= 2 and all(p.stat().st_size < 1024 + 400 for p in segments)
    headers = [read_header(open(p)) for p in [*sorted(segments, key=lambda p: int(p.suffix[1:])), r.path]]
    assert [h.segment for h in headers] == list(range(1, len(headers) + 1))
    _, events, effects = replayed(r.path)
    assert [e.number for e in events] == list(range(1, len(events) + 1))
    assert sum(map(len, effects)) == len(r.effects)
    (tmp_path / "chat.journal.1").unlink()
    with pytest.raises(JournalError, match="a replay starts at the first, and .*chat.journal.1 is missing"):
        open_journal(str(r.path))


def test_a_last_line_cut_short_ends_the_journal_and_one_in_the_middle_is_an_error():
    header = Header(side="server", rules="ChatServer", t0=0, args={})
    good = '[5,"e",0]\n[5,"e",0]\n'
    assert [e.now for e in read_events(io.StringIO(good + '[5,"e"'), header)] == [5e-6, 10e-6]
    with pytest.raises(JournalError, match="line 3: not JSON"):
        list(read_events(io.StringIO('[5,"e",0]\n[5,"e\n[5,"e",0]\n'), header))
    with pytest.raises(JournalError, match="version 9"):
        Header.parse('{"journal":"reactor-chat","version":9}')
    with pytest.raises(JournalError, match="not a journal"):
        Header.parse('{"hello":1}')


def test_the_time_given_to_the_rules_is_the_one_a_replay_computes():
    header = Header(side="server", rules="ChatServer", t0=0, args={})
    out = io.BytesIO()
    writer = JournalWriter(out, header)
    times = [1234.5678901234, 1234.5678909, 99999.000000499, 100000.25]
    for now in times:
        writer.event("e", now, None)
    writer.close()
    stream = io.StringIO(out.getvalue().decode())
    read_header(stream)
    assert [e.now for e in read_events(stream, header)] == [quantize(t) for t in times]


# -- nothing reaches the rules but through the recorder ------------------------------------------------------


VIEWS = {"user_of", "online_users", "here", "is_locked", "kept_by", "stored", "block_duration", "queue_cap", "counts",
         "sessions",
         "quota"}
HOOKS = {"claim_login", "keep_away", "release_login", "resent", "count_password",
         "password_changed"}   # called by the rules' own parts, never by a host


def test_every_input_method_of_the_rules_is_recorded():
    every = set()
    for cls in (ChatServer, ClusterChatServer):
        public = {name for name, _ in inspect.getmembers(cls) if not name.startswith("_") and name != "KEEPS_ALL"}
        assert public - RECORDED - VIEWS - HOOKS == set(), cls
        every |= public
    assert RECORDED <= every and all(callable(getattr(ServerRecorder, name)) for name in RECORDED)


def test_each_recorded_method_takes_what_the_rules_method_takes():
    """A host calls the recorder as it calls the rules: the same parameters, by name and kind."""
    for cls in (ChatServer, ClusterChatServer):
        for name in sorted(RECORDED):
            method = getattr(cls, name, None)
            if method is None:
                continue
            ours = inspect.signature(getattr(ServerRecorder, name)).parameters
            theirs = inspect.signature(method).parameters
            assert [(p.name, p.kind) for p in ours.values() if not p.name.startswith("_")] == \
                [(p.name, p.kind) for p in theirs.values() if not p.name.startswith("_")], (cls.__name__, name)


def test_the_hosts_reach_the_rules_only_through_recorded_methods_and_views():
    called = set()
    for path in ("reactor/server/host.py", "reactor/cluster/host.py", "reactor/cluster/keeping.py"):
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                    node.value.attr in ("_logic", "_cluster"):
                called.add(node.attr)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "logic":
                called.add(node.attr)
    assert {"received", "timers_fired", "login_decided", "relayed", "queue_cap"} <= called
    assert called - RECORDED - VIEWS == set()


# -- the command line ------------------------------------------------------------------------------------------


def test_print_shows_a_timeline_and_user_keeps_one_users_events(tmp_path, capsys):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.login("luke")
    r.say("yoda", {"type": "message", "to": "luke", "text": "hello"})
    r.say("yoda", {"type": "message", "to": "hans", "text": "later"})
    r.say("luke", {"type": "block", "user": "vader"})
    r.close()
    assert cli.main([str(r.path), "--print"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} #9 yoda -> luke: message \(sent to luke\)$", out, re.MULTILINE), out
    assert "#10 yoda -> hans: message (stored: hans offline)" in out
    assert "#11 luke: block vader (block kept)" in out
    assert "#4 conn 1 (10.0.0.7): password for yoda (logged in; welcome to yoda)" in out
    assert re.search(r"replayed 11 events .* every event's effects as recorded", err)
    assert cli.main([str(r.path), "--print", "--user", "hans"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip().splitlines() == [line for line in out.strip().splitlines() if "hans" in line]
    assert len(out.strip().splitlines()) == 1
    assert cli.main([str(r.path), "--print", "--until", "3"]) == 0
    assert len(capsys.readouterr()[0].strip().splitlines()) == 3


def test_pdb_stops_before_the_event_asked_for_with_the_rules_at_hand(tmp_path, monkeypatch, capsys):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.login("luke")
    r.say("luke", {"type": "block", "user": "yoda"})
    r.say("yoda", {"type": "message", "to": "luke", "text": "hello"})
    r.close()
    commands = "p event.number, rules.online_users(), rules.blocks.blocks('luke', 'yoda')\nc\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(commands))
    assert cli.main([str(r.path), "--pdb", "user=luke,frame=block"]) == 0
    out = capsys.readouterr().out
    assert "(9, ['luke', 'yoda'], False)" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("p event.op, event.args[0]\nc\n"))
    assert cli.main([str(r.path), "--pdb", "2"]) == 0
    assert "('r', 1)" in capsys.readouterr().out


def test_a_departure_is_said_with_its_event_and_exits_1(tmp_path, capsys):
    r = Recorded(tmp_path / "j")
    r.login("yoda")
    r.close()
    lines = r.path.read_text().splitlines()
    lines[3] = lines[3].replace('"username":"yoda"', '"username":"luke"')
    r.path.write_text("\n".join(lines) + "\n")
    assert cli.main([str(r.path)]) == 1
    err = capsys.readouterr().err
    assert "the replay departs from the recording at event #4" in err
    assert "returned 4 effect(s), these return 2" in err   # a wrong password now: refused, not welcomed
    assert "invalid_password" in err
    (tmp_path / "no").write_text("hello\n")
    assert cli.main([str(tmp_path / "no")]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_an_input_the_journal_cannot_write_stops_the_recording_not_the_rules(tmp_path, caplog):
    r = Recorded(tmp_path / "j", cls=ClusterChatServer, first_id=1, rate=None)
    r.login("yoda")
    r.call("login_decided", r.conns["yoda"], "yoda", LoginOutcome.WELCOME, r.now)
    odd = {"kind": "message", "to": "yoda", "from": "luke", "text": "hi", "extra": {1, 2}}   # no JSON for a set
    with caplog.at_level(logging.ERROR, logger="reactor.journal.writer"):
        effects = r.call("relayed", odd, r.now)
    assert [e.frame for e in effects] == [{"type": "message", "from": "luke", "text": "hi"}]
    assert r.writer.stopped and "cannot be written" in caplog.text
    assert len(caplog.records) == 1
    effects = r.say("yoda", {"type": "whoelse"})   # and the rules go on
    assert [e.frame for e in effects] == [{"type": "users", "names": []}]
    assert [e.op for e in open_journal(str(r.path)).events()] == ["c", "r", "r", "r", "L"]   # what came before stays


def test_an_r_line_holds_the_hot_paths_events_and_a_garbled_one_is_an_error():
    header = Header(side="server", rules="ChatServer", t0=0, args={})
    times = base64.b64encode(struct.pack("<2d", 1.5, 1.75)).decode()   # (little-endian)
    numbers = base64.b64encode(struct.pack("<6i", 3, 4, 11, 4, 4, -1)).decode()
    events = list(read_events(io.StringIO(f'[5,"e",0]\n[0,"R",0,"{times}","{numbers}",4]\n[5,"e",0]\n'), header))
    assert [(e.number, e.op, e.now, e.args, e.digest) for e in events] == [
        (1, "e", 5e-6, [], 0), (2, "M", 1.5, [3, 4, 11], None), (3, "P", 1.75, [4], None), (4, "e", 10e-6, [], 0)]
    with pytest.raises(JournalError, match="line 2: an R line's records do not read"):
        list(read_events(io.StringIO(f'[0,"R",0,"not base64!","{numbers}",4]\n'), header))
    with pytest.raises(JournalError, match="line 2: an R line's records do not read"):
        list(read_events(io.StringIO(f'[0,"R",0,"{times}","{numbers}",3]\n'), header))
    with pytest.raises(JournalError, match="three numbers for each time"):
        list(read_events(io.StringIO(f'[0,"R",0,"{times}","{base64.b64encode(bytes(8)).decode()}",4]\n'), header))
