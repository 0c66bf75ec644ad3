"""Checks password hashes in a process of its own, so a login never stalls the server's loop.

A scrypt check takes tens of milliseconds of CPU and 16 MiB (``reactor/server/passwords.py``): on the loop, every
login would freeze every user, and someone sending passwords as fast as they can would freeze them all. So
the server (``Verifier``, owned by the host) starts this module as a helper process, as OpenSSH's privilege
separation does, and speaks to it through a socket pair watched by the same loop: the server process keeps
its one thread, and the helper does nothing but checks, one at a time, in the order asked.

Protocol on the socket pair, JSON lines: server -> helper ``{"id": N, "hash": H, "password": P}``, helper ->
server ``{"id": N, "ok": true|false}`` (in the same order). The helper knows no account and reads no file: it
is given the hash with each request. It ignores SIGINT (the server's shutdown ends it by closing the socket)
and exits at end of input.

``Verifier`` starts the helper at the first check, and again after it dies (at once if it had run for a while,
else after a delay doubling up to ``MAX_RESTART_DELAY``). When it dies, the checks waiting for it are answered
"cannot check" (None), and so are new ones until it is back, and ones beyond ``max_pending``; a helper that
answers nothing for ``CHECK_TIMEOUT`` seconds while checks wait, or answers what was not asked, is killed.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

from ..framing import JsonLines, encode
from ..loop import EventLoop, TimerHandle
from ..stream import Stream
from .passwords import verify_password

__all__ = ["Verifier", "MAX_PENDING", "CHECK_TIMEOUT", "main"]

log = logging.getLogger(__name__)

MAX_PENDING = 64           # checks waiting for the helper; more are answered "cannot check" at once
CHECK_TIMEOUT = 10.0       # seconds the helper may take to answer while checks wait, before it is killed
RESTART_DELAY = 0.25       # seconds before restarting a helper that died soon after it started ...
MAX_RESTART_DELAY = 30.0   # ... doubling each time, up to this
HEALTHY_RUN = 10.0         # seconds a helper must have run for its death to be restarted at once
MAX_REQUEST = 8192         # bytes of one request line (a password reaches the server in at most 1 KiB)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # where `-m reactor.server.verifier` is found


class Verifier:
    """The server's side: ``check(key, hashed, password)`` answers ``on_result(key, ok)`` later, from a loop
    callback of its own; ``ok`` is None when it could not be checked (no helper, too many waiting)."""

    def __init__(self, loop: EventLoop, on_result: Callable[[int, bool | None], object], *,
                 max_pending: int = MAX_PENDING, check_timeout: float = CHECK_TIMEOUT,
                 command: list[str] | None = None) -> None:
        self._loop = loop
        self._on_result = on_result
        self._max_pending = max_pending
        self._check_timeout = check_timeout
        self._command = command or [sys.executable, "-m", "reactor.server.verifier"]
        self._process: subprocess.Popen[bytes] | None = None
        self._stream: Stream | None = None
        self._started = 0.0
        self._pending: dict[int, int] = {}   # request id -> key, in the order asked
        self._next_id = 1
        self._deadline: TimerHandle | None = None   # the helper must have answered by then
        self._restart: TimerHandle | None = None
        self._delay = 0.0   # the last restart delay
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The helper's process id, while it runs."""
        return self._process.pid if self._stream is not None and self._process is not None else None

    @property
    def pending(self) -> int:
        """Checks waiting for the helper's answer."""
        return len(self._pending)

    def check(self, key: int, hashed: str, password: str) -> None:
        """Have ``password`` checked against the hash field ``hashed``; the answer goes to ``on_result``."""
        if self._stream is None and self._restart is None and not self._closed:
            self._start()
        if self._stream is None or len(self._pending) >= self._max_pending:
            self._loop.call_soon(self._on_result, key, None)
            return
        request_id = self._next_id
        self._next_id += 1
        if not self._pending:
            self._deadline = self._loop.call_later(self._check_timeout, self._timed_out)
        self._pending[request_id] = key
        self._stream.write(encode({"id": request_id, "hash": hashed, "password": password}))

    def close(self) -> None:
        """Stop the helper (it exits at end of input) and answer what waits with None; no restarts."""
        self._closed = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self._stream is not None:
            self._lost("the server is shutting down", kill=False)

    # -- the helper ----------------------------------------------------

    def _start(self) -> None:
        self._restart = None
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen([*self._command, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=_ROOT)
        except OSError as exc:
            ours.close()
            log.error("cannot start the password verifier: %s", exc)
            self._schedule_restart()
            return
        finally:
            theirs.close()
        self._started = self._loop.time()
        self._stream = Stream(self._loop, ours, JsonLines(self, max_frame=1024))
        log.info("password verifier started, pid %d", self._process.pid)

    def frame_received(self, stream: Stream, frame: dict[str, object]) -> None:
        request_id, ok = frame.get("id"), frame.get("ok")
        key = self._pending.pop(request_id, None) if type(request_id) is int else None
        if key is None or type(ok) is not bool:
            self._lost("it answered what was not asked")
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = self._loop.call_later(self._check_timeout, self._timed_out) if self._pending else None
        self._on_result(key, ok)

    def frame_error(self, stream: Stream, detail: str) -> None:
        self._lost(f"it answered what was not asked ({detail})")

    def connection_lost(self, stream: Stream, reason: str | None) -> None:
        if stream is self._stream:
            self._lost(reason or "its socket closed")

    def _timed_out(self) -> None:
        self._deadline = None
        self._lost(f"no answer for {self._check_timeout:g} s")

    def _lost(self, why: str, kill: bool = True) -> None:
        """The helper is gone or of no use: answer what waited for it with None and (unless closing) restart."""
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
        pending, self._pending = self._pending, {}
        if not self._closed:
            ran = self._loop.time() - self._started
            self._delay = 0.0 if ran >= HEALTHY_RUN else max(RESTART_DELAY, min(self._delay * 2, MAX_RESTART_DELAY))
            log.error("password verifier stopped (%s): %d checks could not be done; restarting in %g s",
                      why, len(pending), self._delay)
            self._schedule_restart()
        for key in pending.values():
            self._on_result(key, None)

    def _schedule_restart(self) -> None:
        if not self._closed:
            self._restart = self._loop.call_later(self._delay, self._start)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Collect the exited helper (no zombie) without waiting on the loop: poll until it is gone."""
        if process.poll() is None:
            self._loop.call_later(0.05, self._reap, process)


# -- the helper process ------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """The helper: check requests from the socket whose descriptor is ``argv[0]`` until end of input."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[0])) as sock, sock.makefile("rb") as requests:
        while True:
            try:
                line = requests.readline(MAX_REQUEST + 1)
                if not line:
                    return 0
                request = json.loads(line)
                ok = verify_password(request["password"], request["hash"])
                sock.sendall(json.dumps({"id": request["id"], "ok": ok}).encode("ascii") + b"\n")
            except (BrokenPipeError, ConnectionResetError):   # the server went away: nobody to answer
                return 0


if __name__ == "__main__":
    sys.exit(main())
