"""The real server recording a journal (``--record``) and ``server_main.py replay`` replaying it, end to end."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.support import (
    ACCOUNTS,
    PATIENCE,
    ROOT,
    ClientProcess,
    ServerProcess,
    TerminalClient,
    cluster_login,
    coverage_env,
    wait_for,
)
from tests.terminal_model import Screen

pytestmark = pytest.mark.e2e

CERT = "MIIBkTCB-a-certificate-of-yodas-client"


def replay(*args):
    """``server_main.py replay`` with ``args``: its exit status, and its output as bytes (``screen``: the terminal's,
    line ends and all) and as text."""
    done = subprocess.run([sys.executable, str(ROOT / "server_main.py"), "replay", *map(str, args)],
                          capture_output=True, timeout=PATIENCE * 3, env=coverage_env())
    done.screen = done.stdout
    done.stdout, done.stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    return done


def test_a_recorded_session_replays_exactly_and_its_journal_holds_no_secret(tmp_path):
    journal = tmp_path / "chat.journal"
    server = ServerProcess(tmp_path, extra=["--record", str(journal), "--state", ":memory:"])
    yoda = server.client()
    yoda.send({"type": "username", "username": "yoda"})
    yoda.expect("username_ok")
    yoda.send({"type": "password", "password": "a-wrong-guess"})
    yoda.expect("error", code="invalid_password")
    yoda.send({"type": "password", "password": ACCOUNTS["yoda"]})
    yoda.expect("welcome")
    yoda.send({"type": "listen", "port": 4000, "cert": CERT})
    luke = server.client()
    luke.login("luke")
    texts = ["use the force, luke", "caf\u00e9 \U0001F600 later", "two\tcolumns"]
    for text in texts:
        yoda.send({"type": "message", "to": "luke", "text": text})
        assert luke.until("message")["text"] == text
    yoda.send({"type": "message", "to": "hans", "text": "kept for hans"})
    yoda.until("stored")
    yoda.send({"type": "startprivate", "user": "luke"})
    luke.until("private_request")
    luke.send({"type": "private_answer", "user": "yoda", "accept": True})
    token = luke.until("private_expect")["token"]
    luke.send({"type": "private_ready", "user": "yoda", "token": token})
    connect = yoda.until("private_connect")
    assert connect["token"] == token
    assert server.stop() == 0

    text = journal.read_text()
    header = json.loads(text.splitlines()[0])
    assert header["journal"] == "reactor-chat" and header["side"] == "server" and header["rules"] == "ChatServer"
    secrets = [*ACCOUNTS.values(), "a-wrong-guess", CERT, token, *texts, "kept for hans", "caf\u00e9", "columns"]
    assert [s for s in secrets if s in text or json.dumps(s)[1:-1] in text] == []
    assert (journal.stat().st_mode & 0o777) == 0o600

    done = replay(journal)
    assert done.returncode == 0, done.stderr
    assert "every event's effects as recorded" in done.stderr
    timeline = replay(journal, "--print", "--user", "hans")
    assert timeline.returncode == 0
    assert timeline.stdout.splitlines()[-1].endswith("yoda -> hans: message (stored: hans offline)")


def test_a_full_disk_stops_the_recording_with_one_log_line_and_the_chat_goes_on(tmp_path):
    server = ServerProcess(tmp_path, extra=["--record", "/dev/full", "--state", ":memory:"])
    yoda, luke = server.client(), server.client()
    yoda.login("yoda")
    luke.login("luke")
    for n in range(20):
        yoda.send({"type": "message", "to": "luke", "text": f"still here {n}"})
        assert luke.until("message")["text"] == f"still here {n}"
    wait_for(lambda: "recording stopped" in server.log(), what="the line that says the recording stopped")
    assert server.stop() == 0
    lines = [line for line in server.log().splitlines() if "recording stopped" in line]
    assert len(lines) == 1 and "the disk is full" in lines[0] and "the chat goes on" in lines[0]


def test_a_journal_split_by_max_bytes_replays_from_its_last_file(tmp_path):
    journal = tmp_path / "chat.journal"
    server = ServerProcess(tmp_path, extra=["--record", str(journal), "--record-max-bytes", "2K",
                                            "--state", ":memory:", "--rate", "0"])
    yoda, luke = server.client(), server.client()
    yoda.login("yoda")
    luke.login("luke")
    for n in range(200):
        yoda.send({"type": "message", "to": "luke", "text": f"number {n}"})
        luke.until("message")
    assert server.stop() == 0
    segments = sorted(tmp_path.glob("chat.journal.*"))
    assert len(segments) >= 3
    done = replay(journal)
    assert done.returncode == 0, done.stderr
    assert "every event's effects as recorded" in done.stderr
    count = int(done.stderr.split("replayed ")[1].split(" ")[0])
    assert count >= 200


def test_a_file_that_cannot_be_written_is_said_at_start(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "server_main.py"), "0", "1", "30", "--credentials",
                          str(ROOT / "credentials.txt"), "--state", ":memory:", "--record",
                          str(tmp_path / "no" / "such" / "dir" / "j")],
                         capture_output=True, text=True, timeout=PATIENCE, env=coverage_env())
    assert out.returncode == 1
    assert "Error. Cannot record to" in out.stderr and "No such file or directory" in out.stderr


def test_a_client_on_a_terminal_records_a_journal_that_draws_its_screen_again(tmp_path):
    server = ServerProcess(tmp_path, extra=["--state", ":memory:"])
    luke = server.client()
    luke.login("luke")
    journal = tmp_path / "client.journal"
    client = TerminalClient(server.host, server.port, cols=70, args=("--record", str(journal)))
    try:
        client.expect("Username: ")
        client.keys(b"yoda\r")
        client.expect("Password: ")
        client.keys(ACCOUNTS["yoda"].encode() + b"\r")
        client.expect("Welcome")
        client.expect("> ")
        client.keys(b"message luke the plans are in R2\r")
        assert luke.until("message")["text"] == "the plans are in R2"
        luke.send({"type": "message", "to": "yoda", "text": "thanks, master"})
        client.expect("thanks, master")
        client.keys(b"whoelse\r")
        client.expect("luke")
        client.keys(b"\x04")
        assert client.wait() == 0
    finally:
        client.close()
        server.stop()
    text = journal.read_text()
    assert ACCOUNTS["yoda"] not in text and "plans" not in text and "thanks" not in text
    done = replay(journal, "--screen")
    assert done.returncode == 0, done.stderr
    screen = Screen(70, 24)
    screen.feed(done.screen)
    assert [line.rstrip() for line in screen.lines()][:9] == [
        "Username: xxxx", "Password:", "Welcome to the greatest messaging application ever!",
        "Type help for commands", "> xxxxxxx xxxx xxx xxxxx xxx xx xx", "luke: xxxxxxxxxxxxxx", "> xxxxxxx",
        "luke", "Logged out"]   # typed and shown, made up (the password's keys: not even that)


def test_a_client_on_pipes_records_a_journal_that_replays(tmp_path):
    server = ServerProcess(tmp_path, extra=["--state", ":memory:"])
    luke = server.client()
    luke.login("luke")
    journal = tmp_path / "client.journal"
    client = ClientProcess(server.host, server.port, extra=("--record", str(journal)))
    try:
        client.login("yoda")
        client.type("message luke the plans are in R2")
        assert luke.until("message")["text"] == "the plans are in R2"
        client.type("whoelse")
        client.expect("luke")
        client.end_input()
        assert client.wait() == 0
    finally:
        client.kill()
        server.stop()
    text = journal.read_text()
    assert ACCOUNTS["yoda"] not in text and "plans" not in text
    done = replay(journal, "--print")
    assert done.returncode == 0, done.stderr
    assert f"typed message luke {'x' * 19}" in done.stdout
    # (taken at once, or with the pong it waited for when typed before the welcome's)
    assert re.search(r"(typed message luke x+|server: pong) \(to server: message; to server: ping\)", done.stdout)


def test_a_cluster_node_records_the_engines_answers_and_its_journal_replays(tmp_path, engine):
    """Two nodes on a real engine; node a records. Its journal holds the engine's answers (logins decided,
    the resync, the other node's news) and replays exactly, with no engine."""
    nodes = {}
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        extra = ["--cluster", f"redis://127.0.0.1:{engine.port}", "--node-id", name, "--rate", "0",
                 *(["--record", str(directory / "node.journal")] if name == "a" else [])]
        nodes[name] = ServerProcess(directory, block=30, timeout=120, extra=extra)
    try:
        wait_for(lambda: "joined" in nodes["a"].log() and "joined" in nodes["b"].log(), what="both nodes joined")
        yoda = nodes["a"].client()
        cluster_login(yoda, "yoda")   # (a new engine decides no login for a lease)
        luke = nodes["b"].client()
        cluster_login(luke, "luke")
        yoda.until("presence")
        yoda.send({"type": "message", "to": "luke", "text": "across the nodes"})
        assert luke.until("message")["text"] == "across the nodes"
        luke.send({"type": "message", "to": "yoda", "text": "and back"})
        assert yoda.until("message")["text"] == "and back"
        luke.send({"type": "broadcast", "text": "to everyone"})
        assert yoda.until("message")["text"] == "to everyone"
        yoda.send({"type": "message", "to": "hans", "text": "kept by the engine"})
        yoda.until("stored")
        luke.send({"type": "logout"})
        yoda.until("presence")
    finally:
        for node in nodes.values():
            node.stop()
    journal = tmp_path / "a" / "node.journal"
    text = journal.read_text()
    assert json.loads(text.splitlines()[0])["rules"] == "ClusterChatServer"
    ops = {json.loads(line)[1] for line in text.splitlines()[1:] if not line.startswith('["draw"')}
    assert {"i", "R", "L", "rl", "rr", "rB", "ro"} <= ops
    assert "across the nodes" not in text and "and back" not in text and ACCOUNTS["yoda"] not in text
    done = replay(journal, "--print", "--user", "luke")
    assert done.returncode == 0, done.stderr
    assert "every event's effects as recorded" in done.stderr
