"""The state store on its own: round trips, transactions, and every way a state file can be unusable."""
import os
import sqlite3
import subprocess
import sys

import pytest

from reactor.server.effects import AddBlock, ForgetMessages, KeepMessage, RemoveBlock
from reactor.server.store import SCHEMA_VERSION, MemoryStore, Store, StoreError, StoreFull
from tests.support import ROOT, FailingCommit, FullCommit, contents, coverage_env, opened


def add(i, to="yoda", sender="hans", text=None):
    return KeepMessage(i, to, sender, text or f"message {i}")


def fill(store):
    store.apply(add(1, "yoda", "hans", "hello"))
    store.apply(add(2, "yoda", "luke", "émoji 🚀 and \"quotes\"\nnewline"))
    store.apply(add(3, "leia", "hans", "third"))
    store.apply(AddBlock("yoda", "vader"))
    store.apply(AddBlock("leia", "hans"))
    store.apply(AddBlock("leia", "vader"))
    store.apply(RemoveBlock("leia", "hans"))
    store.apply(ForgetMessages((1, 3)))
    store.commit()


def test_round_trip_through_a_file(tmp_path):
    path = str(tmp_path / "state.db")
    store = Store.open(path)
    assert contents(store) == ([], [])
    fill(store)
    assert store.commits == 1
    store.close()
    again = Store.open(path)
    blocks, offline = contents(again)
    assert sorted(blocks) == [("leia", "vader"), ("yoda", "vader")]
    assert offline == [(2, "yoda", "luke", "émoji 🚀 and \"quotes\"\nnewline")]
    again.close()


def test_a_wall_clock_time_is_kept_when_given():
    store = Store.open(":memory:")
    store.apply(add(1))
    store.apply(KeepMessage(2, "yoda", "hans", "timed", 1764000000.25))
    store.commit()
    assert contents(store)[1] == [(1, "yoda", "hans", "message 1"), (2, "yoda", "hans", "timed", 1764000000.25)]
    store.close()


def test_load_gives_sizes_not_texts_and_texts_reads_them_also_before_the_commit(tmp_path):
    store = Store.open(str(tmp_path / "state.db"))
    fill(store)
    text = "émoji 🚀 and \"quotes\"\nnewline"
    assert store.load()[1] == [(2, "yoda", "luke", len(text.encode()), len(text), None, None)]
    store.apply(add(7, text="not yet committed"))
    assert store.texts([7, 2, 1, 99]) == {7: "not yet committed", 2: text}   # 1 was deleted, 99 never kept
    assert store.texts([]) == {}
    store.close()


def test_texts_reads_more_ids_than_one_query_takes():
    store = Store.open(":memory:")
    for i in range(1, 1202):
        store.apply(add(i))
    assert store.texts(range(1, 1203)) == {i: f"message {i}" for i in range(1, 1202)}
    store.close()


def test_the_memory_store_keeps_what_a_state_file_does():
    memory, sqlite = MemoryStore(), Store.open(":memory:")
    for store in (memory, sqlite):
        fill(store)
        store.apply(KeepMessage(4, "leia", "vader", "timed ✓", 1764000000.25))
        store.commit()
    assert memory.load() == (sorted(sqlite.load()[0]), sqlite.load()[1])
    assert memory.texts([1, 2, 4]) == sqlite.texts([1, 2, 4])
    with pytest.raises(StoreError, match="unknown state change"):
        memory.apply(("drop_everything",))
    sqlite.close()


def test_offline_messages_load_in_id_order(tmp_path):
    store = Store.open(str(tmp_path / "state.db"))
    for i in (5, 2, 9, 1):
        store.apply(add(i))
    store.commit()
    assert [m[0] for m in contents(store)[1]] == [1, 2, 5, 9]
    store.close()


def test_blocking_twice_keeps_one_row_and_unknown_unblock_is_harmless():
    store = Store.open(":memory:")
    store.apply(AddBlock("yoda", "vader"))
    store.apply(AddBlock("yoda", "vader"))
    store.apply(RemoveBlock("yoda", "hans"))
    store.apply(ForgetMessages((42,)))
    store.commit()
    assert contents(store) == ([("yoda", "vader")], [])
    store.close()


def test_one_commit_for_everything_applied_since_the_last():
    store = Store.open(":memory:")
    store.commit()
    assert store.commits == 0  # nothing pending: no transaction
    for i in range(1, 101):
        store.apply(add(i))
    store.commit()
    store.apply(add(101))
    store.commit()
    assert store.commits == 2
    assert len(contents(store)[1]) == 101
    store.close()


def test_memory_forgets_on_close():
    store = Store.open(":memory:")
    fill(store)
    assert contents(store)[1]
    store.close()
    assert contents(Store.open(":memory:")) == ([], [])


def test_files_use_wal_and_the_chosen_synchronous_level(tmp_path):
    for level, number in (("FULL", 2), ("NORMAL", 1)):
        store, conn = opened(str(tmp_path / f"{level}.db"), synchronous=level)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == number
        store.close()
    with pytest.raises(ValueError):
        Store.open(str(tmp_path / "x.db"), synchronous="OFF")


def test_the_schema_is_versioned(tmp_path):
    path = tmp_path / "state.db"
    Store.open(str(path)).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


@pytest.mark.e2e
def test_uncommitted_changes_are_lost_in_a_crash_and_committed_ones_are_not(tmp_path):
    path = tmp_path / "state.db"
    script = (
        "import os\n"
        "from reactor.server.rules import KeepMessage\n"
        "from reactor.server.store import Store\n"
        f"s = Store.open({str(path)!r})\n"
        "s.apply(KeepMessage(1, 'yoda', 'hans', 'kept'))\n"
        "s.commit()\n"
        "s.apply(KeepMessage(2, 'yoda', 'hans', 'lost'))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=coverage_env(), check=True)
    store = Store.open(str(path))
    assert contents(store)[1] == [(1, "yoda", "hans", "kept")]
    store.close()


def test_close_commits_what_is_pending(tmp_path):
    path = str(tmp_path / "state.db")
    store = Store.open(path)
    store.apply(add(1))
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.load()
    again = Store.open(path)
    assert contents(again)[1] == [(1, "yoda", "hans", "message 1")]
    again.close()


def test_a_second_server_on_the_same_file_is_refused(tmp_path):
    path = str(tmp_path / "state.db")
    first = Store.open(path)
    with pytest.raises(StoreError, match="in use by another server"):
        Store.open(path)
    first.close()
    Store.open(path).close()  # free again once the first has closed


# -- files that cannot be used -------------------------------------------------

def write_meta(path, version):
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.commit()
    conn.close()


def test_a_newer_schema_version_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "state.db"
    store = Store.open(str(path))
    fill(store)
    store.close()
    write_meta(path, str(SCHEMA_VERSION + 1))
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"newer server \(schema version {SCHEMA_VERSION + 1}; "
                                         rf"this server reads version {SCHEMA_VERSION}\)"):
        Store.open(str(path))
    assert path.read_bytes() == before


@pytest.mark.parametrize("version", ["0", "banana", None])
def test_an_unknown_schema_version_is_refused(tmp_path, version):
    path = tmp_path / "state.db"
    Store.open(str(path)).close()
    if version is None:
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM meta")
        conn.commit()
        conn.close()
    else:
        write_meta(path, version)
    with pytest.raises(StoreError, match="unknown schema version"):
        Store.open(str(path))


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_database_that_is_not_a_state_file_is_refused_without_changing_a_byte(tmp_path, journal):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.execute("INSERT INTO photos VALUES (1)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a chat state file"):
        Store.open(str(path))
    assert path.read_bytes() == before  # in particular, its journal mode is still its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_state_file_missing_a_table_is_refused(tmp_path):
    path = tmp_path / "state.db"
    Store.open(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE blocks")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="damaged: table blocks missing"):
        Store.open(str(path))


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"these are not the droids you are looking for\n" * 200)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"State file {path} is corrupt or not a database"):
        Store.open(str(path))
    assert path.read_bytes() == before


def test_a_damaged_database_is_refused(tmp_path):
    path = tmp_path / "state.db"
    store = Store.open(str(path))
    for i in range(1, 3001):
        store.apply(add(i, text="x" * 200))
    store.commit()
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 8192] = b"\x55" * 8192
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        store = Store.open(str(path))
        store.load()


def test_an_empty_file_becomes_a_new_state_file(tmp_path):
    path = tmp_path / "state.db"
    path.touch()
    store = Store.open(str(path))
    assert contents(store) == ([], [])
    store.close()


def test_a_missing_directory_is_refused(tmp_path):
    path = tmp_path / "nowhere" / "state.db"
    with pytest.raises(StoreError, match="directory .*nowhere does not exist"):
        Store.open(str(path))
    assert not path.parent.exists()


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="it is a directory"):
        Store.open(str(tmp_path))


def test_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(str(tmp_path / "file" / "state.db"))


NOBODY = 65534


def open_as_user(path):
    """Store.open(path) in a forked child, as an unprivileged user when the tests run as root
    (root may write anywhere, so the permission checks can only be seen as someone else).
    Returns the StoreError's text, or '' if the store opened."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        status = 0
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                Store.open(path).close()
            except StoreError as exc:
                os.write(write_end, str(exc).encode())
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return said


@pytest.fixture
def shared_dir():
    """A directory the unprivileged user may enter (pytest's own temp root is private to root)."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="store-perm-")
    os.chmod(folder, 0o755)
    yield folder
    subprocess.run(["rm", "-rf", folder], check=False)


def test_an_unwritable_directory_is_refused(shared_dir):
    folder = os.path.join(shared_dir, "ro")
    os.mkdir(folder, 0o555)
    os.chmod(folder, 0o555)
    assert "is not writable" in open_as_user(os.path.join(folder, "state.db"))


def test_an_unwritable_file_is_refused(shared_dir):
    os.chmod(shared_dir, 0o777)   # the directory is writable: only the file is not
    path = os.path.join(shared_dir, "state.db")
    Store.open(path).close()
    os.chmod(path, 0o444)
    assert "not readable and writable" in open_as_user(path)
    assert open(path, "rb").read(16) == b"SQLite format 3\x00"   # refused, not reset


def test_sqlite_errors_are_named_for_a_person(tmp_path):
    path = str(tmp_path / "s.db")

    def err(name, text):
        """What opening a state file says when SQLite fails with ``name`` (the file named as ``s.db``)."""
        def connect(*args, **kwargs):
            exc = sqlite3.OperationalError(text)
            exc.sqlite_errorname = name
            raise exc

        with pytest.raises(StoreError) as refused:
            Store.open(path, connect=connect)
        return str(refused.value).replace(path, "s.db")

    assert err("SQLITE_READONLY", "attempt to write a readonly database") == \
        "Cannot write state file s.db: attempt to write a readonly database"
    assert err("SQLITE_CANTOPEN", "unable to open database file") == \
        "Cannot open state file s.db: unable to open database file"
    assert err("SQLITE_IOERR", "disk I/O error") == "Cannot use state file s.db: disk I/O error"
    assert "corrupt" in err("SQLITE_CORRUPT_INDEX", "malformed")


# -- failures while running ----------------------------------------------------

def test_an_unknown_change_is_an_error():
    store = Store.open(":memory:")
    with pytest.raises(StoreError, match=r"unknown state change \('rename', 'a', 'b'\)"):
        store.apply(("rename", "a", "b"))
    store.close()


def test_a_failed_write_breaks_the_store_for_good():
    store = Store.open(":memory:")
    store.apply(add(1))
    store.commit()
    store.apply(add(2))
    with pytest.raises(StoreError, match="Cannot write state file :memory:.*UNIQUE"):
        store.apply(add(1))  # the logic and the store disagree: stop trusting the store
    assert store.broken
    for call in (store.commit, store.load, lambda: store.apply(add(3))):
        with pytest.raises(StoreError, match="UNIQUE"):
            call()
    store.close()  # does not commit message 2


def test_a_failed_commit_is_never_followed_by_a_successful_one(tmp_path):
    path = str(tmp_path / "state.db")
    store, conn = opened(path, FailingCommit)
    conn.failing = True
    store.apply(add(1))
    with pytest.raises(StoreError, match="disk I/O error"):
        store.commit()
    # The host retries its commit each iteration: it must never "succeed" and
    # release the confirmations of what was rolled back.
    with pytest.raises(StoreError, match="disk I/O error"):
        store.commit()
    assert store.commits == 0
    store.close()
    again = Store.open(path)
    assert contents(again) == ([], [])
    again.close()


def test_a_table_that_vanished_under_the_store_is_reported():
    store, conn = opened(":memory:")
    conn.execute("DROP TABLE offline")
    with pytest.raises(StoreError, match="Cannot use state file :memory:: no such table: offline"):
        store.load()
    with pytest.raises(StoreError, match="Cannot read state file :memory:: no such table: offline"):
        store.texts([1])   # a store that cannot read its messages cannot be trusted to keep them either
    assert store.broken
    store.close()


# -- a store with no room left -----------------------------------------------------

def fill_until_full(store, start=1):
    """Commit messages one by one until one does not fit; the id of the one refused."""
    i = start
    while True:
        try:
            store.apply(add(i, text="x" * 1000))
            store.commit()
        except StoreFull:
            return i
        i += 1


@pytest.mark.parametrize("where", ["file", ":memory:"])
def test_a_store_at_its_cap_refuses_the_transaction_and_keeps_working(tmp_path, where):
    path = str(tmp_path / "state.db") if where == "file" else ":memory:"
    # No history: the messages alone fill it (and 24 KiB more for the history's six empty tables and indexes).
    store = Store.open(path, max_bytes=(64 + 24) * 1024, history_cap=0)
    refused = fill_until_full(store)
    assert 20 < refused < 64, refused
    assert not store.broken
    # A transaction that does not fit is rolled back whole, also what did fit in it.
    store.apply(AddBlock("yoda", "vader"))
    with pytest.raises(StoreFull, match="full"):
        store.apply(add(refused, text="x" * 50_000))
    store.commit()   # nothing is pending any more
    assert contents(store) == ([], [(i, "yoda", "hans", "x" * 1000) for i in range(1, refused)])
    # Deleting frees room: the same message fits now.
    store.apply(ForgetMessages(tuple(range(1, 11))))
    store.commit()
    store.apply(add(refused, text="x" * 1000))
    store.commit()
    assert [m[0] for m in contents(store)[1]] == list(range(11, refused + 1))
    store.close()


def test_a_full_commit_is_rolled_back_and_the_next_is_kept(tmp_path):
    path = str(tmp_path / "state.db")
    store, conn = opened(path, FullCommit)
    conn.fails = 1
    store.apply(add(1))
    with pytest.raises(StoreFull):
        store.commit()
    assert store.commits == 0 and not store.broken
    store.apply(add(2))
    store.commit()
    store.close()
    again = Store.open(path)
    assert contents(again) == ([], [(2, "yoda", "hans", "message 2")])
    again.close()


def test_a_cap_smaller_than_the_file_keeps_what_is_there_and_refuses_growth(tmp_path):
    path = str(tmp_path / "state.db")
    store = Store.open(path)
    for i in range(1, 101):
        store.apply(add(i, text="x" * 1000))
    store.commit()
    store.close()
    store = Store.open(path, max_bytes=8192)
    assert len(contents(store)[1]) == 100
    with pytest.raises(StoreFull):
        store.apply(add(101, text="x" * 10_000))
    store.apply(ForgetMessages((1, 2)))
    store.commit()
    store.close()
