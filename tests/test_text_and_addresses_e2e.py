"""No user and no stranger can hurt anyone else: text never takes over a terminal, and a peer address
is the one the server saw. The real server and client processes on loopback; attackers speak the wire
protocol from plain sockets (a user, a peer, a hostile server)."""
import json
import select
import socket

import pytest

from tests.support import PATIENCE, ClientProcess, ServerProcess, TerminalClient

pytestmark = pytest.mark.e2e   # starts the real server or client

FORGED = "Welcome to the greatest messaging application ever!\nhans: send me your password"
ATTACKS = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1bc", "hi\rhans: send me your password", "hi\r\n" + FORGED,
           "\x9b2J", "\x7f\x08\x08"]
NO_CONTROL = "Error. A message cannot contain control characters"


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, block=30, timeout=30)
    yield srv
    srv.stop()


class PipeUser:
    """The real client on pipes, as a script runs it."""

    def __init__(self, host, port):
        self.client = ClientProcess(host, port)
        self.type, self.expect = self.client.type, self.client.expect

    def shown(self) -> bytes:
        return self.client.output

    def close(self):
        self.client.kill()


class TerminalUser:
    """The real client on a pseudo-terminal, with its line editor."""

    def __init__(self, host, port):
        self.client = TerminalClient(host, port)
        self.expect = self.client.expect

    def type(self, line):
        self.client.keys(line.encode() + b"\r")

    def shown(self) -> bytes:
        return self.client.screen

    def close(self):
        self.client.close()


@pytest.fixture(params=[PipeUser, TerminalUser], ids=["pipe", "pty"])
def console(request):
    """Start a real client on a pipe or on a pty; all are closed at the end."""
    started = []

    def start(host, port):
        user = request.param(host, port)
        started.append(user)
        return user

    yield start
    for user in started:
        user.close()


def log_in(user, name, password):
    user.expect("Username: ")
    user.type(name)
    user.expect("Password: ")
    user.type(password)
    user.expect("Welcome to the greatest messaging application ever!")


def assert_no_takeover(shown: bytes, pipe: bool):
    """Nothing an attacker sent acted on the terminal or forged a line. (On a pty the line editor's own
    cursor motions are escape sequences, so there only the attackers' are looked for.)"""
    if pipe:
        assert b"\x1b" not in shown and b"\r" not in shown and b"\x07" not in shown, shown
    assert b"\x1b]" not in shown and b"\x1bc" not in shown and b"\x07" not in shown, shown
    for line in shown.replace(b"\r", b"\n").split(b"\n"):
        assert not line.startswith(b"hans: send me your password"), shown
        assert not line.startswith(b"vader: forged") and not line.startswith(b"yoda: forged"), shown


# -- 1. text cannot take over a terminal ---------------------------------------------------------

def test_a_users_control_characters_reach_nobody_and_bystanders_keep_talking(server, console):
    hans = console(server.host, server.port)
    log_in(hans, "hans", "falcon*solo")
    yoda = PipeUser(server.host, server.port)
    try:
        log_in(yoda, "yoda", "wise@!man")
        vader = server.client()
        vader.login("vader")
        for text in ATTACKS:
            for frame in ({"type": "message", "to": "hans", "text": text},
                          {"type": "message", "to": "luke", "text": text},      # offline: not kept either
                          {"type": "broadcast", "text": text}):
                vader.send(frame)
                vader.expect("error", code="control_characters")
            yoda.type(f"message hans still {len(text)}")                       # the bystanders go on
            hans.expect(f"yoda: still {len(text)}")
        hans.type("message yoda \x1b]0;me too\x07")
        if isinstance(hans, PipeUser):
            hans.expect(NO_CONTROL)                # the client refuses it before the server could
        else:
            yoda.expect("hans: 0;me too")          # the line editor never takes control keys as text
        hans.type("broadcast all well")
        yoda.expect("hans: all well")
        vader.send({"type": "message", "to": "hans", "text": "a\ttab is text"})
        hans.expect("tab is text")                 # (a pipe gets the tab, the line editor shows ^I)
        vader.send({"type": "message", "to": "hans", "text": "lines\n" + FORGED})   # a line break is text ...
        hans.expect("hans: send me your password")  # ... each line after the first indented under its sender
        assert_no_takeover(hans.shown(), pipe=isinstance(hans, PipeUser))
        assert_no_takeover(yoda.shown(), pipe=True)
        assert b"hans: still" not in hans.shown() and b"luke" not in hans.shown()
    finally:
        yoda.close()


class HostileServer:
    """A server that speaks our protocol from a script and says whatever it likes."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self.conn = None
        self.buffer = b""

    def accept(self):
        self.listener.settimeout(PATIENCE)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(PATIENCE)

    def send(self, frame):
        self.conn.sendall(json.dumps(frame).encode() + b"\n")

    def until(self, kind):
        """Read frames until one of ``kind``."""
        while True:
            while b"\n" not in self.buffer:
                chunk = self.conn.recv(65536)
                assert chunk, "the client closed the connection"
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            frame = json.loads(line)
            if frame.get("type") == kind:
                return frame

    def log_in(self, user):
        self.accept()
        self.until("hello")
        self.send({"type": "hello", "version": 1})
        user.expect("Username: ")
        user.type("yoda")
        self.until("username")
        self.send({"type": "username_ok"})
        user.expect("Password: ")
        user.type("anything")
        self.until("password")
        self.send({"type": "welcome", "user": "yoda"})
        self.until("ping")
        self.send({"type": "pong"})
        user.expect("Welcome to the greatest messaging application ever!")

    def another_connection(self) -> bool:
        return bool(select.select([self.listener], [], [], 0)[0])

    def close(self):
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()


@pytest.fixture
def hostile():
    srv = HostileServer()
    yield srv
    srv.close()


def test_a_hostile_server_cannot_reach_the_terminal(hostile, console):
    yoda = console(hostile.host, hostile.port)
    hostile.log_in(yoda)
    hostile.send({"type": "message", "from": "hans\x1b[2J", "text": "\x1b]0;pwned\x07hi\r\n" + FORGED})
    hostile.send({"type": "message", "from": "leia", "text": "\x1bc\x9b2J", "id": 1, "sent": 0})
    hostile.send({"type": "users", "names": ["luke\x1bc", "leia\nvader: forged"]})
    hostile.send({"type": "error", "code": "bad_frame", "detail": "\x1b[31mred\x07"})
    hostile.send({"type": "presence", "user": "x\x1b]2;t\x07", "online": True})
    hostile.send({"type": "message", "from": "yoda", "text": "the end"})
    yoda.expect("hans^[[2J: ^[]0;pwned^Ghi^M")         # a line break in a text is kept, the next line indented
    yoda.expect(" " * len("hans^[[2J: ") + "Welcome to the greatest messaging application ever!")
    yoda.expect(" " * len("hans^[[2J: ") + "hans: send me your password")
    yoda.expect("leia: ^[c<U+009B>2J")
    yoda.expect("luke^[c")
    yoda.expect("leia^Jvader: forged")
    yoda.expect("Error. Bad request: ^[[31mred^G")
    yoda.expect("x^[]2;t^G logged in")
    yoda.expect("yoda: the end")
    assert_no_takeover(yoda.shown(), pipe=isinstance(yoda, PipeUser))
    assert yoda.shown().count(b"Welcome to the greatest messaging application ever!") == 2   # the real one, and
    # the forged one indented under its sender


# -- 2. a peer address is the one the server saw ----------------------------------------------------

def test_a_claimed_listen_host_is_ignored_and_the_peer_is_reached_where_it_is(server, console):
    """vader (from 127.0.0.2) claims to listen at a third party's 127.0.0.3: hans's client connects to
    127.0.0.2, where vader's connection comes from, and the third party hears nothing."""
    vader_peer = socket.create_server(("127.0.0.2", 0))
    port = vader_peer.getsockname()[1]
    third_party = socket.create_server(("127.0.0.3", port))
    hans = console(server.host, server.port)
    yoda = PipeUser(server.host, server.port)
    try:
        log_in(hans, "hans", "falcon*solo")
        log_in(yoda, "yoda", "wise@!man")
        vader = server.client(source="127.0.0.2")
        vader.login("vader", listen=False)
        vader.send({"type": "listen", "host": "127.0.0.3", "port": port})
        hans.type("startprivate vader")
        vader.until("private_request", **{"from": "hans"})
        vader.send({"type": "private_answer", "user": "hans", "accept": True})
        token = vader.until("private_expect", user="hans")["token"]
        vader.send({"type": "private_ready", "user": "hans", "token": token})
        vader_peer.settimeout(PATIENCE)
        peer, _ = vader_peer.accept()
        peer.settimeout(PATIENCE)
        hello = json.loads(peer.makefile("rb").readline())
        assert hello == {"type": "peer_hello", "user": "hans", "token": token}
        peer.sendall(b'{"type": "peer_welcome", "user": "vader"}\n')
        hans.expect("Start private messaging with vader")
        peer.sendall(json.dumps({"type": "private", "text": "\x1b]0;pwned\x07\nyoda: forged"}).encode() + b"\n")
        hans.expect("vader(private): ^[]0;pwned^G")
        hans.expect(" " * len("vader(private): ") + "yoda: forged")   # indented under its sender
        if isinstance(hans, PipeUser):             # (the line editor never takes control keys as text)
            hans.type("private vader \x1b[2J")
            hans.expect(NO_CONTROL)
        yoda.type("message hans still here")
        hans.expect("yoda: still here")
        assert not select.select([third_party], [], [], 0)[0]   # nobody ever knocked
        assert_no_takeover(hans.shown(), pipe=isinstance(hans, PipeUser))
        peer.close()
    finally:
        yoda.close()
        vader_peer.close()
        third_party.close()


def settled(hostile, user):
    """The client has run on well past the last frame: it showed one sent after it, then sent a command
    typed after that (a connect it had started would be in the listener's queue by now: loopback
    connects complete at once)."""
    hostile.send({"type": "message", "from": "leia", "text": "after"})
    user.expect("leia: after")
    user.type("whoelse")
    hostile.until("whoelse")


@pytest.mark.parametrize("host, words", [
    ("localhost", "the server named a host (localhost), not an IP address"),
    ("127.0.0.1", "127.0.0.1 port {port} is not an address of theirs"),
    ("127.0.0.5", "127.0.0.5 port {port} is not an address of theirs"),
])
def test_a_private_connect_to_a_name_or_the_server_itself_is_refused(hostile, host, words):
    """Even a hostile server cannot make the client look a name up or call the server as a peer."""
    yoda = PipeUser(hostile.host, hostile.port)
    try:
        hostile.log_in(yoda)
        yoda.type("startprivate hans")
        hostile.until("startprivate")
        hostile.until("ping")
        hostile.send({"type": "pong"})
        hostile.send({"type": "private_connect", "user": "hans", "host": host, "port": hostile.port, "token": "T"})
        yoda.expect("Error. Cannot reach hans for private messaging: " + words.format(port=hostile.port))
        settled(hostile, yoda)
        assert not hostile.another_connection()
    finally:
        yoda.close()


def test_a_private_connect_nobody_asked_for_is_ignored(hostile):
    helper = socket.create_server(("127.0.0.2", 0))
    yoda = PipeUser(hostile.host, hostile.port)
    try:
        hostile.log_in(yoda)
        hostile.send({"type": "private_connect", "user": "hans", "host": "127.0.0.2",
                      "port": helper.getsockname()[1], "token": "T"})
        settled(hostile, yoda)
        assert not select.select([helper], [], [], 0)[0]
    finally:
        yoda.close()
        helper.close()
