"""Logs for machines (``--log-format json``) and for people (text): their shape, and what never goes in them."""
import io
import json
import logging
import signal

import pytest

from reactor.ops.logs import JsonFormatter, configure_logging
from tests.support import ACCOUNTS, ServerProcess, admin, wait_for


def record(message, *args, level=logging.INFO, exc_info=None, **extra):
    entry = logging.LogRecord("reactor.server.host", level, __file__, 1, message, args, exc_info)
    entry.created = 1_700_000_000.25
    entry.msecs = 250.0
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_json_line_has_time_level_logger_message_and_the_extra_fields():
    line = JsonFormatter().format(record("connection %d from %s lost: %s", 7, "127.0.0.1", "reset",
                                         user="alice", conn=7, address="127.0.0.1", reason="reset"))
    assert json.loads(line) == {"time": "2023-11-14T22:13:20.250Z", "level": "INFO", "logger": "reactor.server.host",
                                "message": "connection 7 from 127.0.0.1 lost: reset", "user": "alice", "conn": 7,
                                "address": "127.0.0.1", "reason": "reset"}


def test_nothing_breaks_a_line():
    """A newline, an escape, a line separator in a message or a field stays inside its JSON string."""
    line = JsonFormatter().format(record("from %s", "evil\nname\x1b[2J\u2028", user="a\nb"))
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line
    assert json.loads(line)["message"] == "from evil\nname\x1b[2J\u2028"


def test_an_exception_goes_in_its_own_field():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys
        entry = record("callback failed", level=logging.ERROR, exc_info=sys.exc_info())
    fields = json.loads(JsonFormatter().format(entry))
    assert fields["level"] == "ERROR" and "RuntimeError: boom" in fields["exception"]


def test_a_field_json_cannot_hold_is_written_as_text():
    fields = json.loads(JsonFormatter().format(record("x", address=("127.0.0.1", 5000), when=object)))
    assert fields["address"] == ["127.0.0.1", 5000] and fields["when"] == "<class 'object'>"


@pytest.mark.parametrize("log_format, check", [
    ("json", lambda line: json.loads(line)["message"] == "hello alice"),
    ("text", lambda line: line.endswith(" INFO test.logs: hello alice")),
])
def test_configure_logging_picks_the_format(log_format, check):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        stream = io.StringIO()
        configure_logging("INFO", log_format, stream)
        logging.getLogger("test.logs").info("hello %s", "alice", extra={"user": "alice"})
        [line] = stream.getvalue().splitlines()
        assert check(line), line
    finally:
        root.handlers, level = saved
        root.setLevel(level)
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")


SECRET_TEXT = "the launch code is 0000"
NOTICE_TEXT = "the operator's own words"


def a_session_with_failures_a_lockout_a_message_and_a_reload(server):
    """Wrong passwords until a lockout, a login, a message kept and one relayed, a private chat's token handed
    out, a reload by SIGHUP and one by the admin socket, a notice and a kick: what the log saw, and the token."""
    for _ in range(3):
        c = server.client()
        c.send({"type": "username", "username": "vader"})
        c.expect("username_ok")
        c.send({"type": "password", "password": "hunter2-wrong"})
        c.recv()
        c.close()
    yoda, luke = server.client(), server.client()
    yoda.login("yoda")
    yoda.send({"type": "message", "to": "leia", "text": SECRET_TEXT})   # kept for offline leia
    yoda.expect("stored", to="leia")
    luke.login("luke")
    yoda.send({"type": "message", "to": "luke", "text": SECRET_TEXT + " (relayed)"})
    luke.until("message", text=SECRET_TEXT + " (relayed)")
    luke.send({"type": "listen", "port": 9})
    yoda.send({"type": "startprivate", "user": "luke"})
    luke.until("private_request")
    luke.send({"type": "private_answer", "user": "yoda", "accept": True})
    token = luke.until("private_expect")["token"]
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "accounts reloaded: no change" in server.log(), what="the reload logged")
    assert admin(server.socket_path, "reload")[0] == 0
    assert admin(server.socket_path, "notice", NOTICE_TEXT)[0] == 0
    assert admin(server.socket_path, "kick", "luke", "for", "the", "test")[0] == 0
    luke.until("bye", reason="operator", text="for the test")
    yoda.close()
    luke.close()
    server.stop()
    return server.log(), token


@pytest.mark.e2e
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_password_token_or_message_text_reaches_the_log(tmp_path, log_format):
    socket_path = str(tmp_path / "admin.sock")
    server = ServerProcess(tmp_path, block=30, extra=("--log-format", log_format, "--admin-socket", socket_path))
    server.socket_path = socket_path
    log, token = a_session_with_failures_a_lockout_a_message_and_a_reload(server)
    lines = log.splitlines()
    assert lines
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
        assert any(entry["level"] == "DEBUG" for entry in entries)
        fields = [{k: v for k, v in entry.items() if k not in ("time", "level", "logger", "message")}
                  for entry in entries]
        assert {"user": "luke", "conn": 5, "address": "127.0.0.1"} in fields          # a login
        assert {"action": "kick", "user": "luke", "reason": "for the test"} in fields   # the kick
        assert any(f.get("user") == "vader" and f.get("reason") == "locked" for f in fields)   # the lockout
        assert any(f.get("user") == "luke" and f.get("reason") == "disconnected by the operator" for f in fields)
    else:
        assert "admin: kicked luke (for the test)" in log and "admin: reloaded the accounts" in log
    for secret in ["hunter2-wrong", SECRET_TEXT, NOTICE_TEXT, token, *ACCOUNTS.values()]:
        assert secret not in log, secret
