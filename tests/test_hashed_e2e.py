"""The real server with hashed and plain accounts side by side, its verifier process dying mid-check (the
waiting login hears try_again, everyone else chats on, and the restarted verifier logs the next one in), and a
crowd logging in to hashed accounts at once."""
import os
import signal
import subprocess

import pytest

from reactor.server.passwords import hash_password
from tests.support import ACCOUNTS, ClientProcess, ServerProcess, wait_for

pytestmark = pytest.mark.e2e   # starts the real server or client

HASHED = {**ACCOUNTS, "yoda": hash_password(ACCOUNTS["yoda"]), "vader": hash_password(ACCOUNTS["vader"])}


@pytest.fixture
def server(tmp_path):
    """With its metrics, which tell when a check is under way (chat_password_checks_pending), and one helper: the
    tests stop and kill "the" verifier (with one per core, a check could go to a second one)."""
    server = ServerProcess(tmp_path, accounts=HASHED, extra=("--metrics", "127.0.0.1:0", "--password-helpers", "1"))
    yield server
    server.stop()


def children(server):
    """The server's child processes (its password verifiers)."""
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
        return [int(pid) for pid in f.read().split()]


def verifier_pid(server):
    """The server's one child process (its password verifier), or None."""
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
        children = f.read().split()
    assert len(children) <= 1, children
    return int(children[0]) if children else None


def bytes_waiting_for(pid):
    """The bytes waiting to be read on process ``pid``'s sockets (``ss``: the server's check sent to a stopped
    verifier waits in its socket)."""
    listing = subprocess.run(["ss", "-x", "-p", "-n"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[2]) for line in listing.splitlines() if f"pid={pid}," in line)


def test_hashed_and_plain_accounts_log_in_side_by_side_and_wrong_hashed_passwords_lock(server):
    hans, yoda = server.client(), server.client()
    hans.login("hans")                       # plain
    yoda.login("yoda")                       # hashed: the verifier starts
    assert verifier_pid(server) is not None
    hans.send({"type": "message", "to": "yoda", "text": "hi"})
    yoda.expect("message", **{"from": "hans", "text": "hi"})
    guesser = server.client()
    guesser.send({"type": "username", "username": "vader"})
    guesser.expect("username_ok")
    for expected in ("invalid_password", "invalid_password", "account_blocked"):
        guesser.send({"type": "password", "password": "guess"})
        guesser.expect("error", code=expected)
    guesser.expect_closed()
    assert "sithlord" not in server.log() and "guess" not in server.log()   # no password in the log


def test_the_verifier_dying_mid_check_fails_that_login_clearly_and_harms_nobody(server):
    hans, luke = server.client(), server.client()
    hans.login("hans")
    luke.login("yoda")   # starts the verifier
    first = verifier_pid(server)
    os.kill(first, signal.SIGSTOP)   # the next check waits in it ...
    waiting = server.client()
    waiting.send({"type": "username", "username": "vader"})
    waiting.expect("username_ok")
    waiting.send({"type": "password", "password": ACCOUNTS["vader"]})
    os.kill(first, signal.SIGKILL)   # ... and it dies
    waiting.expect("error", code="try_again")
    hans.send({"type": "message", "to": "yoda", "text": "still here"})   # the others chat on
    luke.expect("message", **{"from": "hans", "text": "still here"})
    wait_for(lambda: verifier_pid(server) not in (None, first), what="a new verifier")
    waiting.send({"type": "password", "password": ACCOUNTS["vader"]})   # the same connection, once more
    waiting.expect("welcome", user="vader")
    assert "password verifier stopped" in server.log()


def test_the_client_sends_the_password_again_by_itself_while_it_cannot_be_checked(server, tmp_path):
    """21.7: the real client retries try_again, saying so once; nobody types the password twice."""
    server.client().login("yoda")   # the verifier runs
    first = verifier_pid(server)
    os.kill(first, signal.SIGSTOP)
    client = ClientProcess(server.host, server.port, cwd=tmp_path)
    try:
        client.type("vader")
        client.expect("Password: ")
        client.type(ACCOUNTS["vader"])
        wait_for(lambda: bytes_waiting_for(first), what="the check handed to the stopped verifier")
        os.kill(first, signal.SIGKILL)
        client.expect("Checking password...")
        client.expect("Welcome to the greatest messaging application ever!")   # once the verifier is back
        assert client.text().count("Checking password...") == 1
        assert "Password: " not in client.text().split("Checking password...")[1]   # not asked again
    finally:
        client.kill()


def test_two_hundred_logins_to_hashed_accounts_at_once_all_get_in_without_try_again(tmp_path):
    """Two helpers check side by side and the 200 waiting checks fit (128 a helper): nobody is told to try again.
    Before the pool, one helper took 64 checks and the other 136 logins were told try_again."""
    crowd = 200
    hashed = hash_password("pw-crowd", log2_n=12)   # a quarter of the default's cost: the test stays short
    server = ServerProcess(tmp_path, accounts={f"u{i}": hashed for i in range(crowd)},
                           extra=("--password-helpers", "2", "--max-strangers-per-address", str(crowd)))
    clients = [server.client() for _ in range(crowd)]
    try:
        for i, client in enumerate(clients):
            client.send({"type": "username", "username": f"u{i}"})
        for client in clients:
            client.expect("username_ok")
        for client in clients:   # all 200 passwords at once
            client.send({"type": "password", "password": "pw-crowd"})
        try_again = welcomed = 0
        for i, client in enumerate(clients):
            while True:
                frame = client.recv()
                if frame.get("code") == "try_again":   # a client that retries by itself would send it again
                    try_again += 1
                    client.send({"type": "password", "password": "pw-crowd"})
                elif frame.get("type") == "welcome":
                    assert frame.get("user") == f"u{i}"
                    welcomed += 1
                    break
        assert (welcomed, try_again) == (crowd, 0)
        assert len(children(server)) == 2   # the pool's two helpers did the checks
    finally:
        for client in clients:
            client.close()
        server.stop()
