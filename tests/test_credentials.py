"""The accounts file: format, what is skipped, and every way it can be malformed."""
import os

import pytest

from reactor.server.credentials import CredentialsError, load_credentials


def write(tmp_path, content, name="credentials.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def error_of(path):
    with pytest.raises(CredentialsError) as info:
        load_credentials(path)
    return str(info.value)


def test_reads_one_account_a_line(tmp_path):
    path = write(tmp_path, "hans falcon*solo\nyoda wise@!man\n")
    assert load_credentials(path) == {"hans": "falcon*solo", "yoda": "wise@!man"}


def test_accepts_a_str_path_and_a_last_line_without_newline(tmp_path):
    path = write(tmp_path, "hans falcon*solo\nyoda wise@!man")
    assert load_credentials(str(path)) == {"hans": "falcon*solo", "yoda": "wise@!man"}


def test_skips_blank_and_comment_lines(tmp_path):
    path = write(tmp_path, "# accounts\n\n   \nhans falcon*solo\n#yoda wise\n\n")
    assert load_credentials(path) == {"hans": "falcon*solo"}


def test_password_may_hold_any_non_space_characters(tmp_path):
    path = write(tmp_path, "r2d2 do*!@#dedo\nc3po #gold:é€\n")
    assert load_credentials(path) == {"r2d2": "do*!@#dedo", "c3po": "#gold:é€"}


def test_usernames_are_case_sensitive(tmp_path):
    path = write(tmp_path, "hans a\nHans b\n")
    assert load_credentials(path) == {"hans": "a", "Hans": "b"}


def test_crlf_line_endings_and_a_byte_order_mark_are_fine(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfhans falcon*solo\r\nyoda wise@!man\r\n")
    assert load_credentials(path) == {"hans": "falcon*solo", "yoda": "wise@!man"}


def test_an_empty_file_has_no_accounts(tmp_path):
    assert load_credentials(write(tmp_path, "")) == {}


def test_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert error_of("credentials.txt") == "credentials file not found: credentials.txt"


def test_unreadable_path_is_named(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    message = error_of(tmp_path / "dir.txt")
    assert message == f"cannot read credentials file {tmp_path / 'dir.txt'}: not a regular file (a directory)"


def test_a_device_is_refused_not_read_as_an_empty_file():
    assert error_of("/dev/null") == "cannot read credentials file /dev/null: not a regular file (a character device)"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    import signal
    path = tmp_path / "creds.fifo"
    os.mkfifo(path)

    def hung(signum, frame):
        raise AssertionError("load_credentials waited on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        assert error_of(path) == f"cannot read credentials file {path}: not a regular file (a FIFO)"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_symlink_to_a_regular_file_is_fine(tmp_path):
    target = write(tmp_path, "hans a\n", name="real.txt")
    (tmp_path / "link.txt").symlink_to(target)
    assert load_credentials(tmp_path / "link.txt") == {"hans": "a"}


@pytest.mark.parametrize("line", [
    "broken",              # no password
    "hans",                # no password
    "hans ",               # empty password
    " hans pw",            # empty user name
    "hans  pw",            # two spaces
    "hans pass word",      # a password with a space
    "hans\tpw",            # a tab is not the separator
    "hans pw\t",           # trailing whitespace in the password
    "hans pw ",            # trailing space
    "ha\u00a0ns pw",       # other whitespace inside a name
])
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = write(tmp_path, f"# comment\n\nyoda wise\n{line}\nluke jedi\n", name="creds.txt")
    assert error_of(path) == f"{path}:4: expected '<username> <password>'"


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\t", "\x1f", "\x7f", "\x85", "\x9b"])
def test_a_username_with_a_control_character_names_the_line(tmp_path, char):
    path = write(tmp_path, f"yoda wise\n\nha{char}ns pw\n", name="creds.txt")
    assert error_of(path) == f"{path}:3: the username holds a control character (U+{ord(char):04X})"


def test_a_username_has_at_most_64_characters_whatever_their_script(tmp_path):
    longest = {"a" * 64: "pw", "Я" * 64: "pw", "\U0001F600" * 64: "pw"}
    assert load_credentials(write(tmp_path, "".join(f"{u} {p}\n" for u, p in longest.items()))) == longest
    path = write(tmp_path, "yoda wise\n" + "л" * 65 + " pw\n", name="creds.txt")
    assert error_of(path) == f"{path}:2: the username is longer than 64 characters"


def test_a_password_may_hold_what_a_username_may_not(tmp_path):
    assert load_credentials(write(tmp_path, "hans pa\x1bss\n")) == {"hans": "pa\x1bss"}


def test_relative_path_is_named_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "yoda wise\n\nbroken\n")
    assert error_of("credentials.txt") == "credentials.txt:3: expected '<username> <password>'"


def test_duplicate_username_is_malformed(tmp_path):
    path = write(tmp_path, "hans a\nyoda b\nhans c\n")
    assert error_of(path) == f"{path}:3: duplicate username 'hans' (first on line 1)"


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, b"hans a\nyoda \xff\xfe\n")
    assert error_of(path) == f"{path}:2: not valid UTF-8"


def test_error_never_quotes_a_password(tmp_path):
    path = write(tmp_path, "hans s3cret extra\n")
    assert "s3cret" not in error_of(path)
