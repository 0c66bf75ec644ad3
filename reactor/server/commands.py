"""The frames a client sends the server, each declared once: in which connection states it is taken, its fields.

A part of the server's rules (``reactor/server/*.py``) declares the handler of
a frame type on one of its methods::

    @command(FrameType.BLOCK, string("user"))
    def block(self, s: Session, now: float, user: str) -> Steps: ...

and ``ChatServer`` binds the handlers of all its parts into one table
(``bind``), which ``received`` looks a frame's ``type`` up in. The fields are
checked in order before the handler runs; a field whose value will not do
refuses the frame (``bad_frame``, counted toward the connection's budget, or
an answer with the field's ``code``). A command may also name ``optional``
fields: its handler gets the frame itself after the fields' values, and reads
and checks those where it uses them (a relayed message uses none of its
optional fields: checking each before would cost every message a call).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from ..protocol import ErrorCode, FrameType

__all__ = ["State", "LOGGED_IN", "LOGGING_IN", "STRANGER", "Field", "typed", "valid", "any_value", "string",
           "seconds_problem", "Command", "command", "bind", "declared_fields"]


class State(Enum):
    """Where a connection is."""
    HELLO = "hello"          # it must say hello first
    LOGIN = "login"          # it may give a user name
    PASSWORD = "password"    # it gave a known name (``claimed``) and may give its password
    CHECKING = "checking"    # its password for ``claimed`` is being checked (or waits its turn): only listen
    ACTIVE = "active"        # logged in: its ``session`` is set

    # Members are singletons, equal only to themselves: hashed by identity in C, not by Enum's Python __hash__
    # (the ``states`` check of every frame: 170 -> 105 ns).
    __hash__ = object.__hash__


LOGGED_IN = frozenset({State.ACTIVE})
LOGGING_IN = frozenset({State.LOGIN, State.PASSWORD})   # said hello, may give a name or a password
STRANGER = LOGGING_IN | {State.CHECKING}                 # said hello, not logged in


@dataclass(frozen=True, slots=True)
class Field:
    """A field of a client's frame: ``problem`` says what is wrong with its value (None: it will do), the
    detail of the refusal: a ``bad_frame`` (counted toward the connection's budget), or an answer with ``code``."""
    name: str
    problem: Callable[[Any], str | None]
    code: ErrorCode = ErrorCode.BAD_FRAME


def typed(name: str, kind: type, what: str) -> Field:
    """A field whose value must be of JSON type ``kind`` exactly (``True`` is no integer)."""
    detail = f"{name!r} must be {what}"
    return Field(name, lambda value: None if type(value) is kind else detail)


def valid(name: str, what: str, check: Callable[[Any], bool]) -> Field:
    """A field whose value must pass ``check``."""
    detail = f"{name!r} must be {what}"
    return Field(name, lambda value: None if check(value) else detail)


def any_value(name: str) -> Field:
    """A field the handler takes as it comes (absent: None)."""
    return Field(name, lambda value: None)


def string(name: str) -> Field:
    return typed(name, str, "a string")


def seconds_problem(seconds: Any) -> str | None:
    """What is wrong with ``whoelsesince``'s seconds, if anything."""
    kind = type(seconds)
    if kind is not int and kind is not float:
        return "whoelsesince needs a number of seconds"
    if kind is float and not math.isfinite(seconds):
        return "whoelsesince needs a finite number of seconds"
    if seconds < 0:
        return "whoelsesince needs seconds that are not negative"
    return None


@dataclass(frozen=True, slots=True)
class Command:
    """How the server takes one type of client frame: in which connection ``states``, with which ``fields``
    (checked in order before ``handler`` runs), and whether it counts as the user's ``activity`` (it re-arms
    the inactivity timer). ``handler(who, now, *values)``: ``who`` is the ``Session`` of a command taken only
    after login (``session``), else the ``Conn``; ``values`` are the fields' values, checked, then (if it has
    ``optional`` fields, which its handler reads and checks itself) the frame."""
    handler: Callable[..., Any]
    fields: tuple[Field, ...]
    states: frozenset[State]
    activity: bool
    session: bool
    optional: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Declared:
    kind: FrameType
    fields: tuple[Field, ...]
    states: frozenset[State]
    activity: bool
    optional: tuple[str, ...]


_DECLARED: dict[Callable[..., Any], _Declared] = {}   # handler function -> its declaration (filled by @command)
_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def command(kind: FrameType, *fields: Field, states: frozenset[State] = LOGGED_IN, activity: bool = True,
            optional: tuple[str, ...] = ()) -> Callable[[_Handler], _Handler]:
    """Declare the method it decorates the handler of client frames of type ``kind``: their fields, and when
    they are taken (by default after login only; a frame that comes in another state is refused); the names of
    its ``optional`` fields, if any (the handler gets the frame, and reads them itself)."""
    def declare(handler: _Handler) -> _Handler:
        _DECLARED[handler] = _Declared(kind, fields, states, activity, optional)
        return handler
    return declare


def bind(*parts: object) -> dict[str, Command]:
    """The commands declared on the methods of ``parts``, bound to them: frame type -> how it is taken."""
    table: dict[str, Command] = {}
    for part in parts:
        for klass in type(part).__mro__:
            for name, function in vars(klass).items():
                declared = _DECLARED.get(function) if callable(function) else None
                if declared is None:
                    continue
                assert declared.kind not in table, f"two handlers of {declared.kind!r}"
                # Keyed by the plain string: a peer's ``type`` is found by the fast path of a dict of str keys.
                table[declared.kind.value] = Command(getattr(part, name), declared.fields, declared.states,
                                               declared.activity, declared.states == LOGGED_IN, declared.optional)
    return table


def declared_fields() -> dict[str, tuple[str, ...]]:
    """Each frame type declared so far -> the names of its fields: all of a frame the rules look at (a journal
    records no more of it, reactor/journal/server.py)."""
    return {declared.kind.value: tuple(f.name for f in declared.fields) for declared in _DECLARED.values()}
