"""The admin command as an operator runs it: ``reactor-chat-admin`` and ``server_main.py admin`` against a real
loop's admin socket (the stand-in server of tests/ops_harness.py, until the hosts carry it)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.ops_harness import HarnessProcess
from tests.support import ROOT, coverage_env

pytestmark = pytest.mark.e2e
ADMIN = pathlib.Path(sys.executable).parent / "reactor-chat-admin"   # the console script make installs


def admin(*args, command=None):
    """Run the admin command; (exit status, stdout, stderr)."""
    argv = command or [sys.executable, str(ROOT / "server_main.py"), "admin"]
    out = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, env=coverage_env(), cwd=ROOT)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def harness(tmp_path):
    socket_path = str(tmp_path / "admin.sock")
    process = HarnessProcess(tmp_path, "--admin", socket_path, "--users", "1000")
    process.socket_path = socket_path
    yield process
    process.stop()


def test_who_on_a_thousand_users(harness):
    start = time.perf_counter()
    status, out, err = admin(harness.socket_path, "who", command=[str(ADMIN)])
    took = time.perf_counter() - start
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "ADDRESS", "SINCE", "IDLE", "TLS", "NODE"]
    assert len(lines) == 1 + 1000 + 1 and lines[-1] == "1000 users online."
    assert {line.split()[0] for line in lines[1:-1]} == {f"user{i}" for i in range(1000)}
    print(f"\nreactor-chat-admin who on 1,000 users: {took * 1e3:.0f} ms, the interpreter's start included")


def test_kick_lock_unlock_notice_reload_and_stats(harness):
    path = harness.socket_path
    assert admin(path, "kick", "user5", "flooding") == (0, "Kicked user5.\n", "")
    assert admin(path, "kick", "user5") == (1, "", "Error. user5 is not online.\n")
    assert admin(path, "lock", "user6", "60") == (0, "Locked user6 for 60 seconds.\n", "")
    assert admin(path, "unlock", "user6") == (0, "Unlocked user6.\n", "")
    assert admin(path, "notice", "restarting at noon") == (0, "Notice sent to 998 users.\n", "")
    assert admin(path, "reload") == (0, "Reloaded the accounts.\n", "")
    status, out, _ = admin(path, "stats")
    assert status == 0
    figures = dict(line.rsplit(None, 1) for line in out.splitlines()[1:-1])
    assert figures["chat_users_online"] == "998"
    assert figures['chat_admin_commands_total{command="kick"}'] == "2"
    assert figures['chat_lockouts_total{cause="operator"}'] == "1"


@pytest.mark.parametrize("args, complaint", [
    (["frobnicate"], "Error. Unknown command 'frobnicate'."),
    (["lock", "alice"], "Error. lock: needs a USER and SECONDS. Usage: lock USER SECONDS"),
    (["lock", "alice", "forever"], "Error. lock: SECONDS must be a number"),
    (["who", "now"], "Error. who: takes no arguments."),
])
def test_unknown_commands_and_bad_arguments_exit_2(harness, args, complaint):
    status, out, err = admin(harness.socket_path, *args)
    assert status == 2 and out == "" and err.startswith(complaint), err


def test_usage_and_a_missing_server(tmp_path):
    status, _, err = admin()
    assert status == 2 and err.startswith("Error. Give the admin socket's PATH and a COMMAND.")
    assert "kick USER [REASON]" in err
    status, out, _ = admin("--help", command=[str(ADMIN)])
    assert status == 0 and "lock USER SECONDS" in out
    status, _, err = admin(str(tmp_path / "none.sock"), "who")
    assert status == 1 and err == f"Error. Cannot reach the server at {tmp_path / 'none.sock'}: " \
                                  "No such file or directory\n"
    # a bad command is refused before any connection: the same words with or without a server
    assert admin(str(tmp_path / "none.sock"), "lock", "x")[0] == 2


def test_a_killed_servers_socket_is_replaced_by_the_next(tmp_path):
    path = str(tmp_path / "admin.sock")
    first = HarnessProcess(tmp_path, "--admin", path)
    first.stop(signal.SIGKILL)
    assert os.path.exists(path)   # (a killed server cleans nothing up)
    second = HarnessProcess(tmp_path, "--admin", path)
    assert admin(path, "reload")[0] == 0
    second.stop()
    assert not os.path.exists(path)
