"""A fake chat for the operator's tools' own tests (``FakeChat``: users, accounts, locks, the counts, as an
``AdminHost``), so the admin socket and the options are tested without a server; the real server's are
tested end to end (tests/test_ops_admin_e2e.py, tests/test_prometheus_e2e.py)."""
from __future__ import annotations

import time

from reactor.ops.admin import WhoRow
from reactor.ops.catalog import chat_registry, loop_turns


class FakeChat:
    """An ``AdminHost`` over a dict of users online, with the counts a host keeps."""

    def __init__(self, users=0, registry=None, node=None):
        self.registry = registry or chat_registry(node)
        self.counts = self.registry.counts
        self.node = node
        self.accounts = {f"user{i}" for i in range(max(users, 10))} | {"alice", "bob"}
        self.online = {}
        self.locked = {}
        self.kicked = []
        self.notices = []
        self.reloads = 0
        self.reload_error = None
        self.fail = None          # an exception every command raises, for a test
        self.who_calls = 0
        for i in range(users):
            self.login(f"user{i}", since=time.time() - 60 - i)

    def login(self, user, since=None):
        self.accounts.add(user)
        self.online[user] = WhoRow(user, f"127.0.0.{1 + len(self.online) % 200}", since or time.time(), 0.0,
                                   len(self.online) % 2 == 0, self.node)
        self.counts.logins_succeeded += 1

    def provide_sources(self, loop=None):
        """The scrape-time figures, as a host would give them."""
        sources = {"users_online": lambda: len(self.online), "connections": lambda: {"user": len(self.online)},
                   "ready": lambda: True, "stored_messages": lambda: 0, "stored_bytes": lambda: 0,
                   "bytes_received": lambda: 0, "bytes_sent": lambda: 0, "password_checks_pending": lambda: 0,
                   "password_helper_restarts": lambda: 0}
        if loop is not None and loop.turn_stats is not None:
            sources["loop_turns"] = lambda: loop_turns(loop.turn_stats)
        for source, callback in sources.items():
            if source in self.registry.sources:
                self.registry.provide(source, callback)

    def _check(self):
        if self.fail is not None:
            raise self.fail

    # -- AdminHost ---------------------------------------------------------

    def who(self):
        self._check()
        self.who_calls += 1
        return list(self.online.values())

    def kick(self, user, reason):
        self._check()
        if user not in self.online:
            return False
        del self.online[user]
        self.kicked.append((user, reason))
        return True

    def lock(self, user, seconds):
        self._check()
        if user not in self.accounts:
            return False
        self.locked[user] = seconds
        self.online.pop(user, None)
        self.counts.lockouts.operator += 1
        return True

    def unlock(self, user):
        self._check()
        return self.locked.pop(user, None) is not None

    def notice(self, text):
        self._check()
        self.notices.append(text)
        return len(self.online)

    def reload(self, done):
        self._check()
        self.reloads += 1
        done(self.reload_error)

    def stats(self):
        self._check()
        return self.registry.samples()
