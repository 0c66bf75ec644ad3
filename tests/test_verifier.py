"""The verifier's helper processes on a real loop: answers, a pool checking side by side, a helper's death
mid-check, restarts, a hung or lying helper, the bound on waiting checks; the host with hashed and plain
accounts; the client's words for try_again."""
import json
import os
import signal
import socket
import sys

import pytest

from reactor.client.rules import ChatClient, Print, Prompt, SetTimer, ToServer
from reactor.loop import EventLoop
from reactor.server.host import ServerHost
from reactor.server.passwords import hash_password, parse_hash, verify_password
from reactor.server.rules import ChatServer
from reactor.server.verifier import HELPER_NICENESS, MAX_PENDING_PER_HELPER, Verifier, default_helpers
from tests.support import ACCOUNTS, PATIENCE, run_until

HASH = hash_password("wise@!man", log2_n=10)


class Run:
    """A Verifier on its own loop, recording its answers (one helper unless told otherwise)."""

    def __init__(self, helpers=1, **kw):
        self.loop = EventLoop()
        self.answers = []
        self.hashes = []
        self.verifier = Verifier(self.loop, lambda key, ok: self.answers.append((key, ok)),
                                 on_hashed=lambda key, field: self.hashes.append((key, field)), helpers=helpers, **kw)

    @property
    def pid(self):
        """The one helper's process id, or None."""
        pids = self.verifier.pids
        assert len(pids) <= 1, pids
        return pids[0] if pids else None

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
        pid = run.pid
        assert pid is not None and pid != os.getpid() and run.verifier.pending == 3
        run.until(lambda: len(run.answers) == 3)
        assert run.answers == [(1, True), (2, False), (3, False)]
        run.verifier.close()
        run.until(lambda: not alive(pid))   # end of input: the helper exits, and is reaped
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier process
def test_it_hashes_a_new_password_in_the_same_queue_as_the_checks():
    """A password being changed is hashed in the helper, as slow as a check: never on the server's loop."""
    run = Run()
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.verifier.hash(2, "new*secret")
        run.verifier.check(3, HASH, "wrong")
        assert run.verifier.pending == 3 and len(run.verifier.pids) == 1
        run.until(lambda: len(run.answers) == 2 and run.hashes)
        assert run.answers == [(1, True), (3, False)]
        [(key, field)] = run.hashes
        assert key == 2 and str(parse_hash(field)) == field and verify_password("new*secret", field)
        assert not verify_password("wise@!man", field)
    finally:
        run.close()


def test_a_hash_that_cannot_be_made_is_answered_none(tmp_path):
    run = Run(command=[str(tmp_path / "no-such-helper")])
    try:
        run.verifier.hash(1, "new*secret")
        run.until(lambda: run.hashes)
        assert run.hashes == [(1, None)] and run.answers == []
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier process
def test_a_helper_killed_mid_check_fails_what_waited_and_is_restarted():
    run = Run()
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.until(lambda: run.answers)   # the helper runs
        first = run.pid
        os.kill(first, signal.SIGSTOP)   # it holds the next checks ...
        run.verifier.check(2, HASH, "wise@!man")
        run.verifier.check(3, HASH, "wise@!man")
        os.kill(first, signal.SIGKILL)   # ... and dies with them
        run.until(lambda: len(run.answers) == 3)
        assert run.answers[1:] == [(2, None), (3, None)]
        run.verifier.check(4, HASH, "wise@!man")   # while it is down: at once, None
        run.until(lambda: len(run.answers) == 4)
        assert run.answers[3] == (4, None)
        assert run.verifier.restarts == 0
        run.until(lambda: run.pid is not None)   # restarted
        assert run.pid != first and run.verifier.restarts == 1   # (counted for the metrics)
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


@pytest.mark.e2e   # starts the verifier processes
def test_a_pool_checks_side_by_side_in_helpers_started_as_checks_need_them():
    run = Run(helpers=2)
    try:
        run.verifier.check(1, HASH, "wise@!man")
        assert len(run.verifier.pids) == 1   # one check: one helper
        run.until(lambda: run.answers)
        run.verifier.check(2, HASH, "wise@!man")
        assert len(run.verifier.pids) == 1   # the first is idle again: it takes the second
        run.verifier.check(3, HASH, "wrong")
        run.verifier.check(4, HASH, "wise@!man")   # both busy, no more helpers: it waits its turn
        pids = run.verifier.pids
        assert len(pids) == 2 and os.getpid() not in pids and run.verifier.pending == 3
        run.until(lambda: len(run.answers) == 4)
        assert sorted(run.answers) == [(1, True), (2, True), (3, False), (4, True)]
        assert run.verifier.pending == 0
    finally:
        run.close()


@pytest.mark.e2e   # starts the verifier processes
def test_a_helper_of_a_pool_killed_mid_check_fails_only_its_own_check():
    run = Run(helpers=2)
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.verifier.check(2, HASH, "wise@!man")
        run.until(lambda: len(run.answers) == 2)
        first, second = run.verifier.pids
        os.kill(first, signal.SIGSTOP)
        os.kill(second, signal.SIGSTOP)
        run.verifier.check(3, HASH, "wise@!man")   # to the first ...
        run.verifier.check(4, HASH, "wise@!man")   # ... to the second ...
        run.verifier.check(5, HASH, "wise@!man")   # ... queued for whichever answers first
        os.kill(first, signal.SIGKILL)
        run.until(lambda: len(run.answers) == 3)
        assert run.answers[2] == (3, None) and run.verifier.pending == 2   # the queued check still waits
        os.kill(second, signal.SIGCONT)
        run.until(lambda: len(run.answers) == 5)
        assert run.answers[3:] == [(4, True), (5, True)]
        run.until(lambda: len(run.verifier.pids) == 2 and first not in run.verifier.pids)   # restarted
    finally:
        run.close()


HANGS = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.mark.e2e   # starts (hanging) helper processes
def test_a_pool_accepts_max_pending_per_helper_checks_by_default():
    run = Run(helpers=2, command=HANGS)
    try:
        for key in range(2 * MAX_PENDING_PER_HELPER + 1):
            run.verifier.check(key, HASH, "wise@!man")
        assert run.verifier.pending == 2 * MAX_PENDING_PER_HELPER and len(run.verifier.pids) == 2
        run.until(lambda: run.answers)
        assert run.answers == [(2 * MAX_PENDING_PER_HELPER, None)]   # the one too many, at once
    finally:
        run.close()
    assert len(run.answers) == 2 * MAX_PENDING_PER_HELPER + 1   # closing answered the others (None)


@pytest.mark.e2e   # starts the verifier process
def test_the_helper_runs_below_the_servers_priority():
    run = Run()
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.until(lambda: run.answers)   # (it has set its priority before it answers)
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, run.pid) == min(19, ours + HELPER_NICENESS) > ours
    finally:
        run.close()


def test_a_helper_that_cannot_be_started_answers_none_and_is_tried_again_later(tmp_path, caplog):
    run = Run(command=[str(tmp_path / "no-such-helper")])
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.until(lambda: run.answers)
        assert run.answers == [(1, None)] and run.verifier.pids == []
        assert "cannot start a password verifier" in caplog.text
        run.verifier.check(2, HASH, "wise@!man")   # while it waits to be tried again: at once
        run.until(lambda: len(run.answers) == 2)
        assert run.answers[1] == (2, None)
    finally:
        run.close()


def test_the_default_is_a_helper_per_core_this_process_may_run_on():
    loop = EventLoop()
    try:
        assert default_helpers() == len(os.sched_getaffinity(0))
        assert Verifier(loop, print).helpers == default_helpers()
        with pytest.raises(ValueError):
            Verifier(loop, print, helpers=0)
    finally:
        loop.close()
LIES = [sys.executable, "-c", "import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); "
                              "s.recv(100); s.sendall(b'{\"id\": 7, \"ok\": true}\\n'); s.recv(100)"]


@pytest.mark.e2e   # starts the verifier process
@pytest.mark.parametrize("helper, check_timeout", [(HANGS, 0.3), (LIES, 10.0)],   # the liar is caught long before 10 s
                         ids=["hangs past check_timeout", "answers what was not asked"])
def test_a_helper_that_misbehaves_is_killed_and_its_check_answered_none(helper, check_timeout):
    run = Run(check_timeout=check_timeout, command=helper)
    try:
        run.verifier.check(1, HASH, "wise@!man")
        pid = run.pid
        run.until(lambda: run.answers)
        assert run.answers == [(1, None)]
        run.until(lambda: not alive(pid))
    finally:
        run.close()


# Answers a hash request with a check's answer (its first request's id is 1): not what was asked.
CHECKS_NOT_HASHES = [sys.executable, "-c", "import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); "
                                           "s.recv(100); s.sendall(b'{\"id\": 1, \"ok\": true}\\n'); s.recv(100)"]


@pytest.mark.e2e   # starts a helper process
def test_a_helper_answering_a_hash_request_with_anything_but_a_hash_is_killed():
    run = Run(command=CHECKS_NOT_HASHES)
    try:
        run.verifier.hash(1, "new*secret")
        pid = run.pid
        run.until(lambda: run.hashes)
        assert run.hashes == [(1, None)] and run.answers == []
        run.until(lambda: not alive(pid))
    finally:
        run.close()


IN_ROOT = [sys.executable, "-c", "import os, socket, sys; s = socket.socket(fileno=int(sys.argv[1])); s.recv(100); "
                                "s.sendall(b'{\"id\": 1, \"ok\": %s}\\n' % str(os.path.isfile('server_main.py')"
                                " and os.path.isdir('reactor')).lower().encode()); s.recv(100)"]


@pytest.mark.e2e   # starts a helper process
def test_the_helper_runs_in_the_repository_root_where_python_m_finds_the_package():
    """``-m reactor.server.verifier`` needs the directory that holds ``reactor/`` (no installed package needed)."""
    run = Run(command=IN_ROOT)
    try:
        run.verifier.check(1, HASH, "wise@!man")
        run.until(lambda: run.answers)
        assert run.answers == [(1, True)]
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
            assert (not host.verifier.pids) == (user == "hans")   # started by the first hashed login
    finally:
        host.shutdown()
        for sock in socks.values():
            sock.close()
        for _ in range(300):
            loop.run_once(timeout=0.01)
        loop.close()


def test_the_client_sends_the_password_again_by_itself_saying_it_is_checking():
    """Nobody retypes a password because the server could not check it yet (reactor/client/retries.py)."""
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
    c.line("yoda", 0)
    c.server_frame({"type": "username_ok"}, 0)
    password = ToServer({"type": "password", "password": "wise@!man"})
    assert c.line("wise@!man", 0)[0] == password
    assert c.server_frame({"type": "error", "code": "try_again"}, 0) == [
        Print("Checking password..."), SetTimer(("password",), 0.25)]
    assert c.line("typed meanwhile", 0.1) == [Prompt("", secret=True)]   # waits: it is not the password
    assert c.timer_fired(("password",), 0.25) == [password]
    assert c.server_frame({"type": "error", "code": "try_again"}, 0.3) == [SetTimer(("password",), 0.8)]  # said once
    assert c.timer_fired(("password",), 0.8) == [password]
    assert Print("Welcome to the greatest messaging application ever!") in c.server_frame(
        {"type": "welcome", "user": "yoda"}, 1.0)
    assert c.timer_fired(("password",), 2.0) == []                        # forgotten once answered


def test_a_try_again_when_no_password_is_held_asks_for_it():
    c = ChatClient()
    c.start(0)
    c.server_frame({"type": "hello", "version": 2}, 0)
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
