"""The load generator: many protocol clients per process, on our own reactor.

A worker (``python -m tests.bench.loadgen``) runs one ``reactor.loop.EventLoop``
driving raw non-blocking sockets, one per simulated client, and takes
commands as JSON lines on stdin, answering each with one JSON line on stdout
once it is done. ``LoadGenerators`` starts several workers (one per core
helps) and fans commands out to them; the runner drives it.

Clients speak protocol version 2 (presence frames list users) and log in as
a person's client would (hello, username, password, each
waiting for its answer, then ``listen``), as ``user<k>`` (or, ``names``
``cyrillic-cjk``, ``Пользователь<k>`` and ``用户<k>号``: common.user_name); ``logout``
logs them all out at once. User ``2k`` and ``2k+1`` are
partners, always in the same worker. Against the raw relay a client sends
``{"type":"relay","pair":k}`` instead and waits for the relay's welcome.
Against an IRC server (``protocol="irc"``: miniircd) a client registers with
``NICK``/``USER`` and waits for the end of the welcome burst (``376``/``422``);
its messages are ``PRIVMSG <partner> :<text>``, one line each as in the chat.

Receiving is cheap on purpose so the generator is not what is measured: bytes
are cut into whole lines and, in most modes, only counted; JSON is decoded
only where a figure needs a field (latency timestamps, the fan-out marker, the
login dialogue).
"""
from __future__ import annotations

import errno
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from reactor.framing import encode
from reactor.loop import EventLoop, TimerHandle

from .common import password, process_cpu_seconds, raise_open_files_limit, user_name

RECV_SIZE = 256 * 1024
TEXT = "the quick brown fox jumps over the lazy dog"  # the payload of a relayed message
TICK = 0.001  # seconds between paced sends in the latency workload
# Clients connect from many loopback source addresses: the server admits only so many strangers per address,
# and one source address has only ~28,000 ephemeral ports toward one server port.
SOURCE_ADDRESSES = 250
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # pick the port at connect, per peer
ACTIVITY = encode({"type": "activity"})
DELIVERED = b'"type":"delivered"'
LOGOUT = encode({"type": "logout"})

# client states
CONNECTING, HELLO, USERNAME, PASSWORD, PAIRING, REGISTERING, READY, LEAVING, GONE = range(9)
PROTOCOLS = ("chat", "relay", "irc")
IRC_WELCOMED = (b"376", b"422")  # end of the MOTD, or no MOTD: the registration burst is over
IRC_REFUSED = (b"432", b"433")   # erroneous nickname, nickname in use


def irc_message(to: str, text: str) -> bytes:
    return f"PRIVMSG {to} :{text}\r\n".encode()


class Client:
    """One simulated client: a socket, its place in the login dialogue, and its partner."""

    __slots__ = ("gen", "index", "name", "sock", "state", "tail", "out", "partner", "message",
                 "last_sent", "closed_at")

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.name = user_name(index, gen.names)
        self.sock: socket.socket | None = None
        self.state = CONNECTING
        self.tail = b""            # a partial line received so far
        self.out = bytearray()     # bytes the socket would not take yet
        self.partner: Client | None = None
        self.message = b""         # one encoded message frame to the partner
        self.last_sent = 0.0       # when it last sent a frame that re-arms its inactivity timer
        self.closed_at = 0.0

    # -- connecting ----------------------------------------------------

    def connect(self, address: tuple[str, int]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((f"127.0.1.{1 + self.index % SOURCE_ADDRESSES}", 0))
        self.sock = sock
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            self.fail(f"connect: {os.strerror(err)}")
            return
        self.gen.loop.add_writer(sock, self._connected)

    def _connected(self) -> None:
        loop = self.gen.loop
        loop.remove_writer(self.sock)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail(f"connect: {os.strerror(err)}")
            return
        loop.add_reader(self.sock, self._readable)
        if self.gen.protocol == "relay":
            self.state = PAIRING
            self.write(encode({"type": "relay", "pair": self.index // 2}))
        elif self.gen.protocol == "irc":
            self.state = REGISTERING
            self.write(f"NICK {self.name}\r\nUSER {self.name} 0 * :{self.name}\r\n".encode())
        else:
            self.state = HELLO
            self.write(encode({"type": "hello", "version": 2}))

    # -- I/O -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.state == GONE:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.lost(f"send: {exc}")
            return
        if sent < len(data):
            self.out += data[sent:]
            self.gen.loop.add_writer(self.sock, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(f"send: {exc}")
            return
        del self.out[:sent]
        if not self.out:
            self.gen.loop.remove_writer(self.sock)

    def _readable(self) -> None:
        try:
            size = self.sock.recv_into(self.gen.received)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(f"recv: {exc}")
            return
        if not size:
            self.lost("closed by the server")
            return
        data = self.gen.received_view[:size].tobytes()
        if self.tail:
            data = self.tail + data
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.tail = data[end:]
            if not end:
                return
            data = data[:end]
        else:
            self.tail = b""
        if self.state == READY:
            self.gen.on_lines(self, data)
        elif self.state == LEAVING:   # what comes before the bye
            pass
        elif self.state == REGISTERING:
            self._irc_login_lines(data)
        else:
            self._login_lines(data)

    # -- the login dialogue --------------------------------------------

    def _login_lines(self, data: bytes) -> None:
        lines = data.split(b"\n")[:-1]
        for at, line in enumerate(lines):
            frame = json.loads(line)
            kind = frame.get("type")
            if kind == "error":
                self.fail(f"login refused: {frame}")
                return
            if self.state == HELLO and kind == "hello":
                self.state = USERNAME
                self.write(encode({"type": "username", "username": self.name}))
            elif self.state == USERNAME and kind == "username_ok":
                self.state = PASSWORD
                self.write(encode({"type": "password", "password": password(self.index)}))
            elif self.state in (PASSWORD, PAIRING) and kind == "welcome":
                if self.state == PASSWORD:
                    self.write(encode({"type": "listen", "host": "127.0.0.1", "port": 9}))
                self.state = READY
                self.last_sent = time.monotonic()
                self.gen.login_done(self, None)
                rest = lines[at + 1:]
                if rest:
                    self.gen.on_lines(self, b"\n".join(rest) + b"\n")
                return
            # anything else before the welcome (presence of others...) is not ours to check

    def _irc_login_lines(self, data: bytes) -> None:
        lines = data.split(b"\n")[:-1]
        for at, line in enumerate(lines):
            words = line.split(b" ", 2)  # ":server CODE rest"
            code = words[1] if len(words) > 1 else b""
            if line.startswith(b"ERROR") or code in IRC_REFUSED:
                self.fail(f"registration refused: {line!r}")
                return
            if code in IRC_WELCOMED:
                self.state = READY
                self.last_sent = time.monotonic()
                self.gen.login_done(self, None)
                rest = lines[at + 1:]
                if rest:
                    self.gen.on_lines(self, b"\n".join(rest) + b"\n")
                return

    # -- the end -------------------------------------------------------

    def fail(self, reason: str) -> None:
        """The login did not succeed."""
        self._close()
        self.gen.login_done(self, reason)

    def lost(self, reason: str) -> None:
        if self.state == GONE:
            return
        if self.state == LEAVING:   # the server closed it after its logout, as it should
            self._close()
            return
        if self.state != READY:
            self.fail(reason)
            return
        self._close()
        self.gen.on_lost(self, reason)

    def _close(self) -> None:
        self.state = GONE
        self.closed_at = time.monotonic()
        if self.sock is not None:
            self.gen.loop.remove_reader(self.sock)
            self.gen.loop.remove_writer(self.sock)
            self.sock.close()


class Generator:
    """One worker's clients and the workloads they run; commands arrive on stdin."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        # Every read lands in this one buffer and only what came is copied out. A recv(RECV_SIZE) of its own
        # mapped and unmapped 256 KiB (glibc's mmap threshold) per read: mmap, mremap and munmap beside each
        # recvfrom, 3/4 of the generators' system calls in a login storm, where each client reads a presence
        # frame per turn. A storm of 10,000 logins: the generators' CPU 10.6 -> 3.0 s, and with them on one
        # core (the bench pins them so) the storm itself 10.9 -> 4.0 s: it had measured the generators.
        self.received = bytearray(RECV_SIZE)
        self.received_view = memoryview(self.received)
        self.clients: list[Client] = []
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.protocol = "chat"
        self.names = "ascii"       # how the users are named (common.user_name)
        self.on_lines: Callable[[Client, bytes], None] = self._count
        self.lines = 0             # lines received by logged-in clients in counting modes
        self.lost = 0
        self.lost_reasons: list[str] = []
        self._control = b""
        self._reply_when: Callable[[], dict | None] | None = None  # the pending command's completion test
        self._login: dict[str, Any] = {}
        self._mode: dict[str, Any] = {}
        self._keepalive: TimerHandle | None = None

    # -- control -------------------------------------------------------

    def run(self) -> None:
        os.set_blocking(0, False)
        self.loop.add_reader(0, self._read_control)
        self.loop.run()

    def _read_control(self) -> None:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        if not data:  # the runner is gone
            self.loop.stop()
            return
        self._control += data
        self._next_command()

    def _next_command(self) -> None:
        """Start the next command unless one is still running; commands run one at a time."""
        while b"\n" in self._control and self._reply_when is None:
            line, self._control = self._control.split(b"\n", 1)
            command = json.loads(line)
            try:
                self._reply_when = getattr(self, "cmd_" + command.pop("cmd"))(**command)
            except Exception as exc:  # a bench bug: tell the runner rather than hang
                self._reply_when = lambda exc=exc: {"error": f"{type(exc).__name__}: {exc}"}
            self._check_done()

    def _check_done(self) -> None:
        """Answer the running command if it is complete; otherwise look again shortly."""
        reply = self._reply_when()
        if reply is None:
            self.loop.call_later(0.005, self._check_done)
            return
        self._reply_when = None
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        self.loop.call_soon(self._next_command)

    # -- commands ------------------------------------------------------

    def cmd_setup(self, port: int, first: int, count: int, protocol: str, names: str = "ascii") -> Callable[[], dict]:
        self.address = ("127.0.0.1", port)
        self.protocol = protocol
        self.names = names
        self.clients = [Client(self, index) for index in range(first, first + count)]
        for a, b in zip(self.clients[0::2], self.clients[1::2], strict=False):
            a.partner, b.partner = b, a
        for client in self.clients:
            client.message = self.encode_message(client.partner.name, TEXT)
        return lambda: {"clients": len(self.clients)}

    def cmd_login(self, concurrency: int, within: float) -> Callable[[], dict | None]:
        """Log every client in, ``concurrency`` at a time; answer when all are in or failed, or after ``within`` s."""
        state = self._login = {"queue": list(reversed(self.clients)), "busy": 0, "ok": 0, "failed": 0,
                               "errors": [], "first": time.monotonic(), "last": 0.0}
        for _ in range(min(concurrency, len(self.clients))):
            self._start_next_login()

        def done() -> dict | None:
            if (state["busy"] or state["queue"]) and time.monotonic() - state["first"] < within:
                return None
            state["queue"].clear()  # cut off: start no more
            return {key: state[key] for key in ("ok", "failed", "errors", "first", "last")}
        return done

    def _start_next_login(self) -> None:
        state = self._login
        if state["queue"]:
            state["busy"] += 1
            state["queue"].pop().connect(self.address)

    def login_done(self, client: Client, error: str | None) -> None:
        state = self._login
        state["busy"] -= 1
        if error is None:
            state["ok"] += 1
            state["last"] = client.last_sent
        else:
            state["failed"] += 1
            if len(state["errors"]) < 5:
                state["errors"].append(f"{client.name}: {error}")
        self._start_next_login()

    def on_lost(self, client: Client, reason: str) -> None:
        self.lost += 1
        if len(self.lost_reasons) < 5:
            self.lost_reasons.append(f"{client.name}: {reason}")

    def cmd_logout(self, within: float) -> Callable[[], dict | None]:
        """Every logged-in client logs out at once; answer once the server has closed them all (``left``),
        or after ``within`` s (``stuck``: those still open)."""
        leaving = self.ready_clients()
        for client in leaving:
            client.state = LEAVING
            client.write(LOGOUT)
        started = time.monotonic()

        def done() -> dict | None:
            stuck = sum(client.state != GONE for client in leaving)
            if stuck and time.monotonic() - started < within:
                return None
            return {"left": len(leaving) - stuck, "stuck": stuck}
        return done

    def cmd_lines(self) -> Callable[[], dict]:
        """How many lines the logged-in clients have received (presence notices, for settling)."""
        return lambda: {"lines": self.lines, "lost": self.lost, "lost_reasons": self.lost_reasons}

    def _count(self, client: Client, data: bytes) -> None:
        """Presence notices, one per user: a version 2 frame lists them, ``"presence","users":["a","b"]``,
        so it holds one ``","`` per user (no name holds one); other lines count one each."""
        if b'"users"' in data:
            self.lines += data.count(b'","') + data.count(b"\n") - data.count(b'"users"')
        else:
            self.lines += data.count(b"\n")

    def encode_message(self, to: str, text: str) -> bytes:
        """One message to user ``to`` in this generator's protocol."""
        if self.protocol == "irc":
            return irc_message(to, text)
        return encode({"type": "message", "to": to, "text": text})

    def ready_clients(self) -> list[Client]:
        return [client for client in self.clients if client.state == READY]

    # -- relay throughput ----------------------------------------------

    def cmd_throughput(self, window: int, warmup: float, periods: int, period: float) -> Callable[[], dict | None]:
        """Every pair keeps ``window`` messages in flight each way; delivered messages per second per period."""
        mode = self._mode = {"sent": 0, "received": 0, "sending": True, "marks": [], "stopped_at": None}
        self.on_lines = self._relay_lines
        pairs = [(a, a.partner) for a in self.ready_clients()[0::2] if a.partner.state == READY]
        for a, b in pairs:
            a.write(a.message * window)
            b.write(b.message * window)
        mode["sent"] = 2 * window * len(pairs)
        start = self.loop.time()

        def mark() -> None:
            mode["marks"].append((self.loop.time(), mode["received"]))
            if len(mode["marks"]) > periods:
                mode["sending"] = False
                mode["stopped_at"] = self.loop.time()
        for k in range(periods + 1):
            self.loop.call_at(start + warmup + k * period, mark)

        def done() -> dict | None:
            if not self._finished(mode):
                return None
            drained = mode["received"] >= mode["sent"]
            marks = mode["marks"]
            rates = [(n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in zip(marks, marks[1:], strict=False)]
            return {"rates": rates, "pairs": len(pairs), "drained": drained, "lost": self.lost,
                    "lost_reasons": self.lost_reasons, "received": mode["received"]}
        return done

    def _finished(self, mode: dict) -> bool:
        """A paced workload is over once sending stopped and all it sent arrived (or 5 s went by)."""
        if mode["stopped_at"] is None:
            return False
        if mode["received"] < mode["sent"] and self.loop.time() - mode["stopped_at"] < 5.0:
            return False
        self.on_lines = self._count
        return True

    def _relay_lines(self, client: Client, data: bytes) -> None:
        # (a cluster node confirms a message it relayed to another node with a delivered frame: not a message)
        count = data.count(b"\n") - data.count(DELIVERED)
        mode = self._mode
        mode["received"] += count
        if mode["sending"]:  # the partner refills the window it sent to this client
            partner = client.partner
            partner.write(partner.message * count)
            mode["sent"] += count

    # -- latency at a fixed offered load -------------------------------

    def cmd_latency(self, rate: float, warmup: float, duration: float) -> Callable[[], dict | None]:
        """Send ``rate`` messages/s spread over all clients for ``warmup + duration`` s; one-way latencies."""
        senders = self.ready_clients()
        senders = [c for c in senders if c.partner.state == READY]
        mode = self._mode = {"sent": 0, "received": 0, "samples": [], "stopped_at": None}
        self.on_lines = self._latency_lines
        start = self.loop.time()
        keep_from = start + warmup
        mode["keep_from"] = keep_from

        def tick() -> None:
            now = self.loop.time()
            if now >= start + warmup + duration:
                mode["stopped_at"] = now
                return
            due = int((now - start) * rate) - mode["sent"]
            for _ in range(due):
                sender = senders[mode["sent"] % len(senders)]
                sender.write(self.encode_message(sender.partner.name, repr(time.monotonic())))
                mode["sent"] += 1
            self.loop.call_later(TICK, tick)
        if senders:
            tick()
        else:
            mode["stopped_at"] = start

        def done() -> dict | None:
            if not self._finished(mode):
                return None
            return {"samples": mode["samples"], "sent": mode["sent"], "received": mode["received"],
                    "lost": self.lost}
        return done

    def _latency_lines(self, client: Client, data: bytes) -> None:
        now = time.monotonic()
        mode = self._mode
        irc = self.protocol == "irc"
        for line in data.split(b"\n")[:-1]:
            if irc:
                if b" PRIVMSG " not in line:
                    continue
                sent = float(line.rsplit(b" :", 1)[1])
            else:
                frame = json.loads(line)
                if frame.get("type") != "message":
                    continue
                sent = float(frame["text"])
            mode["received"] += 1
            if sent >= mode["keep_from"]:
                    mode["samples"].append(now - sent)

    # -- broadcast fan-out ---------------------------------------------

    def cmd_fanout(self, tag: str, send: bool, within: float) -> Callable[[], dict | None]:
        """Expect the broadcast ``tag`` on every client here; if ``send``, the first client sends it."""
        ready = self.ready_clients()
        mode = self._mode = {"tag": tag, "seen": 0, "last": 0.0, "sent_at": None,
                             "expect": len(ready) - (1 if send else 0)}
        self.on_lines = self._fanout_lines
        started = self.loop.time()
        if send:
            mode["sent_at"] = time.monotonic()
            ready[0].write(encode({"type": "broadcast", "text": tag}))

        def done() -> dict | None:
            complete = mode["seen"] >= mode["expect"]
            if not complete and self.loop.time() - started < within:
                return None
            self.on_lines = self._count
            return {"sent_at": mode["sent_at"], "last": mode["last"], "seen": mode["seen"],
                    "expected": mode["expect"]}
        return done

    def _fanout_lines(self, client: Client, data: bytes) -> None:
        now = time.monotonic()
        mode = self._mode
        for line in data.split(b"\n")[:-1]:
            frame = json.loads(line)
            if frame.get("type") == "message" and frame.get("text") == mode["tag"]:
                mode["seen"] += 1
                mode["last"] = max(mode["last"], now)

    # -- inactivity timeout --------------------------------------------

    def cmd_keepalive(self, period: float) -> Callable[[], dict]:
        """Every ``period`` s each logged-in client sends ``activity``, until ``idle_timeout``."""
        def beat() -> None:
            for client in self.ready_clients():
                client.write(ACTIVITY)
                client.last_sent = time.monotonic()
            self._keepalive = self.loop.call_later(period, beat)
        self._keepalive = self.loop.call_later(period, beat)
        return lambda: {}

    def cmd_idle_timeout(self, timeout: float, within: float) -> Callable[[], dict | None]:
        """Every client sends ``activity`` now and then stays idle; how late each inactivity ``bye`` comes."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        ready = self.ready_clients()
        mode = self._mode = {"late": [], "timeout": timeout, "waiting": len(ready)}
        self.on_lines = self._timeout_lines
        for client in ready:  # the same deadline for all
            client.write(ACTIVITY)
            client.last_sent = time.monotonic()
        started = self.loop.time()

        def done() -> dict | None:
            if mode["waiting"] > 0 and self.loop.time() - started < within:
                return None
            self.on_lines = self._count
            return {"late": mode["late"], "missing": mode["waiting"]}
        return done

    def _timeout_lines(self, client: Client, data: bytes) -> None:
        if b'"bye"' not in data:  # presence notices of the others: not decoded
            return
        now = time.monotonic()
        mode = self._mode
        for line in data.split(b"\n")[:-1]:
            if b'"bye"' in line and json.loads(line).get("reason") == "timeout":
                mode["late"].append(now - (client.last_sent + mode["timeout"]))
                mode["waiting"] -= 1


def worker_main() -> None:
    raise_open_files_limit()
    Generator().run()


class GeneratorError(RuntimeError):
    pass


class LoadGenerators:
    """Runner side: ``count`` worker processes sharing users ``0..users-1`` (pairs kept together)."""

    def __init__(self, count: int, port: int, users: int, *, protocol: str = "chat", cpus: set[int] | None = None,
                 cwd: str | None = None, env: dict | None = None, names: str = "ascii") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        share = users // count
        if share % 2:
            share += 1
        self._procs: list[subprocess.Popen] = []
        try:
            first = 0
            for k in range(count):
                n = users - first if k == count - 1 else min(share, users - first)
                proc = subprocess.Popen([sys.executable, "-m", "tests.bench.loadgen"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, cwd=cwd, env=env)
                self._procs.append(proc)
                if cpus:
                    os.sched_setaffinity(proc.pid, cpus)
                self._send(proc, {"cmd": "setup", "port": port, "first": first, "count": n, "protocol": protocol,
                                  "names": names})
                first += n
            for proc in self._procs:
                self._receive(proc, 10.0)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    def cpu_seconds(self) -> list[float]:
        """User + system CPU time each worker has used so far."""
        return [process_cpu_seconds(pid) for pid in self.pids]

    def command(self, name: str, wait: float = 120.0, per_worker: list[dict] | None = None,
                meanwhile: Callable[[], Any] | None = None, **args: Any) -> list[dict]:
        """Send one command to every worker (``per_worker`` adds arguments to each); their replies.
        ``meanwhile()`` runs once the command is sent, while the workers carry it out."""
        for k, proc in enumerate(self._procs):
            extra = per_worker[k] if per_worker else {}
            self._send(proc, {"cmd": name, **args, **extra})
        if meanwhile is not None:
            meanwhile()
        replies = [self._receive(proc, wait) for proc in self._procs]
        for reply in replies:
            if "error" in reply:
                raise GeneratorError(f"load generator: {name}: {reply['error']}")
        return replies

    def _send(self, proc: subprocess.Popen, command: dict) -> None:
        proc.stdin.write(json.dumps(command).encode() + b"\n")
        proc.stdin.flush()

    def _receive(self, proc: subprocess.Popen, wait: float) -> dict:
        ready, _, _ = select.select([proc.stdout], [], [], wait)
        if not ready:
            raise GeneratorError(f"load generator {proc.pid} did not answer within {wait:.0f}s")
        line = proc.stdout.readline()
        if not line:
            raise GeneratorError(f"load generator {proc.pid} exited (status {proc.poll()})")
        return json.loads(line)

    def close(self) -> None:
        for proc in self._procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self._procs = []


if __name__ == "__main__":
    worker_main()
