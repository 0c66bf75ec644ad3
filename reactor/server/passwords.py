"""Password hashes for the accounts file: scrypt (``hashlib.scrypt``), salted, in one text field.

Format (one word, no whitespace, in the password field of ``credentials.txt``)::

    $scrypt$ln=14,r=8,p=1$<salt>$<hash>

``ln`` is log2 of scrypt's cost N, ``r`` its block size, ``p`` its
parallelism; ``<salt>`` and ``<hash>`` are standard base64 without ``=``
padding (the shape of the PHC string format). The defaults, ln=14 r=8 p=1
(libsodium's "interactive" level), take 16 MiB of memory (128 x r x N
bytes) and tens of milliseconds a check, so each guess costs an attacker who
stole the file that much too, and the 16 random bytes of salt make every
account's hash its own. Parsing is strict: the fields in this order, whole
numbers in canonical form, ln 10 to 24, r 1 to 32, p 1 to 4, at most
``MAX_MEMORY`` bytes, a salt of 16 to 64 bytes, a hash of 16 to 64 bytes, and
canonical base64. A password field that starts with ``$scrypt$`` is always
taken as a hash, so a plain password cannot start so.

Checking a hash is slow on purpose: the server never does it on its loop
(``reactor/server/verifier.py`` does, in a process of its own).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ..text import CONTROL

__all__ = ["SCHEME", "LOG2_N", "BLOCK_SIZE", "PARALLELISM", "MAX_MEMORY", "MIN_PASSWORD", "MAX_PASSWORD",
           "ScryptHash", "is_hashed", "parse_hash", "hash_password", "verify_password", "password_problem",
           "new_password_problem", "hash_password_command"]

SCHEME = "$scrypt$"
LOG2_N = 14          # N = 16384
BLOCK_SIZE = 8       # r: 128 x r x N = 16 MiB
PARALLELISM = 1      # p
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 256 << 20   # bytes one check may take (128 x r x N), whatever the file says
# A password a user chooses (``new_password_problem``): at least MIN_PASSWORD characters, and at most
# MAX_PASSWORD, so that its login frame fits the 1 KiB line a stranger may send even when every character is
# JSON-escaped as a surrogate pair (12 bytes: 64 x 12 + 32 = 800).
MIN_PASSWORD = 8
MAX_PASSWORD = 64
_FIELDS = re.compile(r"\$scrypt\$ln=([1-9][0-9]?),r=([1-9][0-9]?),p=([1-9])\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")


@dataclass(frozen=True, slots=True)
class ScryptHash:
    """One parsed hash field."""
    log2_n: int
    r: int
    p: int
    salt: bytes
    hash: bytes

    def __str__(self) -> str:
        return (f"{SCHEME}ln={self.log2_n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.hash)}")

    def matches(self, password: str) -> bool:
        """Whether ``password`` hashes to this (slow: tens of ms at the defaults)."""
        derived = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=self.salt, n=1 << self.log2_n,
                                 r=self.r, p=self.p, maxmem=MAX_MEMORY + (1 << 20), dklen=len(self.hash))
        return secrets.compare_digest(derived, self.hash)


def is_hashed(field: str) -> bool:
    """Whether a password field is a hash (whether or not a well-formed one)."""
    return field.startswith(SCHEME)


def parse_hash(field: str) -> ScryptHash:
    """The hash in ``field``; ValueError saying what is wrong (never quoting the field)."""
    match = _FIELDS.fullmatch(field)
    if match is None:
        raise ValueError("expected '$scrypt$ln=<n>,r=<n>,p=<n>$<salt base64>$<hash base64>'")
    log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not 10 <= log2_n <= 24:
        raise ValueError("ln must be 10 to 24")
    if not 1 <= r <= 32:
        raise ValueError("r must be 1 to 32")
    if not 1 <= p <= 4:
        raise ValueError("p must be 1 to 4")
    if 128 * r << log2_n > MAX_MEMORY:
        raise ValueError(f"ln and r ask for more than {MAX_MEMORY >> 20} MiB")
    salt, digest = _unb64(match.group(4), "salt"), _unb64(match.group(5), "hash")
    if not 16 <= len(salt) <= 64 or not 16 <= len(digest) <= 64:
        raise ValueError("the salt and the hash must be 16 to 64 bytes each")
    return ScryptHash(log2_n, r, p, salt, digest)


def hash_password(password: str, *, log2_n: int = LOG2_N, r: int = BLOCK_SIZE, p: int = PARALLELISM,
                  salt: bytes | None = None) -> str:
    """A new hash field for ``password``, with a fresh random salt unless one is given."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    derived = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=1 << log2_n, r=r, p=p,
                             maxmem=MAX_MEMORY + (1 << 20), dklen=HASH_BYTES)
    return str(parse_hash(str(ScryptHash(log2_n, r, p, salt, derived))))   # checked as the loader will


def verify_password(password: str, field: str) -> bool:
    """Whether ``password`` matches the hash ``field``; a malformed field matches nothing."""
    try:
        record = parse_hash(field)
    except ValueError:
        return False
    return record.matches(password)


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be an account's password (the accounts file's rule), or None."""
    if not password:
        return "the password is empty"
    if password.split() != [password]:
        return "a password cannot hold whitespace"
    return None


def new_password_problem(password: str, user: str) -> str | None:
    """Why ``password`` cannot be the new password ``user`` chose (the file's rule, then the server's: no
    control character, ``MIN_PASSWORD`` to ``MAX_PASSWORD`` characters, not the user's name), or None."""
    problem = password_problem(password)
    if problem is not None:
        return problem
    if CONTROL.search(password):
        return "a password cannot hold control characters"
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password may have at most {MAX_PASSWORD} characters"
    if password.casefold() == user.casefold():
        return "a password cannot be the user name"
    return None


def hash_password_command(argv: list[str], *, ask: Callable[[str], str] | None = None, out: TextIO | None = None,
                          err: TextIO | None = None, prog: str = "server_main.py") -> int:
    """``server_main.py hash-password [--user NAME]`` (``prog``: the command run): ask for a password twice
    without echo and print its hash field, or with ``--user`` the whole ``NAME <hash>`` line for the accounts
    file; the exit status. On a pipe the two lines are read from it, without prompts (and without ``getpass``'s
    warning that it cannot hide them)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if ask is None:
        ask = getpass.getpass if sys.stdin.isatty() else _piped_line
    parser = argparse.ArgumentParser(prog=f"{prog} hash-password",
                                     description="Print a hashed password for the accounts file (typed without echo).")
    parser.add_argument("--user", metavar="NAME", help="print the whole line '<NAME> <hash>'")
    args = parser.parse_args(argv)
    user = args.user
    if user is not None and (user.split() != [user] or user.startswith("#") or CONTROL.search(user)):
        print("Error. A user name is one word, holds no control character and does not start with #", file=err)
        return 2
    try:
        password = ask("Password: ")
        again = ask("Again: ")
    except (EOFError, KeyboardInterrupt):
        print("", file=err)
        return 1
    problem = password_problem(password)
    if problem is None and password != again:
        problem = "the two passwords differ"
    if problem is not None:
        print(f"Error. Not hashed: {problem}", file=err)
        return 1
    field = hash_password(password)
    print(field if user is None else f"{user} {field}", file=out)
    return 0


def _piped_line(prompt: str) -> str:
    """The next line of standard input (not a terminal: nothing to hide, no prompt to show)."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not base64") from None
    if _b64(data) != text:   # one text per value: no stray bits in the last character
        raise ValueError(f"the {what} is not canonical base64")
    return data
