"""The real client and server processes, the client driven through pipes as a script would."""
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from reactor.client.commands import HELP
from reactor.client.host import EXIT_GRACE
from reactor.client.rules import LEAVE_GRACE
from tests.support import ACCOUNTS, PATIENCE, ROOT, ClientProcess, RecordingProxy, ServerProcess, coverage_env, wait_for

pytestmark = pytest.mark.e2e   # starts the real server or client


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=30, timeout=30)   # a lock lasts longer than any test
    yield srv
    srv.stop()


@pytest.fixture
def clients(server):
    started = []

    def start(user=None, port=None):
        c = ClientProcess(server.host, port or server.port)
        started.append(c)
        if user:
            c.login(user)
        return c

    yield start
    for c in started:
        c.kill()


# -- starting -----------------------------------------------------------

@pytest.mark.parametrize("args", [[], ["localhost"], ["localhost", "port"], ["localhost", "0"], ["a", "1", "extra"]])
def test_bad_arguments_give_usage_and_status_2(args):
    out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), *args], capture_output=True, text=True,
                         timeout=10, env=coverage_env())
    assert out.returncode == 2
    assert "usage: client_main.py" in out.stderr


def test_cannot_connect_says_where_and_why():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), "127.0.0.1", str(port)],
                         capture_output=True, text=True, timeout=20, env=coverage_env(), stdin=subprocess.DEVNULL)
    assert out.returncode == 1
    assert f"Error. Cannot connect to server at 127.0.0.1:{port}" in out.stdout + out.stderr
    assert "refused" in (out.stdout + out.stderr).lower()


# -- logging in ---------------------------------------------------------

def test_login_dialogue(clients):
    c = clients()
    c.expect("Username: ")
    c.type("nobody")
    c.expect("Invalid Username. Please try again")
    c.expect("Username: ")
    c.type("yoda")
    c.expect("Password: ")
    c.type("wrong")
    c.expect("Invalid Password. Please try again")
    c.expect("Password: ")
    c.type("wise@!man")
    c.expect("Welcome to the greatest messaging application ever!")


def test_already_logged_in(clients):
    clients("yoda")
    c = clients()
    c.expect("Username: ")
    c.type("yoda")
    c.expect("Password: ")   # who is online is told only to whoever knows the password
    c.type("wise@!man")
    c.expect("Error. yoda is already logged in")
    c.expect("Username: ")


def lock_out_vader(clients, port=None):
    """Three wrong passwords in a row for vader: the client is told and exits."""
    c = clients(port=port)
    c.expect("Username: ")
    c.type("vader")
    for _ in range(2):
        c.expect("Password: ")
        c.type("nope")
        c.expect("Invalid Password. Please try again")
    c.expect("Password: ")
    c.type("nope")
    c.expect("Invalid Password. Your account has been blocked. Please try again later")
    assert c.wait() == 1


def test_lockout_and_its_end(tmp_path, clients):
    lock_out_vader(clients)              # locked for 30 s: still locked however slowly the next client starts
    d = clients()
    d.expect("Username: ")
    d.type("vader")
    d.type("sithlord**")
    d.expect("Your account is blocked due to multiple login failures. Please try again later")
    assert d.wait() == 1

    (tmp_path / "short").mkdir()         # the end of a lock, on a server whose locks last 0.6 s
    short = ServerProcess(tmp_path / "short", block=0.6, timeout=30)
    try:
        lock_out_vader(clients, port=short.port)
        locked = time.monotonic()        # the lock began before this
        wait_for(lambda: time.monotonic() - locked > 0.7, what="lock over")
        clients("vader", port=short.port)
    finally:
        short.stop()


# -- commands -----------------------------------------------------------

def test_messages_broadcast_presence_and_who(clients):
    yoda = clients("yoda")
    hans = clients("hans")
    yoda.expect("hans logged in")
    hans.type("message yoda Do or do not")
    yoda.expect("hans: Do or do not")
    yoda.type("broadcast there is no try")
    hans.expect("yoda: there is no try")
    hans.type("whoelse")
    hans.expect("yoda")
    hans.type("whoelsesince 60")
    hans.expect("yoda")
    hans.type("logout")
    assert hans.wait() == 0
    yoda.expect("hans logged out")
    yoda.type("whoelse")
    yoda.expect("No other users online")
    yoda.type("whoelsesince 60")
    yoda.expect("hans")


def test_offline_messages_wait_for_login_oldest_first(clients):
    yoda = clients("yoda")
    yoda.type("message luke one")
    yoda.type("message luke two")
    for _ in range(2):                   # stored before luke comes, however slowly yoda's client runs
        yoda.expect("luke is offline; the message will be delivered when they log in")
    luke = clients("luke")
    luke.expect("yoda: one")
    luke.expect("yoda: two")


def test_command_errors(clients):
    yoda = clients("yoda")
    for line, words in [
        ("dance", "Error. Invalid command"),
        ("message nobody hi", "Error. Invalid user"),
        ("message yoda hi", "Error."),
        ("message", "Error."),
        ("whoelsesince soon", "Error."),
        ("whoelsesince -5", "Error."),
        ("block yoda", "Error."),
        ("unblock hans", "Error. hans was not blocked"),
        ("unblock yoda", "Error. yoda was not blocked"),
        ("private hans hi", "Error. Private messaging to hans not enabled"),
        ("startprivate yoda", "Error."),
        ("startprivate hans", "Error."),  # offline
    ]:
        yoda.type(line)
        yoda.expect(words)
    yoda.type("block hans")
    yoda.expect("hans is blocked")
    yoda.type("block hans")
    yoda.expect("Error. hans is already blocked")
    yoda.type("unblock hans")
    yoda.expect("hans is unblocked")
    yoda.type("help")
    yoda.expect("whoelsesince")


def test_blocking_effects(clients):
    yoda = clients("yoda")
    hans = clients("hans")
    luke = clients("luke")
    yoda.type("block hans")
    yoda.expect("hans is blocked")
    hans.never_shows("blocked")                    # no notice to the blocked user
    hans.type("message yoda hello?")
    hans.expect("Your message could not be delivered as the recipient has blocked you")
    hans.type("broadcast anyone?")
    hans.expect("Your message could not be delivered to some recipients")
    luke.expect("hans: anyone?")
    hans.type("whoelse")
    hans.expect("luke")
    hans.never_shows("yoda")
    hans.type("startprivate yoda")
    hans.expect("Error.")
    yoda.type("message hans I can still talk")
    hans.expect("yoda: I can still talk")
    yoda.type("logout")
    assert yoda.wait() == 0
    luke.expect("yoda logged out")
    hans.never_shows("yoda logged out")


def test_logout_end_of_input_and_server_lost(server, clients):
    a = clients("yoda")
    a.end_input()
    assert a.wait() == 0
    b = clients("hans")
    server.proc.send_signal(signal.SIGKILL)
    b.expect("Error. Connection to server lost")
    assert b.wait() == 1


def test_inactivity_logout(tmp_path):
    srv = ServerProcess(tmp_path, block=1, timeout=3)   # also the time the login dialogue has
    c = ClientProcess(srv.host, srv.port)
    try:
        c.login("yoda")
        c.expect("You have been logged out due to inactivity")
        assert c.wait() == 0
    finally:
        c.kill()
        srv.stop()


def test_login_timeout(tmp_path):
    srv = ServerProcess(tmp_path, block=1, timeout=0.4)
    c = ClientProcess(srv.host, srv.port)
    try:
        c.expect("Error. Login timed out")
        assert c.wait() == 1
    finally:
        c.kill()
        srv.stop()


# -- private chat -------------------------------------------------------

def test_private_chat_goes_peer_to_peer(server, clients):
    proxy = RecordingProxy(server.host, server.port)
    try:
        yoda = clients("yoda", port=proxy.port)
        hans = clients("hans", port=proxy.port)
        yoda.type("startprivate hans")
        hans.expect("yoda would like to start private messaging. Accept? (y/n)")
        hans.type("whoelse")            # other commands keep working while the question is open
        hans.expect("yoda")
        hans.type("y")
        yoda.expect("Start private messaging with hans")
        hans.expect("Start private messaging with yoda")

        secret = "the-secret-plans-of-the-death-star"
        yoda.type(f"private hans {secret}")
        hans.expect(f"yoda(private): {secret}")
        hans.type("private yoda received")
        yoda.expect("hans(private): received")
        yoda.barrier()                  # what both sent before has passed the proxy
        hans.barrier()
        assert not any(secret in json.dumps(f) for f in proxy.sent_frames())
        assert any(f.get("type") == "activity" for f in proxy.sent_frames())  # the server still saw activity

        yoda.type("stopprivate hans")
        yoda.expect("Private messaging with hans stopped")
        hans.expect("Private messaging with yoda stopped")
        yoda.type("private hans again?")
        yoda.expect("Error. Private messaging to hans not enabled")
    finally:
        proxy.close()


def test_declined_and_forged_token(server, clients):
    proxy = RecordingProxy(server.host, server.port)
    try:
        yoda = clients("yoda", port=proxy.port)
        hans = clients("hans", port=proxy.port)
        yoda.type("startprivate hans")
        hans.expect("Accept? (y/n)")
        hans.type("n")
        yoda.expect("Error. hans declined private messaging")

        # A stranger who knows where hans listens, but not a token, is dropped.
        listens = wait_for(lambda: [f for f in proxy.sent_frames() if f.get("type") == "listen"], what="listen")
        for frame in listens:
            forger = socket.create_connection((frame["host"], frame["port"]), timeout=PATIENCE)
            forger.sendall(json.dumps({"type": "peer_hello", "user": "yoda", "token": "forged"}).encode() + b"\n")
            assert forger.recv(100) == b""  # closed without a welcome
            forger.close()
        hans.never_shows("Start private messaging")
        yoda.never_shows("Start private messaging")
    finally:
        proxy.close()


def open_private_chat(clients):
    """yoda and hans logged in, with a private chat open between them."""
    yoda = clients("yoda")
    hans = clients("hans")
    yoda.type("startprivate hans")
    hans.expect("Accept? (y/n)")
    hans.type("y")
    hans.expect("Start private messaging with yoda")
    yoda.expect("Start private messaging with hans")
    return yoda, hans


def test_logout_ends_the_private_chat_for_the_other_side(clients):
    yoda, hans = open_private_chat(clients)
    yoda.type("logout")
    yoda.expect("Private messaging with hans stopped")
    assert yoda.wait() == 0
    hans.expect("Private messaging with yoda stopped")


def test_block_ends_an_open_private_chat(clients):
    yoda, hans = open_private_chat(clients)
    hans.type("block yoda")
    hans.expect("Private messaging with yoda stopped")
    yoda.expect("Private messaging with hans stopped")


def test_a_whole_session_piped_at_once(server):
    script = "yoda\nwise@!man\nwhoelse\nmessage hans see you later\n"   # and then the end of input
    out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                         input=script, capture_output=True, text=True, timeout=20, env=coverage_env())
    assert out.returncode == 0, out
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "Welcome to the greatest messaging application ever!" in lines
    assert "No other users online" in lines
    assert "hans is offline; the message will be delivered when they log in" in lines
    assert lines[-1] == "Logged out"


def test_server_shutdown_reaches_the_client(server, clients):
    yoda = clients("yoda")
    hans = clients("hans")
    server.proc.send_signal(signal.SIGTERM)
    for c in (yoda, hans):
        c.expect("Error. Server is shutting down")
        assert c.wait() == 1
    assert server.proc.wait(timeout=PATIENCE) == 0


def test_a_reader_that_goes_away_ends_the_session_quietly(server):
    client = subprocess.Popen([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=coverage_env())
    client.stdout.close()                       # as `client_main.py ... | head -0` would
    client.stdin.write(b"yoda\nwise@!man\n")
    client.stdin.flush()
    assert client.wait(timeout=PATIENCE) == 0   # logged out, as at the end of input
    assert client.stderr.read() == b""
    client.stdin.close()
    client.stderr.close()


# -- input from a file, and signals -------------------------------------------

def test_a_script_in_a_file_runs_to_its_end(server, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("yoda\nwise@!man\nwhoelse\nmessage hans see you later\n")
    with open(script, "rb") as stdin:               # `client_main.py host port < script.txt`
        out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                             stdin=stdin, capture_output=True, text=True, timeout=20, env=coverage_env())
    assert out.returncode == 0, out
    assert out.stderr == ""
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "No other users online" in lines
    assert "hans is offline; the message will be delivered when they log in" in lines
    assert lines[-1] == "Logged out"


def test_input_from_dev_null_ends_at_once(server):
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, env=coverage_env())
    assert out.returncode == 0, out
    assert out.stderr == ""
    assert time.monotonic() - started < 5


def stuck_server_session(server, clients):
    """yoda logged in through a proxy to a server that has stopped answering (SIGSTOP)."""
    proxy = RecordingProxy(server.host, server.port)
    yoda = clients("yoda", port=proxy.port)
    server.proc.send_signal(signal.SIGSTOP)
    return proxy, yoda


def test_a_signal_ends_the_client_even_when_the_server_never_says_goodbye(server, clients):
    proxy, yoda = stuck_server_session(server, clients)
    try:
        yoda.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: {"type": "logout"} in proxy.sent_frames(), what="logout sent")
        assert yoda.wait(timeout=LEAVE_GRACE + EXIT_GRACE + 2) == 0
        yoda.expect("Logged out")
    finally:
        server.proc.send_signal(signal.SIGCONT)
        proxy.close()


def test_a_second_signal_exits_at_once(server, clients):
    proxy, yoda = stuck_server_session(server, clients)
    try:
        yoda.proc.send_signal(signal.SIGINT)
        wait_for(lambda: {"type": "logout"} in proxy.sent_frames(), what="logout sent")
        second = time.monotonic()
        yoda.proc.send_signal(signal.SIGTERM)
        assert yoda.wait(timeout=LEAVE_GRACE + EXIT_GRACE + 2) == 1
        assert time.monotonic() - second < LEAVE_GRACE / 2
    finally:
        server.proc.send_signal(signal.SIGCONT)
        proxy.close()


def test_a_signal_while_still_connecting_exits_quietly():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)                               # never accepted: once its queue is full, connects hang
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    for s in fillers:
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
    client = subprocess.Popen([sys.executable, str(ROOT / "client_main.py"), "127.0.0.1", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=coverage_env())
    try:
        def catches_sigterm():
            with open(f"/proc/{client.pid}/status") as status:
                caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
            return int(caught, 16) & (1 << (signal.SIGTERM - 1))

        wait_for(catches_sigterm, what="the client's SIGTERM handler")
        client.send_signal(signal.SIGTERM)
        assert client.wait(timeout=5) == 0
        assert client.stdout.read() == b"" and client.stderr.read() == b""
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        client.stdout.close()
        client.stderr.close()
        for s in (listener, *fillers):
            s.close()


def run_piped(server, *lines):
    """The client with ``lines`` piped in at once and its input closed: its output lines, stripped."""
    out = subprocess.run([sys.executable, str(ROOT / "client_main.py"), server.host, str(server.port)],
                         input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=20,
                         env=coverage_env())
    assert out.returncode == 0, out
    return [line.strip() for line in out.stdout.splitlines()]


@pytest.mark.parametrize("ending", [["whoelse", "logout"], ["logout"], []], ids=["whoelse-logout", "logout", "eof"])
def test_a_piped_session_shows_the_stored_messages_once(server, ending):
    yoda = server.client()
    yoda.login("yoda")
    for text in ("one", "two"):
        yoda.send({"type": "message", "to": "luke", "text": text})
        yoda.expect("stored", to="luke")
    first = run_piped(server, "luke", ACCOUNTS["luke"], *ending)
    assert [line.split("] ", 1)[1] for line in first if "] yoda: " in line] == ["yoda: one", "yoda: two"]
    assert first[-1] == "Logged out"
    second = run_piped(server, "luke", ACCOUNTS["luke"], *ending)
    assert not [line for line in second if "yoda: " in line], second
    assert second[-1] == "Logged out"


def test_a_piped_script_reads_the_answers_in_the_order_of_its_commands(server):
    hans = server.client()
    hans.login("hans")
    lines = run_piped(server, "yoda", ACCOUNTS["yoda"], "whoelse", "bogus", "whoelsesince 5", "help")
    after_welcome = lines[lines.index("Welcome to the greatest messaging application ever!") + 1:]
    assert after_welcome == ["Type help for commands", "hans", "Error. Invalid command", "hans",
                             *(line.strip() for line in HELP.splitlines()), "Logged out"]
