"""Test helpers: run the real server process, and speak the wire protocol from a plain socket."""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import pathlib
import select
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request

from reactor.client.effects import ToServer
from reactor.client.line_editor import LineEditor
from reactor.client.rules import ChatClient
from reactor.framing import JsonLines
from reactor.loop import EventLoop
from reactor.server.door import MAX_LOGIN_TIME
from reactor.server.effects import (
    STORE_CHANGES,
    KeepMessage,
    LoginFailed,
    Send,
    SendStored,
    SetTimer,
    WhenWritable,
)
from reactor.server.host import ServerHost
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore, Store
from reactor.stream import Stream
from tests.terminal_model import Screen, width

ROOT = pathlib.Path(__file__).resolve().parent.parent
ACCOUNTS = {"hans": "falcon*solo", "yoda": "wise@!man", "vader": "sithlord**", "luke": "jedi*knight",
            "leia": "princess~"}
# How long a wait for something that must happen may take on a loaded machine. Waits end as soon as their
# condition holds, so this costs time only when a test fails.
PATIENCE = 20.0


def wait_for(predicate, timeout=PATIENCE, interval=0.01, what="condition"):
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def run_until(loop, predicate, timeout=5.0):
    """Run ``loop`` an iteration at a time until ``predicate()`` holds; fail after ``timeout`` seconds of real
    time (the loop's own clock may be an injected one that stands still)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        loop.run_once(timeout=0.01)


class NoWaitSelector(selectors.DefaultSelector):
    """Records how long the loop asks to wait, and returns at once."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def select(self, timeout=None):
        self.waits.append(timeout)
        return super().select(0)


class FakeClock:
    """A clock that moves only when a test sets ``now``: ``loop.time = FakeClock()``."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def write_credentials(directory: pathlib.Path, accounts=ACCOUNTS) -> pathlib.Path:
    path = directory / "credentials.txt"
    path.write_text("".join(f"{u} {p}\n" for u, p in accounts.items()))
    return path


NO_LIMITS = ("--rate", "0", "--sender-quota", "0")   # for tests of something else that send many messages fast


class ServerProcess:
    """``server_main.py`` on 127.0.0.1 with an OS-picked port; stderr goes to a file."""

    def __init__(self, tmp_path: pathlib.Path, block=1.0, timeout=30.0, extra=(), accounts=ACCOUNTS, port=0,
                 measured=True):
        """``measured``: by coverage, when the suite is (a test at size runs faster without)."""
        self.log_path = tmp_path / "server.log"
        creds = write_credentials(tmp_path, accounts)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server_main.py"), str(port), str(block), str(timeout),
             "--credentials", str(creds), "--log-level", "DEBUG", *extra],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=self._log, env=coverage_env(measured),
            bufsize=0)   # (unbuffered: a line read leaves the next for select to see)
        line = self._readline(PATIENCE)
        assert line.startswith("Server listening on "), line + self.log()
        self.host, port = line.rsplit(" ", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.metrics_address = None   # with --metrics: where its endpoint listens
        if "--metrics" in extra:
            line = self._readline(PATIENCE)
            assert line.startswith("Metrics on http://"), line + self.log()
            metrics_host, metrics_port = line.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            self.metrics_address = (metrics_host, int(metrics_port))

    def _readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "server printed nothing\n" + self.log()
        return self.proc.stdout.readline().decode().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw) -> WireClient:
        return WireClient(self.host, self.port, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=PATIENCE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self._log.close()


def admin(*args, command=None):
    """Run the operator's command (``server_main.py admin``, or ``command``); (exit status, stdout, stderr)."""
    argv = command or [sys.executable, str(ROOT / "server_main.py"), "admin"]
    out = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, env=coverage_env(), cwd=ROOT)
    return out.returncode, out.stdout, out.stderr


def scrape(address, path="/metrics"):
    """GET ``path`` of the metrics endpoint at ``address``: (status, body as text)."""
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=PATIENCE) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def coverage_env(measured=True) -> dict:
    """The environment for child processes: measured by coverage when the suite is (and ``measured``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if os.environ.get("COVERAGE_PROCESS_START") and measured:
        env["COVERAGE_PROCESS_START"] = os.environ["COVERAGE_PROCESS_START"]
    else:
        env.pop("COVERAGE_PROCESS_START", None)
    return env


class WireClient:
    """A scripted protocol client on a blocking socket, for driving the server in tests.

    ``read_size`` and ``pause`` make a slow reader of a subclass: at most that many bytes a read, then a pause.
    """

    read_size = 65536
    pause = 0.0

    def __init__(self, host, port, hello=True, timeout=PATIENCE, source=None):
        """``source``: the loopback address to connect from (any 127.x.y.z), to play another machine."""
        self._begin(socket.create_connection((host, port), timeout=timeout,
                                             source_address=None if source is None else (source, 0)),
                    hello, timeout)

    def _begin(self, sock: socket.socket, hello: bool, timeout: float) -> None:
        """Start the session on the connected ``sock``: with ``hello``, the protocol's greeting."""
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        self.longest = 0   # bytes in the longest line received, newline excluded
        self.user = None
        if hello:
            self.send({"type": "hello", "version": 1})
            assert self.recv()["type"] == "hello"

    def send(self, frame: dict) -> None:
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout=None) -> dict:
        """The next frame; AssertionError if none comes in time, EOFError if the server closed."""
        return json.loads(self.recv_line(timeout))

    def recv_line(self, timeout=None) -> bytes:
        """The next line as it came on the wire (no newline); as ``recv`` fails."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame from the server in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(self.read_size)
            except TimeoutError:
                raise AssertionError("no frame from the server in time") from None
            if not chunk:
                raise EOFError("server closed the connection")
            self.buffer += chunk
            if self.pause:
                time.sleep(self.pause)   # pacing only: a reader slow on purpose
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.longest = max(self.longest, len(line))
        return line

    def expect(self, type_, timeout=None, **fields) -> dict:
        """The next frame must be of ``type_`` with these fields."""
        frame = self.recv(timeout)
        assert frame.get("type") == type_, frame
        for k, v in fields.items():
            assert frame.get(k) == v, (k, frame)
        return frame

    def until(self, type_, timeout=None, **fields) -> dict:
        """Skip frames until one of ``type_`` with these fields arrives."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            frame = self.recv(max(0.001, deadline - time.monotonic()))
            if frame.get("type") == type_ and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    def expect_closed(self, timeout=None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self.recv(max(0.001, deadline - time.monotonic()))
            except EOFError:
                return
            except ConnectionResetError:
                return

    def login(self, user, password=None, listen=True) -> dict:
        self.send({"type": "username", "username": user})
        self.expect("username_ok")
        self.send({"type": "password", "password": password or ACCOUNTS[user]})
        welcome = self.expect("welcome", user=user)
        self.user = user
        if listen:
            self.send({"type": "listen", "host": "127.0.0.1", "port": 9})
        return welcome

    def hello(self, version=3, **fields) -> dict:
        """Say hello (made with ``hello=False``) in ``version``, with ``fields`` (``receipts=True``, say)."""
        self.send({"type": "hello", "version": version, **fields})
        return self.expect("hello", version=version)

    def silent(self) -> bool:
        """True if the server has nothing more for this logged-in client: the answer to a ``ping`` comes
        first (the server answers in order, and a pong waits for every stored message still on its way)."""
        self.send({"type": "ping"})
        frame = self.recv()
        if frame != {"type": "pong"}:
            raise AssertionError(f"unexpected frame {frame}")
        return True

    def close(self) -> None:
        self.sock.close()


class TLSWireClient(WireClient):
    """A ``WireClient`` over TLS: ``context`` verifies the server as ``server_hostname``."""

    def __init__(self, host, port, context, hello=True, timeout=PATIENCE, source=None, server_hostname="localhost"):
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=None if source is None else (source, 0))
        self._begin(context.wrap_socket(sock, server_hostname=server_hostname), hello, timeout)


class ClientProcess:
    """``client_main.py`` with piped stdin/stdout, as a script would run it."""

    def __init__(self, host, port, cwd=None, extra=()):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "client_main.py"), host, str(port), *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd, env=coverage_env())
        self.output = b""
        self.seen = 0  # how much of the output earlier expectations consumed

    def type(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        self.proc.stdin.close()

    def _pump(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if ready:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            self.output += chunk
            return bool(chunk)
        return True

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def expect(self, needle: str, timeout=PATIENCE) -> str:
        """Wait until ``needle`` appears after what earlier calls consumed; return the text up to it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            at = text.find(needle, self.seen)
            if at >= 0:
                consumed, self.seen = text[self.seen:at + len(needle)], at + len(needle)
                return consumed
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.1)) and self.proc.poll() is not None:
                raise AssertionError(f"{needle!r} not shown; output so far:\n{text}")

    def login(self, user, password=None):
        self.expect("Username: ")
        self.type(user)
        self.expect("Password: ")
        self.type(password or ACCOUNTS[user])
        self.expect("Welcome to the greatest messaging application ever!")

    def barrier(self) -> str:
        """Ask the server something and wait for the answer; return what was shown before it.

        The server answers in order and the client shows in order, so by then everything the server sent
        this client earlier is shown, and everything this client sent earlier has reached the server.
        The question, a message to a user who does not exist, changes nothing.
        """
        answer = "Error. Invalid user"
        self.type("message nobody barrier")
        return self.expect(answer)[:-len(answer)]

    def never_shows(self, needle: str) -> None:
        """``needle`` is not shown before the answer to a question asked now (see ``barrier``)."""
        assert needle not in self.barrier(), self.text()

    def wait(self, timeout=PATIENCE) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "client did not exit\n" + self.text()
            self._pump(0.05)
        while self._pump(0) and len(select.select([self.proc.stdout], [], [], 0)[0]):
            pass
        return self.proc.returncode

    def kill(self):
        """End the client: end of input first (it logs out and exits, and its coverage is kept), else SIGKILL."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class RecordingProxy:
    """A TCP proxy to the server that records every byte each client sends it, and (``downstream``) every
    byte the server sends back (test-side threads)."""

    def __init__(self, target_host, target_port):
        import threading
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = bytearray()
        self.downstream = bytearray()
        self._lock = threading.Lock()
        self._threads = []
        self._closed = False
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()

    def _accept_loop(self):
        import threading
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pipe, args=(src, dst, upstream), daemon=True)
                t.start()

    def _pipe(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    (self.upstream if upstream else self.downstream).extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def recorded(self):
        """The bytes recorded so far: (what the clients sent, what the server sent back)."""
        with self._lock:
            return bytes(self.upstream), bytes(self.downstream)

    def sent_frames(self):
        return [json.loads(line) for line in self.recorded()[0].splitlines() if line.strip()]

    def close(self):
        self._closed = True
        self.listener.close()


# -- the client: its logic driven by hand, and the real client on a terminal --------------------------------------

PING, PONG = {"type": "ping"}, {"type": "pong"}


def frames(effects):
    """The frames among a client's ``effects`` that go to the server."""
    return [e.frame for e in effects if type(e) is ToServer]


NONCE = "n0nce"   # a client's nonce in logic tests: its messages' refs are n0nce.1, n0nce.2, ...


def logged_in(user="yoda", now=0.0, server=None, **options):
    """A client logged in as ``user`` to a server at ``server`` ((IP address, port), or unknown); its nonce is
    ``NONCE`` unless ``options`` say otherwise."""
    options.setdefault("nonce", NONCE)
    c = ChatClient(token_ttl=30, peer_hello_timeout=10, **options)
    c.start(now, server)
    c.server_frame({"type": "hello", "version": 2}, now)
    c.line(user, now)
    c.server_frame({"type": "username_ok"}, now)
    c.line("secret", now)
    c.server_frame({"type": "welcome", "user": user}, now)
    c.server_frame(PONG, now)
    return c


def ask(c, user="hans", now=1.0):
    """``startprivate user``, and the server's answer to it is in."""
    assert frames(c.line(f"startprivate {user}", now)) == [{"type": "startprivate", "user": user}, PING]
    assert c.server_frame(PONG, now) == []



# == The server's rules, its store and its hosts in tests ================================================
# (moved here from test_chat_server.py, test_store.py, test_store_e2e.py and test_server_host.py, so that no
# test module imports another)

BLOCK = 10.0     # a World's block duration
TIMEOUT = 60.0   # ... and its inactivity timeout


def sends(effects, store=None):
    """The Sends in ``effects``, a stored change's confirmation in its place, and a SendStored as one Send
    per message, its text read from ``store`` as a host does (each one must be there)."""
    out = []
    for e in effects:
        if type(e) is Send:
            out.append(e)
        elif type(e) in STORE_CHANGES and e.confirm is not None:
            out.append(e.confirm)
        elif type(e) is SendStored:
            assert store is not None, "a SendStored needs the store that keeps the texts"
            texts = store.texts([f["id"] for f in e.frames])
            assert sorted(texts) == sorted(f["id"] for f in e.frames), "a stored message is not in the store"
            out += [Send((e.conn,), {**f, "text": texts[f["id"]]}) for f in e.frames]
    return out


def frames_to(effects, conn, store=None):
    """The frames ``effects`` send to ``conn``, in order (a change's confirmation counted as sent; stored
    messages with their texts from ``store``)."""
    return [e.frame for e in sends(effects, store) if conn in e.conns]


def of_type(effects, kind):
    return [e for e in effects if type(e) is kind]


def unfailed(effects):
    """``effects`` without the LoginFailed notes for the host's failure counts."""
    return [e for e in effects if type(e) is not LoginFailed]


def error(code, **fields):
    return {"type": "error", "code": code, **fields}


class Keeping(ChatServer):
    """The logic and a store, as a host keeps one: each change ``received`` returns is applied to ``store``."""

    def __init__(self, store, *args, **kw):
        super().__init__(*args, **kw)
        self.store = store

    def received(self, conn, frame, now):
        effects = super().received(conn, frame, now)
        for effect in effects:
            if type(effect) in STORE_CHANGES:
                self.store.apply(effect)
        return effects


class World:
    """One ChatServer (with the store that keeps its messages' texts) and quick ways to connect, log in and
    send as a user. ``offline``: stored messages as the store keeps them, (id, to, sender, text[, sent])."""

    def __init__(self, **kw):
        self.tokens = (f"token{i}" for i in itertools.count(1))
        kw.setdefault("token_factory", lambda: next(self.tokens))
        accounts = kw.pop("accounts", ACCOUNTS)
        self.store = MemoryStore()
        for row in kw.pop("offline", ()):
            self.store.apply(KeepMessage(*row))
        kw["offline"] = self.store.load()[1]
        self.timeout = kw.pop("timeout", TIMEOUT)
        self.s = Keeping(self.store, dict(accounts), kw.pop("block_duration", BLOCK), self.timeout, **kw)
        self._ids = itertools.count(1)
        self.conn = {}   # user -> conn of its last login

    def connect(self, now=0.0, hello=True, version=1, address="10.0.0.1", receipts=False):
        """A new connection; ``hello``: it says hello in ``version`` (and, ``receipts``, that it sends them)."""
        conn = next(self._ids)
        assert self.s.connected(conn, now, address) == [
            SetTimer(("login", conn), now + min(self.timeout, MAX_LOGIN_TIME))]
        if hello:
            hello = {"type": "hello", "version": version}
            answer = {**hello, "timeout": self.timeout}
            if receipts:
                hello["receipts"] = True
            assert self.s.received(conn, hello, now) == [Send((conn,), answer)]
        return conn

    def login(self, user, now=0.0, listen=True, version=1, address="10.0.0.1", password=None, receipts=False):
        """Log ``user`` in on a new connection from ``address``; returns the effects of the password frame.
        Its client claims to listen on a host of its own, which the server must ignore. ``password``: the
        user's, if it is not one of ACCOUNTS; ``receipts``: its client says which live messages it shows."""
        conn = self.connect(now, version=version, address=address, receipts=receipts)
        assert self.s.received(conn, {"type": "username", "username": user}, now) == \
            [Send((conn,), {"type": "username_ok"})]
        effects = self.s.received(conn, {"type": "password", "password": password or ACCOUNTS[user]}, now)
        assert frames_to(effects, conn, self.store)[0] == {"type": "welcome", "user": user}
        self.conn[user] = conn
        if listen:
            assert self.send(user, {"type": "listen", "host": "203.0.113.66", "port": 40000 + conn}, now) == []
        return effects

    def send(self, user, frame, now=0.0):
        conn = self.conn[user] if isinstance(user, str) else user
        return self.s.received(conn, frame, now)

    def to(self, effects, user):
        return frames_to(effects, self.conn[user], self.store)

    def sends(self, effects):
        return sends(effects, self.store)

    def stored(self, user):
        """The messages kept for ``user``, oldest first, as (id, sender, text)."""
        kept = self.s.stored(user)
        texts = self.store.texts([mid for mid, _ in kept])
        return [(mid, sender, texts[mid]) for mid, sender in kept]

    def username(self, conn, user, now=0.0):
        return self.s.received(conn, {"type": "username", "username": user}, now)

    def password(self, conn, password, now=0.0):
        return self.s.received(conn, {"type": "password", "password": password}, now)


def msg(to, text):
    return {"type": "message", "to": to, "text": text}


EMOJI = "\U0001F600"   # 4 bytes on the wire (UTF-8; JSON-escaped as a surrogate pair it was 12)


def big_mailbox(count, text, **kw):
    """A World where yoda has ``count`` stored messages of ``text`` (numbered in front) from hans."""
    texts = [f"{i:04d}{text[4:]}" for i in range(count)]
    w = World(offline=[(i + 1, "yoda", "hans", t) for i, t in enumerate(texts)], **kw)
    return w, texts


def deliver_all(w, effects, user="yoda", now=0.0):
    """Answer every WhenWritable for ``user`` until the mailbox is out; each chunk's frames, in order."""
    conn = w.conn[user]
    chunks = []
    while True:
        chunks.append([f for f in frames_to(effects, conn, w.store) if f["type"] == "message"])
        waits = [e for e in effects if type(e) is WhenWritable]
        assert waits in ([], [WhenWritable(conn)]) and (not waits or effects[-1] == waits[0])
        if not waits:
            return chunks
        effects = w.s.writable(conn, now)


def contents(store):
    """What ``store`` keeps: blocks, and offline messages as they were given, (id, to, sender, text[, sent]), or
    with a ref (id, to, sender, text, sent, None, ref) as ``KeepMessage`` takes it: ``load``'s rows (checked
    against the texts) with the texts read back by ``texts``."""
    blocks, offline = store.load()
    texts = store.texts([row[0] for row in offline])
    rows = []
    for mid, to, sender, size, chars, sent, ref in offline:
        text = texts[mid]
        assert (size, chars) == (len(text.encode()), len(text))
        if ref is not None:
            rows.append((mid, to, sender, text, sent, None, ref))
        else:
            rows.append((mid, to, sender, text) if sent is None else (mid, to, sender, text, sent))
    return blocks, rows


def opened(path, wrap=lambda conn: conn, **options):
    """``Store.open(path, **options)`` and the SQLite connection it runs on, kept by the test too (``wrap``ped
    first, to put faults in the store's way)."""
    made = []

    def connect(*args, **kwargs):
        made.append(wrap(sqlite3.connect(*args, **kwargs)))
        return made[-1]

    store = Store.open(path, connect=connect, **options)
    return store, made[0]


class FailingCommit:
    """A connection whose COMMIT fails, as on a full disk, once ``failing`` is set."""

    failing = False

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.failing:
            self.conn.execute("ROLLBACK")  # what SQLite may do on an I/O error
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


class FullCommit(FailingCommit):
    """A connection whose next ``fails`` COMMITs find the disk full (SQLite keeps the transaction open)."""

    fails = 0

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.fails:
            self.fails -= 1
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return self.conn.execute(sql, *args)


class InProcess:
    """The chat logic, host, loop and a store in this process; plain sockets as clients."""

    def __init__(self, make_store):
        self.loop = EventLoop()
        logic = ChatServer(dict(ACCOUNTS), 1.0, 30.0, rate=None, sender_quota=None)   # bursts of messages
        self.host = ServerHost(self.loop, logic, make_store(self.loop))
        self.host.serve("127.0.0.1", 0)
        self.port = self.host.address[1]

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        return InProcessPeer(self, sock)

    def close(self):
        self.loop.close()


class InProcessPeer:
    """A plain socket to an ``InProcess`` server, read as its loop runs."""

    def __init__(self, world, sock):
        self.world = world
        self.sock = sock
        self.buffer = b""

    def send(self, frame):
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def frames(self):
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                self.buffer += chunk
        except BlockingIOError:
            pass
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines]

    def until(self, type_, count=1, on_frames=None, limit=PATIENCE):
        got = []
        deadline = time.monotonic() + limit
        while len([f for f in got if f["type"] == type_]) < count:
            assert time.monotonic() < deadline, got[-5:]
            self.world.loop.run_once(0.01)
            new = self.frames()
            if on_frames is not None and new:
                on_frames(new)
            got += new
        return got

    def login(self, user):
        self.send({"type": "hello", "version": 1})
        self.send({"type": "username", "username": user})
        self.send({"type": "password", "password": ACCOUNTS[user]})
        return self.until("welcome")


class LoopPeer:
    """A plain socket speaking frames to a host on a loop this process runs (``run_until``)."""

    def __init__(self, host):
        self.sock = socket.create_connection(("127.0.0.1", host.address[1]))
        self.sock.setblocking(False)
        self.buffer = b""
        self.got = []

    def send(self, *frames):
        self.sock.sendall(b"".join(json.dumps(frame).encode() + b"\n" for frame in frames))

    def read(self):
        try:
            while chunk := self.sock.recv(1 << 16):
                self.buffer += chunk
        except BlockingIOError:
            pass
        *lines, self.buffer = self.buffer.split(b"\n")
        self.got += [json.loads(line) for line in lines]
        return self.got

    def has(self, kind):
        return any(frame["type"] == kind for frame in self.read())

    def messages(self):
        """The messages it got, without the time each was sent."""
        return [{k: v for k, v in frame.items() if k != "sent"} for frame in self.got if frame["type"] == "message"]


def login_peer(loop, host, user, password=True):
    """A ``LoopPeer`` that said hello and its name to ``host``, and its password too unless ``password`` is
    False."""
    peer = LoopPeer(host)
    peer.send({"type": "hello", "version": 1}, {"type": "username", "username": user})
    run_until(loop, lambda: peer.has("username_ok"))
    if password:
        peer.send({"type": "password", "password": ACCOUNTS[user]})
        run_until(loop, lambda: peer.has("welcome"))
    return peer



# == A terminal for the client (moved here from test_terminal.py: test_text_and_addresses_e2e.py uses it too) ==

# Runs the client with the pty (its stdin) as its controlling terminal, so closing the master hangs it up.
WITH_CONTROLLING_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                             "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


# A tiny job-control shell: it holds the pty as its controlling terminal and runs the client as the
# foreground job in a process group of its own (so Ctrl-Z can stop it: the group is not orphaned),
# writes the client's pid to the descriptor named first, and exits with the client's status.
JOB_SHELL = """\
import fcntl, os, signal, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
os.write(int(sys.argv[1]), b"%d\\n" % pid)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


class TerminalClient:
    """client_main.py on a pty of ``cols`` columns; the test holds the slave end to check its settings.

    ``stdout`` other than the pty (a pipe) leaves the pty as stdin only. ``job_control`` runs the
    client under JOB_SHELL (``pid`` is the client's own).
    """

    def __init__(self, host, port, stdout=None, cols=80, job_control=False, args=()):
        self.master, self.slave = os.openpty()
        self.resize(cols)
        self.settings_before = termios.tcgetattr(self.slave)
        pid_r, pid_w = os.pipe()
        starter = [JOB_SHELL, str(pid_w)] if job_control else [WITH_CONTROLLING_TERMINAL]
        self.proc = subprocess.Popen([sys.executable, "-c", *starter,
                                      str(ROOT / "client_main.py"), host, str(port), *args],
                                     stdin=self.slave, stdout=self.slave if stdout is None else stdout,
                                     stderr=self.slave, start_new_session=True, env=coverage_env(),
                                     pass_fds=(pid_w,))
        os.close(pid_w)
        with os.fdopen(pid_r) as pids:
            self.pid = int(pids.readline()) if job_control else self.proc.pid
        self.screen = b""
        self.seen = 0

    def resize(self, cols, rows=24):
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def state(self):
        """The client process's state letter from /proc (R, S, T for stopped...)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]

    def keys(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: str, timeout=PATIENCE) -> str:
        deadline = time.monotonic() + timeout
        raw = needle.encode()
        while True:
            at = self.screen.find(raw, self.seen)
            if at >= 0:
                consumed = self.screen[self.seen:at + len(raw)]
                self.seen = at + len(raw)
                return consumed.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not on screen:\n{self.screen!r}")
            self.pump(min(left, 0.05))

    def pump(self, timeout):
        if self.master is None:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.screen += os.read(self.master, 65536)
            except OSError:
                pass

    def settle(self, wait=0.2):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.pump(0.02)

    def wait(self, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.screen
            self.pump(0.02)
        self.pump(0.05)
        return self.proc.returncode

    def hang_up(self):
        """Close the terminal under the client, as closing its window does."""
        os.close(self.master)
        self.master = None

    def close(self):
        if self.proc.poll() is None:
            if self.pid != self.proc.pid:          # not reaped yet by the job shell: still the client's pid
                os.kill(self.pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait()
        if self.master is not None:
            os.close(self.master)
        os.close(self.slave)


# -- connections on the loop (reactor.stream, reactor.framing, reactor.tls) ------------------------------------

class Recorder:
    """A ``FrameHandler`` (``reactor.framing``) that records what its stream hands it."""

    def __init__(self):
        self.frames = []
        self.errors = []
        self.lost = []

    def frame_received(self, stream, frame):
        self.frames.append(frame)

    def frame_error(self, stream, detail):
        self.errors.append(detail)

    def connection_lost(self, stream, reason):
        self.lost.append(reason)


class StandIn:
    """A real ``Stream`` tagged ``tag`` (on a socketpair of its own, its frames to a ``Recorder``), to hand a
    host's ``frame_received`` frames as if that connection's stream had read them: a host takes a Stream (a
    duck-typed stand-in is refused by the compiled build, ``make fast``). Close it after (``close``)."""

    def __init__(self, loop, tag):
        ours, self.peer = socket.socketpair()
        self.stream = Stream(loop, ours, JsonLines(Recorder()))
        self.stream.tag = tag

    def close(self):
        self.stream.abort()
        self.peer.close()


class FlakySocket(socket.socket):
    """A real socket whose methods named in ``failures`` raise the given errors once each, in order."""

    def __init__(self, sock, **failures):
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.failures = {name: list(errors) for name, errors in failures.items()}

    def _maybe_fail(self, name):
        if self.failures.get(name):
            raise self.failures[name].pop(0)

    def recv(self, *args):
        self._maybe_fail("recv")
        return super().recv(*args)

    def send(self, *args):
        self._maybe_fail("send")
        return super().send(*args)

    def accept(self):
        self._maybe_fail("accept")
        return super().accept()

    def setsockopt(self, *args):
        self._maybe_fail("setsockopt")
        return super().setsockopt(*args)

def tls_server(tmp_path, cert, extra=()) -> ServerProcess:
    """The real server in TLS mode with ``cert`` (a PEM file holding the key and the chain: the ``certs``
    fixture's)."""
    return ServerProcess(tmp_path, extra=("--tls-cert", str(cert), "--tls-key", str(cert), *extra))


# -- the line editor on a model terminal (tests/terminal_model.py) ------------------------------------------------

OLDER = ["older output 1", "older output 2"]   # what a Term's screen shows before the input


class Term:
    """An editor wired to a model screen ``rows`` high that already shows two lines of output.

    The screen answers the editor's questions about widths (``answer=False``: it never does);
    ``emoji_sequences`` is the model's (see tests/terminal_model.py)."""

    def __init__(self, cols, rows=30, prompt="> ", answer=True, emoji_sequences=False, **options):
        self.screen = Screen(cols, rows, emoji_sequences=emoji_sequences)
        self.screen.feed(b"older output 1\r\nolder output 2\r\n")
        self.editor = LineEditor(cols, rows=rows, **options)
        self.answer = answer
        self.editor.set_prompt(prompt, False)
        self.prompt = prompt
        self.show()

    def show(self):
        self.screen.feed(self.editor.take_output())
        answers = self.screen.take_answers()
        if answers and self.answer:
            assert self.editor.feed(answers) == []
            self.show()

    def keys(self, data):
        events = self.editor.feed(data)
        self.show()
        return events

    def type(self, text):
        return self.keys(text.encode())

    def print(self, text):
        self.screen.feed(self.editor.print_above(text))

    def resize(self, cols, reflow):
        self.screen.resize(cols, reflow)
        self.editor.resize(cols)
        self.show()

    def paste(self, text):
        return self.keys(b"\x1b[200~" + text.encode() + b"\x1b[201~")


def rows_of(text, cols):
    """How a terminal wraps the text, written on a fresh screen."""
    screen = Screen(cols)
    screen.feed(text.encode())
    return screen.lines()


def place_of(before, cols, next_char=" "):
    """(row, col) where a character after ``before`` lands on a fresh screen, as a terminal puts it."""
    screen = Screen(cols)
    screen.feed(before.encode())
    screen.feed(next_char.encode())
    row, col = screen.cursor
    col += 0 if screen.pending_wrap else -width(next_char)
    if screen.pending_wrap and width(next_char) == 2:
        col -= 1
    return row, col


# -- cluster mode end to end: real nodes on a real engine (the ``cluster`` fixture in conftest.py) ------------------

LEASE = 4.0   # reactor.cluster.host.LEASE: a dead node is reaped within about this
GRACE = 3.0   # reactor.cluster.host.GRACE: a node cut off from the engine ends its sessions after this


class Cluster:
    """Nodes a and b on one shared port, c on its own, all on ``engine``."""

    def __init__(self, tmp_path, engine):
        self.tmp_path = tmp_path
        self.engine = engine
        self.nodes: dict[str, ServerProcess] = {}
        self.clients: list[WireClient] = []
        self.start("a", 0, reuse=True)
        self.shared = self.nodes["a"].port
        self.start("b", self.shared, reuse=True)
        self.start("c", 0)

    def start(self, name, port, reuse=False, node_id=None):
        """Node ``name`` (its id too, unless ``node_id``), on ``port`` (0: a port of its own)."""
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        extra = ["--cluster", f"redis://127.0.0.1:{self.engine.port}", "--node-id", node_id or name, "--rate", "0"]
        self.nodes[name] = ServerProcess(directory, block=30, timeout=120, port=port,
                                         extra=extra + (["--reuse-port"] if reuse else []))

    def stop(self):
        for client in self.clients:
            client.close()
        for node in self.nodes.values():
            node.stop()

    def connect(self, node):
        """A client of node ``node`` (c, or one started later), or (``node`` "ab") of whichever of a and b the kernel
        picks."""
        port = self.shared if node == "ab" else self.nodes[node].port
        client = WireClient("127.0.0.1", port)
        self.clients.append(client)
        return client

    def logins(self):
        """How many times each user logged in on each node, by the nodes' logs."""
        return {(name, user): node.log().count(f" {user} logged in, conn")
                for name, node in self.nodes.items() for user in ACCOUNTS}

    def login(self, node, user, password=None):
        """``user`` logged in on ``node`` ("c", or "ab": either of the pair); the node it landed on."""
        before = self.logins()
        client = self.connect(node)
        cluster_login(client, user, password)
        after = wait_for(lambda: [name for (name, u), n in self.logins().items() if u == user
                                  and n > before[(name, u)]], what=f"{user}'s login in a log")
        client.node = after[0]
        return client

    def login_on(self, node, user):
        """``user`` logged in on the node ``node`` itself: on a or b, by trying connections to the shared port."""
        if node == "c":
            return self.login("c", user)
        for _ in range(40):
            client = self.login("ab", user)
            if client.node == node:
                return client
            logout(client)
        raise AssertionError(f"no connection to the shared port landed on {node}")


NOT_YET = ({"type": "error", "code": "try_again"}, {"type": "error", "code": "cluster_unavailable"})


def cluster_login(client, user, password=None):
    """Log in, the password sent again while the node cannot decide logins (it has not joined the cluster yet,
    or the engine is settling: a new engine decides no login for a lease)."""
    client.send({"type": "username", "username": user})
    client.expect("username_ok")
    deadline = time.monotonic() + PATIENCE
    while True:
        client.send({"type": "password", "password": password or ACCOUNTS[user]})
        frame = client.recv()
        if frame not in NOT_YET:
            break
        assert time.monotonic() < deadline, "the node never took the login"
        time.sleep(0.05)
    assert frame == {"type": "welcome", "user": user}, frame
    client.user = user
    client.send({"type": "listen", "port": 9})
    return frame


def logout(client):
    client.send({"type": "logout"})
    client.until("bye", reason="logout")
    client.expect_closed()


def names(client, command="whoelse", **fields):
    client.send({"type": command, **fields})
    return client.until("users")["names"]


def presence_until(client, user, online):
    """Skip frames until a presence frame says ``user`` came (``online``) or went."""
    while True:
        frame = client.until("presence", online=online)
        if user in frame.get("users", [frame.get("user")]):
            return frame


def history_with(client, user):
    """``client``'s history with ``user`` (a WireClient's, on a single server or a node), as (from, text), oldest
    first: its ``history`` frames until the pong; other frames are skipped."""
    client.send({"type": "history", "user": user})
    client.send({"type": "ping"})
    kept = []
    while (frame := client.recv())["type"] != "pong":
        if frame["type"] == "history":
            kept += [(m["from"], m["text"]) for m in frame["messages"]]
    return kept
