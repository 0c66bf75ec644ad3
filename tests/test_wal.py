"""A damaged write-ahead log: ``inspect_wal`` tells what SQLite's recovery drops (checked against SQLite itself),
the store says so at start and keeps the log as found; and the real server killed, its log damaged, restarted."""
import logging
import os
import shutil
import signal

import pytest

from reactor.server.rules import KeepMessage
from reactor.server.store import Store, StoreInUse
from reactor.server.wal import inspect_wal
from tests.support import NO_LIMITS, ServerProcess

HEADER, FRAME_HEADER, PAGE = 32, 24, 4096
SCHEMA = 12   # frames of the schema's transaction (a page for each table and index, and the schema's own)


def crashed_copy(tmp_path, messages, text="x"):
    """A state file and its write-ahead log as a crash leaves them: ``messages`` kept, one transaction each
    (copied while the store is open, before closing checkpoints the log away); no history, so each takes one
    frame."""
    live = tmp_path / "live.db"
    store = Store.open(str(live), history_cap=0)
    for i in range(1, messages + 1):
        store.apply(KeepMessage(i, "yoda", "hans", f"{text}{i}", 1.0))
        store.commit()
    state = tmp_path / "state.db"
    shutil.copy(live, state)
    shutil.copy(f"{live}-wal", f"{state}-wal")
    store.close()
    return state


def frames(wal):
    return (os.path.getsize(wal) - HEADER) // (FRAME_HEADER + PAGE)


def damage(wal, frame, at=FRAME_HEADER + 2000):
    """Flip a byte of frame ``frame`` (1-based; by default in its page)."""
    with open(wal, "r+b") as f:
        f.seek(HEADER + (frame - 1) * (FRAME_HEADER + PAGE) + at)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def kept_after_recovery(state):
    store = Store.open(str(state))
    try:
        return len(store.load()[1])
    finally:
        store.close()


def test_an_intact_log_left_by_a_crash_loses_nothing(tmp_path):
    state = crashed_copy(tmp_path, 10)
    assert frames(f"{state}-wal") > 10 and inspect_wal(f"{state}-wal") is None
    assert inspect_wal(f"{tmp_path}/none-wal") is None
    assert kept_after_recovery(state) == 10


@pytest.mark.parametrize("bad", [SCHEMA + 14, SCHEMA + 27, SCHEMA + 40])
def test_a_damaged_frame_discards_it_and_all_after_as_sqlite_recovery_does(tmp_path, bad):
    state = crashed_copy(tmp_path, 40)
    wal = f"{state}-wal"
    total = frames(wal)
    assert total == SCHEMA + 40   # the schema's transaction, then one frame a message
    damage(wal, bad)
    report = inspect_wal(wal)
    assert report is not None and not report.bad_header
    assert (report.frames, report.bad_frame, report.discarded) == (total, bad, total - bad + 1)
    assert report.transactions == total - bad + 1   # one message a transaction, each in one frame
    assert kept_after_recovery(state) == 40 - report.transactions   # what SQLite itself kept
    assert f"frame {bad} of {total} fails its checks" in report.describe()


def test_a_damaged_salt_counts_as_damage_too(tmp_path):
    state = crashed_copy(tmp_path, 40)
    damage(f"{state}-wal", SCHEMA + 24, at=9)   # the frame's first salt
    report = inspect_wal(f"{state}-wal")
    assert (report.bad_frame, report.transactions) == (SCHEMA + 24, 17)
    assert kept_after_recovery(state) == 40 - 17


def test_a_damaged_header_makes_recovery_ignore_the_whole_log(tmp_path):
    state = crashed_copy(tmp_path, 12)
    damage(f"{state}-wal", 1, at=-HEADER + 20)   # (the header's second salt)
    report = inspect_wal(f"{state}-wal")
    assert report.bad_header and (report.frames, report.discarded, report.transactions) == (SCHEMA + 12,
                                                                                             SCHEMA + 12, 13)
    assert "header is damaged" in report.describe()
    assert kept_after_recovery(state) == 0   # all 12 were in the log


def test_frames_of_a_transaction_never_committed_are_counted_apart_from_damage(tmp_path):
    state = crashed_copy(tmp_path, 3, text="y" * 20_000)   # a message of several pages: several frames a commit
    wal = f"{state}-wal"
    total = frames(wal)
    with open(wal, "r+b") as f:   # the last transaction cut short: its commit frame never written
        f.truncate(HEADER + (total - 1) * (FRAME_HEADER + PAGE))
    report = inspect_wal(wal)
    assert report.bad_frame is None and report.transactions == 0 and report.discarded >= 1
    assert "never committed" in report.describe()
    assert kept_after_recovery(state) == 2


def test_the_store_says_what_was_lost_and_keeps_the_log_as_found_before_sqlite_touches_it(tmp_path, caplog):
    state = crashed_copy(tmp_path, 40)
    damage(f"{state}-wal", SCHEMA + 18)
    found = open(f"{state}-wal", "rb").read()
    with caplog.at_level(logging.WARNING, logger="reactor.server.store"):
        store = Store.open(str(state))
    try:
        assert len(store.load()[1]) == 17
    finally:
        store.close()
    copies = [name for name in os.listdir(tmp_path) if name.startswith("state.db-wal.damaged-")]
    assert len(copies) == 1 and (tmp_path / copies[0]).read_bytes() == found
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "23 frames (23 transactions) from there on are discarded" in record.getMessage()
    assert copies[0] in record.getMessage()


def test_a_log_in_use_by_another_server_is_not_reported_nor_kept(tmp_path, caplog):
    state = tmp_path / "state.db"
    first = Store.open(str(state))
    try:
        for i in range(1, 6):
            first.apply(KeepMessage(i, "yoda", "hans", "x", 1.0))
            first.commit()
        damage(f"{state}-wal", 4)   # (as a log being written may look to a reader)
        with caplog.at_level(logging.WARNING, logger="reactor.server.store"), pytest.raises(StoreInUse):
            Store.open(str(state))
    finally:
        first.close()
    assert not [name for name in os.listdir(tmp_path) if ".damaged-" in name] and not caplog.records


@pytest.mark.e2e   # starts the real server
def test_the_real_server_killed_and_its_log_damaged_says_how_much_was_lost_and_keeps_the_log(tmp_path):
    state = tmp_path / "state.db"
    (tmp_path / "first").mkdir()
    # (no history: each message one frame)
    srv = ServerProcess(tmp_path / "first", extra=("--state", str(state), "--history-days", "0", *NO_LIMITS))
    try:
        hans = srv.client()
        hans.login("hans")
        for i in range(40):   # each confirmed before the next is sent: one transaction each
            hans.send({"type": "message", "to": "yoda", "text": f"m{i}"})
            hans.expect("stored", to="yoda")
        srv.proc.send_signal(signal.SIGKILL)
    finally:
        assert srv.stop() == -signal.SIGKILL
    damage(f"{state}-wal", SCHEMA + 18)
    found = open(f"{state}-wal", "rb").read()
    (tmp_path / "second").mkdir()
    srv = ServerProcess(tmp_path / "second", extra=("--state", str(state), *NO_LIMITS))
    try:
        yoda = srv.client()
        yoda.login("yoda")
        texts = []
        yoda.send({"type": "ping"})
        while (frame := yoda.recv())["type"] != "pong":
            texts.append(frame.get("text"))
        assert texts == [f"m{i}" for i in range(17)]   # SQLite's recovery dropped the other 23
        log = srv.log()
        assert "its write-ahead log held changes that were not applied" in log
        assert "23 frames (23 transactions) from there on are discarded" in log
        copies = [name for name in os.listdir(tmp_path) if name.startswith("state.db-wal.damaged-")]
        assert len(copies) == 1 and copies[0] in log and (tmp_path / copies[0]).read_bytes() == found
    finally:
        assert srv.stop() == 0


def test_a_header_that_names_no_page_size_is_damage_too_and_a_torn_header_is_nothing(tmp_path):
    state = crashed_copy(tmp_path, 5)
    damage(f"{state}-wal", 1, at=-HEADER + 0)   # the magic
    report = inspect_wal(f"{state}-wal")
    assert report.bad_header and report.size == os.path.getsize(f"{state}-wal") and report.frames == 0
    assert f"({report.size} bytes" in report.describe()
    (tmp_path / "torn-wal").write_bytes(b"\x37\x7f\x06\x82" * 3)
    assert inspect_wal(str(tmp_path / "torn-wal")) is None


def test_copies_kept_the_same_second_do_not_overwrite_each_other(tmp_path, monkeypatch):
    import reactor.server.wal as wal_module
    monkeypatch.setattr(wal_module.time, "strftime", lambda fmt: "20260101-120000")   # one second for both
    wal = tmp_path / "state.db-wal"
    wal.write_bytes(b"first")
    one = wal_module.keep_copy(str(wal))
    wal.write_bytes(b"second")
    two = wal_module.keep_copy(str(wal))
    assert one == f"{wal}.damaged-20260101-120000" and two == one + ".1"
    assert open(one, "rb").read() == b"first" and open(two, "rb").read() == b"second"


def test_a_copy_that_cannot_be_kept_stops_the_start_and_leaves_the_log(tmp_path, monkeypatch):
    import reactor.server.store as store

    def cannot(path):
        raise OSError(28, "No space left on device")
    state = crashed_copy(tmp_path, 40)
    damage(f"{state}-wal", SCHEMA + 18)
    found = open(f"{state}-wal", "rb").read()
    monkeypatch.setattr(store, "keep_copy", cannot)
    with pytest.raises(store.StoreError) as info:
        Store.open(str(state))
    assert "Cannot keep a copy of the damaged write-ahead log" in str(info.value) and "No space" in str(info.value)
    assert open(f"{state}-wal", "rb").read() == found
