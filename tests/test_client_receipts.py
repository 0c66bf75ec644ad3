"""The client's side of receipts (reactor/client/receipts.py), on its sans-I/O logic with an injected clock: it
says which live messages it showed (``shown``, with its ack), and of the user's own messages it shows only one
not read within READ_WAIT (then its ``read`` when it comes); with ``--receipts`` every ``read``. A ``read`` is
believed once, for a ref of this client's sent to the user it names. (The server's side: test_receipts.py.)"""
import pytest

from reactor.client.effects import Print, SetTimer, ToServer
from reactor.client.inbox import SHOWN_DELAY
from reactor.client.receipts import READ_WAIT, RECEIPTS_KEPT, start_of
from reactor.client.rules import ChatClient
from tests.support import NONCE, PONG, error, frames, logged_in

REF = f"{NONCE}.1"


def read(by, *refs):
    return {"type": "read", "by": by, "refs": list(refs)}


def prints(effects):
    return [e.text for e in effects if type(e) is Print]


def sent(c, line="message yoda hello there", now=1.0, *answers):
    """Send ``line``; the server answers ``answers`` and its pong: the effects of those."""
    c.line(line, now)
    effects = []
    for frame in (*answers, PONG):
        effects += c.server_frame(frame, now)
    return effects


@pytest.mark.parametrize("mode, says", [("quiet", True), ("every", True), (None, False)])
def test_the_hello_says_whether_the_client_sends_receipts(mode, says):
    c = ChatClient(receipts=mode)
    (hello, _) = c.start(0.0)
    assert hello.frame.get("receipts") is (True if says else None)


def test_a_message_shown_in_time_shows_nothing_more():
    c = logged_in(receipts="quiet")
    assert sent(c) == [SetTimer(("unread", REF), 1.0 + READ_WAIT)]
    assert c.server_frame(read("yoda", REF), 2.0) == []
    assert c.timer_fired(("unread", REF), 1.0 + READ_WAIT) == []


def test_a_message_not_read_in_time_gets_one_line_and_its_receipt_when_it_comes_once():
    c = logged_in(receipts="quiet")
    sent(c)
    assert prints(c.timer_fired(("unread", REF), 1.0 + READ_WAIT)) == ["Not yet read by yoda: hello there"]
    assert c.timer_fired(("unread", REF), 9.0) == []   # (once)
    assert prints(c.server_frame(read("yoda", REF), 20.0)) == ["Read by yoda: hello there"]
    assert c.server_frame(read("yoda", REF), 21.0) == []   # none twice


def test_with_receipts_every_read_is_shown_once():
    c = logged_in(receipts="every")
    sent(c)
    sent(c, "message luke hi", 2.0)
    assert prints(c.server_frame(read("yoda", REF), 2.0)) == ["Read by yoda: hello there"]
    assert prints(c.server_frame(read("luke", f"{NONCE}.2", REF), 2.0)) == ["Read by luke: hi"]


def test_a_message_kept_for_later_gets_no_waiting_line_and_its_read_comes_when_shown():
    c = logged_in(receipts="every")
    stored = {"type": "stored", "to": "yoda", "ref": REF}
    assert prints(sent(c, "message yoda for later", 1.0, stored)) == [
        "yoda is offline; the message will be delivered when they log in"]   # (and no timer)
    assert prints(c.server_frame(read("yoda", REF), 3600.0)) == ["Read by yoda: for later"]
    quiet = logged_in(receipts="quiet")
    assert not [e for e in sent(quiet, "message yoda for later", 1.0, stored) if type(e) is SetTimer]
    assert quiet.server_frame(read("yoda", REF), 3600.0) == []


def test_a_refused_message_gets_no_waiting_line_nor_receipt():
    c = logged_in(receipts="every")
    effects = sent(c, "message yoda hi", 1.0, error("blocked_by_recipient", user="yoda"))
    assert not [e for e in effects if type(e) is SetTimer]
    assert c.timer_fired(("unread", REF), 1.0 + READ_WAIT) == [] and c.server_frame(read("yoda", REF), 2.0) == []


def test_on_a_cluster_a_message_kept_after_its_pong_gets_no_waiting_line():
    c = logged_in(receipts="quiet")
    sent(c)   # (to a user on another node: answered after the pong)
    c.server_frame({"type": "stored", "to": "yoda", "ref": REF}, 2.0)   # its node had died: kept
    assert c.timer_fired(("unread", REF), 1.0 + READ_WAIT) == []


def test_on_a_cluster_a_message_refused_after_its_pong_gets_no_waiting_line():
    c = logged_in(receipts="quiet")
    sent(c)
    c.server_frame(error("blocked_by_recipient", user="yoda", ref=REF), 2.0)
    assert c.timer_fired(("unread", REF), 1.0 + READ_WAIT) == []


def test_a_message_sent_again_is_listened_for_once_it_is_taken():
    c = logged_in(receipts="quiet")
    store_full = error("store_full", command="message", user="yoda")
    assert not [e for e in sent(c, "message yoda hi", 1.0, store_full)
                if type(e) is SetTimer and e.key[0] == "unread"]   # it waits to go again
    c.timer_fired(("retry", REF), 2.0)
    assert SetTimer(("unread", REF), 2.5 + READ_WAIT) in c.server_frame(PONG, 2.5)
    assert prints(c.timer_fired(("unread", REF), 2.5 + READ_WAIT)) == ["Not yet read by yoda: hi"]


def test_a_read_for_another_user_an_unknown_ref_or_junk_is_ignored():
    c = logged_in(receipts="every")
    sent(c)
    for junk in (read("luke", REF), read("yoda", "n0nce.99", "other.1"), {"type": "read", "by": "yoda"},
                 {"type": "read", "by": 3, "refs": [REF]}, {"type": "read", "by": "yoda", "refs": REF},
                 {"type": "read", "by": "yoda", "refs": [[REF], 5]}):
        assert c.server_frame(junk, 2.0) == [], junk
    assert prints(c.server_frame(read("yoda", REF), 2.0)) == ["Read by yoda: hello there"]


def test_only_the_last_messages_are_listened_for():
    c = logged_in(receipts="every")
    for n in range(RECEIPTS_KEPT + 1):
        sent(c, f"message yoda {n}", 1.0)
    assert c.server_frame(read("yoda", REF), 2.0) == []   # the oldest, forgotten
    assert prints(c.server_frame(read("yoda", f"{NONCE}.2"), 2.0)) == ["Read by yoda: 1"]


def test_a_flood_of_reads_shows_nothing():
    c = logged_in(receipts="every")
    sent(c)
    for n in range(200):
        assert c.server_frame(read("yoda", *(f"junk.{n}.{i}" for i in range(500))), 2.0) == []


@pytest.mark.parametrize("text, start", [("hello", "hello"), ("x" * 30, "x" * 30), ("x" * 31, "x" * 30 + "..."),
                                         ("two\nlines", "two..."), ("a" * 29 + " b", "a" * 29 + "...")])
def test_a_message_is_named_by_the_start_of_its_text(text, start):
    assert start_of(text) == start


def test_live_messages_shown_are_said_shown_a_second_later_or_with_the_ack_in_one_frame():
    c = logged_in(receipts="quiet")
    effects = c.server_frame({"type": "message", "from": "hans", "text": "hi", "ref": "h.1"}, 5.0)
    assert effects == [SetTimer(("shown",), 5.0 + SHOWN_DELAY), Print("hans: hi")]
    c.server_frame({"type": "message", "from": "luke", "text": "yo", "ref": "l.1"}, 5.0)
    assert c.server_frame({"type": "message", "from": "hans", "text": "kept", "id": 4}, 5.0)[0] == SetTimer(
        ("ack",), 5.0)
    c.server_frame({"type": "message", "from": "hans", "text": "no ref"}, 5.0)
    c.server_frame({"type": "message", "from": "hans", "text": "all", "ref": "h.2", "broadcast": True}, 5.0)
    assert c.timer_fired(("ack",), 5.0) == [ToServer({"type": "ack", "ids": [4]}),
                                            ToServer({"type": "shown", "refs": ["h.1", "l.1", "h.2"]})]
    assert c.timer_fired(("shown",), 5.0 + SHOWN_DELAY) == []   # (said with the ack)
    assert c.server_frame({"type": "message", "from": "hans", "text": "again", "ref": "h.3"}, 6.0) == [
        SetTimer(("shown",), 6.0 + SHOWN_DELAY), Print("hans: again")]
    assert c.timer_fired(("shown",), 6.0 + SHOWN_DELAY) == [ToServer({"type": "shown", "refs": ["h.3"]})]


def test_saying_shown_is_not_the_users_activity():
    """As the server counts it: the inactivity warning comes on time though messages were shown meanwhile."""
    c = ChatClient(nonce=NONCE, receipts="quiet")
    c.start(0.0)
    c.server_frame({"type": "hello", "version": 3, "timeout": 60}, 0.0)
    c.line("yoda", 0.0)
    c.server_frame({"type": "username_ok"}, 0.0)
    c.line("secret", 0.0)
    c.server_frame({"type": "welcome", "user": "yoda"}, 0.0)   # the login is the last activity: warned at 50
    c.server_frame(PONG, 0.0)
    c.server_frame({"type": "message", "from": "hans", "text": "hi", "ref": "h.1"}, 40.0)
    assert c.timer_fired(("shown",), 41.0) == [ToServer({"type": "shown", "refs": ["h.1"]})]
    assert prints(c.timer_fired(("idle",), 50.0)) == ["You will be logged out in 10 s for inactivity"]


def test_many_live_messages_are_said_shown_in_pages():
    c = logged_in(receipts="quiet")
    for n in range(1200):
        c.server_frame({"type": "message", "from": "hans", "text": "hi", "ref": f"h.{n}"}, 5.0)
    said = frames(c.timer_fired(("shown",), 5.0 + SHOWN_DELAY))
    assert [len(f["refs"]) for f in said] == [500, 500, 200]
    assert [ref for f in said for ref in f["refs"]] == [f"h.{n}" for n in range(1200)]


def test_a_client_without_receipts_says_nothing_and_listens_for_nothing():
    c = logged_in()
    assert sent(c) == []
    assert c.server_frame({"type": "message", "from": "hans", "text": "hi", "ref": "h.1"}, 5.0) == [
        Print("hans: hi")]
    assert c.server_frame(read("yoda", REF), 6.0) == [] and c.timer_fired(("unread", REF), 6.0) == []


def test_after_logout_a_live_message_is_not_said_shown():
    c = logged_in(receipts="quiet")
    assert frames(c.line("logout", 2.0)) == [{"type": "logout"}]
    effects = c.server_frame({"type": "message", "from": "hans", "text": "late", "ref": "h.1"}, 2.1)
    assert not [e for e in effects if type(e) is ToServer or type(e) is SetTimer]


def test_the_session_ending_forgets_what_was_listened_for():
    c = logged_in(receipts="every")
    sent(c)
    c.server_frame({"type": "bye", "reason": "logout"}, 2.0)
    assert c.server_frame(read("yoda", REF), 2.0) == []


def test_a_waiting_message_is_not_said_unread_before_its_pong():
    c = logged_in(receipts="quiet")
    c.line("message yoda hi", 1.0)   # no pong yet: nothing taken, no timer
    assert c.timer_fired(("unread", REF), 1.0 + READ_WAIT) == []
