"""The accounts file read again on a real loop (``AccountsReload``): a big file is parsed a slice per loop turn
and handed on in a turn of its own, reloads asked meanwhile coalesce into one more, a bad file keeps the
accounts; and the real server reloading 20,000 hashed accounts in slices while a user chats."""
import logging
import math
import signal

import pytest

from reactor.loop import EventLoop
from reactor.server.accounts_file import AccountsFile
from reactor.server.credentials import LINES_PER_SLICE, CredentialsParser
from reactor.server.passwords import hash_password
from reactor.server.reload import AccountsReload
from tests.support import ACCOUNTS, ServerProcess, wait_for, write_credentials

HASH = hash_password("pw", log2_n=10)   # parsing a hash costs the same whatever its scrypt cost
BIG = 20_000


def big_accounts(count=BIG, first=0):
    return {f"user{i}": HASH for i in range(first, first + count)}


class Reloads:
    """An AccountsReload of ``path`` on its own loop, recording what it hands on."""

    def __init__(self, path):
        self.loop = EventLoop()
        self.loaded = []
        self.reload = AccountsReload(self.loop, path, self.loaded.append)

    def turns_until_idle(self, limit=10_000):
        """Run the loop a turn at a time until no reload runs; the turns it took."""
        turns = 0
        while self.reload.running:
            assert turns < limit
            self.loop.run_once(timeout=0)
            turns += 1
        return turns

    def close(self):
        self.loop.close()


@pytest.fixture
def reloads(tmp_path):
    r = Reloads(tmp_path / "credentials.txt")
    yield r
    r.close()


def test_a_big_file_is_parsed_a_slice_a_turn_and_handed_on_in_a_turn_of_its_own(tmp_path, reloads):
    write_credentials(tmp_path, big_accounts())   # 20,000 lines and the empty one after the last newline
    slices = math.ceil((BIG + 1) / LINES_PER_SLICE)
    assert slices >= 40   # (so the test means something should the slice grow)
    reloads.reload.request()
    assert reloads.reload.running and reloads.loaded == []   # nothing parsed in the signal's own callback
    for _ in range(slices):
        reloads.loop.run_once(timeout=0)
        assert reloads.loaded == []   # one slice a turn: the accounts are not whole yet
    reloads.loop.run_once(timeout=0)   # the turn that hands them on
    assert reloads.loaded == [big_accounts()] and not reloads.reload.running


def test_the_parser_takes_lines_per_slice_lines_a_call(tmp_path):
    path = write_credentials(tmp_path, big_accounts(count=LINES_PER_SLICE * 2))
    parser = CredentialsParser(path)
    assert parser.parse_slice() is None and parser.parse_slice() is None   # the third takes the empty last line
    assert parser.parse_slice() == big_accounts(count=LINES_PER_SLICE * 2) and parser.slices == 3


def test_a_hash_its_account_had_when_last_loaded_is_not_checked_again(tmp_path, monkeypatch):
    import reactor.server.credentials as credentials
    checked = []
    monkeypatch.setattr(credentials, "parse_hash", lambda field: checked.append(field))
    other = hash_password("pw", log2_n=11)
    path = write_credentials(tmp_path, {"yoda": HASH, "luke": HASH, "leia": other, "hans": "plain"})
    accounts = load_all(CredentialsParser(path, known={"yoda": HASH, "luke": other, "hans": HASH}))
    assert accounts == {"yoda": HASH, "luke": HASH, "leia": other, "hans": "plain"}
    assert checked == [HASH, other]   # luke's hash is new to luke, leia is new: only yoda's is known


def load_all(parser):
    while (accounts := parser.parse_slice()) is None:
        pass
    return accounts


def test_reloads_asked_while_one_runs_coalesce_into_one_more_that_reads_the_file_as_it_is(tmp_path, reloads):
    write_credentials(tmp_path, big_accounts())
    reloads.reload.request()
    reloads.loop.run_once(timeout=0)   # under way
    write_credentials(tmp_path, big_accounts(first=1))   # changed after it was read
    for _ in range(5):
        reloads.reload.request()
    reloads.turns_until_idle()
    assert reloads.loaded == [big_accounts(), big_accounts(first=1)]   # the one under way, then one more
    assert reloads.reload.reloads == 2
    reloads.reload.request()   # asked once nothing runs: a reload of its own
    reloads.turns_until_idle()
    assert len(reloads.loaded) == 3 and reloads.reload.reloads == 3


def test_a_password_the_server_wrote_while_a_reload_ran_is_not_undone_by_it(tmp_path, reloads):
    """A user changed their password (the server rewrote its line) after the reload under way read the file:
    what that reload hands on has the new password, and the next reload finds it in the file."""
    path = write_credentials(tmp_path, big_accounts())
    reloads.reload.request()
    reloads.loop.run_once(timeout=0)   # under way: the file was read
    new = hash_password("new*secret", log2_n=10)
    AccountsFile(path, on_written=reloads.reload.changed).set_password("user7", new, HASH)
    reloads.turns_until_idle()
    assert reloads.loaded == [{**big_accounts(), "user7": new}]
    reloads.reload.changed("user8", new)   # told with no reload under way: the next one reads the file
    reloads.reload.request()
    reloads.turns_until_idle()
    assert reloads.loaded[1] == {**big_accounts(), "user7": new}   # (user8's line was never written)


def test_a_bad_line_found_in_a_later_slice_keeps_the_accounts_and_a_reload_asked_meanwhile_follows(
        tmp_path, reloads, caplog):
    path = tmp_path / "credentials.txt"
    lines = [f"user{i} {HASH}\n" for i in range(LINES_PER_SLICE * 3)]
    lines[LINES_PER_SLICE * 2] = "broken line here\n"
    path.write_text("".join(lines))
    with caplog.at_level(logging.ERROR, logger="reactor.server.reload"):
        reloads.reload.request()
        reloads.loop.run_once(timeout=0)
        reloads.reload.request()   # asked while the bad one runs
        reloads.loop.run_once(timeout=0)
        write_credentials(tmp_path, ACCOUNTS)   # mended before the one that follows reads it
        reloads.turns_until_idle()
    assert reloads.loaded == [ACCOUNTS]
    assert [r.getMessage() for r in caplog.records] == [
        f"accounts not reloaded, the old ones stay: {path}:{LINES_PER_SLICE * 2 + 1}: "
        "expected '<username> <password>'"]


def test_whoever_asked_is_told_how_the_reload_that_read_the_file_after_its_asking_ended(tmp_path, reloads):
    told = []
    write_credentials(tmp_path, big_accounts())
    reloads.reload.request(lambda why: told.append(("first", why)))
    reloads.loop.run_once(timeout=0)   # under way
    reloads.reload.request(lambda why: told.append(("second", why)))
    reloads.reload.request(lambda why: told.append(("third", why)))   # coalesced with the second
    (tmp_path / "credentials.txt").write_text("broken line here\n")   # what the one that follows reads
    reloads.turns_until_idle()
    assert told[0] == ("first", None) and [name for name, _ in told[1:]] == ["second", "third"]
    assert all(why.endswith("expected '<username> <password>'") for _, why in told[1:])
    (tmp_path / "credentials.txt").unlink()
    reloads.reload.request(lambda why: told.append(("gone", why)))   # told at once: nothing to read
    assert told[-1][0] == "gone" and "credentials file not found" in told[-1][1]
    assert reloads.loaded == [big_accounts()]


def test_a_file_gone_is_logged_and_nothing_handed_on(tmp_path, reloads, caplog):
    with caplog.at_level(logging.ERROR, logger="reactor.server.reload"):
        reloads.reload.request()
        reloads.turns_until_idle()
    assert reloads.loaded == [] and "credentials file not found" in caplog.text


@pytest.mark.e2e   # starts the real server
def test_the_real_server_reloads_20000_hashed_accounts_in_slices_while_a_user_chats(tmp_path):
    srv = ServerProcess(tmp_path, accounts={**ACCOUNTS, **big_accounts(first=1)})
    try:
        hans, yoda = srv.client(), srv.client()
        hans.login("hans")
        yoda.login("yoda")
        write_credentials(tmp_path, {**ACCOUNTS, **big_accounts()})   # user0 added
        srv.proc.send_signal(signal.SIGHUP)
        hans.send({"type": "message", "to": "yoda", "text": "during the reload"})
        yoda.until("message", text="during the reload")
        wait_for(lambda: "accounts reloaded: 1 added" in srv.log(), what="the reload")
        slices = math.ceil((BIG + len(ACCOUNTS) + 1) / LINES_PER_SLICE)
        assert f"credentials.txt parsed in {slices} slices" in srv.log()
        newcomer = srv.client()
        newcomer.login("user0", "pw", listen=False)
    finally:
        assert srv.stop() == 0
