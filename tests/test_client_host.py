"""The client host carrying out effects: one that fails never stops the ones after it."""
import errno
import typing

from reactor.chat_client import ChatClient, ClientEffect, Exit, Print, Prompt
from reactor.client_host import ClientHost
from reactor.loop import EventLoop


class BrokenConsole:
    """A console whose every write fails, as a closed terminal's would if nothing caught it."""

    def __init__(self):
        self.closed = False

    def start(self, loop, on_line, on_eof):
        pass

    def print(self, text):
        raise OSError(errno.EIO, "Input/output error")

    def prompt(self, text, secret, remember=False):
        raise UnicodeEncodeError("utf-8", text, 0, 1, "surrogates not allowed")

    def close(self):
        self.closed = True


def test_an_exit_after_failing_effects_still_exits(caplog):
    loop = EventLoop()
    console = BrokenConsole()
    host = ClientHost(loop, ChatClient(), console)
    host._apply([Print("Logged out"), Prompt("\ud800", False), Exit(0)])
    assert host.exit_status == 0
    assert console.closed
    assert [r.levelname for r in caplog.records].count("ERROR") == 2   # each failure is logged
    loop.close()


def test_every_effect_the_logic_returns_has_a_way_to_be_carried_out():
    assert set(typing.get_args(ClientEffect)) == set(ClientHost.CARRY_OUT)


def test_an_unknown_effect_is_logged_and_the_rest_still_run(caplog):
    loop = EventLoop()
    host = ClientHost(loop, ChatClient(), BrokenConsole())
    host._apply([object(), Exit(3)])
    assert host.exit_status == 3
    assert "unknown effect" in caplog.text
    loop.close()
