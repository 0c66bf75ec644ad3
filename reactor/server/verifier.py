"""Checks password hashes, and makes new ones, in helper processes of their own, so a login never stalls the
server's loop.

A scrypt check takes tens of milliseconds of CPU and 16 MiB (``reactor/server/passwords.py``): on the loop, every
login would freeze every user, and someone sending passwords as fast as they can would freeze them all. So
the server (``Verifier``, owned by the host) starts this module as helper processes, as OpenSSH's privilege
separation does, and speaks to each through a socket pair watched by the same loop: the server process keeps
its one thread, and each helper does nothing but checks, one at a time.

There are as many helpers as cores the server may run on (``default_helpers``; ``server_main.py
--password-helpers`` sets another number), so a crowd logging in at once is checked on every core: 200 logins
at once took 6.5 s on one helper, and the 136 beyond its 64 waiting checks were told ``try_again``. A helper is
started when a check finds every running one busy, so a server that sees few hashed logins runs one. A check
goes to an idle helper; when none is idle it waits in one queue, in the order asked, for the first helper that
answers (so a slow check holds up no other helper's work).

A user who changes their password (``reactor/server/password_change.py``) has the new one hashed here too: a
hash takes as long as a check, and is one more job in the same queue (``hash``).

Protocol on each socket pair, JSON lines: server -> helper ``{"id": N, "hash": H, "password": P}`` (check P
against H), helper -> server ``{"id": N, "ok": true|false}``; or server -> helper ``{"id": N, "new": P}`` (hash
P), helper -> server ``{"id": N, "hash": H}``. The server sends a helper its next job only once it answered the
last. The helper knows no account and reads no file: it is given the hash with each check. It runs at a lower
priority than the server (``HELPER_NICENESS``), ignores SIGINT (the server's shutdown ends it by closing the
socket) and exits at end of input.

Each helper is restarted after it dies (at once if it had run for a while, else after a delay doubling up to
``MAX_RESTART_DELAY``); the check it held is answered "cannot check" (None); so are the queued ones and new
ones while no helper runs, and ones beyond ``max_pending`` (a hash that cannot be made is answered None too). A
helper that answers nothing for ``CHECK_TIMEOUT`` seconds, or answers what was not asked, is killed.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable

from ..framing import JsonLines, encode
from ..loop import EventLoop, TimerHandle
from ..stream import Stream
from .passwords import hash_password, is_hashed, verify_password

__all__ = ["Verifier", "MAX_PENDING_PER_HELPER", "CHECK_TIMEOUT", "default_helpers", "main"]

log = logging.getLogger(__name__)

# Checks accepted per helper (being checked or queued); more are answered "cannot check" at once. At about
# 30 ms a check (the default hash, here), 128 are about 4 s of one helper's work: a login waits at most that
# long, well inside its login timeout, where a crowd of 200 fits on 2 cores without one try_again.
MAX_PENDING_PER_HELPER = 128
CHECK_TIMEOUT = 10.0       # seconds a helper may take to answer a check, before it is killed
RESTART_DELAY = 0.25       # seconds before restarting a helper that died soon after it started ...
MAX_RESTART_DELAY = 30.0   # ... doubling each time, up to this
HEALTHY_RUN = 10.0         # seconds a helper must have run for its death to be restarted at once
# The helpers' scheduling priority, below the server's: with a helper per core, a crowd of checks would take
# every core from the loop. Measured (2 cores, shared): a bystander's p99 round trip while 20 connections guess
# hashed passwords, 0.12 ms with it (as with no attack), 4.9 ms without; 200 logins at once took as long.
HELPER_NICENESS = 10
# Bytes of one request line: a password reaches the server in at most 1 KiB at login, and one given to change a
# password (its current one) is at most 1,024 characters, 12 bytes each at worst once JSON-escaped.
MAX_REQUEST = 16384
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # where `-m reactor...` is found


def default_helpers() -> int:
    """As many helpers as cores this process may run on (its CPU affinity, else the machine's cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # (no sched_getaffinity on this system)
        return max(1, os.cpu_count() or 1)


# One job for a helper: (key, the hash to check against or None to make one, the password).
_Job = tuple[int, "str | None", str]


class Verifier:
    """The server's side: ``check(key, hashed, password)`` answers ``on_result(key, ok)`` later, from a loop
    callback of its own; ``ok`` is None when it could not be checked (no helper, too many waiting).
    ``hash(key, password)`` answers ``on_hashed(key, field)`` alike: the new hash field, or None.

    ``helpers``: at most this many helper processes (default ``default_helpers()``); ``max_pending``: checks
    accepted and not yet answered (default ``MAX_PENDING_PER_HELPER`` per helper)."""

    def __init__(self, loop: EventLoop, on_result: Callable[[int, bool | None], object], *,
                 on_hashed: Callable[[int, str | None], object] | None = None,
                 helpers: int | None = None, max_pending: int | None = None, check_timeout: float = CHECK_TIMEOUT,
                 command: list[str] | None = None) -> None:
        self._loop = loop
        self._on_result = on_result
        self._on_hashed = on_hashed or (lambda key, field: None)
        count = default_helpers() if helpers is None else helpers
        if count < 1:
            raise ValueError(f"helpers must be at least 1, not {count}")
        self._max_pending = MAX_PENDING_PER_HELPER * count if max_pending is None else max_pending
        self.check_timeout = check_timeout
        self.command = command or [sys.executable, "-m", "reactor.server.verifier"]
        self._helpers = [_Helper(self, loop) for _ in range(count)]
        self._queue: deque[_Job] = deque()   # (key, hash or None, password) waiting for an idle helper
        self.closed = False
        self.restarts = 0   # helpers started again after one died (for the metrics)

    @property
    def pids(self) -> list[int]:
        """The process ids of the helpers that run."""
        return [helper.pid for helper in self._helpers if helper.pid is not None]

    @property
    def helpers(self) -> int:
        """How many helpers there may be at most."""
        return len(self._helpers)

    @property
    def pending(self) -> int:
        """Checks accepted and not yet answered: being checked, or queued for a helper."""
        return len(self._queue) + sum(helper.busy for helper in self._helpers)

    def check(self, key: int, hashed: str, password: str) -> None:
        """Have ``password`` checked against the hash field ``hashed``; the answer goes to ``on_result``."""
        self._take((key, hashed, password))

    def hash(self, key: int, password: str) -> None:
        """Have a new hash field made for ``password``; the answer goes to ``on_hashed``."""
        self._take((key, None, password))

    def _take(self, job: _Job) -> None:
        if self.closed or self.pending >= self._max_pending:
            self._loop.call_soon(self._answer, job, None)
            return
        helper = self._idle_helper()
        if helper is not None:
            helper.send(job)
        elif any(helper.running for helper in self._helpers):
            self._queue.append(job)
        else:   # every helper is down, waiting to be restarted
            self._loop.call_soon(self._answer, job, None)

    def _answer(self, job: _Job, answer: bool | str | None) -> None:
        """Tell whoever asked for ``job`` its ``answer`` (None: it could not be done)."""
        key, hashed, _ = job
        if hashed is None:
            self._on_hashed(key, answer if type(answer) is str else None)
        else:
            self._on_result(key, answer if type(answer) is bool else None)

    def close(self) -> None:
        """Stop the helpers (each exits at end of input) and answer what waits with None; no restarts."""
        self.closed = True
        for helper in self._helpers:
            helper.stop()
        self._fail_queue()

    def _idle_helper(self) -> _Helper | None:
        """A running helper with nothing to check, else a stopped one started now (None: neither)."""
        for helper in self._helpers:
            if helper.running and not helper.busy:
                return helper
        for helper in self._helpers:
            if helper.stopped and helper.start():
                return helper
        return None

    # -- from the helpers ----------------------------------------------

    def answered(self, helper: _Helper, job: _Job, answer: bool | str | None) -> None:
        """``helper`` answered ``job`` (None: it died with it); it takes the next queued job first, so a job
        that the answer makes waits its turn behind them. With no helper left running, the queued jobs are
        answered None after it."""
        if self._queue and helper.running:
            helper.send(self._queue.popleft())
        self._answer(job, answer)
        if not any(h.running for h in self._helpers):
            self._fail_queue()

    def helper_ready(self, helper: _Helper) -> None:
        """``helper`` was restarted: it takes the first queued check."""
        self.restarts += 1
        if self._queue:
            helper.send(self._queue.popleft())

    def _fail_queue(self) -> None:
        queue, self._queue = self._queue, deque()
        for job in queue:
            self._answer(job, None)


class _Helper:
    """One helper process and its socket pair: started, checking one thing at a time, restarted when it dies."""

    def __init__(self, pool: Verifier, loop: EventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._process: subprocess.Popen[bytes] | None = None
        self._stream: Stream | None = None
        self._started = 0.0
        self._job: _Job | None = None         # the job it holds ...
        self._request_id = 0                  # ... and that job's id on the wire
        self._deadline: TimerHandle | None = None   # it must have answered by then
        self._restart: TimerHandle | None = None
        self._delay = 0.0   # the last restart delay

    @property
    def pid(self) -> int | None:
        """The process id, while it runs."""
        return self._process.pid if self._stream is not None and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._stream is not None

    @property
    def busy(self) -> bool:
        """Whether it holds a job."""
        return self._job is not None

    @property
    def stopped(self) -> bool:
        """Neither running nor waiting to be restarted: it may be started."""
        return self._stream is None and self._restart is None and not self._pool.closed

    def start(self) -> bool:
        """Start the process; False (logged, a restart scheduled) if it cannot be."""
        self._restart = None
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen([*self._pool.command, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=_ROOT)
        except OSError as exc:
            ours.close()
            log.error("cannot start a password verifier: %s", exc)
            self._delay = max(RESTART_DELAY, min(self._delay * 2, MAX_RESTART_DELAY))
            self._schedule_restart()
            return False
        finally:
            theirs.close()
        self._started = self._loop.time()
        self._stream = Stream(self._loop, ours, JsonLines(self, max_frame=1024))
        log.info("password verifier started, pid %d", self._process.pid)
        return True

    def send(self, job: _Job) -> None:
        """Have it do ``job`` (it is running and holds no job): check a password against a hash, or hash one."""
        assert self._stream is not None and self._job is None
        self._job = job
        self._request_id += 1
        self._deadline = self._loop.call_later(self._pool.check_timeout, self._timed_out)
        _, hashed, password = job
        request = {"id": self._request_id, "new": password} if hashed is None else \
            {"id": self._request_id, "hash": hashed, "password": password}
        self._stream.write(encode(request))

    def stop(self) -> None:
        """End it for good (it exits at end of input); the check it holds is answered None."""
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self._stream is not None:
            self._lost("the server is shutting down", kill=False)

    # -- its stream ----------------------------------------------------

    def frame_received(self, stream: Stream, frame: dict[str, object]) -> None:
        job, request_id = self._job, frame.get("id")
        answer: bool | str | None = None   # a check's ok, or a new hash: what the job asked for
        if job is not None and type(request_id) is int and request_id == self._request_id:
            if job[1] is not None:
                ok = frame.get("ok")
                answer = ok if isinstance(ok, bool) else None
            else:
                field = frame.get("hash")
                answer = field if isinstance(field, str) and is_hashed(field) else None
        if job is None or answer is None:
            self._lost("it answered what was not asked")
            return
        self._job = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._pool.answered(self, job, answer)

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._lost(f"it answered what was not asked ({detail})")

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if stream is self._stream:
            self._lost(reason or "its socket closed")

    def _timed_out(self) -> None:
        self._deadline = None
        self._lost(f"no answer for {self._pool.check_timeout:g} s")

    def _lost(self, why: str, kill: bool = True) -> None:
        """The process is gone or of no use: answer its job with None and (unless closing) restart it."""
        stream, process = self._stream, self._process
        self._stream = self._process = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if stream is not None:
            stream.abort()
        if process is not None:
            if kill and process.poll() is None:
                process.kill()
            self._reap(process)
        job, self._job = self._job, None
        if not self._pool.closed:
            ran = self._loop.time() - self._started
            self._delay = 0.0 if ran >= HEALTHY_RUN else max(RESTART_DELAY, min(self._delay * 2, MAX_RESTART_DELAY))
            log.error("password verifier stopped (%s)%s; restarting in %g s",
                      why, "" if job is None else ": its job could not be done", self._delay)
            self._schedule_restart()
        if job is not None:
            self._pool.answered(self, job, None)

    def _schedule_restart(self) -> None:
        if not self._pool.closed:
            self._restart = self._loop.call_later(self._delay, self._restarted)

    def _restarted(self) -> None:
        if self.start():
            self._pool.helper_ready(self)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Collect the exited helper (no zombie) without waiting on the loop: poll until it is gone."""
        if process.poll() is None:
            self._loop.call_later(0.05, self._reap, process)


# -- the helper process ------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """The helper: check or hash as the socket whose descriptor is ``argv[0]`` asks, until end of input."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(HELPER_NICENESS)
    with socket.socket(fileno=int(argv[0])) as sock, sock.makefile("rb") as requests:
        while True:
            try:
                line = requests.readline(MAX_REQUEST + 1)
                if not line:
                    return 0
                request = json.loads(line)
                if "new" in request:
                    answer = {"id": request["id"], "hash": hash_password(request["new"])}
                else:
                    answer = {"id": request["id"], "ok": verify_password(request["password"], request["hash"])}
                sock.sendall(json.dumps(answer).encode("ascii") + b"\n")
            except (BrokenPipeError, ConnectionResetError):   # the server went away: nobody to answer
                return 0


if __name__ == "__main__":
    sys.exit(main())
