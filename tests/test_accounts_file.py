"""One account's password rewritten in the accounts file: atomically, every other byte kept, an operator's edit
never undone, and a file that is not the server's to write left alone."""
import errno
import os
import stat

import pytest

from reactor.server.accounts_file import ATTEMPTS, AccountsFile, Rewrite, Rewritten
from reactor.server.credentials import load_credentials
from reactor.server.passwords import hash_password, verify_password

NEW = hash_password("new*secret", log2_n=10)
ODD = (b"\xef\xbb\xbf# accounts  (odd   spacing kept)\r\n"
       b"hans falcon*solo\n"
       b"   \t \n"
       b"#yoda not-this-one\n"
       b"yodafan wise@!man\n"
       b"yoda wise@!man\r\n"
       b"\n"
       b"vader sithlord**")   # (no line end at the end)


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "credentials.txt"
    path.write_bytes(ODD)
    path.chmod(0o640)
    return path


def leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_only_the_users_field_changes_and_every_other_byte_is_kept(creds):
    told = []
    accounts = AccountsFile(creds, on_written=lambda user, field: told.append((user, field)))
    inode = creds.stat().st_ino
    assert accounts.set_password("yoda", NEW, expected="wise@!man") == Rewritten(Rewrite.WRITTEN)
    assert creds.read_bytes() == ODD.replace(b"yoda wise@!man\r\n", b"yoda " + NEW.encode() + b"\r\n")
    assert creds.stat().st_ino != inode                      # a new file, renamed over the old
    assert stat.S_IMODE(creds.stat().st_mode) == 0o640       # with the old one's mode
    assert leftovers(creds) == []                            # and no temporary file left
    assert told == [("yoda", NEW)]
    loaded = load_credentials(creds)
    assert loaded["yodafan"] == "wise@!man" and verify_password("new*secret", loaded["yoda"])


def test_the_first_line_after_a_byte_order_mark_and_the_last_without_a_line_end(tmp_path):
    path = tmp_path / "credentials.txt"
    path.write_bytes(b"\xef\xbb\xbfhans falcon*solo\nvader sithlord**")
    accounts = AccountsFile(path)
    assert accounts.set_password("hans", NEW, "falcon*solo").outcome is Rewrite.WRITTEN
    assert accounts.set_password("vader", NEW, "sithlord**").outcome is Rewrite.WRITTEN
    assert path.read_bytes() == b"\xef\xbb\xbfhans " + NEW.encode() + b"\nvader " + NEW.encode()


def test_a_line_the_operator_changed_or_removed_is_left_as_it_is(creds):
    told = []
    accounts = AccountsFile(creds, on_written=lambda user, field: told.append(user))
    inode = creds.stat().st_ino
    changed = accounts.set_password("yoda", NEW, expected="what-it-was-before")
    assert changed.outcome is Rewrite.CHANGED and "another password" in changed.why and "wise" not in changed.why
    assert accounts.set_password("luke", NEW, expected="jedi*knight") == Rewritten(
        Rewrite.CHANGED, "luke has no line in it")
    assert creds.read_bytes() == ODD and creds.stat().st_ino == inode and told == []


def test_a_user_on_two_lines_is_not_guessed_at(tmp_path):
    path = tmp_path / "credentials.txt"
    path.write_bytes(b"yoda a\nyoda b\n")
    assert AccountsFile(path).set_password("yoda", NEW) == Rewritten(Rewrite.CHANGED, "yoda has 2 lines in it")
    assert path.read_bytes() == b"yoda a\nyoda b\n"


def test_a_field_already_there_is_not_written_again_but_told(creds):
    """A node of a cluster sharing the file with the node that wrote it."""
    told = []
    accounts = AccountsFile(creds, on_written=lambda user, field: told.append(user))
    assert accounts.set_password("yoda", NEW).outcome is Rewrite.WRITTEN
    inode = creds.stat().st_ino
    assert accounts.set_password("yoda", NEW) == Rewritten(Rewrite.UNCHANGED)
    assert creds.stat().st_ino == inode and told == ["yoda", "yoda"]


def test_a_change_from_another_node_replaces_whatever_the_line_holds(creds):
    assert AccountsFile(creds).set_password("hans", NEW).outcome is Rewrite.WRITTEN
    assert load_credentials(creds)["hans"] == NEW


def test_a_read_only_file_is_not_the_servers_to_change(creds):
    creds.chmod(0o440)
    accounts = AccountsFile(creds)
    assert accounts.writable() == Rewritten(Rewrite.UNWRITABLE, "it is read-only (its mode does not let its owner "
                                                                "write it)")
    assert accounts.set_password("yoda", NEW, "wise@!man") == accounts.writable()
    assert creds.read_bytes() == ODD and leftovers(creds) == []


def test_a_file_of_another_owner_is_not_the_servers_to_change(creds, monkeypatch):
    owner = creds.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)   # the server runs as another user than the file's
    result = AccountsFile(creds).set_password("yoda", NEW, "wise@!man")
    assert result == Rewritten(Rewrite.UNWRITABLE, f"it belongs to user {owner}, not to the server's ({owner + 1})")
    assert creds.read_bytes() == ODD and leftovers(creds) == []


@pytest.mark.parametrize("code, outcome", [(errno.EROFS, Rewrite.UNWRITABLE), (errno.EACCES, Rewrite.UNWRITABLE),
                                           (errno.ENOSPC, Rewrite.FAILED)])
def test_a_write_the_system_refuses_changes_nothing_and_leaves_no_temporary_file(creds, monkeypatch, code, outcome):
    def refused(*args):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "rename", refused)
    assert AccountsFile(creds).set_password("yoda", NEW, "wise@!man") == Rewritten(outcome, os.strerror(code))
    assert creds.read_bytes() == ODD and leftovers(creds) == []


def test_a_missing_file_is_a_failure_said_in_words(tmp_path):
    result = AccountsFile(tmp_path / "gone.txt").set_password("yoda", NEW)
    assert result == Rewritten(Rewrite.FAILED, "No such file or directory")


def test_a_symlinks_target_is_rewritten_and_the_link_stays(creds):
    link = creds.parent / "link.txt"
    link.symlink_to(creds.name)
    assert AccountsFile(link).set_password("yoda", NEW, "wise@!man").outcome is Rewrite.WRITTEN
    assert link.is_symlink() and load_credentials(creds)["yoda"] == NEW


def test_an_edit_between_the_read_and_the_rename_is_read_again_and_kept(creds, monkeypatch):
    """The operator saves the file while the server writes its new one: the server's is not renamed over it;
    the file is read again, and the edit stays beside the new field."""
    fsync, edits = os.fsync, []

    def edit_once(fd):
        fsync(fd)
        if not edits:
            edits.append(1)
            creds.write_bytes(creds.read_bytes() + b"\nluke jedi*knight\n")
    monkeypatch.setattr(os, "fsync", edit_once)
    assert AccountsFile(creds).set_password("yoda", NEW, "wise@!man").outcome is Rewrite.WRITTEN
    loaded = load_credentials(creds)
    assert loaded["luke"] == "jedi*knight" and loaded["yoda"] == NEW and leftovers(creds) == []


def test_a_file_that_keeps_changing_is_given_up_on(creds, monkeypatch):
    fsync = os.fsync

    def edit_always(fd):
        fsync(fd)
        creds.write_bytes(creds.read_bytes() + b"#\n")
    monkeypatch.setattr(os, "fsync", edit_always)
    result = AccountsFile(creds).set_password("yoda", NEW, "wise@!man")
    assert result == Rewritten(Rewrite.FAILED, f"it kept changing while it was rewritten ({ATTEMPTS} tries)")
    assert load_credentials(creds)["yoda"] == "wise@!man" and leftovers(creds) == []
