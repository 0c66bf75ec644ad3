"""The client and its console in a real terminal, tmux, as a person types, pastes and resizes it.

Each test runs a tmux server of its own (``tmux -S``), so nothing depends on the
user's tmux; the terminal tests need ``tmux`` (3.x) on PATH.  Most tests drive
the console alone, echoing each line it reads (``CONSOLE``), so they check the
terminal side without a chat server; the others run the real client on the
real server.  ``capture-pane`` reads the screen as tmux drew it, ``-e`` with
its attributes, and ``#{cursor_x}`` where tmux has the cursor.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from reactor.server.credentials import load_credentials
from reactor.server.passwords import verify_password
from tests.support import PATIENCE, ROOT, ServerProcess, coverage_env

pytestmark = pytest.mark.e2e   # starts tmux, the real client and server

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"

# The console alone: prints "ready", then "got <length>: <the line's first 40 characters, repr>" for each
# line; "quit" ends it.  Lines past 4,096 characters show the excess, as the client's messages do.
CONSOLE = """\
from reactor.client.console import TerminalConsole
from reactor.loop import EventLoop

loop = EventLoop()
console = TerminalConsole(limit=lambda line: 4096 if len(line) > 4096 else None)


def line(text):
    if text == "quit":
        loop.stop()
    else:
        console.print(f"got {len(text)}: {text[:40]!r}")


console.start(loop, line, loop.stop)
console.print("ready")
console.prompt("", False, True)
try:
    loop.run()
finally:
    console.close()
"""


class Tmux:
    """A tmux server of its own with one window ``cols`` wide running ``command`` (in ``sh -c``)."""

    def __init__(self, command, cols=80, rows=24):
        assert shutil.which("tmux"), "the terminal tests need tmux on PATH"
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="tmux-"))   # short: a socket path has a limit
        self.socket = str(self.home / "s")
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(cols), "-y", str(rows), command)
        self.run("set-option", "-t", "t", "remain-on-exit", "on")

    def run(self, *args):
        done = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                              env=coverage_env(), cwd=ROOT, timeout=PATIENCE)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self, escapes=False, joined=False):
        """The visible rows, without the blank ones at the bottom; ``escapes``: with their attributes;
        ``joined``: from the start of the history, the rows a line wrapped over joined again."""
        flags = (["-e"] if escapes else []) + (["-J", "-S", "-"] if joined else [])
        rows = self.run("capture-pane", "-p", "-t", "t", *flags).split("\n")
        while rows and not rows[-1].strip():
            rows.pop()
        return rows

    def text(self):
        return "\n".join(self.screen())

    def cursor(self):
        x, y = self.run("display", "-p", "-t", "t", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def pid(self):
        return int(self.run("display", "-p", "-t", "t", "#{pane_pid}"))

    def command(self):
        """The program in the foreground of the pane."""
        return self.run("display", "-p", "-t", "t", "#{pane_current_command}").strip()

    def type(self, text):
        self.run("send-keys", "-t", "t", "-l", text)

    def keys(self, *names):
        self.run("send-keys", "-t", "t", *names)

    def paste(self, text, bracketed=True):
        """Paste as tmux does (line ends as CR), in bracketed-paste marks when the program asked for them."""
        path = self.home / "paste"
        path.write_text(text)
        self.run("load-buffer", "-b", "p", str(path))
        self.run("paste-buffer", "-b", "p", "-t", "t", *(["-p"] if bracketed else []))

    def resize(self, cols, rows=24):
        self.run("resize-window", "-t", "t", "-x", str(cols), "-y", str(rows))

    def wait_for(self, predicate, what, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"{what} not on screen:\n{self.text()}"
            time.sleep(0.01)

    def shows(self, needle, timeout=PATIENCE):
        self.wait_for(lambda: needle in self.text(), repr(needle), timeout)

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def console_in_tmux(cols=80, then=""):
    """The console alone in tmux (``then``: what the shell runs after it)."""
    script = pathlib.Path(tempfile.mkdtemp(prefix="console-")) / "console.py"
    script.write_text(CONSOLE)
    term = Tmux(f"{sys.executable} {script}{then}", cols)
    term.shows("ready")
    return term


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=1, timeout=60)
    yield srv
    srv.stop()


def client_in_tmux(server, cols):
    term = Tmux(f"exec {sys.executable} client_main.py {server.host} {server.port}", cols)
    term.shows("Username:")
    term.type("yoda")
    term.keys("Enter")
    term.shows("Password:")
    term.type("wise@!man")
    term.keys("Enter")
    term.shows("Type help for commands")
    return term


# -- long pastes ---------------------------------------------------------------------------

@pytest.mark.parametrize("length, cols, bracketed", [(20_000, 40, True), (20_000, 100, True), (5_000, 40, True),
                                                     (20_000, 40, False)])
def test_a_long_paste_is_usable_at_once(server, length, cols, bracketed):
    term = client_in_tmux(server, cols)
    try:
        term.type("message yoda ")
        text = "".join("abcdefghij klmnopqrstuvwxyz"[n % 27] for n in range(length - 4)) + "DONE"
        pid = term.pid()
        before, started = cpu_seconds(pid), time.monotonic()
        term.paste(text, bracketed)
        term.type("!")
        term.wait_for(lambda: "DONE!" in term.text().replace("\n", ""), "the end of the paste")
        took, cpu = time.monotonic() - started, cpu_seconds(pid) - before
        print(f"{length} characters pasted at {cols} columns: usable after {took:.2f} s, client CPU {cpu:.2f} s")
        assert cpu < 0.5                               # was 12 s for 5,000 and 179 s for 20,000 (quadratic)
        rows = term.screen()
        assert len(rows) <= 24 and "rows above)" in term.text()   # a window over the input, not 500 rows
        term.keys("Home")
        term.wait_for(lambda: term.screen()[-1].endswith("rows below)"), "the start of the input")
        assert "> message yoda abcdefghij" in term.text()
        assert term.cursor() == (2, term.screen().index(next(r for r in term.screen() if r.startswith("> "))))
        term.keys("Enter")
        term.wait_for(lambda: "Error. Message too long (at most 4096 characters)" in term.text().replace("\n", ""),
                      "the refusal")
    finally:
        term.close()


def test_the_excess_past_the_limit_shows_in_reverse_video():
    term = console_in_tmux(cols=40)
    try:
        term.paste("x" * 4090 + "abcdefghij")           # 4,100 characters: the last 4 are too many
        term.shows("efghij")
        last = term.screen(escapes=True)[-1]
        assert last.endswith("xxxxxxabcdef\x1b[7mghij"), last
        term.keys("BSpace", "BSpace", "BSpace", "BSpace")
        term.wait_for(lambda: term.screen()[-1].endswith("abcdef") and "\x1b[7m" not in term.screen(True)[-1],
                      "the line within the limit")
        term.keys("Enter")
        term.shows("got 4096: 'xxxxxxxxxx")
    finally:
        term.close()


# -- pastes and lines with line breaks ------------------------------------------------------

def test_a_pasted_block_is_one_line_with_its_line_breaks():
    term = console_in_tmux()
    try:
        term.paste("Dear Yoda,\nthe fleet is ready.\nRegards\n")
        term.shows("  Regards")
        assert term.screen()[-3:] == ["> Dear Yoda,", "  the fleet is ready.", "  Regards"]
        assert term.cursor() == (9, len(term.screen()) - 1)
        assert "got" not in term.text()                  # nothing ran before Enter
        term.keys("Enter")
        term.shows("got 38: 'Dear Yoda,\\nthe fleet is ready.\\nRegards'")
    finally:
        term.close()


def test_alt_enter_inserts_a_line_break():
    term = console_in_tmux()
    try:
        term.type("one")
        term.keys("M-Enter")
        term.type("two")
        term.shows("  two")
        term.keys("Up", "End", "!", "Enter")
        term.shows("got 8: 'one!\\ntwo'")
    finally:
        term.close()


def test_a_pasted_block_in_the_client_is_one_message_not_a_command_a_line(server):
    term = client_in_tmux(server, 80)
    try:
        term.paste("message yoda Dear Yoda,\nthe fleet is ready.\nRegards")
        term.shows("  Regards")
        assert term.screen()[-3:] == ["> message yoda Dear Yoda,", "  the fleet is ready.", "  Regards"]
        assert "Invalid command" not in term.text()
        term.keys("C-c")
        term.shows("  Regards^C")
    finally:
        term.close()


def test_bracketed_paste_is_off_after_the_console_exits():
    term = console_in_tmux(then="; exec cat")
    try:
        term.paste("a\nb")
        term.shows("  b")
        term.keys("C-u")
        term.type("quit")
        term.keys("Enter")
        term.wait_for(lambda: term.command() == "cat", "the console gone")
        term.paste("after")                              # cat's echo: the marks would show as ^[[200~
        term.shows("after")
        assert "200~" not in term.text()
    finally:
        term.close()


def test_bracketed_paste_is_off_while_suspended_and_on_again_after():
    script = pathlib.Path(tempfile.mkdtemp(prefix="console-")) / "console.py"
    script.write_text(CONSOLE)
    term = Tmux("PS1='$ ' exec sh -i")                     # a shell with job control, as a person has
    try:
        term.type(f"{sys.executable} {script}")
        term.keys("Enter")
        term.shows("ready")
        term.type("half typed")
        term.keys("C-z")
        term.shows("half typed^Z")
        term.wait_for(lambda: term.command() == "sh" and term.screen()[-1].startswith("$"), "the shell")
        term.paste("while stopped")                      # the shell's line: the marks would show as ^[[200~
        term.shows("$ while stopped")
        assert "200~" not in term.text()
        term.keys("C-u")
        term.type("fg")
        term.keys("Enter")
        term.shows("> half typed")
        term.keys("C-u")
        term.paste("one\ntwo")
        term.shows("  two")
        term.keys("Enter")
        term.shows("got 7: 'one\\ntwo'")
    finally:
        term.close()


# -- widths --------------------------------------------------------------------------------

def input_cursor(term):
    """Where tmux has the cursor, the row counted from the input's first (the last row starting "> ",
    in the history or on the screen)."""
    rows = term.run("capture-pane", "-p", "-S", "-", "-t", "t").split("\n")
    top = max(number for number, row in enumerate(rows) if row.startswith("> "))
    history = int(term.run("display", "-p", "-t", "t", "#{history_size}"))
    x, y = term.cursor()
    return x, history + y - top


def reference_cursor(term, text, cols):
    """Where the next character lands after tmux writes ``text`` at the top of a window ``cols`` wide."""
    path = term.home / "reference"
    path.write_text(text)
    term.run("new-window", "-d", "-t", "t:9", f"read x; printf '\\033[H\\033[2J'; cat {path}; exec cat")
    term.run("resize-window", "-t", "t:9", "-x", str(cols), "-y", "24")
    term.run("send-keys", "-t", "t:9", "Enter")      # (written once the window has its width)
    deadline = time.monotonic() + PATIENCE
    while True:
        shown = term.run("capture-pane", "-p", "-t", "t:9").strip()
        x, y = map(int, term.run("display", "-p", "-t", "t:9", "#{cursor_x} #{cursor_y}").split())
        if shown.endswith(text.rstrip()[-1]) and (x or y) or time.monotonic() > deadline:
            term.run("kill-window", "-t", "t:9")
            return (0, y + 1) if x >= cols else (x, y)      # at the margin: a wrap is pending
        time.sleep(0.01)


def test_the_cursor_is_where_the_next_character_lands_after_an_emoji_sequence(server):
    term = client_in_tmux(server, 40)
    try:
        term.type("AB " + FAMILY + " CD")
        term.shows(" CD")
        term.keys("Left", "Left", "X")
        term.shows("XCD")
        _, row = term.cursor()
        term.wait_for(lambda: input_cursor(term) == reference_cursor(term, "> AB " + FAMILY + " X", 40),
                      "the cursor before CD")                          # the issue: column 8, not 12
        assert term.screen()[row] == "> AB " + FAMILY + " XCD"
        term.type("Y" * 40)                                             # across the margin, and back
        term.keys("Home", *["Right"] * 7)
        term.wait_for(lambda: input_cursor(term) == reference_cursor(term, "> AB " + FAMILY + " XY", 40),
                      "the cursor after the first Y")
    finally:
        term.close()


@pytest.mark.parametrize("text", ["resize me " * 10, "resize " + FAMILY + " me" * 20],
                         ids=["plain", "with-an-emoji-sequence"])
def test_widening_and_narrowing_leave_no_stale_rows(text):
    """The issue: widening from 40 to 70 columns left a stale ``>`` row above the input."""
    term = console_in_tmux(cols=40)
    try:
        term.type(text)
        term.shows("me")
        term.keys("Left", "Left")
        for cols in (70, 40, 25, 80, 40):
            term.resize(cols)
            # The history and the screen hold "ready" and the input, once, and nothing else.
            term.wait_for(lambda: [row.rstrip() for row in term.screen(joined=True)] == ["ready", "> " + text.rstrip()],
                          f"the input alone at {cols} columns")
            term.wait_for(lambda cols=cols: input_cursor(term) == reference_cursor(term, "> " + text[:-2], cols),
                          f"the cursor before the last 2 characters at {cols} columns")
        term.keys("Enter")
        term.shows(f"got {len(text)}")
    finally:
        term.close()


# -- the session's edges: multi-line messages, the limit, Ctrl-C and a locked account at the prompts, the draft -----

def client_command(server, then=""):
    """The real client on ``server`` in ``sh -c`` (``then``: what the shell runs after it)."""
    return f"{sys.executable} client_main.py {server.host} {server.port}{then}"


def test_a_multi_line_message_goes_as_one_and_arrives_indented_under_its_sender(server):
    hans = server.client()
    hans.login("hans")
    term = client_in_tmux(server, 80)
    try:
        term.paste("message hans Dear Hans,\nthe fleet is ready.")
        term.shows("  the fleet is ready.")
        term.keys("Enter")
        assert hans.until("message")["text"] == "Dear Hans,\nthe fleet is ready."
        hans.send({"type": "message", "to": "yoda", "text": "Dear Yoda,\nall is well.\nyoda: forged"})
        term.shows("      yoda: forged")
        rows = term.screen()
        at = rows.index("hans: Dear Yoda,")
        assert rows[at + 1:at + 3] == ["      all is well.", "      yoda: forged"]   # no row of it at the margin
    finally:
        term.close()


def test_the_real_client_marks_text_past_what_a_message_may_carry(server):
    term = client_in_tmux(server, 40)
    try:
        term.type("message hans ")
        term.paste("x" * 4090 + "abcdefghij")            # the text: 4,100 characters, 4 too many
        term.shows("efghij")
        last = term.screen(escapes=True)[-1]
        assert last.endswith("abcdef\x1b[7mghij"), last
        term.keys("BSpace", "BSpace", "BSpace", "BSpace")
        term.wait_for(lambda: "\x1b[7m" not in term.screen(True)[-1], "the text within the limit")
        term.keys("C-u", "C-u")
        term.type("broadcast fine")
        term.wait_for(lambda: term.screen(True)[-1].rstrip().endswith("broadcast fine"), "a short line")
        assert "\x1b[7m" not in term.screen(True)[-1]
    finally:
        term.close()


def test_ctrl_c_at_the_password_prompt_ends_the_client_and_sends_no_password(server):
    term = Tmux(client_command(server, "; echo exit=$?; exec cat"))
    try:
        term.shows("Username:")
        term.type("yoda")
        term.keys("Enter")
        term.shows("Password:")
        term.keys("C-c")
        term.shows("exit=0")
        term.type("logout")                          # what the hint said: now the shell's (cat's), not a password
        term.keys("Enter")
        term.wait_for(lambda: term.text().count("logout") == 2, "cat's echo and its copy")
        assert "wrong password" not in server.log() and "To quit" not in term.text()
    finally:
        term.close()


def test_a_locked_account_says_how_long_and_a_password_typed_after_never_reaches_the_shell(tmp_path):
    server = ServerProcess(tmp_path, block=30, timeout=60)
    guesser = server.client()
    guesser.send({"type": "username", "username": "vader"})
    guesser.expect("username_ok")
    for answer in ("invalid_password", "invalid_password", "account_blocked"):
        guesser.send({"type": "password", "password": "guess"})
        guesser.expect("error", code=answer)
    term = Tmux(client_command(server, "; echo exit=$?; exec cat"), cols=120)   # the lock's words on one row
    try:
        term.shows("Username:")
        term.type("vader")
        term.keys("Enter")
        term.shows("Please try again later (in ")
        assert re.search(r"multiple login failures\. Please try again later \(in (30|29) s\)", term.text())
        term.type("sithlord**")                      # typed without looking, as the lock shows
        term.keys("Enter")
        term.shows("exit=1")
        term.type("after")
        term.keys("Enter")
        term.wait_for(lambda: term.text().count("after") == 2, "cat reading")
        assert "sithlord" not in term.text()         # neither run by the shell nor echoed by it
    finally:
        term.close()
        server.stop()


def test_the_warning_comes_before_the_inactivity_logout_and_the_draft_is_shown_after(tmp_path):
    server = ServerProcess(tmp_path, block=30, timeout=4)   # the warning 2 s ahead
    term = Tmux(client_command(server, "; echo exit=$?; exec cat"))
    try:
        term.shows("Username:")
        term.type("yoda")
        term.keys("Enter")
        term.shows("Password:")
        term.type("wise@!man")
        term.keys("Enter")
        term.shows("Type help for commands")
        term.type("message hans a reply I was")
        term.shows("You will be logged out in 2 s for inactivity")
        assert "logged out due to inactivity" not in term.text()
        term.type(" still typing")                   # typing is no activity
        term.shows("exit=0")
        rows = term.screen()
        at = rows.index("You have been logged out due to inactivity")
        assert rows[at + 1:at + 3] == ["Not sent, as you left it:", "message hans a reply I was still typing"]
        assert rows.index("You will be logged out in 2 s for inactivity") < at
        assert not any(row.startswith("> ") for row in rows)   # the input itself is gone
    finally:
        term.close()
        server.stop()


def test_the_password_commands_passwords_are_never_shown_nor_kept_in_the_history(server):
    term = client_in_tmux(server, 80)
    try:
        term.type("password")
        term.keys("Enter")
        for prompt, typed in (("Current password:", "wise@!man"), ("New password:", "new*secret"),
                              ("New password again:", "new*secret")):
            term.shows(prompt)
            term.type(typed)
            term.wait_for(lambda: term.screen()[-1].rstrip() == prompt, f"{prompt} with nothing after it")  # noqa: B023
            term.keys("Enter")
        term.shows("Password changed")
        for _ in range(3):                           # back through the history: the command, never a password
            term.keys("Up")
        term.wait_for(lambda: term.screen()[-1].rstrip() == "> password", "the command from the history")
        text = term.text()
        assert "wise@!man" not in text and "new*secret" not in text
        assert verify_password("new*secret", load_credentials(server.log_path.parent / "credentials.txt")["yoda"])
    finally:
        term.close()
