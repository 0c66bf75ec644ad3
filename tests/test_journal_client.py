"""Recording a client (reactor/journal/client.py) and replaying it, screen included: the client's rules driven by
hand behind a ``ClientRecorder``, its journal replayed by ``ClientReplay``."""
from __future__ import annotations

import base64
import io
import json

from reactor.client.effects import ToServer
from reactor.client.rules import ChatClient
from reactor.journal import cli, scrub
from reactor.journal.client import ClientRecorder, KeyScrubber, client_args, command_line
from reactor.journal.client_replay import ClientReplay
from reactor.journal.format import Header
from reactor.journal.replay import open_journal
from reactor.journal.writer import JournalWriter
from tests.terminal_model import Screen

PASSWORD = "s3cret-passw0rd"
CERT = base64.b64encode(b"\x30\x82 a DER certificate of luke's client").decode()


class Clock:
    def __init__(self):
        self.now = 10.0

    def __call__(self):
        return self.now


def recorder(path, texts=False, clock=None):
    args = {"timestamps": True, "wall_offset": 1_700_000_000.0, "tz_offset": 3600.0, "certificate": None,
            "nonce": "n0nce-of-yoda"}
    header = Header(side="client", rules="ChatClient", t0=0, args=args, texts=texts, run="test")
    scrubber = scrub.Scrubber(texts=texts)
    live = ChatClient(**client_args(args))
    return ClientRecorder(JournalWriter(path, header), scrubber, live, ChatClient(**client_args(args)),
                          clock or Clock())


def sent(effects):
    return [e.frame for e in effects if type(e) is ToServer]


def scripted_session(r, clock):
    """A script typing its whole dialogue at once (lines wait for the server's answers), then frames."""
    r.start(clock(), ("127.0.0.1", 5000))
    for line in ("yoda", PASSWORD, "message luke the death star plans", "whoelse", "broadcast hi all",
                 "not a command at all", "private luke later"):
        r.line(line, clock())
    r.server_frame({"type": "hello", "version": 2}, clock())
    assert sent(r.server_frame({"type": "username_ok"}, clock())) == [{"type": "password", "password": PASSWORD}]
    clock.now += 1
    r.server_frame({"type": "welcome", "user": "yoda"}, clock())
    taken = r.server_frame({"type": "pong"}, clock())
    message = sent(taken)[0]
    assert message.pop("ref") and message == {"type": "message", "to": "luke", "text": "the death star plans"}
    r.server_frame({"type": "pong"}, clock())
    r.server_frame({"type": "users", "names": ["luke"]}, clock())
    r.server_frame({"type": "pong"}, clock())
    taken = r.server_frame({"type": "pong"}, clock())   # after the broadcast: the last two lines are taken
    assert [e.frame["type"] for e in taken if type(e) is ToServer] == ["activity", "activity"]
    r.server_frame({"type": "message", "from": "luke", "text": "I am your son"}, clock())
    r.server_frame({"type": "message", "from": "luke", "text": "stored\x1b[2J one", "id": 7, "sent": 1.7e9}, clock())
    clock.now += 1
    r.timer_fired(("ack",), clock())
    r.server_frame({"type": "private_request", "from": "luke"}, clock())
    r.line("y", clock())
    r.listening("127.0.0.1", 4567, clock())
    r.server_frame({"type": "private_expect", "user": "luke", "token": "TOKEN-of-luke-123", "cert": CERT}, clock())
    r.peer_accepted(1, clock())
    r.peer_frame(1, {"type": "peer_hello", "user": "luke", "token": "TOKEN-of-luke-123"}, clock())
    r.peer_frame(1, {"type": "private", "text": "psst, over here"}, clock())
    r.server_frame({"type": "presence", "users": ["leia"], "online": True}, clock())
    r.end_of_input(clock())
    r.server_frame({"type": "bye", "reason": "logout"}, clock())
    r.close()
    r.writer.close()


def replay_all(path, screen=None):
    journal = open_journal(str(path))
    replay = ClientReplay(journal.header)
    if screen is not None:
        replay.show_screen(screen)
    events = list(journal.events())
    return replay, events, [replay.apply(event) for event in events]


def test_a_scripted_session_replays_and_its_journal_holds_no_secret_and_no_text(tmp_path):
    clock = Clock()
    r = recorder(tmp_path / "client.journal", clock=clock)
    scripted_session(r, clock)
    journal = (tmp_path / "client.journal").read_text()
    secrets = [PASSWORD, "death star", "hi all", "not a command", "later", "your son", "stored", "[2J",
               "TOKEN-of-luke", CERT[:20], "over here"]
    assert [s for s in secrets if s in journal or json.dumps(s)[1:-1] in journal] == []
    lines = [json.loads(line) for line in journal.splitlines()[1:]]
    typed = [line[3] for line in lines if line[1] == "l"]
    assert typed[0].startswith("line-") and typed[1].startswith("line-")   # the user name and the password
    assert typed[2] == "message luke " + "x" * len("the death star plans")
    assert typed[3:5] == ["whoelse", "broadcast " + "x" * len("hi all")]
    assert typed[5].startswith("line-") and typed[6] == "private luke xxxxx" and typed[7] == "y"
    replay, events, effects = replay_all(tmp_path / "client.journal")
    assert len(events) == len(lines) and all(e.digest is not None for e in events)
    assert replay.rules.user == "yoda"
    printed = [e.text for batch in effects for e in batch if type(e).__name__ == "Print"]
    assert any("xxxxxxxxxxxxx" in text and "luke" in text for text in printed)   # luke's message, made up


def test_texts_recorded_when_asked_but_never_the_password(tmp_path):
    clock = Clock()
    r = recorder(tmp_path / "client.journal", texts=True, clock=clock)
    scripted_session(r, clock)
    journal = (tmp_path / "client.journal").read_text()
    assert "the death star plans" in journal and "I am your son" in journal
    assert PASSWORD not in journal and "TOKEN-of-luke" not in journal and CERT[:20] not in journal
    replay, _, effects = replay_all(tmp_path / "client.journal")
    printed = [e.text for batch in effects for e in batch if type(e).__name__ == "Print"]
    assert any("I am your son" in text for text in printed)


def test_the_passwords_of_a_password_change_are_never_in_the_journal_even_with_texts(tmp_path):
    clock = Clock()
    r = recorder(tmp_path / "client.journal", texts=True, clock=clock)
    r.start(clock(), ("127.0.0.1", 5000))
    r.line("yoda", clock())
    r.line(PASSWORD, clock())
    r.server_frame({"type": "hello", "version": 2}, clock())
    r.server_frame({"type": "username_ok"}, clock())
    r.server_frame({"type": "welcome", "user": "yoda"}, clock())
    r.server_frame({"type": "pong"}, clock())
    changed = []
    for line in ("password", "message luke old-Secret-1", "New Secret 22", "New Secret 22"):
        changed += sent(r.line(line, clock()))
    assert [frame for frame in changed if frame["type"] != "activity"] == [
        {"type": "change_password", "current": "message luke old-Secret-1", "new": "New Secret 22"}]
    r.server_frame({"type": "password_changed"}, clock())
    r.close()
    r.writer.close()
    journal = (tmp_path / "client.journal").read_text()
    assert "old-Secret" not in journal and "New Secret" not in journal and PASSWORD not in journal
    typed = [json.loads(line)[3] for line in journal.splitlines()[1:] if json.loads(line)[1] == "l"]
    assert typed[2] == "password" and all(t.startswith("line-") for t in typed[3:])


def test_a_line_typed_while_logged_in_keeps_its_command_and_users_not_its_text():
    s = scrub.Scrubber()
    assert command_line("message luke  hello  there", s) == "message luke " + "x" * len("hello  there")
    assert command_line("block vader", s) == "block vader"
    assert command_line("whoelsesince 60", s) == "whoelsesince 60"
    assert command_line("message", s) == "message"   # a usage error stays one
    assert command_line("hunter2", s).startswith("line-")
    assert command_line("  ", s) == "  " and command_line("N", s) == "N"


def test_keys_are_made_up_but_keep_their_kind_and_a_secret_prompt_writes_none():
    keys = KeyScrubber()
    assert keys(b"Hi, you 2\x1b[D\x1bb\x7f\r", secret=False, texts=False) == b"xx. xxx x\x1b[D\x1bb\x7f\r"
    assert keys(b"p4ss\x08w\r", secret=True, texts=False) == b"\x08\r"
    assert keys(b"\xe6\x97\xa5\xc3", secret=False, texts=False) == "\u3042".encode()   # a character cut in two...
    assert keys(b"\xa9\x1b[12;40R", secret=False, texts=False) == "\u00e9\x1b[12;40R".encode()   # ...and its end
    assert keys(b"\x1b[200~pasted\rtext\x1b[201~", secret=False, texts=False) == b"\x1b[200~xxxxxx\rxxxx\x1b[201~"
    assert keys(b"as typed", secret=False, texts=True) == b"as typed"
    assert keys(b"but not this", secret=True, texts=True) == b""


def test_the_screen_is_drawn_again_from_the_keys_and_what_the_client_printed(tmp_path):
    clock = Clock()
    r = recorder(tmp_path / "client.journal", texts=True, clock=clock)
    r.terminal("z", 60, 12)
    r.start(clock(), None)
    r.server_frame({"type": "hello", "version": 2}, clock())
    for key in (b"yo", b"da", b"\r"):
        r.terminal("k", key)
    r.line("yoda", clock())
    r.server_frame({"type": "username_ok"}, clock())
    r.terminal("k", PASSWORD.encode() + b"\r")
    r.line(PASSWORD, clock())
    r.server_frame({"type": "welcome", "user": "yoda"}, clock())
    r.server_frame({"type": "pong"}, clock())
    r.terminal("k", b"whoelse\r")
    r.line("whoelse", clock())
    r.server_frame({"type": "users", "names": ["luke", "leia"]}, clock())
    r.server_frame({"type": "pong"}, clock())
    r.terminal("k", b"message luke half-typed")
    r.terminal("z", 40, 12)
    r.close()
    r.writer.close()
    journal = (tmp_path / "client.journal").read_text()
    assert PASSWORD not in journal and "yoda" in journal
    out = io.BytesIO()
    replay_all(tmp_path / "client.journal", screen=out)
    screen = Screen(40, 12)   # (as wide as the terminal was at the end)
    screen.feed(out.getvalue())
    assert [line.rstrip() for line in screen.lines()][:9] == [
        "Username: yoda", "Password:", "Welcome to the greatest messaging applic", "ation ever!",
        "Type help for commands", "> whoelse", "luke", "leia", "> message luke half-typed"]


def test_the_command_line_replays_a_client_journal_with_its_screen(tmp_path, capsys, monkeypatch):
    clock = Clock()
    r = recorder(tmp_path / "client.journal", clock=clock)
    scripted_session(r, clock)
    assert cli.main([str(tmp_path / "client.journal"), "--print"]) == 0
    out, err = capsys.readouterr()
    assert "every event's effects as recorded" in err
    assert "server: message from=luke" in out and "printed" in out
    assert "to server: password" in out and PASSWORD not in out
