"""The client host carrying out effects: one that fails never stops the ones after it."""
import errno
import socket
import typing

import pytest

from reactor.client.effects import ClientEffect, Exit, Print, Prompt
from reactor.client.host import ClientHost
from tests.support import run_until


class BrokenConsole:
    """A console whose every write fails, as a closed terminal's would if nothing caught it."""

    def __init__(self):
        self.closed = False

    def start(self, loop, on_line, on_eof, on_interrupt=None):
        pass

    def print(self, text):
        raise OSError(errno.EIO, "Input/output error")

    def prompt(self, text, secret, remember=False):
        raise UnicodeEncodeError("utf-8", text, 0, 1, "surrogates not allowed")

    def close(self):
        self.closed = True


class Scripted:
    """A chat logic that answers the start with ``effects`` and asks nothing more of the host."""

    def __init__(self, effects):
        self.effects = effects

    def start(self, now, address):
        return self.effects


@pytest.fixture
def server():
    """A listening socket on loopback for the host to connect to (it never answers)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def started(loop, port, effects, console):
    """A host that connects to ``port`` and, once connected, carries out ``effects``; run until it exits."""
    host = ClientHost(loop, Scripted(effects), console)
    host.start("127.0.0.1", port)
    run_until(loop, lambda: host.exit_status is not None)
    return host


def test_an_exit_after_failing_effects_still_exits(loop, server, caplog):
    console = BrokenConsole()
    host = started(loop, server, [Print("Logged out"), Prompt("\ud800", False), Exit(0)], console)
    assert host.exit_status == 0
    assert console.closed
    assert [r.levelname for r in caplog.records].count("ERROR") == 2   # each failure is logged


def test_every_effect_the_logic_returns_has_a_way_to_be_carried_out():
    assert set(typing.get_args(ClientEffect)) == set(ClientHost.CARRY_OUT)


def test_an_unknown_effect_is_logged_and_the_rest_still_run(loop, server, caplog):
    host = started(loop, server, [object(), Exit(3)], BrokenConsole())
    assert host.exit_status == 3
    assert "unknown effect" in caplog.text
