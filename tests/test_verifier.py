"""The verifier process on a real loop: answers, its death mid-check, restarts, a hung or lying helper,
the bound on waiting checks; the host with hashed and plain accounts; the client's words for try_again."""
import json
import os
import signal
import socket
import sys

import pytest

from reactor.client.rules import ChatClient, Print, Prompt, ToServer
from reactor.loop import EventLoop
from reactor.server.host import ServerHost
from reactor.server.passwords import hash_password
from reactor.server.rules import ChatServer
from reactor.server.verifier import Verifier
from tests.support import ACCOUNTS, PATIENCE, run_until

HASH = hash_password("wise@!man", log2_n=10)


class Run:
    """A Verifier on its own loop, recording its answers."""

    def __init__(self, **kw):
        self.loop = EventLoop()
        self.answers = []
        self.verifier = Verifier(self.loop, lambda key, ok: self.answers.append((key, ok)), **kw)

    def until(self, predicate):
        run_until(self.loop, predicate, timeout=PATIENCE)

    def close(self):
        self.verifier.close()
        self.loop.close()


def alive(pid):
    """Whether process ``pid`` exists, as a zombie too: once it is gone it was also reaped."""
    return os.path.exists(f"/proc/{pid}")


@pytest.mark.e2e   # starts the verifier process
def test_it_checks_in_a_process_of_its_own_and_answers_in_order():
    run = Run()
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.verifier.check(2, HASH, "wrong")
        run.verifier.check(3, "$scrypt$malformed", "wise@!man")
        pid = run.verifier.pid
        assert pid is not None and pid != os.getpid() and run.verifier.pending == 3
        run.until(lambda: len(run.answers) == 3)
        assert run.answers == [(1, True), (2, False), (3, False)]
        run.verifier.close()
        run.until(lambda: not alive(pid))   # end of input: the helper exits, and is reaped
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier process
def test_a_helper_killed_mid_check_fails_what_waited_and_is_restarted():
    run = Run()
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.until(lambda: run.answers)   # the helper runs
        first = run.verifier.pid
        os.kill(first, signal.SIGSTOP)   # it holds the next checks ...
        run.verifier.check(2, HASH, "wise@!man")
        run.verifier.check(3, HASH, "wise@!man")
        os.kill(first, signal.SIGKILL)   # ... and dies with them
        run.until(lambda: len(run.answers) == 3)
        assert run.answers[1:] == [(2, None), (3, None)]
        run.verifier.check(4, HASH, "wise@!man")   # while it is down: at once, None
        run.until(lambda: len(run.answers) == 4)
        assert run.answers[3] == (4, None)
        run.until(lambda: run.verifier.pid is not None)   # restarted
        assert run.verifier.pid != first
        run.until(lambda: not alive(first))
        run.verifier.check(5, HASH, "wise@!man")
        run.until(lambda: len(run.answers) == 5)
        assert run.answers[4] == (5, True)
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier process
def test_checks_beyond_max_pending_are_answered_none_at_once():
    run = Run(max_pending=2)
    try:
        for key in (1, 2, 3):
            run.verifier.check(key, HASH, "wise@!man")
        assert run.verifier.pending == 2
        run.until(lambda: len(run.answers) == 3)
        assert run.answers == [(3, None), (1, True), (2, True)]   # the third first: it never waited
    finally:
        run.close()


HANGS = [sys.executable, "-c", "import time; time.sleep(60)"]
LIES = [sys.executable, "-c", "import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); "
                              "s.recv(100); s.sendall(b'{\"id\": 7, \"ok\": true}\\n'); s.recv(100)"]


@pytest.mark.e2e   # starts the verifier process
@pytest.mark.parametrize("helper, check_timeout", [(HANGS, 0.3), (LIES, 10.0)],   # the liar is caught long before 10 s
                         ids=["hangs past check_timeout", "answers what was not asked"])
def test_a_helper_that_misbehaves_is_killed_and_its_check_answered_none(helper, check_timeout):
    run = Run(check_timeout=check_timeout, command=helper)
    try:
        run.verifier.check(1, HASH, "wise@!man")
        pid = run.verifier.pid
        run.until(lambda: run.answers)
        assert run.answers == [(1, None)]
        run.until(lambda: not alive(pid))
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier process
def test_the_host_checks_hashed_accounts_in_the_verifier_and_plain_ones_itself():
    loop = EventLoop()
    logic = ChatServer({**ACCOUNTS, "yoda": HASH}, 10.0, 60.0)
    host = ServerHost(loop, logic)
    host.serve("127.0.0.1", 0)
    socks = {}
    try:
        for user in ("hans", "yoda"):
            sock = socks[user] = socket.create_connection(host.address[:2])
            for frame in ({"type": "hello", "version": 1}, {"type": "username", "username": user},
                          {"type": "password", "password": ACCOUNTS[user]}):
                sock.sendall(json.dumps(frame).encode() + b"\n")
            run_until(loop, lambda: user in logic.online_users(), timeout=PATIENCE)   # noqa: B023 (run now)
            assert (host.verifier.pid is None) == (user == "hans")   # started by the first hashed login
    finally:
        host.shutdown()
        for sock in socks.values():
            sock.close()
        for _ in range(300):
            loop.run_once(timeout=0.01)
        loop.close()


def test_the_client_says_try_again_and_asks_for_the_password_again():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("yoda", 0)
    c.server_frame({"type": "username_ok"}, 0)
    assert c.line("wise@!man", 0)[0] == ToServer({"type": "password", "password": "wise@!man"})
    assert c.server_frame({"type": "error", "code": "try_again"}, 0) == [
        Print("Error. The server cannot check passwords right now; try again"), Prompt("Password: ", secret=True)]


def test_the_helper_ends_quietly_when_the_server_goes_away_before_its_answer():
    """A server that dies (or stops) while a check runs leaves the helper nobody to answer: it exits 0, with no
    traceback on the terminal the server shared with it."""
    import subprocess
    ours, theirs = socket.socketpair()
    helper = subprocess.Popen([sys.executable, "-m", "reactor.server.verifier", str(theirs.fileno())],
                              pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE)
    theirs.close()
    hashed = hash_password("right")
    ours.sendall(json.dumps({"id": 1, "password": "right", "hash": hashed}).encode() + b"\n")
    ours.shutdown(socket.SHUT_RDWR)   # the end of input arrives while the answer is on its way: EPIPE
    ours.close()
    _, err = helper.communicate(timeout=PATIENCE)
    assert helper.returncode == 0 and err == b""
