"""Reads the accounts file: one ``<username> <password>`` a line.

The password is either the password itself (plain, the assignment's format)
or a salted scrypt hash of it, ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>``
(``reactor/server/passwords.py`` has the format; ``server_main.py hash-password``
makes one). A field that starts with ``$scrypt$`` is a hash and must parse as
one: a malformed one is a malformed line.

Format: the user name and the password are separated by exactly one space and
neither may contain whitespace (a password is a single word; a line with a
second space, a tab, or an empty field is malformed). Blank lines (empty or
whitespace only) and lines whose first character is ``#`` are skipped, so a
user name cannot start with ``#``. A line may end in ``\\r\\n``; a UTF-8 byte
order mark at the start of the file is ignored. User names are case-sensitive
and may appear only once, hold no control character (C0, DEL, C1: they
would reach other users' terminals), and have at most ``MAX_USERNAME`` (64)
characters (so one always fits in a frame, and many in a page of names). Any
other line is malformed:
``CredentialsError`` names the file and the line, and never quotes the line
(it holds a password). The path must be a regular file: a FIFO, a directory
or a device is refused without being read (a FIFO would wait for a writer).
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping

from ..protocol import MAX_USERNAME
from .passwords import is_hashed, parse_hash

__all__ = ["CredentialsError", "CredentialsMissing", "CredentialsParser", "LINES_PER_SLICE", "load_credentials",
           "plain_accounts"]

# Lines one parse_slice takes: a line with a hash takes 4.5 us to check here (11 us on a loaded machine), so a
# slice takes 2.2 ms (6 ms), and a reload of 20,000 hashed accounts is 41 loop turns of that, not one of 90-250 ms.
LINES_PER_SLICE = 500
_EXPECTED = "expected '<username> <password>'"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # what a path can be instead of a file


class CredentialsError(Exception):
    """The accounts file cannot be used; the message names the file (and line) for a person."""


class CredentialsMissing(CredentialsError):
    """There is no accounts file at the path given."""


def load_credentials(path: str | os.PathLike[str]) -> dict[str, str]:
    """The accounts in ``path`` as {username: password or hash field}, all at once; raises CredentialsError."""
    parser = CredentialsParser(path)
    while (accounts := parser.parse_slice()) is None:
        pass
    return accounts


class CredentialsParser:
    """An accounts file read whole at once (raises CredentialsError), then parsed ``LINES_PER_SLICE`` lines per
    ``parse_slice``: a server reading its file again while it serves parses one slice per loop turn, so a
    big file never stalls its users (``reactor/server/reload.py``).

    ``known``: accounts read before; a line whose hash field is the one its account had there is not checked
    again (it was well-formed then, and it is the same text), which makes a reload of an unchanged file of
    hashed accounts about 4 times cheaper."""

    def __init__(self, path: str | os.PathLike[str], known: Mapping[str, str] | None = None) -> None:
        self._known: Mapping[str, str] = {} if known is None else known
        self.name = name = os.fspath(path)
        try:
            _refuse_unless_regular(name, os.stat(name).st_mode)
            # Non-blocking: should a FIFO take the file's place after the check, opening it does not wait.
            with open(os.open(name, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                _refuse_unless_regular(name, os.fstat(f.fileno()).st_mode)
                data = f.read()
        except FileNotFoundError:
            raise CredentialsMissing(f"credentials file not found: {name}") from None
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {name}: {exc.strerror or exc}") from None
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        self._lines = data.split(b"\n")
        self._done = 0                           # lines parsed so far
        self._accounts: dict[str, str] = {}
        self._first_line: dict[str, int] = {}   # user -> the line it is on
        self.slices = 0                          # parse_slice calls so far

    def parse_slice(self) -> dict[str, str] | None:
        """Parse the next ``LINES_PER_SLICE`` lines: the accounts once the last line is parsed, else None;
        raises CredentialsError at the first malformed line."""
        self.slices += 1
        start = self._done
        end = self._done = min(start + LINES_PER_SLICE, len(self._lines))
        name, accounts, first_line, known = self.name, self._accounts, self._first_line, self._known
        for number, raw in enumerate(self._lines[start:end], start + 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CredentialsError(f"{name}:{number}: not valid UTF-8") from None
            if line.endswith("\r"):
                line = line[:-1]
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split(" ")
            control = _CONTROL.search(fields[0]) if len(fields) == 2 else None
            if control is not None:
                raise CredentialsError(f"{name}:{number}: the username holds a control character "
                                       f"(U+{ord(control.group()):04X})")
            if len(fields) != 2 or any(f.split() != [f] for f in fields):  # empty or holds whitespace
                raise CredentialsError(f"{name}:{number}: {_EXPECTED}")
            user, password = fields
            if len(user) > MAX_USERNAME:
                raise CredentialsError(f"{name}:{number}: the username is longer than {MAX_USERNAME} characters")
            if user in accounts:
                raise CredentialsError(f"{name}:{number}: duplicate username {user!r} "
                                       f"(first on line {first_line[user]})")
            if is_hashed(password) and known.get(user) != password:
                try:
                    parse_hash(password)
                except ValueError as exc:
                    raise CredentialsError(f"{name}:{number}: malformed password hash: {exc}") from None
            accounts[user] = password
            first_line[user] = number
        if end < len(self._lines):
            return None
        self._lines = []
        return accounts


def plain_accounts(accounts: dict[str, str]) -> int:
    """How many of ``accounts`` have a plain password, not a hash."""
    return sum(not is_hashed(password) for password in accounts.values())


def _refuse_unless_regular(name: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _KINDS if test(mode)), "of an unknown kind")
        raise CredentialsError(f"cannot read credentials file {name}: not a regular file ({kind})")
