"""Every effect the chat logic can return has a way to be carried out: in the reactor host, in both stores, and in
the bench's other hosts. Adding an effect type without its entry fails here, not on the first busy day."""
import asyncio
import typing

import pytest

from reactor.server.effects import (
    CLUSTER_EFFECTS,
    SERVER_EFFECTS,
    STORE_CHANGES,
    AddBlock,
    CancelTimer,
    CheckPassword,
    Close,
    ClusterEffect,
    ForgetHistory,
    ForgetMessages,
    HashPassword,
    KeepMessage,
    LoggedIn,
    LoginFailed,
    NoteSession,
    ReadHistory,
    Remember,
    RemoveBlock,
    Send,
    SendBatch,
    SendStored,
    ServerEffect,
    SetPassword,
    SetTimer,
    StoreChange,
    WhenWritable,
)
from reactor.server.host import ServerHost
from reactor.server.rules import ChatServer
from reactor.server.store import MemoryStore, Store, StoreError
from tests.support import StandIn

pytestmark = pytest.mark.compiled   # run again on the compiled build (make test-compiled)

NOBODY = 99   # a connection that is not there: carrying out its effects must still find a way

SAMPLES: dict[type, typing.Any] = {
    Send: Send((NOBODY,), {"type": "pong"}),
    SendBatch: SendBatch((NOBODY,), ({"type": "pong"}, {"type": "pong"})),
    SendStored: SendStored(NOBODY, ()),
    Close: Close(NOBODY),
    SetTimer: SetTimer(("idle", NOBODY), 1e9),
    CancelTimer: CancelTimer(("idle", NOBODY)),
    KeepMessage: KeepMessage(1, "yoda", "hans", "kept", 1764000000.25),
    ForgetMessages: ForgetMessages((1,)),
    AddBlock: AddBlock("yoda", "vader"),
    RemoveBlock: RemoveBlock("yoda", "vader"),
    ForgetHistory: ForgetHistory("yoda", "vader"),
    Remember: Remember("yoda", "vader", "said", 1764000000.5),
    NoteSession: NoteSession("yoda", True, 1764000000.0),
    ReadHistory: ReadHistory(NOBODY, "yoda", "vader", 20),
    WhenWritable: WhenWritable(NOBODY),
    LoggedIn: LoggedIn(NOBODY),
    LoginFailed: LoginFailed(NOBODY, "wrong password"),
    CheckPassword: CheckPassword(NOBODY, "$scrypt$ln=10,r=8,p=1$c2FsdA$aGFzaA", "guess"),
    HashPassword: HashPassword(NOBODY, "new*secret"),
    SetPassword: SetPassword(NOBODY, "yoda", "$scrypt$ln=10,r=8,p=1$c2FsdA$aGFzaA", "x"),
}


def test_the_unions_name_every_effect_and_every_store_change():
    assert typing.get_args(ServerEffect) == SERVER_EFFECTS
    assert typing.get_args(StoreChange) == STORE_CHANGES
    assert set(STORE_CHANGES) <= set(SERVER_EFFECTS)
    assert set(SAMPLES) == set(SERVER_EFFECTS)


class Scripted(ChatServer):
    """The rules, but each frame is answered with the effects in ``script``."""

    script: list = []

    def received(self, conn, frame, now):
        return self.script


def test_the_reactor_host_carries_out_every_effect(loop):
    """Each sample effect, as the answer to a frame: the host has a way for each (a KeyError if not), and the
    four store changes among them go into the store in the loop turn's one transaction."""
    assert set(ServerHost.CARRY_OUT) == set(SERVER_EFFECTS)
    logic = Scripted({"yoda": "x", "hans": "y"}, 10.0, 60.0)
    store = Store.open(":memory:")
    host = ServerHost(loop, logic, store)
    nobody = StandIn(loop, NOBODY)
    for kind in SERVER_EFFECTS:
        logic.script = [SAMPLES[kind]]
        host.frame_received(nobody.stream, {})
    loop.run_once(0)   # the turn ends: its changes are committed
    assert store.commits == 1 and store.load() == ([], [])   # kept then forgotten, blocked then unblocked
    host.shutdown()
    store.close()
    nobody.close()


def test_the_cluster_host_has_a_method_for_every_effect_and_every_cluster_effect(loop):
    from reactor.cluster.host import ClusterHost
    from reactor.cluster.rules import ClusterChatServer
    assert typing.get_args(ClusterEffect) == CLUSTER_EFFECTS
    assert set(ClusterHost.CARRY_OUT) == set(SERVER_EFFECTS) | set(CLUSTER_EFFECTS)
    host = ClusterHost(loop, ClusterChatServer({"yoda": "x"}, 10.0, 60.0, first_id=1), ("127.0.0.1", 1), "n1")
    assert host.durability is host.keeping   # (each name in CARRY_OUT found a method, or this raised)


@pytest.mark.parametrize("make", [MemoryStore, lambda: Store.open(":memory:")], ids=["memory", "sqlite"])
def test_both_stores_write_every_store_change_and_refuse_anything_else(make):
    store = make()
    for kind in STORE_CHANGES:
        store.apply(SAMPLES[kind])
    store.commit()
    assert store.load() == ([], [])   # kept then forgotten, blocked then unblocked
    with pytest.raises(StoreError, match="unknown state change"):
        store.apply(SAMPLES[Send])


def test_the_bench_hosts_carry_out_every_effect():
    from tests.bench.asyncio_host import AsyncioHost
    from tests.bench.threaded_host import ThreadedHost
    logic = ChatServer({"yoda": "x", "hans": "y"}, 10.0, 60.0)
    loop = asyncio.new_event_loop()
    try:
        threaded = ThreadedHost(logic)
        for kind in SERVER_EFFECTS:
            threaded.carry_out([SAMPLES[kind]])   # raises TypeError on an effect it does not know
        in_asyncio = AsyncioHost(logic, loop)
        for kind in SERVER_EFFECTS:
            in_asyncio.carry_out([SAMPLES[kind]])
    finally:
        loop.close()
