"""Per-user limits on the sans-I/O logic with an injected clock: the token bucket and the quota of kept bytes."""
import pytest

from reactor.framing import encode
from reactor.server.effects import KeepMessage, Send
from reactor.server.limits import BURST, RATE, RATE_UNIT, STORED_OVERHEAD
from tests.support import EMOJI, World, error, msg, sends

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)


def bcast(text):
    return {"type": "broadcast", "text": text}


def limited(command, retry):
    return error("rate_limited", command=command, retry=retry)


def online(*users, **kw):
    w = World(**kw)
    for user in users:
        w.login(user)
    return w


# -- the token bucket ------------------------------------------------------------------

def test_a_burst_passes_then_the_next_message_waits_for_a_token():
    w = online("hans", "yoda", rate=2.0, burst=3)
    for i in range(3):
        assert w.to(w.send("hans", msg("yoda", f"m{i}"), now=0.0), "yoda") == [
            {"type": "message", "from": "hans", "text": f"m{i}"}]
    effects = w.send("hans", msg("yoda", "one too many"), now=0.0)
    assert w.to(effects, "hans") == [limited("message", 1)] and w.to(effects, "yoda") == []
    assert w.to(w.send("hans", msg("yoda", "still early"), now=0.49), "hans") == [limited("message", 1)]
    assert w.to(w.send("hans", msg("yoda", "on time"), now=0.5), "yoda")[0]["text"] == "on time"


def test_the_sustained_rate_is_the_rate_whatever_the_sender_tries():
    w = online("hans", "yoda", rate=5.0, burst=20)
    delivered = 0
    for step in range(1000):   # a frame every 10 ms for 10 s
        effects = w.send("hans", msg("yoda", "x"), now=step * 0.01)
        delivered += len(w.to(effects, "yoda"))
    assert delivered == 20 + 50 - 1 or delivered == 20 + 50   # the burst, then 5 a second


def test_retry_says_whole_seconds_until_it_would_pass():
    w = online("hans", "yoda", rate=0.25, burst=1)
    w.send("hans", msg("yoda", "first"), now=0.0)
    assert w.to(w.send("hans", msg("yoda", "x"), now=0.0), "hans") == [limited("message", 4)]
    assert w.to(w.send("hans", msg("yoda", "x"), now=2.5), "hans") == [limited("message", 2)]
    assert w.to(w.send("hans", msg("yoda", "x"), now=3.9), "hans") == [limited("message", 1)]


def test_a_bucket_belongs_to_the_user_so_logging_in_again_refills_nothing():
    w = online("hans", "yoda", rate=1.0, burst=2)
    w.send("hans", msg("yoda", "a"))
    w.send("hans", msg("yoda", "b"))
    w.send("hans", {"type": "logout"})
    w.login("hans")
    assert w.to(w.send("hans", msg("yoda", "c")), "hans") == [limited("message", 1)]


def test_each_user_has_a_bucket_of_its_own():
    w = online("hans", "yoda", "luke", rate=1.0, burst=1)
    w.send("hans", msg("yoda", "a"))
    assert w.to(w.send("hans", msg("yoda", "b")), "hans") == [limited("message", 1)]
    assert w.to(w.send("luke", msg("yoda", "mine")), "yoda")[0]["text"] == "mine"


def test_a_message_costs_one_token_per_started_unit_of_its_text_on_the_wire():
    w = online("hans", "yoda", rate=1.0, burst=3, max_text=2 * RATE_UNIT)
    assert w.to(w.send("hans", msg("yoda", "x" * RATE_UNIT)), "yoda")   # one token: two left
    assert w.to(w.send("hans", msg("yoda", "x" * (2 * RATE_UNIT))), "yoda")   # two: none left
    assert w.to(w.send("hans", msg("yoda", "x" * (RATE_UNIT + 1))), "hans") == [limited("message", 2)]


def test_the_biggest_message_costs_four_tokens():
    w = online("hans", "yoda", rate=1.0, burst=6)
    big = EMOJI * 4096   # 16,384 bytes on the wire (UTF-8)
    assert len(encode({"text": big})) == 4 * 4096 + len('{"text":""}\n')
    assert w.to(w.send("hans", msg("yoda", big)), "yoda")[0]["text"] == big
    refused = w.to(w.send("hans", msg("yoda", big)), "hans")
    assert refused[0]["code"] == "rate_limited" and refused[0]["retry"] >= 2   # at most 2 left, 4 due


def test_a_message_bigger_than_the_burst_passes_once_the_bucket_is_full():
    w = online("hans", "yoda", rate=1.0, burst=2)
    assert w.to(w.send("hans", msg("yoda", EMOJI * 4096)), "yoda")   # costs 4, taken as 2
    assert w.to(w.send("hans", msg("yoda", "x")), "hans") == [limited("message", 1)]


def test_a_broadcast_costs_what_a_message_does_and_a_refused_one_reaches_nobody():
    w = online("hans", "yoda", "luke", rate=1.0, burst=2)
    effects = w.send("hans", bcast("x" * (RATE_UNIT // 2 + 1) + EMOJI * 600))   # over one unit: two tokens
    assert w.to(effects, "yoda") == w.to(effects, "luke") != []
    effects = w.send("hans", bcast("again"))
    assert sends(effects) == [Send((w.conn["hans"],), limited("broadcast", 1))]


def test_refused_frames_spend_nothing():
    w = online("hans", "yoda", rate=1.0, burst=1)
    for frame in (msg("nobody", "x"), msg("hans", "x"), msg("yoda", "x" * 5000), bcast("x" * 5000),
                  {"type": "block", "user": "hans"}, {"type": "startprivate", "user": "nobody"}):
        assert w.to(w.send("hans", frame), "hans")[0]["code"] != "rate_limited"
    assert w.to(w.send("hans", msg("yoda", "the token is still there")), "yoda")


@pytest.mark.parametrize("frame, command, done", [
    ({"type": "block", "user": "luke"}, "block", ("hans", {"type": "blocked", "user": "luke"})),
    ({"type": "unblock", "user": "leia"}, "unblock", ("hans", {"type": "unblocked", "user": "leia"})),
    ({"type": "startprivate", "user": "yoda"}, "startprivate", ("yoda", {"type": "private_request", "from": "hans"})),
])
def test_blocks_and_private_requests_spend_a_token(frame, command, done):
    w = World(rate=1.0, burst=1, blocks=[("hans", "leia")])
    w.login("hans")
    w.login("yoda")
    w.send("hans", msg("yoda", "the token"))
    effects = w.send("hans", frame)
    assert effects == [Send((w.conn["hans"],), limited(command, 1))]   # and no change to store
    # nothing done: once the token is back the same frame does its work (not already_blocked, not_blocked
    # or private_pending, as it would be had the refused one been carried out)
    user, reply = done
    assert w.to(w.send("hans", frame, now=1.0), user) == [reply]


def test_no_rate_means_no_limit():
    w = online("hans", "yoda", rate=None)
    assert all(w.to(w.send("hans", msg("yoda", str(i))), "yoda") for i in range(1000))


def test_with_the_defaults_one_flooder_cannot_fill_a_readers_output_buffer():
    """What one user can push at one reader in T seconds is bounded by (burst + rate x T) units: far below
    the 1 MiB a reader may have unread before it counts as not reading, even for a reader that reads nothing
    for the 30 s the flood lasts (a reader that takes 21 KB/s is never behind)."""
    w = online("hans", "yoda", "luke")
    biggest = EMOJI * 4096
    pushed = 0
    for step in range(3000):   # every 10 ms for 30 s, the two commands in turn
        now = step * 0.01
        frame = bcast(biggest) if step % 2 else msg("yoda", biggest)
        pushed += sum(len(encode(f)) for f in w.to(w.send("hans", frame, now=now), "yoda"))
    assert pushed <= (BURST + RATE * 30) * (RATE_UNIT + 100)
    assert pushed < 1 << 20


# -- the quota of kept bytes --------------------------------------------------------------

def kept(effects):
    return [e for e in effects if type(e) is KeepMessage]


def test_the_quota_counts_a_senders_kept_bytes_across_recipients():
    quota = 3 * (STORED_OVERHEAD + 100)
    w = online("hans", sender_quota=quota, rate=None)
    for to in ("yoda", "luke", "leia"):
        assert kept(w.send("hans", msg(to, "x" * 100)))
    assert w.s.kept_by("hans") == quota
    effects = w.send("hans", msg("vader", "x"))
    assert sends(effects) == [Send((w.conn["hans"],), error("quota_exceeded", quota=quota))] and not kept(effects)
    assert w.stored("vader") == []


def test_utf8_bytes_count_not_characters():
    w = online("hans", rate=None, sender_quota=STORED_OVERHEAD + 8)
    assert kept(w.send("hans", msg("yoda", EMOJI * 2)))   # 8 bytes of UTF-8
    assert w.to(w.send("hans", msg("yoda", "")), "hans") == [error("quota_exceeded", quota=STORED_OVERHEAD + 8)]


def test_acknowledged_messages_give_their_bytes_back():
    w = online("hans", rate=None, sender_quota=2 * (STORED_OVERHEAD + 10))
    w.send("hans", msg("yoda", "a" * 10))
    w.send("hans", msg("yoda", "b" * 10))
    assert w.to(w.send("hans", msg("yoda", "c")), "hans")[0]["code"] == "quota_exceeded"
    w.login("yoda")
    first = w.stored("yoda")[0][0]
    w.send("yoda", {"type": "ack", "ids": [first, first, 999]})
    assert w.s.kept_by("hans") == STORED_OVERHEAD + 10
    assert kept(w.send("hans", msg("luke", "c" * 10)))


def test_other_senders_still_reach_a_user_the_flooder_wrote_to():
    w = online("hans", "luke", rate=None, sender_quota=STORED_OVERHEAD + 10)
    w.send("hans", msg("yoda", "x" * 10))
    assert w.to(w.send("hans", msg("yoda", "more")), "hans")[0]["code"] == "quota_exceeded"
    assert w.to(w.send("luke", msg("yoda", "hello")), "luke") == [{"type": "stored", "to": "yoda"}]


def test_a_message_the_store_could_not_keep_gives_its_bytes_back():
    w = online("hans", rate=None, sender_quota=STORED_OVERHEAD + 10)
    [change] = kept(w.send("hans", msg("yoda", "x" * 10)))
    w.s.not_stored(change, 0.0)
    assert w.s.kept_by("hans") == 0
    assert kept(w.send("hans", msg("yoda", "y" * 10)))


def test_messages_kept_before_a_restart_count_against_the_quota():
    w = World(rate=None, sender_quota=STORED_OVERHEAD + 10, offline=[(1, "yoda", "hans", "x" * 10, 5.0)])
    w.login("hans")
    assert w.s.kept_by("hans") == STORED_OVERHEAD + 10
    assert w.to(w.send("hans", msg("yoda", "x")), "hans")[0]["code"] == "quota_exceeded"


def test_a_refused_message_spends_no_token_and_a_kept_one_does():
    w = online("hans", "luke", rate=1.0, burst=1, sender_quota=STORED_OVERHEAD)
    assert w.to(w.send("hans", msg("yoda", "x")), "hans")[0]["code"] == "quota_exceeded"
    assert kept(w.send("hans", msg("yoda", "")))
    assert w.to(w.send("hans", msg("luke", "hi")), "hans")[0]["code"] == "rate_limited"


def test_a_message_delivered_at_once_counts_nothing_against_the_quota():
    w = online("hans", "yoda", rate=None, sender_quota=STORED_OVERHEAD)
    assert w.to(w.send("hans", msg("yoda", "x" * 100)), "yoda")
    assert w.s.kept_by("hans") == 0


# -- the flags -------------------------------------------------------------------------

def test_the_limits_are_on_by_default_and_zero_turns_each_off():
    import server_main
    on = server_main.parse_args(["0", "1", "1"])
    assert (on.rate, on.burst, on.sender_quota, on.state_max_bytes) == (RATE, BURST, 1 << 20, 1 << 30)
    off = server_main.parse_args(["0", "1", "1", "--rate", "0", "--sender-quota", "0", "--state-max-bytes", "0"])
    assert (off.rate, off.sender_quota, off.state_max_bytes) == (None, None, None)
    given = server_main.parse_args(["0", "1", "1", "--rate", "0.5", "--burst", "3", "--sender-quota", "64K"])
    assert (given.rate, given.burst, given.sender_quota) == (0.5, 3, 64 << 10)


@pytest.mark.parametrize("flag, value", [("--rate", "-1"), ("--rate", "nan"), ("--rate", "inf"), ("--rate", "fast"),
                                         ("--burst", "0"), ("--burst", "1.5"), ("--sender-quota", "-1"),
                                         ("--sender-quota", "1.5M")])
def test_a_bad_limit_is_a_usage_error(flag, value, capsys):
    import server_main
    with pytest.raises(SystemExit) as exit_:
        server_main.parse_args(["0", "1", "1", flag, value])
    assert exit_.value.code == 2 and flag in capsys.readouterr().err
