"""The line editor as pure logic: keystrokes in, events and screen bytes out."""
import pytest

from reactor.line_editor import HISTORY_LIMIT, LineEditor

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"


def editor(prompt="> ", secret=False):
    ed = LineEditor()
    ed.set_prompt(prompt, secret)
    ed.take_output()
    return ed


def state(ed):
    """The line and where the cursor is in it, as 'ab|c'."""
    return "".join(ed._chars[:ed._cursor]) + "|" + "".join(ed._chars[ed._cursor:])


def typed(keys, ed=None):
    ed = ed or editor()
    assert ed.feed(keys) == []
    return state(ed)


# -- typing and moving -------------------------------------------------------

def test_typing_at_the_end_echoes_each_character():
    ed = editor()
    assert ed.feed(b"hi") == []
    assert ed.take_output() == b"hi"
    assert ed.take_output() == b""


def test_enter_returns_the_line_and_draws_a_fresh_prompt():
    ed = editor()
    assert ed.feed(b"hello\r") == [("line", "hello")]
    assert ed.take_output() == b"hello\r\n\r> \x1b[K"
    assert state(ed) == "|"


@pytest.mark.parametrize("enter", [b"\r", b"\n", b"\r\n"])
def test_each_kind_of_enter_submits_once(enter):
    ed = editor()
    assert ed.feed(b"a" + enter + b"b" + enter) == [("line", "a"), ("line", "b")]


def test_cr_lf_split_across_feeds_counts_once_but_two_crs_are_two_lines():
    ed = editor()
    assert ed.feed(b"a\r") == [("line", "a")]
    assert ed.feed(b"\n") == []
    assert ed.feed(b"\r\r") == [("line", ""), ("line", "")]


def test_inserting_in_the_middle_redraws_with_the_cursor_moved_back():
    ed = editor()
    ed.feed(b"ac" + LEFT)
    ed.take_output()
    ed.feed(b"b")
    assert ed.take_output() == b"\r> abc\x1b[K\x1b[1D"
    assert state(ed) == "ab|c"


@pytest.mark.parametrize("keys", [LEFT, b"\x1bOD", b"\x02"])
def test_left(keys):
    assert typed(b"abc" + keys) == "ab|c"


@pytest.mark.parametrize("keys", [RIGHT, b"\x1bOC", b"\x06"])
def test_right(keys):
    assert typed(b"abc" + LEFT + LEFT + keys) == "ab|c"


def test_left_and_right_stop_at_the_ends():
    assert typed(b"ab" + LEFT * 3) == "|ab"
    assert typed(b"ab" + RIGHT) == "ab|"


@pytest.mark.parametrize("keys", [HOME, b"\x1b[1~", b"\x1b[7~", b"\x1bOH", b"\x01"])
def test_home(keys):
    assert typed(b"abc" + keys) == "|abc"


@pytest.mark.parametrize("keys", [END, b"\x1b[4~", b"\x1b[8~", b"\x1bOF", b"\x05"])
def test_end(keys):
    assert typed(b"abc" + HOME + keys) == "abc|"


def test_a_modified_arrow_still_moves():
    assert typed(b"abc\x1b[1;5D") == "ab|c"


# -- deleting ----------------------------------------------------------------

@pytest.mark.parametrize("keys", [b"\x7f", b"\x08"])
def test_backspace(keys):
    ed = editor()
    assert typed(b"abc" + LEFT + keys, ed) == "a|c"
    assert ed.take_output().endswith(b"\r> ac\x1b[K\x1b[1D")
    assert typed(HOME + keys, ed) == "|ac"


def test_delete_removes_the_character_under_the_cursor():
    assert typed(b"abc" + LEFT + LEFT + DELETE) == "a|c"
    assert typed(b"abc" + DELETE) == "abc|"


def test_ctrl_d_on_a_non_empty_line_deletes_under_the_cursor():
    ed = editor()
    assert ed.feed(b"abc" + HOME + b"\x04") == []
    assert state(ed) == "|bc"
    assert ed.feed(b"\x04\x04") == []
    assert ed.feed(b"\x04") == [("eof",)]


def test_ctrl_d_on_an_empty_line_is_end_of_input():
    ed = editor()
    assert ed.feed(b"\x04") == [("eof",)]
    assert ed.take_output() == b""


def test_ctrl_u_kills_from_the_start_to_the_cursor():
    assert typed(b"hello world" + LEFT * 5 + b"\x15") == "|world"


def test_ctrl_k_kills_to_the_end():
    assert typed(b"hello world" + LEFT * 5 + b"\x0b") == "hello |"


def test_ctrl_w_deletes_spaces_then_the_word_before_the_cursor():
    assert typed(b"say hello  \x17") == "say |"
    assert typed(b"say hello" + LEFT * 2 + b"\x17") == "say |lo"
    assert typed(b"\x17") == "|"
    assert typed(b"one\x17") == "|"


# -- control keys and sequences that do nothing -------------------------------

def test_ctrl_l_redraws():
    ed = editor()
    ed.feed(b"ab" + LEFT)
    ed.take_output()
    ed.feed(b"\x0c")
    assert ed.take_output() == b"\r> ab\x1b[K\x1b[1D"


def test_tab_and_other_control_bytes_are_ignored():
    ed = editor()
    assert ed.feed(b"a\t\x00\x07\x12\x1a\x1fb\xc2\x85") == []  # \xc2\x85 is the C1 control NEL
    assert state(ed) == "ab|"
    assert ed.take_output() == b"ab"


@pytest.mark.parametrize("sequence", [b"\x1b[5~", b"\x1b[200~", b"\x1b[Z", b"\x1b[?25h",
                                      b"\x1b[1;5P", b"\x1bOP", b"\x1bx", b"\x1b[E"])
def test_unknown_sequences_and_alt_keys_are_ignored(sequence):
    ed = editor()
    assert ed.feed(b"a" + sequence + b"b") == []
    assert state(ed) == "ab|"


def test_escape_then_an_arrow_is_the_arrow():
    assert typed(b"ab\x1b\x1b[D") == "a|b"


def test_a_control_byte_inside_a_sequence_ends_it_and_counts():
    ed = editor()
    assert ed.feed(b"ab\x1b[1\rc") == [("line", "ab")]
    assert state(ed) == "c|"
    assert ed.feed(b"\x1b\r") == [("line", "c")]        # Escape, then Enter
    assert ed.feed(b"\x1bO\x7f") == []
    assert ed.feed("x\x1b[é".encode()) == []
    assert state(ed) == "xé|"


# -- split input -------------------------------------------------------------

def test_escape_sequences_split_across_feeds():
    ed = editor()
    ed.feed(b"abc\x1b")
    ed.feed(b"[")
    ed.feed(b"D\x1b[3")
    assert state(ed) == "ab|c"
    ed.feed(b"~\x1bO")
    assert state(ed) == "ab|"
    ed.feed(b"H")
    assert state(ed) == "|ab"


def test_utf8_split_across_feeds():
    ed = editor()
    data = "é€😀".encode()
    for i in range(len(data)):
        assert ed.feed(data[i:i + 1]) == []
    assert state(ed) == "é€😀|"
    assert ed.feed(LEFT + b"\x7f\r") == [("line", "é😀")]
    assert ed.take_output().startswith("é€😀".encode())


def test_invalid_utf8_becomes_a_replacement_character():
    assert typed(b"a\xffb") == "a\ufffdb|"


# -- interrupt ---------------------------------------------------------------

def test_ctrl_c_clears_the_line_and_shows_a_fresh_prompt():
    ed = editor()
    ed.feed(b"half typed")
    ed.take_output()
    assert ed.feed(b"\x03") == [("interrupt",)]
    assert ed.take_output() == b"^C\r\n\r> \x1b[K"
    assert state(ed) == "|"
    assert ed.feed(b"x\r") == [("line", "x")]


def test_events_come_in_order():
    ed = editor()
    assert ed.feed(b"a\rb\x03\x04") == [("line", "a"), ("interrupt",), ("eof",)]


# -- prompt and secret -------------------------------------------------------

def test_set_prompt_redraws_the_current_line():
    ed = LineEditor()
    ed.feed(b"abc" + LEFT)
    ed.take_output()
    ed.set_prompt("name: ", False)
    assert ed.take_output() == b"\rname: abc\x1b[K\x1b[1D"


def test_a_secret_prompt_echoes_nothing_and_stays_out_of_history():
    ed = editor()
    ed.feed(b"public\r")
    ed.set_prompt("password: ", True)
    assert ed.take_output().endswith(b"\rpassword: \x1b[K")
    assert ed.feed(b"hunter2") == []
    assert ed.take_output() == b""
    ed.feed(b"\x7f" + LEFT)
    assert b"hunter" not in ed.take_output()
    assert ed.feed(UP + b"\x10") == []   # no history while secret
    assert state(ed) == "hunte|r"
    assert ed.feed(b"\r") == [("line", "hunter")]
    assert ed.take_output() == b"\r\n\rpassword: \x1b[K"
    ed.set_prompt("> ", False)
    ed.feed(UP)
    assert state(ed) == "public|"
    ed.feed(UP)
    assert state(ed) == "public|"


def test_a_secret_prompt_does_not_show_the_line_when_printing_above():
    ed = editor("password: ", True)
    ed.feed(b"hunter2")
    assert ed.print_above("news") == b"\r\x1b[Knews\r\n\rpassword: \x1b[K"


# -- printing above ----------------------------------------------------------

def test_print_above_keeps_the_line_and_the_cursor():
    ed = editor()
    ed.feed(b"hello" + LEFT * 2)
    ed.take_output()
    assert ed.print_above("bob: hi") == b"\r\x1b[Kbob: hi\r\n\r> hello\x1b[K\x1b[2D"
    assert state(ed) == "hel|lo"
    assert ed.take_output() == b""


def test_text_that_cannot_be_encoded_shows_as_question_marks_and_breaks_nothing():
    ed = editor()
    assert ed.print_above("bob: \ud800!") == b"\r\x1b[Kbob: ?!\r\n\r> \x1b[K"
    assert ed.print_above("bob: fine") == b"\r\x1b[Kbob: fine\r\n\r> \x1b[K"
    ed.feed(b"x")
    assert ed.take_output() == b"x"


def test_print_above_several_lines_after_pending_output():
    ed = editor()
    ed.feed(b"ab")
    assert ed.print_above("one\ntwo") == b"ab\r\x1b[Kone\r\ntwo\r\n\r> ab\x1b[K"


def test_print_above_an_empty_line():
    ed = editor()
    assert ed.print_above("") == b"\r\x1b[K\r\n\r> \x1b[K"


# -- history -----------------------------------------------------------------

def test_up_and_down_browse_history_and_bring_back_the_draft():
    ed = editor()
    ed.feed(b"first\rsecond\rdraft" + LEFT)
    ed.feed(UP)
    assert state(ed) == "second|"
    assert ed.take_output().endswith(b"\r> second\x1b[K")
    ed.feed(b"\x10")
    assert state(ed) == "first|"
    ed.feed(b"\x1bOA")                  # already at the oldest
    assert state(ed) == "first|"
    ed.feed(DOWN)
    assert state(ed) == "second|"
    ed.feed(b"\x0e")
    assert state(ed) == "draft|"
    ed.feed(b"\x1bOB")                  # not browsing: nothing happens
    assert state(ed) == "draft|"


def test_up_with_no_history_does_nothing():
    assert typed(b"abc" + LEFT + UP) == "ab|c"


def test_a_recalled_line_can_be_edited_and_submitted():
    ed = editor()
    ed.feed(b"message hans hi\r")
    assert ed.feed(UP + b"\x7f\x7fyo\r") == [("line", "message hans yo")]
    ed.feed(UP)
    assert state(ed) == "message hans yo|"
    ed.feed(UP)
    assert state(ed) == "message hans hi|"


def test_history_skips_empty_lines_and_consecutive_duplicates():
    ed = editor()
    ed.feed(b"a\ra\r\rb\ra\r")
    assert ed._history == ["a", "b", "a"]


def test_enter_while_browsing_stops_browsing():
    ed = editor()
    ed.feed(b"a\rb\r" + UP + UP + b"\r")
    assert ed.feed(DOWN) == []
    assert state(ed) == "|"
    ed.feed(UP)
    assert state(ed) == "a|"


def test_history_is_capped():
    ed = editor()
    ed.feed(b"".join(b"%d\r" % n for n in range(HISTORY_LIMIT + 10)))
    assert len(ed._history) == HISTORY_LIMIT
    assert ed._history[0] == "10"
    assert ed._history[-1] == str(HISTORY_LIMIT + 9)
