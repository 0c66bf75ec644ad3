"""--metrics and --admin-socket: their parsing, and opening what they ask for (or saying why not)."""
import argparse
import json
import os
import socket
import subprocess
import sys

import pytest

from reactor.ops.catalog import chat_registry
from reactor.ops.options import OpsError, add_arguments, host_port, start
from tests.ops_harness import FakeChat
from tests.ops_support import REQUEST, AdminClient, Client
from tests.support import ROOT


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("text, address", [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:0", ("::1", 0)),
                                           ("localhost:65535", ("localhost", 65535))])
def test_host_port(text, address):
    assert host_port(text) == address


@pytest.mark.parametrize("text", ["9100", ":9100", "host:", "host:65536", "host:-1", "host:http"])
def test_not_host_port(text):
    with pytest.raises(argparse.ArgumentTypeError):
        host_port(text)


def test_neither_asked_opens_nothing(loop):
    ops = start(loop, parse(), chat_registry(), lambda: None, FakeChat())
    assert ops.endpoint is None and ops.admin is None
    ops.close()


def test_both_asked_are_served_on_the_loop(loop, tmp_path):
    chat = FakeChat(users=2)
    why = ["store not open"]
    ops = start(loop, parse("--metrics", "127.0.0.1:0", "--admin-socket", str(tmp_path / "admin.sock")),
                chat.registry, lambda: why[0], chat)
    client = Client(loop, ops.endpoint.address)
    [(status, _, body)] = client.send(REQUEST % b"/readyz").responses()
    assert (status, body) == (503, b"not ready: store not open\n")
    [_, (status, _, body)] = client.send(REQUEST % b"/metrics").responses(2)
    assert b"chat_ready 0\n" in body
    why[0] = None
    [_, _, (status, _, body)] = client.send(REQUEST % b"/metrics").responses(3)
    assert b"chat_ready 1\n" in body
    assert AdminClient(loop, tmp_path / "admin.sock").ask("who")[-1] == {"ok": "2 users online."}
    ops.close()
    assert not os.path.exists(tmp_path / "admin.sock")
    client.wait_closed()


def test_a_port_in_use_is_a_clear_error(loop):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OpsError, match=f"Cannot serve metrics on 127.0.0.1:{port}: the port is already in use"):
            start(loop, parse("--metrics", f"127.0.0.1:{port}"), chat_registry(), lambda: None, FakeChat())


def test_a_live_admin_socket_is_a_clear_error_and_leaves_nothing_open(loop, tmp_path):
    path = str(tmp_path / "admin.sock")
    first = start(loop, parse("--admin-socket", path), chat_registry(), lambda: None, FakeChat())
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(OpsError, match="another server is listening on it"):
        start(loop, parse("--metrics", f"127.0.0.1:{free}", "--admin-socket", path), chat_registry(),
              lambda: None, FakeChat())
    socket.create_server(("127.0.0.1", free)).close()   # the endpoint it had opened is closed again
    first.close()


@pytest.mark.e2e
def test_metrics_without_h11_says_what_to_install(tmp_path):
    """-S: no site-packages, so no h11."""
    script = ("import argparse, json, sys\n"
              "from reactor.loop import EventLoop\n"
              "from reactor.ops.catalog import chat_registry\n"
              "from reactor.ops.options import OpsError, start\n"
              "args = argparse.Namespace(metrics=('127.0.0.1', 0), admin_socket=None)\n"
              "try:\n"
              "    start(EventLoop(), args, chat_registry(), lambda: None, None)\n"
              "except OpsError as exc:\n"
              "    print(json.dumps(str(exc)))\n")
    out = subprocess.run([sys.executable, "-S", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout).startswith("--metrics needs h11 (pip install 'reactor-chat[metrics]'): "), out
