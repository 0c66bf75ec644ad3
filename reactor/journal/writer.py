"""Writes a journal without holding up the loop: the lines of a loop turn are written at once, before it sleeps;
a write that fails (the disk is full) or is slow stops the recording, with one log line, and the chat goes on.

The recorders (``reactor.journal.server``, ``reactor.journal.client``) append
finished lines to ``lines`` (a list: on the hot path an append is all a line
costs here); ``flush``, a before-sleep hook of the loop (``attach``), joins
them and writes them with one ``os.write``. A regular file takes the write
into the page cache (Linux ignores ``O_NONBLOCK`` on regular files, so a write
can block only when the kernel throttles a writer of dirty pages, which is the
slow disk this watches for: a write that takes more than ``SLOW_WRITE`` stops
the recording); a pipe or FIFO may take part of it, and the rest waits for
the next turn, up to ``MAX_BACKLOG`` bytes.

``max_bytes`` rotates: once the file holds that many bytes it is renamed
``FILE.<segment>`` and a new ``FILE`` starts with a header that continues it
(``segment``, ``first``, ``t0``), so every file is at most about that size and
a replay reads ``FILE.1``, ``FILE.2``, ..., ``FILE`` in order.

``JournalWriter`` is also the public way to write a journal by hand (a
simulator's failing run): ``event(op, now, digest, *args, draws=...)``.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from ..loop import EventLoop
from .format import DRAW, Header, dumps, micros

__all__ = ["JournalWriter", "SLOW_WRITE", "MAX_BACKLOG"]

log = logging.getLogger(__name__)

SLOW_WRITE = 0.25            # seconds one turn's write may take before the recording stops
MAX_BACKLOG = 16 << 20       # bytes a pipe may leave unwritten before the recording stops


class JournalWriter:
    """One journal: to ``target`` (a path, or a binary file object the caller owns), starting with ``header``."""

    def __init__(self, target: str | os.PathLike[str] | IO[bytes], header: Header, *, max_bytes: int | None = None,
                 on_stop: Callable[[str], Any] | None = None) -> None:
        self.header = header
        self.lines: list[str] = []   # finished lines waiting for the turn's write (the recorders append here)
        self.last = header.t0        # the last event's time, microseconds, as ``event`` wrote it
        self.clock: Callable[[], int] = lambda: self.last   # the last event's time (a recorder's, if it keeps it)
        self.before_flush: Callable[[], Any] | None = None  # a recorder's: finish its lines before the write
        self.events = header.first - 1   # events written so far (the number of the last one written)
        self._queued = 0             # events in the backlog, not yet written
        self.draws = 0               # lines among ``lines`` that are no event, less the events beyond one a line
        self.stopped = False         # written to the end, or stopped for a failure: nothing more is written
        self.on_stop = on_stop   # called once, with why, if the recording stops
        self._max_bytes = max_bytes
        self._backlog = b""
        self._bytes = 0
        self._fd: int | None = None
        self._file: IO[bytes] | None = None
        if isinstance(target, (str, os.PathLike)):
            self.path: str | None = os.fspath(target)
            self._fd = self._open(self.path)
        else:
            if max_bytes is not None:
                raise ValueError("max_bytes needs a path to rotate")
            self.path = None
            self._file = target
        self._backlog = header.line().encode("ascii")

    @staticmethod
    def _open(path: str) -> int:
        # Only its owner may read it: secrets are kept out, but who says what to whom is in it.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)

    def attach(self, loop: EventLoop) -> None:
        """Write the lines of each loop turn before the loop sleeps."""
        loop.add_before_sleep(self.flush)

    # -- writing by hand ---------------------------------------------------------

    def event(self, op: str, now: float, digest: int | None, *args: Any, draws: Iterable[Any] = ()) -> None:
        """One event at ``now`` (seconds; the rules must have been given ``quantize(now)``), after the
        values the rules drew while taking it."""
        for value in draws:
            self.lines.append(dumps([DRAW, value]) + "\n")
            self.draws += 1
        t = micros(now)
        self.lines.append(dumps([t - self.last, op, digest, *args]) + "\n")
        self.last = t
        if len(self.lines) >= 4096 and self._file is not None:
            self.flush()

    # -- the turn's write --------------------------------------------------------------

    def flush(self) -> None:
        """Write the lines waiting (see the module's docstring)."""
        if self.before_flush is not None and not self.stopped:
            self.before_flush()
        lines = self.lines
        if self.stopped:
            lines.clear()
            return
        if lines:
            self._queued += len(lines) - self.draws
            self.draws = 0
            data = "".join(lines).encode("ascii")
            lines.clear()   # (in place: the recorders hold its append)
            self._backlog = self._backlog + data if self._backlog else data
        if not self._backlog:
            return
        if self._file is not None:
            self._file.write(self._backlog)
            self._bytes += len(self._backlog)
            self._backlog = b""
            self.events += self._queued
            self._queued = 0
            return
        self._write()
        if self._max_bytes is not None and self._bytes >= self._max_bytes and not self.stopped \
                and not self._backlog:
            self._rotate()

    def _write(self) -> None:
        assert self._fd is not None
        start = time.monotonic()
        data = memoryview(self._backlog)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except BlockingIOError:   # a pipe that is full: the rest waits for the next turn
            pass
        except OSError as exc:
            why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
            self._stop(f"cannot write to it ({why})")
            return
        self._bytes += len(self._backlog) - len(data)
        self._backlog = bytes(data)
        if not data:
            self.events += self._queued
            self._queued = 0
        took = time.monotonic() - start
        if took > SLOW_WRITE:
            self._stop(f"writing one turn's lines took {took:.2f} s (the disk is slow)")
        elif len(self._backlog) > MAX_BACKLOG:
            self._stop(f"{len(self._backlog)} bytes could not be written")

    def _rotate(self) -> None:
        """This file is full: it becomes FILE.<segment>, and FILE starts again with a header that continues it."""
        assert self._fd is not None and self.path is not None
        os.close(self._fd)
        self._fd = None
        segment = self.header.segment
        try:
            os.replace(self.path, f"{self.path}.{segment}")
            self._fd = self._open(self.path)
        except OSError as exc:
            self._stop(f"cannot start its next file ({exc.strerror or exc})")
            return
        self.header.segment, self.header.first, self.header.t0 = segment + 1, self.events + 1, self.clock()
        self._bytes = 0
        log.info("journal %s: %s.%d is full; going on in a new %s (segment %d, from event %d)", self.path, self.path,
                 segment, self.path, segment + 1, self.events + 1)
        self._backlog = self.header.line().encode("ascii")
        self._write()

    def stop(self, why: str) -> None:
        """Stop recording for ``why`` (one log line): the lines so far are written, nothing after them."""
        if not self.stopped:
            self.flush()
        if not self.stopped:
            self._stop(why)

    def _stop(self, why: str) -> None:
        self.stopped = True
        self._backlog = b""
        self.lines.clear()
        self._close_file()
        log.error("recording stopped after %d events: journal %s: %s; the chat goes on", self.events,
                  self.path or "(a file object)", why)
        if self.on_stop is not None:
            self.on_stop(why)

    def _close_file(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        """Write what waits and close the file (a file object given is flushed, not closed)."""
        if self.stopped:
            return
        self.flush()
        if self._file is not None:
            self._file.flush()
        self.stopped = True
        self._close_file()
