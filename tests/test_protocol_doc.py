"""PROTOCOL.md section 5 and the client agree: every frame and error code in its two tables has the
client's words, and every word the client declares for a frame or an error code is in them."""
import re
from pathlib import Path

from reactor.client.rules import ERRORS, FRAMES

DOC = Path(__file__).resolve().parent.parent / "reactor" / "PROTOCOL.md"
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
            assert phrases == [as_documented(rule.words)], code


def test_the_client_has_words_for_every_error_code_of_the_protocol_and_no_other():
    from reactor.protocol import ErrorCode
    assert set(ERRORS) == set(ErrorCode)
    assert all(type(code) is ErrorCode for code in ERRORS)   # declared through the one list of codes
