"""Reading what a terminal sends: typed runs, keys, bracketed pastes and cursor reports."""
import pytest

from reactor.client.keys import KeyReader

START, END = b"\x1b[200~", b"\x1b[201~"


def read(*chunks):
    keys = KeyReader()
    actions = []
    for chunk in chunks:
        actions += keys.feed(chunk)
    return actions


def test_typed_text_comes_as_one_run_and_keys_between_runs():
    assert read(b"hello\x01wor\x7fld\r") == [("text", "hello"), ("key", "home"), ("text", "wor"),
                                             ("key", "backspace"), ("text", "ld"), ("key", "enter")]


def test_invisible_characters_are_left_out_of_typed_text():
    assert read("a\u202eb\x85c".encode()) == [("text", "ab"), ("text", "c")]


@pytest.mark.parametrize("enter", [b"\x1b\r", b"\x1b\n"])
def test_alt_enter_is_a_line_break(enter):
    assert read(b"a" + enter + b"b") == [("text", "a"), ("key", "newline"), ("text", "b")]


def test_a_bracketed_paste_is_text_with_its_line_breaks():
    assert read(START + b"one\r\ntwo\rthree\nfour" + END + b"\r") == [
        ("paste_start",), ("paste", "one\ntwo\nthree\nfour"), ("paste_end",), ("key", "enter")]


def test_a_paste_does_not_obey_the_keys_and_sequences_in_it():
    actions = read(START + b"a\x03b\x1b[2Jc\td\x04" + END)
    assert actions == [("paste_start",), ("paste", "ab[2Jc    d"), ("paste_end",)]


def test_a_paste_split_anywhere_reads_the_same():
    data = START + "dear ü\r\nbye\r\n".encode() + END + b"x"
    whole = read(data)
    for cut in range(1, len(data)):
        actions = read(data[:cut], data[cut:])
        pasted = "".join(a[1] for a in actions if a[0] == "paste")
        assert pasted == "dear ü\nbye\n", cut
        assert [a for a in actions if a[0] != "paste"] == [a for a in whole if a[0] != "paste"], cut


def test_a_part_of_the_end_mark_that_is_not_the_end_is_pasted():
    keys = KeyReader()
    assert keys.feed(START + b"a\x1b[20") == [("paste_start",), ("paste", "a")]
    assert keys.pasting and not keys.waiting_for_escape
    assert keys.feed(b"0~b" + END) == [("paste", "[200~b"), ("paste_end",)]
    assert not keys.pasting


def test_a_cursor_report_is_read_as_a_report():
    assert read(b"a\x1b[12;5", b"Rb") == [("text", "a"), ("report", 12, 5), ("text", "b")]


def test_a_lone_escape_becomes_the_escape_key_only_on_timeout():
    keys = KeyReader()
    assert keys.feed(b"\x1b") == []
    assert keys.waiting_for_escape
    assert keys.escape_timeout() == [("key", "escape")]
    assert keys.escape_timeout() == []
    assert keys.feed(b"\r") == [("key", "enter")]
