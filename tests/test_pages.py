"""Long lists of names in pages: every frame the server builds fits in what its client takes, at any size.

The pages themselves (reactor/server/pages.py), then the rules that list names: the answers to ``whoelse``
and ``whoelsesince``, presence notices when many come or go at once, and (version 3) who else is online
right after the welcome; then the client, which takes an answer in pages and completes names from the
login on. (At 10,000 users against the real processes: tests/test_big_chat_e2e.py.)"""
import random

import pytest

from reactor.client.effects import Print
from reactor.framing import MAX_FRAME, encode
from reactor.protocol import MAX_USERNAME
from reactor.server.effects import Send, SendBatch
from reactor.server.pages import PAGE_BYTES, page_bytes, page_starts, pages, users_frames
from reactor.server.presence import TELL_AT
from tests.support import PONG, World, logged_in

EMOJI = "\U0001F600"


def longest(i, fill):
    """A name of MAX_USERNAME characters: ``fill`` and the number ``i``."""
    number = f"{i:05d}"
    return fill * (MAX_USERNAME - len(number)) + number


WORST = {   # names as long on the wire as names can be
    "quotes": lambda i: longest(i, '"'),          # each escaped: 2 bytes
    "backslashes": lambda i: longest(i, "\\"),    # each escaped: 2 bytes
    "emoji": lambda i: longest(i, EMOJI),         # 4 bytes of UTF-8 each
    "cyrillic": lambda i: longest(i, "ж"),
    "cjk": lambda i: longest(i, "用"),
    "short": lambda i: f"u{i}",
}


def received(effects, conn):
    """Every frame ``effects`` send to ``conn``, batches included, in order."""
    out = []
    for e in effects:
        if type(e) is Send and conn in e.conns:
            out.append(e.frame)
        elif type(e) is SendBatch and conn in e.conns:
            out += e.frames
    return out


def fits(frames):
    """Each frame encodes to at most MAX_FRAME bytes, newline excluded, as the client takes it."""
    sizes = [len(encode(f)) - 1 for f in frames]
    assert max(sizes) <= MAX_FRAME, sizes
    return True


# -- the pages ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", WORST)
def test_pages_keep_every_name_in_order_and_each_fits_in_a_frame(kind):
    names = [WORST[kind](i) for i in range(10_000 if kind == "short" else 3000)]
    cut = pages(names)
    assert [name for page in cut for name in page] == names and all(cut)
    frames = users_frames(names)
    assert [f["names"] for f in frames] == cut
    assert [f.get("more") for f in frames] == [True] * (len(cut) - 1) + [None]
    assert fits(frames)
    assert fits([{"type": "presence", "users": page, "online": False} for page in cut])
    assert len(cut) > 1


def test_a_page_is_as_full_as_the_names_allow():
    names = [f"user{i:05d}" for i in range(20_000)]   # 12 bytes each on the wire, 3 of them counted as the frame's
    cut = pages(names)
    assert all(len(page) == PAGE_BYTES // (len(names[0]) + 3) for page in cut[:-1])
    sizes = [len(encode({"type": "users", "names": page, "more": True})) for page in cut[:-1]]
    assert all(PAGE_BYTES - 15 < size < PAGE_BYTES + 50 for size in sizes), sizes   # (its fields: 40 bytes)


def test_the_cuts_are_where_counting_name_by_name_puts_them():
    rng = random.Random(21)
    alphabet = ["a", "ж", "用", EMOJI, '"', "\\", " ", "\u2028"]
    for _ in range(60):
        names = ["".join(rng.choices(alphabet, k=rng.randint(1, MAX_USERNAME))) for _ in range(rng.randint(0, 2000))]
        starts, size = [0], 0   # name by name: a name that would take a page over PAGE_BYTES starts the next
        for index, name in enumerate(names):
            if size and size + page_bytes(name) > PAGE_BYTES:
                starts.append(index)
                size = 0
            size += page_bytes(name)
        assert page_starts(names) == starts


def test_a_name_longer_than_a_page_which_no_account_has_is_alone_on_its_page():
    names = ["a"] * 200 + ["b" * 40_000] + ["c"] * 200
    assert page_starts(names) == [0, 200, 201]


def test_a_short_list_is_one_page_of_itself_and_no_names_one_empty_answer():
    names = [longest(i, EMOJI) for i in range(100)]
    assert pages(names)[0] is names and len(pages(names)) == 1
    assert users_frames([]) == [{"type": "users", "names": []}]
    assert users_frames(["yoda"]) == [{"type": "users", "names": ["yoda"]}]


# -- the rules that list names ----------------------------------------------------------------------------

def crowd(count, version=2):
    """A World in turns with hans (speaking ``version``) and ``count`` users of the longest Cyrillic names
    online; the names."""
    names = [longest(i, "ж") for i in range(count)]
    w = World(accounts={"hans": "pw", "yoda": "pw", **{name: "pw" for name in names}}, rate=None)
    assert w.s.end_turn(0.0) == []
    w.login("hans", version=version, password="pw")
    for name in names:
        w.login(name, version=2, password="pw")
    w.s.end_turn(0.0)
    return w, names


def test_whoelse_and_whoelsesince_answer_a_big_chat_in_pages_each_a_frame_the_client_takes():
    w, names = crowd(1200)   # 1,200 x 131 bytes: 157 KB of names, once 943 KB as escapes
    frames = received(w.send("hans", {"type": "whoelse"}), w.conn["hans"])
    assert [name for f in frames for name in f["names"]] == sorted(names)
    assert [f.get("more") for f in frames] == [True] * (len(frames) - 1) + [None] and len(frames) > 1
    assert fits(frames)
    everyone_logs_out(w, names[:600])
    frames = received(w.send("hans", {"type": "whoelsesince", "seconds": 60}), w.conn["hans"])
    assert [name for f in frames for name in f["names"]] == sorted(names)   # logged out within the window
    assert fits(frames)


def everyone_logs_out(w, names):
    """Each of ``names`` logs out in one turn of the server's loop; the effects."""
    effects = []
    for name in names:
        effects += w.send(name, {"type": "logout"})
    return effects + w.s.end_turn(0.0)


@pytest.mark.parametrize("version", [1, 2])
def test_a_mass_logout_reaches_everyone_else_in_frames_they_take(version):
    w, names = crowd(1200, version)
    frames = received(everyone_logs_out(w, names), w.conn["hans"])
    assert fits(frames)
    assert [u for f in frames for u in f.get("users", [f.get("user")])] == names
    assert {f["online"] for f in frames} == {False} and len(frames) == 1200 if version == 1 else len(frames) > 4


def test_in_a_mass_logout_nobody_waits_for_more_than_tell_at_changes():
    w, names = crowd(TELL_AT + 200)
    effects = []
    for at, name in enumerate(names):
        step = w.send(name, {"type": "logout"})
        told = [u for f in received(step, w.conn["hans"]) for u in f["users"]]
        assert told == (names[:TELL_AT] if at == TELL_AT - 1 else []), at   # the TELL_AT-th tells them at once
        effects += step
        leaver = [f for f in received(step, w.conn[name]) if f["type"] == "presence"]   # told before its bye
        assert [u for f in leaver for u in f["users"]] == names[TELL_AT if at >= TELL_AT else 0:at]
    assert [u for f in received(w.s.end_turn(0.0), w.conn["hans"]) for u in f["users"]] == names[TELL_AT:]


def test_a_storm_in_one_turn_tells_each_newcomer_what_came_after_it_in_pages():
    names = [longest(i, "用") for i in range(1500)]   # one run of logins over several pages
    w = World(accounts={name: "pw" for name in names}, rate=None)
    assert w.s.end_turn(0.0) == []
    effects = []
    for name in names:
        effects += w.login(name, version=2, password="pw")
    effects += w.s.end_turn(0.0)
    for at in (0, 1, 171, 172, 173, 600, 998, 999, 1000, 1498, 1499):   # a page: 172 of these names (185 bytes)
        frames = [f for f in received(effects, w.conn[names[at]]) if f["type"] == "presence"]
        assert [u for f in frames for u in f["users"]] == names[at + 1:]
        assert not frames or fits(frames) and all(f["users"] for f in frames)


def test_a_user_some_leavers_had_blocked_hears_of_the_others_in_pages():
    w, names = crowd(1200)
    w.send(names[5], {"type": "block", "user": "hans"})
    frames = received(everyone_logs_out(w, names), w.conn["hans"])
    assert fits(frames)
    assert [u for f in frames for u in f["users"]] == names[:5] + names[6:]


# -- who else is online, right after the welcome (version 3) ---------------------------------------------------

def roster(frames):
    """The users the ``online`` frames among ``frames`` list, and that they come right after the welcome."""
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "welcome" and "online" not in kinds[kinds.count("online") + 1:]
    return [u for f in frames if f["type"] == "online" for u in f["users"]]


def test_a_version_3_login_is_told_who_else_is_online_right_after_the_welcome_and_older_ones_are_not():
    w = World()
    w.login("hans")
    w.login("luke", version=2)
    for version in (1, 2):
        assert roster(w.to(w.login("leia", version=version), "leia")) == []
        w.send("leia", {"type": "logout"})
    assert sorted(roster(w.to(w.login("yoda", version=3), "yoda"))) == ["hans", "luke"]
    w.send("luke", {"type": "block", "user": "vader"})   # luke hides from vader, as from its presence
    assert sorted(roster(w.to(w.login("vader", version=3), "vader"))) == ["hans", "yoda"]


def test_nobody_else_online_is_no_online_frame():
    w = World()
    assert [f["type"] for f in w.to(w.login("yoda", version=3), "yoda")] == ["welcome"]


def test_who_else_is_online_in_a_big_chat_comes_in_pages():
    w, names = crowd(1200)
    effects = w.login("yoda", version=3, password="pw")
    frames = received(effects, w.conn["yoda"])
    assert sorted(roster(frames)) == sorted([*names, "hans"])
    assert fits(frames) and [f["type"] for f in frames].count("online") == 5


def test_in_a_storm_each_login_and_the_presence_it_is_told_after_add_up_to_who_is_online():
    names = [longest(i, "ж") for i in range(400)]
    w = World(accounts={name: "pw" for name in names}, rate=None)
    assert w.s.end_turn(0.0) == []
    told: dict[str, set[str]] = {}
    effects = []
    for turn in range(4):   # logins and logouts mixed in each turn, as in a storm
        for name in names[turn * 100:(turn + 1) * 100]:
            effects += w.login(name, version=3, password="pw")
            told[name] = set()
        for gone in names[turn * 100:turn * 100 + 10:3]:
            effects += w.send(gone, {"type": "logout"})
        effects += w.s.end_turn(0.0)
    online = {name for name in names if w.s.user_of(w.conn[name]) == name}
    for name in online:
        for frame in received(effects, w.conn[name]):
            if frame["type"] == "online":
                told[name] |= set(frame["users"])
            elif frame["type"] == "presence":
                told[name] = told[name] | set(frame["users"]) if frame["online"] else told[name] - set(frame["users"])
        assert told[name] == online - {name}, name
        assert fits(received(effects, w.conn[name]))


# -- the client ---------------------------------------------------------------------------------------------

def test_the_client_completes_the_names_it_was_told_at_the_login_and_follows_presence():
    c = logged_in("yoda")
    assert c.server_frame({"type": "online", "users": ["hans", "hera"]}, 1) == []   # not shown
    assert c.server_frame({"type": "online", "users": ["luke", 7]}, 1) == []          # the next page
    assert c.completions("message h") == ["hans", "hera"]
    c.server_frame({"type": "presence", "users": ["hera"], "online": False}, 1)
    c.server_frame({"type": "presence", "users": ["leia"], "online": True}, 1)
    assert c.completions("message ") == ["hans", "leia", "luke"]
    assert c.server_frame({"type": "online", "users": "hans"}, 1) == [] and c.server_frame({"type": "online"}, 1) == []


def test_the_client_shows_an_answer_in_pages_once_it_is_all_in():
    c = logged_in("yoda")
    c.line("whoelse", 1)
    assert c.server_frame({"type": "users", "names": ["hans", "leia"], "more": True}, 1) == []
    effects = c.server_frame({"type": "users", "names": ["luke"]}, 1)
    assert [e.text for e in effects if type(e) is Print] == ["hans\nleia\nluke"]
    assert c.online_users() == {"hans", "leia", "luke"}   # the whole answer is who is online
    c.server_frame(PONG, 1)
    c.line("whoelsesince 60", 1)
    assert c.server_frame({"type": "users", "names": ["anakin"], "more": True}, 1) == []
    assert [e.text for e in c.server_frame({"type": "users", "names": []}, 1) if type(e) is Print] == ["anakin"]
    assert c.online_users() == {"hans", "leia", "luke"}   # who was online since: not who is
    c.server_frame(PONG, 1)
    c.line("whoelse", 1)
    assert [e.text for e in c.server_frame({"type": "users", "names": []}, 1)] == ["No other users online"]
    assert c.online_users() == set()
