"""Changing one's own password on the real server: written into the credentials file (every other byte kept), in
force at once and after a restart, the old one refused; a file the server may not write, the option that turns
the command off, three wrong current passwords, an operator's edit on disk; and on a real cluster, the change
seen on another node."""
import os
import re
import signal

import pytest

from reactor.server.credentials import load_credentials
from reactor.server.passwords import verify_password
from tests.support import ACCOUNTS, ClientProcess, ServerProcess, cluster_login, wait_for

pytestmark = pytest.mark.e2e

NEW = "new*secret"
# Comments, odd spacing, a blank line of blanks, CRLF line ends, a byte order mark: all kept byte for byte.
ODD = ("\ufeff# the accounts  (edited by hand)\r\n"
       "hans falcon*solo\n"
       "  \t  \n"
       "#yoda an-old-comment\n"
       "yoda wise@!man\r\n"
       "vader sithlord**\n"
       "\n"
       "luke jedi*knight").encode()   # (no line end after the last)


def start(tmp_path, creds, *extra, block=30.0):
    """The real server on ``creds`` (not the file ServerProcess writes)."""
    return ServerProcess(tmp_path, block=block, extra=("--credentials", str(creds), *extra))


def change(client, current, new=NEW):
    client.send({"type": "change_password", "current": current, "new": new})
    return client.recv()


def login_answer(server, user, password):
    """What a login with ``password`` is answered (its connection closed after)."""
    client = server.client()
    try:
        client.send({"type": "username", "username": user})
        frame = client.recv()
        if frame["type"] != "username_ok":
            return frame
        client.send({"type": "password", "password": password})
        return client.recv()
    finally:
        client.close()


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "accounts.txt"
    path.write_bytes(ODD)
    path.chmod(0o600)
    return path


def test_a_changed_password_is_written_in_force_at_once_and_after_a_restart(tmp_path, creds):
    server = start(tmp_path, creds)
    try:
        yoda = server.client()
        yoda.login("yoda")
        with open(creds, "ab") as f:   # the operator adds an account meanwhile, without a reload
            f.write(b"\nleia princess~\n")
        assert change(yoda, "wise@!man") == {"type": "password_changed"}
        data = creds.read_bytes()
        field = re.search(rb"\nyoda (\S+)\r\n", data)[1].decode()
        assert data == ODD.replace(b"yoda wise@!man", b"yoda " + field.encode()) + b"\nleia princess~\n"
        assert verify_password(NEW, field) and stat_mode(creds) == 0o600
        assert "yoda's new password written to" in wait_for(lambda: "new password written" in server.log() and
                                                            server.log())
        yoda.send({"type": "logout"})
        assert login_answer(server, "yoda", "wise@!man") == {"type": "error", "code": "invalid_password"}
        assert login_answer(server, "yoda", NEW) == {"type": "welcome", "user": "yoda"}
        os.kill(server.proc.pid, signal.SIGHUP)   # a reload reads the file the server wrote: the same
        wait_for(lambda: "accounts reloaded: 1 added" in server.log(), what="the reload")
        assert login_answer(server, "yoda", NEW) == {"type": "welcome", "user": "yoda"}
    finally:
        assert server.stop() == 0
    server = start(tmp_path, creds)
    try:
        assert login_answer(server, "yoda", "wise@!man") == {"type": "error", "code": "invalid_password"}
        assert login_answer(server, "yoda", NEW) == {"type": "welcome", "user": "yoda"}
        assert load_credentials(creds)["leia"] == "princess~"
    finally:
        server.stop()


def stat_mode(path):
    return os.stat(path).st_mode & 0o777


def test_a_read_only_file_refuses_the_change_and_tells_the_operator(tmp_path, creds):
    """(A file of another owner is refused alike: tests/test_accounts_file.py.)"""
    creds.chmod(0o400)
    server = start(tmp_path, creds)
    try:
        assert wait_for(lambda: "users cannot change their passwords" in server.log())   # said at start
        yoda = server.client()
        yoda.login("yoda")
        assert change(yoda, "wise@!man") == {"type": "error", "code": "password_unchangeable"}
        assert wait_for(lambda: "yoda's password not changed: the accounts file" in server.log())
        assert creds.read_bytes() == ODD
        assert login_answer(server, "yoda", "wise@!man") == {"type": "error", "code": "already_logged_in",
                                                             "user": "yoda"}
    finally:
        server.stop()


def test_no_password_change_turns_the_command_off_and_counts_nothing(tmp_path, creds):
    server = start(tmp_path, creds, "--no-password-change")
    try:
        yoda = server.client()
        yoda.login("yoda")
        for _ in range(4):
            assert change(yoda, "guess") == {"type": "error", "code": "password_unchangeable"}
        assert yoda.silent() and creds.read_bytes() == ODD
        assert "serving 4 accounts" in server.log() and "users cannot change their passwords" not in server.log()
    finally:
        server.stop()


def test_three_wrong_current_passwords_lock_the_account_and_end_the_session(tmp_path, creds):
    server = start(tmp_path, creds)
    try:
        yoda = server.client()
        yoda.login("yoda")
        assert change(yoda, "guess") == {"type": "error", "code": "wrong_password"}
        assert change(yoda, "guess") == {"type": "error", "code": "wrong_password"}
        assert change(yoda, "guess") == {"type": "error", "code": "account_blocked", "retry": 30}
        yoda.expect_closed()
        assert login_answer(server, "yoda", "wise@!man") == {"type": "error", "code": "account_locked", "retry": 30}
        assert creds.read_bytes() == ODD
    finally:
        server.stop()


def test_bad_new_passwords_are_refused_with_why(tmp_path, creds):
    server = start(tmp_path, creds)
    try:
        yoda = server.client()
        yoda.login("yoda")
        for new, detail in (("short", "a password needs at least 8 characters"),
                            ("bell\x07ringing", "a password cannot hold control characters"),
                            ("x" * 65, "a password may have at most 64 characters")):
            assert change(yoda, "wise@!man", new) == {"type": "error", "code": "password_refused", "detail": detail}
        assert creds.read_bytes() == ODD
    finally:
        server.stop()


def test_a_line_the_operator_changed_on_disk_is_not_overwritten(tmp_path, creds):
    server = start(tmp_path, creds)
    try:
        yoda = server.client()
        yoda.login("yoda")
        edited = ODD.replace(b"yoda wise@!man", b"yoda reset*by*operator")
        creds.write_bytes(edited)   # not reloaded yet
        assert change(yoda, "wise@!man") == {"type": "error", "code": "account_changed"}
        assert creds.read_bytes() == edited
    finally:
        server.stop()


def test_a_piped_script_changes_its_password_and_the_answer_comes_before_what_it_typed_next(tmp_path, creds):
    """The whole dialogue piped at once: the line after it waits for the change's answer, and the end of input
    for both (the logout does not overtake the change)."""
    server = start(tmp_path, creds)
    client = ClientProcess(server.host, server.port)
    try:
        client.login("yoda")
        for line in ("password", "wise@!man", NEW, NEW, "whoelse"):
            client.type(line)
        client.end_input()
        assert client.wait() == 0
        out = client.text()
        assert out.index("Password changed") < out.index("No other users online") < out.index("Logged out")
        assert "Current password: " in out and "New password again: " in out
        assert verify_password(NEW, load_credentials(creds)["yoda"])
    finally:
        client.kill()
        server.stop()


# -- a cluster: nodes a and b share a port, c on its own, each with a credentials file of its own -----------------

def test_a_password_changed_on_one_node_logs_in_on_another_and_every_nodes_file_holds_it(cluster):
    yoda = cluster.login("c", "yoda")
    assert change(yoda, ACCOUNTS["yoda"]) == {"type": "password_changed"}
    files = {name: node.log_path.parent / "credentials.txt" for name, node in cluster.nodes.items()}
    fields = wait_for(lambda: [load_credentials(path)["yoda"] for path in files.values()]
                      if all(load_credentials(path)["yoda"] != ACCOUNTS["yoda"] for path in files.values()) else None,
                      what="the new password in every node's file")
    assert len(set(fields)) == 1 and verify_password(NEW, fields[0])
    for path in files.values():   # only that line changed
        assert load_credentials(path) == {**ACCOUNTS, "yoda": fields[0]}
    yoda.send({"type": "logout"})
    yoda.expect_closed()
    client = cluster.connect("ab")
    client.send({"type": "username", "username": "yoda"})
    client.expect("username_ok")
    client.send({"type": "password", "password": ACCOUNTS["yoda"]})
    client.expect("error", code="invalid_password")
    cluster_login(cluster.connect("ab"), "yoda", NEW)


def test_wrong_current_passwords_on_one_node_and_logins_on_another_lock_the_account_everywhere(cluster):
    yoda = cluster.login("c", "yoda")
    assert change(yoda, "guess") == {"type": "error", "code": "wrong_password"}
    client = cluster.connect("ab")
    client.send({"type": "username", "username": "yoda"})
    client.expect("username_ok")
    client.send({"type": "password", "password": "guess"})
    client.expect("error", code="invalid_password")
    assert change(yoda, "guess") == {"type": "error", "code": "account_blocked", "retry": 30}
    yoda.expect_closed()
    client = cluster.connect("ab")
    client.send({"type": "username", "username": "yoda"})
    assert client.recv()["code"] == "account_locked"
