"""The fast build's JSON for the frames it writes: orjson, where its bytes are the standard library's.

orjson (the ``fast`` extra) encodes a chat message frame in about 1,400 instructions where ``json``'s C encoder
takes about 11,500 (callgrind, CPython 3.11), but does not always write the same bytes: an integer beyond 64 bits
is an error to it, NaN is ``null``, a float has its own digits (``1e-7``, not ``1e-07``), and a lone surrogate
is an error. Text is the same: UTF-8 with the same escapes (the quote, the backslash, control characters as
``\\n`` or ``\\u001b``; DEL, U+2028 and the rest as they are), every character checked. So ``encode`` takes
orjson's bytes only for a frame of strings, integers, booleans, None, lists and objects (no float, not deep);
any other frame (and any orjson refuses) goes to ``reactor.framing``'s own way, which writes or refuses it as
it always did. The wire is the same with or without it (tests/test_framing.py and test_server_e2e.py send each
case through both builds). Reading stays the standard library's: orjson reads a frame in about 3,600 instructions
where ``reactor.framing`` takes about 7,000 all told, and would need a guard (an integer beyond 64 bits comes
back a float) that costs much of the difference.

Used only by the fast build (``reactor.BUILD == "fast"``) with orjson installed: ``ENABLED``.
"""
from __future__ import annotations

import importlib
from typing import Any

MAX_DEPTH = 32   # nesting deeper than this goes to the standard library (a chat frame nests 3 deep at most)


def _load() -> Any:
    from . import BUILD
    if BUILD != "fast":
        return None
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


_orjson: Any = _load()
ENABLED: bool = _orjson is not None
_NEWLINE: int = _orjson.OPT_APPEND_NEWLINE if ENABLED else 0


def _plain(frame: dict[str, Any]) -> bool:
    """Whether ``frame`` holds only what orjson and json write alike: strings, integers, booleans, None, and lists
    and objects of those (no float), not deep. (The top level inline: most frames hold nothing else.)"""
    for value in frame.values():
        kind = type(value)
        if kind is not str and kind is not int and kind is not bool and value is not None \
                and not _plain_nested(value, 1):
            return False
    return True


def _plain_nested(item: Any, depth: int) -> bool:
    kind = type(item)
    if kind is str or kind is int or kind is bool or item is None:
        return True
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        for value in item.values():
            if not _plain_nested(value, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        for value in item:
            if not _plain_nested(value, depth + 1):
                return False
        return True
    return isinstance(item, str)   # (a StrEnum's member: both write its value)


def encode(frame: dict[str, Any]) -> bytes | None:
    """``frame``'s line by orjson, newline included, when it is the standard library's too; else None."""
    if not _plain(frame):
        return None
    try:
        out: bytes = _orjson.dumps(frame, None, _NEWLINE)   # (positional: 460 instructions less than option=)
    except TypeError:   # (orjson.JSONEncodeError: an integer beyond 64 bits, a key not a string, a circular
        return None     # frame, a lone surrogate)
    return out
