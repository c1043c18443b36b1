"""
Relay processes on one PostgreSQL database (a throwaway server,
L{tests.pgservice}): what a process keeps in memory must not outlive a
change another process commits.  The relays run in this process on the
in-memory network and the fake Redis of L{tests.test_router}, each with
its OWN store instances (pool, caches) on the same database, as two
`twistd securechat` processes would have.

Skipped loudly where PostgreSQL is not installed; failing instead under
C{SECURECHAT_REQUIRE_SERVICES=1} (C{.ci/run}).
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store import group_store, mailbox_store
from securechat.wire.mailbox import LetterArrived, NewLetters, PostLetter
from tests.pgservice import shared_cluster
from tests.test_router import Cluster, StaleGroupStateMixin
from tests.test_store import SteppedClock, lid

#: Rounds of "pump the network, wait for the store" before a test gives up.
ROUNDS = 200


class _Watched:
    """A store whose calls' Deferreds are noted in C{calls} (to wait for them)."""

    def __init__(self, store: Any, calls: list[Deferred[Any]]) -> None:
        self._store, self._calls = store, calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kw: Any) -> Any:
            d = attribute(*args, **kw)
            if isinstance(d, Deferred):
                self._calls.append(d)
            return d
        return call


class PostgresProcesses:
    """Two relay processes, each with its own stores on one database."""

    c: Cluster

    def make_cluster(self) -> Cluster:
        test: Any = self
        url = shared_cluster(test).fresh_database(test)
        self.calls: list[Deferred[Any]] = []

        def stores(process: str) -> dict[str, Any]:
            clock = SteppedClock(global_reactor)
            mailbox = mailbox_store("/nonexistent", clock, mailbox_limits(Limits()), store=url)
            groups = group_store(mailbox, clock)
            test.addCleanup(mailbox.close)
            test.addCleanup(groups.close)
            return {"store": _Watched(mailbox, self.calls),
                    "group_store": _Watched(groups, self.calls)}
        return Cluster(2, stores=stores)

    @inlineCallbacks
    def settle(self) -> Generator[Any, Any, None]:
        """Pump the network until no store call is outstanding (bounded)."""
        for _ in range(ROUNDS):
            self.c.pump()
            if not self.calls:
                return
            d = self.calls.pop(0)
            waiter: Deferred[None] = Deferred()
            d.addBoth(lambda result: (waiter.callback(None), result)[1])
            yield waiter
        raise AssertionError(f"store calls still outstanding after {ROUNDS} rounds")


class PostgresStaleGroupStateTests(PostgresProcesses, StaleGroupStateMixin, unittest.TestCase):
    """
    L{StaleGroupStateMixin} with two group stores on one PostgreSQL
    database: a removed member refused, a member added elsewhere served,
    a change checked against the stored state.
    """

    timeout = 60


class PostgresLetterAcrossProcessesTests(PostgresProcesses, unittest.TestCase):
    """Letters through one process, read at login on the other."""

    timeout = 60

    @inlineCallbacks
    def test_letterToUserLoggingInElsewhere(self) -> Generator[Any, Any, None]:
        """
        A letter posted through a for bob, who never used the mailbox: bob
        logging in on b is told NEW_LETTERS (b reads the database; it holds
        no "nobody has letters" answer in memory), and a second letter
        while he is on b arrives as LETTER_ARRIVED.
        """
        self.c = self.make_cluster()
        carol = self.c.login("b", "carol")  # b has answered a login already
        yield self.settle()
        alice = self.c.login("a", "alice")
        yield self.settle()
        alice.send(PostLetter("bob", lid(1), b"sealed letter"))
        yield self.settle()
        self.assertEqual(type(alice.take()[-1]).__name__, "LetterStored")
        bob = self.c.login("b", "bob")
        yield self.settle()
        self.assertEqual(bob.of_type(NewLetters), [NewLetters(1)])
        alice.send(PostLetter("bob", lid(2), b"sealed again"))
        yield self.settle()
        [arrived] = bob.of_type(LetterArrived)
        self.assertEqual((arrived.sender, arrived.letter_id), ("alice", lid(2)))
        self.assertEqual(carol.of_type(LetterArrived), [])
