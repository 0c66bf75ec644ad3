"""A message over several lines in the client's logic: sent with its line breaks, shown with every line after
the first indented under its sender, and where a line being typed passes what can be sent."""
import pytest

from reactor.client.commands import text_limit
from reactor.client.effects import Print, ToPeer
from reactor.client.rules import ChatClient
from reactor.client.words import MAX_INDENT, hanging
from reactor.protocol import MAX_TEXT
from reactor.text import CONTROL
from tests.support import PING, frames, logged_in

LETTER = "Dear Yoda,\nthe fleet is ready.\n\nRegards"


def prints(effects):
    return [e.text for e in effects if type(e) is Print]


@pytest.mark.parametrize("line, frame", [
    (f"message hans {LETTER}", {"type": "message", "to": "hans", "text": LETTER, "ref": "n0nce.1"}),
    (f"broadcast {LETTER}", {"type": "broadcast", "text": LETTER}),
    ("message hans\nDear Hans,\nhi", {"type": "message", "to": "hans", "text": "Dear Hans,\nhi", "ref": "n0nce.1"}),
])
def test_a_message_with_line_breaks_is_sent_as_it_is(line, frame):
    c = logged_in("yoda")
    assert frames(c.line(line, 1)) == [frame, PING]


def test_a_private_text_with_line_breaks_is_sent_as_it_is_and_a_carriage_return_is_not():
    c = logged_in("yoda")
    c.server_frame({"type": "private_expect", "user": "hans", "token": "T"}, 1)
    c.peer_accepted(1, 1)
    c.peer_frame(1, {"type": "peer_hello", "user": "hans", "token": "T"}, 1)
    assert [e.frame for e in c.line("private hans one\ntwo", 2) if type(e) is ToPeer] == [
        {"type": "private", "text": "one\ntwo"}]
    assert prints(c.line("private hans one\r\ntwo", 2)) == ["Error. A message cannot contain control characters"]


@pytest.mark.parametrize("frame, shown", [
    ({"type": "message", "from": "hans", "text": LETTER},
     "hans: Dear Yoda,\n      the fleet is ready.\n      \n      Regards"),
    ({"type": "message", "from": "hans", "text": "a\nb", "broadcast": True}, "[broadcast] hans: a\n" + " " * 16 + "b"),
    ({"type": "message", "from": "hans", "text": "a\n\x1b[2Jyoda: forged\rx"}, "hans: a\n      ^[[2Jyoda: forged^Mx"),
    ({"type": "message", "from": "h\nx", "text": "a\nb"}, "h^Jx: a\n      b"),   # a name never breaks a line
])
def test_a_message_with_line_breaks_shows_its_later_lines_indented_under_its_sender(frame, shown):
    c = logged_in("yoda")
    assert prints(c.server_frame(frame, 1)) == [shown]
    assert not CONTROL.search(shown.replace("\n", ""))
    assert all(line.startswith(" ") for line in shown.split("\n")[1:])   # none at the margin, as a line of its own


def test_a_private_text_with_line_breaks_is_indented_too():
    c = logged_in("yoda")
    c.server_frame({"type": "private_expect", "user": "hans", "token": "T"}, 1)
    c.peer_accepted(1, 1)
    c.peer_frame(1, {"type": "peer_hello", "user": "hans", "token": "T"}, 1)
    assert prints(c.peer_frame(1, {"type": "private", "text": "one\ntwo\x1b"}, 2)) == [
        "hans(private): one\n" + " " * len("hans(private): ") + "two^["]


def test_the_indent_is_where_the_text_began_at_most_16_columns_and_at_least_2():
    assert hanging("ab: x\ny", "x\ny") == "ab: x\n    y"
    assert hanging("\u4e2d\u6587: x\ny", "x\ny") == "\u4e2d\u6587: x\n      y"   # wide characters take 2
    assert hanging("x\ny", "x\ny") == "x\n  y"
    assert hanging("n" * 40 + ": x\ny", "x\ny") == "n" * 40 + ": x\n" + " " * MAX_INDENT + "y"
    assert hanging("no break", "no break") == "no break"


@pytest.mark.parametrize("line, limit", [
    ("message yoda " + "x" * MAX_TEXT, None),
    ("message yoda " + "x" * (MAX_TEXT + 1), len("message yoda ") + MAX_TEXT),
    ("  message   yoda   " + "x" * (MAX_TEXT + 5) + "   ", len("  message   yoda   ") + MAX_TEXT),
    ("message yoda " + "x" * MAX_TEXT + "   ", None),           # trailing blanks are not sent
    ("broadcast " + "x\n" * MAX_TEXT, len("broadcast ") + MAX_TEXT),
    ("message " + "x" * (MAX_TEXT + 10), None),                 # no text yet: the user name is being typed
    ("private hans " + "x" * (MAX_TEXT + 10), None),            # peer to peer: the server's limit is not its
    ("whoelse " + "x" * (MAX_TEXT + 10), None),
    ("messagex yoda " + "x" * (MAX_TEXT + 10), None),
    ("", None),
])
def test_where_a_line_passes_what_can_be_sent(line, limit):
    assert text_limit(line) == limit


def test_the_limit_marks_nothing_before_the_login():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    assert c.text_limit("message yoda " + "x" * (MAX_TEXT + 1)) is None
    assert logged_in("yoda").text_limit("message yoda " + "x" * (MAX_TEXT + 1)) == len("message yoda ") + MAX_TEXT
