"""The client's side of a message sent again: each message gets a ``ref``; one the server could not keep
(``store_full``) is tried again with it after a backoff, the user told that it waits and then how it ended;
every other refusal is final. On the sans-I/O logic (the server's side: test_resent_messages.py)."""
import pytest

from reactor.client.effects import Exit, Print, SetTimer, ToServer
from reactor.client.outbox import LATE_KEPT, RETRY_DELAYS
from tests.support import NONCE, PING, PONG, error, frames, logged_in


def stored(to, ref):
    return {"type": "stored", "to": to, "ref": ref}


def answers(c, *server_frames, now=1.0):
    """The effects of ``server_frames``, one after the other."""
    effects = []
    for frame in server_frames:
        effects += c.server_frame(frame, now)
    return effects


def prints(effects):
    return [e.text for e in effects if type(e) is Print]


STORE_FULL = error("store_full", command="message", user="hans")


def test_each_message_gets_a_ref_of_its_own():
    c = logged_in()
    assert frames(c.line("message hans one", 1))[0]["ref"] == f"{NONCE}.1"
    c.server_frame(PONG, 1)
    assert frames(c.line("message luke two", 1))[0]["ref"] == f"{NONCE}.2"
    other = logged_in(nonce=None)   # a random nonce of its own
    ref = frames(other.line("message hans one", 1))[0]["ref"]
    assert ref.endswith(".1") and len(ref) == 14 and ref[:-2] != NONCE


def test_a_message_the_server_could_not_keep_goes_again_with_its_ref_and_the_user_sees_it_wait():
    c = logged_in()
    c.line("message hans hi", 1.0)
    assert c.line("whoelse", 1.0) == []   # waits its turn
    assert prints(c.server_frame(STORE_FULL, 1.0)) == ["Message to hans not confirmed yet; trying again in 1 s"]
    assert c.server_frame(PONG, 1.0) == [SetTimer(("retry", f"{NONCE}.1"), 2.0)]   # whoelse still waits
    assert c.timer_fired(("retry", f"{NONCE}.1"), 2.0) == [
        ToServer({"type": "message", "to": "hans", "text": "hi", "ref": f"{NONCE}.1", "retry": True}),
        ToServer(PING)]
    assert c.timer_fired(("retry", f"{NONCE}.1"), 2.0) == []   # (once)
    assert c.server_frame(PONG, 2.5) == [Print("Message to hans sent"), ToServer({"type": "whoelse"}),
                                         ToServer(PING)]


def test_a_retry_confirmed_as_stored_says_so_once():
    c = logged_in()
    c.line("message hans hi", 1.0)
    answers(c, STORE_FULL, PONG)
    c.timer_fired(("retry", f"{NONCE}.1"), 2.0)
    assert prints(answers(c, stored("hans", f"{NONCE}.1"), PONG)) == [
        "hans is offline; the message will be delivered when they log in"]


def test_the_client_backs_off_then_gives_up_and_says_the_message_was_not_confirmed():
    c = logged_in()
    c.line("message hans hi", 0.0)
    c.line("whoelse", 0.0)
    now, waits = 0.0, []
    for _ in RETRY_DELAYS:
        waits += prints(c.server_frame(STORE_FULL, now))
        [timer] = c.server_frame(PONG, now)
        now = timer.when
        assert [f.get("retry") for f in frames(c.timer_fired(timer.key, now))] == [True, None]
    assert waits == [f"Message to hans not confirmed yet; trying again in {d:g} s" for d in RETRY_DELAYS]
    assert now == sum(RETRY_DELAYS)
    assert prints(c.server_frame(STORE_FULL, now)) == [
        "Error. Message to hans not confirmed: the server cannot keep messages right now"]
    assert frames(c.server_frame(PONG, now)) == [{"type": "whoelse"}, PING]   # the next line goes


@pytest.mark.parametrize("refusal, words", [
    (error("blocked_by_recipient", user="hans"),
     "Your message could not be delivered as the recipient has blocked you"),
    (error("queue_full", user="hans"), "Error. hans has too many messages waiting; yours was not kept"),
    (error("quota_exceeded", quota=10),
     "Error. Too many of your messages wait for offline users; this one was not kept"),
    (error("rate_limited", command="message", retry=3), "Error. You are sending too fast; try again in 3 s"),
    (error("store_full", command="block", user="hans"),   # (not about the message)
     "Error. The server cannot keep blocks right now; hans is not blocked"),
])
def test_a_refusal_for_good_is_shown_and_not_tried_again(refusal, words):
    c = logged_in()
    c.line("message hans hi", 1.0)
    assert prints(c.server_frame(refusal, 1.0)) == [words]
    assert c.server_frame(PONG, 1.0) == []
    assert frames(c.line("whoelse", 1.0)) == [{"type": "whoelse"}, PING]


def test_a_session_that_ends_while_a_message_waits_says_it_was_not_confirmed():
    c = logged_in()
    c.line("message hans hi", 1.0)
    answers(c, STORE_FULL, PONG)
    assert prints(c.server_frame({"type": "bye", "reason": "shutdown"}, 1.5)) == [
        "Error. Message to hans not confirmed", "Error. Server is shutting down"]
    assert c.timer_fired(("retry", f"{NONCE}.1"), 2.0) == []


def test_a_message_confirmed_at_once_says_nothing_more():
    c = logged_in()
    c.line("message hans hi", 1.0)
    assert c.server_frame(PONG, 1.0) == []
    assert prints(c.server_frame({"type": "bye", "reason": "shutdown"}, 1.5)) == ["Error. Server is shutting down"]


# -- cluster mode: answers after the pong, naming the ref -------------------------------------------------------

def late(code="store_full", ref=f"{NONCE}.1", **fields):
    """An answer that comes after its message's pong (cluster mode: the user is on another node)."""
    if code in ("delivered", "stored"):
        return {"type": code, "to": "hans", "ref": ref}
    return error(code, **({"command": "message", "user": "hans"} if code == "store_full" else {}), **fields, ref=ref)


def test_a_late_store_full_sends_the_message_again_and_the_typed_lines_wait_for_it():
    c = logged_in()
    c.line("message hans hi", 1.0)
    assert c.server_frame(PONG, 1.0) == []   # the next line may go: an answer may yet come
    assert c.server_frame(late(), 1.5) == [Print("Message to hans not confirmed yet; trying again in 1 s"),
                                            SetTimer(("retry", f"{NONCE}.1"), 2.5)]
    assert c.line("whoelse", 1.6) == []   # waits for the message
    assert c.timer_fired(("retry", f"{NONCE}.1"), 2.5) == [
        ToServer({"type": "message", "to": "hans", "text": "hi", "ref": f"{NONCE}.1", "retry": True}), ToServer(PING)]
    assert c.server_frame(PONG, 2.6) == [Print("Message to hans sent"), ToServer({"type": "whoelse"}),
                                         ToServer(PING)]


def test_a_late_store_full_while_another_command_waits_for_its_pong_is_timed_at_that_pong():
    c = logged_in()
    c.line("message hans hi", 1.0)
    c.server_frame(PONG, 1.0)
    assert frames(c.line("whoelse", 1.1)) == [{"type": "whoelse"}, PING]
    assert c.server_frame(late(), 1.2) == [Print("Message to hans not confirmed yet; trying again in 1 s")]
    c.server_frame({"type": "users", "names": ["hans"]}, 1.3)
    assert c.server_frame(PONG, 1.3) == [SetTimer(("retry", f"{NONCE}.1"), 2.3)]   # one ping out at a time
    assert c.line("whoelse", 1.4) == []
    assert [f.get("retry") for f in frames(c.timer_fired(("retry", f"{NONCE}.1"), 2.3))] == [True, None]


@pytest.mark.parametrize("answer, said", [("delivered", ["Message to hans sent"]),
                                          ("stored", ["hans is offline; the message will be delivered when they "
                                                      "log in"])])
def test_a_late_confirmation_while_the_message_waits_to_go_again_settles_it_and_nothing_goes(answer, said):
    """The engine carried out the first sending after all (its node had said store_full): its answer naming the
    ref comes before the retry is due, so the message does not go again, and the next line goes."""
    c = logged_in()
    c.line("message hans hi", 1.0)
    c.server_frame(PONG, 1.0)
    c.server_frame(late(), 1.5)
    c.line("whoelse", 1.6)
    shown = prints(c.server_frame(late(answer), 1.8))
    effects = c.timer_fired(("retry", f"{NONCE}.1"), 2.5)
    assert shown + prints(effects) == said
    assert frames(effects) == [{"type": "whoelse"}, PING]   # (no message again)
    assert c.timer_fired(("retry", f"{NONCE}.1"), 3.0) == []


def test_late_answers_settle_their_own_message_and_late_refusals_are_shown():
    c = logged_in()
    for n in (1, 2, 3):
        c.line(f"message hans {n}", 1.0)
        c.server_frame(PONG, 1.0)
    assert c.server_frame(late("delivered", ref=f"{NONCE}.2"), 1.1) == []
    assert prints(c.server_frame(late("queue_full", ref=f"{NONCE}.3", user="hans"), 1.1)) == [
        "Error. hans has too many messages waiting; yours was not kept"]
    # delivered: a store_full about its relay (from a node that missed the engine's reply) is not news
    assert c.server_frame(late(ref=f"{NONCE}.2"), 1.2) == []
    assert prints(c.server_frame(late(ref=f"{NONCE}.1"), 1.2)) == [   # still listened for: it goes again
        "Message to hans not confirmed yet; trying again in 1 s"]


def test_the_client_listens_for_the_late_answers_of_its_last_messages_only():
    c = logged_in()
    for n in range(LATE_KEPT + 1):
        c.line(f"message hans {n}", 1.0)
        c.server_frame(PONG, 1.0)
    assert prints(c.server_frame(late(ref=f"{NONCE}.1"), 1.1)) == [
        "Error. The server cannot keep messages right now; hans did not get yours"]
    assert prints(c.server_frame(late(ref=f"{NONCE}.2"), 1.1)) == [
        "Message to hans not confirmed yet; trying again in 1 s"]


def test_two_late_store_fulls_go_again_one_after_the_other_each_with_its_own_ping():
    c = logged_in()
    for n in (1, 2):
        c.line(f"message hans {n}", 1.0)
        c.server_frame(PONG, 1.0)
    assert c.server_frame(late(ref=f"{NONCE}.1"), 1.5)[-1] == SetTimer(("retry", f"{NONCE}.1"), 2.5)
    assert prints(c.server_frame(late(ref=f"{NONCE}.2"), 1.5)) == [
        "Message to hans not confirmed yet; trying again in 1 s"]   # (timed once the first has its pong)
    assert [f["ref"] for f in frames(c.timer_fired(("retry", f"{NONCE}.1"), 2.5))[:1]] == [f"{NONCE}.1"]
    assert c.server_frame(PONG, 2.6) == [Print("Message to hans sent"), SetTimer(("retry", f"{NONCE}.2"), 3.6)]
    assert frames(c.timer_fired(("retry", f"{NONCE}.2"), 3.6))[0]["text"] == "2"
    assert c.server_frame(PONG, 3.7) == [Print("Message to hans sent")]
    assert frames(c.line("whoelse", 3.8)) == [{"type": "whoelse"}, PING]


# -- with the rate limit's resend (a script) ---------------------------------------------------------------------

def test_a_retry_a_script_sends_again_after_the_rate_limit_keeps_its_ref_and_is_confirmed_once():
    c = logged_in(scripted=True)
    c.line("message hans hi", 1.0)
    answers(c, STORE_FULL, PONG)
    retry = {"type": "message", "to": "hans", "text": "hi", "ref": f"{NONCE}.1", "retry": True}
    assert frames(c.timer_fired(("retry", f"{NONCE}.1"), 2.0)) == [retry, PING]
    assert prints(c.server_frame(error("rate_limited", command="message", retry=1), 2.0)) == [
        "Sending too fast; trying again in 1 s"]
    assert c.server_frame(PONG, 2.0) == []   # the refusal's pong: the outbox still waits
    assert frames(c.timer_fired(("resend",), 3.0)) == [retry, PING]
    assert prints(c.server_frame(PONG, 3.0)) == ["Message to hans sent"]


def test_a_script_whose_message_was_never_confirmed_exits_1():
    c = logged_in(scripted=True)
    c.line("message hans hi", 0.0)
    now = 0.0
    for _ in RETRY_DELAYS:
        c.server_frame(STORE_FULL, now)
        [timer] = c.server_frame(PONG, now)
        now = timer.when
        c.timer_fired(timer.key, now)
    assert prints(c.server_frame(STORE_FULL, now)) == [
        "Error. Message to hans not confirmed: the server cannot keep messages right now"]
    c.server_frame(PONG, now)
    c.end_of_input(now)
    assert c.server_frame({"type": "bye", "reason": "logout"}, now)[-1] == Exit(1)
