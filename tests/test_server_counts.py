"""The server's rules count what they decide, where they decide it (``ChatServer.counts``, the metrics' counts):
messages relayed, refused by reason, broadcasts, delivered from storage, logins by outcome, lockouts; and the
mail part's running totals of what is kept. Injected time, no host."""
import pytest

from reactor.ops.catalog import ChatCounts
from reactor.protocol import ErrorCode
from reactor.server.effects import KeepMessage
from tests.support import World, msg, of_type

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


def refused(w):
    counts = w.s.counts.messages_refused
    return {name: counts.get(name) for name in counts.__slots__ if counts.get(name)}


def test_a_relayed_message_is_counted_once_per_message_and_a_broadcast_once():
    w = World(rate=None)
    for user in ("yoda", "luke", "leia"):
        w.login(user)
    for i in range(3):
        assert w.to(w.send("yoda", msg("luke", f"hi {i}")), "luke")
    w.send("yoda", {"type": "broadcast", "text": "to all"})
    counts = w.s.counts
    assert (counts.messages_relayed, counts.broadcasts, counts.messages_stored) == (3, 1, 0)
    assert refused(w) == {}


def test_refusals_are_counted_by_the_reason_the_sender_hears():
    w = World(rate=1.0, burst=1, queue_cap=1, max_text=10)
    w.login("yoda")
    w.login("luke")
    w.send("luke", {"type": "block", "user": "yoda"})
    for frame in (msg("luke", "a\x1bb"), msg("nobody", "x"), msg("yoda", "me"), msg("leia", "x" * 11),
                  msg("luke", "blocked"), {"type": "broadcast", "text": "\x07"},
                  {"type": "broadcast", "text": "y" * 11}):
        assert w.to(w.send("yoda", frame), "yoda")[0]["type"] == "error"
    assert refused(w) == {"control_characters": 2, "invalid_user": 1, "other": 1, "too_long": 2, "blocked": 1}
    assert w.to(w.send("yoda", msg("leia", "kept")), "yoda") == [{"type": "stored", "to": "leia"}]
    assert w.to(w.send("yoda", msg("leia", "no room")), "yoda")[0]["code"] == ErrorCode.QUEUE_FULL
    assert w.to(w.send("yoda", {"type": "broadcast", "text": "too fast"}), "yoda")[0]["code"] == \
        ErrorCode.RATE_LIMITED
    assert refused(w)["queue_full"] == 1 and refused(w)["rate_limited"] == 1
    w.send("luke", {"type": "block", "user": "hans"})   # (a block refused for tokens is no message refused)
    w.send("luke", {"type": "unblock", "user": "hans"})
    w.send("luke", {"type": "block", "user": "vader"})
    assert refused(w)["rate_limited"] == 1


def test_a_sender_over_its_quota_and_a_store_that_is_full_count_their_refusals():
    w = World(rate=None, sender_quota=300)
    w.login("yoda")
    assert w.to(w.send("yoda", msg("leia", "x" * 100)), "yoda") == [{"type": "stored", "to": "leia"}]
    assert w.to(w.send("yoda", msg("leia", "y" * 100)), "yoda")[0]["code"] == ErrorCode.QUOTA_EXCEEDED
    [change] = of_type(w.send("yoda", msg("hans", "z")), KeepMessage)
    assert w.sends(w.s.not_stored(change, 0.0))[0].frame["code"] == ErrorCode.STORE_FULL
    assert refused(w) == {"quota_exceeded": 1, "store_full": 1}


def test_the_mail_part_keeps_running_totals_of_what_is_kept_and_counts_what_it_delivers():
    w = World(rate=None, offline=[(1, "luke", "hans", "héllo"), (2, "luke", "leia", "abc")])
    mail = w.s.mail
    assert (mail.kept, mail.kept_bytes) == (2, 6 + 3)
    w.login("yoda")
    w.send("yoda", msg("leia", "four"))
    [change] = of_type(w.send("yoda", msg("hans", "gone")), KeepMessage)
    assert (mail.kept, mail.kept_bytes) == (4, 9 + 4 + 4)
    w.s.not_stored(change, 0.0)   # the store did not keep it: not counted as kept any more
    assert (mail.kept, mail.kept_bytes) == (3, 13)
    w.login("luke")
    assert w.s.counts.messages_delivered_from_storage == 2
    w.send("luke", {"type": "ack", "ids": [1, 2]})
    assert (mail.kept, mail.kept_bytes) == (1, 4)


def test_logins_are_counted_by_outcome_and_lockouts_by_cause():
    w = World(block_duration=60.0)
    w.login("yoda")
    conn = w.connect()
    w.username(conn, "nobody")
    w.username(conn, "vader")
    for _ in range(3):
        w.username(conn, "vader")
        w.password(conn, "wrong")
    late = w.connect()
    w.username(late, "vader")   # locked now
    counts = w.s.counts
    assert counts.logins_succeeded == 1
    assert {name: counts.logins_failed.get(name) for name in ("unknown_user", "wrong_password", "locked")} == \
        {"unknown_user": 1, "wrong_password": 3, "locked": 1}
    assert counts.lockouts.passwords == 1 and counts.lockouts.operator == 0


def test_a_stranger_closed_for_too_many_errors_is_a_failed_login():
    w = World(max_bad_frames=3)
    conn = w.connect()
    for _ in range(3):
        w.s.received(conn, {"type": "whoelse"}, 0.0)
    assert w.s.counts.logins_failed.too_many_errors == 1


def test_counts_given_to_the_rules_are_the_ones_they_bump():
    counts = ChatCounts()
    w = World(counts=counts, rate=None)
    w.login("yoda")
    assert counts.logins_succeeded == 1 and w.s.counts is counts
