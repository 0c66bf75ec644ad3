"""Pastes, lines with line breaks, text past the limit and inputs taller than the screen, on a model terminal."""
import pytest

import reactor.client.line_editor as line_editor
from reactor.client.line_editor import LineEditor
from tests.support import OLDER, Term, place_of, rows_of

UP, DOWN, LEFT, HOME, END = b"\x1b[A", b"\x1b[B", b"\x1b[D", b"\x01", b"\x05"
ALT_ENTER = b"\x1b\r"
LETTER = "Dear Yoda,\nthe fleet is ready.\nRegards"


def state(ed):
    return ed.text[:ed.cursor] + "|" + ed.text[ed.cursor:]


def rows_of_lines(prompt, text, cols):
    """The rows of a line with line breaks: the first behind the prompt, the others indented."""
    rows = []
    for number, line in enumerate(text.split("\n")):
        rows += rows_of(("  " if number else prompt) + line, cols) or [""]
    return rows


def assert_lines(term, text, cursor, above=OLDER):
    """The screen shows the prompt and ``text`` (no line filling its row), the cursor at offset ``cursor``."""
    cols = term.screen.cols
    assert term.screen.lines() == above + rows_of_lines(term.prompt, text, cols)
    lines = text[:cursor].split("\n")
    row = len(above) + len(rows_of_lines(term.prompt, "\n".join(lines[:-1]), cols)) if len(lines) > 1 else len(above)
    at_row, col = place_of(("  " if len(lines) > 1 else term.prompt) + lines[-1], cols)
    assert term.screen.cursor == (row + at_row, col)


# -- a pasted block is one input --------------------------------------------------

@pytest.mark.parametrize("breaks", ["\r", "\n", "\r\n"], ids=["cr", "lf", "crlf"])
def test_a_pasted_block_is_one_input_with_its_line_breaks(breaks):
    term = Term(40)
    assert term.paste("message yoda " + LETTER.replace("\n", breaks)) == []
    assert_lines(term, "message yoda " + LETTER, len("message yoda " + LETTER))
    assert term.keys(b"\r") == [("line", "message yoda " + LETTER)]
    assert term.screen.lines() == OLDER + rows_of_lines("> ", "message yoda " + LETTER, 40) + [">"]


def test_line_breaks_at_the_end_of_a_paste_are_left_out():
    term = Term(40)
    term.paste("one\r\r")
    term.paste("two\r\rthree\r")
    assert term.editor.text == "onetwo\n\nthree"
    assert_lines(term, "onetwo\n\nthree", len("onetwo\n\nthree"))


def test_a_paste_split_across_reads_draws_once_at_its_end(monkeypatch):
    layouts = []

    class Counting(line_editor.Layout):
        def __init__(self, *args):
            layouts.append(1)
            super().__init__(*args)

    monkeypatch.setattr(line_editor, "Layout", Counting)
    term = Term(40)
    layouts.clear()
    data = b"\x1b[200~" + ("x" * 99 + "\r").encode() * 200 + b"\x1b[201~"
    for start in range(0, len(data), 4095):              # as a pty hands a paste over
        assert term.editor.feed(data[start:start + 4095]) == []
        term.show()
    assert len(layouts) == 1
    assert term.editor.text == "\n".join(["x" * 99] * 200)


def test_control_keys_in_a_paste_are_text_not_keys():
    term = Term(40)
    assert term.paste("a\x03b\x04c\x1b[Ad\te") == []
    assert term.editor.text == "abc[Ad    e"


# -- typing and editing lines with line breaks -------------------------------------

def test_alt_enter_inserts_a_line_break_and_the_next_line_is_indented():
    term = Term(40)
    assert term.keys(b"one" + ALT_ENTER + b"two") == []
    assert_lines(term, "one\ntwo", 7)
    term.keys(LEFT * 4)                                   # onto the line break: the end of "one"
    assert_lines(term, "one\ntwo", 3)
    term.keys(b"\x7f")
    assert_lines(term, "on\ntwo", 2)
    term.keys(b"\x1b[3~")                                 # Delete the break: the lines join
    assert_lines(term, "ontwo", 2)


def test_up_and_down_move_between_the_lines_before_the_history():
    term = Term(40)
    term.keys(b"older\r")
    term.keys(b"abcdef" + ALT_ENTER + b"gh" + ALT_ENTER + b"ijklm" + LEFT)
    assert state(term.editor) == "abcdef\ngh\nijkl|m"
    term.keys(UP)
    assert state(term.editor) == "abcdef\ngh|\nijklm"     # as far along as the line goes
    assert_lines(term, "abcdef\ngh\nijklm", 9, above=OLDER + ["> older"])
    term.keys(UP)
    assert state(term.editor) == "ab|cdef\ngh\nijklm"
    term.keys(UP)
    assert state(term.editor) == "older|"                # the first line: on to the history
    term.keys(DOWN)
    assert state(term.editor) == "abcdef\ngh\nijklm|"
    term.keys(HOME + UP + END)
    assert state(term.editor) == "abcdef\ngh|\nijklm"
    term.keys(DOWN + DOWN)                                # (the last line: no history to go down to)
    assert state(term.editor) == "abcdef\ngh\nij|klm"


def test_a_recalled_line_keeps_its_line_breaks():
    term = Term(40)
    term.paste("one\rtwo")
    assert term.keys(b"\r") == [("line", "one\ntwo")]
    term.keys(UP)
    assert_lines(term, "one\ntwo", 7, above=OLDER + ["> one", "  two"])
    assert term.keys(b"\r") == [("line", "one\ntwo")]


def test_a_line_that_fills_its_row_before_a_break_leaves_the_break_a_row_of_its_own():
    term = Term(20)
    term.type("a" * 18)
    term.keys(ALT_ENTER + b"b")
    assert term.screen.lines() == OLDER + ["> " + "a" * 18, "", "  b"]
    assert term.screen.cursor == (4, 3)
    term.keys(LEFT * 2)                                   # on the break
    assert term.screen.cursor == (3, 0)
    term.keys(HOME)
    assert term.screen.cursor == (2, 2)


def test_a_message_arriving_keeps_a_multi_line_input_and_its_cursor():
    term = Term(30)
    term.paste(LETTER)
    term.keys(UP + LEFT * 3)                              # "the |fleet"
    term.print("hans: are you there?")
    assert_lines(term, LETTER, len("Dear Yoda,\nthe "), above=OLDER + ["hans: are you there?"])


@pytest.mark.parametrize("reflow", [True, False], ids=["reflowing", "cutting"])
def test_resizing_a_multi_line_input_leaves_nothing_stale(reflow):
    term = Term(40)
    text = "message yoda " + "x" * 40 + "\n" + "y" * 50 + "\nz"
    term.paste(text)
    term.resize(25, reflow)
    rows = rows_of_lines("> ", text, 25)
    assert term.screen.lines()[-len(rows):] == rows
    term.resize(70, reflow)
    rows = rows_of_lines("> ", text, 70)
    assert term.screen.lines()[-len(rows):] == rows
    assert term.keys(b"\r") == [("line", text)]


# -- the limit -----------------------------------------------------------------------

def test_text_past_the_limit_shows_in_reverse_video():
    term = Term(20, limit=lambda text: 12 if len(text) > 12 else None)
    term.type("message " + "abcd")
    assert term.screen.marked(2) == ""
    term.type("efghijklmnopqrst")                          # 28 characters: 16 past the limit
    assert term.screen.lines()[2:] == ["> message abcdefghij", "klmnopqrst"]
    assert (term.screen.marked(2), term.screen.marked(3)) == ("efghij", "klmnopqrst")
    term.keys(HOME + b"\x1bd")                              # Alt-d cuts "message"
    assert term.screen.lines()[2:] == [">  abcdefghijklmnopq", "rst"]
    assert (term.screen.marked(2), term.screen.marked(3)) == ("lmnopq", "rst")
    term.keys(END + b"\x7f" * 9)
    assert term.screen.marked(2) == ""
    assert term.keys(b"\r") == [("line", " abcdefghijk")]


def test_typing_past_the_limit_at_the_end_marks_what_it_echoes():
    term = Term(40, limit=lambda text: 5 if len(text) > 5 else None)
    term.type("abcde")
    term.editor.take_output()
    term.type("f")
    assert term.screen.marked(2) == "f"
    term.type("g")
    assert term.screen.marked(2) == "fg"


# -- an input taller than the screen --------------------------------------------------

def test_an_input_taller_than_the_screen_shows_a_window_around_the_cursor():
    term = Term(20, rows=12)                              # the input may take 10 rows
    text = "".join(chr(ord("a") + n % 26) for n in range(500))
    term.paste(text)
    rows = rows_of("> " + text, 20)                        # 26 rows
    assert term.screen.lines() == OLDER + ["(17 rows above)"] + rows[-9:]
    assert term.screen.cursor == (11, len(rows[-1]))
    term.keys(HOME)
    assert term.screen.lines() == OLDER + rows[:9] + ["(17 rows below)"]
    assert term.screen.cursor == (2, 2)
    term.keys(b"X")
    assert term.screen.lines()[2] == "> X" + text[:17]
    assert term.screen.cursor == (2, 3)
    term.keys(UP + DOWN * 12)                              # (nothing above; Down moves no further)
    events = term.keys(b"\r")
    assert events == [("line", "X" + text)]
    everything = term.screen.scrolled_off + term.screen.lines()
    left = rows_of("> X" + text, 20) + [">"]
    assert everything[-len(left) - 1:] == ["older output 2"] + left


def test_moving_in_a_tall_input_moves_the_window_only_as_far_as_it_must():
    term = Term(20, rows=12)
    text = "".join(chr(ord("a") + n % 26) for n in range(500))
    term.paste(text)
    term.keys(HOME)
    term.keys(b"\x1b[C" * 180)                             # row 9 of the input: the window moves by 2
    rows = rows_of("> " + text, 20)
    assert term.screen.lines() == OLDER + ["(2 rows above)"] + rows[2:10] + ["(16 rows below)"]
    assert term.screen.cursor == (10, 2)


def test_a_message_arriving_above_a_tall_input_keeps_its_window():
    term = Term(20, rows=12)
    text = "".join(chr(ord("a") + n % 26) for n in range(500))
    term.paste(text)
    term.print("hans: hi")
    rows = rows_of("> " + text, 20)
    assert term.screen.lines()[-10:] == ["(17 rows above)"] + rows[-9:]
    assert "hans: hi" in term.screen.scrolled_off + term.screen.lines()


def test_each_key_in_a_long_line_writes_no_more_than_the_window():
    ed = LineEditor(40, rows=24)
    ed.set_prompt("> ", False)
    ed.feed(b"message yoda \x1b[200~" + b"x" * 20_000 + b"\x1b[201~")
    assert len(ed.take_output()) < 24 * 40 * 2
    for key in (LEFT, HOME, b"y", b"\x1b[C" * 300, END, b"z", b"\x7f", UP):
        ed.feed(key)
        assert len(ed.take_output()) < 24 * 40 * 2, key
    assert ed.feed(b"\r") == [("line", "ymessage yoda " + "x" * 20_000)]
    assert len(ed.take_output()) > 20_000                  # the line left on screen whole
