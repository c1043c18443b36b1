"""
A group commit's letters stored all at once
(L{securechat.server.store.lettersql.store_letters_txn}: one
C{executemany} with ids chosen, when no letter of the group could be
refused) and the counts kept in memory by the only writer of a SQLite
file: the outcomes and the database must be exactly those of the letters
stored one by one against the C{mailbox_usage} rows.
"""

from __future__ import annotations

import os
import random
import sqlite3
from typing import Any, Generator

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from securechat.server.store.engine import open_prepared, run_now
from securechat.server.store.interface import (
    DAY, Duplicate, MailboxLimits, NewLetter, Refused, Stored)
from securechat.server.store import lettersql
from securechat.server.store.lettersql import (
    _store_each, delete_letter_txn, expire_txn, fetch_letter_txn, store_letters_txn)
from tests.test_store import letter
from tests.test_store_sqlite import SQLiteCase

T = 1_780_000_000
LIMITS = MailboxLimits(max_letters=10, max_bytes=300, max_letter_size=100, expiry_seconds=DAY)


def lid(n: int) -> bytes:
    return n.to_bytes(16, "big")


class GroupInsertCase(unittest.TestCase):

    def connect(self, name: str) -> sqlite3.Connection:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        conn = open_prepared(os.path.join(directory, name))
        self.addCleanup(conn.close)
        return conn

    def rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        """Every letter with its body (joined by id), in id order."""
        return [tuple(row) for row in conn.execute(
            "SELECT sender, letter_id, recipient, size, stored_at, expires_at, deleted, body"
            " FROM letters LEFT JOIN letter_bodies ON letter = id ORDER BY id")]

    def exact(self, conn: sqlite3.Connection, now: int) -> dict[str, tuple[int, int]]:
        return {row[0]: (row[1], row[2]) for row in conn.execute(
            "SELECT recipient, COUNT(*), SUM(size) FROM letters"
            " WHERE deleted = 0 AND expires_at > ? GROUP BY recipient", (now,))}


class SameAsOneByOneTests(GroupInsertCase):

    def test_randomGroupsDeletesAndPurges(self) -> None:
        """
        Groups of letters (ids often reused, within and across groups;
        some too large; mailboxes often full) with deletes and purges
        between them: the same outcomes, rows and bodies as one by one,
        and the counts kept never below a scan of each mailbox.
        """
        rnd = random.Random(14)
        at_once: list[bool] = []
        kinds: set[type] = set()

        def store_all(*args: Any) -> Any:
            outcomes = original(*args)
            at_once.append(outcomes is not None)
            return outcomes
        original = lettersql._store_all
        self.patch(lettersql, "_store_all", store_all)
        together, apart = self.connect("together.sqlite3"), self.connect("apart.sqlite3")
        counts: dict[str, tuple[int, int]] = {}
        recipients = ["bob", "carol", "dave"]
        now = T
        for step in range(100):
            now += rnd.choice([0, 1, 600, 3600, DAY // 2])
            group = [NewLetter(rnd.choice(["alice", "erin"]), rnd.choice(recipients),
                               lid(rnd.randrange(40)),
                               bytes([step]) * (101 if rnd.random() < 0.03 else rnd.choice([1, 40])))
                     for _ in range(rnd.randrange(1, 6))]
            got = run_now(together, store_letters_txn, group, now, LIMITS, counts)
            want = run_now(apart, _store_each, group, now, LIMITS, None)
            self.assertEqual(got, want, f"step {step}")
            live = apart.execute("SELECT recipient, sender, letter_id FROM letters"
                                 " WHERE deleted = 0 AND expires_at > ? ORDER BY id",
                                 (now,)).fetchall()
            if live and rnd.random() < 0.3:
                victim = rnd.choice(live)
                for conn in (together, apart):
                    self.assertTrue(run_now(conn, delete_letter_txn, *victim, now))
            if rnd.random() < 0.2:
                for conn in (together, apart):
                    run_now(conn, expire_txn, now, None)
            self.assertEqual(self.rows(together), self.rows(apart), f"step {step}")
            for recipient, (count, size) in self.exact(together, now).items():
                self.assertGreaterEqual(counts.get(recipient, (count, size))[0], count)
                self.assertGreaterEqual(counts.get(recipient, (count, size))[1], size)
            kinds.update(type(o) for o in got)
        # Every kind of outcome came, and most groups went at once.
        self.assertEqual(kinds, {Stored, Duplicate, Refused})
        self.assertGreater(at_once.count(True), 30)
        self.assertGreater(at_once.count(False), 20)


class AllAtOnceTests(GroupInsertCase):

    def test_resendAndRepeatInOneGroup(self) -> None:
        """
        In a group stored at once, a resend of a stored letter and the
        same id twice are answered as the first time, and every body stays
        with its own letter though ids were skipped.
        """
        conn = self.connect("m.sqlite3")
        counts: dict[str, tuple[int, int]] = {}
        run_now(conn, store_letters_txn, [NewLetter("alice", "bob", lid(1), b"one")], T,
                LIMITS, counts)
        outcomes = run_now(conn, store_letters_txn, [
            NewLetter("alice", "carol", lid(2), b"two"),
            NewLetter("alice", "carol", lid(1), b"resent"),
            NewLetter("alice", "dave", lid(3), b"three"),
            NewLetter("alice", "dave", lid(3), b"again")], T + 5, LIMITS, counts)
        self.assertEqual(outcomes, [Stored(T + 5, T + 5 + DAY), Duplicate(T, T + DAY, "bob"),
                                    Stored(T + 5, T + 5 + DAY),
                                    Duplicate(T + 5, T + 5 + DAY, "dave")])
        for recipient, n, body in [("bob", 1, b"one"), ("carol", 2, b"two"),
                                   ("dave", 3, b"three")]:
            record = run_now(conn, fetch_letter_txn, recipient, "alice", lid(n), T + 6)
            self.assertEqual(record.body, body)
        self.assertEqual(counts, {"bob": (1, 3), "carol": (1, 3), "dave": (1, 5)})

    def test_countsTooHighCorrectedByTheScan(self) -> None:
        """
        Counts too high (letters deleted since, by this process or the
        operator's tool) refuse nothing: the group goes one by one, the
        exact scan lets the letter in, and the counts are corrected.
        """
        conn = self.connect("m.sqlite3")
        counts = {"bob": (LIMITS.max_letters, 0)}
        [outcome] = run_now(conn, store_letters_txn, [NewLetter("alice", "bob", lid(1), b"x")],
                            T, LIMITS, counts)
        self.assertEqual(outcome, Stored(T, T + DAY))
        self.assertEqual(counts, {"bob": (1, 1)})

    def test_fullMailboxStillRefused(self) -> None:
        """
        A group that would fill a mailbox past its quota is decided letter
        by letter: those that fit stored, the rest refused.
        """
        conn = self.connect("m.sqlite3")
        counts: dict[str, tuple[int, int]] = {}
        outcomes = run_now(conn, store_letters_txn,
                           [NewLetter("alice", "bob", lid(n), b"x") for n in range(12)], T,
                           LIMITS, counts)
        self.assertEqual([type(o) for o in outcomes], [Stored] * 10 + [Refused] * 2)
        self.assertEqual(counts, {"bob": (10, 10)})


class StoreKeepsCountsTests(SQLiteCase):
    """The SQLite store hands its counts to every letter transaction."""

    @inlineCallbacks
    def test_countsKeptInMemory(self) -> Generator[Any, Any, None]:
        """
        After a group commit, the SQLite store (its file's only writer)
        holds each recipient's letters and bytes as the transaction left
        them; a PostgreSQL store keeps none (L{tests.test_store_postgres}).
        """
        yield self.store.store_letters([letter(n, recipient="bob") for n in range(2)]
                                       + [letter(5, recipient="carol", size=7)])
        self.assertEqual(self.store._counts, {"bob": (2, 200), "carol": (1, 7)})
