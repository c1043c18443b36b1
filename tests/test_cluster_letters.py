"""
Letters and groups across real relay processes (C{twistd securechat
--cluster ... --store postgresql://...}) on one throwaway Redis
(L{tests.redisservice}) and one throwaway PostgreSQL (L{tests.pgservice}),
with real C{securechat-client} processes on loopback: a letter posted
through one process to an offline user who then logs in on the other; a
group shared by users on two processes; PostgreSQL stopped and started
while letters are posted through the cluster.  Every wait is bounded
(L{tests.processes.Process.expect}).
"""

from __future__ import annotations

import re

from twisted.trial import unittest

from tests.pgservice import Cluster as PostgresServer
from tests.pgservice import need_postgres
from tests.processes import Process
from tests.redisservice import RedisServer
from tests.test_cluster_processes import relay, shared_store
from tests.test_endtoend import Deployment
from tests.test_store_postgres import query

#: The client's line for a letter the relay acknowledged: its short id.
STORED = r"\* letter ([0-9a-f]{8}) to bob stored by the relay"
#: The client's line for a letter refused because the store is unavailable.
TRY_AGAIN = r"letter( [0-9a-f]{8})? to bob NOT stored: the relay cannot store letters just now"


def prekeys_uploaded(d: Deployment, name: str, server: str) -> None:
    """C{name} logs in once (its prekeys go to the store) and leaves."""
    p = d.client(name, server)
    p.expect(rf"\* logged in as {name}")
    p.send("!users")  # answered after the prekey upload
    p.expect(r"\* users: ")
    p.send("!exit")
    assert p.wait() == 0, p.output()


def finish(test: unittest.TestCase, *processes: Process) -> None:
    for p in processes:
        p.send("!exit")
    for p in processes:
        test.assertEqual(p.wait(), 0, p.output())


class ClusterLettersTests(unittest.TestCase):
    """Two relay processes on one Redis and one PostgreSQL database."""

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.store = shared_store(self)
        self.d = Deployment(self)
        self.one, port1 = relay(self, self.d, self.redis, "one")
        self.two, port2 = relay(self, self.d, self.redis, "two")
        self.at_one, self.at_two = f"tcp:127.0.0.1:{port1}", f"tcp:127.0.0.1:{port2}"

    def tearDown(self) -> None:
        for p in (self.one, self.two):
            self.assertNotIn("Traceback", p.output())

    def test_letterToUserOfflineThenOnOtherProcess(self) -> None:
        """
        bob (offline) gets a letter alice posts through process one; he
        logs in on process two, is told, reads it (verified); alice, still
        on one, sees both receipts verified.  No letter text in the relays'
        output.
        """
        prekeys_uploaded(self.d, "bob", self.at_two)
        alice = self.d.client("alice", self.at_one)
        alice.expect(r"\* logged in as alice")
        alice.send("!letter bob dinner at eight?")
        letter = alice.expect(STORED).group(1)
        bob = self.d.client("bob", self.at_two)
        bob.expect(r"\* you have 1 new letter: /letters new")
        bob.send("!letters new")
        bob.expect(rf"\* 1\. \[{letter}\] from alice, .*, new")
        bob.send("!read 1")
        bob.expect(rf"\* letter \[{letter}\] from alice, written .*; Verification: ok")
        bob.expect(r"\*   \| dinner at eight\?")
        finish(self, bob)
        alice.send("!sent")
        alice.expect(rf"\* \[{letter}\] to bob: stored")
        alice.expect(r"\*     delivered: Time received .*; Verification: ok")
        alice.expect(r"\*     read: Time received .*; Verification: ok")
        finish(self, alice)
        for p in (self.one, self.two):
            self.assertNotIn("dinner", p.output())

    def test_groupAcrossProcesses(self) -> None:
        """
        alice on one makes #team and adds bob, who is on two: he sees the
        change verified, and messages go both ways.
        """
        prekeys_uploaded(self.d, "bob", self.at_two)
        alice = self.d.client("alice", self.at_one)
        bob = self.d.client("bob", self.at_two)
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        alice.send("!group create team")
        alice.expect(r"\* #team: alice created the group \(change 1, signed by alice: verified\)")
        alice.send("!group add team bob")
        bob.expect(r"\* #team: alice added bob \(change 2, signed by alice: verified\)")
        alice.send("!g team hello from process one")
        bob.expect(r"\] #team <alice> hello from process one")
        bob.send("!g team hello from process two")
        alice.expect(r"\] #team <bob> hello from process two")
        finish(self, alice, bob)
        for p in (self.one, self.two):
            self.assertNotIn("hello from", p.output())


class ClusterPostgresRestartTests(unittest.TestCase):
    """PostgreSQL stopped and started under two relay processes."""

    def setUp(self) -> None:
        need_postgres(self)
        self.redis = RedisServer(self)
        self.pg = PostgresServer()
        self.addCleanup(self.pg.remove)
        self.pg.start()
        self.store = self.pg.fresh_database(self)
        self.d = Deployment(self)

    def test_lettersWhilePostgresRestarts(self) -> None:
        """
        alice on process one posts letters to bob on process two while
        PostgreSQL is up, stopped and started again: each letter is either
        acknowledged (and bob, on the other process, is told of it) or
        refused as "try again"; every acknowledged one is in the database
        afterwards, exactly once; the relays say once that the store went
        and once that it is back.
        """
        one, port1 = relay(self, self.d, self.redis, "one")
        two, port2 = relay(self, self.d, self.redis, "two")
        prekeys_uploaded(self.d, "bob", f"tcp:127.0.0.1:{port2}")
        alice = self.d.client("alice", f"tcp:127.0.0.1:{port1}")
        bob = self.d.client("bob", f"tcp:127.0.0.1:{port2}")
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        acknowledged: list[str] = []

        def post(number: int, outcome: str) -> None:
            alice.send(f"!letter bob letter number {number}")
            found = alice.expect(outcome)
            if outcome == STORED:
                acknowledged.append(found.group(1))
                bob.expect(r"new letter from alice")

        for number in (1, 2):
            post(number, STORED)
        self.pg.stop()
        for number in (3, 4):
            post(number, TRY_AGAIN)
        one.expect(r"store: .*refusing what needs the store \(TRY_AGAIN\) until it is back")
        self.pg.start()
        for number in (5, 6):
            post(number, STORED)
        one.expect(r"store: .* is available again")
        stored = [bytes(row[0]).hex()[:8] for row in
                  query(self.store, "SELECT letter_id FROM letters WHERE recipient = %s",
                        ("bob",))]
        self.assertEqual(sorted(stored), sorted(acknowledged))
        self.assertEqual(len(acknowledged), 4)
        refused = [line for line in alice.output().splitlines() if re.search(TRY_AGAIN, line)]
        self.assertEqual(len(refused), 2, alice.output())
        finish(self, alice, bob)
        for p in (one, two):
            self.assertNotIn("Traceback", p.output())
