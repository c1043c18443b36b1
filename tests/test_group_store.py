"""
The group store's rules (L{securechat.server.store.groupinterface}),
checked by one behavioural suite, L{GroupStoreTestsMixin}, run against the
in-memory store and the SQLite one (a real file, schema step 4, sharing
the mailbox's database).
"""

from __future__ import annotations

import os
from typing import Any, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from securechat.crypto.groupstate import Action, GroupState, Role, apply_change
from securechat.server.store import mailbox_store
from securechat.server.store.groupinterface import (
    ChangeConflict, GroupSummary, IGroupStore, NoSuchGroup)
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.server.store.groupsqlite import SQLiteGroupStore
from securechat.server.store.interface import DAY
from tests.test_groupstate import Chain, GID
from tests.test_store import START, SteppedClock

Gen = Generator[Any, Any, None]


class GroupStoreTestsMixin:
    """The rules every L{IGroupStore} keeps; a subclass sets C{self.store}."""

    store: Any
    clock: SteppedClock
    assertEqual: Any
    assertIsNone: Any
    assertTrue: Any
    assertFailure: Any

    @inlineCallbacks
    def build(self, *steps: tuple[str, int, dict[str, Any]]) -> Gen:
        """Make a group on the store from alice's creation and C{steps}."""
        self.chain = Chain()
        yield self.store.commit_change(self.chain.changes[0].encode(), self.chain.state)
        for actor, action, kw in steps:
            yield self.commit(actor, action, **kw)

    def commit(self, actor: str, action: int, **kw: Any) -> Any:
        state = self.chain.make(actor, action, **kw)
        return self.store.commit_change(self.chain.changes[-1].encode(), state)

    def test_interface(self) -> None:
        """The store provides IGroupStore."""
        self.assertTrue(verifyObject(IGroupStore, self.store))

    @inlineCallbacks
    def test_loadState(self) -> Gen:
        """The stored state is the one committed, with the log in epoch order."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}),
                         ("alice", Action.SET_ROLE, {"target": "bob", "role": Role.ADMIN}))
        record = yield self.store.load_group(GID)
        self.assertEqual(record.state, self.chain.state)
        self.assertEqual(record.last_seq, 0)
        log = yield self.store.change_log(GID, 0, 100)
        self.assertEqual(log, [c.encode() for c in self.chain.changes])
        self.assertEqual((yield self.store.change_log(GID, 1, 1)), [self.chain.changes[1].encode()])

    @inlineCallbacks
    def test_unknownGroup(self) -> Gen:
        """A group never created loads as None."""
        self.assertIsNone((yield self.store.load_group(b"\x09" * 16)))

    @inlineCallbacks
    def test_conflict(self) -> Gen:
        """A second change at the same epoch is a ChangeConflict and changes nothing."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        assert self.chain.state is not None
        earlier = self.chain.changes[0]
        other = apply_change(GroupState(GID, "team", 1, earlier.digest, {"alice": Role.OWNER}),
                             self.chain.next("alice", Action.ADD, target="carol", epoch=2,
                                             prev=earlier.digest))
        yield self.assertFailure(self.store.commit_change(b"x", other), ChangeConflict)
        record = yield self.store.load_group(GID)
        self.assertEqual(set(record.state.members), {"alice", "bob"})

    @inlineCallbacks
    def test_creationTwice(self) -> Gen:
        """A second creation of the same id is a ChangeConflict."""
        yield self.build()
        again = Chain("bob")
        yield self.assertFailure(self.store.commit_change(b"x", again.state), ChangeConflict)

    @inlineCallbacks
    def test_messagesNumbered(self) -> Gen:
        """Messages are numbered 1, 2, 3 per group and listed in order after a seq."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        for i in range(3):
            stored = yield self.store.store_message(GID, "alice", b"m%d" % i)
            self.assertEqual((stored.seq, stored.stored_at), (i + 1, START))
        after = yield self.store.messages_after(GID, 1, 10)
        self.assertEqual([(m.seq, m.sender, m.body) for m in after],
                         [(2, "alice", b"m1"), (3, "alice", b"m2")])

    @inlineCallbacks
    def test_joinStartsAtLastMessage(self) -> Gen:
        """A member added after two messages starts acknowledged at seq 2."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"a")
        yield self.store.store_message(GID, "alice", b"b")
        yield self.commit("alice", Action.ADD, target="carol")
        record = yield self.store.load_group(GID)
        self.assertEqual(dict(record.acked), {"alice": 0, "bob": 0, "carol": 2})

    @inlineCallbacks
    def test_ackForgetsWhenAllAcked(self) -> Gen:
        """
        A message is kept until every member acknowledged it; an ack never
        moves back nor past the last seq.
        """
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        for body in (b"a", b"b", b"c"):
            yield self.store.store_message(GID, "alice", body)
        self.assertEqual((yield self.store.ack(GID, "alice", 99)), 3)
        self.assertEqual(len((yield self.store.messages_after(GID, 0, 10))), 3)
        self.assertEqual((yield self.store.ack(GID, "bob", 2)), 2)
        self.assertEqual((yield self.store.ack(GID, "bob", 1)), 2)
        left = yield self.store.messages_after(GID, 0, 10)
        self.assertEqual([m.seq for m in left], [3])

    @inlineCallbacks
    def test_ackByNonMember(self) -> Gen:
        """An ack by a user who is not a member is NoSuchGroup."""
        yield self.build()
        yield self.assertFailure(self.store.ack(GID, "eve", 1), NoSuchGroup)

    @inlineCallbacks
    def test_removedMemberForgotten(self) -> Gen:
        """
        A removed member loses its position and its groups list; the
        messages it had not acknowledged go once the others have.
        """
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"a")
        yield self.commit("alice", Action.REMOVE, target="bob")
        self.assertEqual((yield self.store.groups_of("bob")), [])
        self.assertEqual((yield self.store.group_count("bob")), 0)
        yield self.store.ack(GID, "alice", 1)
        self.assertEqual((yield self.store.messages_after(GID, 0, 10)), [])

    @inlineCallbacks
    def test_groupsOf(self) -> Gen:
        """groups_of gives each group with the user's role, counts and position."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"a")
        found = yield self.store.groups_of("bob")
        self.assertEqual(found, [GroupSummary(GID, "team", Role.MEMBER, 2, 2, 0, 1)])
        self.assertEqual((yield self.store.group_count("alice")), 1)

    @inlineCallbacks
    def test_delete(self) -> Gen:
        """A deleted group keeps only its id: no members, messages, log; no new message."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"a")
        yield self.commit("alice", Action.DELETE)
        record = yield self.store.load_group(GID)
        self.assertTrue(record.state.deleted)
        self.assertEqual(dict(record.state.members), {})
        self.assertEqual((yield self.store.change_log(GID, 0, 10)), [])
        self.assertEqual((yield self.store.groups_of("bob")), [])
        yield self.assertFailure(self.store.store_message(GID, "alice", b"b"), NoSuchGroup)

    @inlineCallbacks
    def test_expire(self) -> Gen:
        """Messages older than the expiry are purged, newer ones kept."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"old")
        self.clock.advance(DAY)
        yield self.store.store_message(GID, "alice", b"new")
        purged = yield self.store.expire(int(self.clock.seconds()) + 2 * DAY - DAY)
        self.assertEqual(purged, 1)
        left = yield self.store.messages_after(GID, 0, 10)
        self.assertEqual([m.body for m in left], [b"new"])


class MemoryGroupStoreTests(GroupStoreTestsMixin, unittest.TestCase):
    """The rules, on L{MemoryGroupStore}."""

    def setUp(self) -> None:
        self.clock = SteppedClock(Clock())
        self.store = MemoryGroupStore(self.clock, expiry_seconds=2 * DAY)


class SQLiteGroupStoreTests(GroupStoreTestsMixin, unittest.TestCase):
    """The rules, on L{SQLiteGroupStore} in the mailbox's real SQLite file."""

    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.clock = SteppedClock(global_reactor)
        self.mailbox = self.openMailbox()
        self.store = SQLiteGroupStore(self.mailbox.db, self.clock, expiry_seconds=2 * DAY)

    def openMailbox(self) -> Any:
        """The mailbox store whose database the group store uses (closed after the test)."""
        mailbox = mailbox_store(self.dir, self.clock)
        self.addCleanup(lambda: mailbox.close())
        return mailbox

    @inlineCallbacks
    def test_groupCommit(self) -> Gen:
        """
        Messages posted in one turn share one transaction, numbered in the
        order posted; one for a deleted group fails alone.
        """
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        other = GroupState(b"\x05" * 16, "gone", 1, b"\x00" * 32, {"bob": Role.OWNER})
        yield self.store.commit_change(b"c", other)
        deleted = GroupState(other.group_id, "gone", 2, b"\x01" * 32, {}, True)
        yield self.store.commit_change(b"d", deleted)
        descriptions: list[str] = []
        run = self.store.db.runInteraction

        def counting(description: str, *args: Any) -> Any:
            descriptions.append(description)
            return run(description, *args)
        self.store.db.runInteraction = counting
        first = self.store.store_message(GID, "alice", b"a")
        lost = self.store.store_message(other.group_id, "bob", b"x")
        second = self.store.store_message(GID, "bob", b"b")
        self.assertEqual(((yield first).seq, (yield second).seq), (1, 2))
        yield self.assertFailure(lost, NoSuchGroup)
        self.assertEqual(descriptions, ["store-group-messages"])

    @inlineCallbacks
    def test_survivesReopen(self) -> Gen:
        """What is committed is there after the database is opened again."""
        yield self.build(("alice", Action.ADD, {"target": "bob"}))
        yield self.store.store_message(GID, "alice", b"a")
        yield self.mailbox.close()
        self.mailbox = self.openMailbox()
        store = SQLiteGroupStore(self.mailbox.db, self.clock)
        record = yield store.load_group(GID)
        self.assertEqual((record.state, record.last_seq), (self.chain.state, 1))
