"""The hash field (format, strict parsing), hashed lines in the accounts file, and ``hash-password``."""
import base64
import hashlib
import io
import os
import pty
import subprocess
import sys
import time

import pytest

from reactor.server.credentials import CredentialsError, load_credentials, plain_accounts
from reactor.server.passwords import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    ScryptHash,
    hash_password,
    hash_password_command,
    is_hashed,
    new_password_problem,
    parse_hash,
    verify_password,
)
from tests.support import PATIENCE, ROOT, ServerProcess, coverage_env, wait_for

SALT = bytes(range(16))


def known():
    """hashlib.scrypt of 'wise@!man' with SALT at ln=10 r=8 p=1, written out in the documented format."""
    digest = hashlib.scrypt(b"wise@!man", salt=SALT, n=1024, r=8, p=1, dklen=32)
    salt, digest = (base64.b64encode(data).decode().rstrip("=") for data in (SALT, digest))
    return f"$scrypt$ln=10,r=8,p=1${salt}${digest}"


def test_a_hash_is_the_documented_scrypt_of_the_password_with_its_salt():
    field = hash_password("wise@!man", log2_n=10, salt=SALT)
    assert field == known()
    assert verify_password("wise@!man", field) and not verify_password("wise@!man ", field)


def test_defaults_are_memory_hard_salted_afresh_and_take_tens_of_ms():
    first, second = hash_password("same"), hash_password("same")
    assert first != second   # a salt each
    record = parse_hash(first)
    assert (record.log2_n, record.r, record.p, len(record.salt), len(record.hash)) == (14, 8, 1, 16, 32)
    assert 128 * record.r << record.log2_n == 16 << 20   # 16 MiB a check
    start = time.perf_counter()
    assert record.matches("same")
    assert time.perf_counter() - start > 0.005


def test_parse_round_trips():
    field = hash_password("x", log2_n=10)
    assert str(parse_hash(field)) == field and isinstance(parse_hash(field), ScryptHash)


GOOD = known()


@pytest.mark.parametrize("field,reason", [
    (GOOD.replace("ln=10,", "ln=10;"), "expected"),
    (GOOD.replace("ln=10,r=8,p=1", "r=8,ln=10,p=1"), "expected"),      # fields in order
    (GOOD.replace("ln=10", "ln=010"), "expected"),                       # canonical numbers
    (GOOD.replace("ln=10", "ln=9"), "ln must be"),
    (GOOD.replace("ln=10", "ln=25"), "ln must be"),
    (GOOD.replace("r=8", "r=33"), "r must be"),
    (GOOD.replace("p=1", "p=5"), "p must be"),
    (GOOD.replace("ln=10,r=8", "ln=20,r=32"), "MiB"),                   # 4 GiB a check
    (GOOD + "=", "expected"),                                            # no padding
    (GOOD + "$", "expected"),
    (GOOD[:GOOD.rindex("$")] + "$AAAA", "16 to 64 bytes"),             # a 3-byte hash
    (GOOD[:GOOD.rindex("$")] + "$" + "A" * 42 + "B", "not canonical"),   # stray bits in the last character
    ("$scrypt$ln=10,r=8,p=1$$" + GOOD.rsplit("$", 1)[1], "expected"),
])
def test_malformed_fields_are_refused_with_a_reason(field, reason):
    with pytest.raises(ValueError, match=reason):
        parse_hash(field)
    assert is_hashed(field) and not verify_password("wise@!man", field)


def write(tmp_path, text):
    path = tmp_path / "credentials.txt"
    path.write_text(text)
    return path


def test_the_accounts_file_takes_hashed_and_plain_lines_side_by_side(tmp_path):
    accounts = load_credentials(write(tmp_path, f"yoda {GOOD}\nhans falcon*solo\n"))
    assert accounts == {"yoda": GOOD, "hans": "falcon*solo"}
    assert plain_accounts(accounts) == 1


def test_a_malformed_hash_is_a_credentials_error_naming_the_line_not_quoting_it(tmp_path):
    bad = GOOD.replace("ln=10", "ln=99")
    with pytest.raises(CredentialsError) as info:
        load_credentials(write(tmp_path, f"hans falcon*solo\nyoda {bad}\n"))
    message = str(info.value)
    assert message.endswith("credentials.txt:2: malformed password hash: ln must be 10 to 24")
    assert bad not in message


class Answers:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        return self.answers.pop(0)


def run_command(argv, *answers):
    out, err = io.StringIO(), io.StringIO()
    status = hash_password_command(argv, ask=Answers(*answers), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_hash_password_prints_the_field_or_with_user_the_whole_line():
    status, out, err = run_command([], "wise@!man", "wise@!man")
    assert status == 0 and err == "" and verify_password("wise@!man", out.strip())
    status, out, _ = run_command(["--user", "yoda"], "wise@!man", "wise@!man")
    user, field = out.strip().split(" ")
    assert status == 0 and user == "yoda" and verify_password("wise@!man", field)


@pytest.mark.parametrize("first,second,reason", [
    ("", "", "the password is empty"),
    ("two words", "two words", "whitespace"),
    ("tab\there", "tab\there", "whitespace"),
    ("one", "two", "differ"),
])
def test_hash_password_refuses_what_the_file_could_not_hold_or_a_typo(first, second, reason):
    status, out, err = run_command([], first, second)
    assert status == 1 and out == "" and reason in err


def test_hash_password_refuses_a_user_name_the_file_could_not_hold():
    for name in ("two words", "#comment", "bell\x07"):
        status, out, err = run_command(["--user", name], "pw", "pw")
        assert status == 2 and out == "" and "user name" in err


@pytest.mark.e2e
def test_hash_password_reads_the_terminal_without_echo():
    """The real command on a pseudo-terminal: the password is not echoed; the line goes to stdout."""
    pid, fd = pty.fork()
    if pid == 0:   # the child: the server's command, its terminal the pty
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "server_main.py", "hash-password", "--user", "yoda"])
    seen = b""
    try:
        for prompt in (b"Password: ", b"Again: "):
            while prompt not in seen:
                seen += os.read(fd, 1024)
            os.write(fd, b"wise@!man\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:   # the child is gone: end of output
                break
            if not chunk:
                break
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = seen.decode()
    assert "wise@!man" not in text   # never echoed
    line = text.strip().splitlines()[-1]
    user, field = line.split(" ")
    assert user == "yoda" and verify_password("wise@!man", field)


@pytest.mark.e2e
def test_hash_password_on_a_pipe_reads_its_two_lines_quietly():
    """A script pipes the password in: no prompt and no GetPassWarning (getpass cannot hide what it does not
    type), only the line for the accounts file. (A new session: no terminal for getpass to find either.)"""
    out = subprocess.run([sys.executable, "server_main.py", "hash-password", "--user", "yoda"], cwd=ROOT,
                         input="wise@!man\nwise@!man\n", capture_output=True, text=True, timeout=PATIENCE,
                         start_new_session=True, env=coverage_env())
    assert out.returncode == 0 and out.stderr == "", out.stderr
    user, field = out.stdout.strip().split(" ")
    assert user == "yoda" and verify_password("wise@!man", field)
    short = subprocess.run([sys.executable, "server_main.py", "hash-password"], cwd=ROOT, input="only one\n",
                           capture_output=True, text=True, timeout=PATIENCE, start_new_session=True, env=coverage_env())
    assert short.returncode == 1 and short.stdout == ""   # the second line never came


@pytest.mark.e2e
def test_the_server_warns_once_at_start_how_many_accounts_are_plain(tmp_path):
    server = ServerProcess(tmp_path, accounts={"yoda": GOOD, "hans": "falcon*solo", "luke": "jedi*knight"})
    try:
        wait_for(lambda: "serving 3 accounts" in server.log(), what="the start logged")   # said before it
        assert server.log().count("plain password") == 1
        assert "2 of 3 accounts" in server.log()
    finally:
        server.stop()
    (tmp_path / "hashed").mkdir()
    quiet = ServerProcess(tmp_path / "hashed", accounts={"yoda": GOOD})
    try:
        wait_for(lambda: "serving 1 accounts" in quiet.log(), what="the start logged")
        assert "plain password" not in quiet.log()
    finally:
        quiet.stop()


@pytest.mark.parametrize("password, problem", [
    ("", "the password is empty"),
    ("two words", "a password cannot hold whitespace"),
    ("tab\there", "a password cannot hold whitespace"),
    ("esc\x1bape*long", "a password cannot hold control characters"),
    ("c1\x85control", "a password cannot hold whitespace"),   # NEL is whitespace too
    ("del\x7fdelete", "a password cannot hold control characters"),
    ("short*7", f"a password needs at least {MIN_PASSWORD} characters"),
    ("x" * (MAX_PASSWORD + 1), f"a password may have at most {MAX_PASSWORD} characters"),
    ("YodaYoda", "a password cannot be the user name"),
])
def test_a_new_password_must_be_one_word_of_8_to_64_characters_without_control_characters(password, problem):
    assert new_password_problem(password, "yodayoda") == problem


def test_a_new_password_at_the_limits_will_do_and_its_login_frame_fits_a_strangers_line():
    from reactor.framing import encode
    from reactor.server.host import STRANGER_MAX_FRAME
    assert new_password_problem("x" * MIN_PASSWORD, "yoda") is None
    longest = "\U0001F600" * MAX_PASSWORD   # 12 bytes each once JSON-escaped
    assert new_password_problem(longest, "yoda") is None
    assert len(encode({"type": "password", "password": longest})) <= STRANGER_MAX_FRAME
