"""Receipts on the server's sans-I/O logic (reactor/server/receipts.py): a client that says so in its hello is
handed live messages with their ref and says which it showed (``shown``); the sender, if online, gets ``read``
once for each, and for a stored message when its recipient acknowledges it. A ref never handed, said twice or
said by another session produces nothing, and what a session remembers is bounded. (The client's side:
test_client_receipts.py; a cluster's: test_cluster_server.py; the real processes: test_receipts_e2e.py.)"""
import pytest

from reactor.server.effects import ForgetMessages, KeepMessage, Send
from reactor.server.receipts import GENERATION, READ_PAGE, UNREAD_CAP
from tests.support import World, big_mailbox, deliver_all, error


def ref_msg(to, text, ref):
    return {"type": "message", "to": to, "text": text, "ref": ref}


def read(by, *refs):
    return {"type": "read", "by": by, "refs": list(refs)}


def shown(*refs):
    return {"type": "shown", "refs": list(refs)}


@pytest.fixture
def hy():
    """hans and yoda online; yoda's client sends receipts."""
    w = World(rate=None)
    w.login("hans")
    w.login("yoda", receipts=True)
    return w


def test_a_live_message_is_handed_with_its_ref_and_shown_tells_its_sender_once(hy):
    assert hy.send("hans", ref_msg("yoda", "hi", "h.1")) == [
        Send((hy.conn["yoda"],), {"type": "message", "from": "hans", "text": "hi", "ref": "h.1"})]
    assert hy.send("yoda", shown("h.1")) == [Send((hy.conn["hans"],), read("yoda", "h.1"))]
    assert hy.send("yoda", shown("h.1")) == []   # none twice


@pytest.mark.parametrize("ref", ["h.1", None], ids=["ref", "null-ref"])
def test_a_message_handed_to_a_client_with_receipts_is_in_the_history_and_gets_the_away_reply(ref):
    """The relay to a client that sends receipts is a live message like any: noted for the history, and its
    sender told its recipient is away (the real client always says it sends receipts)."""
    w = World(rate=None, history=True, wall_offset=1_700_000_000.0)
    w.login("hans")
    w.login("yoda", receipts=True)
    w.send("yoda", {"type": "away", "text": "meditating"})
    effects = w.send("hans", ref_msg("yoda", "hi", ref))
    kinds = [type(e).__name__ for e in effects]
    assert kinds == ["Send", "Remember", "Send"], effects
    assert effects[1].sender == "hans" and effects[1].text == "hi"
    assert effects[2] == Send((w.conn["hans"],), {"type": "away_reply", "user": "yoda", "text": "meditating"})


def test_what_a_turn_showed_is_told_in_one_frame_per_sender(hy):
    hy.login("luke")
    for ref in ("h.1", "h.2"):
        hy.send("hans", ref_msg("yoda", "hi", ref))
    hy.send("luke", ref_msg("yoda", "hey", "l.1"))
    assert hy.send("yoda", shown("h.2", "l.1", "h.1")) == [Send((hy.conn["hans"],), read("yoda", "h.2", "h.1")),
                                                          Send((hy.conn["luke"],), read("yoda", "l.1"))]


def test_a_client_without_receipts_gets_no_ref_and_its_shown_does_nothing():
    w = World()
    w.login("hans")
    w.login("yoda")
    assert w.to(w.send("hans", ref_msg("yoda", "hi", "h.1")), "yoda") == [
        {"type": "message", "from": "hans", "text": "hi"}]   # (the frame as before receipts)
    assert w.send("yoda", shown("h.1")) == []
    assert w.s.sessions.online["yoda"].unread is None


def test_a_message_without_a_ref_or_a_broadcast_gets_no_receipt(hy):
    assert hy.to(hy.send("hans", {"type": "message", "to": "yoda", "text": "hi"}), "yoda") == [
        {"type": "message", "from": "hans", "text": "hi"}]
    assert hy.to(hy.send("hans", {"type": "broadcast", "text": "all", "ref": "h.9"}), "yoda") == [
        {"type": "message", "from": "hans", "text": "all", "broadcast": True}]
    assert hy.s.sessions.online["yoda"].unread == {}


def test_a_ref_never_handed_or_handed_to_another_session_produces_nothing(hy):
    hy.login("luke", receipts=True)
    hy.send("hans", ref_msg("luke", "for luke", "h.1"))
    assert hy.send("yoda", shown("h.1", "made.up", "h.2")) == []   # luke's, and refs never sent
    assert hy.send("luke", shown("h.1")) == [Send((hy.conn["hans"],), read("luke", "h.1"))]


def test_no_receipt_for_a_message_handed_to_a_session_that_ended_before_it_said_shown(hy):
    hy.send("hans", ref_msg("yoda", "hi", "h.1"))
    hy.s.disconnected(hy.conn["yoda"], 1.0)
    hy.login("yoda", now=2.0, receipts=True)   # a new session: its client never showed h.1
    assert hy.send("yoda", shown("h.1"), 3.0) == []


def test_a_receipt_goes_to_the_senders_session_now_and_to_none_once_it_left(hy):
    hy.send("hans", ref_msg("yoda", "one", "h.1"))
    hy.send("hans", ref_msg("yoda", "two", "h.2"))
    hy.s.disconnected(hy.conn["hans"], 1.0)
    assert hy.send("yoda", shown("h.1"), 2.0) == []   # hans is offline: nobody to tell
    hy.login("hans", now=3.0)
    assert hy.send("yoda", shown("h.2"), 4.0) == [Send((hy.conn["hans"],), read("yoda", "h.2"))]


def test_a_stored_message_tells_its_sender_when_it_is_acknowledged_once(w):
    w.login("hans")
    w.send("hans", ref_msg("yoda", "kept", "h.1"))
    w.send("hans", {"type": "message", "to": "yoda", "text": "no ref"})
    w.login("yoda", now=1.0)   # (a client without receipts acknowledges its stored messages all the same)
    assert w.send("yoda", {"type": "ack", "ids": [1, 2]}, 2.0) == [
        ForgetMessages((1, 2)), Send((w.conn["hans"],), read("yoda", "h.1"))]
    assert w.send("yoda", {"type": "ack", "ids": [1, 2]}, 3.0) == []


def test_a_message_kept_behind_a_mailbox_on_its_way_tells_its_sender_when_acknowledged():
    w, _ = big_mailbox(40, "x" * 2000)   # more than one chunk: the mailbox is on its way after the login
    w.login("hans")
    w.login("yoda", receipts=True)
    effects = w.send("hans", ref_msg("yoda", "behind", "h.1"))
    (keep,) = [e for e in effects if type(e) is KeepMessage]
    assert keep.ref == "h.1" and w.to(effects, "hans") == []
    delivered = [f for chunk in deliver_all(w, w.s.writable(w.conn["yoda"], 0.0)) for f in chunk]
    assert delivered[-1]["id"] == keep.id and "ref" not in delivered[-1]   # (acknowledged by id)
    assert w.send("yoda", {"type": "ack", "ids": [keep.id]}) == [
        ForgetMessages((keep.id,)), Send((w.conn["hans"],), read("yoda", "h.1"))]


def test_the_receipts_of_a_big_mailbox_come_in_pages():
    count = READ_PAGE + 10
    w = World(offline=[(i, "yoda", "hans", "hi", None, None, f"h.{i}") for i in range(1, count + 1)])
    w.login("hans")
    w.login("yoda")
    effects = w.send("yoda", {"type": "ack", "ids": list(range(1, count + 1))})
    assert [f["refs"] for f in w.to(effects, "hans")] == [
        [f"h.{i}" for i in range(1, READ_PAGE + 1)], [f"h.{i}" for i in range(READ_PAGE + 1, count + 1)]]


def test_what_a_session_remembers_is_bounded_and_the_oldest_are_forgotten_first(hy):
    """A client that never says shown (or a flood of messages to it): at most UNREAD_CAP refs, the newest
    GENERATION (half) always among them."""
    sizes = []
    for i in range(4 * UNREAD_CAP):
        hy.send("hans", ref_msg("yoda", "hi", f"h.{i}"))
        yoda = hy.s.sessions.online["yoda"]
        unread = {**(yoda.unread_before or {}), **yoda.unread}
        sizes.append(len(unread))
        assert all(f"h.{n}" in unread for n in range(max(0, i + 1 - GENERATION), i + 1))
    assert max(sizes) == UNREAD_CAP
    last = 4 * UNREAD_CAP - 1
    assert hy.send("yoda", shown("h.0", f"h.{UNREAD_CAP}")) == []   # forgotten
    assert hy.send("yoda", shown(f"h.{last}", f"h.{last - 1}")) == [
        Send((hy.conn["hans"],), read("yoda", f"h.{last}", f"h.{last - 1}"))]


def test_a_flood_of_shown_keeps_nothing_and_tells_nobody(hy):
    hy.send("hans", ref_msg("yoda", "hi", "h.1"))
    refs = [f"flood.{i}" for i in range(3000)]
    for _ in range(100):
        assert hy.send("yoda", shown(*refs)) == []
    assert hy.s.sessions.online["yoda"].unread == {"h.1": "hans"}
    assert hy.send("yoda", shown("h.1", 7, None, ["h.1"], {"r": 1})) == [Send((hy.conn["hans"],), read("yoda", "h.1"))]


@pytest.mark.parametrize("between", [0, GENERATION - 1, GENERATION + 3])
def test_another_sender_cannot_take_over_a_ref_handed_and_not_yet_shown(hy, between):
    """However many messages came between (the ref in the newer or the older half of what is remembered)."""
    hy.login("luke")
    hy.send("hans", ref_msg("yoda", "hi", "same.1"))
    for i in range(between):
        hy.send("hans", ref_msg("yoda", "filler", f"f.{i}"))
    hy.send("luke", ref_msg("yoda", "me too", "same.1"))   # (a client's refs hold a random nonce: a copy is hostile)
    assert hy.send("yoda", shown("same.1")) == [Send((hy.conn["hans"],), read("yoda", "same.1"))]


@pytest.mark.parametrize("refs", [None, "h.1", {"h.1": 1}, 3])
def test_shown_needs_a_list(hy, refs):
    assert hy.to(hy.send("yoda", {"type": "shown", "refs": refs}), "yoda") == [
        error("bad_frame", detail="'refs' must be a list")]


@pytest.mark.parametrize("ref", ["", "x" * 65, 17, ["h.1"], {"h": 1}, True])
def test_a_bad_ref_to_a_client_with_receipts_is_a_bad_frame_and_nothing_is_sent(hy, ref):
    effects = hy.send("hans", ref_msg("yoda", "hi", ref))
    assert hy.to(effects, "yoda") == [] and hy.to(effects, "hans")[0]["code"] == "bad_frame"
    assert hy.s.sessions.online["yoda"].unread == {}


def test_a_ref_that_is_not_printable_ascii_is_only_handed_on_live(hy):
    """Checked only for what the relay uses (a string of at most 64 characters); it goes on as JSON."""
    for ref in ("tab\there", "caf\u00e9"):
        assert hy.to(hy.send("hans", ref_msg("yoda", "hi", ref)), "yoda") == [
            {"type": "message", "from": "hans", "text": "hi", "ref": ref}]
        assert hy.send("yoda", shown(ref)) == [Send((hy.conn["hans"],), read("yoda", ref))]


def test_shown_is_not_the_users_activity(hy):
    hy.send("hans", ref_msg("yoda", "hi", "h.1"), 1.0)
    yoda = hy.s.sessions.online["yoda"]
    before = yoda.last_active
    hy.send("yoda", shown("h.1"), 5.0)
    assert yoda.last_active == before


def test_shown_before_the_login_is_not_logged_in():
    w = World()
    conn = w.connect(receipts=True)
    assert w.send(conn, shown("h.1")) == [Send((conn,), error("not_logged_in"))]
