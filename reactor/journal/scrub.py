"""What keeps secrets out of a journal, and the digest of effects: made-up stand-ins that decide as the real
ones did, and a 32-bit digest of a canonical rendering with the stand-ins in place.

- **Texts** (``placeholder``): a message's text becomes one with the same
  characters, UTF-8 bytes and control characters (tabs and line breaks
  included, in place), all the rules look at: its printable runs are filled
  with ``x``, ``é``, ``あ``, ``😀`` to the same counts. A placeholder's placeholder is
  itself, so a replay's effects render as the recording's did.
- **Passwords, tokens, certificates, unknown user names** (``Scrubber``): a
  keyed hash (BLAKE2b with a key drawn for the recording and never written)
  tagged with what it stands for: ``pw-<hash>`` for a password given for an
  account (the account's own, in the header, is made the same way, so a right
  password stays right and a wrong one wrong), ``tok-``, ``cert-``, ``user-``.
  The same secret gets the same stand-in within one recording; nobody can
  tell a secret from its stand-in without the key.
- **The digest** (``digest``): how many effects there were (the top byte) and
  24 bits of the CRC-32 of the effects rendered as JSON with
  texts as placeholders, secrets as stand-ins (a stand-in renders as itself:
  what a replay has), and a ``CheckPassword``'s password and hash left out. The
  relay's one ``Send`` of an ASCII message to one connection is digested by
  arithmetic on the connection and the text's length (``relay_digest``: the
  hot path, tens of nanoseconds, not two microseconds).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import zlib
from _json import make_encoder
from collections.abc import Iterable
from dataclasses import is_dataclass
from enum import Enum
from json.encoder import encode_basestring_ascii
from typing import Any

from ..protocol import MAX_CERT

__all__ = ["placeholder", "Scrubber", "digest", "relay_digest", "count_of", "render", "TAGS", "SECRET_KEYS",
           "HASH_PREFIX", "ONE"]

_KEEP = re.compile("[\x00-\x1f\x7f-\x9f]")   # control characters and tab: kept in place (reactor/text.py's rule)
_FILL = {1: "x", 2: "\u00e9", 3: "\u3042", 4: "\U0001f600"}   # a printable character of each UTF-8 length
HASH_PREFIX = "$scrypt$journal-"   # a made-up hash field: passwords.is_hashed says yes, nothing can match it
# secret field -> its stand-ins' tag (``current``, ``new``: a password change's; ``field``: a new password's
# hash field)
TAGS = {"token": "tok", "cert": "cert", "certificate": "cert", "password": "pw", "current": "pw", "new": "pw",
        "field": "hash"}
# Fields never written, not even as a stand-in: ``expected``, the account's field a password change replaces
# (the header's made-up accounts give a replay its own, alike).
UNWRITTEN = frozenset({"expected"})
SECRET_KEYS = frozenset(TAGS)   # the fields (of frames, events, effects) whose values are secrets
_STANDIN = re.compile(r"(?:pw|tok|cert|user|line|hash)-[0-9a-f]{16}")
CERT_MARK = b"\x00journal-certificate\x00"   # how a made-up certificate (DER) begins


def _filled(run: str) -> str:
    """Printable stand-in characters: as many as ``run`` has, with as many UTF-8 bytes."""
    chars = len(run)
    extra = len(run.encode("utf-8", "surrogatepass")) - chars   # 0 to 3 per character
    wide, rest = divmod(extra, 3)
    middle = _FILL[rest + 1] if rest else ""
    return _FILL[4] * wide + middle + "x" * (chars - wide - len(middle))


def placeholder(text: str) -> str:
    """``text`` with its printable characters made up (see the module's docstring)."""
    if text.isascii() and text.isprintable():
        return "x" * len(text)
    parts = []
    start = 0
    for match in _KEEP.finditer(text):
        if match.start() > start:
            parts.append(_filled(text[start:match.start()]))
        parts.append(match.group())
        start = match.end()
    if start < len(text):
        parts.append(_filled(text[start:]))
    return "".join(parts)


class Scrubber:
    """Stand-ins for one recording's secrets (a fresh key each recording), and its texts' placeholders
    (unless ``texts``: then texts are kept as they are)."""

    def __init__(self, texts: bool = False, key: bytes | None = None) -> None:
        self.texts = texts
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mark(self, tag: str, *parts: str) -> str:
        data = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return f"{tag}-{hashlib.blake2b(data, key=self._key, digest_size=8).hexdigest()}"

    def text(self, text: str) -> str:
        return text if self.texts else placeholder(text)

    def password(self, user: str, password: str) -> str:
        """The stand-in of ``password`` given for ``user`` (an account's own is made the same way)."""
        return self._mark("pw", user, password)

    def account(self, user: str, field: str) -> str:
        """An accounts file's password field for ``user``: a hash stays a (made-up) hash."""
        if field.startswith("$"):   # (passwords.is_hashed; a changed hash is another made-up one)
            return HASH_PREFIX + self._mark("h", user, field)
        return self.password(user, field)

    def accounts(self, accounts: dict[str, str]) -> dict[str, str]:
        return {user: self.account(user, field) for user, field in accounts.items()}

    def secret(self, kind: str, value: Any) -> Any:
        """A token's, password's or user name's stand-in (itself if it is one); what is no string stays.
        A certificate's is ``certificate``'s."""
        if kind == "cert":
            return self.certificate(value)
        if type(value) is not str or _STANDIN.fullmatch(value):
            return value
        return self._mark(kind, value)

    def certificate(self, value: Any) -> Any:
        """A certificate's stand-in, of its kind: DER (bytes) for DER, base64 of DER for base64 (a client
        decodes it), so the same certificate is the same stand-in either way; itself if it is one. A text
        that is no base64 stands in as a ``cert-`` mark, one too long as as many ``c``."""
        if type(value) is bytes:
            return value if value.startswith(CERT_MARK) else CERT_MARK + bytes.fromhex(self._mark("c", value.hex())[2:])
        if type(value) is not str or not value or _STANDIN.fullmatch(value):
            return value
        if len(value) > MAX_CERT:
            return "c" * len(value)
        try:
            der = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return self._mark("cert", value)
        return base64.b64encode(self.certificate(der)).decode("ascii")

    def frame(self, frame: Any) -> Any:
        """A frame (or event) with its texts as placeholders and its secrets as stand-ins, all the way down."""
        if type(frame) is dict:
            return {key: self._field(key, value) for key, value in frame.items()}
        if type(frame) is list or type(frame) is tuple:
            return [self.frame(v) for v in frame]
        return frame

    def _field(self, key: str, value: Any) -> Any:
        if key == "text" and type(value) is str:
            return self.text(value)
        if key in SECRET_KEYS:
            return self.secret(TAGS[key], value)
        return self.frame(value)


_ATOMS = frozenset({str, int, float, bool, type(None)})
# The C encoder behind JSONEncoder, made once (JSONEncoder.encode makes one a call): a replay digests every event.
_encoder = make_encoder({}, repr, encode_basestring_ascii, None, ":", ",", False, False, True)


def _dumps(value: Any) -> str:
    return "".join(_encoder(value, 0))


_SPECIAL = SECRET_KEYS | UNWRITTEN | {"text"}   # fields rendered otherwise than as they are
_FIELDS: dict[type, tuple[str, ...]] = {}   # a dataclass -> its fields (a cache)


def render(value: Any, scrubber: Scrubber, keep_texts: bool = False) -> Any:
    """An effect (or what it holds) as JSON: its type's name and fields, texts as placeholders (unless
    ``keep_texts``: a client's shadow has nothing but placeholders), secrets as stand-ins; a ``CheckPassword``
    without its password and hash. (The fields that are plain values are taken as they are, inline: a replay
    digests every event.)"""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {key if type(key) is str else str(key):
                v if type(v) in _ATOMS and key not in _SPECIAL else _render_field(str(key), v, scrubber, keep_texts)
                for key, v in value.items()}
    if kind is list or kind is tuple:
        if set(map(type, value)) <= _ATOMS:   # (the connections of a Send, a presence frame's users: C speed)
            return value
        return [render(v, scrubber, keep_texts) for v in value]
    fields = _FIELDS.get(kind)
    if fields is None:
        if not is_dataclass(value):
            return _other(value, scrubber, keep_texts)
        fields = _FIELDS[kind] = ("conn",) if kind.__name__ == "CheckPassword" else getattr(kind, "__slots__", ())
    rendered: list[Any] = [kind.__name__]
    for name in fields:
        v = getattr(value, name)
        rendered.append(v if type(v) in _ATOMS and name not in _SPECIAL else
                        _render_field(name, v, scrubber, keep_texts))
    return rendered


def _other(value: Any, scrubber: Scrubber, keep_texts: bool) -> Any:
    if type(value) is frozenset or type(value) is set:
        return sorted((render(v, scrubber, keep_texts) for v in value), key=repr)
    if isinstance(value, Enum):
        return value.value
    if type(value) is bytes:
        return base64.b64encode(scrubber.certificate(value)).decode("ascii")
    return repr(value)


def _render_field(name: str, value: Any, scrubber: Scrubber, keep_texts: bool) -> Any:
    if name == "text" and type(value) is str and not keep_texts:
        return placeholder(value)   # (in a digest, always: a short text's CRC would give it away)
    if name in UNWRITTEN:
        return None
    if name in SECRET_KEYS:
        value = scrubber.secret(TAGS[name], value)
        return base64.b64encode(value).decode("ascii") if type(value) is bytes else value
    return render(value, scrubber, keep_texts)


def digest(effects: Iterable[Any], scrubber: Scrubber, keep_texts: bool = False) -> int:
    """The digest of ``effects`` (see the module's docstring): their number (at most 255) in the top byte, and
    the low 24 bits of the CRC-32 of their rendering, so a departure can say at once whether it is the count."""
    if type(effects) is list and len(effects) == 1:
        effect = effects[0]
        frame = getattr(effect, "frame", None)
        if type(frame) is dict and len(frame) == 3 and type(effect).__name__ == "Send" and len(effect.conns) == 1:
            text = frame.get("text")
            if type(text) is str and frame.get("type") == "message" and text.isascii():
                return relay_digest(effect.conns[0], len(text))
    effects = list(effects)
    if not effects:
        return _NOTHING
    rendered = [render(effect, scrubber, keep_texts) for effect in effects]
    crc = zlib.crc32(_dumps(rendered).encode("ascii"))
    return min(len(effects), 255) << 24 | crc & 0xFFFFFF


def relay_digest(conn: int, chars: int) -> int:
    """The digest of the relay: one effect, a message of ``chars`` ASCII characters to the one connection
    ``conn``. Integer arithmetic, for the hot path (its sender is its connection's user, which the login's
    digest vouched for)."""
    return ONE | (conn * 0x9E3779B1 ^ chars * 0x85EBCA77) & 0xFFFFFF


ONE = 1 << 24
_NOTHING = zlib.crc32(b"[]") & 0xFFFFFF   # the digest of no effect (count 0)


def count_of(value: int) -> int:
    """The number of effects a digest says (255: that many or more)."""
    return value >> 24
