"""Clusters terminals draw each their own way: measured on the (model) terminal, or shown as their parts."""
import pytest

from reactor.client.graphemes import certain, clusters, parts
from tests.support import OLDER, Term

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"          # 👨‍👩‍👧: 2 columns in tmux 3.3a, 6 in others
FLAG = "\U0001F1EB\U0001F1F7"                                    # 🇫🇷
THUMB = "\U0001F44D\U0001F3FD"                                   # 👍🏽
LEFT, RIGHT, HOME = b"\x1b[D", b"\x1b[C", b"\x01"
TERMINALS = pytest.mark.parametrize("sequences", [True, False], ids=["joins-sequences", "draws-parts"])


def assert_in_step(term, text, cursor):
    """The screen shows the prompt and ``text`` (its rows joined; a cluster that does not fit at the
    end of a row goes whole to the next), and the cursor is on the cluster ``cursor`` (counted in
    clusters), or at the end where the next character lands."""
    screen = term.screen
    rows = screen.lines()[len(OLDER):]
    assert "".join(rows).replace(" ", "") == ("> " + text).replace(" ", "")
    y, x = screen.cursor
    units = clusters(text)
    if cursor < len(units):
        assert screen.grid[y][x].startswith(units[cursor][0]), (screen.grid[y][x], units[cursor])
    else:
        term.keys(b"@")
        assert screen.grid[y][x] == "@"
        term.keys(b"\x7f")


def questions(term):
    """Count the editor's questions to the terminal from now on."""
    asked = []
    show = term.show

    def counting():
        asked.append(term.editor.waiting_for_measurement)
        show()
    term.show = counting
    return asked


# -- clusters --------------------------------------------------------------------------

def test_what_the_cursor_moves_over_as_one():
    assert clusters("e\u0301" + FAMILY + FLAG + "\U0001F1E9" + THUMB + "\u2764\ufe0f" + "a\nb") == [
        "e\u0301", FAMILY, FLAG, "\U0001F1E9", THUMB, "\u2764\ufe0f", "a", "\n", "b"]
    assert clusters("\n\u0301") == ["\n", "\u0301"]                  # a mark never joins a line break


def test_which_clusters_terminals_agree_on():
    assert all(map(certain, ["a", "中", "e\u0301", "é", "<"]))
    assert not any(map(certain, [FAMILY, FLAG, THUMB, "\u2764\ufe0f", "\U0001F600", "\u231a"]))


def test_parts_spell_out_what_joins_and_modifies():
    assert parts(FAMILY) == ["\U0001F468", "<U+200D>", "\U0001F469", "<U+200D>", "\U0001F467"]
    assert parts(THUMB) == ["\U0001F44D", "<U+1F3FD>"]
    assert parts("\u2764\ufe0f") == ["\u2764", "<U+FE0F>"]


# -- measured on the terminal --------------------------------------------------------------

@TERMINALS
@pytest.mark.parametrize("cols", [20, 40])
def test_a_sequence_is_measured_and_the_cursor_is_where_the_next_character_lands(sequences, cols):
    term = Term(cols, emoji_sequences=sequences, measure=True)
    text = "AB " + FAMILY + " CD"
    term.type(text)
    assert_in_step(term, text, len(clusters(text)))
    term.keys(LEFT * 2 + b"X")                                      # the issue: column 8, not 12
    text = "AB " + FAMILY + " XCD"
    assert_in_step(term, text, 6)
    assert term.screen.cursor == (2, 2 + 3 + (2 if sequences else 6) + 2)
    typed = "more text to wrap the line " + FAMILY + " over the margin " + FLAG + THUMB
    term.type(typed)
    text = text.replace("CD", typed + "CD")
    assert_in_step(term, text, len(clusters(text)) - 2)


@TERMINALS
def test_a_cluster_that_does_not_fit_at_the_end_of_a_row_goes_whole_to_the_next(sequences):
    term = Term(20, emoji_sequences=sequences, measure=True)
    for n in range(12, 19):
        term.keys(b"\x05\x15")
        text = "x" * n + FAMILY + "y"
        term.type(text)
        assert_in_step(term, text, n + 2)
        term.keys(HOME + RIGHT * n)
        assert_in_step(term, text, n)
        term.keys(RIGHT)
        assert_in_step(term, text, n + 1)


def test_a_cluster_is_asked_about_once():
    term = Term(40, measure=True)
    asked = questions(term)
    term.type(FAMILY)
    assert asked.count(True) == 1
    term.type(" " + FAMILY + FAMILY + "\r")
    term.keys(b"\x1b[A")
    assert asked.count(True) == 1
    term.type(FLAG)
    assert asked.count(True) == 2


def test_a_terminal_that_does_not_answer_gets_the_parts_and_no_more_questions():
    term = Term(60, answer=False, measure=True)
    term.type("AB " + FAMILY + " CD")
    assert term.editor.waiting_for_measurement
    term.editor.measurement_timeout()
    term.show()
    assert not term.editor.waiting_for_measurement
    shown = "AB \U0001F468<U+200D>\U0001F469<U+200D>\U0001F467 CD"
    assert term.screen.lines() == OLDER + ["> " + shown]
    term.keys(LEFT * 2 + b"X" + FLAG.encode())
    assert not term.editor.waiting_for_measurement
    shown = shown.replace(" CD", " X<U+1F1EB><U+1F1F7>CD")
    assert term.screen.lines() == OLDER + ["> " + shown]
    assert term.screen.cursor == (2, 2 + shown.index("CD") + 3)        # three emoji of two columns
    assert term.keys(b"\r") == [("line", "AB " + FAMILY + " X" + FLAG + "CD")]


def test_an_answer_nobody_asked_for_is_ignored():
    term = Term(40, measure=True)
    term.type("abc")
    assert term.keys(b"\x1b[1;2R") == []                              # Shift-F3 reads the same
    assert term.editor.text == "abc"
    assert term.screen.lines() == OLDER + ["> abc"]


@pytest.mark.parametrize("old, new", [(40, 70), (70, 40), (40, 25)])
def test_resizing_a_tmux_like_terminal_with_a_measured_cluster_leaves_nothing_stale(old, new):
    term = Term(old, emoji_sequences=True, measure=True)
    text = "message yoda " + FAMILY + " " + "z" * 50 + " " + FAMILY
    term.type(text)
    term.keys(LEFT * 20)
    term.resize(new, reflow=True)
    assert_in_step(term, text, len(clusters(text)) - 20)
    term.keys(b"\x05")
    assert_in_step(term, text, len(clusters(text)))
