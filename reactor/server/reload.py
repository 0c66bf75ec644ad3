"""Reads the accounts file again (SIGHUP) a slice per loop turn, so a big file never stalls the server's users.

Parsing 20,000 hashed accounts takes 90-250 ms: done at once it held every user's messages that long (100
reloads in 2 s: a bystander's p99 round trip 141 ms). ``AccountsReload`` reads the file whole at once (a
few ms), parses ``LINES_PER_SLICE`` lines a turn (``CredentialsParser``; a hash its account had in the
accounts last loaded is not checked again), and hands the accounts on in a turn of their own (``on_loaded``:
the host's ``accounts_changed``). A file that cannot be used keeps the accounts as
they are (logged, without quoting a line).

A reload asked while one runs coalesces: the one running finishes (what it read was the file then), and one
more follows to read the file as it is now, however many were asked meanwhile. So a burst of signals costs at
most two reloads, and the last change to the file is always read. Whoever asked with a ``done`` callback (the
admin's ``reload``) is told how the reload that read the file after its asking ended: None, or why it failed.

A user's own password change is written to the file by the server (``reactor/server/accounts_file.py``), which
says so (``changed``): a reload that read the file before it would hand on the old password, so the new one is
put in what it hands on; a reload that reads the file after it finds the new one there.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..loop import EventLoop
from .credentials import CredentialsError, CredentialsParser

__all__ = ["AccountsReload", "Done"]

log = logging.getLogger(__name__)

Done = Callable[[str | None], object]   # told how a reload ended: None, or why the old accounts stay


class AccountsReload:
    """``request()`` reads ``path`` again, a slice per loop turn, then calls ``on_loaded(accounts)``."""

    def __init__(self, loop: EventLoop, path: str | os.PathLike[str], on_loaded: Callable[[dict[str, str]], object],
                 accounts: dict[str, str] | None = None) -> None:
        self._loop = loop
        self._path = path
        self._on_loaded = on_loaded
        self._accounts = accounts   # the accounts last handed on (or read at start): their hashes are known good
        self._parser: CredentialsParser | None = None   # the reload under way, if any
        self._again = False                              # another was asked while it ran
        self._told: list[Done] = []                      # to be told how the one under way ends
        self._told_next: list[Done] = []                 # ... how the one that follows it ends
        self._written: dict[str, str] = {}               # user -> the password field written since it read
        self.reloads = 0                                 # reloads begun (for tests and figures)

    @property
    def running(self) -> bool:
        """Whether a reload is under way."""
        return self._parser is not None

    def request(self, done: Done | None = None) -> None:
        """Read the file again: now, or once the reload under way is done (asked again meanwhile: once).
        ``done(why)`` is called once that reload has ended: ``why`` None if the accounts were handed on."""
        if self._parser is not None:
            if not self._again:
                log.info("accounts reload asked while one runs: one more follows it")
            self._again = True
            if done is not None:
                self._told_next.append(done)
            return
        self._again = False
        self._told, self._told_next = self._told_next, []
        if done is not None:
            self._told.append(done)
        self.reloads += 1
        self._written = {}
        try:
            self._parser = CredentialsParser(self._path, known=self._accounts)
        except CredentialsError as exc:
            self._failed(exc)
            return
        self._loop.call_soon(self._parse_slice)

    def changed(self, user: str, field: str) -> None:
        """The server wrote ``field`` as ``user``'s password in the file itself (the user changed it): a reload
        under way read the file before, so what it hands on gets ``field`` too."""
        if self._accounts is not None and user in self._accounts:
            self._accounts[user] = field   # (a hash this server made: well-formed)
        if self._parser is not None:
            self._written[user] = field

    def _parse_slice(self) -> None:
        parser = self._parser
        assert parser is not None
        try:
            accounts = parser.parse_slice()
        except CredentialsError as exc:
            self._parser = None
            self._failed(exc)
            return
        if accounts is None:
            self._loop.call_soon(self._parse_slice)
        else:   # handed on in a turn of its own: the host's work on them does not share the last slice's turn
            log.debug("accounts file %s parsed in %d slices", parser.name, parser.slices)
            self._loop.call_soon(self._loaded, accounts)

    def _loaded(self, accounts: dict[str, str]) -> None:
        self._parser = None
        for user, field in self._written.items():
            if user in accounts:   # (its line was there when written, and so when read before)
                accounts[user] = field
        self._written = {}
        self._accounts = accounts
        self._on_loaded(accounts)
        self._tell(None)
        self._follow()

    def _failed(self, exc: CredentialsError) -> None:
        log.error("accounts not reloaded, the old ones stay: %s", exc, extra={"reason": str(exc)})
        self._tell(str(exc))
        self._follow()

    def _tell(self, why: str | None) -> None:
        told, self._told = self._told, []
        for done in told:
            try:
                done(why)
            except Exception:   # (one listener's bug does not keep the reloads going from the others)
                log.exception("accounts reload: telling how it ended failed")

    def _follow(self) -> None:
        """The reload is over: the one asked meanwhile, if any, begins."""
        if self._again:
            self.request()
