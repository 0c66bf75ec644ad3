"""PROTOCOL.md section 5 and the client agree: every frame and error code in its two tables has the
client's words, and every word the client declares for a frame or an error code is in them. And both sides
speak the one vocabulary of reactor/protocol.py: every frame type, error code and bye reason the server can
send has the client's handler and words, and the client writes none of them as a string of its own."""
import ast
import re
from pathlib import Path

import pytest

from reactor.client.effects import Exit, Print
from reactor.client.rules import ERRORS, FRAMES, ChatClient
from reactor.client.words import FRAME_WORDS
from reactor.protocol import ByeReason, ErrorCode, FrameType

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "reactor" / "PROTOCOL.md"
QUOTED = re.compile(r"`([^`]*)`")
# In the frame table, what is quoted but is not words the client shows: field names, a flag, examples.
NOT_WORDS = {"id", "sent", "--timestamps", "[Nov 24 14:03] vader: ...", "[14:03] "}


def section_5_tables():
    """The rows of section 5's two tables (frame, then error code), each row as its two cells."""
    section = DOC.read_text(encoding="utf-8").split("\n## 5.", 1)[1].split("\n## ", 1)[0]
    tables, rows = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            rows = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if rows is None:               # the header
            rows = []
            tables.append((cells[0], rows))
        elif not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
    return dict(tables)


def as_documented(template):
    """A client template as the table writes it: ``{user}`` is ``<user>``."""
    return re.sub(r"\{(\w+)\}", r"<\1>", template)


def test_the_tables_are_found():
    tables = section_5_tables()
    assert len(tables["frame"]) >= 15 and len(tables["error code"]) >= 30


def test_every_frame_in_the_table_has_the_clients_words_and_the_reverse():
    documented: dict[str, set[str]] = {}
    for what, words in section_5_tables()["frame"]:
        if what.startswith("(client)"):          # a client command, not a frame
            continue
        phrases = [p for p in QUOTED.findall(words) if p not in NOT_WORDS]
        names = QUOTED.findall(what)
        if " / " in what:                          # `blocked` / `unblocked`: the words pair up
            assert len(names) == len(phrases), what
            for kind, phrase in zip(names, phrases, strict=True):
                documented.setdefault(kind, set()).add(phrase)
            continue
        kind = names[0]
        assert kind in FRAMES, f"PROTOCOL.md shows a {kind} frame the client does not take"
        if len(names) == 2:                         # `bye` `timeout`: the words for that reason
            assert [as_documented(FRAMES[kind].words.templates[names[1]])] == phrases, what
        documented.setdefault(kind, set()).update(phrases)
    clients = {kind: {as_documented(t) for t in rule.words.templates.values()}
               for kind, rule in FRAMES.items() if rule.words.templates}
    assert {kind: words for kind, words in documented.items() if words} == clients


def test_every_error_code_in_the_table_has_the_clients_words_and_the_reverse():
    documented = {}
    for what, words in section_5_tables()["error code"]:
        names = QUOTED.findall(what)
        if not names:                               # "other": shown as its code
            continue
        commands = re.search(r"`command`: ([\w, ]+)", what)
        documented[names[0]] = (QUOTED.findall(words), commands and commands[1].split(", "), "(exit 1)" in words)
    assert set(documented) == set(ERRORS)
    for code, (phrases, commands, fatal) in documented.items():
        rule = ERRORS[code]
        assert rule.fatal == fatal, code
        if commands:
            assert dict(zip(commands, phrases, strict=True)) == {
                command: as_documented(words) for command, words in rule.by_command.items()}, code
        else:
            assert not rule.by_command and rule.words is not None, code
            lasts = [as_documented(rule.lasts.strip())] if rule.lasts is not None else []   # (in <retry> s)
            assert phrases == [as_documented(rule.words), *lasts], code


def test_the_client_has_words_for_every_error_code_of_the_protocol_and_no_other():
    assert set(ERRORS) == set(ErrorCode)
    assert all(type(code) is ErrorCode for code in ERRORS)   # declared through the one list of codes


# -- one vocabulary on both sides ----------------------------------------------------

VOCABULARY = {"FrameType": FrameType, "ErrorCode": ErrorCode, "ByeReason": ByeReason}
FIELDS = {"type": FrameType, "code": ErrorCode, "reason": ByeReason}   # a frame's fields that take a member


def modules(*rooms):
    return sorted(path for room in rooms for path in (ROOT / "reactor" / room).glob("*.py"))


def member_of(node, names=None):
    """The string or vocabulary member an expression stands for: a string constant, ``FrameType.BYE``,
    ``FrameType.BYE.value`` (the plain string the hot path keeps), or a module constant bound to one of those
    (``names``: the module's constants so far); None for anything computed."""
    if isinstance(node, ast.Constant) and type(node.value) is str:
        return node.value
    if isinstance(node, ast.Attribute) and node.attr == "value":
        member = member_of(node.value)
        return None if member is None or type(member) is str else member.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in VOCABULARY:
        return VOCABULARY[node.value.id][node.attr]
    if isinstance(node, ast.Name) and names is not None:
        return names.get(node.id)
    return None


def written(paths):
    """(path, field, value) for each ``type``, ``code`` or ``reason`` a dict display in ``paths`` writes as a
    string, as a member of the vocabulary (``FrameType.BYE``, or its ``.value``), or as a module constant bound
    to one of those; a value computed (``"code": code``) is skipped, as is a log call's ``extra={...}``.
    ``value`` is the string, or the member."""
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names = {}
        for statement in tree.body:   # the module's constants: _MESSAGE = FrameType.MESSAGE.value
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)):
                member = member_of(statement.value)
                if member is not None:
                    names[statement.targets[0].id] = member
        logged = {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "extra"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict) or id(node) in logged:   # (a log line's fields are no frame)
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if not isinstance(key, ast.Constant) or key.value not in FIELDS:
                    continue
                member = member_of(value, names)
                if member is not None:
                    yield path, key.value, member


def members_named(paths, vocabulary):
    """Every member of ``vocabulary`` (an enum of reactor/protocol.py) the code in ``paths`` names."""
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == vocabulary.__name__):
                yield vocabulary[node.attr]


SERVER_SENDS = {field: {value for _, f, value in written(modules("server", "cluster")) if f == field}
                for field in FIELDS}


def test_the_scan_of_what_the_server_sends_finds_it():
    assert {"hello", "welcome", "error", "bye", "message", "presence", "private_connect"} <= SERVER_SENDS["type"]
    named = set(members_named(modules("server", "cluster"), ErrorCode))
    assert {"busy", "tls_required"} <= SERVER_SENDS["code"] | named   # as the server's host names them
    reasons = SERVER_SENDS["reason"] | set(members_named(modules("server", "cluster"), ByeReason))
    assert {"logout", "timeout", "shutdown", "account_removed"} <= reasons   # bye(ByeReason.X) names them


@pytest.mark.parametrize("field", FIELDS)
def test_the_server_sends_only_the_vocabulary_of_the_protocol_module(field):
    assert SERVER_SENDS[field] <= set(FIELDS[field]), SERVER_SENDS[field] - set(FIELDS[field])


def test_every_frame_type_the_server_can_send_is_taken_by_the_client_with_its_words():
    assert SERVER_SENDS["type"] <= set(FRAMES), SERVER_SENDS["type"] - set(FRAMES)
    assert all(type(kind) is FrameType for kind in FRAMES)   # declared through the one list of frame types
    assert set(FRAME_WORDS) <= set(FRAMES)                   # no words for a frame the client does not take
    assert all(FRAMES[kind].words is words for kind, words in FRAME_WORDS.items())
    # The frames without words of their own: an error's are its code's, a hello shows only a version it cannot
    # speak (the version error's words), a delivered message shows as one sent on a single server does (nothing),
    # and the rest is the client's business alone (who else is online at the login is for completion).
    assert SERVER_SENDS["type"] - set(FRAME_WORDS) == {"error", "hello", "pong", "delivered", "private_expect",
                                                       "private_connect", "online"}


def test_every_error_code_the_server_can_send_has_client_words():
    codes = SERVER_SENDS["code"] | set(members_named(modules("server", "cluster"), ErrorCode))
    assert len(codes) >= 25 and codes <= set(ERRORS), codes - set(ERRORS)
    for code in codes:
        client = ChatClient()
        client.start(0)
        client.server_frame({"type": "hello", "version": 2}, 0)
        shown = [effect.text for effect in client.server_frame({"type": "error", "code": code}, 0)
                 if type(effect) is Print]
        assert len(shown) == 1 and shown[0] != f"Error. {code}" and "{" not in shown[0], code


@pytest.mark.parametrize("reason", sorted(ByeReason))
def test_every_bye_reason_has_client_words_and_the_client_takes_it(reason):
    assert reason in SERVER_SENDS["reason"] | set(members_named(modules("server", "cluster"), ByeReason))
    words = FRAME_WORDS[FrameType.BYE].templates[reason]
    client = ChatClient()
    client.start(0)
    assert client.server_frame({"type": "bye", "reason": str(reason)}, 0) == [
        Print(words), Exit(1 if reason in (ByeReason.SHUTDOWN, ByeReason.ACCOUNT_REMOVED, ByeReason.CUT_OFF,
                                           ByeReason.OPERATOR) else 0)]


def test_the_client_writes_frame_types_error_codes_and_bye_reasons_from_the_protocol_module():
    """No string of the client's own: a frame it builds names its type as a member (``FrameType.PING``)."""
    strings = [(path.name, field, value) for path, field, value in written(modules("client"))
               if type(value) is str and not isinstance(value, FIELDS[field])]
    assert strings == []
    assert {"ping", "hello", "logout", "listen", "peer_hello", "private"} <= {
        value for _, field, value in written(modules("client")) if field == "type"}
