"""The admin command as an operator runs it: ``reactor-chat-admin`` and ``server_main.py admin`` against the real
server's admin socket (``--admin-socket``), with real clients on the chat: who, kick, lock, unlock, notice, reload,
stats, and every action in the server's log. Cluster mode's: tests/test_cluster_e2e.py."""
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.support import (
    ACCOUNTS,
    PATIENCE,
    ROOT,
    ClientProcess,
    ServerProcess,
    WireClient,
    admin,
    coverage_env,
    wait_for,
    write_credentials,
)

pytestmark = pytest.mark.e2e
ADMIN = pathlib.Path(sys.executable).parent / "reactor-chat-admin"   # the console script make installs


def admin_server(tmp_path, accounts=ACCOUNTS, extra=()):
    path = str(tmp_path / "admin.sock")
    server = ServerProcess(tmp_path, block=30, accounts=accounts, extra=("--admin-socket", path, *extra))
    server.socket_path = path
    return server


@pytest.fixture
def server(tmp_path):
    process = admin_server(tmp_path)
    yield process
    process.stop()


def figures(path):
    """``stats`` as a dict of series to value (the last column of each row)."""
    status, out, err = admin(path, "stats")
    assert (status, err) == (0, ""), err
    return dict(line.rsplit(None, 1) for line in out.splitlines()[1:-1])


def test_who_on_a_thousand_users(tmp_path):
    users = {f"user{i:04d}": f"pw-{i}" for i in range(1000)}
    server = admin_server(tmp_path, users, ("--max-strangers", "2000", "--max-strangers-per-address", "2000"))
    socks = []
    try:
        for user, password in users.items():   # each logs in with one write; nobody reads its presence news
            sock = socket.create_connection((server.host, server.port))
            sock.sendall(b'{"type":"hello","version":2}\n{"type":"username","username":"%s"}\n'
                         b'{"type":"password","password":"%s"}\n' % (user.encode(), password.encode()))
            socks.append(sock)
        wait_for(lambda: figures(server.socket_path)["chat_users_online"] == "1000", what="1,000 users online")
        start = time.perf_counter()
        status, out, err = admin(server.socket_path, "who", command=[str(ADMIN)])
        took = time.perf_counter() - start
        assert (status, err) == (0, "")
        lines = out.splitlines()
        assert lines[0].split() == ["USER", "ADDRESS", "SINCE", "IDLE", "TLS", "NODE"]
        assert len(lines) == 1 + 1000 + 1 and lines[-1] == "1000 users online."
        rows = [line.split() for line in lines[1:-1]]
        assert {row[0] for row in rows} == set(users)
        assert {(row[1], row[-2], row[-1]) for row in rows} == {("127.0.0.1", "no", "-")}
        print(f"\nreactor-chat-admin who on 1,000 users of the real server: {took * 1e3:.0f} ms, the interpreter's "
              f"start included")
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_kick_lock_unlock_notice_as_the_users_clients_show_them(server):
    path = server.socket_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    yoda, luke = ClientProcess(server.host, server.port), ClientProcess(server.host, server.port)
    try:
        yoda.login("yoda")
        luke.login("luke")
        luke.barrier()
        assert admin(path, "notice", "restarting", "at", "noon") == (0, "Notice sent to 2 users.\n", "")
        for client in (yoda, luke):
            client.expect("[server] restarting at noon")
        assert admin(path, "kick", "yoda", "flooding", "the", "chat") == (0, "Kicked yoda.\n", "")
        yoda.expect("Error. You were disconnected by the operator: flooding the chat")
        assert yoda.wait() == 1
        luke.expect("yoda logged out")
        assert admin(path, "kick", "yoda") == (1, "", "Error. yoda is not online.\n")
        assert admin(path, "lock", "luke", "60") == (0, "Locked luke for 60 seconds.\n", "")
        luke.expect("Error. You were disconnected by the operator")
        assert luke.wait() == 1
        again = WireClient(server.host, server.port)
        again.send({"type": "username", "username": "luke"})
        assert again.expect("error")["code"] == "account_locked"
        assert admin(path, "unlock", "luke") == (0, "Unlocked luke.\n", "")
        assert admin(path, "unlock", "luke") == (1, "", "Error. luke is not locked.\n")
        assert WireClient(server.host, server.port).login("luke")["type"] == "welcome"
        assert admin(path, "lock", "nobody", "60") == (1, "", "Error. There is no account nobody.\n")
    finally:
        yoda.kill()
        luke.kill()
    log = server.log()
    for line in ("admin: notice of 18 characters to 2 users", "admin: kicked yoda (flooding the chat)",
                 "admin: locked luke for 60s", "admin: unlocked luke", "admin: kick yoda: not online"):
        assert line in log, line
    assert "restarting at noon" not in log   # a notice's text is not logged


def test_reload_says_whether_it_took_and_stats_are_the_metrics(server, tmp_path):
    path = server.socket_path
    write_credentials(tmp_path, {**ACCOUNTS, "rey": "force*awakens"})
    assert admin(path, "reload") == (0, "Reloaded the accounts.\n", "")
    rey = WireClient(server.host, server.port)
    assert rey.login("rey", "force*awakens")["type"] == "welcome"
    (tmp_path / "credentials.txt").write_text("rey\n")
    status, out, err = admin(path, "reload")
    assert (status, out) == (1, "") and err.startswith("Error. Not reloaded, the old accounts stay: ")
    stats = figures(path)
    assert stats["chat_users_online"] == "1" and stats["chat_logins_succeeded_total"] == "1"
    assert stats['chat_admin_commands_total{command="reload"}'] == "2"
    assert stats['chat_admin_commands_total{command="stats"}'] == "1"   # (this one, counted before it answers)
    assert "chat_loop_turn_seconds_count" in stats and "chat_cluster_fenced" not in stats
    assert "admin: reload failed, the old accounts stay" in server.log()
    rey.close()


@pytest.mark.parametrize("args, complaint", [
    (["frobnicate"], "Error. Unknown command 'frobnicate'."),
    (["lock", "alice"], "Error. lock: needs a USER and SECONDS. Usage: lock USER SECONDS"),
    (["lock", "alice", "forever"], "Error. lock: SECONDS must be a number"),
    (["who", "now"], "Error. who: takes no arguments."),
])
def test_unknown_commands_and_bad_arguments_exit_2(server, args, complaint):
    status, out, err = admin(server.socket_path, *args)
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


def test_a_killed_servers_socket_is_replaced_by_the_next_and_a_live_ones_is_refused(tmp_path):
    first = admin_server(tmp_path)
    path = first.socket_path
    first.stop(signal.SIGKILL)
    assert os.path.exists(path)   # (a killed server cleans nothing up)
    second = admin_server(tmp_path)
    try:
        assert admin(path, "reload")[0] == 0
        third = subprocess.run([sys.executable, str(ROOT / "server_main.py"), "0", "1", "30", "--credentials",
                                str(tmp_path / "credentials.txt"), "--state", ":memory:", "--admin-socket", path],
                               capture_output=True, text=True, timeout=PATIENCE, env=coverage_env(), cwd=tmp_path)
        assert third.returncode == 2 and third.stdout == ""
        assert third.stderr == f"Error. Cannot open the admin socket {path}: another server is listening on it\n"
        assert admin(path, "reload")[0] == 0   # the live one's is untouched
    finally:
        second.stop()
    assert not os.path.exists(path)
