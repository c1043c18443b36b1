"""
The relay's side of groups (L{securechat.server.groups}; docs/protocol.rst
15.2, 15.3): real clients logged in to a real relay in memory
(L{tests.relay_harness}), on the in-memory group store, and one test on
the SQLite store (what is stored survives a restart).
"""

from __future__ import annotations

import os
from typing import Any, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.groupstate import (
    Action, GroupChange, Role, apply_change, replay_log, sign_change)
from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store import group_store, mailbox_store
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.wire.groups import (
    NO_GROUP, ChangeGroup, GetGroupLog, GroupAck, GroupChanged, GroupEntry, GroupList,
    GroupLogPage, GroupMessage, GroupPost, GroupPosted, GroupRefused, ListGroups)
from securechat.wire.relay import Reason
from tests.relay_harness import Harness, RecordingClient, user_key
from tests.test_groupstate import GID, Chain

CHANGE, POST, ACK, LOG = 0x70, 0x71, 0x72, 0x74


class GroupCase(unittest.TestCase):
    """A harness, a group chain signed by the harness users' keys, helpers."""

    limits = Limits()

    def setUp(self) -> None:
        self.h = Harness(self.limits)
        self.chain = Chain()
        self.clients: dict[str, RecordingClient] = {}

    def login(self, *names: str) -> list[RecordingClient]:
        for name in names:
            self.clients[name] = self.h.login(name)
        return [self.clients[n] for n in names]

    def ask(self, client: RecordingClient, *messages: Any) -> list[Any]:
        """Send C{messages}; return what C{client} got after them."""
        client.take()
        client.send(*messages)
        self.h.pump()
        return client.take()

    def submit(self, actor: str, action: int, **kw: Any) -> list[Any]:
        """C{actor} sends the chain's next change; it joins the chain if accepted."""
        change = self.chain.next(actor, action, **kw)
        answer = self.ask(self.clients[actor], ChangeGroup(change.encode()))
        if answer == [GroupChanged(change.encode())]:
            self.chain.state = apply_change(self.chain.state, change)
            self.chain.changes.append(change)
        return answer

    def group(self, *members: str) -> None:
        """alice creates the group (as chain's creation) and adds C{members}."""
        alice = self.clients.get("alice") or self.login("alice")[0]
        creation = self.chain.changes[0].encode()
        self.assertEqual(self.ask(alice, ChangeGroup(creation)), [GroupChanged(creation)])
        for member in members:
            self.assertEqual(len(self.submit("alice", Action.ADD, target=member)), 1)
        for client in self.clients.values():
            client.take()

    def post(self, sender: str, body: bytes) -> list[Any]:
        return self.ask(self.clients[sender], GroupPost(GID, body))

    def messages(self, name: str) -> list[tuple[int, str, bytes]]:
        return [(m.seq, m.sender, m.body) for m in self.clients[name].take()
                if isinstance(m, GroupMessage)]


class ChangeTests(GroupCase):
    """GROUP_CHANGE: accepted changes and every refusal (15.3)."""

    def test_createAndAdd(self) -> None:
        """
        The creator is answered GROUP_CHANGED; an add is answered to the
        actor and sent to the new member and the other members online.
        """
        alice, bob, carol = self.login("alice", "bob", "carol")
        self.group("carol")
        change = self.chain.next("alice", Action.ADD, target="bob")
        self.assertEqual(self.ask(alice, ChangeGroup(change.encode())),
                         [GroupChanged(change.encode())])
        self.assertEqual(bob.take(), [GroupChanged(change.encode())])
        self.assertEqual(carol.take(), [GroupChanged(change.encode())])

    def test_unparsable(self) -> None:
        """A change that does not parse is BAD_CHANGE with a zero group id."""
        alice, = self.login("alice")
        self.assertEqual(self.ask(alice, ChangeGroup(b"\x01junk")),
                         [GroupRefused(NO_GROUP, CHANGE, Reason.BAD_CHANGE)])
        self.assertEqual(self.h.relay.metrics.group_refusals.labels("bad_change")._value.get(), 1)

    def test_forged(self) -> None:
        """A change whose signature is not the actor's registered key's is BAD_CHANGE."""
        alice, = self.login("alice")
        self.group()
        forged = sign_change(GroupChange(GID, 2, self.chain.changes[0].digest, "alice",
                                         Action.ADD, "bob"), user_key("mallory"))
        self.assertEqual(self.ask(alice, ChangeGroup(forged.encode())),
                         [GroupRefused(GID, CHANGE, Reason.BAD_CHANGE)])

    def test_actorIsNotSender(self) -> None:
        """
        bob passing on a change alice signed (a valid one) is NOT_ALLOWED:
        only the actor submits its change.
        """
        self.login("alice", "bob")
        self.group("bob")
        change = self.chain.next("alice", Action.ADD, target="carol")
        self.assertEqual(self.ask(self.clients["bob"], ChangeGroup(change.encode())),
                         [GroupRefused(GID, CHANGE, Reason.NOT_ALLOWED)])

    def test_unauthorised(self) -> None:
        """A plain member adding someone is NOT_ALLOWED, and nothing changes."""
        self.login("alice", "bob", "carol")
        self.group("bob")
        self.assertEqual(self.submit("bob", Action.ADD, target="carol"),
                         [GroupRefused(GID, CHANGE, Reason.NOT_ALLOWED)])
        self.assertEqual(self.clients["carol"].take(), [])

    def test_stale(self) -> None:
        """A change that no longer extends the head is STALE_CHANGE."""
        self.login("alice", "bob")
        self.group("bob")
        old = self.chain.next("alice", Action.ADD, target="carol", epoch=2,
                              prev=self.chain.changes[0].digest)
        self.assertEqual(self.ask(self.clients["alice"], ChangeGroup(old.encode())),
                         [GroupRefused(GID, CHANGE, Reason.STALE_CHANGE)])

    def test_nonMemberActor(self) -> None:
        """A change by a user who is not a member is NOT_MEMBER."""
        self.login("alice", "eve")
        self.group()
        self.assertEqual(self.submit("eve", Action.ADD, target="frank"),
                         [GroupRefused(GID, CHANGE, Reason.NOT_MEMBER)])

    def test_unknownGroup(self) -> None:
        """A change (not a creation) for a group never created is UNKNOWN_GROUP."""
        alice, = self.login("alice")
        change = self.chain.next("alice", Action.ADD, target="bob", epoch=2, prev=b"\x01" * 32)
        self.assertEqual(self.ask(alice, ChangeGroup(change.encode())),
                         [GroupRefused(GID, CHANGE, Reason.UNKNOWN_GROUP)])

    def test_groupExists(self) -> None:
        """A creation for an id already taken is GROUP_EXISTS."""
        self.login("alice", "bob")
        self.group()
        other = Chain("bob").changes[0].encode()
        self.assertEqual(self.ask(self.clients["bob"], ChangeGroup(other)),
                         [GroupRefused(GID, CHANGE, Reason.GROUP_EXISTS)])

    def test_unknownTarget(self) -> None:
        """Adding a user who is not registered is UNKNOWN_USER."""
        self.login("alice")
        self.group()
        self.assertEqual(self.submit("alice", Action.ADD, target="nobody"),
                         [GroupRefused(GID, CHANGE, Reason.UNKNOWN_USER)])

    def test_logReplays(self) -> None:
        """
        GROUP_LOG gives the changes as signed; replayed by a member with the
        users' keys it gives the relay's state; LIST_GROUPS agrees with it.
        """
        self.login("alice", "bob")
        self.group("bob", "carol")
        self.submit("alice", Action.SET_ROLE, target="carol", role=Role.ADMIN)
        [page] = self.ask(self.clients["bob"], GetGroupLog(GID, 0))
        self.assertIsInstance(page, GroupLogPage)
        self.assertEqual(page.more, 0)
        state = replay_log([e.change for e in page.changes], lambda n: user_key(n).public_key(),
                           group_id=GID)
        self.assertEqual(state, self.chain.state)
        [page] = self.ask(self.clients["bob"], GetGroupLog(GID, 3))
        self.assertEqual([e.change for e in page.changes], [self.chain.changes[3].encode()])
        self.assertEqual(self.ask(self.clients["bob"], ListGroups()),
                         [GroupList((GroupEntry(GID, "team", Role.MEMBER, 4, 3),))])

    def test_logPagesFit(self) -> None:
        """A log longer than one record is cut, with more = 1; the rest follows."""
        self.h = Harness(Limits(max_frame=1024))
        self.login("alice")
        self.group()
        for i in range(10):
            self.submit("alice", Action.RENAME, name=f"name {i}")
        got: list[bytes] = []
        pages = 0
        while True:
            [page] = self.ask(self.clients["alice"], GetGroupLog(GID, len(got)))
            self.assertLessEqual(len(page.encode_body()), self.h.relay.limits.max_payload)
            got += [e.change for e in page.changes]
            pages += 1
            if not page.more:
                break
        self.assertGreater(pages, 1)
        self.assertEqual(got, [c.encode() for c in self.chain.changes])

    def test_answersInOrder(self) -> None:
        """
        An add and a post sent together are answered in order, and the post
        sees the add (the new member gets the message).
        """
        alice, bob = self.login("alice", "bob")
        self.group()
        add = self.chain.next("alice", Action.ADD, target="bob")
        answers = self.ask(alice, ChangeGroup(add.encode()), GroupPost(GID, b"hi"), ListGroups())
        self.assertEqual([type(a) for a in answers], [GroupChanged, GroupPosted, GroupList])
        self.assertEqual(bob.take()[1:], [GroupMessage(GID, 1, "alice", int(self.h.clock.seconds()),
                                                      b"hi")])


class PostTests(GroupCase):
    """GROUP_POST, fan-out, removal and GROUP_ACK (15.3)."""

    def test_fanOut(self) -> None:
        """
        A post is answered GROUP_POSTED with seq 1, 2, ...; every other
        member online gets GROUP_MESSAGE, the sender does not.
        """
        alice, bob, carol = self.login("alice", "bob", "carol")
        self.group("bob", "carol")
        now = int(self.h.clock.seconds())
        self.assertEqual(self.post("alice", b"one"), [GroupPosted(GID, 1, now)])
        self.assertEqual(self.messages("bob"), [(1, "alice", b"one")])
        self.assertEqual(self.post("bob", b"two"), [GroupPosted(GID, 2, now)])
        self.assertEqual(self.messages("carol"), [(1, "alice", b"one"), (2, "bob", b"two")])
        self.assertEqual(self.messages("bob"), [])
        self.assertEqual(self.messages("alice"), [(2, "bob", b"two")])
        self.assertEqual(self.h.relay.metrics.group_copies._value.get(), 4)

    def test_onlyMembersPost(self) -> None:
        """A post by a non-member is NOT_MEMBER and reaches nobody."""
        self.login("alice", "bob", "eve")
        self.group("bob")
        self.assertEqual(self.post("eve", b"spam"), [GroupRefused(GID, POST, Reason.NOT_MEMBER)])
        self.assertEqual(self.clients["bob"].take(), [])
        # A group that does not exist answers the same (no probing).
        self.assertEqual(self.ask(self.clients["eve"], GroupPost(b"\x07" * 16, b"x")),
                         [GroupRefused(b"\x07" * 16, POST, Reason.NOT_MEMBER)])

    def test_removedMemberGetsNothingMore(self) -> None:
        """
        bob, removed, is told so, then gets no message, no change, no log;
        his posts and acks are NOT_MEMBER, and at his next login he is not
        listed in the group.
        """
        alice, bob, carol = self.login("alice", "bob", "carol")
        self.group("bob", "carol")
        removal = self.chain.next("alice", Action.REMOVE, target="bob")
        self.ask(alice, ChangeGroup(removal.encode()))
        self.chain.state = apply_change(self.chain.state, removal)
        self.assertEqual(bob.take(), [GroupChanged(removal.encode())])
        self.post("alice", b"after")
        self.submit("alice", Action.RENAME, name="secret plans")
        self.assertEqual(bob.take(), [])
        self.assertEqual(self.messages("carol"), [(1, "alice", b"after")])
        self.assertEqual(self.post("bob", b"x"), [GroupRefused(GID, POST, Reason.NOT_MEMBER)])
        self.assertEqual(self.ask(bob, GetGroupLog(GID, 0)),
                         [GroupRefused(GID, LOG, Reason.NOT_MEMBER)])
        self.assertEqual(self.ask(bob, GroupAck(GID, 1)),
                         [GroupRefused(GID, ACK, Reason.NOT_MEMBER)])
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        again, _ = self.h.connect("bob")
        self.h.pump()
        self.assertTrue(again.logged_in)
        self.assertEqual([m for m in again.messages
                          if isinstance(m, (GroupList, GroupMessage, GroupChanged))], [])

    def test_leaverGetsNothingMore(self) -> None:
        """A member who left is told (its own answer) and gets nothing after."""
        self.login("alice", "bob")
        self.group("bob")
        self.assertEqual(len(self.submit("bob", Action.LEAVE)), 1)
        self.post("alice", b"after")
        self.assertEqual(self.clients["bob"].take(), [])

    def test_removedWhileOffline(self) -> None:
        """
        bob, removed while offline, is not listed in the group at his next
        login, gets none of its messages, and his GROUP_LOG is refused.
        """
        self.login("alice", "bob")
        self.group("bob")
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        self.post("alice", b"before")
        self.submit("alice", Action.REMOVE, target="bob")
        self.post("alice", b"after")
        bob, self.h.links["bob"] = self.h.connect("bob")
        self.clients["bob"] = bob
        self.h.pump()
        self.assertEqual([m for m in bob.take()
                          if isinstance(m, (GroupList, GroupMessage, GroupChanged))], [])
        self.assertEqual(self.ask(bob, GetGroupLog(GID, 0)),
                         [GroupRefused(GID, LOG, Reason.NOT_MEMBER)])

    def test_addedMemberGetsOnlyLater(self) -> None:
        """A member added after a message gets the messages after it, not before."""
        self.login("alice", "bob")
        self.group()
        self.post("alice", b"before")
        self.submit("alice", Action.ADD, target="bob")
        self.clients["bob"].take()
        self.post("alice", b"after")
        self.assertEqual(self.messages("bob"), [(2, "alice", b"after")])

    def test_deleteTellsEveryone(self) -> None:
        """A delete is sent to every member; then posts and log requests are NOT_MEMBER."""
        self.login("alice", "bob")
        self.group("bob")
        self.submit("alice", Action.DELETE)
        self.assertEqual([type(m) for m in self.clients["bob"].take()], [GroupChanged])
        self.assertEqual(self.post("bob", b"x"), [GroupRefused(GID, POST, Reason.NOT_MEMBER)])
        self.assertEqual(self.ask(self.clients["bob"], GetGroupLog(GID, 0)),
                         [GroupRefused(GID, LOG, Reason.NOT_MEMBER)])

    def test_ackHasNoAnswer(self) -> None:
        """An accepted GROUP_ACK is not answered."""
        self.login("alice", "bob")
        self.group("bob")
        self.post("alice", b"one")
        self.clients["bob"].take()
        self.assertEqual(self.ask(self.clients["bob"], GroupAck(GID, 1)), [])


class OfflineTests(GroupCase):
    """Storage for offline members and delivery on login, in order (15.3)."""

    def relogin(self, name: str) -> list[Any]:
        self.h.links[name].client_transport.loseConnection()
        self.h.pump()
        client, self.h.links[name] = self.h.connect(name)
        self.clients[name] = client
        self.h.pump()
        return client.take()

    def test_storedInOrderOnLogin(self) -> None:
        """
        bob, offline, gets GROUP_LIST then every message he missed, in seq
        order, at login; his own posts are not sent back to him.
        """
        self.login("alice", "bob", "carol")
        self.group("bob", "carol")
        self.post("bob", b"mine")
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        for i in range(3):
            self.post("alice" if i % 2 else "carol", b"m%d" % i)
        bob, _ = self.h.connect("bob")
        self.h.pump()
        got = [m for m in bob.take() if isinstance(m, (GroupList, GroupMessage))]
        self.assertEqual(got[0], GroupList((GroupEntry(GID, "team", Role.MEMBER, 3, 3),)))
        self.assertEqual([(m.seq, m.sender, m.body) for m in got[1:]],
                         [(2, "carol", b"m0"), (3, "alice", b"m1"), (4, "carol", b"m2")])

    def test_ackedNotSentAgain(self) -> None:
        """After GROUP_ACK up to 2, the next login sends only what follows."""
        self.login("alice", "bob")
        self.group("bob")
        for i in range(3):
            self.post("alice", b"m%d" % i)
        self.ask(self.clients["bob"], GroupAck(GID, 2))
        got = self.relogin("bob")
        self.assertEqual([m.seq for m in got if isinstance(m, GroupMessage)], [3])

    def test_longBacklogInOrder(self) -> None:
        """
        A backlog longer than a page, and larger than the queue's soft
        limit, arrives whole and in order, page after page as the queue
        drains; messages posted meanwhile follow it in order.
        """
        self.h = Harness(Limits(queue_soft_limit=16 * 1024, queue_hard_limit=1024 * 1024,
                                group_burst=1000, rate=1e6, burst=10**6))
        self.login("alice", "bob")
        self.group("bob")
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        for i in range(200):
            self.post("alice", b"%04d" % i + b"x" * 500)
        groups = self.h.relay.groups
        resumed = []
        drained = groups.drained

        def counting(session: Any) -> None:
            resumed.append(session.user)
            drained(session)
        groups.drained = counting  # type: ignore[method-assign]
        bob, _ = self.h.connect("bob")
        self.post("alice", b"late")
        self.h.pump()
        seqs = [m.seq for m in bob.messages if isinstance(m, GroupMessage)]
        self.assertEqual(seqs, list(range(1, 202)))
        # The backlog (200 x 500 bytes) waited for bob's queue several times.
        self.assertGreater(len(resumed), 3)
        self.assertEqual(groups.waiting, {})

    def test_backlogsOfTwoGroups(self) -> None:
        """
        bob, back, has a backlog larger than his queue's soft limit in each
        of two groups: both arrive whole, each in seq order (each group's
        backlog waits for the queue on its own).
        """
        self.h = Harness(Limits(queue_soft_limit=8 * 1024, queue_hard_limit=1024 * 1024,
                                group_burst=1000, rate=1e6, burst=10**6))
        alice, _ = self.login("alice", "bob")
        self.group("bob")
        other = b"\x02" * 16
        create = sign_change(GroupChange(other, 1, bytes(32), "alice", Action.CREATE, name="two"),
                             user_key("alice"))
        add = sign_change(GroupChange(other, 2, create.digest, "alice", Action.ADD, "bob"),
                          user_key("alice"))
        self.ask(alice, ChangeGroup(create.encode()), ChangeGroup(add.encode()))
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        for i in range(40):
            self.ask(alice, GroupPost(GID, b"a" * 600), GroupPost(other, b"b" * 600))
        bob, _ = self.h.connect("bob")
        self.h.pump()
        got = [(m.group_id, m.seq) for m in bob.messages if isinstance(m, GroupMessage)]
        self.assertEqual([seq for gid, seq in got if gid == GID], list(range(1, 41)))
        self.assertEqual([seq for gid, seq in got if gid == other], list(range(1, 41)))
        self.assertEqual(self.h.relay.groups.waiting, {})

    def test_postDuringBacklogRead(self) -> None:
        """
        A message stored while bob's backlog is being read (the store
        answers later) is neither lost nor sent twice nor out of order: bob
        gets 1, 2, 3, 4 exactly once each.
        """
        store = _HeldReads(MemoryGroupStore(self.h.clock))
        self.h = Harness(group_store=store)
        self.login("alice", "bob")
        self.group("bob")
        self.h.links["bob"].client_transport.loseConnection()
        self.h.pump()
        self.post("alice", b"1")
        self.post("alice", b"2")
        store.hold = True
        bob, _ = self.h.connect("bob")
        self.post("alice", b"3")
        store.hold = False
        store.release()
        self.h.pump()
        self.post("alice", b"4")
        self.assertEqual([m.body for m in bob.messages if isinstance(m, GroupMessage)],
                         [b"1", b"2", b"3", b"4"])

    def test_messagesStoredUntilAllAcked(self) -> None:
        """The store forgets a message once every member acknowledged it."""
        self.login("alice", "bob")
        self.group("bob")
        self.post("alice", b"one")
        store = self.h.relay.groups.store
        self.ask(self.clients["bob"], GroupAck(GID, 1))
        self.assertEqual(len(self.successResultOf(store.messages_after(GID, 0, 10))), 1)
        self.ask(self.clients["alice"], GroupAck(GID, 1))
        self.assertEqual(self.successResultOf(store.messages_after(GID, 0, 10)), [])


class _HeldReads:
    """
    A group store whose C{messages_after} reads at once but answers only
    on L{release} while C{hold} is set (a read that ran before a commit).
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.hold = False
        self.held: list[tuple[Deferred[Any], Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def messages_after(self, *args: Any) -> Deferred[Any]:
        found = self.successResult(self.store.messages_after(*args))
        d: Deferred[Any] = Deferred()
        if self.hold:
            self.held.append((d, found))
        else:
            d.callback(found)
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, found in held:
            d.callback(found)

    @staticmethod
    def successResult(d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addCallback(results.append)
        return results[0]


class LimitTests(GroupCase):
    """Every group limit, hit, with its reason (15.3, 15.4)."""

    def test_groupFull(self) -> None:
        """An add past --group-members is GROUP_FULL."""
        self.h = Harness(Limits(max_group_members=2))
        self.login("alice")
        self.group("bob")
        self.assertEqual(self.submit("alice", Action.ADD, target="carol"),
                         [GroupRefused(GID, CHANGE, Reason.GROUP_FULL)])

    def test_tooManyGroupsCreating(self) -> None:
        """A creation by a user in --groups-per-user groups is TOO_MANY_GROUPS."""
        self.h = Harness(Limits(max_groups_per_user=1))
        alice, = self.login("alice")
        self.group()
        second = sign_change(GroupChange(b"\x02" * 16, 1, bytes(32), "alice", Action.CREATE,
                                         name="two"), user_key("alice"))
        self.assertEqual(self.ask(alice, ChangeGroup(second.encode())),
                         [GroupRefused(b"\x02" * 16, CHANGE, Reason.TOO_MANY_GROUPS)])

    def test_tooManyGroupsAdding(self) -> None:
        """Adding a user already in --groups-per-user groups is TOO_MANY_GROUPS."""
        self.h = Harness(Limits(max_groups_per_user=1))
        bob, = self.login("bob")
        other = Chain("bob")
        other.changes[0] = sign_change(GroupChange(b"\x03" * 16, 1, bytes(32), "bob",
                                                   Action.CREATE, name="bob's"), user_key("bob"))
        self.ask(bob, ChangeGroup(other.changes[0].encode()))
        self.login("alice")
        self.group()
        self.assertEqual(self.submit("alice", Action.ADD, target="bob"),
                         [GroupRefused(GID, CHANGE, Reason.TOO_MANY_GROUPS)])

    def test_rate(self) -> None:
        """Posts past --group-burst (at a slow --group-rate) are GROUP_RATE."""
        self.h = Harness(Limits(group_rate=0.01, group_burst=2))
        self.login("alice", "bob")
        self.group("bob")
        answers = [self.post("alice", b"x")[0] for _ in range(3)]
        self.assertEqual([type(a) for a in answers], [GroupPosted, GroupPosted, GroupRefused])
        self.assertEqual(answers[2], GroupRefused(GID, POST, Reason.GROUP_RATE))
        self.assertEqual(len(self.messages("bob")), 2)

    def test_tooLarge(self) -> None:
        """A body over --max-group-message is GROUP_MESSAGE_TOO_LARGE; at it, accepted."""
        self.h = Harness(Limits(max_group_message=100))
        self.login("alice", "bob")
        self.group("bob")
        self.assertEqual(self.post("alice", b"x" * 101),
                         [GroupRefused(GID, POST, Reason.GROUP_MESSAGE_TOO_LARGE)])
        self.assertIsInstance(self.post("alice", b"x" * 100)[0], GroupPosted)

    def test_sizeCappedByFrame(self) -> None:
        """The body limit is never more than a GROUP_MESSAGE fits in one record."""
        limits = Limits(max_frame=4096, max_group_message=60000)
        self.assertEqual(limits.group_message_limit, 4096 - 128 - 69)

    def test_slowMemberDropped(self) -> None:
        """
        carol stops reading: the group's messages fill her queue past the
        hard limit and she is disconnected; alice is never paused and bob
        gets every message, in order.  At her next login carol gets what
        she missed from the store.
        """
        self.h = Harness(Limits(queue_soft_limit=8 * 1024, queue_hard_limit=32 * 1024,
                                group_burst=1000, rate=1e6, burst=10**6))
        self.login("alice", "bob", "carol")
        self.group("bob", "carol")
        self.h.links["carol"].client_transport.reading = False
        self.h.relay.sessions["carol"].queue.pauseProducing()  # her socket buffer is full
        for i in range(100):
            self.post("alice", b"%04d" % i + b"y" * 1000)
            self.assertFalse(self.h.relay.sessions["alice"].reading_paused)
        self.assertNotIn("carol", self.h.relay.sessions)
        self.assertEqual(self.h.relay.metrics.queue_drops._value.get(), 1)
        self.assertEqual([m[0] for m in self.messages("bob")], list(range(1, 101)))
        carol, _ = self.h.connect("carol")
        self.h.pump()
        self.assertEqual([m.seq for m in carol.take() if isinstance(m, GroupMessage)],
                         list(range(1, 101)))

    def test_stalledMemberDropped(self) -> None:
        """A member whose queue stays over the soft limit for --stall-timeout is dropped."""
        self.h = Harness(Limits(queue_soft_limit=4 * 1024, queue_hard_limit=1024 * 1024,
                                stall_timeout=30, group_burst=1000))
        self.login("alice", "bob")
        self.group("bob")
        self.h.links["bob"].client_transport.reading = False
        self.h.relay.sessions["bob"].queue.pauseProducing()
        for i in range(10):
            self.post("alice", b"z" * 1000)
        self.assertIn("bob", self.h.relay.sessions)
        self.h.network.advance(31)
        self.assertNotIn("bob", self.h.relay.sessions)


class SQLiteGroupRelayTests(unittest.TestCase):
    """The relay on the SQLite group store: what is acknowledged survives a restart."""

    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def harness(self) -> tuple[Harness, list[Deferred[Any]]]:
        from tests.test_store import SteppedClock
        clock = SteppedClock(global_reactor)
        mailbox = mailbox_store(self.dir, clock, mailbox_limits(Limits()))
        self.addCleanup(mailbox.close)
        groups = group_store(mailbox, clock)
        calls: list[Deferred[Any]] = []

        class Watched:
            def __getattr__(self, name: str) -> Any:
                method = getattr(groups, name)

                def call(*args: Any) -> Any:
                    d = method(*args)
                    calls.append(d)
                    return d
                return call
        return Harness(store=mailbox, group_store=Watched()), calls

    @inlineCallbacks
    def settle(self, h: Harness, calls: list[Deferred[Any]]) -> Generator[Any, Any, None]:
        h.pump()
        while calls:
            d = calls.pop(0)
            waiter: Deferred[None] = Deferred()
            d.addBoth(lambda result: (waiter.callback(None), result)[1])
            yield waiter
            h.pump()

    @inlineCallbacks
    def test_storedMessagesSurviveRestart(self) -> Generator[Any, Any, None]:
        """
        GROUP_POSTED comes after the commit; after a restart bob, who was
        offline, gets the group and its messages in order at login.
        """
        h, calls = self.harness()
        chain = Chain()
        alice = h.login("alice")
        alice.send(ChangeGroup(chain.changes[0].encode()))
        yield self.settle(h, calls)
        chain.make("alice", Action.ADD, target="bob")
        alice.send(ChangeGroup(chain.changes[-1].encode()), GroupPost(GID, b"one"),
                   GroupPost(GID, b"two"))
        yield self.settle(h, calls)
        self.assertEqual([m.seq for m in alice.of_type(GroupPosted)], [1, 2])

        h2, calls2 = self.harness()
        bob, _ = h2.connect("bob")
        yield self.settle(h2, calls2)
        got = [m for m in bob.messages if isinstance(m, (GroupList, GroupMessage))]
        self.assertEqual(got[0], GroupList((GroupEntry(GID, "team", Role.MEMBER, 2, 2),)))
        self.assertEqual([(m.seq, m.body) for m in got[1:]], [(1, b"one"), (2, b"two")])
