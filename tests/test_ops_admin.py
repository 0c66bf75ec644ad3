"""The admin socket on the real loop, over a fake host: its file, its commands, their answers and their logs."""
import io
import logging
import os
import socket
import stat

import pytest

from reactor.framing import encode
from reactor.loop import EventLoop
from reactor.ops import admin as admin_module
from reactor.ops.admin import AdminServer, AdminSocketError, WhoRow, bind_admin_socket
from reactor.ops.admin_cli import duration, show
from reactor.ops.admin_commands import COMMANDS, BadArguments, parse
from tests.ops_harness import FakeChat
from tests.ops_support import AdminClient
from tests.support import run_until


@pytest.fixture
def chat():
    return FakeChat(users=3)


@pytest.fixture
def server(loop, tmp_path, chat):
    admin = AdminServer(loop, str(tmp_path / "admin.sock"), chat, chat.counts.admin_commands)
    yield admin
    admin.close()


def ask(loop, server, command, *args):
    return AdminClient(loop, server.path).ask(command, *args)


# -- the socket file ---------------------------------------------------------------------------------------

def test_the_socket_is_the_servers_users_alone(server):
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_a_stale_socket_of_a_dead_server_is_replaced(loop, tmp_path, chat, caplog):
    path = str(tmp_path / "admin.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()   # (the file stays, nobody listens: what a killed server leaves)
    with caplog.at_level(logging.INFO, logger="reactor.ops.admin"):
        server = AdminServer(loop, path, chat)
    assert "replacing" in caplog.text
    assert ask(loop, server, "who")[-1] == {"ok": "3 users online."}
    server.close()


def test_a_live_servers_socket_is_refused(loop, tmp_path, chat):
    server = AdminServer(loop, str(tmp_path / "admin.sock"), chat)
    with pytest.raises(AdminSocketError, match="another server is listening on it"):
        AdminServer(loop, server.path, chat)
    assert ask(loop, server, "who")[-1] == {"ok": "3 users online."}   # the first still serves
    server.close()


def test_a_path_that_is_not_a_socket_is_left_alone(tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("precious")
    with pytest.raises(AdminSocketError, match="exists and is not a socket"):
        bind_admin_socket(str(path))
    assert path.read_text() == "precious"


def test_a_directory_that_is_missing_is_a_clear_error(tmp_path):
    with pytest.raises(AdminSocketError, match=r"Cannot open the admin socket .*: No such file or directory"):
        bind_admin_socket(str(tmp_path / "missing" / "admin.sock"))


def test_closing_removes_the_socket_but_not_a_successors(loop, tmp_path, chat):
    server = AdminServer(loop, str(tmp_path / "admin.sock"), chat)
    server.close()
    assert not os.path.exists(server.path)
    first = AdminServer(loop, str(tmp_path / "other.sock"), chat)
    os.unlink(first.path)   # someone removed it, and another server took the path
    successor = AdminServer(loop, first.path, chat)
    first.close()
    assert ask(loop, successor, "who")[-1] == {"ok": "3 users online."}
    successor.close()
    assert not os.path.exists(successor.path)


# -- the commands ------------------------------------------------------------------------------------------

def test_who_lists_each_user_online(loop, server, chat):
    frames = ask(loop, server, "who")
    assert frames[0] == {"columns": ["user", "address", "since", "idle", "tls", "node"]}
    rows = [f["row"] for f in frames[1:-1]]
    assert [r[0] for r in rows] == ["user0", "user1", "user2"]
    assert rows[0] == list(chat.who()[0])
    assert frames[-1] == {"ok": "3 users online."}


def test_who_of_many_users_goes_out_a_slice_a_turn(loop, tmp_path):
    chat = FakeChat(users=2_600)
    server = AdminServer(loop, str(tmp_path / "admin.sock"), chat)
    client = AdminClient(loop, server.path)
    client.sock.sendall(encode({"command": "who", "args": []}))
    turns = 0
    while not client.closed:
        loop.run_once(timeout=0.5)
        client.pump()
        turns += 1
    frames = client.frames()
    assert len([f for f in frames if "row" in f]) == 2_600
    assert frames[-1] == {"ok": "2600 users online."}
    assert turns >= 2_600 // admin_module.ROWS_PER_TURN
    assert chat.who_calls == 1
    server.close()


def test_kick_ends_a_session_and_says_so(loop, server, chat):
    assert ask(loop, server, "kick", "user1", "spamming", "the", "chat")[-1] == {"ok": "Kicked user1."}
    assert chat.kicked == [("user1", "spamming the chat")]
    assert ask(loop, server, "kick", "user2")[-1] == {"ok": "Kicked user2."}
    assert chat.kicked[-1] == ("user2", None)
    assert ask(loop, server, "kick", "user1")[-1] == {"error": "Error. user1 is not online.", "status": 1}


def test_lock_and_unlock(loop, server, chat):
    assert ask(loop, server, "lock", "alice", "90")[-1] == {"ok": "Locked alice for 90 seconds."}
    assert chat.locked == {"alice": 90.0}
    assert ask(loop, server, "lock", "nobody", "90")[-1] == {"error": "Error. There is no account nobody.",
                                                             "status": 1}
    assert ask(loop, server, "unlock", "alice")[-1] == {"ok": "Unlocked alice."}
    assert ask(loop, server, "unlock", "alice")[-1] == {"error": "Error. alice is not locked.", "status": 1}


def test_notice_reaches_every_user(loop, server, chat):
    assert ask(loop, server, "notice", "back", "in", "5", "minutes")[-1] == {"ok": "Notice sent to 3 users."}
    assert chat.notices == ["back in 5 minutes"]


def test_reload_says_whether_it_took(loop, server, chat):
    assert ask(loop, server, "reload")[-1] == {"ok": "Reloaded the accounts."}
    chat.reload_error = "credentials file not found: creds.txt"
    assert ask(loop, server, "reload")[-1] == {
        "error": "Error. Not reloaded, the old accounts stay: credentials file not found: creds.txt", "status": 1}
    assert chat.reloads == 2


def test_stats_is_the_metrics_as_a_table(loop, server, chat):
    chat.provide_sources()
    chat.counts.messages_relayed += 9
    frames = ask(loop, server, "stats")
    assert frames[0] == {"columns": ["metric", "value"]}
    rows = dict(f["row"] for f in frames if "row" in f)
    assert rows["chat_messages_relayed_total"] == 9
    assert rows["chat_users_online"] == 3
    assert rows['chat_admin_commands_total{command="stats"}'] == 1
    assert frames[-1] == {"ok": f"{len(rows)} figures."}


def test_each_command_is_counted(loop, server, chat):
    for command in ("who", "who", "reload", "nonsense"):
        ask(loop, server, command)
    counted = chat.counts.admin_commands
    assert (counted.who, counted.reload, counted.kick) == (2, 1, 0)
    assert counted.other == 0   # an unknown command is refused before it is counted


# -- wrong requests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("words, complaint", [
    (["shutdown"], "Error. Unknown command 'shutdown'. Commands: who, kick, lock, unlock, notice, reload, stats"),
    (["who", "extra"], "Error. who: takes no arguments. Usage: who"),
    (["kick"], "Error. kick: needs a USER. Usage: kick USER [REASON]"),
    (["lock", "alice"], "Error. lock: needs a USER and SECONDS. Usage: lock USER SECONDS"),
    (["lock", "alice", "soon"], "Error. lock: SECONDS must be a number of seconds more than 0 and at most "
                                "31536000 (a year). Usage: lock USER SECONDS"),
    (["lock", "alice", "nan"], "SECONDS must be a number"),
    (["lock", "alice", "-5"], "SECONDS must be a number"),
    (["unlock", "a b"], "USER must be a user name"),
    (["kick", "al\x1b[2Jice"], "USER must be a user name"),
    (["notice"], "Error. notice: needs a TEXT. Usage: notice TEXT"),
    (["notice", "   "], "TEXT must be 1 to 4096 characters"),
    (["notice", "x" * 4097], "TEXT must be 1 to 4096 characters"),
    (["notice", "hi\rthere"], "TEXT must be 1 to 4096 characters with no control characters"),
    (["kick", "alice", "r" * 201], "REASON must be 1 to 200 characters"),
])
def test_unknown_commands_and_bad_arguments_are_refused_with_status_2(loop, server, chat, words, complaint):
    [answer] = ask(loop, server, *words)
    assert answer["status"] == 2 and complaint in answer["error"], answer
    assert answer["error"].startswith("Error. ")
    assert (chat.kicked, chat.locked, chat.notices) == ([], {}, [])


@pytest.mark.parametrize("raw", [b"who\n", b"[1,2]\n", b'{"command": 5}\n', b'{"command": "kick", "args": "alice"}\n',
                                 b'{"command": "kick", "args": [1]}\n'])
def test_a_request_that_is_not_one_is_refused_with_status_2(loop, server, raw):
    [answer] = AdminClient(loop, server.path).ask(None, raw=raw)
    assert answer["status"] == 2 and answer["error"].startswith("Error. ")


def test_a_request_too_long_ends_the_connection(loop, server):
    """However much more is sent, the server reads no more once a line passes MAX_REQUEST, and closes."""
    client = AdminClient(loop, server.path)
    data = memoryview(b"x" * (admin_module.MAX_REQUEST + 10) + b"\n" + b"y" * (8 << 20))
    run_until(loop, lambda: server.connections == 1)

    def sent_or_refused():
        nonlocal data
        try:
            data = data[client.sock.send(data):]
        except BlockingIOError:
            pass
        except OSError:
            return True
        return server.connections == 0
    run_until(loop, sent_or_refused)
    run_until(loop, lambda: server.connections == 0)
    assert len(data) > 0   # (it stopped taking them)


def test_a_host_that_fails_is_an_error_with_status_1(loop, server, chat, caplog):
    chat.fail = RuntimeError("the store is gone")
    with caplog.at_level(logging.ERROR, logger="reactor.ops.admin"):
        [answer] = ask(loop, server, "kick", "user0")
    assert answer == {"error": "Error. The server could not kick: the store is gone", "status": 1}
    assert "the store is gone" in caplog.text
    with caplog.at_level(logging.ERROR, logger="reactor.ops.admin"):
        frames = ask(loop, server, "who")
    assert frames[-1]["status"] == 1


def test_one_request_a_connection(loop, server, chat):
    client = AdminClient(loop, server.path)
    client.sock.sendall(encode({"command": "kick", "args": ["user0"]}) + encode({"command": "kick", "args": ["user1"]}))
    run_until(loop, lambda: (client.pump(), client.closed)[1])
    assert client.frames() == [{"ok": "Kicked user0."}]
    assert chat.kicked == [("user0", None)]


def test_connections_over_the_limit_are_closed(loop, tmp_path, chat):
    server = AdminServer(loop, str(tmp_path / "admin.sock"), chat, max_connections=1)
    first = AdminClient(loop, server.path)
    run_until(loop, lambda: server.connections == 1)
    second = AdminClient(loop, server.path)
    run_until(loop, lambda: (second.pump(), second.closed)[1])
    assert second.data == b""
    assert first.ask("who")[-1] == {"ok": "3 users online."}
    server.close()


def test_a_silent_connection_is_closed_in_time(clock, tmp_path, chat):
    loop = EventLoop()
    loop.time = clock
    server = AdminServer(loop, str(tmp_path / "admin.sock"), chat, timeout=30.0)
    client = AdminClient(loop, server.path)
    run_until(loop, lambda: server.connections == 1)
    clock.now += 31
    run_until(loop, lambda: (client.pump(), client.closed)[1])
    assert server.connections == 0
    server.close()
    loop.close()


# -- the log -----------------------------------------------------------------------------------------------

def test_every_action_is_logged_with_what_and_to_whom(loop, server, chat, caplog):
    with caplog.at_level(logging.INFO, logger="reactor.ops.admin"):
        ask(loop, server, "kick", "user0", "flooding")
        ask(loop, server, "lock", "bob", "60")
        ask(loop, server, "unlock", "bob")
        ask(loop, server, "notice", "the secret word is swordfish")
        ask(loop, server, "reload")
        ask(loop, server, "who")
        ask(loop, server, "stats")
    records = [(r.getMessage(), getattr(r, "action", None), getattr(r, "user", None)) for r in caplog.records]
    assert records == [("admin: kicked user0 (flooding)", "kick", "user0"),
                       ("admin: locked bob for 60s", "lock", "bob"),
                       ("admin: unlocked bob", "unlock", "bob"),
                       ("admin: notice of 28 characters to 2 users", "notice", None),
                       ("admin: reloaded the accounts", "reload", None),
                       ("admin: who", "who", None),
                       ("admin: stats", "stats", None)]
    assert caplog.records[0].reason == "flooding"
    assert "swordfish" not in caplog.text


# -- the command line's side -------------------------------------------------------------------------------

def test_the_command_line_and_the_server_check_the_same_way():
    assert set(COMMANDS) == {"who", "kick", "lock", "unlock", "notice", "reload", "stats"}
    assert parse("kick", ["alice", "too", "loud"])[1] == ("alice", "too loud")
    assert parse("lock", ["alice", "1.5"])[1] == ("alice", 1.5)
    with pytest.raises(BadArguments):
        parse("lock", ["alice", "inf"])


def test_a_table_is_shown_aligned_with_times_and_flags_in_words():
    rows = [list(WhoRow("alice", "127.0.0.1", 0.0, 75.0, True, None)),
            list(WhoRow("b\x1bob", "::1", 0.0, 3.0, False, "node-a"))]
    out, err = io.StringIO(), io.StringIO()
    status = show([{"columns": ["user", "address", "since", "idle", "tls", "node"]},
                   *({"row": r} for r in rows), {"ok": "2 users online."}], out, err)
    assert status == 0 and err.getvalue() == ""
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["USER", "ADDRESS", "SINCE", "IDLE", "TLS", "NODE"]
    assert lines[1].split()[0:2] == ["alice", "127.0.0.1"] and lines[1].split()[4:] == ["1m15s", "yes", "-"]
    assert lines[2].split()[0] == "b^[ob" and lines[2].split()[4:] == ["3s", "no", "node-a"]
    assert lines[1].index("127.0.0.1") == lines[2].index("::1")   # aligned
    assert lines[3] == "2 users online."


def test_an_error_answer_is_shown_on_stderr_with_its_status():
    out, err = io.StringIO(), io.StringIO()
    assert show([{"error": "Error. alice is not online.", "status": 1}], out, err) == 1
    assert (out.getvalue(), err.getvalue()) == ("", "Error. alice is not online.\n")
    assert show([{"error": "Error. Unknown command", "status": 2}], out, err) == 2
    assert show([{"error": "Error. odd", "status": 99}], out, err) == 1


@pytest.mark.parametrize("seconds, shown", [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"),
                                            (3600, "1h00m"), (86399, "23h59m"), (90000, "1d01h")])
def test_durations_read_as_a_person_would(seconds, shown):
    assert duration(seconds) == shown
