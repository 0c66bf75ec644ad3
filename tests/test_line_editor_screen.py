"""What the line editor leaves on a screen: its bytes run through a model terminal."""
import pytest

from reactor.client.graphemes import clusters
from tests.support import OLDER, Term, place_of, rows_of

LEFT, RIGHT, HOME, END = b"\x1b[D", b"\x1b[C", b"\x01", b"\x05"
CJK = "中文字符"
WIDTHS = [20, 40, 80]


def assert_input(term, line, cursor, above=OLDER):
    """The screen: the lines ``above``, then the prompt + line wrapped as a terminal wraps them,
    nothing below, and the cursor where the character at ``cursor`` in the line is (or after the end)."""
    cols = term.screen.cols
    assert term.screen.lines() == above + rows_of(term.prompt + line, cols)
    units = clusters(line)
    before = term.prompt + "".join(units[:cursor])
    row, col = place_of(before, cols, units[cursor][0] if cursor < len(units) else " ")
    assert term.screen.cursor == (len(above) + row, col)


def long_line(cols):
    return "".join(chr(ord("a") + n % 26) for n in range(cols * 5 // 2))


# -- rows ----------------------------------------------------------------------

@pytest.mark.parametrize("cols", WIDTHS)
def test_a_long_line_wraps_and_every_edit_redraws_all_its_rows(cols):
    term = Term(cols)
    line = long_line(cols)
    term.type(line)
    assert_input(term, line, len(line))
    term.keys(HOME)
    assert_input(term, line, 0)
    term.keys(b"X")
    line = "X" + line
    assert_input(term, line, 1)
    term.keys(RIGHT * cols)
    term.keys(b"\x7f" * 3)
    line = line[:cols - 2] + line[cols + 1:]
    assert_input(term, line, cols - 2)
    term.keys(b"\x0b")
    line = line[:cols - 2]
    assert_input(term, line, cols - 2)


@pytest.mark.parametrize("cols", WIDTHS)
def test_a_line_that_ends_at_the_right_margin_keeps_its_last_character(cols):
    term = Term(cols)
    line = "x" * (cols - 2)
    term.type(line)
    assert_input(term, line, len(line))
    assert term.screen.cursor == (3, 0)
    term.keys(LEFT)
    assert_input(term, line, len(line) - 1)
    term.keys(END + b"y")
    assert_input(term, line + "y", len(line) + 1)
    term.keys(b"\x7f")
    assert_input(term, line, len(line))


@pytest.mark.parametrize("cols", WIDTHS)
def test_typing_char_by_char_across_the_margin(cols):
    term = Term(cols)
    line = ""
    for n in range(2 * cols + 3):
        char = "abc"[n % 3]
        term.type(char)
        line += char
        assert_input(term, line, len(line))


@pytest.mark.parametrize("cols", WIDTHS)
def test_moving_across_rows(cols):
    term = Term(cols)
    line = long_line(cols)
    term.type(line)
    for cursor in range(len(line) - 1, -1, -7):
        term.keys(LEFT * 7 if cursor < len(line) - 1 else LEFT)
        assert_input(term, line, cursor)
    term.keys(b"\x1b[1;5C")
    assert_input(term, line, len(line))


# -- wide and combining characters ---------------------------------------------

@pytest.mark.parametrize("cols", WIDTHS)
def test_cjk_characters_take_two_columns(cols):
    term = Term(cols)
    line = CJK * (cols // 4)
    term.type(line)
    assert_input(term, line, len(line))
    term.keys(HOME)                                  # the issue: column 8, not 2
    assert term.screen.cursor == (2, 2)
    term.keys(RIGHT * 3 + b"x")
    line = line[:3] + "x" + line[3:]
    assert_input(term, line, 4)
    term.keys(END + b"\x17")
    assert_input(term, "", 0)


@pytest.mark.parametrize("prompt", ["> ", "> a"])
def test_a_wide_character_that_does_not_fit_goes_to_the_next_row(prompt):
    term = Term(20, prompt=prompt)
    line = CJK * 3                                   # 24 columns after the prompt
    term.type(line)
    assert_input(term, line, len(line))
    for cursor in range(len(line), -1, -1):
        assert_input(term, line, cursor)
        term.keys(LEFT)
    if prompt == "> a":                              # the 9th character starts row 2
        term.keys(RIGHT * 8)
        assert term.screen.cursor == (3, 0)
        assert term.screen.line(2).endswith("符")
        assert term.screen.line(3).startswith("中")


def test_emoji_and_mixed_widths():
    term = Term(20)
    line = "hi 😀 ok 中文 é 😀😀😀😀 end"
    term.type(line)
    assert_input(term, line, len(line))
    term.keys(HOME + b"\x1bf\x1bf")
    assert_input(term, line, line.index(" ok") + 3)


def test_combining_marks_stay_with_their_character():
    term = Term(20)
    term.type("cafe\u0301 x")
    line = "cafe\u0301 x"
    assert_input(term, line, len(line))
    assert term.screen.line(2) == "> cafe\u0301 x"
    term.keys(LEFT * 3)                               # over "x", " " and "é", not into it
    assert_input(term, line, 3)
    term.keys(b"\x7f")
    assert_input(term, "cae\u0301 x", 2)
    assert term.keys(b"\r") == [("line", "cae\u0301 x")]


def test_a_combining_mark_at_the_start_gets_a_base():
    term = Term(20)
    term.type("\u0301a")
    assert term.screen.line(2) == ">  \u0301a"
    assert term.screen.cursor == (2, 4)


# -- output arriving mid-edit ------------------------------------------------------

@pytest.mark.parametrize("cols", WIDTHS)
def test_printing_above_a_multi_row_input_with_the_cursor_inside(cols):
    term = Term(cols)
    line = long_line(cols)
    term.type(line)
    term.keys(HOME + RIGHT * (cols + 3))
    message = "bob: " + "news " * cols + CJK * 4
    term.print(message)
    assert_input(term, line, cols + 3, above=OLDER + rows_of(message, cols))


def test_printing_above_at_the_bottom_of_the_screen_scrolls_cleanly():
    term = Term(20, rows=6)
    line = long_line(20)
    term.type(line)
    term.keys(HOME + RIGHT * 5)
    for n in range(5):
        term.print(f"message {n}")
    term.keys(b"X")
    line = line[:5] + "X" + line[5:]
    assert term.screen.lines() == ["message 2", "message 3", "message 4"] + rows_of("> " + line, 20)
    assert term.screen.cursor == (3, 8)


def test_printed_text_and_completions_never_reach_the_screen_raw():
    term = Term(40, complete=lambda before: ["\x1b[2Jevil", "\x1b[2Jeve"])
    term.print("a\x1b]0;title\x07b\rc\td\ud800")
    assert term.screen.line(2) == "a^[]0;title^Gb^Mc^Id<U+D800>"
    term.keys(b"\t\t")
    assert term.screen.line(3) == "^[[2Jeve  ^[[2Jevil"
    term.keys(b"\x1b[3~")


def test_a_bidi_override_is_shown_not_obeyed():
    term = Term(40)
    term.print("x\u202ey")
    assert term.screen.line(2) == "x<U+202E>y"


# -- resizing ----------------------------------------------------------------------

@pytest.mark.parametrize("reflow", [True, False], ids=["reflowing", "cutting"])
@pytest.mark.parametrize("old, new", [(80, 40), (40, 80), (40, 20), (20, 80)])
def test_after_a_resize_the_input_is_drawn_once_with_nothing_stale(old, new, reflow):
    term = Term(old)
    line = "resize me " * 6                          # 60 characters, as in the issue
    term.type(line)
    term.keys(LEFT * 25)
    term.resize(new, reflow)
    cursor = len(line) - 25
    old_row = place_of("> " + line[:cursor], old, line[cursor])[0]
    new_row = place_of("> " + line[:cursor], new, line[cursor])[0]
    if new < old:
        # Narrowing: the editor goes up as far as the cursor could be from the input's first row
        # on either kind of terminal; when that is too far, the rows just above are erased.
        lost = max(old_row, new_row) - (new_row if reflow else old_row)
        above = OLDER[:2 - lost]
    else:
        # Widening: the editor assumes the terminal rewrapped; one that did not keeps the
        # input's old first rows above the redrawn input.
        stale = 0 if reflow else old_row - new_row
        above = OLDER + rows_of("> " + line, old)[:stale]
    assert_input(term, line, cursor, above=above)
    term.keys(b"!")
    assert_input(term, line[:cursor] + "!" + line[cursor:], cursor + 1, above=above)


@pytest.mark.parametrize("reflow", [True, False], ids=["reflowing", "cutting"])
@pytest.mark.parametrize("old, new", [(80, 40), (40, 80), (40, 20), (20, 80), (20, 30)])
def test_a_terminal_that_answers_tells_where_the_rows_went_and_nothing_is_lost_or_stale(old, new, reflow):
    term = Term(old, measure=True)
    line = "resize me " * 6
    term.type(line)
    term.keys(LEFT * 25)
    term.resize(new, reflow)
    assert not term.editor.waiting_for_measurement
    assert_input(term, line, len(line) - 25)
    term.keys(b"!")
    assert_input(term, line[:-25] + "!" + line[-25:], len(line) - 24)


def test_resizes_in_a_row_count_the_answer_after_the_last():
    term = Term(80, measure=True)
    line = "resize me " * 12
    term.type(line)
    for cols in (40, 25, 60):                        # (dragging a window's edge)
        term.screen.resize(cols, reflow=True)
        term.editor.resize(cols)
    assert term.editor.waiting_for_measurement
    term.show()
    assert not term.editor.waiting_for_measurement
    assert_input(term, line, len(line))


@pytest.mark.parametrize("width, line, widths", [
    (80, "x" * 60, (40, 30)),         # narrowing
    (20, "y" * 70, (40, 200, 20)),    # widening, then narrowing back
], ids=["narrowing", "widening"])
def test_resizing_a_reflowing_terminal_like_tmux_loses_nothing(width, line, widths):
    term = Term(width)
    term.type(line)
    for cols in widths:
        term.resize(cols, reflow=True)
        assert_input(term, line, len(line))


@pytest.mark.parametrize("length", [38, 37], ids=["ending-at-the-margin", "not"])
def test_widening_tmux_after_input_that_ends_at_the_margin_loses_nothing(length):
    term = Term(20)
    line = "z" * length                              # with the prompt: two full rows, or not quite
    term.type(line)
    term.resize(50, reflow=True)
    assert_input(term, line, length)


def test_resize_with_wide_characters():
    term = Term(40)
    line = CJK * 6
    term.type(line)
    term.keys(HOME)
    term.resize(20, reflow=True)
    assert_input(term, line, 0)
    term.keys(END)
    assert_input(term, line, len(line))


def test_the_gap_a_wide_character_leaves_at_the_margin_shows_nothing_stale():
    """Seen in tmux at 30 columns after a resize: the last cell of a row, skipped because the wide
    character after it did not fit, kept what the terminal had put there (old text, rewrapped)."""
    term = Term(20, prompt="> a")
    term.type(CJK * 3)                               # "> a" and 8 wide characters fill 19 cells of row 2
    term.screen.grid[2][19] = "z"                    # something else the terminal left in the 20th cell
    assert term.screen.line(2).endswith("z")
    term.editor.redraw()
    term.show()
    assert term.screen.line(2) == "> a" + CJK * 2     # the gap is blank again
    assert_input(term, CJK * 3, len(CJK * 3))


# -- leaving and coming back ---------------------------------------------------------

@pytest.mark.parametrize("cols", WIDTHS)
def test_enter_in_the_middle_of_a_long_line_leaves_it_whole(cols):
    term = Term(cols)
    line = long_line(cols)
    term.type(line)
    term.keys(HOME)
    assert term.keys(b"\r") == [("line", line)]
    term.print("reply")
    assert term.screen.lines() == ["older output 1", "older output 2"] + rows_of("> " + line, cols) + ["reply", ">"]


def test_enter_on_a_line_that_ends_at_the_margin_adds_no_blank_row():
    term = Term(20)
    term.type("x" * 18 + "\r")
    assert term.screen.lines() == ["older output 1", "older output 2", "> " + "x" * 18, ">"]


def test_ctrl_c_marks_the_end_of_a_long_line():
    term = Term(20)
    line = long_line(20)
    term.type(line)
    term.keys(HOME)
    assert term.keys(b"\x03") == [("interrupt", False)]
    assert term.screen.lines()[2:] == rows_of("> " + line + "^C", 20) + [">"]


def test_ctrl_l_leaves_only_the_input():
    term = Term(20)
    line = long_line(20)
    term.type(line)
    term.keys(HOME + RIGHT)
    term.keys(b"\x0c")
    assert_input(term, line, 1, above=[])


def test_suspend_then_resume_draws_the_input_below_what_the_shell_wrote():
    term = Term(20)
    line = long_line(20)
    term.type(line)
    term.keys(HOME)
    assert term.keys(b"\x1a") == [("suspend",)]
    term.screen.feed(b"[1]+ Stopped\r\n$ fg\r\n")
    term.editor.redraw()
    term.show()
    shown = rows_of("> " + line + "^Z", 20)
    assert term.screen.lines()[2:2 + len(shown) + 2] == shown + ["[1]+ Stopped", "$ fg"]
    assert term.screen.lines()[2 + len(shown) + 2:] == rows_of("> " + line, 20)
    assert term.screen.cursor == (2 + len(shown) + 2, 2)


def test_erase_removes_every_row_of_the_input():
    term = Term(20)
    term.type(long_line(20))
    term.keys(HOME + RIGHT * 30)
    term.screen.feed(term.editor.erase())
    assert term.screen.lines() == ["older output 1", "older output 2"]
    assert term.screen.cursor == (2, 0)


def test_a_secret_prompt_longer_than_the_row():
    term = Term(20, prompt="")
    term.editor.set_prompt("a very long password prompt: ", True)
    term.prompt = "a very long password prompt: "
    term.show()
    term.type("hunter2")
    assert_input(term, "", 0)
