"""The line editor as pure logic: keystrokes in, events and screen bytes out."""
import pytest

from reactor.client.line_editor import HISTORY_LIMIT, LineEditor

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"


def editor(prompt="> ", secret=False):
    ed = LineEditor()
    ed.set_prompt(prompt, secret)
    ed.take_output()
    return ed


def state(ed):
    """The line and where the cursor is in it, as 'ab|c'."""
    return ed.text[:ed.cursor] + "|" + ed.text[ed.cursor:]


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
    assert ed.take_output() == b"hello\r\n\r> \x1b[J"
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
    assert ed.take_output() == b"\r> abc\x1b[J\x1b[1D"
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


def test_a_shifted_arrow_still_moves():
    assert typed(b"abc\x1b[1;2D") == "ab|c"


# -- deleting ----------------------------------------------------------------

@pytest.mark.parametrize("keys", [b"\x7f", b"\x08"])
def test_backspace(keys):
    ed = editor()
    assert typed(b"abc" + LEFT + keys, ed) == "a|c"
    assert ed.take_output().endswith(b"\r> ac\x1b[J\x1b[1D")
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

def test_ctrl_l_clears_the_screen_and_redraws():
    ed = editor()
    ed.feed(b"ab" + LEFT)
    ed.take_output()
    ed.feed(b"\x0c")
    assert ed.take_output() == b"\x1b[H\x1b[2J\r> ab\x1b[J\x1b[1D"


def test_tab_without_a_completer_and_other_control_bytes_are_ignored():
    ed = editor()
    assert ed.feed(b"a\t\x00\x07\x1c\x1fb\xc2\x85") == []  # \xc2\x85 is the C1 control NEL
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
    ed.feed(b"\x1b")
    ed.escape_timeout()                                 # Escape, then (a moment later) Enter:
    assert ed.feed(b"\r") == [("line", "c")]           # ESC CR at once is Alt-Enter, a line break
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
    assert ed.feed(b"\x03") == [("interrupt", False)]
    assert ed.take_output() == b"^C\r\n\r> \x1b[J"
    assert state(ed) == "|"
    assert ed.feed(b"x\r") == [("line", "x")]


def test_events_come_in_order():
    ed = editor()
    assert ed.feed(b"a\rb\x03\x04") == [("line", "a"), ("interrupt", False), ("eof",)]


# -- prompt and secret -------------------------------------------------------

def test_set_prompt_redraws_the_current_line():
    ed = LineEditor()
    ed.feed(b"abc" + LEFT)
    ed.take_output()
    ed.set_prompt("name: ", False)
    assert ed.take_output() == b"\rname: abc\x1b[J\x1b[1D"


def test_a_secret_prompt_echoes_nothing_and_stays_out_of_history():
    ed = editor()
    ed.feed(b"public\r")
    ed.set_prompt("password: ", True)
    assert ed.take_output().endswith(b"\rpassword: \x1b[J")
    assert ed.feed(b"hunter2") == []
    assert ed.take_output() == b""
    ed.feed(b"\x7f" + LEFT)
    assert b"hunter" not in ed.take_output()
    assert ed.feed(UP + b"\x10") == []   # no history while secret
    assert state(ed) == "hunte|r"
    assert ed.feed(b"\r") == [("line", "hunter")]
    assert ed.take_output() == b"\r\n\rpassword: \x1b[J"
    ed.set_prompt("> ", False)
    ed.feed(UP)
    assert state(ed) == "public|"
    ed.feed(UP)
    assert state(ed) == "public|"


def test_lines_at_a_prompt_that_does_not_remember_stay_out_of_history():
    ed = editor()
    ed.set_prompt("Username: ", False, remember=False)
    ed.take_output()
    assert ed.feed(b"yoda\r") == [("line", "yoda")]
    assert ed.take_output().startswith(b"yoda\r\n")   # shown as typed
    ed.set_prompt("> ", False)
    ed.feed(b"whoelse\r")
    ed.feed(UP)
    assert state(ed) == "whoelse|"
    ed.feed(UP)
    assert state(ed) == "whoelse|"                      # the name is not there
    ed.take_output()
    ed.feed(b"\x15\x12yo")
    assert b"(failed reverse-i-search)'yo': " in ed.take_output()   # nor can a search find it


def test_a_secret_prompt_does_not_show_the_line_when_printing_above():
    ed = editor("password: ", True)
    ed.feed(b"hunter2")
    assert ed.print_above("news") == b"\r\x1b[Jnews\r\n\rpassword: \x1b[J"


# -- printing above ----------------------------------------------------------

def test_print_above_keeps_the_line_and_the_cursor():
    ed = editor()
    ed.feed(b"hello" + LEFT * 2)
    ed.take_output()
    assert ed.print_above("bob: hi") == b"\r\x1b[Jbob: hi\r\n\r> hello\x1b[J\x1b[2D"
    assert state(ed) == "hel|lo"
    assert ed.take_output() == b""


def test_text_that_cannot_be_encoded_shows_as_its_code_point_and_breaks_nothing():
    ed = editor()
    assert ed.print_above("bob: \ud800!") == b"\r\x1b[Jbob: <U+D800>!\r\n\r> \x1b[J"
    assert ed.print_above("bob: fine") == b"\r\x1b[Jbob: fine\r\n\r> \x1b[J"
    ed.feed(b"x")
    assert ed.take_output() == b"x"


def test_print_above_several_lines_after_pending_output():
    ed = editor()
    ed.feed(b"ab")
    assert ed.print_above("one\ntwo") == b"ab\r\x1b[Jone\r\ntwo\r\n\r> ab\x1b[J"


def test_print_above_an_empty_line():
    ed = editor()
    assert ed.print_above("") == b"\r\x1b[J\r\n\r> \x1b[J"


# -- history -----------------------------------------------------------------

def test_up_and_down_browse_history_and_bring_back_the_draft():
    ed = editor()
    ed.feed(b"first\rsecond\rdraft" + LEFT)
    ed.feed(UP)
    assert state(ed) == "second|"
    assert ed.take_output().endswith(b"\r> second\x1b[J")
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
    assert ed.history == ("a", "b", "a")


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
    assert len(ed.history) == HISTORY_LIMIT
    assert ed.history[0] == "10"
    assert ed.history[-1] == str(HISTORY_LIMIT + 9)


# -- words, transposing, killing and yanking ---------------------------------

@pytest.mark.parametrize("keys", [b"\x1bb", b"\x1b[1;5D", b"\x1b[1;3D", b"\x1bOd"])
def test_word_left(keys):
    assert typed(b"say hello, world" + keys) == "say hello, |world"
    assert typed(b"say hello, world" + keys * 2) == "say |hello, world"
    assert typed(b"say hello, world" + keys * 4) == "|say hello, world"


@pytest.mark.parametrize("keys", [b"\x1bf", b"\x1b[1;5C", b"\x1b[1;3C", b"\x1bOc"])
def test_word_right(keys):
    assert typed(b"say hello, world" + HOME + keys) == "say| hello, world"
    assert typed(b"say hello, world" + HOME + keys * 2) == "say hello|, world"
    assert typed(b"say hello, world" + HOME + keys * 4) == "say hello, world|"


def test_alt_d_and_alt_backspace_kill_words():
    assert typed(b"say hello, world" + HOME + b"\x1bf\x1bd") == "say|, world"
    assert typed(b"say hello, world" + b"\x1b\x7f") == "say hello, |"
    assert typed(b"say hello, world" + b"\x1b\x08\x1b\x08") == "say |"


def test_ctrl_t_transposes():
    assert typed(b"abc" + LEFT + b"\x14") == "acb|"
    assert typed(b"abc\x14") == "acb|"          # at the end: the last two
    assert typed(b"abc" + HOME + b"\x14") == "|abc"
    assert typed(b"a\x14") == "a|"


def test_ctrl_y_yanks_the_last_kill():
    assert typed(b"hello world" + LEFT * 5 + b"\x0b" + HOME + b"\x19") == "world|hello "
    assert typed(b"one two\x17" + HOME + b"\x19") == "two|one "
    assert typed(b"say hello" + HOME + b"\x1bd\x05 \x19") == " hello say|"


def test_kills_in_a_row_add_up_and_another_key_starts_afresh():
    assert typed(b"a b c\x17\x17\x01\x19") == "b c|a "
    assert typed(b"a b c\x17x\x7f\x17\x01\x19") == "b |a "


def test_kills_at_a_secret_prompt_do_not_reach_the_kill_buffer():
    ed = editor()
    ed.feed(b"public\x15")
    ed.set_prompt("password: ", True)
    ed.feed(b"hunter2\x15\r")
    ed.set_prompt("> ", False)
    assert typed(b"\x19", ed) == "public|"


# -- completion --------------------------------------------------------------

def completing(*words):
    seen = []

    def complete(before_cursor):
        seen.append(before_cursor)
        word = before_cursor.split(" ")[-1]
        return [w for w in words if w.startswith(word)]
    ed = LineEditor(complete=complete)
    ed.set_prompt("> ", False)
    ed.take_output()
    return ed, seen


def test_tab_completes_the_only_match_and_adds_a_space():
    ed, seen = completing("message", "broadcast", "hans", "yoda")
    assert typed(b"mes\t", ed) == "message |"
    assert typed(b"ha\t", ed) == "message hans |"
    assert seen == ["mes", "message ha"]


def test_tab_completes_in_the_middle_of_a_line():
    ed, seen = completing("hans")
    assert typed(b"message h hi" + LEFT * 3 + b"\t", ed) == "message hans | hi"
    assert seen == ["message h"]


def test_tab_fills_in_the_common_prefix_then_lists_on_the_second_tab():
    ed, _ = completing("hans", "hanna", "yoda")
    assert typed(b"message h\t", ed) == "message han|"
    ed.take_output()
    assert typed(b"\t", ed) == "message han|"
    assert ed.take_output() == b"\r\x1b[Jhanna  hans\r\n\r> message han\x1b[J"


def test_a_first_tab_that_cannot_add_anything_lists_nothing():
    ed, _ = completing("hans", "hanna", "yoda")
    assert typed(b"message han\t", ed) == "message han|"
    assert b"hans" not in ed.take_output()
    assert typed(b"\t", ed) == "message han|"
    assert b"hanna  hans\r\n" in ed.take_output()


def test_tab_with_no_match_does_nothing():
    ed, _ = completing("hans")
    assert typed(b"x\t\t", ed) == "x|"
    assert ed.take_output() == b"x"


def test_no_completion_at_a_secret_prompt():
    ed, seen = completing("hunter2")
    ed.set_prompt("password: ", True)
    assert typed(b"hu\t", ed) == "hu|"
    assert seen == []


# -- reverse search ----------------------------------------------------------

def searching():
    ed = editor()
    ed.feed(b"message hans hi\rbroadcast hello\rmessage yoda hey\rwhoelse\r")
    ed.take_output()
    return ed


def test_ctrl_r_finds_the_newest_match_as_one_types():
    ed = searching()
    ed.feed(b"\x12mess")
    assert state(ed) == "|message yoda hey"
    assert ed.take_output().endswith(b"\r(reverse-i-search)'mess': message yoda hey\x1b[J\x1b[16D")
    ed.feed(b"age h")
    assert state(ed) == "|message hans hi"


def test_ctrl_r_again_finds_older_matches_and_enter_submits():
    ed = searching()
    assert ed.feed(b"\x12he") == []
    assert state(ed) == "message yoda |hey"
    ed.feed(b"\x12")
    assert state(ed) == "broadcast |hello"
    ed.take_output()
    ed.feed(b"\x12")                     # no older match: it stays, and says so
    assert state(ed) == "broadcast |hello"
    assert b"(failed reverse-i-search)'he': " in ed.take_output()
    assert ed.feed(b"\x12\r") == [("line", "broadcast hello")]


def test_ctrl_g_gives_the_search_up():
    ed = searching()
    ed.feed(b"draft" + LEFT + b"\x12yoda\x07")
    assert state(ed) == "draf|t"
    assert ed.take_output().endswith(b"\r> draft\x1b[J\x1b[1D")


def test_escape_gives_the_search_up_once_nothing_follows():
    ed = searching()
    ed.feed(b"\x12yoda\x1b")
    assert ed.waiting_for_escape
    assert state(ed) == "message |yoda hey"
    ed.escape_timeout()
    assert not ed.waiting_for_escape
    assert state(ed) == "|"
    assert ed.take_output().endswith(b"\r> \x1b[J")


def test_another_key_keeps_the_match_for_editing():
    ed = searching()
    ed.feed(b"\x12hans" + b"\x05")
    assert state(ed) == "message hans hi|"
    assert ed.take_output().endswith(b"\r> message hans hi\x1b[J")
    ed.feed(b"\x12yoda" + RIGHT)
    assert state(ed) == "message y|oda hey"
    assert ed.feed(b"!\r") == [("line", "message y!oda hey")]


def test_history_browsing_goes_on_from_the_match():
    ed = searching()
    ed.feed(b"draft\x12broad\x05")
    ed.feed(UP)
    assert state(ed) == "message hans hi|"
    ed.feed(DOWN + DOWN)
    assert state(ed) == "message yoda hey|"


def test_backspace_shortens_the_query_and_an_empty_query_shows_the_line():
    ed = searching()
    ed.feed(b"x\x12hanz")
    assert state(ed) == "message |hans hi"
    assert b"(failed reverse-i-search)'hanz'" in ed.take_output()
    ed.feed(b"\x7f\x7f")
    assert state(ed) == "message |hans hi"
    ed.feed(b"\x7f")                     # 'h': searched again from the newest
    assert state(ed) == "w|hoelse"
    ed.feed(b"\x7f")
    assert state(ed) == "x|"


def test_ctrl_c_during_a_search_clears_the_line():
    ed = searching()
    assert ed.feed(b"draft\x12hans\x03") == [("interrupt", False)]
    assert state(ed) == "|"
    assert ed.feed(b"\x12\x03") == [("interrupt", True)]


def test_no_search_at_a_secret_prompt():
    ed = searching()
    ed.set_prompt("password: ", True)
    assert typed(b"\x12hans", ed) == "hans|"


# -- interrupt, suspend ------------------------------------------------------

def test_ctrl_c_says_whether_the_line_was_empty():
    ed = editor()
    assert ed.feed(b"\x03") == [("interrupt", True)]
    assert ed.feed(b"x\x03") == [("interrupt", False)]


def test_ctrl_z_suspends_and_redraw_brings_the_line_back():
    ed = editor()
    ed.feed(b"half" + LEFT)
    ed.take_output()
    assert ed.feed(b"\x1a") == [("suspend",)]
    assert ed.take_output() == b"\x1b[1C^Z\r\n"
    ed.redraw()
    assert ed.take_output() == b"\r> half\x1b[J\x1b[1D"
    assert state(ed) == "hal|f"
